/* gptoss generate --batch FILE: offline batch inference. Every request of a JSON Lines file
 * (io/batch_file.h) runs through the scheduler (dist/scheduler.h), --parallel of them at once;
 * one JSON object per request goes to stdout in input order, each as soon as it and every
 * request before it are done.
 *
 * A request's prompt is a harmony conversation (the same system message as generate --prompt)
 * unless it gives "tokens" or "raw": true. Its "text" is the final channel's text of a harmony
 * reply (the analysis stays out), or the decoded tokens otherwise; "tokens" is everything it
 * generated, the stop token included. The exit status is 0 when every request ran, 1 when one
 * could not (its line carries "error"), 2 for a malformed file (nothing runs). */
#include "launch/generate_batch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/scheduler.h"
#include "io/batch_file.h"
#include "io/harmony.h"
#include "launch/text.h"

typedef struct {
  TokenList prompt;
  TokenList generated;
  bool harmony;
  FinishReason finish;
  char *error;
} BatchJob;

typedef struct {
  BatchJob *jobs;
  int64_t num_jobs, next_to_write;
  const Tokenizer *tok;
  Status write_status;
  int64_t errors;
} BatchRun;

static void on_token(void *ctx, int64_t id, int32_t token, const float *logits) {
  (void)logits;
  BatchRun *run = ctx;
  token_list_push(&run->jobs[id].generated, token);
}

/* The reply's text: a harmony reply's final channel, or the decoded tokens. Owned by the caller. */
static char *reply_text(const BatchRun *run, const BatchJob *job, size_t *length) {
  char *text = NULL;
  *length = 0;
  if (!run->tok) return NULL;
  const TokenList *g = &job->generated;
  if (!job->harmony) {
    if (tokenizer_decode(run->tok, g->ids, g->num_ids, &text, length) != STATUS_OK) return NULL;
    return text;
  }
  HarmonyParser parser;
  harmony_parser_init(&parser, run->tok, /*after_prompt=*/true);
  status_set_silent(1); /* a reply cut short, or garbled, is reported by its finish reason */
  for (size_t i = 0; i < g->num_ids; i++) {
    const char *delta = NULL;
    size_t n = 0;
    harmony_parser_push(&parser, g->ids[i], &delta, &n);
  }
  harmony_parser_finish(&parser);
  status_set_silent(0);
  HarmonyParsedMessage *messages = NULL;
  size_t num = 0;
  harmony_parser_take_messages(&parser, &messages, &num);
  harmony_parser_free(&parser);
  for (size_t i = num; i-- > 0 && !text;) {
    if (messages[i].channel && !strcmp(messages[i].channel, "final")) text = strdup(messages[i].text);
  }
  harmony_messages_free(messages, num);
  *length = text ? strlen(text) : 0;
  return text;
}

/* Writes every finished request that has no unfinished one before it. */
static void write_ready(BatchRun *run) {
  while (run->next_to_write < run->num_jobs && run->jobs[run->next_to_write].finish != FINISH_NONE) {
    BatchJob *job = &run->jobs[run->next_to_write];
    size_t length = 0;
    char *text = reply_text(run, job, &length);
    const Status st = batch_result_write(stdout, run->next_to_write, job->generated.ids, (int64_t)job->generated.num_ids,
                                         text ? text : "", length, finish_reason_name(job->finish), job->error);
    if (st != STATUS_OK && run->write_status == STATUS_OK) run->write_status = st;
    fflush(stdout);
    free(text);
    token_list_free(&job->generated);
    run->next_to_write++;
  }
}

static void on_finish(void *ctx, int64_t id, FinishReason reason, const char *error) {
  BatchRun *run = ctx;
  run->jobs[id].finish = reason;
  if (error) {
    run->jobs[id].error = strdup(error);
    run->errors++;
  }
  write_ready(run);
}

/* A request's prompt ids: its tokens, its raw text, or its text as a harmony conversation. */
static Status build_request_prompt(const RunOptions *o, const Tokenizer *tok, const BatchRequest *r, BatchJob *job) {
  if (r->tokens) {
    for (int64_t i = 0; i < r->num_tokens; i++) {
      Status st = token_list_push(&job->prompt, r->tokens[i]);
      if (st != STATUS_OK) return st;
    }
    return STATUS_OK;
  }
  const bool raw = r->has_raw ? r->raw : o->raw;
  RunOptions request = *o;
  request.prompt = r->prompt;
  request.raw = raw;
  job->harmony = !raw;
  return generate_build_prompt(&request, tok, &job->prompt);
}

