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
#include "golden_mpi.h"
#include "test_util.h"


static Engine g_engine;
static GoldenReference g_golden;

static void assert_row_matches(const float *got, int64_t row) {
  assert_logits_row_matches(got, g_golden.logits + row * g_golden.vocab, g_golden.vocab, row);
}

static void test_prefill_logits(void **state) {
  (void)state;
  float *logits = malloc((size_t)(g_golden.n * g_golden.vocab) * sizeof *logits);
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  assert_int_equal(engine_score(&g_engine, g_golden.tokens, g_golden.n, logits), STATUS_OK);
  for (int64_t row = 0; row < g_golden.n; row++) assert_row_matches(logits + row * g_golden.vocab, row);
  bool agree = false;
  assert_int_equal(engine_replicas_agree(&g_engine, &agree), STATUS_OK);
  assert_true(agree);
  free(logits);
}

static void test_decode_logits(void **state) {
  (void)state;
  float *logits = malloc((size_t)g_golden.vocab * sizeof *logits);
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  for (int64_t i = 0; i < g_golden.n; i++) {
    assert_int_equal(engine_next_logits(&g_engine, g_golden.tokens + i, 1, logits), STATUS_OK);
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
  assert_int_equal(engine_next_greedy(&g_engine, g_golden.tokens, g_golden.n, &next), STATUS_OK);
  for (int64_t i = 0; i < g_golden.num_greedy; i++) {
    assert_int_equal(next, g_golden.greedy[i]);
    if (i + 1 < g_golden.num_greedy) assert_int_equal(engine_next_greedy(&g_engine, &next, 1, &next), STATUS_OK);
  }
}

/* Mark after 20 tokens, run 28 more (the sliding window of 8 wraps several times), roll back,
 * and feed the same 28 again: the cache must be exactly as it was at the mark. */
static void test_rollback_restores_cache(void **state) {
  (void)state;
  const int64_t split = 20;
  float *logits = malloc((size_t)g_golden.vocab * sizeof *logits);
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  assert_int_equal(engine_feed(&g_engine, g_golden.tokens, split), STATUS_OK);
  assert_int_equal(engine_mark(&g_engine), STATUS_OK);
  const int32_t noise[28] = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
  assert_int_equal(engine_feed(&g_engine, noise, 28), STATUS_OK);
  assert_int_equal(engine_rollback(&g_engine), STATUS_OK);
  assert_int_equal(engine_position(&g_engine), split);
  for (int64_t i = split; i < g_golden.n; i++) {
    assert_int_equal(engine_next_logits(&g_engine, g_golden.tokens + i, 1, logits), STATUS_OK);
    assert_row_matches(logits, i);
  }
  free(logits);
}

static void test_bad_tokens_refused_without_hang(void **state) {
  (void)state;
  status_set_silent(1);
  const int32_t bad[] = {3, (int32_t)g_golden.vocab + 5};
  int32_t next;
  assert_int_equal(engine_reset(&g_engine), STATUS_OK);
  assert_int_equal(engine_next_greedy(&g_engine, bad, 2, &next), STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(status_last_error(), "outside the model's vocabulary"));
  status_set_silent(0);
  /* The workers are still in step: a good command afterwards works. */
  assert_int_equal(engine_next_greedy(&g_engine, g_golden.tokens, 1, &next), STATUS_OK);
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
  /* chunk 16 makes the 48-token prefill cross chunk and sliding-window boundaries. */
  const EngineOptions options = {.context_length = 128, .max_chunk = 16, .verify_checksums = true};
  return golden_mpi_main(argc, argv, &options, &g_engine, &g_golden, run_golden_tests);
}
