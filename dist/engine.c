/* Loading a rank's shards and the rank-0 driver / worker protocol (see engine.h).
 *
 * A command is a fixed header broadcast from rank 0, followed by its token ids; then every rank
 * runs the same function for it. Token ids are checked on rank 0 before they are broadcast, so
 * a bad id is reported once and never reaches a collective. */
#include "dist/engine.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "io/checksum.h"
#include "model/kernels.h"
#include "model/plan.h"
#include "model/sampler.h"

/* Prompt tokens per forward step (--chunk): 512 reads each expert's weights once per 512 tokens. */
enum { DEFAULT_CHUNK = 512 };
/* Rows of logits `score` computes per step: it gathers every row, and a row is V floats. */
enum { SCORE_ROWS = 64 };

typedef enum {
  OP_STOP = 0,
  OP_RESET,
  OP_SCORE,
  OP_NEXT_GREEDY,
  OP_NEXT_LOGITS,
  OP_CHECK_REPLICAS,
  OP_MARK,
  OP_ROLLBACK,
  OP_FEED,
  OP_NEXT_SAMPLE,
  OP_STATS,
  OP_STATS_RESET,
} Op;

typedef struct {
  int32_t op;
  int32_t exit_status; /* OP_STOP */
  int64_t num_tokens;
  float temperature;   /* OP_NEXT_SAMPLE */
  float top_p;
  double uniform;      /* rank 0's draw in [0, 1) */
} Command;

/* ---------- loading ---------- */

/* Rank 0 reads the manifest and checks the rank count; everyone learns the outcome, so these
 * errors are printed once. */
static Status agree_on_manifest(Engine *e, const char *dir, Manifest *m) {
  Status st = STATUS_OK;
  if (e->rank.rank == 0) {
    st = modeldir_read_manifest(dir, m);
    Range shards;
    if (st == STATUS_OK) st = plan_rank_shards(&m->config, e->rank.num_ranks, 0, &shards);
  }
  int32_t failed = st != STATUS_OK;
  Status bst = dist_bcast(&failed, sizeof failed, 0);
  if (bst != STATUS_OK) return bst;
  if (failed) return e->rank.rank == 0 ? st : STATUS_REMOTE_ERROR;
  /* The config and sizes travel as the struct; the two arrays follow. */
  Manifest copy = *m;
  bst = dist_bcast(&copy, sizeof copy, 0);
  if (bst != STATUS_OK) return bst;
  const size_t num_files = (size_t)copy.num_shards + 1;
  if (e->rank.rank != 0) {
    *m = copy;
    m->file_bytes = calloc(num_files, sizeof *m->file_bytes);
    m->checksums = calloc(num_files * (size_t)copy.checksums_per_file, sizeof *m->checksums);
    if (!m->file_bytes || !m->checksums) return status_error(STATUS_OUT_OF_MEMORY, "manifest");
  }
  bst = dist_bcast(m->file_bytes, num_files * sizeof *m->file_bytes, 0);
  if (bst == STATUS_OK) bst = dist_bcast(m->checksums, num_files * (size_t)m->checksums_per_file * sizeof *m->checksums, 0);
  return bst;
}

static Status init_run_state(Engine *e, const EngineOptions *o) {
  const GptOssConfig *c = &e->config;
  int64_t context = o->context_length;
  if (context <= 0) context = c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096;
  if (context > c->max_position_embeddings) {
    return status_error(STATUS_INVALID_ARGUMENT, "--context %lld exceeds max_position_embeddings = %lld",
                        (long long)context, (long long)c->max_position_embeddings);
  }
  const int64_t chunk = o->max_chunk > 0 ? o->max_chunk : DEFAULT_CHUNK;
  const TransformerOptions to = {.context_length = context, .max_chunk = chunk, .num_slots = 1};
  Status st = transformer_init(&e->transformer, c, e->shards, e->weights.shards, &e->weights.replicated, &to);
  if (st != STATUS_OK) return st;
  e->local_vocab = transformer_local_vocab(&e->transformer);
  e->local_logits = malloc((size_t)(SCORE_ROWS * range_size(e->local_vocab)) * sizeof *e->local_logits);
  if (!e->local_logits) return status_error(STATUS_OUT_OF_MEMORY, "logits buffer");
  return dist_reducer_init(&e->reducer, config_num_shards(c), range_size(e->shards), e->transformer.max_rows * c->hidden_size);
}

