/* Thread count and placement of each rank (see placement.h). Every rank runs it once, after
 * MPI_Init and before the first parallel region. It changes nothing but OpenMP's thread count
 * (no pinning: binding is the launcher's job, and a rank keeps the mask it was given). */
#define _GNU_SOURCE
#include "dist/placement.h"

#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/node.h"

int placement_threads_for_share(double cpu_share) {
  /* The small margin keeps 3 × (1/3) from flooring to 0 when the sum rounds just below. */
  const int whole = (int)floor(cpu_share + 1e-6);
  return whole > 1 ? whole : 1;
}

/* This process's affinity mask as bytes (bit c of byte c/8 = CPU c), num_bytes long. */
static int read_mask(unsigned char *bits, int num_cpus) {
  cpu_set_t *set = CPU_ALLOC((size_t)num_cpus);
  const size_t set_bytes = CPU_ALLOC_SIZE((size_t)num_cpus);
  int count = 0;
  memset(bits, 0, (size_t)(num_cpus + 7) / 8);
  if (set && sched_getaffinity(0, set_bytes, set) == 0) {
    for (int c = 0; c < num_cpus; c++) {
      if (CPU_ISSET_S((size_t)c, set_bytes, set)) {
        bits[c / 8] |= (unsigned char)(1u << (c % 8));
        count++;
      }
    }
  }
  CPU_FREE(set);
  return count;
}

static int has_cpu(const unsigned char *bits, int c) { return bits[c / 8] >> (c % 8) & 1; }

/* Σ over my CPUs of 1 / (node ranks whose mask holds it); masks: [node_ranks][mask_bytes]. */
static double cpu_share(const unsigned char *masks, int node_ranks, int node_rank, int num_cpus, int mask_bytes) {
  double share = 0.0;
  for (int c = 0; c < num_cpus; c++) {
    if (!has_cpu(masks + (size_t)node_rank * (size_t)mask_bytes, c)) continue;
    int holders = 0;
    for (int r = 0; r < node_ranks; r++) holders += has_cpu(masks + (size_t)r * (size_t)mask_bytes, c);
    share += 1.0 / holders;
  }
  return share;
}

static Status measure_share(Placement *p) {
  MPI_Comm node = dist_node_comm();
  if (node == MPI_COMM_NULL) return status_error(STATUS_REMOTE_ERROR, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) failed");
  MPI_Comm_rank(node, &p->node_rank);
  MPI_Comm_size(node, &p->node_ranks);
  /* Configured, not online: CPU numbers in a mask run up to the configured count. */
  const long conf = sysconf(_SC_NPROCESSORS_CONF);
  const int num_cpus = conf > 0 ? (int)conf : 1, mask_bytes = (num_cpus + 7) / 8;
  unsigned char *mine = malloc((size_t)mask_bytes);
  unsigned char *all = malloc((size_t)mask_bytes * (size_t)p->node_ranks);
  Status st = mine && all ? STATUS_OK : status_error(STATUS_OUT_OF_MEMORY, "CPU masks");
  if (st == STATUS_OK) {
    p->cpus_in_mask = read_mask(mine, num_cpus);
    if (MPI_Allgather(mine, mask_bytes, MPI_BYTE, all, mask_bytes, MPI_BYTE, node) != MPI_SUCCESS) {
      st = status_error(STATUS_REMOTE_ERROR, "MPI_Allgather of CPU masks failed");
    }
  }
  if (st == STATUS_OK) p->cpu_share = cpu_share(all, p->node_ranks, p->node_rank, num_cpus, mask_bytes);
  free(mine);
  free(all);
  return st;
}

Status dist_placement_apply(int requested_threads, Placement *out) {
  memset(out, 0, sizeof *out);
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  out->cpus_online = online > 0 ? (int)online : 1;
  if (gethostname(out->host, sizeof out->host - 1) != 0) strcpy(out->host, "?");
  Status st = measure_share(out);
  if (st != STATUS_OK) return st;
  const char *env = getenv("OMP_NUM_THREADS");
  if (requested_threads > 0) {
    strcpy(out->source, "--threads");
    out->threads = requested_threads;
    omp_set_num_threads(requested_threads);
  } else if (env && *env) {
    /* OpenMP has read it already (and may have a list); report what it made of it. */
    strcpy(out->source, "OMP_NUM_THREADS");
    out->threads = omp_get_max_threads();
  } else {
    strcpy(out->source, "cpu share");
    out->threads = placement_threads_for_share(out->cpu_share);
    omp_set_num_threads(out->threads);
  }
  return STATUS_OK;
}

Status dist_placement_print(const Placement *mine, FILE *out) {
  int rank, num_ranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &num_ranks);
  Placement *all = rank == 0 ? malloc((size_t)num_ranks * sizeof *all) : NULL;
  if (rank == 0 && !all) return status_error(STATUS_OUT_OF_MEMORY, "placement table");
  if (MPI_Gather(mine, (int)sizeof *mine, MPI_BYTE, all, (int)sizeof *mine, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    free(all);
    return status_error(STATUS_REMOTE_ERROR, "MPI_Gather of placements failed");
  }
  for (int r = 0; rank == 0 && r < num_ranks; r++) {
    const Placement *p = &all[r];
    fprintf(out, "placement: rank %d: %d thread(s) (%s) on %s, node rank %d of %d, %d CPU(s) in mask of %d online, share %.2f\n",
            r, p->threads, p->source, p->host, p->node_rank, p->node_ranks, p->cpus_in_mask, p->cpus_online,
            p->cpu_share);
    if (p->threads > placement_threads_for_share(p->cpu_share)) {
      fprintf(out, "placement: rank %d runs more threads than its share of CPUs; OMP_WAIT_POLICY=passive keeps "
                   "waiting threads from taking CPU time from busy ones\n", r);
    }
  }
  free(all);
  return STATUS_OK;
}

void placement_prepare_mpi_env(void) {
  const char *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (!local || getenv("OMPI_MCA_mpi_yield_when_idle")) return;
  if (atol(local) > online) setenv("OMPI_MCA_mpi_yield_when_idle", "1", 0);
}
