/* Collectives among the ranks of one node (the ranks that share its memory), and one value per
 * node to rank 0: what launch/ needs to measure a node as a whole without talking MPI. Every
 * function is collective over every rank of the job (each node's ranks meet on their node). */
#ifndef GPTOSS_DIST_NODE_REDUCE_H
#define GPTOSS_DIST_NODE_REDUCE_H

#include "model/status.h"

/* Returns once every rank of this node has called it. */
Status dist_node_barrier(void);

/* Element-wise sum / maximum of n doubles over the ranks of this node, in place, on each. */
Status dist_node_sum(double *values, int n);
Status dist_node_max(double *values, int n);

/* Rank 0 receives one value per node, the one its node rank 0 passed, in the order of those
 * ranks: per_node_out must hold num_ranks doubles on rank 0 (others pass NULL). Every rank
 * learns the node count. */
Status dist_gather_per_node(double value, double *per_node_out, int *num_nodes_out);

#endif
