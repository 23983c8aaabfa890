/* gptoss serve: the OpenAI API over HTTP on rank 0 (serve/server.h), every rank computing
 * (launch/serve_loop.h). The HTTP server starts before the model loads, so a port that is taken
 * fails at once and /health answers 503 while the weights map; SIGTERM, SIGINT or SIGUSR1 on
 * rank 0 drains: new requests get a 503, admitted ones finish, and the job exits 0. */
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "launch/commands.h"
#include "launch/run.h"
#include "launch/serve_loop.h"
#include "launch/text.h"
#include "serve/server.h"

#define SERVE_MAX_KEY_BYTES 4096

typedef struct {
  const char *host;
  int64_t port;
  int64_t queue;
  const char *api_key;
  const char *api_key_file;
  const char *model_name;
  int64_t max_body;
  int64_t timeout;
  char key_storage[SERVE_MAX_KEY_BYTES];
  char date_storage[16];
} ServeSettings;

static ServeSettings g_settings = {.host = "127.0.0.1", .port = 8080, .queue = 64, .max_body = 8 << 20, .timeout = 60};
static Server *g_server;
static volatile sig_atomic_t g_stop = 0;

static void on_stop_signal(int signo) {
  (void)signo;
  g_stop = 1;
}

/* The key file's first line, without its newline; refused when empty or too long. */
static Status read_key_file(const char *path, char *out, size_t out_bytes) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return status_error(STATUS_IO_ERROR, "gptoss serve: --api-key-file %s cannot be read", path);
  const bool got = fgets(out, (int)out_bytes, f) != NULL;
  fclose(f);
  out[got ? strcspn(out, "\r\n") : 0] = '\0';
  if (out[0] == '\0' || strlen(out) >= out_bytes - 1) {
    return status_error(STATUS_INVALID_ARGUMENT, "gptoss serve: --api-key-file %s must hold the key on its first line "
                        "(1 to %zu bytes)", path, out_bytes - 2);
  }
  return STATUS_OK;
}

static Status prepare(RunOptions *o) {
  ServeSettings *g = &g_settings;
  if (strcmp(g->host, "localhost") == 0) g->host = "127.0.0.1";
  Status st = server_check_host(g->host);
  if (st != STATUS_OK) return st;
  if (g->api_key && g->api_key_file) {
    return status_error(STATUS_INVALID_ARGUMENT, "gptoss serve: give --api-key or --api-key-file, not both");
  }
  if (g->api_key_file) {
    st = read_key_file(g->api_key_file, g->key_storage, sizeof g->key_storage);
    if (st != STATUS_OK) return st;
    g->api_key = g->key_storage;
  }
  if (o->parallel == 0) o->parallel = 4;
  if (o->date == NULL) { /* the harmony system message's "Current date" */
    const time_t now = time(NULL);
    struct tm day;
    strftime(g->date_storage, sizeof g->date_storage, "%Y-%m-%d", gmtime_r(&now, &day));
    o->date = g->date_storage;
  }
  return STATUS_OK;
}

/* Every rank: SIGTERM, SIGINT and SIGUSR1 drain on rank 0 and are ignored elsewhere (rank 0
 * releases the others once the answers are out). mpirun forwards SIGUSR1 to every rank, but
 * answers its own SIGTERM by killing the job, so `kill -USR1 <mpirun>` is the graceful stop of
 * an mpirun job; SIGTERM reaches rank 0 directly from Slurm (srun, scancel) or kill. Rank 0 also
 * starts listening. */
static Status before_load(RunOptions *o, const RankInfo *rank) {
  struct sigaction sa = {0};
  sa.sa_handler = rank->rank == 0 ? on_stop_signal : SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  if (rank->rank != 0) return STATUS_OK;
  const ServeSettings *g = &g_settings;
  const ServerOptions so = {.host = g->host, .port = (int)g->port, .api_key = g->api_key,
                            .max_body_bytes = (size_t)g->max_body, .max_header_bytes = 64 << 10,
                            .timeout_seconds = (unsigned)g->timeout, .max_jobs = o->parallel + g->queue};
  Status st = server_start(&g_server, &so);
  if (st == STATUS_OK) {
    status_note("serve: listening on http://%s%s%s:%d/ (loading %s)", strchr(g->host, ':') ? "[" : "", g->host,
                strchr(g->host, ':') ? "]" : "", server_port(g_server), o->model);
  }
  return st;
}

