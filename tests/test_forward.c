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
#include "max_diff.h"
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

/* ---- several sequences in one step ---- */

enum { BATCH_SEQS = 10, BATCH_DECODE = 6, BATCH_CHUNK = 8 };

/* A sequence of the batch test: a prompt (a window of the golden tokens), then greedy decoding.
 * logits holds the logits of every token it chooses: the prompt's last, then each decoded one. */
typedef struct {
  const int32_t *prompt;
  int32_t prompt_len;
  int32_t start_step;  /* the step it is admitted in */
  int32_t fed, decoded, next;
  float *logits;       /* [BATCH_DECODE + 1, V] */
} BatchSeq;

static bool seq_done(const BatchSeq *q) { return q->decoded > BATCH_DECODE; }

/* Runs the sequences in `slots` slots: from its start step each feeds its prompt in chunks of
 * BATCH_CHUNK (boundaries fixed from its own start), then one token per step, all in one
 * transformer_step per step; every chosen token's logits are kept. */
static void run_batch(BatchSeq *seqs, int num_seqs, int64_t slots) {
  Transformer t;
  const Range all = {0, g_manifest.num_shards};
  const TransformerOptions o = {.context_length = 128, .max_chunk = BATCH_CHUNK, .num_slots = slots,
                                .max_rows = BATCH_CHUNK * slots};
  assert_int_equal(transformer_init(&t, &g_manifest.config, all, g_weights.shards, &g_weights.replicated, &o), STATUS_OK);
  const ShardReducer reducer = shard_reducer_local(g_manifest.num_shards);
  float *logits = malloc((size_t)(slots * g_vocab) * sizeof *logits);
  int32_t tokens[BATCH_CHUNK * BATCH_SEQS];
  for (int step = 0;; step++) {
    StepSegment segs[BATCH_SEQS];
    int owner[BATCH_SEQS], num_segs = 0, num_tokens = 0, live = 0;
    for (int i = 0; i < num_seqs; i++) {
      BatchSeq *q = &seqs[i];
      live += !seq_done(q);
      if (seq_done(q) || step < q->start_step) continue;
      StepSegment g = {.slot = (int32_t)(i % slots), .logits = true};
      if (q->fed < q->prompt_len) {
        g.num_tokens = q->prompt_len - q->fed < BATCH_CHUNK ? q->prompt_len - q->fed : BATCH_CHUNK;
        memcpy(tokens + num_tokens, q->prompt + q->fed, (size_t)g.num_tokens * sizeof *tokens);
        g.logits = q->fed + g.num_tokens == q->prompt_len;
      } else {
        g.num_tokens = 1;
        tokens[num_tokens] = q->next;
      }
      num_tokens += g.num_tokens;
      owner[num_segs] = i;
      segs[num_segs++] = g;
    }
    if (live == 0) break;
    if (num_segs == 0) continue;
    assert_int_equal(transformer_step(&t, segs, num_segs, tokens, &reducer, logits), STATUS_OK);
    for (int j = 0, row = 0; j < num_segs; j++) {
      BatchSeq *q = &seqs[owner[j]];
      q->fed += q->fed < q->prompt_len ? segs[j].num_tokens : 0;
      if (!segs[j].logits) continue;
      memcpy(q->logits + q->decoded * g_vocab, logits + row * g_vocab, (size_t)g_vocab * sizeof *logits);
      q->next = (int32_t)argmax_f32(logits + row * g_vocab, g_vocab);
      q->decoded++;
      row++;
    }
  }
  free(logits);
  transformer_free(&t);
}

static void init_batch_seqs(BatchSeq *seqs, const int32_t *start_steps) {
  /* Prompts of 1 to 20 tokens from different places of the golden sequence: chunks of 8 run as
   * matrix products (and cross the sliding window of 8), shorter ones stream with the decode
   * rows (up to 10 rows: past the size where the matmuls would switch to sgemm). */
  const int32_t offsets[BATCH_SEQS] = {0, 5, 17, 30, 2, 40, 11, 25, 7, 33};
  const int32_t lengths[BATCH_SEQS] = {20, 3, 11, 1, 9, 2, 5, 1, 16, 4};
  for (int i = 0; i < BATCH_SEQS; i++) {
    seqs[i] = (BatchSeq){.prompt = g_tokens + offsets[i], .prompt_len = lengths[i], .start_step = start_steps[i]};
    seqs[i].logits = malloc((size_t)((BATCH_DECODE + 1) * g_vocab) * sizeof(float));
  }
}

/* Each sequence alone, then all ten together in batches whose make-up changes every step
 * (admitted at different steps, prompt chunks beside decode rows): every logit is bitwise the
 * same, so a sequence's tokens never depend on its neighbours. */
static void test_batched_sequences_match_alone(void **state) {
  (void)state;
  const int32_t together[BATCH_SEQS] = {0, 0, 1, 3, 4, 4, 5, 7, 8, 8}, alone_start[BATCH_SEQS] = {0};
  BatchSeq batched[BATCH_SEQS], alone[BATCH_SEQS];
  init_batch_seqs(batched, together);
  init_batch_seqs(alone, alone_start);
  run_batch(batched, BATCH_SEQS, BATCH_SEQS);
  for (int i = 0; i < BATCH_SEQS; i++) {
    run_batch(&alone[i], 1, 1);
    assert_int_equal(batched[i].decoded, BATCH_DECODE + 1);
    assert_int_equal(alone[i].decoded, BATCH_DECODE + 1);
    assert_memory_equal(batched[i].logits, alone[i].logits, (size_t)((BATCH_DECODE + 1) * g_vocab) * sizeof(float));
  }
  /* The first sequence is the golden prompt's first 20 tokens: its prompt logits are the
   * reference's row 19. */
  assert_row_matches(batched[0].logits, 19);
  for (int i = 0; i < BATCH_SEQS; i++) {
    free(batched[i].logits);
    free(alone[i].logits);
  }
}

/* The tolerance checks above must not pass a NaN (fmaxf would drop it). */
static void test_max_diff_keeps_nan(void **state) {
  (void)state;
  const float a[3] = {1.0f, NAN, 2.0f}, b[3] = {1.0f, 1.0f, 2.5f};
  assert_true(isnan(max_abs_diff_f32(a, b, 3)));
  assert_true(isnan(max_abs_diff_f32(b, a, 3)));
  assert_true(max_abs_diff_f32(b, b, 3) == 0.0f);
  assert_true(max_abs_diff_f32(a + 2, b + 2, 1) == 0.5f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_prefill_matches_reference),
      cmocka_unit_test(test_token_by_token_matches_reference),
      cmocka_unit_test(test_chunked_prefill_matches_reference),
      cmocka_unit_test(test_greedy_continuation),
      cmocka_unit_test(test_refuses_bad_tokens_and_full_context),
      cmocka_unit_test(test_batched_sequences_match_alone),
      cmocka_unit_test(test_max_diff_keeps_nan),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
