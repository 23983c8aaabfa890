/* The model commands' common shape (run_model_command) and gptoss score. Every rank runs the
 * prolog (parse options, load its shards); rank 0 then drives and every other rank serves
 * (dist/engine.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/placement.h"
#include "io/logits_file.h"
#include "io/model_dir.h"
#include "launch/commands.h"
#include "launch/run.h"
#include "launch/text.h"

/* The shape of every model command: prolog (options — errors printed by rank 0 only, since
 * every rank sees the same argv — then the engine), the loop (rank 0 drives, the others
 * serve), epilog (rank 0 releases the workers with its exit status). */
/* --context against the model before any weight is mapped: rank 0 reads the small manifest and
 * every rank learns the outcome. A manifest that cannot be read is engine_load's to report. */
static Status check_context_fits_model(const RankInfo *rank, const RunOptions *o) {
  Status st = STATUS_OK;
  if (rank->rank == 0 && o->context > 0) {
    Manifest m;
    memset(&m, 0, sizeof m);
    status_set_silent(1);
    const Status read = modeldir_read_manifest(o->model, &m);
    status_set_silent(0);
    if (read == STATUS_OK && o->context > m.config.max_position_embeddings) {
      st = status_error(STATUS_INVALID_ARGUMENT, "gptoss: --context %lld is outside the allowed range [1, %lld] of this "
                        "model (its max_position_embeddings)", (long long)o->context,
                        (long long)m.config.max_position_embeddings);
    }
    modeldir_free_manifest(&m);
  }
  return dist_agree(st);
}

static void print_stats(Engine *e) {
  RankStats *stats = calloc((size_t)e->rank.num_ranks, sizeof *stats);
  if (stats && engine_collect_stats(e, stats, false) == STATUS_OK) engine_print_stats(e, stats, stderr);
  free(stats);
}

int run_model_command(int argc, char **argv, const Option *options, int num_options, const char *usage,
                             RunOptions *o, DriverFn driver) {
  RankInfo rank;
  if (dist_init(&argc, &argv, &rank) != STATUS_OK) return 1;
  bool help = false;
  int32_t *tokens = NULL;
  int64_t num_tokens = 0;
  status_set_silent(rank.rank != 0);
  Status st = args_parse(argc, argv, options, num_options, &help);
  if (st == STATUS_OK && !help && !o->model) st = status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: --model is required", argv[0]);
  if (st == STATUS_OK && !help && o->needs_input && !o->batch_path && !o->tokens_text == !o->prompt) {
    st = status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: give exactly one of --tokens IDS or --prompt TEXT", argv[0]);
  }
  if (st == STATUS_OK && !help && o->batch_path && (o->tokens_text || o->prompt)) {
    st = status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: --batch takes its prompts from the file; drop --prompt / --tokens",
                      argv[0]);
  }
  if (st == STATUS_OK && !help && o->tokens_text) st = args_parse_ids("--tokens", o->tokens_text, &tokens, &num_tokens);
  if (st == STATUS_OK && !help && o->prepare) st = o->prepare(o);
  if (st == STATUS_OK && !help && (o->threads < 0 || o->threads > 4096)) {
    st = status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: --threads must be 1..4096 (or 0 for the default)", argv[0]);
  }
  status_set_silent(0);
  if (st == STATUS_OK && !help) st = check_context_fits_model(&rank, o);
  if (help && rank.rank == 0) args_print_help(stdout, usage, options, num_options);
  if (st != STATUS_OK || help) {
    free(tokens);
    dist_finalize();
    return st != STATUS_OK ? 2 : 0;
  }
  status_set_quiet(o->quiet);
  /* Before the first parallel region; every rank parsed the same argv, so all get here. */
  Placement placement;
  if (dist_placement_apply((int)o->threads, &placement) != STATUS_OK ||
      (o->verbose && dist_placement_print(&placement, stderr) != STATUS_OK)) {
    dist_abort(1);
  }
  if (o->before_load && dist_agree(o->before_load(o, &rank)) != STATUS_OK) {
    free(tokens);
    dist_finalize();
    return 1;
  }
  Engine engine;
  const EngineOptions eo = {.context_length = o->context, .max_chunk = o->chunk, .num_slots = o->parallel,
                           .verify_checksums = !o->no_verify};
  int status = 1;
  if (engine_load(&engine, rank, o->model, &eo) == STATUS_OK) {
    if (rank.rank == 0) {
      status_note("loaded %s on %d rank(s) in %.2f s (%.1f MB of weights on rank 0)", o->model, rank.num_ranks,
                  engine.load_seconds, (double)engine.weights.num_bytes / 1e6);
      status = driver(&engine, o, tokens, num_tokens);
      if (o->verbose) print_stats(&engine);
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
  int32_t *encoded = NULL;
  if (!tokens) {
    if (text_encode_plain(e, o->model, o->prompt, &encoded, &n) != STATUS_OK) return 1;
    tokens = encoded;
  }
  float *logits = malloc((size_t)(n * V) * sizeof *logits);
  if (!logits) {
    status_error(STATUS_OUT_OF_MEMORY, "%lld x %lld logits", (long long)n, (long long)V);
    free(encoded);
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
  free(encoded);
  return st == STATUS_OK ? 0 : 1;
}

int cmd_score(int argc, char **argv) {
  RunOptions o = {.needs_input = true};
  const Option options[] = {
      RUN_COMMON_OPTIONS(o),
      {"--tokens", OPT_STRING, &o.tokens_text, "input token ids, e.g. 1,2,3"},
      {"--prompt", OPT_STRING, &o.prompt, "input text (plain, no chat format), tokenized with o200k_harmony"},
      {"--logits", OPT_STRING, &o.logits_path, "write /logits float32 [T, vocab] to this HDF5 file"},
  };
  return run_model_command(argc, argv, options, (int)(sizeof options / sizeof options[0]),
                           "gptoss score --model MODEL --tokens 1,2,3 [--logits OUT.h5]", &o, drive_score);
}

