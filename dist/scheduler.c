/* Rank 0's continuous batching over engine_step (see scheduler.h). */
#include "dist/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  int64_t id;
  int32_t *prompt;
  int64_t prompt_len, fed;     /* prompt tokens in the cache */
  int64_t max_tokens, generated;
  float temperature, top_p;
  Sampler sampler;
  int32_t *stop_ids;
  int64_t num_stop_ids;
  int32_t last;                /* the token chosen last step: the next one to feed */
  int32_t slot;
  int64_t admitted;            /* admission order: older prompts get their chunks first */
  bool started;                /* its first segment (which resets the slot) has run */
} Seq;

struct Scheduler {
  Engine *engine;
  SchedulerOptions options;
  SchedulerCallbacks callbacks;
  int64_t num_slots, max_chunk, step_tokens;
  Seq **slots;                 /* [num_slots]: NULL where free */
  Seq **waiting;               /* FIFO: waiting[head .. head + num_waiting) */
  int64_t head, num_waiting, waiting_capacity;
  int64_t next_id, admissions;
  /* One step's buffers. */
  EngineSegment *segments;     /* [num_slots] */
  Seq **owners;                /* [num_slots] */
  int32_t *tokens;             /* [step_tokens] */
  int32_t *next;               /* [num_slots] */
  float *logits;               /* [num_slots, V] when gathering logits */
  SchedulerCounters counters;
};

const char *finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FINISH_STOP: return "stop";
    case FINISH_LENGTH: return "length";
    case FINISH_CONTEXT: return "context";
    case FINISH_CANCELLED: return "cancelled";
    case FINISH_NONE: break;
  }
  return "none";
}

Status scheduler_init(Scheduler **out, Engine *engine, const SchedulerOptions *options, const SchedulerCallbacks *callbacks) {
  *out = NULL;
  Scheduler *s = calloc(1, sizeof *s);
  if (!s) return status_error(STATUS_OUT_OF_MEMORY, "scheduler");
  const Transformer *t = &engine->transformer;
  s->engine = engine;
  s->options = *options;
  s->callbacks = *callbacks;
  s->num_slots = t->num_slots;
  s->max_chunk = t->max_chunk;
  /* A step must hold every decode row plus one whole chunk, or a prompt could wait forever; it
   * cannot hold more rows than the engine allocated. */
  const int64_t least = s->max_chunk + s->num_slots - 1 < t->max_rows ? s->max_chunk + s->num_slots - 1 : t->max_rows;
  s->step_tokens = options->step_tokens > 0 ? options->step_tokens : t->max_rows;
  if (s->step_tokens < least) s->step_tokens = least;
  if (s->step_tokens > t->max_rows) s->step_tokens = t->max_rows;
  s->slots = calloc((size_t)s->num_slots, sizeof *s->slots);
  s->segments = calloc((size_t)s->num_slots, sizeof *s->segments);
  s->owners = calloc((size_t)s->num_slots, sizeof *s->owners);
  s->tokens = calloc((size_t)s->step_tokens, sizeof *s->tokens);
  s->next = calloc((size_t)s->num_slots, sizeof *s->next);
  if (options->gather_logits) s->logits = malloc((size_t)(s->num_slots * engine->config.vocab_size) * sizeof *s->logits);
  if (!s->slots || !s->segments || !s->owners || !s->tokens || !s->next || (options->gather_logits && !s->logits)) {
    scheduler_free(s);
    return status_error(STATUS_OUT_OF_MEMORY, "scheduler buffers for %lld slots", (long long)s->num_slots);
  }
  *out = s;
  return STATUS_OK;
}

static void seq_free(Seq *q) {
  if (!q) return;
  free(q->prompt);
  free(q->stop_ids);
  free(q);
}

void scheduler_free(Scheduler *s) {
  if (!s) return;
  for (int64_t i = 0; s->slots && i < s->num_slots; i++) seq_free(s->slots[i]);
  for (int64_t i = 0; i < s->num_waiting; i++) seq_free(s->waiting[s->head + i]);
  free(s->slots);
  free(s->waiting);
  free(s->segments);
  free(s->owners);
  free(s->tokens);
  free(s->next);
  free(s->logits);
  free(s);
}

static void finish(Scheduler *s, Seq *q, FinishReason reason, const char *error) {
  if (q->slot >= 0) s->slots[q->slot] = NULL;
  if (s->callbacks.on_finish) s->callbacks.on_finish(s->callbacks.ctx, q->id, reason, error);
  seq_free(q);
}

