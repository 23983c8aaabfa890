/* The node communicator (see node.h). Every rank creates it at the same call, the first use. */
#include "dist/node.h"

static MPI_Comm g_node = MPI_COMM_NULL;
static int g_made = 0;

MPI_Comm dist_node_comm(void) {
  if (!g_made) {
    g_made = 1;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &g_node) != MPI_SUCCESS) {
      g_node = MPI_COMM_NULL;
    }
  }
  return g_node;
}

void dist_node_comm_free(void) {
  if (g_node != MPI_COMM_NULL) MPI_Comm_free(&g_node);
  g_made = 0;
}
