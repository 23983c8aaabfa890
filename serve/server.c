/* libmicrohttpd on rank 0 (see server.h). The network thread parses and queues; the driver
 * thread computes and delivers; a job's shared state is under its lock. */
#define _GNU_SOURCE
#include "serve/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io/harmony.h"
#include "serve/chat_prompt.h"
#include "serve/chat_request.h"
#include "serve/completion_request.h"

struct Server {
  struct MHD_Daemon *daemon;
  ServerOptions o;
  ServerModel model;
  int port;
  pthread_mutex_t lock;       /* everything below */
  pthread_cond_t queued;      /* a job was queued */
  bool ready, draining;
  ServeJob *head, *tail;
  int64_t admitted;           /* jobs queued or running (the 503 bound) */
  int64_t live;               /* jobs not yet freed (the drain waits for 0) */
  uint64_t rng;
  /* /metrics */
  int64_t requests, rejected, finished, prompt_tokens, completion_tokens, busy_slots, queue_depth;
  double tokens_per_second;
};

typedef enum { ROUTE_NONE, ROUTE_HEALTH, ROUTE_MODELS, ROUTE_METRICS, ROUTE_CHAT, ROUTE_COMPLETIONS } Route;

/* One HTTP request on a connection (libmicrohttpd's per-request pointer). */
typedef struct {
  Route route;
  ByteBuffer body;
  bool too_large;
  bool refused;               /* answered before its body was read */
  ServeJob *job;
} Request;

/* ---- jobs ---- */

static void job_release(Server *s, ServeJob *job) {
  pthread_mutex_lock(&job->lock);
  const int refs = --job->refs;
  pthread_mutex_unlock(&job->lock);
  if (refs > 0) return;
  free(job->prompt);
  reply_free(job->reply);
  buffer_free(&job->out);
  pthread_mutex_destroy(&job->lock);
  free(job);
  pthread_mutex_lock(&s->lock);
  s->live--;
  pthread_mutex_unlock(&s->lock);
}

static uint64_t next_random(Server *s) {
  pthread_mutex_lock(&s->lock);
  uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
  pthread_mutex_unlock(&s->lock);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* ---- responses ---- */

static enum MHD_Result queue(Server *s, struct MHD_Connection *c, unsigned status, struct MHD_Response *r) {
  if (r == NULL) return MHD_NO;
  pthread_mutex_lock(&s->lock);
  s->requests++;
  if (status >= 400) s->rejected++;
  pthread_mutex_unlock(&s->lock);
  const enum MHD_Result result = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return result;
}

static enum MHD_Result respond(Server *s, struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                               size_t length) {
  struct MHD_Response *r = MHD_create_response_from_buffer(length, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL) return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (status == MHD_HTTP_SERVICE_UNAVAILABLE) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, POST");
  }
  if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  return queue(s, c, status, r);
}

static enum MHD_Result respond_error(Server *s, struct MHD_Connection *c, const ApiError *error) {
  char *body = api_error_json(error);
  const enum MHD_Result result =
      body ? respond(s, c, (unsigned)error->http_status, "application/json", body, strlen(body)) : MHD_NO;
  free(body);
  return result;
}