static int32_t *copy_ids(const int32_t *ids, int64_t n) {
  int32_t *copy = malloc((size_t)(n > 0 ? n : 1) * sizeof *copy);
  if (copy && n > 0) memcpy(copy, ids, (size_t)n * sizeof *copy);
  return copy;
}

static bool push_waiting(Scheduler *s, Seq *q) {
  if (s->head > 0 && s->head + s->num_waiting == s->waiting_capacity) {
    memmove(s->waiting, s->waiting + s->head, (size_t)s->num_waiting * sizeof *s->waiting);
    s->head = 0;
  }
  if (s->num_waiting == s->waiting_capacity) {
    const int64_t capacity = s->waiting_capacity ? 2 * s->waiting_capacity : 16;
    Seq **grown = realloc(s->waiting, (size_t)capacity * sizeof *grown);
    if (!grown) return false;
    s->waiting = grown;
    s->waiting_capacity = capacity;
  }
  s->waiting[s->head + s->num_waiting++] = q;
  return true;
}

int64_t scheduler_submit(Scheduler *s, const SeqRequest *r) {
  Seq *q = calloc(1, sizeof *q);
  if (q) {
    q->prompt = copy_ids(r->prompt, r->prompt_len);
    q->stop_ids = copy_ids(r->stop_ids, r->num_stop_ids);
  }
  if (!q || !q->prompt || !q->stop_ids) {
    seq_free(q);
    return -1;
  }
  q->id = s->next_id++;
  q->prompt_len = r->prompt_len;
  q->max_tokens = r->max_tokens;
  q->temperature = r->temperature;
  q->top_p = r->top_p;
  q->num_stop_ids = r->num_stop_ids;
  q->slot = -1;
  sampler_init(&q->sampler, r->seed);
  const int64_t context = s->engine->transformer.context_length;
  if (r->prompt_len <= 0 || r->prompt_len > context) {
    char error[160];
    if (r->prompt_len <= 0) snprintf(error, sizeof error, "the prompt is empty");
    else snprintf(error, sizeof error, "the prompt has %lld tokens; the context holds %lld (raise --context)",
                  (long long)r->prompt_len, (long long)context);
    const int64_t id = q->id;
    finish(s, q, FINISH_CONTEXT, error);
    return id;
  }
  if (!push_waiting(s, q)) {
    seq_free(q);
    return -1;
  }
  return q->id;
}

void scheduler_cancel(Scheduler *s, int64_t id) {
  for (int64_t i = 0; i < s->num_slots; i++) {
    if (s->slots[i] && s->slots[i]->id == id) {
      finish(s, s->slots[i], FINISH_CANCELLED, NULL);
      return;
    }
  }
  for (int64_t i = 0; i < s->num_waiting; i++) {
    Seq *q = s->waiting[s->head + i];
    if (q->id != id) continue;
    memmove(s->waiting + s->head + i, s->waiting + s->head + i + 1, (size_t)(s->num_waiting - i - 1) * sizeof *s->waiting);
    s->num_waiting--;
    finish(s, q, FINISH_CANCELLED, NULL);
    return;
  }
}

bool scheduler_idle(const Scheduler *s) { return scheduler_running(s) == 0 && s->num_waiting == 0; }

int64_t scheduler_running(const Scheduler *s) {
  int64_t n = 0;
  for (int64_t i = 0; i < s->num_slots; i++) n += s->slots[i] != NULL;
  return n;
}

int64_t scheduler_waiting(const Scheduler *s) { return s->num_waiting; }

SchedulerCounters scheduler_counters(const Scheduler *s) { return s->counters; }
void scheduler_reset_counters(Scheduler *s) { memset(&s->counters, 0, sizeof s->counters); }

/* Waiting requests take free slots, first come first served. */
static void admit(Scheduler *s) {
  for (int64_t slot = 0; slot < s->num_slots && s->num_waiting > 0; slot++) {
    if (s->slots[slot]) continue;
    Seq *q = s->waiting[s->head++];
    s->num_waiting--;
    q->slot = (int32_t)slot;
    q->admitted = s->admissions++;
    s->slots[slot] = q;
  }
  if (s->num_waiting == 0) s->head = 0;
}

static EngineSegment segment_for(const Seq *q, int32_t num_tokens, bool choose) {
  EngineSegment g = {.slot = q->slot, .num_tokens = num_tokens, .reset = !q->started, .choose = choose,
                     .temperature = q->temperature, .top_p = q->top_p};
  return g;
}

