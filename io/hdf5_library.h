/* Which HDF5 library this binary runs on (gptoss --version). */
#ifndef GPTOSS_IO_HDF5_LIBRARY_H
#define GPTOSS_IO_HDF5_LIBRARY_H

#include <stddef.h>

/* "HDF5 1.10.8" (the library loaded at run time) into out[n]. */
void hdf5_library_version(char *out, size_t n);

#endif
