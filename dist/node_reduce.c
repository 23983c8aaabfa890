/* Collectives among a node's ranks (see node_reduce.h), on the node communicator of node.h.
 * Every rank runs them; they make no decisions of their own. */
#include "dist/node_reduce.h"

#include <stdlib.h>

#include "dist/comm.h"
#include "dist/node.h"

static Status node_comm(MPI_Comm *out) {
  *out = dist_node_comm();
  if (*out == MPI_COMM_NULL) return status_error(STATUS_REMOTE_ERROR, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) failed");
  return STATUS_OK;
}

Status dist_node_barrier(void) {
  MPI_Comm node;
  Status st = node_comm(&node);
  if (st == STATUS_OK && MPI_Barrier(node) != MPI_SUCCESS) st = status_error(STATUS_REMOTE_ERROR, "MPI_Barrier on the node failed");
  return st;
}

static Status node_allreduce(double *values, int n, MPI_Op op, const char *what) {
  MPI_Comm node;
  Status st = node_comm(&node);
  if (st == STATUS_OK && MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, op, node) != MPI_SUCCESS) {
    st = status_error(STATUS_REMOTE_ERROR, "MPI_Allreduce(%s) on the node failed", what);
  }
  return st;
}

Status dist_node_sum(double *values, int n) { return node_allreduce(values, n, MPI_SUM, "SUM"); }
Status dist_node_max(double *values, int n) { return node_allreduce(values, n, MPI_MAX, "MAX"); }

Status dist_gather_per_node(double value, double *per_node_out, int *num_nodes_out) {
  MPI_Comm node;
  int rank = 0, num_ranks = 1, node_rank = 0, leaders = 0;
  Status st = node_comm(&node);
  if (st != STATUS_OK) return st;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &num_ranks);
  MPI_Comm_rank(node, &node_rank);
  /* (is node rank 0, value) from every rank: rank 0 keeps the leaders' values, in rank order. */
  const int leader = node_rank == 0;
  const double mine[2] = {leader ? 1.0 : 0.0, value};
  double *all = rank == 0 ? malloc((size_t)num_ranks * sizeof mine) : NULL;
  st = dist_agree(rank == 0 && !all ? status_error(STATUS_OUT_OF_MEMORY, "%d per-rank values", num_ranks) : STATUS_OK);
  if (st == STATUS_OK && MPI_Gather(mine, 2, MPI_DOUBLE, all, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    st = status_error(STATUS_REMOTE_ERROR, "MPI_Gather of per-node values failed");
  }
  if (st == STATUS_OK && MPI_Allreduce(&leader, &leaders, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS) {
    st = status_error(STATUS_REMOTE_ERROR, "MPI_Allreduce counting the nodes failed");
  }
  for (int r = 0, k = 0; st == STATUS_OK && rank == 0 && r < num_ranks; r++) {
    if (all[2 * r] != 0.0) per_node_out[k++] = all[2 * r + 1];
  }
  *num_nodes_out = leaders;
  free(all);
  return st;
}