Status engine_load(Engine *e, RankInfo rank, const char *model_dir, const EngineOptions *o) {
  memset(e, 0, sizeof *e);
  e->rank = rank;
  const double start = dist_time();
  Manifest manifest;
  memset(&manifest, 0, sizeof manifest);
  Status st = agree_on_manifest(e, model_dir, &manifest);
  if (st != STATUS_OK) {
    modeldir_free_manifest(&manifest);
    return st;
  }
  e->config = manifest.config;
  st = plan_rank_shards(&e->config, rank.num_ranks, rank.rank, &e->shards);
  if (st == STATUS_OK) st = modeldir_load_weights(model_dir, &manifest, e->shards, o->verify_checksums, &e->weights);
  modeldir_free_manifest(&manifest);
  st = dist_agree(st);
  if (st != STATUS_OK) return st;
  /* Options are the same on every rank, so a bad --context fails everywhere at once. */
  status_set_silent(rank.rank != 0);
  st = init_run_state(e, o);
  status_set_silent(0);
  st = dist_agree(st);
  e->load_seconds = dist_time() - start;
  return st;
}

void engine_free(Engine *e) {
  transformer_free(&e->transformer);
  dist_reducer_free(&e->reducer);
  free(e->local_logits);
  modeldir_free_weights(&e->weights);
  memset(e, 0, sizeof *e);
}

int64_t engine_position(const Engine *e) { return transformer_position(&e->transformer, 0); }

/* ---------- the operations, run by every rank ---------- */

static Status run_forward(Engine *e, const int32_t *tokens, int64_t n, bool all_rows) {
  ShardReducer reducer = dist_reducer_as_shard_reducer(&e->reducer);
  e->tokens_forwarded += n;
  return transformer_forward(&e->transformer, tokens, n, &reducer, e->local_logits, all_rows);
}

static Status do_stats(Engine *e, RankStats *stats_out, bool reset) {
  const PhaseTimes *t = &e->transformer.times;
  const RankStats mine = {t->embed, t->attention, t->experts, t->reduce, t->unembed, e->sample_seconds,
                          (double)(e->reducer.bytes_sent + e->sample_bytes_sent), (double)e->tokens_forwarded};
  void *all = NULL;
  size_t bytes = 0;
  Status st = dist_gather_bytes(&mine, sizeof mine, &all, &bytes);
  if (st == STATUS_OK && all && stats_out) memcpy(stats_out, all, bytes);
  free(all);
  if (reset) {
    memset(&e->transformer.times, 0, sizeof e->transformer.times);
    e->reducer.bytes_sent = e->sample_bytes_sent = 0;
    e->sample_seconds = 0.0;
    e->tokens_forwarded = 0;
  }
  return st;
}

void engine_print_stats(const Engine *e, const RankStats *stats, FILE *out) {
  const int n = e->rank.num_ranks;
  const struct { const char *name; size_t offset; } rows[] = {
      {"embedding", offsetof(RankStats, embed)},       {"attention", offsetof(RankStats, attention)},
      {"experts", offsetof(RankStats, experts)},       {"allreduce wait", offsetof(RankStats, reduce)},
      {"unembedding", offsetof(RankStats, unembed)},   {"sampling", offsetof(RankStats, sampling)},
  };
  fprintf(out, "%-16s %10s %10s %10s   (seconds over %d rank%s)\n", "phase", "min", "avg", "max", n, n > 1 ? "s" : "");
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    double lo = 0, hi = 0, sum = 0;
    for (int r = 0; r < n; r++) {
      const double v = *(const double *)((const char *)&stats[r] + rows[i].offset);
      lo = r == 0 || v < lo ? v : lo;
      hi = r == 0 || v > hi ? v : hi;
      sum += v;
    }
    fprintf(out, "%-16s %10.4f %10.4f %10.4f\n", rows[i].name, lo, sum / n, hi);
  }
  double lo = 0, hi = 0, sum = 0;
  for (int r = 0; r < n; r++) {
    const double v = stats[r].tokens > 0 ? stats[r].bytes_sent / stats[r].tokens : 0.0;
    lo = r == 0 || v < lo ? v : lo;
    hi = r == 0 || v > hi ? v : hi;
    sum += v;
  }
  fprintf(out, "%-16s %10.0f %10.0f %10.0f   (bytes each rank sent per token)\n", "sent/token", lo, sum / n, hi);
}

