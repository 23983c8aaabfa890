/* gptoss --version's MPI line: asks the MPI library that is loaded, not the headers it was built
 * with, since a cluster's module system may swap the library under the binary. Any rank may call
 * it; it does not initialise MPI. */
#include "dist/mpi_library.h"

#include <mpi.h>
#include <stdio.h>
#include <string.h>

void mpi_library_version(char *out, size_t n) {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = "";
  int len = 0;
  if (MPI_Get_library_version(text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "unknown MPI");
  /* Open MPI appends ", package: ..., ident: ..., repo rev: ..., <date>": keep the first clause. */
  text[strcspn(text, ",\n")] = '\0';
  snprintf(out, n, "%s (MPI %d.%d)", text, MPI_VERSION, MPI_SUBVERSION);
}
