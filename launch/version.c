/* gptoss --version: one process, no MPI_Init, nothing read from disk. The revision comes from
 * revision.h, which the build regenerates from `git describe` (cmake/revision.cmake). */
#include "launch/version.h"

#include "dist/mpi_library.h"
#include "io/hdf5_library.h"
#include "model/kernels.h"
#include "revision.h"

void version_print(FILE *out) {
  char mpi[256], hdf5[64];
  mpi_library_version(mpi, sizeof mpi);
  hdf5_library_version(hdf5, sizeof hdf5);
  fprintf(out, "gptoss %s (git %s)\n", GPTOSS_VERSION, GPTOSS_REVISION);
  fprintf(out, "kernels: %s (chosen for this CPU at run time)\n", kernels_isa_name(kernels_active_isa()));
  fprintf(out, "mpi: %s\n", mpi);
  fprintf(out, "hdf5: %s\n", hdf5);
}