static Status gather_logits(Engine *e, int64_t rows, float *logits_out) {
  const double start = dist_time();
  const int64_t local = range_size(e->local_vocab);
  Status st = dist_gather_columns(e->local_logits, rows, local, logits_out, e->config.vocab_size);
  if (e->rank.rank != 0) e->sample_bytes_sent += (uint64_t)(rows * local) * sizeof(float);
  e->sample_seconds += dist_time() - start;
  return st;
}

static Status do_score(Engine *e, const int32_t *tokens, int64_t n, float *logits_out) {
  const int64_t V = e->config.vocab_size;
  for (int64_t done = 0; done < n; done += SCORE_ROWS) {
    const int64_t len = n - done < SCORE_ROWS ? n - done : SCORE_ROWS;
    Status st = run_forward(e, tokens + done, len, true);
    if (st == STATUS_OK) st = gather_logits(e, len, logits_out ? logits_out + done * V : NULL);
    if (st != STATUS_OK) return st;
  }
  return STATUS_OK;
}

static Status do_next_greedy(Engine *e, const int32_t *tokens, int64_t n, int32_t *next_out) {
  Status st = run_forward(e, tokens, n, false);
  if (st != STATUS_OK) return st;
  const double start = dist_time();
  const int64_t local = argmax_f32(e->local_logits, range_size(e->local_vocab));
  int64_t best = 0;
  st = dist_argmax(e->local_logits[local], e->local_vocab.begin + local, &best);
  e->sample_bytes_sent += (sizeof(float) + sizeof(int)) * (uint64_t)(e->rank.num_ranks - 1);
  e->sample_seconds += dist_time() - start;
  if (st == STATUS_OK && next_out) *next_out = (int32_t)best;
  return st;
}

static Status do_next_logits(Engine *e, const int32_t *tokens, int64_t n, float *logits_out) {
  Status st = run_forward(e, tokens, n, false);
  return st == STATUS_OK ? gather_logits(e, 1, logits_out) : st;
}

/* This rank's logits for vocabulary shard `local_shard`: a view into local_logits. */
static const float *shard_logits(const Engine *e, int64_t local_shard, Range *vocab_out) {
  *vocab_out = e->weights.shards[local_shard].slice.vocab;
  return e->local_logits + (vocab_out->begin - e->local_vocab.begin);
}

