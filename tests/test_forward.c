/* The forward pass in one process holding all shards (no MPI), against the official reference
 * on the golden tiny20 model: one prefill, token-by-token decoding, chunked prefill across the
 * sliding window, and the greedy continuation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/logits_file.h"
#include "io/model_dir.h"
#include "model/forward.h"
#include "model/kernels.h"
#include "test_util.h"


static char *g_dir, *g_model;
static Manifest g_manifest;
static LoadedWeights g_weights;
static float *g_ref_logits;
static int32_t *g_tokens, *g_greedy;
static int64_t g_num_tokens, g_num_greedy, g_vocab;

static int setup(void **state) {
  (void)state;
  g_dir = test_make_tmpdir();
  g_model = test_convert_golden(g_dir);
  if (modeldir_read_manifest(g_model, &g_manifest) != STATUS_OK) return -1;
  const Range all = {0, g_manifest.num_shards};
  if (modeldir_load_weights(g_model, &g_manifest, all, true, &g_weights) != STATUS_OK) return -1;
  int64_t dims[2];
  const char *ref = test_data("tiny20/reference.h5");
  if (h5_read_floats(ref, "logits", &g_ref_logits, dims) != STATUS_OK) return -1;
  if (h5_read_ints(ref, "tokens", &g_tokens, &g_num_tokens) != STATUS_OK) return -1;
  if (h5_read_ints(ref, "greedy", &g_greedy, &g_num_greedy) != STATUS_OK) return -1;
  g_vocab = dims[1];
  return dims[0] == g_num_tokens && g_vocab == g_manifest.config.vocab_size ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  modeldir_free_weights(&g_weights);
  modeldir_free_manifest(&g_manifest);
  free(g_ref_logits);
  free(g_tokens);
  free(g_greedy);
  test_remove_tree(g_dir);
  free(g_dir);
  free(g_model);
  return 0;
}

static void make_transformer(Transformer *t, int64_t chunk) {
  const Range all = {0, g_manifest.num_shards};
  const TransformerOptions o = {.context_length = 256, .max_chunk = chunk};
  assert_int_equal(transformer_init(t, &g_manifest.config, all, g_weights.shards, &g_weights.replicated, &o), STATUS_OK);
}

static void assert_row_matches(const float *got, int64_t row) {
  assert_logits_row_matches(got, g_ref_logits + row * g_vocab, g_vocab, row);
}

/* Feeds the sequence in pieces of `step` tokens (1 = decoding) and checks every row. */
static void check_in_steps(int64_t step, int64_t chunk) {
  Transformer t;
  make_transformer(&t, chunk);
  const ShardReducer reducer = shard_reducer_local(g_manifest.num_shards);
  float *logits = malloc((size_t)(g_num_tokens * g_vocab) * sizeof *logits);
  for (int64_t done = 0; done < g_num_tokens; done += step) {
    const int64_t n = g_num_tokens - done < step ? g_num_tokens - done : step;
    assert_int_equal(transformer_forward(&t, g_tokens + done, n, &reducer, logits + done * g_vocab, true), STATUS_OK);
  }
  for (int64_t row = 0; row < g_num_tokens; row++) assert_row_matches(logits + row * g_vocab, row);
  free(logits);
  transformer_free(&t);
}

static void test_prefill_matches_reference(void **state) {
  (void)state;
  check_in_steps(/*step=*/g_num_tokens, /*chunk=*/128);
}

static void test_token_by_token_matches_reference(void **state) {
  (void)state;
  check_in_steps(/*step=*/1, /*chunk=*/128);
}

/* Chunks of 5 and 3 straddle the sliding window of 8, so the ring is written and read across
 * chunk boundaries. */
static void test_chunked_prefill_matches_reference(void **state) {
  (void)state;
  check_in_steps(/*step=*/g_num_tokens, /*chunk=*/5);
  check_in_steps(/*step=*/7, /*chunk=*/3);
}

static void test_greedy_continuation(void **state) {
  (void)state;
  Transformer t;
  make_transformer(&t, 128);
  const ShardReducer reducer = shard_reducer_local(g_manifest.num_shards);
  float *logits = malloc((size_t)g_vocab * sizeof *logits);
  assert_int_equal(transformer_forward(&t, g_tokens, g_num_tokens, &reducer, logits, false), STATUS_OK);
  for (int64_t i = 0; i < g_num_greedy; i++) {
    int32_t next = (int32_t)argmax_f32(logits, g_vocab);
    assert_int_equal(next, g_greedy[i]);
    assert_int_equal(transformer_forward(&t, &next, 1, &reducer, logits, false), STATUS_OK);
  }
  free(logits);
  transformer_free(&t);
}

static void test_refuses_bad_tokens_and_full_context(void **state) {
  (void)state;
  status_set_silent(1);
  Transformer t;
  const Range all = {0, g_manifest.num_shards};
  const TransformerOptions o = {.context_length = 4, .max_chunk = 2};
  assert_int_equal(transformer_init(&t, &g_manifest.config, all, g_weights.shards, &g_weights.replicated, &o), STATUS_OK);
  const ShardReducer reducer = shard_reducer_local(g_manifest.num_shards);
  float *logits = malloc((size_t)(4 * g_vocab) * sizeof *logits);
  const int32_t bad[] = {1, (int32_t)g_vocab};
  assert_int_equal(transformer_forward(&t, bad, 2, &reducer, logits, true), STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(status_last_error(), "outside the vocabulary"));
  assert_int_equal(transformer_position(&t, 0), 0);
  assert_int_equal(transformer_forward(&t, g_tokens, 5, &reducer, logits, true), STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(status_last_error(), "context is full"));
  free(logits);
  transformer_free(&t);
  status_set_silent(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefill_matches_reference),
      cmocka_unit_test(test_token_by_token_matches_reference),
      cmocka_unit_test(test_chunked_prefill_matches_reference),
      cmocka_unit_test(test_greedy_continuation),
      cmocka_unit_test(test_refuses_bad_tokens_and_full_context),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