/* An error of `type` (e.g. "server_error") at `status`. */
static enum MHD_Result refuse(Server *s, struct MHD_Connection *c, unsigned status, const char *type, const char *code,
                              const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result refuse(Server *s, struct MHD_Connection *c, unsigned status, const char *type, const char *code,
                              const char *fmt, ...) {
  ApiError e = {.http_status = (int)status, .type = type, .code = code};
  va_list args;
  va_start(args, fmt);
  vsnprintf(e.message, sizeof e.message, fmt, args);
  va_end(args);
  return respond_error(s, c, &e);
}

/* ---- the simple routes ---- */

static enum MHD_Result answer_health(Server *s, struct MHD_Connection *c) {
  pthread_mutex_lock(&s->lock);
  const bool ready = s->ready, draining = s->draining;
  pthread_mutex_unlock(&s->lock);
  const char *body = draining ? "{\"status\":\"draining\"}" : ready ? "{\"status\":\"ok\"}" : "{\"status\":\"loading\"}";
  return respond(s, c, ready && !draining ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body,
                 strlen(body));
}

static enum MHD_Result answer_models(Server *s, struct MHD_Connection *c) {
  char body[512];
  const int n = snprintf(body, sizeof body,
                         "{\"object\":\"list\",\"data\":[{\"id\":\"%.200s\",\"object\":\"model\",\"created\":0,"
                         "\"owned_by\":\"gptoss-mpi\",\"max_model_len\":%lld}]}",
                         s->model.model_name, (long long)s->model.context_length);
  return respond(s, c, MHD_HTTP_OK, "application/json", body, (size_t)n);
}

static enum MHD_Result answer_metrics(Server *s, struct MHD_Connection *c) {
  char body[2048];
  pthread_mutex_lock(&s->lock);
  const int n = snprintf(
      body, sizeof body,
      "# HELP gptoss_ready 1 once the model is loaded and the server takes requests.\n# TYPE gptoss_ready gauge\n"
      "gptoss_ready %d\n"
      "# HELP gptoss_http_requests_total HTTP requests answered.\n# TYPE gptoss_http_requests_total counter\n"
      "gptoss_http_requests_total %lld\n"
      "# HELP gptoss_http_requests_rejected_total HTTP requests answered with a 4xx or 5xx.\n"
      "# TYPE gptoss_http_requests_rejected_total counter\ngptoss_http_requests_rejected_total %lld\n"
      "# HELP gptoss_requests_finished_total Generation requests finished.\n"
      "# TYPE gptoss_requests_finished_total counter\ngptoss_requests_finished_total %lld\n"
      "# HELP gptoss_prompt_tokens_total Prompt tokens of finished requests.\n"
      "# TYPE gptoss_prompt_tokens_total counter\ngptoss_prompt_tokens_total %lld\n"
      "# HELP gptoss_generation_tokens_total Tokens generated by finished requests.\n"
      "# TYPE gptoss_generation_tokens_total counter\ngptoss_generation_tokens_total %lld\n"
      "# HELP gptoss_generation_tokens_per_second Tokens generated per second over the last seconds.\n"
      "# TYPE gptoss_generation_tokens_per_second gauge\ngptoss_generation_tokens_per_second %.3f\n"
      "# HELP gptoss_busy_slots Sequence slots in use.\n# TYPE gptoss_busy_slots gauge\ngptoss_busy_slots %lld\n"
      "# HELP gptoss_queue_depth Requests waiting for a slot.\n# TYPE gptoss_queue_depth gauge\n"
      "gptoss_queue_depth %lld\n",
      s->ready ? 1 : 0, (long long)s->requests, (long long)s->rejected, (long long)s->finished,
      (long long)s->prompt_tokens, (long long)s->completion_tokens, s->tokens_per_second, (long long)s->busy_slots,
      (long long)s->queue_depth);
  pthread_mutex_unlock(&s->lock);
  return respond(s, c, MHD_HTTP_OK, "text/plain; version=0.0.4", body, (size_t)n);
}

/* ---- building a job from a request body ---- */

static ServeJob *job_new(Server *s) {
  ServeJob *job = calloc(1, sizeof *job);
  if (job == NULL) return NULL;
  pthread_mutex_init(&job->lock, NULL);
  job->server = s;
  job->fd = -1;
  job->sched_id = -1;
  return job;
}

static void job_free_unqueued(ServeJob *job) {
  free(job->prompt);
  reply_free(job->reply);
  pthread_mutex_destroy(&job->lock);
  free(job);
}

static bool out_of_memory(ApiError *error) {
  api_error_set(error, 500, NULL, NULL, "out of memory");
  error->type = "server_error";
  return false;
}

/* The generation settings both endpoints share, and the prompt's fit in the context. */
static bool set_generation(Server *s, ServeJob *job, const ApiGeneration *g, int64_t default_max, ApiError *error) {
  const int64_t context = s->model.context_length;
  if (job->prompt_len >= context) {
    api_error_set(error, 400, "messages", "context_length_exceeded",
                  "the prompt is %lld tokens but this server's context holds %lld (including the reply); "
                  "shorten the prompt or start the server with a larger --context",
                  (long long)job->prompt_len, (long long)context);
    return false;
  }
  job->max_tokens = g->max_tokens > 0 ? g->max_tokens : default_max > 0 ? default_max : context - job->prompt_len;
  job->temperature = (float)g->temperature;
  job->top_p = (float)g->top_p;
  job->seed = g->has_seed ? g->seed : next_random(s);
  job->stream = g->stream;
  for (size_t i = 0; i < s->model.num_eos_ids && job->num_stop_ids < 14; i++) {
    job->stop_ids[job->num_stop_ids++] = s->model.eos_ids[i];
  }
  return true;
}

static void make_id(Server *s, const char *prefix, char *out, size_t out_bytes) {
  snprintf(out, out_bytes, "%s%016llx", prefix, (unsigned long long)next_random(s));
}

static bool make_reply(Server *s, ServeJob *job, ReplyKind kind, const ApiGeneration *g, ApiError *error) {
  char id[48];
  make_id(s, kind == REPLY_CHAT ? "chatcmpl-" : "cmpl-", id, sizeof id);
  const ReplyOptions ro = {.kind = kind, .stream = g->stream, .include_usage = g->include_usage,
                           .info = {.id = id, .model = s->model.model_name, .created = (int64_t)time(NULL)},
                           .stop = g->stop, .num_stop = g->num_stop,
                           .stop_ids = job->stop_ids, .num_stop_ids = (size_t)job->num_stop_ids,
                           .prompt_tokens = job->prompt_len, .return_token_ids = g->return_token_ids && !g->stream};
  job->reply = reply_new(s->model.tok, &ro);
  return job->reply != NULL || out_of_memory(error);
}

static bool take_ids(ServeJob *job, TokenList *ids) {
  job->prompt = ids->ids;
  job->prompt_len = (int64_t)ids->num_ids;
  *ids = (TokenList){0};
  return true;
}

static bool refuse_text(const Server *s, const char *param, ApiError *error) {
  api_error_set(error, 400, param, "unsupported_model",
                "this model's vocabulary (%lld ids) cannot hold the o200k_harmony tokenizer: it takes only "
                "/v1/completions with a prompt of token ids", (long long)s->model.vocab_size);
  return false;
}

static bool build_chat(Server *s, const Request *req, ServeJob *job, ApiError *error) {
  if (!s->model.text) return refuse_text(s, "messages", error);
  ChatRequest r;
  if (!chat_request_parse(req->body.data ? req->body.data : "", req->body.length, &r, error)) return false;
  ChatPrompt prompt;
  bool ok = chat_prompt_build(&r, s->model.current_date, &prompt, error);
  TokenList ids = {0};
  if (ok) {
    status_set_silent(1);
    const Status st = harmony_render_prompt(s->model.tok, &prompt.prompt, &ids);
    status_set_silent(0);
    if (st == STATUS_OUT_OF_MEMORY) ok = out_of_memory(error);
    else if (st != STATUS_OK) ok = false, api_error_set(error, 400, "messages", NULL, "a message is not valid UTF-8 text");
    chat_prompt_free(&prompt);
  }
  ok = ok && take_ids(job, &ids) && set_generation(s, job, &r.gen, s->model.default_max_tokens, error);
  if (ok) {
    job->stop_ids[job->num_stop_ids++] = TOKEN_RETURN;
    job->stop_ids[job->num_stop_ids++] = TOKEN_CALL;
  }
  ok = ok && make_reply(s, job, REPLY_CHAT, &r.gen, error);
  token_list_free(&ids);
  chat_request_free(&r);
  return ok;
}

static bool build_completion(Server *s, const Request *req, ServeJob *job, ApiError *error) {
  CompletionRequest r;
  if (!completion_request_parse(req->body.data ? req->body.data : "", req->body.length, s->model.vocab_size, &r,
                                error)) {
    return false;
  }
  bool ok = true;
  TokenList ids = {0};
  if (r.prompt_text != NULL && !s->model.text) {
    ok = refuse_text(s, "prompt", error);
  } else if (r.prompt_text != NULL) {
    status_set_silent(1);
    const Status st = tokenizer_encode_append(s->model.tok, r.prompt_text, r.prompt_bytes, false, &ids);
    status_set_silent(0);
    if (st == STATUS_OUT_OF_MEMORY) ok = out_of_memory(error);
    else if (st != STATUS_OK) ok = false, api_error_set(error, 400, "prompt", NULL, "'prompt' is not valid UTF-8 text");
  } else {
    for (size_t i = 0; ok && i < r.num_prompt_ids; i++) ok = token_list_push(&ids, r.prompt_ids[i]) == STATUS_OK;
    if (!ok) out_of_memory(error);
  }
  ok = ok && take_ids(job, &ids) && set_generation(s, job, &r.gen, COMPLETION_DEFAULT_MAX_TOKENS, error) &&
       make_reply(s, job, REPLY_COMPLETION, &r.gen, error);
  token_list_free(&ids);
  completion_request_free(&r);
  return ok;
}

/* Queues the job unless the server is full or draining (then a 503 says which). */
static bool admit(Server *s, ServeJob *job, ApiError *error) {
  pthread_mutex_lock(&s->lock);
  const bool draining = s->draining, full = s->admitted >= s->o.max_jobs;
  if (!draining && !full) {
    s->admitted++;
    s->live++;
    if (s->tail) s->tail->next = job;
    else s->head = job;
    s->tail = job;
    pthread_cond_signal(&s->queued);
  }
  pthread_mutex_unlock(&s->lock);
  if (draining) api_error_set(error, 503, NULL, NULL, "the server is shutting down");
  else if (full) {
    api_error_set(error, 503, NULL, NULL, "the server is busy: %lld requests are running or queued; retry shortly",
                  (long long)s->o.max_jobs);
  }
  if (draining || full) error->type = "server_error";
  return !draining && !full;
}

/* ---- answering a job: streamed, or all at the end ---- */

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  ServeJob *job = cls;
  pthread_mutex_lock(&job->lock);
  ssize_t n = 0;
  if (job->out.length > 0) {
    n = (ssize_t)(job->out.length < max ? job->out.length : max);
    memcpy(buf, job->out.data, (size_t)n);
    buffer_consume(&job->out, (size_t)n);
  } else if (job->done) {
    n = MHD_CONTENT_READER_END_OF_STREAM;
  } else {
    job->suspended = true;
    MHD_suspend_connection(job->connection);
  }
  pthread_mutex_unlock(&job->lock);
  return n;
}

