/* gptoss bench's memory read bandwidth probe: how fast each node of the job reads memory when
 * all its ranks' threads read at once, which is what a decoding job does. */
#ifndef GPTOSS_LAUNCH_READ_PROBE_H
#define GPTOSS_LAUNCH_READ_PROBE_H

#include <stddef.h>

#include "dist/comm.h"

typedef struct {
  double job_gbps;          /* Σ of node_gbps: the bound for the whole job's weight reads */
  double *node_gbps;        /* rank 0: [num_nodes], in the order of each node's first rank */
  int num_nodes;
  size_t rank_bytes;        /* the buffer each rank read in a pass */
  int num_passes;
} ReadProbe;

/* Collective over every rank, with OpenMP's thread count already set (dist_placement_apply).
 * Each pass: the ranks of a node meet at a barrier, then every rank's threads read its own
 * buffer of max(256 MiB, 4 x the node's L3 / its ranks) bytes; the node's figure is the bytes
 * all its ranks read over the time the slowest one took; the best pass counts. A rank that
 * cannot allocate its buffer reads nothing (a note says so) and the others go on. */
Status read_probe_run(const RankInfo *rank, ReadProbe *out);
void read_probe_free(ReadProbe *p);

#endif