enum { SAMPLE_FIRST_CANDIDATES = 32 };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Nucleus sampling: each shard sends rank 0 the head of its candidates, most likely first — 32,
 * then 4x as many in each further round, only what it has not sent yet — until rank 0 can tell
 * that nothing held back belongs to the nucleus (model/sampler.h). A peaked distribution (a
 * trained model's usual case) settles in one round of 32 candidates per shard. */
static Status sample_nucleus(Engine *e, const Command *cmd, float max, double total, int32_t *id_out) {
  const int64_t num_local = range_size(e->shards), S = config_num_shards(&e->config);
  const int64_t V = e->config.vocab_size;
  const size_t local_vocab = (size_t)range_size(e->local_vocab);
  SampleCandidate *sorted = malloc(local_vocab * sizeof *sorted + 1), *send = malloc(local_vocab * sizeof *send + 1);
  /* Rank 0: every shard's received head, kept at the shard's vocabulary offset. */
  SampleCandidate *heads = e->rank.rank == 0 ? malloc((size_t)V * sizeof *heads) : NULL;
  SampleCandidate *merged = e->rank.rank == 0 ? malloc((size_t)V * sizeof *merged) : NULL;
  int64_t *counts = calloc((size_t)S, sizeof *counts), *sizes = calloc((size_t)S, sizeof *sizes);
  Status st = sorted && send && counts && sizes && (e->rank.rank != 0 || (heads && merged))
                  ? STATUS_OK
                  : status_error(STATUS_OUT_OF_MEMORY, "sampling candidates");
  Range vocab;
  for (int64_t ls = 0; st == STATUS_OK && ls < num_local; ls++) {
    const float *logits = shard_logits(e, ls, &vocab);
    sampler_slice_sorted(logits, range_size(vocab), (int32_t)vocab.begin, max, cmd->temperature,
                         sorted + (vocab.begin - e->local_vocab.begin));
  }
  for (int64_t s = 0; s < S && sizes; s++) sizes[s] = range_size(plan_shard(&e->config, s).vocab);
  int32_t decided = 0;
  for (int64_t prev = 0, head = SAMPLE_FIRST_CANDIDATES; st == STATUS_OK && !decided; prev = head, head *= 4) {
    int64_t count = 0;
    for (int64_t ls = 0; ls < num_local; ls++) {
      shard_logits(e, ls, &vocab);
      const int64_t from = min64(prev, range_size(vocab)), to = min64(head, range_size(vocab));
      memcpy(send + count, sorted + (vocab.begin - e->local_vocab.begin) + from, (size_t)(to - from) * sizeof *send);
      count += to - from;
    }
    void *all = NULL;
    size_t all_bytes = 0;
    st = dist_gather_bytes(send, (size_t)count * sizeof *send, &all, &all_bytes);
    if (e->rank.rank != 0) e->sample_bytes_sent += (uint64_t)count * sizeof *send;
    if (st == STATUS_OK && e->rank.rank == 0) {
      /* The gather is in rank order, so in shard order: file each shard's new candidates. */
      const SampleCandidate *in = all;
      int64_t n = 0;
      for (int64_t s = 0; s < S; s++) {
        const int64_t from = min64(prev, sizes[s]), to = min64(head, sizes[s]);
        const int64_t offset = plan_shard(&e->config, s).vocab.begin;
        memcpy(heads + offset + from, in, (size_t)(to - from) * sizeof *in);
        in += to - from;
        memcpy(merged + n, heads + offset, (size_t)to * sizeof *merged);
        counts[s] = to;
        n += to;
      }
      decided = sampler_pick_from_slices(merged, counts, sizes, S, total, cmd->top_p, cmd->uniform, id_out);
    }
    free(all);
    if (st == STATUS_OK) st = dist_bcast(&decided, sizeof decided, 0);
  }
  free(sorted);
  free(send);
  free(heads);
  free(merged);
  free(counts);
  free(sizes);
  return st;
}

/* Sampling without gathering the vocabulary (model/sampler.h): every shard reduces its slice to
 * its maximum and its mass, which all ranks exchange (2·S numbers). With top_p = 1 the owner of
 * the chosen shard finds the token by inverse CDF and broadcasts it; with top_p < 1 rank 0
 * collects just enough of each shard's most likely tokens (sample_nucleus). */
static Status do_next_sample(Engine *e, const Command *cmd, const int32_t *tokens, int32_t *next_out) {
  Status st = run_forward(e, tokens, cmd->num_tokens, false);
  if (st != STATUS_OK) return st;
  const double start = dist_time();
  const int64_t num_local = range_size(e->shards), S = config_num_shards(&e->config);
  float local_max[num_local], maxes[S];
  double local_mass[num_local], masses[S];
  Range vocab;
  for (int64_t ls = 0; ls < num_local; ls++) {
    const float *logits = shard_logits(e, ls, &vocab);
    local_max[ls] = sampler_slice_max(logits, range_size(vocab));
  }
  if (st == STATUS_OK) st = dist_allgather_bytes(local_max, sizeof local_max, maxes);
  if (st != STATUS_OK) return st;
  float max = maxes[0];
  for (int64_t s = 1; s < S; s++) max = maxes[s] > max ? maxes[s] : max;
  for (int64_t ls = 0; ls < num_local; ls++) {
    const float *logits = shard_logits(e, ls, &vocab);
    local_mass[ls] = sampler_slice_mass(logits, range_size(vocab), max, cmd->temperature);
  }
  st = dist_allgather_bytes(local_mass, sizeof local_mass, masses);
  if (st != STATUS_OK) return st;
  double total = 0.0;
  for (int64_t s = 0; s < S; s++) total += masses[s];
  e->sample_bytes_sent += (sizeof local_max + sizeof local_mass) * (uint64_t)(e->rank.num_ranks - 1);
  int32_t id = 0;
  if (cmd->top_p >= 1.0f) {
    const double target = cmd->uniform * total;
    double before = 0.0;
    int64_t chosen = 0;
    for (int64_t s = 0; s < S; s++) {
      if (masses[s] <= 0.0) continue;
      chosen = s;
      if (before + masses[s] > target) break;
      before += masses[s];
    }
    const int owner = (int)(chosen / num_local);
    if (e->rank.rank == owner) {
      const float *logits = shard_logits(e, chosen - e->shards.begin, &vocab);
      id = sampler_slice_pick(logits, range_size(vocab), (int32_t)vocab.begin, max, cmd->temperature, before, target);
      e->sample_bytes_sent += sizeof id * (uint64_t)(e->rank.num_ranks - 1);
    }
    st = dist_bcast(&id, sizeof id, owner);
  } else {
    st = sample_nucleus(e, cmd, max, total, &id);
  }
  if (st == STATUS_OK && next_out) *next_out = id;
  e->sample_seconds += dist_time() - start;
  return st;
}

/* Every rank hashes its copy of the replicated hidden state; they must be bitwise equal. */
static Status do_check_replicas(Engine *e, int32_t *agree_out) {
  const Transformer *t = &e->transformer;
  const uint64_t hash = checksum64(t->scratch.x, (size_t)(t->max_rows * t->model.config.hidden_size) * sizeof(float));
  bool equal = false;
  Status st = dist_all_equal_u64(hash, &equal);
  if (st == STATUS_OK && agree_out) *agree_out = equal;
  return st;
}

static Status execute(Engine *e, const Command *cmd, const int32_t *tokens, float *logits_out, int32_t *next_out) {
  switch ((Op)cmd->op) {
    case OP_RESET:
      transformer_reset(&e->transformer, 0);
      return STATUS_OK;
    case OP_SCORE: return do_score(e, tokens, cmd->num_tokens, logits_out);
    case OP_NEXT_GREEDY: return do_next_greedy(e, tokens, cmd->num_tokens, next_out);
    case OP_NEXT_LOGITS: return do_next_logits(e, tokens, cmd->num_tokens, logits_out);
    case OP_CHECK_REPLICAS: return do_check_replicas(e, next_out);
    case OP_NEXT_SAMPLE: return do_next_sample(e, cmd, tokens, next_out);
    case OP_STATS: return do_stats(e, (RankStats *)logits_out, false);
    case OP_STATS_RESET: return do_stats(e, (RankStats *)logits_out, true);
    case OP_FEED: {
      ShardReducer reducer = dist_reducer_as_shard_reducer(&e->reducer);
      return transformer_forward(&e->transformer, tokens, cmd->num_tokens, &reducer, NULL, false);
    }
    case OP_MARK: return transformer_mark(&e->transformer, 0);
    case OP_ROLLBACK: return transformer_rollback(&e->transformer, 0);
    case OP_STOP: return STATUS_OK;
  }
  return status_error(STATUS_INVALID_ARGUMENT, "unknown command %d", cmd->op);
}

/* ---------- rank 0 ---------- */

static Status check_tokens(const Engine *e, const int32_t *tokens, int64_t n) {
  if (n <= 0) return status_error(STATUS_INVALID_ARGUMENT, "no tokens given");
  for (int64_t i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= e->config.vocab_size) {
      return status_error(STATUS_INVALID_ARGUMENT,
                          "token id %d (position %lld of the input) is outside the model's vocabulary [0, %lld)",
                          tokens[i], (long long)i, (long long)e->config.vocab_size);
    }
  }
  if (engine_position(e) + n > e->transformer.context_length) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "%lld tokens do not fit: %lld of the context length %lld are used (raise --context)",
                        (long long)n, (long long)engine_position(e), (long long)e->transformer.context_length);
  }
  return STATUS_OK;
}

