/* A measurement, not a test: the time of one shard reduction (dist/comm.c) through each exchange,
 * allgather and reduce-scatter, for vector lengths from one decode row of 20b (2880 floats) to a
 * 512-token prefill chunk, with 8 shards spread over the job's ranks like 20b's KV groups.
 * Rank 0 prints, per length, the median over rounds of the slowest rank's time per reduction;
 * the two exchanges alternate so drift on a shared machine hits both alike. This is how
 * DIST_REDUCE_SCATTER_MIN_FLOATS was chosen; rerun it on a real cluster to choose again.
 *
 * usage: mpirun -np N bench_reduce [ROUNDS] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <mpi.h>

#include "dist/comm.h"

enum { NUM_SHARDS = 8, MAX_ROUNDS = 15 };

/* Seconds per reduction, the slowest rank's, over `iters` back-to-back reductions. */
static double time_reductions(DistReducer *r, float *parts, float *out, int64_t n, int iters) {
  ShardReducer reducer = dist_reducer_as_shard_reducer(r);
  MPI_Barrier(MPI_COMM_WORLD);
  const double start = MPI_Wtime();
  for (int i = 0; i < iters; i++) {
    if (reducer.sum_shards(reducer.ctx, parts, n, out) != STATUS_OK) dist_abort(1);
  }
  double mine = (MPI_Wtime() - start) / iters, slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

static int compare_doubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int count) {
  qsort(v, (size_t)count, sizeof *v, compare_doubles);
  return v[count / 2];
}

int main(int argc, char **argv) {
  RankInfo rank;
  if (dist_init(&argc, &argv, &rank) != STATUS_OK) return 1;
  const int rounds = argc > 1 && atoi(argv[1]) > 0 && atoi(argv[1]) <= MAX_ROUNDS ? atoi(argv[1]) : 5;
  if (NUM_SHARDS % rank.num_ranks != 0) {
    if (rank.rank == 0) fprintf(stderr, "bench_reduce: the rank count must divide %d\n", NUM_SHARDS);
    dist_finalize();
    return 2;
  }
  const int64_t rows[] = {1, 2, 4, 6, 8, 12, 16, 32, 64, 128, 512}, hidden = 2880;
  const int64_t max_floats = 512 * hidden, local_shards = NUM_SHARDS / rank.num_ranks;
  DistReducer r;
  if (dist_agree(dist_reducer_init(&r, NUM_SHARDS, local_shards, max_floats)) != STATUS_OK) dist_abort(1);
  float *parts = calloc((size_t)(local_shards * max_floats), sizeof *parts);
  float *out = calloc((size_t)max_floats, sizeof *out);
  if (!parts || !out) dist_abort(1);
  if (rank.rank == 0) printf("ranks %d, %d shards; us per reduction (median of %d rounds, slowest rank)\n", rank.num_ranks, NUM_SHARDS, rounds);
  if (rank.rank == 0) printf("%8s %10s %12s %14s %8s\n", "rows", "floats", "allgather", "reduce-scatter", "ratio");
  for (size_t k = 0; k < sizeof rows / sizeof rows[0]; k++) {
    const int64_t n = rows[k] * hidden;
    const int iters = (int)(n > 2000000 ? 4 : 4000000 / n < 4 ? 4 : 4000000 / n > 400 ? 400 : 4000000 / n);
    double gather[MAX_ROUNDS], scatter[MAX_ROUNDS];
    for (int round = 0; round < rounds; round++) {
      r.reduce_scatter_min_floats = INT64_MAX;
      gather[round] = time_reductions(&r, parts, out, n, iters);
      r.reduce_scatter_min_floats = 0;
      scatter[round] = time_reductions(&r, parts, out, n, iters);
    }
    const double g = median(gather, rounds) * 1e6, s = median(scatter, rounds) * 1e6;
    if (rank.rank == 0) printf("%8lld %10lld %12.1f %14.1f %8.2f\n", (long long)rows[k], (long long)n, g, s, g / s);
  }
  free(parts);
  free(out);
  dist_reducer_free(&r);
  dist_finalize();
  return 0;
}