static void free_stream(void *cls) {
  ServeJob *job = cls;
  job_release(job->server, job);
}

static enum MHD_Result start_stream(Server *s, struct MHD_Connection *c, ServeJob *job) {
  pthread_mutex_lock(&job->lock);
  job->refs++; /* the response's */
  pthread_mutex_unlock(&job->lock);
  struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, read_stream, job, free_stream);
  if (r == NULL) {
    job_release(s, job);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  MHD_add_response_header(r, "X-Accel-Buffering", "no");
  return queue(s, c, MHD_HTTP_OK, r);
}

/* A non-streamed job: its body when done, else the connection waits (suspended) for it. */
static enum MHD_Result answer_when_done(Server *s, struct MHD_Connection *c, ServeJob *job) {
  pthread_mutex_lock(&job->lock);
  if (!job->done) {
    job->suspended = true;
    MHD_suspend_connection(c);
    pthread_mutex_unlock(&job->lock);
    return MHD_YES;
  }
  pthread_mutex_unlock(&job->lock);
  if (job->failed) return refuse(s, c, 500, "server_error", NULL, "the server ran out of memory for this answer");
  return respond(s, c, MHD_HTTP_OK, "application/json", job->out.data ? job->out.data : "", job->out.length);
}

static enum MHD_Result submit(Server *s, struct MHD_Connection *c, Request *req) {
  ServeJob *job = job_new(s);
  ApiError error = {0};
  bool ok = job != NULL || out_of_memory(&error);
  ok = ok && (req->route == ROUTE_CHAT ? build_chat(s, req, job, &error) : build_completion(s, req, job, &error));
  if (ok) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    job->fd = info ? info->connect_fd : -1;
    job->connection = c;
    job->refs = 2; /* the request's and the driver's */
    req->job = job;
  }
  if (ok && !admit(s, job, &error)) {
    req->job = NULL;
    ok = false;
  }
  if (!ok) {
    if (job) job_free_unqueued(job);
    return respond_error(s, c, &error);
  }
  return job->stream ? start_stream(s, c, job) : answer_when_done(s, c, job);
}

