/* Which MPI library this binary runs on (gptoss --version). */
#ifndef GPTOSS_DIST_MPI_LIBRARY_H
#define GPTOSS_DIST_MPI_LIBRARY_H

#include <stddef.h>

/* The MPI library's name and version as it reports itself at run time, e.g. "Open MPI v4.1.4",
 * into out[n]. Needs no MPI_Init: MPI_Get_library_version may be called before it. */
void mpi_library_version(char *out, size_t n);

#endif
