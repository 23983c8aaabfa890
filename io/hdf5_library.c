/* gptoss --version's HDF5 line: the version of the library that is loaded, which can differ from
 * the headers' if the shared library was replaced. Opens no file. */
#include "io/hdf5_library.h"

#include <hdf5.h>
#include <stdio.h>

void hdf5_library_version(char *out, size_t n) {
  unsigned major = 0, minor = 0, release = 0;
  if (H5get_libversion(&major, &minor, &release) < 0) {
    snprintf(out, n, "HDF5 (version unknown)");
    return;
  }
  snprintf(out, n, "HDF5 %u.%u.%u", major, minor, release);
}
