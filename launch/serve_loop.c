/* The serve driver loop (see serve_loop.h). */
#include "launch/serve_loop.h"

#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "dist/scheduler.h"

typedef struct {
  Server *server;
  Scheduler *scheduler;
  ServeJob **active;          /* admitted to the scheduler, not finished (at most max_jobs) */
  int64_t num_active, capacity;
  int64_t next_id;            /* the id scheduler_submit gives next */
  ByteBuffer scratch;
  int64_t window_tokens;      /* tokens/s for /metrics, over windows of ~2 s */
  double window_start, tokens_per_second;
} Loop;

static ServeJob *find(const Loop *l, int64_t id, int64_t *index) {
  for (int64_t i = 0; i < l->num_active; i++) {
    if (l->active[i]->sched_id == id) {
      if (index) *index = i;
      return l->active[i];
    }
  }
  return NULL;
}

static void on_token(void *ctx, int64_t id, int32_t token, const float *logits) {
  (void)logits;
  Loop *l = ctx;
  ServeJob *job = find(l, id, NULL);
  if (job == NULL) return;
  l->window_tokens++;
  l->scratch.length = 0;
  bool oom = false;
  /* A stop string ends the reply; the sequence is cancelled after this step (not inside it). */
  if (!reply_push(job->reply, token, &l->scratch, &oom) || oom) job->stop_requested = true;
  if (l->scratch.length > 0) server_deliver(l->server, job, l->scratch.data, l->scratch.length, false, false);
}

static void on_finish(void *ctx, int64_t id, FinishReason reason, const char *error) {
  (void)error; /* prompts that cannot fit were refused with a 400 before they got here */
  Loop *l = ctx;
  int64_t index = 0;
  ServeJob *job = find(l, id, &index);
  if (job == NULL) return;
  l->active[index] = l->active[--l->num_active];
  l->scratch.length = 0;
  const bool ok = reply_finish(job->reply, reason == FINISH_LENGTH || reason == FINISH_CONTEXT, &l->scratch);
  const ChatUsage usage = reply_usage(job->reply);
  server_count_finished(l->server, usage.prompt_tokens, usage.completion_tokens);
  server_deliver(l->server, job, l->scratch.data, l->scratch.length, true, !ok);
}

/* A new job into the scheduler (or answered at once: its client left while it was queued). */
static void admit(Loop *l, ServeJob *job) {
  if (server_client_gone(job) || l->num_active == l->capacity) {
    server_deliver(l->server, job, NULL, 0, true, false);
    return;
  }
  job->sched_id = l->next_id;
  l->active[l->num_active++] = job;
  const SeqRequest q = {.prompt = job->prompt, .prompt_len = job->prompt_len, .max_tokens = job->max_tokens,
                        .temperature = job->temperature, .top_p = job->top_p, .seed = job->seed,
                        .stop_ids = job->stop_ids, .num_stop_ids = job->num_stop_ids};
  const int64_t id = scheduler_submit(l->scheduler, &q);
  if (id >= 0) {
    l->next_id = id + 1;
  } else { /* out of memory: a 500 */
    int64_t index = 0;
    if (find(l, job->sched_id, &index)) l->active[index] = l->active[--l->num_active];
    server_deliver(l->server, job, NULL, 0, true, true);
  }
}

/* Sequences whose reply hit a stop string, or whose client left, end before the next step. */
static void cancel_finished(Loop *l) {
  for (int64_t i = l->num_active; i-- > 0;) {
    if (i >= l->num_active) continue; /* a cancel removed more than one */
    ServeJob *job = l->active[i];
    if (job->stop_requested || server_client_gone(job)) scheduler_cancel(l->scheduler, job->sched_id);
  }
}

static void update_metrics(Loop *l) {
  const double now = dist_time(), elapsed = now - l->window_start;
  if (elapsed >= 2.0) {
    l->tokens_per_second = (double)l->window_tokens / elapsed;
    l->window_tokens = 0;
    l->window_start = now;
  }
  server_set_load(l->server, scheduler_running(l->scheduler), scheduler_waiting(l->scheduler), l->tokens_per_second);
}

int serve_loop_run(Engine *engine, Server *server, const volatile sig_atomic_t *stop) {
  Loop l = {.server = server, .capacity = 1 << 16, .window_start = dist_time()};
  l.active = calloc((size_t)l.capacity, sizeof *l.active);
  const SchedulerOptions options = {0};
  const SchedulerCallbacks callbacks = {&l, on_token, on_finish};
  if (l.active == NULL || scheduler_init(&l.scheduler, engine, &options, &callbacks) != STATUS_OK) {
    free(l.active);
    return 1;
  }
  int status = 0;
  bool draining = false;
  for (;;) {
    if (*stop && !draining) {
      draining = true;
      status_note("serve: draining — finishing %lld request(s), refusing new ones", (long long)l.num_active);
      server_begin_drain(server);
    }
    const bool idle = scheduler_idle(l.scheduler);
    ServeJob *jobs = server_take_jobs(server, idle && !draining ? 0.05 : 0.0);
    if (draining && idle && jobs == NULL && l.num_active == 0) break;
    while (jobs != NULL) {
      ServeJob *next = jobs->next;
      jobs->next = NULL;
      admit(&l, jobs);
      jobs = next;
    }
    cancel_finished(&l);
    if (!scheduler_idle(l.scheduler) && scheduler_step(l.scheduler) != STATUS_OK) {
      status = 1;
      break;
    }
    update_metrics(&l);
  }
  while (l.num_active > 0) { /* the engine failed: every client gets its answer's end */
    ServeJob *job = l.active[--l.num_active];
    server_deliver(server, job, NULL, 0, true, true);
  }
  scheduler_free(l.scheduler);
  buffer_free(&l.scratch);
  free(l.active);
  return status;
}
