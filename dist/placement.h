/* How many OpenMP threads each rank runs, chosen from where the launcher put it.
 *
 * A rank may use the CPUs of its affinity mask (what mpirun's --bind-to or srun's
 * --cpus-per-task gave it), shared with the other ranks on its node whose masks hold the same
 * CPUs. By default it runs one thread per whole CPU of its share — Σ over its mask's CPUs of
 * 1 / (the node's ranks whose mask holds that CPU), at least 1 — so the node's ranks together
 * run about one thread per CPU whether they are bound to cores, to sockets, or not at all.
 * `--threads N`, else OMP_NUM_THREADS, overrides it. */
#ifndef GPTOSS_DIST_PLACEMENT_H
#define GPTOSS_DIST_PLACEMENT_H

#include <stdio.h>

#include "model/status.h"

typedef struct {
  int threads;          /* OpenMP threads this rank runs */
  int node_rank;        /* this rank's index among the ranks on its node */
  int node_ranks;       /* ranks on this node */
  int cpus_in_mask;     /* CPUs sched_getaffinity allows this process */
  int cpus_online;
  double cpu_share;     /* this rank's share of its mask's CPUs (see above) */
  char source[24];      /* "--threads", "OMP_NUM_THREADS" or "cpu share" */
  char host[40];
} Placement;

/* The default thread count for a CPU share: its whole CPUs, at least one. */
int placement_threads_for_share(double cpu_share);

/* Collective over every rank. requested_threads: --threads (0 = not given). Sets OpenMP's
 * thread count for the rest of the run. */
Status dist_placement_apply(int requested_threads, Placement *out);

/* Collective: rank 0 prints one line per rank to `out`, and a note where a node's ranks run
 * more threads than it has CPUs. */
Status dist_placement_print(const Placement *mine, FILE *out);

/* Before MPI_Init (called by dist_init): where the launcher says more ranks share this node
 * than it has CPUs, ranks waiting in MPI yield the CPU instead of polling
 * (mpi_yield_when_idle), unless the user chose. */
void placement_prepare_mpi_env(void);

#endif