/* ---- the request handler ---- */

static Route route_of(const char *url) {
  static const struct { const char *path; Route route; } routes[] = {
      {"/health", ROUTE_HEALTH}, {"/v1/models", ROUTE_MODELS}, {"/metrics", ROUTE_METRICS},
      {"/v1/chat/completions", ROUTE_CHAT}, {"/v1/completions", ROUTE_COMPLETIONS},
  };
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    if (strcmp(url, routes[i].path) == 0) return routes[i].route;
  }
  return ROUTE_NONE;
}

static bool is_post_route(Route route) { return route == ROUTE_CHAT || route == ROUTE_COMPLETIONS; }

/* "Authorization: Bearer KEY", compared in constant time (for keys of one length). */
static bool authorized(const Server *s, struct MHD_Connection *c) {
  if (s->o.api_key == NULL) return true;
  const char *header = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (header == NULL || strncmp(header, "Bearer ", 7) != 0) return false;
  const char *given = header + 7;
  const size_t want = strlen(s->o.api_key), got = strlen(given);
  unsigned char diff = (unsigned char)(want != got);
  for (size_t i = 0; i < want; i++) diff |= (unsigned char)(s->o.api_key[i] ^ (i < got ? given[i] : 0));
  return diff == 0;
}

/* First call for a request (headers read, no body yet): refuses what can be refused at once
 * (true, with libmicrohttpd's result in *result). */
