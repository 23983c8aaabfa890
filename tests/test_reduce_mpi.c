/* The shard reduction over MPI (dist/comm.c DistReducer) against the one-process tree sum:
 * bitwise, through both exchanges (allgather and reduce-scatter), for shard layouts whose rank
 * blocks are and are not nodes of the summation tree, and for vectors shorter than the rank
 * count (empty pieces). Run under mpirun at several rank counts; every rank runs the same
 * cases, and a case's mismatches are summed over ranks before asserting, so all ranks pass or
 * fail together. Only rank 0 prints.
 *
 * usage: test_reduce_mpi */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <mpi.h>

#include "dist/comm.h"
#include "model/plan.h"

static RankInfo g_rank;

/* Values of many magnitudes and both signs, the same on every rank for (shard, i): a sum in
 * another order would round differently. */
static float shard_value(int64_t shard, int64_t i) {
  uint64_t h = (uint64_t)(shard * 1000003 + i) * 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  const float mantissa = (float)((int64_t)(h % 20001) - 10000) / 10000.0f;
  return ldexpf(mantissa, (int)((h >> 20) % 24) - 12);
}

/* The floats a rank sends, as dist/comm.h accounts them. */
static uint64_t expected_bytes(int num_ranks, int rank, int64_t per_rank, int64_t n, bool reduce_scatter) {
  const uint64_t others = (uint64_t)num_ranks - 1;
  if (!reduce_scatter) return (uint64_t)(per_rank * n) * others * sizeof(float);
  const int64_t mine = range_size(plan_split(n, num_ranks, rank));
  return ((uint64_t)(per_rank * (n - mine)) + (uint64_t)mine * others) * sizeof(float);
}

/* One reduction of S = N·L shards of n floats through the exchange the threshold selects:
 * returns this rank's count of wrong floats plus one if the byte count is wrong. */
static int64_t check_one(int64_t local_shards, int64_t n, int64_t min_floats) {
  const int N = g_rank.num_ranks;
  const int64_t S = N * local_shards, max_floats = 4099;
  DistReducer r;
  assert_int_equal(dist_reducer_init(&r, S, local_shards, max_floats), STATUS_OK);
  r.reduce_scatter_min_floats = min_floats;
  float *all = malloc((size_t)(S * n) * sizeof *all);
  float *local = malloc((size_t)(local_shards * n) * sizeof *local);
  float *out = malloc((size_t)n * sizeof *out);
  assert_non_null(all);
  assert_non_null(local);
  assert_non_null(out);
  for (int64_t s = 0; s < S; s++) {
    for (int64_t i = 0; i < n; i++) all[s * n + i] = shard_value(s, i);
  }
  memcpy(local, all + g_rank.rank * local_shards * n, (size_t)(local_shards * n) * sizeof *local);
  sum_blocks_tree(all, S, 1, n);
  ShardReducer reducer = dist_reducer_as_shard_reducer(&r);
  assert_int_equal(reducer.sum_shards(reducer.ctx, local, n, out), STATUS_OK);
  int64_t wrong = 0;
  for (int64_t i = 0; i < n; i++) wrong += memcmp(&out[i], &all[i], sizeof out[i]) != 0;
  const bool reduce_scatter = N > 1 && n >= min_floats;
  const int64_t per_rank = r.pre_reduce ? 1 : local_shards;
  wrong += r.bytes_sent != expected_bytes(N, g_rank.rank, per_rank, n, reduce_scatter);
  dist_reducer_free(&r);
  free(all);
  free(local);
  free(out);
  return wrong;
}

static int64_t sum_over_ranks(int64_t local) {
  int64_t total = 0;
  assert_int_equal(MPI_Allreduce(&local, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD), MPI_SUCCESS);
  return total;
}

/* L = 3 makes rank blocks that are not tree nodes at 2, 4 and 8 ranks (S = 6, 12, 24). */
static void check_layouts(int64_t min_floats) {
  const int N = g_rank.num_ranks;
  const int64_t lengths[] = {1, N - 1, N, N + 1, 7, 64, 2880, 4099};
  for (int64_t L = 1; L <= 4; L++) {
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
      if (lengths[k] <= 0) continue;
      const int64_t wrong = sum_over_ranks(check_one(L, lengths[k], min_floats));
      if (wrong != 0) print_error("L=%lld n=%lld min_floats=%lld: %lld wrong\n", (long long)L, (long long)lengths[k], (long long)min_floats, (long long)wrong);
      assert_int_equal(wrong, 0);
    }
  }
}

static void test_allgather_matches_tree(void **state) {
  (void)state;
  check_layouts(INT64_MAX);
}

static void test_reduce_scatter_matches_tree(void **state) {
  (void)state;
  check_layouts(0);
}

static void test_threshold_from_environment(void **state) {
  (void)state;
  DistReducer r;
  setenv(DIST_REDUCE_SCATTER_ENV, g_rank.rank == 0 ? "123" : "456", 1);
  assert_int_equal(dist_reducer_init(&r, g_rank.num_ranks, 1, 16), STATUS_OK);
  assert_int_equal(r.reduce_scatter_min_floats, g_rank.rank == 0 ? 123 : 456);
  assert_int_equal(dist_reducer_agree(&r), STATUS_OK);
  assert_int_equal(r.reduce_scatter_min_floats, 123); /* rank 0's, everywhere */
  dist_reducer_free(&r);
  setenv(DIST_REDUCE_SCATTER_ENV, "12x", 1);
  assert_int_equal(dist_reducer_init(&r, g_rank.num_ranks, 1, 16), STATUS_INVALID_ARGUMENT);
  dist_reducer_free(&r);
  unsetenv(DIST_REDUCE_SCATTER_ENV);
}

int main(int argc, char **argv) {
  if (dist_init(&argc, &argv, &g_rank) != STATUS_OK) return 1;
  if (g_rank.rank != 0 && !freopen("/dev/null", "w", stdout)) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_allgather_matches_tree),
      cmocka_unit_test(test_reduce_scatter_matches_tree),
      cmocka_unit_test(test_threshold_from_environment),
  };
  const int failed = cmocka_run_group_tests(tests, NULL, NULL);
  dist_finalize();
  return failed ? 1 : 0;
}
