/* Rank 0's continuous batching: many sequences advanced together by engine_step.
 *
 * Requests wait in a queue until a sequence slot is free. Each step, every sequence in a slot
 * contributes one row — the token it chose last step — or, while its prompt is going in, the
 * next chunk of the prompt (chunk boundaries fall at multiples of the chunk size from the prompt's
 * start, whatever else is running, so a prompt is computed the same way alone or batched). Decode
 * rows go first; prompt chunks follow, oldest first, while the step's token budget allows, and
 * at least one always fits, so a long prompt never holds the others up for more than one chunk.
 * A sequence finishes at a stop token, at its max_tokens, or when its context is full, and its
 * slot goes to the next waiting request in the next step.
 *
 * What a sequence gets never depends on what runs beside it: the engine computes each row's
 * logits the same way in any batch, and each sequence draws from its own seeded generator. */
#ifndef GPTOSS_DIST_SCHEDULER_H
#define GPTOSS_DIST_SCHEDULER_H

#include <stdbool.h>
#include <stdint.h>

#include "dist/engine.h"
#include "model/sampler.h"

typedef enum {
  FINISH_NONE = 0,   /* still running or waiting */
  FINISH_STOP,       /* produced a stop token (kept as the last token) */
  FINISH_LENGTH,     /* produced max_tokens */
  FINISH_CONTEXT,    /* the context is full (or the prompt never fit: `error` says so) */
  FINISH_CANCELLED,  /* scheduler_cancel */
} FinishReason;

const char *finish_reason_name(FinishReason reason); /* "stop", "length", "context", "cancelled" */

typedef struct {
  const int32_t *prompt;      /* copied at submit */
  int64_t prompt_len;
  int64_t max_tokens;         /* >= 1 */
  float temperature;          /* 0: greedy */
  float top_p;                /* (0, 1] */
  uint64_t seed;
  const int32_t *stop_ids;    /* copied at submit */
  int64_t num_stop_ids;
} SeqRequest;

typedef struct Scheduler Scheduler;

/* What the scheduler tells its user, on rank 0, as it happens. `logits` ([V]) is non-NULL only
 * when the scheduler keeps logits (SchedulerOptions.gather_logits). */
typedef struct {
  void *ctx;
  void (*on_token)(void *ctx, int64_t id, int32_t token, const float *logits);
  void (*on_finish)(void *ctx, int64_t id, FinishReason reason, const char *error);
} SchedulerCallbacks;

typedef struct {
  int64_t step_tokens;   /* token rows per step; 0: what the engine allocated (chunk + slots − 1) */
  bool gather_logits;    /* pass every chosen token's logits to on_token (one gather per step) */
} SchedulerOptions;

/* Per-step figures, summed since init (or the last scheduler_reset_counters). */
typedef struct {
  int64_t steps, decode_steps;  /* decode_steps: steps with no prompt chunk */
  int64_t decode_rows, prompt_rows;
  double decode_seconds;        /* wall time of the decode-only steps */
} SchedulerCounters;

Status scheduler_init(Scheduler **out, Engine *engine, const SchedulerOptions *options, const SchedulerCallbacks *callbacks);
void scheduler_free(Scheduler *s);

/* Queues a request and returns its id (0, 1, 2, … in submit order), or -1 out of memory. A
 * prompt longer than the context is not queued: it finishes at once with FINISH_CONTEXT and an
 * error, in on_finish. */
int64_t scheduler_submit(Scheduler *s, const SeqRequest *request);
/* Ends a request (waiting or running) before its next step; on_finish reports FINISH_CANCELLED. */
void scheduler_cancel(Scheduler *s, int64_t id);

/* Admits what fits, runs one engine step, reports tokens and finishes. Does nothing when idle. */
Status scheduler_step(Scheduler *s);
/* Steps until every request has finished. */
Status scheduler_run(Scheduler *s);
bool scheduler_idle(const Scheduler *s);
int64_t scheduler_running(const Scheduler *s);  /* sequences in slots */
int64_t scheduler_waiting(const Scheduler *s);  /* queued, not yet admitted */

SchedulerCounters scheduler_counters(const Scheduler *s);
void scheduler_reset_counters(Scheduler *s);

#endif