static bool refused_early(Server *s, struct MHD_Connection *c, const char *url, const char *method, Route route,
                          enum MHD_Result *result) {
  const bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0, post = strcmp(method, MHD_HTTP_METHOD_POST) == 0;
  const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (route == ROUTE_NONE) {
    *result = refuse(s, c, 404, "invalid_request_error", "unknown_url",
                     "no route %.100s: this server has POST /v1/chat/completions, POST /v1/completions, "
                     "GET /v1/models, GET /health and GET /metrics", url);
  } else if (is_post_route(route) ? !post : !get) {
    *result = refuse(s, c, 405, "invalid_request_error", "method_not_allowed", "%.20s is not allowed on %s; use %s",
                     method, url, is_post_route(route) ? "POST" : "GET");
  } else if (route != ROUTE_HEALTH && !authorized(s, c)) {
    *result = refuse(s, c, 401, "invalid_request_error", "invalid_api_key",
                     "missing or incorrect API key: send the header 'Authorization: Bearer KEY'");
  } else if (length != NULL && strtoull(length, NULL, 10) > s->o.max_body_bytes) {
    *result = refuse(s, c, 413, "invalid_request_error", "request_too_large",
                     "the body is %.20s bytes; this server takes at most %zu (--max-body)", length, s->o.max_body_bytes);
  } else {
    return false;
  }
  return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_bytes, void **state) {
  (void)version;
  Server *s = cls;
  Request *req = *state;
  if (req == NULL) {
    req = calloc(1, sizeof *req);
    if (req == NULL) return MHD_NO;
    *state = req;
    req->route = route_of(url);
    enum MHD_Result result = MHD_YES;
    req->refused = refused_early(s, c, url, method, req->route, &result);
    return result;
  }
  if (req->refused) { /* the answer is queued: the body is not wanted */
    *upload_bytes = 0;
    return MHD_YES;
  }
  if (req->job) return answer_when_done(s, c, req->job); /* resumed */
  if (*upload_bytes > 0) {
    if (req->body.length + *upload_bytes > s->o.max_body_bytes) req->too_large = true;
    if (!req->too_large && !buffer_append(&req->body, upload, *upload_bytes)) return MHD_NO;
    *upload_bytes = 0;
    return MHD_YES;
  }
  if (req->too_large) {
    return refuse(s, c, 413, "invalid_request_error", "request_too_large",
                  "the body is larger than this server takes (%zu bytes, --max-body)", s->o.max_body_bytes);
  }
  pthread_mutex_lock(&s->lock);
  const bool ready = s->ready;
  pthread_mutex_unlock(&s->lock);
  if (req->route == ROUTE_HEALTH) return answer_health(s, c);
  if (req->route == ROUTE_METRICS) return answer_metrics(s, c);
  if (!ready) return refuse(s, c, 503, "server_error", NULL, "the model is still loading; retry when /health says ok");
  if (req->route == ROUTE_MODELS) return answer_models(s, c);
  return submit(s, c, req);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode toe) {
  (void)c;
  Server *s = cls;
  Request *req = *state;
  if (req == NULL) return;
  if (req->job) {
    pthread_mutex_lock(&req->job->lock);
    req->job->connection = NULL;
    req->job->client_gone |= toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    pthread_mutex_unlock(&req->job->lock);
    job_release(s, req->job);
  }
  buffer_free(&req->body);
  free(req);
  *state = NULL;
}

