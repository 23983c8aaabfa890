/* The engine across MPI ranks against the official reference (run under mpirun at 1, 2, 4 and 8
 * ranks, and alone). Rank 0 runs the cmocka tests and drives the engine; every other rank
 * serves it. The number of failures travels to the workers in the stop command, so every rank
 * exits with the same status: the assertions are agreed across ranks.
 *
 * usage: test_golden_mpi MODEL_DIR REFERENCE.h5 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dist/engine.h"
#include "io/logits_file.h"
#include "model/kernels.h"
#include "test_util.h"


static Engine g_engine;
static float *g_ref;
static int32_t *g_tokens, *g_greedy;
static int64_t g_n, g_num_greedy, g_vocab;

static void assert_row_matches(const float *got, int64_t row) {
  assert_logits_row_matches(got, g_ref + row * g_vocab, g_vocab, row);
}

static void test_prefill_logits(void **state) {
  (void)state;
  float *logits = malloc((size_t)(g_n * g_vocab) * sizeof *logits);
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  assert_int_equal(engine_score(&g_engine, g_tokens, g_n, logits), STATUS_OK);
  for (int64_t row = 0; row < g_n; row++) assert_row_matches(logits + row * g_vocab, row);
  bool agree = false;
  assert_int_equal(engine_replicas_agree(&g_engine, &agree), STATUS_OK);
  assert_true(agree);
  free(logits);
}

static void test_decode_logits(void **state) {
  (void)state;
  float *logits = malloc((size_t)g_vocab * sizeof *logits);
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  for (int64_t i = 0; i < g_n; i++) {
    assert_int_equal(engine_next_logits(&g_engine, g_tokens + i, 1, logits), STATUS_OK);
    assert_row_matches(logits, i);
  }
  bool agree = false;
  assert_int_equal(engine_replicas_agree(&g_engine, &agree), STATUS_OK);
  assert_true(agree);
  free(logits);
}

static void test_greedy_tokens(void **state) {
  (void)state;
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  int32_t next = -1;
  assert_int_equal(engine_next_greedy(&g_engine, g_tokens, g_n, &next), STATUS_OK);
  for (int64_t i = 0; i < g_num_greedy; i++) {
    assert_int_equal(next, g_greedy[i]);
    if (i + 1 < g_num_greedy) assert_int_equal(engine_next_greedy(&g_engine, &next, 1, &next), STATUS_OK);
  }
}

/* Mark after 20 tokens, run 28 more (the sliding window of 8 wraps several times), roll back,
 * and feed the same 28 again: the cache must be exactly as it was at the mark. */
static void test_rollback_restores_cache(void **state) {
  (void)state;
  const int64_t split = 20;
  float *logits = malloc((size_t)g_vocab * sizeof *logits);
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  assert_int_equal(engine_feed(&g_engine, g_tokens, split), STATUS_OK);
  assert_int_equal(engine_mark(&g_engine), STATUS_OK);
  const int32_t noise[28] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
  assert_int_equal(engine_feed(&g_engine, noise, 28), STATUS_OK);
  assert_int_equal(engine_rollback(&g_engine), STATUS_OK);
  assert_int_equal(engine_position(&g_engine), split);
  for (int64_t i = split; i < g_n; i++) {
    assert_int_equal(engine_next_logits(&g_engine, g_tokens + i, 1, logits), STATUS_OK);
    assert_row_matches(logits, i);
  }
  free(logits);
}

static void test_bad_tokens_refused_without_hang(void **state) {
  (void)state;
  status_set_silent(1);
  const int32_t bad[] = {3, (int32_t)g_vocab + 5};
  int32_t next;
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  assert_int_equal(engine_next_greedy(&g_engine, bad, 2, &next), STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(status_last_error(), "outside the model's vocabulary"));
  status_set_silent(0);
  /* The workers are still in step: a good command afterwards works. */
  assert_int_equal(engine_next_greedy(&g_engine, g_tokens, 1, &next), STATUS_OK);
}

static int run_golden_tests(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefill_logits),
      cmocka_unit_test(test_decode_logits),
      cmocka_unit_test(test_greedy_tokens),
      cmocka_unit_test(test_rollback_restores_cache),
      cmocka_unit_test(test_bad_tokens_refused_without_hang),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(int argc, char **argv) {
  RankInfo rank;
  if (dist_init(&argc, &argv, &rank) != STATUS_OK) return 1;
  if (argc != 3) {
    if (rank.rank == 0) status_error(STATUS_INVALID_ARGUMENT, "usage: test_golden_mpi MODEL_DIR REFERENCE.h5");
    dist_finalize();
    return 2;
  }
  /* chunk 16 makes the 48-token prefill cross chunk and sliding-window boundaries. */
  EngineOptions options = {.context_length = 128, .max_chunk = 16, .verify_checksums = true};
  int status = 1;
  if (engine_load(&g_engine, rank, argv[1], &options) == STATUS_OK) {
    if (rank.rank == 0) {
      int64_t dims[2];
      Status st = h5_read_floats(argv[2], "logits", &g_ref, dims);
      if (st == STATUS_OK) st = h5_read_ints(argv[2], "tokens", &g_tokens, &g_n);
      if (st == STATUS_OK) st = h5_read_ints(argv[2], "greedy", &g_greedy, &g_num_greedy);
      g_vocab = dims[1];
      status = st == STATUS_OK && g_vocab == g_engine.config.vocab_size ? run_golden_tests() : 1;
      engine_stop(&g_engine, status == 0 ? 0 : 1);
    } else {
      status = engine_serve(&g_engine);
    }
  }
  engine_free(&g_engine);
  free(g_ref);
  free(g_tokens);
  free(g_greedy);
  dist_finalize();
  return status == 0 ? 0 : 1;
}
