/* The node communicator: the ranks of this job that share this machine's memory. Internal to
 * dist/ (it exposes an MPI handle); placement and the bandwidth probe build on it. */
#ifndef GPTOSS_DIST_NODE_H
#define GPTOSS_DIST_NODE_H

#include <mpi.h>

/* Created on first use (collective over MPI_COMM_WORLD the first time), freed by
 * dist_finalize(). MPI_COMM_NULL if the split failed. */
MPI_Comm dist_node_comm(void);
void dist_node_comm_free(void);

#endif