/* ---- the driver's side ---- */

ServeJob *server_take_jobs(Server *s, double wait_seconds) {
  pthread_mutex_lock(&s->lock);
  if (s->head == NULL && wait_seconds > 0) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    const long long ns = until.tv_nsec + (long long)(wait_seconds * 1e9);
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    pthread_cond_timedwait(&s->queued, &s->lock, &until);
  }
  ServeJob *jobs = s->head;
  s->head = s->tail = NULL;
  pthread_mutex_unlock(&s->lock);
  return jobs;
}

void server_deliver(Server *s, ServeJob *job, const char *bytes, size_t n, bool done, bool failed) {
  if (done) { /* before the client can see its answer and send the next request */
    pthread_mutex_lock(&s->lock);
    s->admitted--;
    pthread_mutex_unlock(&s->lock);
  }
  pthread_mutex_lock(&job->lock);
  /* Out of memory for the bytes: the client's answer ends (a 500, or the stream stops); the
   * driver still releases its hold only with its own `done`. */
  const bool kept = buffer_append(&job->out, bytes, n);
  job->done |= done || !kept;
  job->failed |= failed || !kept;
  if (job->suspended && job->connection != NULL && (n > 0 || done)) {
    job->suspended = false;
    MHD_resume_connection(job->connection);
  }
  pthread_mutex_unlock(&job->lock);
  if (done) job_release(s, job);
}

bool server_client_gone(ServeJob *job) {
  pthread_mutex_lock(&job->lock);
  if (!job->client_gone && job->connection != NULL && job->fd >= 0) {
    char byte;
    const ssize_t got = recv(job->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) job->client_gone = true;
  }
  const bool gone = job->client_gone || job->connection == NULL;
  pthread_mutex_unlock(&job->lock);
  return gone;
}