static int drive_serve(Engine *e, const RunOptions *o, const int32_t *tokens, int64_t num_tokens) {
  (void)tokens, (void)num_tokens;
  Tokenizer *tok = NULL;
  if (text_load_tokenizer_any(o->model, &tok) != STATUS_OK) return 1;
  const bool text = text_vocab_holds_tokenizer(e);
  if (!text) {
    status_note("serve: this model's vocabulary (%lld ids) cannot hold o200k_harmony: only /v1/completions with "
                "token ids will be served", (long long)e->config.vocab_size);
  }
  int32_t eos[GPTOSS_MAX_EOS];
  for (int64_t i = 0; i < e->config.num_eos_token_ids; i++) eos[i] = (int32_t)e->config.eos_token_ids[i];
  char model_dir[4096];
  snprintf(model_dir, sizeof model_dir, "%s", o->model);
  const char *name = g_settings.model_name ? g_settings.model_name : basename(model_dir);
  const ServerModel model = {.model_name = name, .tok = tok, .vocab_size = e->config.vocab_size,
                             .text = text, .context_length = e->transformer.context_length, .default_max_tokens = o->max_tokens,
                             .eos_ids = eos, .num_eos_ids = (size_t)e->config.num_eos_token_ids,
                             .current_date = o->date, .seed = (uint64_t)o->seed};
  server_set_ready(g_server, &model);
  status_note("serve: ready — model \"%s\", %lld sequence slots of %lld tokens, %lld more may queue", name,
              (long long)o->parallel, (long long)e->transformer.context_length, (long long)g_settings.queue);
  const int status = serve_loop_run(e, g_server, &g_stop);
  server_stop(g_server, 10.0);
  g_server = NULL;
  tokenizer_free(tok);
  if (status == 0) status_note("serve: drained, exiting");
  return status;
}

int cmd_serve(int argc, char **argv) {
  RunOptions o = {.prepare = prepare, .before_load = before_load, .seed = 0};
  ServeSettings *g = &g_settings;
  const Option options[] = {
      RUN_COMMON_OPTIONS(o),
      {"--host", OPT_STRING, &g->host, "address to listen on: numeric, or localhost (default 127.0.0.1; 0.0.0.0 or :: for every interface)"},
      {"--port", OPT_INT, &g->port, "TCP port (default 8080; 0 picks a free one, printed at start)", OPT_RANGE(0, 65535)},
      {"--parallel", OPT_INT, &o.parallel, "sequences generated at once, each with its own KV cache of --context tokens "
       "(default 4; KV memory is allocated for all of them at start)", OPT_RANGE(1, 4096)},
      {"--queue", OPT_INT, &g->queue, "requests that may wait for a free sequence; beyond that a 503 (default 64)",
       OPT_RANGE(0, 60000)},
      {"--api-key", OPT_STRING, &g->api_key, "require 'Authorization: Bearer KEY' (visible in ps: prefer --api-key-file)"},
      {"--api-key-file", OPT_STRING, &g->api_key_file, "read the API key from the first line of this file"},
      {"--model-name", OPT_STRING, &g->model_name, "the model's id in /v1/models and responses (default: the directory's name)"},
      {"--max-tokens", OPT_INT, &o.max_tokens, "chat replies without max_tokens stop here (default 0: at the context's end)",
       OPT_RANGE(0, ARGS_MAX_TOKEN_COUNT)},
      {"--max-body", OPT_INT, &g->max_body, "largest request body in bytes (default 8388608); more is a 413",
       OPT_RANGE(1024, 1LL << 30)},
      {"--timeout", OPT_INT, &g->timeout, "seconds a connection may sit idle or trickle before it is closed (default 60)",
       OPT_RANGE(1, 86400)},
      {"--date", OPT_DATE, &o.date, "current date for the system message, YYYY-MM-DD (default: today, UTC)"},
      {"--seed", OPT_INT, &o.seed, "seeds the draws of requests that give no seed (default 0)", OPT_RANGE(0, INT64_MAX)},
  };
  const int status = run_model_command(argc, argv, options, (int)(sizeof options / sizeof options[0]),
                                       "gptoss serve --model MODEL [--host 127.0.0.1] [--port 8080] [--parallel 4]", &o,
                                       drive_serve);
  if (g_server != NULL) server_stop(g_server, 0.0); /* the model never loaded */
  return status;
}