static bool needs_tokenizer(const BatchFile *f) {
  for (int64_t i = 0; i < f->count; i++) {
    if (f->requests[i].prompt) return true;
  }
  return false;
}

/* eos always; harmony's <|return|> and <|call|> for harmony prompts. */
static int64_t stop_ids(const Engine *e, bool harmony, int32_t *out) {
  int64_t n = 0;
  for (int64_t i = 0; i < e->config.num_eos_token_ids; i++) out[n++] = (int32_t)e->config.eos_token_ids[i];
  if (harmony) {
    out[n++] = tokenizer_special_id("<|return|>", strlen("<|return|>"));
    out[n++] = tokenizer_special_id("<|call|>", strlen("<|call|>"));
  }
  return n;
}

static SeqRequest seq_request(const RunOptions *o, const BatchRequest *r, const BatchJob *job, const int32_t *stops,
                              int64_t num_stops) {
  SeqRequest q = {.prompt = job->prompt.ids, .prompt_len = (int64_t)job->prompt.num_ids,
                  .max_tokens = r->max_tokens > 0 ? r->max_tokens : o->max_tokens,
                  .temperature = (float)(isnan(r->temperature) ? o->temperature : r->temperature),
                  .top_p = (float)(isnan(r->top_p) ? o->top_p : r->top_p),
                  .seed = r->has_seed ? r->seed : (uint64_t)o->seed, .stop_ids = stops, .num_stop_ids = num_stops};
  return q;
}

int generate_batch(Engine *e, const RunOptions *o) {
  BatchFile file = {0};
  if (batch_file_read(o->batch_path, e->config.vocab_size, &file) != STATUS_OK) return 2;
  Tokenizer *tok = NULL;
  BatchRun run = {.num_jobs = file.count};
  run.jobs = calloc((size_t)(file.count > 0 ? file.count : 1), sizeof *run.jobs);
  Status st = run.jobs ? STATUS_OK : status_error(STATUS_OUT_OF_MEMORY, "%lld batch requests", (long long)file.count);
  /* Text out needs the tokenizer; text in cannot do without it. */
  if (st == STATUS_OK) {
    status_set_silent(!needs_tokenizer(&file));
    const Status tok_st = text_load_tokenizer(e, o->model, &tok);
    status_set_silent(0);
    if (tok_st != STATUS_OK && needs_tokenizer(&file)) st = tok_st;
  }
  run.tok = tok;
  for (int64_t i = 0; st == STATUS_OK && i < file.count; i++) {
    st = build_request_prompt(o, tok, &file.requests[i], &run.jobs[i]);
    if (st != STATUS_OK) status_error(st, "%s:%lld: the prompt could not be built", o->batch_path, (long long)file.requests[i].line);
  }
  Scheduler *scheduler = NULL;
  const SchedulerOptions options = {0};
  const SchedulerCallbacks callbacks = {&run, on_token, on_finish};
  if (st == STATUS_OK) st = scheduler_init(&scheduler, e, &options, &callbacks);
  int32_t stops[2][GPTOSS_MAX_EOS + 2];
  const int64_t num_stops[2] = {stop_ids(e, false, stops[0]), stop_ids(e, true, stops[1])};
  for (int64_t i = 0; st == STATUS_OK && i < file.count; i++) {
    const bool harmony = run.jobs[i].harmony;
    const SeqRequest q = seq_request(o, &file.requests[i], &run.jobs[i], stops[harmony], num_stops[harmony]);
    if (scheduler_submit(scheduler, &q) != i) st = status_error(STATUS_OUT_OF_MEMORY, "queueing batch requests");
  }
  if (st == STATUS_OK) st = scheduler_run(scheduler);
  scheduler_free(scheduler);
  for (int64_t i = 0; run.jobs && i < file.count; i++) {
    token_list_free(&run.jobs[i].prompt);
    token_list_free(&run.jobs[i].generated);
    free(run.jobs[i].error);
  }
  free(run.jobs);
  tokenizer_free(tok);
  batch_file_free(&file);
  if (st == STATUS_OK && run.write_status != STATUS_OK) {
    st = status_error(run.write_status, "writing the batch results to standard output failed");
  }
  if (st != STATUS_OK) return 1;
  return run.errors > 0 ? 1 : 0;
}
