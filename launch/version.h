/* gptoss --version. */
#ifndef GPTOSS_LAUNCH_VERSION_H
#define GPTOSS_LAUNCH_VERSION_H

#include <stdio.h>

/* The project version and git revision, the kernel instruction set this CPU gets, and the MPI
 * and HDF5 libraries loaded: what a bug report needs. Runs in one process, without MPI_Init. */
void version_print(FILE *out);

#endif