static Status drive_command(Engine *e, Command cmd, const int32_t *tokens, float *logits_out, int32_t *next_out) {
  const Op op = (Op)cmd.op;
  const int64_t n = cmd.num_tokens;
  if (op == OP_SCORE || op == OP_NEXT_GREEDY || op == OP_NEXT_LOGITS || op == OP_FEED || op == OP_NEXT_SAMPLE) {
    Status st = check_tokens(e, tokens, n);
    if (st != STATUS_OK) return st;
  }
  Status st = dist_bcast(&cmd, sizeof cmd, 0);
  if (st == STATUS_OK && n > 0) st = dist_bcast((void *)tokens, (size_t)n * sizeof *tokens, 0);
  if (st == STATUS_OK) st = execute(e, &cmd, tokens, logits_out, next_out);
  /* Inputs were checked before the broadcast, so every rank runs the same steps; a failure now
   * (out of memory, a lost rank) may leave others inside a collective: end the whole job. */
  if (st != STATUS_OK) {
    status_error(st, "stopping all ranks after this error");
    dist_abort(1);
  }
  return st;
}

static Status drive(Engine *e, Op op, const int32_t *tokens, int64_t n, float *logits_out, int32_t *next_out) {
  Command cmd = {.op = op, .num_tokens = n};
  return drive_command(e, cmd, tokens, logits_out, next_out);
}

