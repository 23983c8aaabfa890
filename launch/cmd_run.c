/* gptoss score / gptoss generate: the model commands. Every rank runs main's prolog (parse
 * options, load its shards); rank 0 then drives and every other rank serves (dist/engine.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/engine.h"
#include "io/logits_file.h"
#include "launch/args.h"
#include "launch/commands.h"
#include "model/sampler.h"

typedef struct {
  const char *model;
  const char *tokens_text;
  const char *logits_path;
  int64_t max_tokens;
  int64_t context;
  int64_t chunk;
  int64_t seed;
  double temperature;
  double top_p;
  bool ids;
  bool no_verify;
  bool quiet;
} RunOptions;

#define COMMON_OPTIONS(o)                                                                           \
  {"--model", OPT_STRING, &(o).model, "model directory written by gptoss convert"},                 \
  {"--tokens", OPT_STRING, &(o).tokens_text, "input token ids, e.g. 1,2,3"},                        \
  {"--context", OPT_INT, &(o).context, "context length (default min(max_position_embeddings, 4096))"}, \
  {"--chunk", OPT_INT, &(o).chunk, "tokens per forward step (default 128; 1 = token by token)"},    \
  {"--no-verify", OPT_FLAG, &(o).no_verify, "skip the checksum check of the weights at load"},      \
  {"--quiet", OPT_FLAG, &(o).quiet, "no notes on stderr"}

typedef int (*DriverFn)(Engine *engine, const RunOptions *o, const int32_t *tokens, int64_t num_tokens);

/* The shape of every model command: prolog (options — errors printed by rank 0 only, since
 * every rank sees the same argv — then the engine), the loop (rank 0 drives, the others
 * serve), epilog (rank 0 releases the workers with its exit status). */
static int run_model_command(int argc, char **argv, const Option *options, int num_options, const char *usage,
                             RunOptions *o, DriverFn driver) {
  RankInfo rank;
  if (dist_init(&argc, &argv, &rank) != STATUS_OK) return 1;
  bool help = false;
  int32_t *tokens = NULL;
  int64_t num_tokens = 0;
  status_set_silent(rank.rank != 0);
  Status st = args_parse(argc, argv, options, num_options, &help);
  if (st == STATUS_OK && !help && !o->model) st = status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: --model is required", argv[0]);
  if (st == STATUS_OK && !help && !o->tokens_text) {
    st = status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: --tokens is required", argv[0]);
  }
  if (st == STATUS_OK && !help) st = args_parse_ids(o->tokens_text, &tokens, &num_tokens);
  status_set_silent(0);
  if (help && rank.rank == 0) args_print_help(stdout, usage, options, num_options);
  if (st != STATUS_OK || help) {
    free(tokens);
    dist_finalize();
    return st != STATUS_OK ? 2 : 0;
  }
  status_set_quiet(o->quiet);
  Engine engine;
  EngineOptions eo = {o->context, o->chunk, !o->no_verify};
  int status = 1;
  if (engine_load(&engine, rank, o->model, &eo) == STATUS_OK) {
    if (rank.rank == 0) {
      status_note("loaded %s on %d rank(s) in %.2f s (%.1f MB of weights on rank 0)", o->model, rank.num_ranks,
                  engine.load_seconds, (double)engine.weights.num_bytes / 1e6);
      status = driver(&engine, o, tokens, num_tokens);
      engine_stop(&engine, status);
    } else {
      status = engine_serve(&engine);
    }
  }
  engine_free(&engine);
  free(tokens);
  dist_finalize();
  return status;
}

/* Mean negative log-likelihood of tokens[1..n) under rows [0, n-1) of logits. */
static double mean_nll(const float *logits, const int32_t *tokens, int64_t n, int64_t vocab) {
  double total = 0.0;
  for (int64_t t = 0; t + 1 < n; t++) {
    const float *row = logits + t * vocab;
    double max = row[0], sum = 0.0;
    for (int64_t v = 1; v < vocab; v++) max = row[v] > max ? row[v] : max;
    for (int64_t v = 0; v < vocab; v++) sum += exp((double)row[v] - max);
    total += log(sum) + max - (double)row[tokens[t + 1]];
  }
  return total / (double)(n - 1);
}