/* The step's segments: every decoding sequence's row, then prompt chunks, oldest first, while
 * the budget holds them. Returns the number of segments; *rows_out the rows. */
static int64_t plan(Scheduler *s, int64_t *rows_out, int64_t *prompt_rows_out) {
  int64_t n = 0, rows = 0, prompt_rows = 0;
  for (int64_t i = 0; i < s->num_slots; i++) {
    Seq *q = s->slots[i];
    if (!q || q->fed < q->prompt_len) continue;
    s->tokens[rows++] = q->last;
    s->owners[n] = q;
    s->segments[n++] = segment_for(q, 1, true);
  }
  for (;;) {
    Seq *oldest = NULL;
    for (int64_t i = 0; i < s->num_slots; i++) {
      Seq *q = s->slots[i];
      if (!q || q->fed >= q->prompt_len) continue;
      bool planned = false;
      for (int64_t j = 0; j < n; j++) planned |= s->owners[j] == q;
      if (!planned && (!oldest || q->admitted < oldest->admitted)) oldest = q;
    }
    if (!oldest) break;
    const int64_t left = oldest->prompt_len - oldest->fed, len = left < s->max_chunk ? left : s->max_chunk;
    if (rows + len > s->step_tokens) break;
    memcpy(s->tokens + rows, oldest->prompt + oldest->fed, (size_t)len * sizeof *s->tokens);
    rows += len;
    prompt_rows += len;
    s->owners[n] = oldest;
    s->segments[n++] = segment_for(oldest, (int32_t)len, len == left);
  }
  *rows_out = rows;
  *prompt_rows_out = prompt_rows;
  return n;
}

/* Rank 0's uniform draws, one per sampled token, from each sequence's own generator. */
static void draw(Scheduler *s, int64_t num_segments) {
  for (int64_t j = 0; j < num_segments; j++) {
    if (s->segments[j].choose && s->owners[j]->temperature > 0.0f) s->segments[j].uniform = sampler_uniform(&s->owners[j]->sampler);
  }
}

static bool is_stop(const Seq *q, int32_t token) {
  for (int64_t i = 0; i < q->num_stop_ids; i++) {
    if (q->stop_ids[i] == token) return true;
  }
  return false;
}

/* A sequence's chosen token: reported, then the sequence ends or feeds it next step. */
static void take_token(Scheduler *s, Seq *q, int32_t token, const float *logits) {
  q->generated++;
  if (s->callbacks.on_token) s->callbacks.on_token(s->callbacks.ctx, q->id, token, logits);
  const int64_t cached = transformer_position(&s->engine->transformer, q->slot);
  if (is_stop(q, token)) finish(s, q, FINISH_STOP, NULL);
  else if (q->generated >= q->max_tokens) finish(s, q, FINISH_LENGTH, NULL);
  else if (cached + 1 > s->engine->transformer.context_length) finish(s, q, FINISH_CONTEXT, NULL);
  else q->last = token;
}

Status scheduler_step(Scheduler *s) {
  admit(s);
  int64_t rows = 0, prompt_rows = 0;
  const int64_t n = plan(s, &rows, &prompt_rows);
  if (n == 0) return STATUS_OK;
  draw(s, n);
  const double start = dist_time();
  Status st = engine_step(s->engine, s->segments, n, s->tokens, s->next, s->logits);
  if (st != STATUS_OK) return st;
  s->counters.steps++;
  s->counters.decode_rows += rows - prompt_rows;
  s->counters.prompt_rows += prompt_rows;
  if (prompt_rows == 0) {
    s->counters.decode_steps++;
    s->counters.decode_seconds += dist_time() - start;
  }
  const int64_t V = s->engine->config.vocab_size;
  for (int64_t j = 0, chosen = 0; j < n; j++) {
    Seq *q = s->owners[j];
    q->started = true;
    if (q->fed < q->prompt_len) q->fed += s->segments[j].num_tokens;
    if (!s->segments[j].choose) continue;
    take_token(s, q, s->next[chosen], s->logits ? s->logits + chosen * V : NULL);
    chosen++;
  }
  return STATUS_OK;
}

Status scheduler_run(Scheduler *s) {
  Status st = STATUS_OK;
  while (st == STATUS_OK && !scheduler_idle(s)) st = scheduler_step(s);
  return st;
}