Status engine_next_sample(Engine *e, const int32_t *tokens, int64_t n, float temperature, float top_p, double uniform,
                          int32_t *next_out) {
  Command cmd = {.op = OP_NEXT_SAMPLE, .num_tokens = n, .temperature = temperature, .top_p = top_p, .uniform = uniform};
  return drive_command(e, cmd, tokens, NULL, next_out);
}

Status engine_collect_stats(Engine *e, RankStats *stats_out, bool reset) {
  return drive(e, reset ? OP_STATS_RESET : OP_STATS, NULL, 0, (float *)stats_out, NULL);
}

Status engine_reset(Engine *e) { return drive(e, OP_RESET, NULL, 0, NULL, NULL); }
Status engine_feed(Engine *e, const int32_t *tokens, int64_t n) { return drive(e, OP_FEED, tokens, n, NULL, NULL); }
Status engine_mark(Engine *e) { return drive(e, OP_MARK, NULL, 0, NULL, NULL); }
Status engine_rollback(Engine *e) { return drive(e, OP_ROLLBACK, NULL, 0, NULL, NULL); }
Status engine_score(Engine *e, const int32_t *tokens, int64_t n, float *logits_out) {
  return drive(e, OP_SCORE, tokens, n, logits_out, NULL);
}
Status engine_next_greedy(Engine *e, const int32_t *tokens, int64_t n, int32_t *next_out) {
  return drive(e, OP_NEXT_GREEDY, tokens, n, NULL, next_out);
}
Status engine_next_logits(Engine *e, const int32_t *tokens, int64_t n, float *logits_out) {
  return drive(e, OP_NEXT_LOGITS, tokens, n, logits_out, NULL);
}

Status engine_replicas_agree(Engine *e, bool *agree_out) {
  int32_t agree = 0;
  Status st = drive(e, OP_CHECK_REPLICAS, NULL, 0, NULL, &agree);
  *agree_out = agree != 0;
  return st;
}

Status engine_stop(Engine *e, int exit_status) {
  if (e->rank.num_ranks == 1) return STATUS_OK;
  Command cmd = {.op = OP_STOP, .exit_status = exit_status, .num_tokens = 0};
  return dist_bcast(&cmd, sizeof cmd, 0);
}

/* ---------- every other rank ---------- */

int engine_serve(Engine *e) {
  int32_t *tokens = NULL;
  int64_t capacity = 0;
  for (;;) {
    Command cmd;
    if (dist_bcast(&cmd, sizeof cmd, 0) != STATUS_OK) break;
    if (cmd.op == OP_STOP) {
      free(tokens);
      return cmd.exit_status;
    }
    if (cmd.num_tokens > capacity) {
      free(tokens);
      capacity = cmd.num_tokens;
      tokens = malloc((size_t)capacity * sizeof *tokens);
      if (!tokens) {
        status_error(STATUS_OUT_OF_MEMORY, "token buffer of %lld", (long long)capacity);
        dist_abort(1);
      }
    }
    if (cmd.num_tokens > 0 && dist_bcast(tokens, (size_t)cmd.num_tokens * sizeof *tokens, 0) != STATUS_OK) break;
    /* A failure here (it printed why) would leave the other ranks waiting in a collective. */
    if (execute(e, &cmd, tokens, NULL, NULL) != STATUS_OK) dist_abort(1);
  }
  free(tokens);
  status_error(STATUS_REMOTE_ERROR, "lost contact with rank 0");
  dist_abort(1);
  return 1;
}
