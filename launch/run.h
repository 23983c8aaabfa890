/* What the model commands (score, generate, chat) share: their options and the prolog /
 * drive-or-serve / epilog shape every rank runs. */
#ifndef GPTOSS_LAUNCH_RUN_H
#define GPTOSS_LAUNCH_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "dist/engine.h"
#include "launch/args.h"

typedef struct RunOptions {
  const char *model;
  const char *tokens_text;
  const char *prompt;
  const char *logits_path;
  const char *system;
  const char *developer;
  const char *reasoning;
  const char *date;
  const char *batch_path;  /* generate --batch */
  int64_t max_tokens;
  int64_t context;
  int64_t chunk;
  int64_t seed;
  int64_t parallel;   /* --parallel: sequences at once (generate --batch, bench) */
  int64_t threads;    /* --threads; 0 = OMP_NUM_THREADS or the rank's share of its node's CPUs */
  double temperature;
  double top_p;
  bool ids;
  bool raw;
  bool show_reasoning;
  bool no_verify;
  bool quiet;
  bool verbose;
  bool needs_input;   /* the command requires --tokens or --prompt */
  /* Called on every rank once the options are parsed, before anything is loaded: a command's own
   * checks and derived settings (e.g. --parallel from bench --concurrency). */
  Status (*prepare)(struct RunOptions *o);
  /* Called on every rank after the checks, just before the model is loaded (serve starts its
   * HTTP server on rank 0 here, so /health answers while loading); a failure on any rank stops
   * every rank with exit status 1. */
  Status (*before_load)(struct RunOptions *o, const RankInfo *rank);
} RunOptions;

/* A larger prefill step only grows the scratch buffers: 512 already reads each weight once per
 * 512 tokens. */
#define RUN_MAX_CHUNK 65536

#define RUN_COMMON_OPTIONS(o)                                                                         \
  {"--model", OPT_STRING, &(o).model, "model directory written by gptoss convert"},                   \
  {"--context", OPT_INT, &(o).context, "context length, at most max_position_embeddings (default min(that, 4096))", \
   OPT_RANGE(1, ARGS_MAX_TOKEN_COUNT)},                                                                \
  {"--chunk", OPT_INT, &(o).chunk, "tokens per forward step (default 512; 1 = token by token)",       \
   OPT_RANGE(1, RUN_MAX_CHUNK)},                                                                       \
  {"--no-verify", OPT_FLAG, &(o).no_verify, "skip the checksum check of the weights at load"},        \
  {"--threads", OPT_INT, &(o).threads, "OpenMP threads per rank (default: OMP_NUM_THREADS, else the rank's share of its node's CPUs)", OPT_RANGE(1, 4096)}, \
  {"--quiet", OPT_FLAG, &(o).quiet, "no notes on stderr"},                                             \
  {"--verbose", OPT_FLAG, &(o).verbose, "at the end, per-phase time (min/avg/max over ranks), bytes sent"}

/* Rank 0's part of a command; returns the exit status. tokens: the parsed --tokens (or NULL). */
typedef int (*DriverFn)(Engine *engine, const RunOptions *o, const int32_t *tokens, int64_t num_tokens);

int run_model_command(int argc, char **argv, const Option *options, int num_options, const char *usage,
                      RunOptions *o, DriverFn driver);

#endif
