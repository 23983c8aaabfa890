/* The HTTP side of `gptoss serve`: libmicrohttpd on rank 0, the OpenAI API's routes.
 *
 * libmicrohttpd runs one internal polling thread (epoll) for every connection. That thread only
 * parses: it checks the route, the API key and the limits, turns a request body into a job (the
 * prompt's ids and a Reply, serve/reply.h) and queues it. The driver thread — the one that owns
 * every MPI call — takes jobs with server_take_jobs, runs them through the scheduler and hands
 * each job's bytes back with server_deliver. A connection waiting for its answer is suspended
 * (libmicrohttpd's suspend/resume) and resumed when bytes or the end arrive, so no thread ever
 * blocks on a client and no client blocks the batch.
 *
 * Routes: GET /health (503 until server_set_ready, then 200), GET /v1/models, GET /metrics
 * (Prometheus text), POST /v1/chat/completions, POST /v1/completions. Anything else is a 404 or
 * a 405; every refusal carries an OpenAI-style error object. */
#ifndef GPTOSS_SERVE_SERVER_H
#define GPTOSS_SERVE_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "model/status.h"
#include "serve/buffer.h"
#include "serve/reply.h"

typedef struct {
  const char *host;           /* address to bind (numeric IPv4 or IPv6) */
  int port;                   /* 0: any free port (server_port tells which) */
  const char *api_key;        /* NULL: no key required */
  size_t max_body_bytes;      /* a larger request body is a 413 */
  size_t max_header_bytes;    /* the request line and headers together; more is a 431 */
  unsigned timeout_seconds;   /* a connection idle (or this slow) for longer is closed */
  int64_t max_jobs;           /* requests admitted at once (running + queued); more get a 503 */
} ServerOptions;

/* What the server needs of the loaded model to take requests. */
typedef struct {
  const char *model_name;     /* in /v1/models and every response */
  const Tokenizer *tok;
  bool text;                  /* the vocabulary holds o200k_harmony: chat and text prompts work */
  int64_t vocab_size;
  int64_t context_length;
  int64_t default_max_tokens; /* chat requests without max_tokens: 0 = up to the context's end */
  const int32_t *eos_ids;     /* the model's end-of-text ids (stop every request) */
  size_t num_eos_ids;
  const char *current_date;   /* "YYYY-MM-DD" for the harmony system message */
  uint64_t seed;              /* requests without a seed draw one from this */
} ServerModel;

typedef struct Server Server;

/* A request on its way through the driver. The network thread fills everything above `lock`
 * before queueing; the driver then owns `reply` and `sched_id`. The rest is shared, under lock. */
typedef struct ServeJob {
  int32_t *prompt;
  int64_t prompt_len;
  int64_t max_tokens;
  float temperature, top_p;
  uint64_t seed;
  int32_t stop_ids[16];
  int64_t num_stop_ids;
  Reply *reply;
  int64_t sched_id;
  bool stop_requested;        /* driver: a stop string ended the reply; cancel after the step */
  struct ServeJob *next;      /* the queue */
  struct Server *server;

  pthread_mutex_t lock;
  int refs;                   /* the connection's and the driver's */
  ByteBuffer out;             /* bytes for the client, not yet sent */
  bool stream, done, failed, suspended, client_gone;
  void *connection;           /* struct MHD_Connection *, NULL once it closed */
  int fd;
} ServeJob;

/* Refuses (exit status 2 material) a --host that is not a numeric IPv4 or IPv6 address. */
Status server_check_host(const char *host);

/* Binds and starts answering (/health says 503 until server_set_ready). */
Status server_start(Server **out, const ServerOptions *options);
int server_port(const Server *s);
/* `model`'s pointers must outlive the server. */
void server_set_ready(Server *s, const ServerModel *model);

/* Driver thread: the jobs queued since the last call, oldest first (NULL when none), waiting up
 * to `wait_seconds` for one. */
ServeJob *server_take_jobs(Server *s, double wait_seconds);
/* Driver thread: hands `n` bytes to the job's client; `done` marks the end of the answer
 * (`failed`: a 500, or the end of a stream, instead). Drops the driver's hold when done. */
void server_deliver(Server *s, ServeJob *job, const char *bytes, size_t n, bool done, bool failed);
/* Driver thread: true when the job's client has gone (closed or reset its connection). */
bool server_client_gone(ServeJob *job);

/* Stops taking connections and answers new requests 503 (draining for a shutdown). */
void server_begin_drain(Server *s);
/* Waits (at most `grace_seconds`) for answers in flight to reach their clients, then stops. */
void server_stop(Server *s, double grace_seconds);

/* Driver thread: figures for /metrics. */
void server_set_load(Server *s, int64_t busy_slots, int64_t queued, double tokens_per_second);
void server_count_finished(Server *s, int64_t prompt_tokens, int64_t completion_tokens);

#endif
