/* gptoss bench --concurrency 1,2,4,8: decode speed with P sequences advancing together.
 *
 * For each P, P sequences with the same short random prompt length are admitted at once; their
 * prompts go in (not timed), then every step decodes one token of each — P rows per step — until
 * each has its --decode-tokens. Reported: aggregate tokens/s (all sequences), tokens/s of one
 * sequence, and the weight bytes a step reads: the dense weights once, an embedding row per
 * sequence, and each distinct expert the step's rows selected (counted per layer by the
 * replicated router), which is what makes the curve bend as P grows. */
#include "launch/bench_concurrency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/scheduler.h"
#include "model/sampler.h"

enum { CONCURRENCY_PROMPT_TOKENS = 16 };

Status bench_parse_concurrency(const char *text, BenchConcurrency *out) {
  int32_t *values = NULL;
  int64_t n = 0;
  Status st = args_parse_ids("--concurrency", text, &values, &n);
  if (st != STATUS_OK || n == 0 || n > BENCH_MAX_CONCURRENCY_POINTS) {
    free(values);
    return status_error(STATUS_INVALID_ARGUMENT, "--concurrency: want 1 to %d sequence counts like 1,2,4,8, got '%s'",
                        BENCH_MAX_CONCURRENCY_POINTS, text);
  }
  out->num_points = 0;
  out->max_sequences = 0;
  for (int64_t i = 0; i < n; i++) {
    if (values[i] < 1 || values[i] > BENCH_MAX_SEQUENCES) {
      st = status_error(STATUS_INVALID_ARGUMENT, "--concurrency: %d sequences is outside [1, %d]", values[i],
                        BENCH_MAX_SEQUENCES);
      break;
    }
    out->points[out->num_points++].sequences = values[i];
    if (values[i] > out->max_sequences) out->max_sequences = values[i];
  }
  free(values);
  return st;
}

static void ignore_token(void *ctx, int64_t id, int32_t token, const float *logits) {
  (void)ctx, (void)id, (void)token, (void)logits;
}

/* One point: P sequences through their prompts, then timed decode-only steps to the end. */
static Status measure_point(Engine *e, int64_t decode_tokens, Sampler *rng, ConcurrencyPoint *point) {
  const SchedulerOptions options = {0};
  const SchedulerCallbacks callbacks = {NULL, ignore_token, NULL};
  Scheduler *s = NULL;
  Status st = scheduler_init(&s, e, &options, &callbacks);
  int32_t prompt[CONCURRENCY_PROMPT_TOKENS];
  for (int64_t i = 0; st == STATUS_OK && i < point->sequences; i++) {
    for (int j = 0; j < CONCURRENCY_PROMPT_TOKENS; j++) prompt[j] = (int32_t)(sampler_uniform(rng) * (double)e->config.vocab_size);
    const SeqRequest r = {.prompt = prompt, .prompt_len = CONCURRENCY_PROMPT_TOKENS, .max_tokens = decode_tokens + 1,
                          .top_p = 1.0f};
    if (scheduler_submit(s, &r) < 0) st = status_error(STATUS_OUT_OF_MEMORY, "bench requests");
  }
  /* The first step takes every prompt whole and chooses each first token. */
  if (st == STATUS_OK) st = scheduler_step(s);
  const StepCounters before = e->transformer.counters;
  if (st == STATUS_OK) st = engine_collect_stats(e, NULL, true);
  if (st == STATUS_OK) scheduler_reset_counters(s);
  if (st == STATUS_OK) st = scheduler_run(s);
  if (st == STATUS_OK) st = engine_collect_stats(e, point->stats, true);
  if (st == STATUS_OK) {
    const SchedulerCounters c = scheduler_counters(s);
    const int64_t steps = e->transformer.counters.steps - before.steps;
    const double unique = (double)(e->transformer.counters.unique_experts - before.unique_experts);
    point->aggregate_tokens_per_s = (double)c.decode_rows / c.decode_seconds;
    point->sequence_tokens_per_s = (double)c.decode_steps / c.decode_seconds;
    point->unique_experts_per_layer = unique / (double)(steps * e->config.num_hidden_layers);
    point->bytes_per_step = (double)weights_step_bytes(&e->config, point->sequences, unique / (double)steps);
  }
  scheduler_free(s);
  return st;
}

Status bench_run_concurrency(Engine *e, int64_t decode_tokens, BenchConcurrency *b) {
  if (b->max_sequences > e->transformer.num_slots) {
    return status_error(STATUS_INVALID_ARGUMENT, "--concurrency %lld needs --parallel %lld or more (it is %lld)",
                        (long long)b->max_sequences, (long long)b->max_sequences, (long long)e->transformer.num_slots);
  }
  Sampler rng;
  sampler_init(&rng, 4321);
  Status st = STATUS_OK;
  for (int i = 0; st == STATUS_OK && i < b->num_points; i++) {
    ConcurrencyPoint *p = &b->points[i];
    p->stats = calloc((size_t)e->rank.num_ranks, sizeof *p->stats);
    st = p->stats ? measure_point(e, decode_tokens, &rng, p) : status_error(STATUS_OUT_OF_MEMORY, "bench stats");
  }
  return st;
}

void bench_print_concurrency(const Engine *e, const BenchConcurrency *b, FILE *out) {
  const double base = b->points[0].aggregate_tokens_per_s;
  fprintf(out, "\nbatched decode (%d-token prompts, one token per sequence per step):\n", CONCURRENCY_PROMPT_TOKENS);
  fprintf(out, "%10s %14s %14s %12s %16s %10s\n", "sequences", "aggregate t/s", "per-seq t/s", "GB/step",
          "experts/layer", "x first");
  for (int i = 0; i < b->num_points; i++) {
    const ConcurrencyPoint *p = &b->points[i];
    fprintf(out, "%10lld %14.2f %14.2f %12.3f %16.2f %10.2f\n", (long long)p->sequences, p->aggregate_tokens_per_s,
            p->sequence_tokens_per_s, p->bytes_per_step / 1e9, p->unique_experts_per_layer,
            p->aggregate_tokens_per_s / base);
  }
  for (int i = 0; i < b->num_points; i++) {
    fprintf(out, "\nphases at %lld sequences:\n", (long long)b->points[i].sequences);
    engine_print_stats(e, b->points[i].stats, out);
  }
}

void bench_print_concurrency_json(const Engine *e, const BenchConcurrency *b, FILE *out,
                                  void (*print_phases)(const Engine *e, const RankStats *stats, const char *name)) {
  fprintf(out, "\"concurrency\": [");
  for (int i = 0; i < b->num_points; i++) {
    const ConcurrencyPoint *p = &b->points[i];
    fprintf(out,
            "%s{\"sequences\": %lld, \"aggregate_decode_tokens_per_s\": %.3f, \"per_sequence_tokens_per_s\": %.3f, "
            "\"bytes_per_step\": %.0f, \"unique_experts_per_layer\": %.3f, ",
            i ? ", " : "", (long long)p->sequences, p->aggregate_tokens_per_s, p->sequence_tokens_per_s, p->bytes_per_step,
            p->unique_experts_per_layer);
    print_phases(e, p->stats, "phases");
    fprintf(out, "}");
  }
  fprintf(out, "]");
}

void bench_concurrency_free(BenchConcurrency *b) {
  for (int i = 0; i < b->num_points; i++) {
    free(b->points[i].stats);
    b->points[i].stats = NULL;
  }
}
