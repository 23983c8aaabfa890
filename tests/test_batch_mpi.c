/* Batched decode across MPI ranks (run under mpirun at 1, 2, 4 and 8 ranks): requests run through
 * the scheduler alone, then together — admitted at different steps, more of them than slots, prompt
 * chunks beside decode rows, greedy beside sampled — and every request gets bitwise the same
 * logits and the same tokens either way. The golden prompt batched with the others still gives
 * the reference's greedy tokens. Rank 0 runs the cmocka tests; the others serve.
 *
 * usage: test_batch_mpi MODEL_DIR REFERENCE.h5 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dist/engine.h"
#include "dist/scheduler.h"
#include "golden_mpi.h"
#include "model/kernels.h"
#include "model/sampler.h"
#include "test_util.h"

enum { SLOTS = 6, CONTEXT = 128, CHUNK = 8, MAX_GENERATED = 20, NUM_REQUESTS = 11 };

static Engine g_engine;
static GoldenReference g_golden;
static int32_t g_long_prompt[CONTEXT + 2];

/* What one request produced. */
typedef struct {
  int32_t tokens[MAX_GENERATED];
  float *logits; /* [MAX_GENERATED, V] */
  int64_t count;
  FinishReason finish;
  char error[200];
} Outcome;

typedef struct {
  Outcome *outcomes; /* indexed by the request's number in the test */
  const int64_t *number_of_id; /* scheduler id -> request number */
} Collector;

static void on_token(void *ctx, int64_t id, int32_t token, const float *logits) {
  Collector *c = ctx;
  Outcome *o = &c->outcomes[c->number_of_id[id]];
  assert_true(o->count < MAX_GENERATED);
  assert_non_null(logits);
  o->tokens[o->count] = token;
  memcpy(o->logits + o->count * g_golden.vocab, logits, (size_t)g_golden.vocab * sizeof *logits);
  o->count++;
}

static void on_finish(void *ctx, int64_t id, FinishReason reason, const char *error) {
  Collector *c = ctx;
  Outcome *o = &c->outcomes[c->number_of_id[id]];
  o->finish = reason;
  snprintf(o->error, sizeof o->error, "%s", error ? error : "");
}

/* The requests: prompts of 1 to 48 tokens cut from the golden sequence (chunks of 8 cross the
 * sliding window of 8; short prompts stream beside the decode rows), greedy and sampled (top-p 1
 * and 0.8), different lengths; one prompt that cannot fit the context; one that fills it. */
static SeqRequest request(int i) {
  static const int32_t offsets[NUM_REQUESTS] = {0, 5, 17, 30, 2, 40, 11, 25, 7, 0, 0};
  static const int32_t lengths[NUM_REQUESTS] = {20, 3, 11, 1, 9, 2, 5, 1, 16, 48, 0};
  static const float temperatures[NUM_REQUESTS] = {0, 0.9f, 0, 1.0f, 0.7f, 0, 1.2f, 0, 0.8f, 0, 0};
  static const float top_ps[NUM_REQUESTS] = {1, 1, 1, 0.8f, 1, 1, 0.9f, 1, 1, 1, 1};
  SeqRequest r = {.prompt = g_golden.tokens + offsets[i], .prompt_len = lengths[i], .max_tokens = 4 + i % 5,
                  .temperature = temperatures[i], .top_p = top_ps[i], .seed = 1000 + (uint64_t)i};
  if (i == 9) r.max_tokens = g_golden.num_greedy; /* the golden prompt: the reference's greedy tokens */
  if (i == 10) { /* longer than the context: refused alone, the others still run */
    r.prompt = g_long_prompt;
    r.prompt_len = CONTEXT + 1;
  }
  return r;
}

/* One request whose prompt nearly fills the context: it must stop with "context". */
static SeqRequest filling_request(void) {
  SeqRequest r = {.prompt = g_long_prompt, .prompt_len = CONTEXT - 3, .max_tokens = MAX_GENERATED, .seed = 7};
  return r;
}

static void alloc_outcomes(Outcome *o, int n) {
  memset(o, 0, (size_t)n * sizeof *o);
  for (int i = 0; i < n; i++) o[i].logits = malloc((size_t)(MAX_GENERATED * g_golden.vocab) * sizeof(float));
}

static void free_outcomes(Outcome *o, int n) {
  for (int i = 0; i < n; i++) free(o[i].logits);
}

static Scheduler *new_scheduler(Collector *c) {
  const SchedulerOptions options = {.gather_logits = true};
  const SchedulerCallbacks callbacks = {c, on_token, on_finish};
  Scheduler *s = NULL;
  assert_int_equal(scheduler_init(&s, &g_engine, &options, &callbacks), STATUS_OK);
  return s;
}

static void run_alone(Outcome *out, int number, SeqRequest r) {
  const int64_t map[1] = {number};
  Collector c = {out, map};
  Scheduler *s = new_scheduler(&c);
  assert_int_equal(scheduler_submit(s, &r), 0);
  assert_int_equal(scheduler_run(s), STATUS_OK);
  scheduler_free(s);
}

/* Submitted in three waves while earlier ones run; 12 requests over 6 slots. */
static void run_together(Outcome *out) {
  int64_t map[NUM_REQUESTS + 1];
  Collector c = {out, map};
  Scheduler *s = new_scheduler(&c);
  const int waves[] = {0, 4, 7, NUM_REQUESTS + 1};
  for (int w = 0; w < 3; w++) {
    for (int i = waves[w]; i < waves[w + 1]; i++) {
      const SeqRequest r = i < NUM_REQUESTS ? request(i) : filling_request();
      map[i] = i; /* ids count submissions from 0; a refused prompt finishes inside submit */
      assert_int_equal(scheduler_submit(s, &r), i);
    }
    for (int step = 0; step < 3; step++) assert_int_equal(scheduler_step(s), STATUS_OK);
  }
  assert_int_equal(scheduler_run(s), STATUS_OK);
  assert_true(scheduler_idle(s));
  scheduler_free(s);
}