static int drive_score(Engine *e, const RunOptions *o, const int32_t *tokens, int64_t n) {
  const int64_t V = e->config.vocab_size;
  float *logits = malloc((size_t)(n * V) * sizeof *logits);
  if (!logits) {
    status_error(STATUS_OUT_OF_MEMORY, "%lld x %lld logits", (long long)n, (long long)V);
    return 1;
  }
  Status st = engine_reset(e);
  if (st == STATUS_OK) st = engine_score(e, tokens, n, logits);
  if (st == STATUS_OK && o->logits_path) st = logits_file_write(o->logits_path, logits, n, V);
  if (st == STATUS_OK) {
    if (n > 1) printf("mean_nll %.6f over %lld tokens\n", mean_nll(logits, tokens, n, V), (long long)(n - 1));
    else printf("mean_nll n/a (one token)\n");
  }
  free(logits);
  return st == STATUS_OK ? 0 : 1;
}

int cmd_score(int argc, char **argv) {
  RunOptions o = {0};
  const Option options[] = {
      COMMON_OPTIONS(o),
      {"--logits", OPT_STRING, &o.logits_path, "write /logits float32 [T, vocab] to this HDF5 file"},
  };
  return run_model_command(argc, argv, options, (int)(sizeof options / sizeof options[0]),
                           "gptoss score --model MODEL --tokens 1,2,3 [--logits OUT.h5]", &o, drive_score);
}

static void print_token(const RunOptions *o, int32_t token, bool first) {
  (void)o;
  printf(first ? "%d" : " %d", token);
  fflush(stdout);
}

static int drive_generate(Engine *e, const RunOptions *o, const int32_t *prompt, int64_t n) {
  if (o->temperature < 0.0 || !(o->top_p > 0.0 && o->top_p <= 1.0)) {
    status_error(STATUS_INVALID_ARGUMENT, "--temperature must be >= 0 and --top-p in (0, 1]");
    return 2;
  }
  if (!o->ids) {
    status_error(STATUS_UNSUPPORTED, "text output needs the tokenizer; pass --ids to print token ids");
    return 2;
  }
  const int64_t V = e->config.vocab_size;
  float *logits = o->temperature > 0.0 ? malloc((size_t)V * sizeof *logits) : NULL;
  Sampler sampler;
  sampler_init(&sampler, (uint64_t)o->seed, (float)o->temperature, (float)o->top_p);
  Status st = engine_reset(e);
  int32_t next = 0;
  const int32_t *feed = prompt;
  int64_t feed_len = n;
  int64_t generated = 0;
  while (st == STATUS_OK && generated < o->max_tokens) {
    if (engine_position(e) + feed_len > e->transformer.context_length) {
      status_note("stopped: the context length %lld is full", (long long)e->transformer.context_length);
      break;
    }
    if (o->temperature == 0.0) {
      st = engine_next_greedy(e, feed, feed_len, &next);
    } else {
      st = engine_next_logits(e, feed, feed_len, logits);
      if (st == STATUS_OK) next = sampler_sample(&sampler, logits, V);
    }
    if (st != STATUS_OK) break;
    print_token(o, next, generated == 0);
    generated++;
    if (config_is_eos(&e->config, next)) break;
    feed = &next;
    feed_len = 1;
  }
  if (generated > 0) putchar('\n');
  fflush(stdout);
  free(logits);
  sampler_free(&sampler);
  return st == STATUS_OK ? 0 : 1;
}

int cmd_generate(int argc, char **argv) {
  RunOptions o = {.max_tokens = 16, .temperature = 1.0, .top_p = 1.0};
  const Option options[] = {
      COMMON_OPTIONS(o),
      {"--max-tokens", OPT_INT, &o.max_tokens, "stop after this many new tokens (default 16)"},
      {"--temperature", OPT_DOUBLE, &o.temperature, "0 = greedy (ties: lowest id); default 1"},
      {"--top-p", OPT_DOUBLE, &o.top_p, "nucleus sampling mass (default 1)"},
      {"--seed", OPT_INT, &o.seed, "sampling seed (default 0): same seed, same tokens, any rank count"},
      {"--ids", OPT_FLAG, &o.ids, "print the generated token ids on one line"},
  };
  return run_model_command(argc, argv, options, (int)(sizeof options / sizeof options[0]),
                           "gptoss generate --model MODEL --tokens 1,2,3 --ids [--max-tokens N] [--temperature T]",
                           &o, drive_generate);
}