void server_set_load(Server *s, int64_t busy_slots, int64_t queued, double tokens_per_second) {
  pthread_mutex_lock(&s->lock);
  s->busy_slots = busy_slots;
  s->queue_depth = queued;
  s->tokens_per_second = tokens_per_second;
  pthread_mutex_unlock(&s->lock);
}

void server_count_finished(Server *s, int64_t prompt_tokens, int64_t completion_tokens) {
  pthread_mutex_lock(&s->lock);
  s->finished++;
  s->prompt_tokens += prompt_tokens;
  s->completion_tokens += completion_tokens;
  pthread_mutex_unlock(&s->lock);
}

/* ---- start and stop ---- */

static void log_mhd(void *cls, const char *fmt, va_list args) {
  (void)cls;
  fputs("gptoss serve: http: ", stderr);
  vfprintf(stderr, fmt, args);
}

Status server_check_host(const char *host) {
  unsigned char addr[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1) return STATUS_OK;
  return status_error(STATUS_INVALID_ARGUMENT,
                      "gptoss serve: --host %s is not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::)",
                      host);
}

Status server_start(Server **out, const ServerOptions *o) {
  *out = NULL;
  struct sockaddr_storage addr;
  memset(&addr, 0, sizeof addr);
  struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  if (o->port < 0 || o->port > 65535) {
    return status_error(STATUS_INVALID_ARGUMENT, "gptoss serve: --port %d is not a port (0..65535)", o->port);
  }
  if (inet_pton(AF_INET, o->host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)o->port);
  } else if (inet_pton(AF_INET6, o->host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)o->port);
    flags |= MHD_USE_IPv6;
  } else {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "gptoss serve: --host %s is not a numeric IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::)",
                        o->host);
  }
  Server *s = calloc(1, sizeof *s);
  if (s == NULL) return status_error(STATUS_OUT_OF_MEMORY, "the HTTP server");
  s->o = *o;
  s->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
  pthread_mutex_init(&s->lock, NULL);
  pthread_cond_init(&s->queued, NULL);
  s->daemon = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                               MHD_OPTION_EXTERNAL_LOGGER, log_mhd, NULL,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                               MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_seconds,
                               MHD_OPTION_CONNECTION_MEMORY_LIMIT, o->max_header_bytes,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                               MHD_OPTION_END);
  if (s->daemon == NULL) {
    const int err = errno;
    pthread_cond_destroy(&s->queued);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return status_error(STATUS_IO_ERROR,
                        "gptoss serve: cannot listen on %s port %d: %s (another server on that port? choose another "
                        "with --port)", o->host, o->port, strerror(err));
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? info->port : o->port;
  *out = s;
  return STATUS_OK;
}

int server_port(const Server *s) { return s->port; }

void server_set_ready(Server *s, const ServerModel *model) {
  pthread_mutex_lock(&s->lock);
  s->model = *model;
  s->rng ^= model->seed;
  s->ready = true;
  pthread_mutex_unlock(&s->lock);
}

void server_begin_drain(Server *s) {
  pthread_mutex_lock(&s->lock);
  const bool was = s->draining;
  s->draining = true;
  pthread_mutex_unlock(&s->lock);
  if (was) return;
  const MHD_socket listener = MHD_quiesce_daemon(s->daemon);
  if (listener != MHD_INVALID_SOCKET) close(listener);
}

void server_stop(Server *s, double grace_seconds) {
  if (s == NULL) return;
  for (double waited = 0; waited < grace_seconds; waited += 0.01) {
    pthread_mutex_lock(&s->lock);
    const int64_t live = s->live;
    pthread_mutex_unlock(&s->lock);
    if (live == 0) break;
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  MHD_stop_daemon(s->daemon);
  pthread_cond_destroy(&s->queued);
  pthread_mutex_destroy(&s->lock);
  free(s);
}