static void test_batched_requests_match_alone(void **state) {
  (void)state;
  Outcome alone[NUM_REQUESTS + 1], together[NUM_REQUESTS + 1];
  alloc_outcomes(alone, NUM_REQUESTS + 1);
  alloc_outcomes(together, NUM_REQUESTS + 1);
  for (int i = 0; i < NUM_REQUESTS; i++) run_alone(alone, i, request(i));
  run_alone(alone, NUM_REQUESTS, filling_request());
  run_together(together);
  for (int i = 0; i <= NUM_REQUESTS; i++) {
    assert_int_equal(together[i].finish, alone[i].finish);
    assert_int_equal(together[i].count, alone[i].count);
    assert_memory_equal(together[i].tokens, alone[i].tokens, (size_t)alone[i].count * sizeof(int32_t));
    assert_memory_equal(together[i].logits, alone[i].logits, (size_t)(alone[i].count * g_golden.vocab) * sizeof(float));
  }
  /* Every token is what the whole-vocabulary reference picks from its logits with the request's
   * own draws: argmax when greedy, else model/sampler.h's procedure on one full vector. */
  for (int i = 0; i < NUM_REQUESTS; i++) {
    const SeqRequest r = request(i);
    Sampler draws;
    sampler_init(&draws, r.seed);
    for (int64_t k = 0; k < together[i].count; k++) {
      const float *row = together[i].logits + k * g_golden.vocab;
      const int32_t want = r.temperature > 0.0f
                               ? sampler_sample_full(row, g_golden.vocab, r.temperature, r.top_p, sampler_uniform(&draws))
                               : (int32_t)argmax_f32(row, g_golden.vocab);
      assert_int_equal(together[i].tokens[k], want);
    }
  }
  /* The first request's prompt is the golden sequence's first 20 tokens. */
  assert_logits_row_matches(together[0].logits, g_golden.logits + 19 * g_golden.vocab, g_golden.vocab, 19);
  /* The whole golden prompt, batched: the reference's greedy tokens, and its last row's logits. */
  assert_int_equal(together[9].count, g_golden.num_greedy);
  assert_memory_equal(together[9].tokens, g_golden.greedy, (size_t)g_golden.num_greedy * sizeof(int32_t));
  assert_logits_row_matches(together[9].logits, g_golden.logits + (g_golden.n - 1) * g_golden.vocab, g_golden.vocab, g_golden.n - 1);
  assert_int_equal(together[10].finish, FINISH_CONTEXT);
  assert_int_equal(together[10].count, 0);
  assert_non_null(strstr(together[10].error, "context"));
  /* CONTEXT - 3 prompt tokens leave room for 3 more: the 4th chosen token finds it full. */
  assert_int_equal(together[NUM_REQUESTS].finish, FINISH_CONTEXT);
  assert_int_equal(together[NUM_REQUESTS].count, 4);
  for (int i = 0; i < 9; i++) assert_int_equal(together[i].finish, FINISH_LENGTH);
  free_outcomes(alone, NUM_REQUESTS + 1);
  free_outcomes(together, NUM_REQUESTS + 1);
}

/* A bad step is refused before it is broadcast; the workers stay in step. */
static void test_bad_steps_refused_without_hang(void **state) {
  (void)state;
  status_set_silent(1);
  const int32_t tokens[4] = {1, 2, 3, (int32_t)g_golden.vocab};
  EngineSegment twice[2] = {{.slot = 1, .num_tokens = 1, .reset = 1}, {.slot = 1, .num_tokens = 1, .reset = 1}};
  assert_int_equal(engine_step(&g_engine, twice, 2, tokens, NULL, NULL), STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(status_last_error(), "twice"));
  EngineSegment bad_token = {.slot = 0, .num_tokens = 4, .reset = 1};
  assert_int_equal(engine_step(&g_engine, &bad_token, 1, tokens, NULL, NULL), STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(status_last_error(), "vocabulary"));
  EngineSegment bad_slot = {.slot = SLOTS, .num_tokens = 1};
  assert_int_equal(engine_step(&g_engine, &bad_slot, 1, tokens, NULL, NULL), STATUS_INVALID_ARGUMENT);
  EngineSegment too_long = {.slot = 0, .num_tokens = CHUNK + 1, .reset = 1};
  assert_int_equal(engine_step(&g_engine, &too_long, 1, g_golden.tokens, NULL, NULL), STATUS_INVALID_ARGUMENT);
  status_set_silent(0);
  EngineSegment good = {.slot = 2, .num_tokens = 3, .reset = 1, .choose = 1};
  int32_t next = -1;
  assert_int_equal(engine_step(&g_engine, &good, 1, tokens, &next, NULL), STATUS_OK);
  assert_true(next >= 0 && next < g_golden.vocab);
}

static int run_batch_tests(void) {
  if (g_golden.num_greedy > MAX_GENERATED) return 1;
  for (int i = 0; i < CONTEXT + 2; i++) g_long_prompt[i] = g_golden.tokens[i % g_golden.n];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batched_requests_match_alone),
      cmocka_unit_test(test_bad_steps_refused_without_hang),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

int main(int argc, char **argv) {
  const EngineOptions options = {.context_length = CONTEXT, .max_chunk = CHUNK, .num_slots = SLOTS, .verify_checksums = true};
  return golden_mpi_main(argc, argv, &options, &g_engine, &g_golden, run_batch_tests);
}
