/* Loading a rank's shards and the rank-0 driver / worker protocol (see engine.h).
 *
 * A command is a fixed header broadcast from rank 0, followed by its token ids; then every rank
 * runs the same function for it. Token ids are checked on rank 0 before they are broadcast, so
 * a bad id is reported once and never reaches a collective. */
#include "dist/engine.h"

#include <math.h>
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
  OP_STEP,
} Op;

/* Broadcast first; then a payload of num_segments EngineSegments followed by num_tokens ids. */
typedef struct {
  int32_t op;
  int32_t exit_status; /* OP_STOP */
  int64_t num_tokens;
  int64_t num_segments; /* OP_STEP */
  int32_t gather_logits; /* OP_STEP: rank 0 also gets the chosen rows' logits */
  float temperature;   /* OP_NEXT_SAMPLE */
  float top_p;
  double uniform;      /* rank 0's draw in [0, 1) */
} Command;

/* Where an operation puts what rank 0 asked for (other ranks pass none). */
typedef struct {
  float *logits;        /* OP_SCORE [n, V], OP_NEXT_LOGITS [V] */
  int32_t *next;        /* OP_NEXT_GREEDY, OP_NEXT_SAMPLE: one id; OP_STEP: one per choosing segment */
  RankStats *stats;     /* OP_STATS*: [num_ranks] */
  bool *agree;          /* OP_CHECK_REPLICAS */
} OpResults;

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
  st = STATUS_OK;
  if (e->rank.rank != 0) {
    *m = copy;
    m->file_bytes = calloc(num_files, sizeof *m->file_bytes);
    m->checksums = calloc(num_files * (size_t)copy.checksums_per_file, sizeof *m->checksums);
    if (!m->file_bytes || !m->checksums) st = status_error(STATUS_OUT_OF_MEMORY, "manifest arrays of %zu files", num_files);
  }
  /* Every rank must know the arrays have somewhere to go before rank 0 sends them. */
  st = dist_agree(st);
  if (st != STATUS_OK) return st;
  bst = dist_bcast(m->file_bytes, num_files * sizeof *m->file_bytes, 0);
  if (bst == STATUS_OK) bst = dist_bcast(m->checksums, num_files * (size_t)m->checksums_per_file * sizeof *m->checksums, 0);
  return bst;
}

/* The memory this machine can still give (MemAvailable), or 0 where it cannot tell. */
static uint64_t available_memory_bytes(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) break;
  }
  fclose(f);
  return (uint64_t)kib * 1024;
}

/* The run options every rank checks the same way (so they fail everywhere at once, and rank 0
 * alone says why): the context length, the chunk size, the slots. */
static Status resolve_run_options(const GptOssConfig *c, const EngineOptions *o, TransformerOptions *out) {
  int64_t context = o->context_length;
  if (context <= 0) context = c->max_position_embeddings < 4096 ? c->max_position_embeddings : 4096;
  if (context > c->max_position_embeddings) {
    return status_error(STATUS_INVALID_ARGUMENT, "--context %lld exceeds max_position_embeddings = %lld",
                        (long long)context, (long long)c->max_position_embeddings);
  }
  *out = (TransformerOptions){.context_length = context,
                              .max_chunk = o->max_chunk > 0 ? o->max_chunk : DEFAULT_CHUNK,
                              .num_slots = o->num_slots > 0 ? o->num_slots : 1};
  return STATUS_OK;
}

/* The KV cache of every slot is allocated up front; refuse, with the bytes, what this node
 * cannot hold, rather than be killed for it later. (Each rank checks its own share.) */
static Status check_kv_memory(const Engine *e, const TransformerOptions *to) {
  const uint64_t need = transformer_kv_bytes(&e->config, e->shards, to->context_length, to->num_slots);
  const uint64_t available = available_memory_bytes();
  if (available == 0 || need <= available) return STATUS_OK;
  return status_error(STATUS_OUT_OF_MEMORY,
                      "the KV cache for --parallel %lld x --context %lld needs %.2f GB on this rank, but the node has "
                      "%.2f GB available: lower --parallel or --context, or use more nodes",
                      (long long)to->num_slots, (long long)to->context_length, (double)need / 1e9,
                      (double)available / 1e9);
}

static Status init_run_state(Engine *e, const TransformerOptions *to) {
  const GptOssConfig *c = &e->config;
  Status st = check_kv_memory(e, to);
  if (st != STATUS_OK) return st;
  st = transformer_init(&e->transformer, c, e->shards, e->weights.shards, &e->weights.replicated, to);
  if (st == STATUS_OUT_OF_MEMORY) {
    return status_error(st, "cannot allocate the run state: %.2f GB of KV cache for --parallel %lld x --context %lld, "
                            "plus step buffers for %lld tokens (lower --parallel, --context or --chunk)",
                        (double)transformer_kv_bytes(c, e->shards, to->context_length, to->num_slots) / 1e9,
                        (long long)to->num_slots, (long long)to->context_length,
                        (long long)(to->max_chunk + to->num_slots - 1));
  }
  if (st != STATUS_OK) return st;
  e->local_vocab = transformer_local_vocab(&e->transformer);
  const int64_t rows = to->num_slots > SCORE_ROWS ? to->num_slots : SCORE_ROWS;
  e->local_logits = malloc((size_t)(rows * range_size(e->local_vocab)) * sizeof *e->local_logits);
  if (!e->local_logits) return status_error(STATUS_OUT_OF_MEMORY, "logits buffer of %lld rows", (long long)rows);
  /* A step travels whole in one broadcast of a fixed size: its largest segment list and rows. */
  e->command_bytes = sizeof(Command) + (size_t)to->num_slots * sizeof(EngineSegment) +
                     (size_t)e->transformer.max_rows * sizeof(int32_t);
  e->command = calloc(1, e->command_bytes);
  if (!e->command) return status_error(STATUS_OUT_OF_MEMORY, "command buffer of %zu bytes", e->command_bytes);
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
  /* Options are the same on every rank, so a bad --context fails everywhere at once: rank 0
   * says so. What a rank fails to allocate, it says itself. */
  TransformerOptions to;
  status_set_silent(rank.rank != 0);
  st = resolve_run_options(&e->config, o, &to);
  status_set_silent(0);
  st = dist_agree(st);
  if (st == STATUS_OK) st = dist_agree(init_run_state(e, &to));
  if (st == STATUS_OK) st = dist_reducer_agree(&e->reducer);
  e->load_seconds = dist_time() - start;
  return st;
}

void engine_free(Engine *e) {
  transformer_free(&e->transformer);
  dist_reducer_free(&e->reducer);
  free(e->local_logits);
  free(e->command);
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

/* How to choose a row's next token: temperature 0 is greedy (ties: lowest id); otherwise sampling
 * at `temperature` with nucleus `top_p`, with rank 0's uniform draw. */
typedef struct {
  float temperature;
  float top_p;
  double uniform;
} ChoiceRule;

/* This rank's logits for vocabulary shard `local_shard` in a row of local logits. */
static const float *shard_logits(const Engine *e, const float *row, int64_t local_shard, Range *vocab_out) {
  *vocab_out = e->weights.shards[local_shard].slice.vocab;
  return row + (vocab_out->begin - e->local_vocab.begin);
}

enum { SAMPLE_FIRST_CANDIDATES = 32 };

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* A row to sample with a nucleus: its logits, rule, global maximum and total mass. */
typedef struct {
  const float *logits;
  const ChoiceRule *rule;
  float max;
  double total;
  int32_t *id;       /* set on rank 0 */
  bool decided;
  SampleCandidate *sorted; /* this rank's candidates, shard by shard, most likely first */
} NucleusRow;

/* Rank 0's view of one row: every shard's received head at the shard's vocabulary offset. */
typedef struct {
  SampleCandidate *heads, *merged; /* [V] each */
} NucleusHeads;

/* Each shard's candidates [prev, head) of every undecided row, concatenated row by row. */
static int64_t pack_heads(const Engine *e, const NucleusRow *rows, int64_t n, int64_t prev, int64_t head,
                          SampleCandidate *send) {
  int64_t count = 0;
  for (int64_t i = 0; i < n; i++) {
    if (rows[i].decided) continue;
    for (int64_t ls = 0; ls < range_size(e->shards); ls++) {
      Range vocab;
      shard_logits(e, rows[i].logits, ls, &vocab);
      const int64_t from = min64(prev, range_size(vocab)), to = min64(head, range_size(vocab));
      memcpy(send + count, rows[i].sorted + (vocab.begin - e->local_vocab.begin) + from, (size_t)(to - from) * sizeof *send);
      count += to - from;
    }
  }
  return count;
}

/* Rank 0: files the round's candidates (gathered in rank order, so shard order, row by row within
 * each rank's block) and decides what it can. */
static void file_heads(const Engine *e, NucleusRow *rows, NucleusHeads *views, int64_t n, int64_t prev, int64_t head,
                       const SampleCandidate *in, int64_t *counts, const int64_t *sizes) {
  const int64_t S = config_num_shards(&e->config), num_local = range_size(e->shards);
  for (int64_t rank_first = 0; rank_first < S; rank_first += num_local) {
    for (int64_t i = 0; i < n; i++) {
      if (rows[i].decided) continue;
      for (int64_t s = rank_first; s < rank_first + num_local; s++) {
        const int64_t from = min64(prev, sizes[s]), to = min64(head, sizes[s]);
        memcpy(views[i].heads + plan_shard(&e->config, s).vocab.begin + from, in, (size_t)(to - from) * sizeof *in);
        in += to - from;
      }
    }
  }
  for (int64_t i = 0; i < n; i++) {
    if (rows[i].decided) continue;
    int64_t m = 0;
    for (int64_t s = 0; s < S; s++) {
      const int64_t to = min64(head, sizes[s]);
      memcpy(views[i].merged + m, views[i].heads + plan_shard(&e->config, s).vocab.begin, (size_t)to * sizeof *in);
      counts[s] = to;
      m += to;
    }
    rows[i].decided = sampler_pick_from_slices(views[i].merged, counts, sizes, S, rows[i].total, rows[i].rule->top_p,
                                               rows[i].rule->uniform, rows[i].id);
  }
}

/* Nucleus sampling of several rows at once: each shard sends rank 0 the head of its candidates,
 * most likely first — 32, then 4x as many in each further round, only what it has not sent yet —
 * until rank 0 can tell, row by row, that nothing held back belongs to the nucleus
 * (model/sampler.h). All undecided rows share each round's gather and broadcast, so a step costs
 * the collectives of one row. A peaked distribution (a trained model's usual case) settles in one
 * round of 32 candidates per shard. */
static Status sample_nucleus_rows(Engine *e, NucleusRow *rows, int64_t n) {
  const int64_t S = config_num_shards(&e->config), V = e->config.vocab_size;
  const size_t local_vocab = (size_t)range_size(e->local_vocab);
  const bool root = e->rank.rank == 0;
  SampleCandidate *send = malloc((size_t)n * local_vocab * sizeof *send + 1);
  NucleusHeads *views = root ? calloc((size_t)n, sizeof *views) : NULL;
  int64_t *counts = calloc((size_t)S, sizeof *counts), *sizes = calloc((size_t)S, sizeof *sizes);
  int32_t *decided = calloc((size_t)n, sizeof *decided);
  Status st = send && counts && sizes && decided && (!root || views) ? STATUS_OK
                                                                    : status_error(STATUS_OUT_OF_MEMORY, "sampling candidates");
  for (int64_t i = 0; st == STATUS_OK && i < n; i++) {
    rows[i].sorted = malloc(local_vocab * sizeof *rows[i].sorted + 1);
    if (root) views[i].heads = malloc((size_t)V * sizeof *views[i].heads), views[i].merged = malloc((size_t)V * sizeof *views[i].merged);
    if (!rows[i].sorted || (root && (!views[i].heads || !views[i].merged))) {
      st = status_error(STATUS_OUT_OF_MEMORY, "sampling candidates");
      break;
    }
    for (int64_t ls = 0; ls < range_size(e->shards); ls++) {
      Range vocab;
      const float *logits = shard_logits(e, rows[i].logits, ls, &vocab);
      sampler_slice_sorted(logits, range_size(vocab), (int32_t)vocab.begin, rows[i].max, rows[i].rule->temperature,
                           rows[i].sorted + (vocab.begin - e->local_vocab.begin));
    }
  }
  for (int64_t s = 0; s < S && sizes; s++) sizes[s] = range_size(plan_shard(&e->config, s).vocab);
  bool all_decided = false;
  for (int64_t prev = 0, head = SAMPLE_FIRST_CANDIDATES; st == STATUS_OK && !all_decided; prev = head, head *= 4) {
    const int64_t count = pack_heads(e, rows, n, prev, head, send);
    void *all = NULL;
    size_t all_bytes = 0;
    st = dist_gather_bytes(send, (size_t)count * sizeof *send, &all, &all_bytes);
    if (!root) e->sample_bytes_sent += (uint64_t)count * sizeof *send;
    if (st == STATUS_OK && root) file_heads(e, rows, views, n, prev, head, all, counts, sizes);
    free(all);
    for (int64_t i = 0; root && i < n; i++) decided[i] = rows[i].decided;
    if (st == STATUS_OK) st = dist_bcast(decided, (size_t)n * sizeof *decided, 0);
    all_decided = true;
    for (int64_t i = 0; i < n; i++) {
      rows[i].decided = decided[i] != 0;
      all_decided &= rows[i].decided;
    }
  }
  for (int64_t i = 0; i < n; i++) {
    free(rows[i].sorted);
    if (views) free(views[i].heads), free(views[i].merged);
  }
  free(send);
  free(views);
  free(counts);
  free(sizes);
  free(decided);
  return st;
}

/* The row's token from the shards' maxima and masses (all shards, in order), computed by the rank
 * that owns the chosen shard; other ranks return -1. Greedy: the first shard holding the global
 * maximum, its lowest-index maximum. Sampling (top_p = 1): inverse CDF over the shards' masses,
 * then within the chosen shard. */
static int32_t owner_pick(const Engine *e, const float *row, const ChoiceRule *rule, const float *maxes,
                          const double *masses) {
  const int64_t S = config_num_shards(&e->config);
  float max = maxes[0];
  for (int64_t s = 1; s < S; s++) max = maxes[s] > max ? maxes[s] : max;
  int64_t chosen = 0;
  double before = 0.0, target = 0.0;
  if (rule->temperature <= 0.0f) {
    while (chosen < S - 1 && maxes[chosen] != max) chosen++;
  } else {
    double total = 0.0;
    for (int64_t s = 0; s < S; s++) total += masses[s];
    target = rule->uniform * total;
    for (int64_t s = 0; s < S; s++) {
      if (masses[s] <= 0.0) continue;
      chosen = s;
      if (before + masses[s] > target) break;
      before += masses[s];
    }
  }
  if (chosen < e->shards.begin || chosen >= e->shards.end) return -1;
  Range vocab = {0, 0};
  const float *logits = shard_logits(e, row, chosen - e->shards.begin, &vocab);
  if (rule->temperature <= 0.0f) return (int32_t)(vocab.begin + argmax_f32(logits, range_size(vocab)));
  return sampler_slice_pick(logits, range_size(vocab), (int32_t)vocab.begin, max, rule->temperature, before, target);
}

static bool is_nucleus(const ChoiceRule *rule) { return rule->temperature > 0.0f && rule->top_p < 1.0f; }

/* Where shard s's summary of row `row` sits in an allgather of [rank][row][local shard]: rank r
 * holds shards [r·num_local, (r+1)·num_local). */
static int64_t gathered_at(int64_t s, int64_t row, int64_t num_rows, int64_t num_local) {
  return ((s / num_local) * num_rows + row) * num_local + s % num_local;
}

static bool all_greedy(const ChoiceRule *rules, int64_t num_rows) {
  for (int64_t i = 0; i < num_rows; i++) {
    if (rules[i].temperature > 0.0f) return false;
  }
  return true;
}

/* Greedy rows only: one MAXLOC over every row's (max, index) pair. */
static Status choose_greedy(Engine *e, const float *logits, int64_t num_rows, int32_t *ids) {
  const int64_t local = range_size(e->local_vocab);
  float values[num_rows];
  int64_t indices[num_rows], best[num_rows];
  for (int64_t i = 0; i < num_rows; i++) {
    const int64_t at = argmax_f32(logits + i * local, local);
    values[i] = logits[i * local + at];
    indices[i] = e->local_vocab.begin + at;
  }
  Status st = dist_argmax_rows(values, indices, num_rows, best);
  e->sample_bytes_sent += (sizeof(float) + sizeof(int)) * (uint64_t)(num_rows * (e->rank.num_ranks - 1));
  for (int64_t i = 0; st == STATUS_OK && i < num_rows; i++) ids[i] = (int32_t)best[i];
  return st;
}

/* The next token of each of num_rows rows of local logits [num_rows, V_local], without gathering
 * the vocabulary (model/sampler.h): all greedy, one MAXLOC. Otherwise every rank exchanges each
 * row's per-shard maxima and masses (two allgathers for all rows), the owners of the chosen
 * shards pick greedy and top_p = 1 rows (one MAX allreduce for all rows), and each top_p < 1 row
 * collects just enough of each shard's most likely tokens (sample_nucleus). Every rank returns
 * the same ids, and a row's id does not depend on the other rows. */
static Status choose_tokens(Engine *e, const float *logits, const ChoiceRule *rules, int64_t num_rows, int32_t *ids) {
  const double start = dist_time();
  Status st = STATUS_OK;
  if (all_greedy(rules, num_rows)) {
    st = choose_greedy(e, logits, num_rows, ids);
    e->sample_seconds += dist_time() - start;
    return st;
  }
  const int64_t num_local = range_size(e->shards), S = config_num_shards(&e->config);
  const int64_t local = range_size(e->local_vocab), R = num_rows;
  const int N = e->rank.num_ranks;
  float *local_max = malloc((size_t)(R * num_local) * sizeof *local_max), *maxes = malloc((size_t)(N * R * num_local) * sizeof *maxes);
  double *local_mass = malloc((size_t)(R * num_local) * sizeof *local_mass), *masses = malloc((size_t)(N * R * num_local) * sizeof *masses);
  float *row_maxes = malloc((size_t)S * sizeof *row_maxes);
  double *row_masses = malloc((size_t)S * sizeof *row_masses);
  if (!local_max || !maxes || !local_mass || !masses || !row_maxes || !row_masses) st = status_error(STATUS_OUT_OF_MEMORY, "sampling summaries");
  Range vocab = {0, 0};
  for (int64_t i = 0; st == STATUS_OK && i < R; i++) {
    for (int64_t ls = 0; ls < num_local; ls++) {
      const float *slice = shard_logits(e, logits + i * local, ls, &vocab);
      local_max[i * num_local + ls] = sampler_slice_max(slice, range_size(vocab));
    }
  }
  if (st == STATUS_OK) st = dist_allgather_bytes(local_max, (size_t)(R * num_local) * sizeof *local_max, maxes);
  for (int64_t i = 0; st == STATUS_OK && i < R; i++) {
    float max = maxes[gathered_at(0, i, R, num_local)];
    for (int64_t s = 0; s < S; s++) max = fmaxf(max, maxes[gathered_at(s, i, R, num_local)]);
    for (int64_t ls = 0; ls < num_local; ls++) {
      const float *slice = shard_logits(e, logits + i * local, ls, &vocab);
      local_mass[i * num_local + ls] =
          rules[i].temperature > 0.0f ? sampler_slice_mass(slice, range_size(vocab), max, rules[i].temperature) : 0.0;
    }
  }
  if (st == STATUS_OK) st = dist_allgather_bytes(local_mass, (size_t)(R * num_local) * sizeof *local_mass, masses);
  e->sample_bytes_sent += (uint64_t)(R * num_local) * (sizeof(float) + sizeof(double)) * (uint64_t)(N - 1);
  for (int64_t i = 0; st == STATUS_OK && i < R; i++) {
    for (int64_t s = 0; s < S; s++) {
      row_maxes[s] = maxes[gathered_at(s, i, R, num_local)];
      row_masses[s] = masses[gathered_at(s, i, R, num_local)];
    }
    ids[i] = is_nucleus(&rules[i]) ? -1 : owner_pick(e, logits + i * local, &rules[i], row_maxes, row_masses);
  }
  if (st == STATUS_OK) st = dist_max_i32(ids, R);
  e->sample_bytes_sent += sizeof *ids * (uint64_t)(R * (N - 1));
  /* Only rank 0 learns a nucleus row's id: the driver is the one that needs it. */
  NucleusRow nucleus[R];
  int64_t num_nucleus = 0;
  for (int64_t i = 0; st == STATUS_OK && i < R; i++) {
    if (!is_nucleus(&rules[i])) continue;
    NucleusRow *row = &nucleus[num_nucleus++];
    *row = (NucleusRow){.logits = logits + i * local, .rule = &rules[i], .max = -INFINITY, .id = &ids[i]};
    for (int64_t s = 0; s < S; s++) {
      row->max = fmaxf(row->max, maxes[gathered_at(s, i, R, num_local)]);
      row->total += masses[gathered_at(s, i, R, num_local)];
    }
  }
  if (st == STATUS_OK && num_nucleus > 0) st = sample_nucleus_rows(e, nucleus, num_nucleus);
  free(local_max), free(maxes), free(local_mass), free(masses), free(row_maxes), free(row_masses);
  e->sample_seconds += dist_time() - start;
  return st;
}

static Status do_next_greedy(Engine *e, const int32_t *tokens, int64_t n, int32_t *next_out) {
  Status st = run_forward(e, tokens, n, false);
  const ChoiceRule greedy = {0};
  int32_t id = 0;
  if (st == STATUS_OK) st = choose_tokens(e, e->local_logits, &greedy, 1, &id);
  if (st == STATUS_OK && next_out) *next_out = id;
  return st;
}

static Status do_next_logits(Engine *e, const int32_t *tokens, int64_t n, float *logits_out) {
  Status st = run_forward(e, tokens, n, false);
  return st == STATUS_OK ? gather_logits(e, 1, logits_out) : st;
}

static Status do_next_sample(Engine *e, const Command *cmd, const int32_t *tokens, int32_t *next_out) {
  Status st = run_forward(e, tokens, cmd->num_tokens, false);
  const ChoiceRule rule = {cmd->temperature, cmd->top_p, cmd->uniform};
  int32_t id = 0;
  if (st == STATUS_OK) st = choose_tokens(e, e->local_logits, &rule, 1, &id);
  if (st == STATUS_OK && next_out) *next_out = id;
  return st;
}

/* One step over several sequences (engine_step), then the next token of every segment that asks
 * for one, chosen together. */
static Status do_step(Engine *e, const Command *cmd, const EngineSegment *segments, const int32_t *tokens,
                      const OpResults *out) {
  const int64_t num_segments = cmd->num_segments;
  StepSegment steps[num_segments];
  ChoiceRule rules[num_segments];
  int64_t num_choices = 0, num_tokens = 0;
  for (int64_t i = 0; i < num_segments; i++) {
    const EngineSegment *g = &segments[i];
    steps[i] = (StepSegment){.slot = g->slot, .num_tokens = g->num_tokens, .reset = g->reset != 0, .logits = g->choose != 0};
    if (g->choose) rules[num_choices++] = (ChoiceRule){g->temperature, g->top_p, g->uniform};
    num_tokens += g->num_tokens;
  }
  ShardReducer reducer = dist_reducer_as_shard_reducer(&e->reducer);
  e->tokens_forwarded += num_tokens;
  Status st = transformer_step(&e->transformer, steps, num_segments, tokens, &reducer, e->local_logits);
  if (st != STATUS_OK || num_choices == 0) return st;
  if (cmd->gather_logits) st = gather_logits(e, num_choices, out->logits);
  int32_t ids[num_choices];
  if (st == STATUS_OK) st = choose_tokens(e, e->local_logits, rules, num_choices, ids);
  if (st == STATUS_OK && out->next) memcpy(out->next, ids, sizeof ids);
  return st;
}

/* Every rank hashes its copy of the replicated hidden state; they must be bitwise equal. */
static Status do_check_replicas(Engine *e, bool *agree_out) {
  const Transformer *t = &e->transformer;
  const uint64_t hash = checksum64(t->scratch.x, (size_t)(t->max_rows * t->model.config.hidden_size) * sizeof(float));
  bool equal = false;
  Status st = dist_all_equal_u64(hash, &equal);
  if (st == STATUS_OK && agree_out) *agree_out = equal;
  return st;
}

static Status execute(Engine *e, const Command *cmd, const EngineSegment *segments, const int32_t *tokens,
                      const OpResults *out) {
  switch ((Op)cmd->op) {
    case OP_STEP: return do_step(e, cmd, segments, tokens, out);
    case OP_RESET:
      transformer_reset(&e->transformer, 0);
      return STATUS_OK;
    case OP_SCORE: return do_score(e, tokens, cmd->num_tokens, out->logits);
    case OP_NEXT_GREEDY: return do_next_greedy(e, tokens, cmd->num_tokens, out->next);
    case OP_NEXT_LOGITS: return do_next_logits(e, tokens, cmd->num_tokens, out->logits);
    case OP_CHECK_REPLICAS: return do_check_replicas(e, out->agree);
    case OP_NEXT_SAMPLE: return do_next_sample(e, cmd, tokens, out->next);
    case OP_STATS: return do_stats(e, out->stats, false);
    case OP_STATS_RESET: return do_stats(e, out->stats, true);
    case OP_FEED: {
      ShardReducer reducer = dist_reducer_as_shard_reducer(&e->reducer);
      e->tokens_forwarded += cmd->num_tokens; /* the per-token byte count of a prefill */
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

/* Rank 0 broadcasts a command and runs it like every other rank. The command buffer travels in
 * one broadcast of a fixed size: the header and, for a step, its segments and tokens — so a step
 * costs the workers one broadcast. Other commands' tokens (a prompt, scored ids) follow in a
 * second. Inputs were checked before the broadcast, so every rank runs the same steps; a failure
 * after it (out of memory, a lost rank) may leave others inside a collective: it ends the job. */
static Status broadcast_and_execute(Engine *e, const Command *cmd, const EngineSegment *segments, const int32_t *tokens,
                                    const OpResults *out) {
  const size_t segment_bytes = (size_t)cmd->num_segments * sizeof *segments;
  const size_t token_bytes = (size_t)cmd->num_tokens * sizeof *tokens;
  const bool inline_payload = cmd->op == OP_STEP;
  memcpy(e->command, cmd, sizeof *cmd);
  if (inline_payload && segments && tokens) {
    memcpy(e->command + sizeof *cmd, segments, segment_bytes);
    memcpy(e->command + sizeof *cmd + segment_bytes, tokens, token_bytes);
  }
  Status st = dist_bcast_idle(e->command, e->command_bytes, 0);
  if (st == STATUS_OK && !inline_payload && token_bytes > 0) st = dist_bcast((void *)tokens, token_bytes, 0);
  if (st == STATUS_OK) st = execute(e, cmd, segments, tokens, out);
  if (st != STATUS_OK) {
    status_error(st, "stopping all ranks after this error");
    dist_abort(1);
  }
  return st;
}

static Status drive_command(Engine *e, Command cmd, const int32_t *tokens, const OpResults *out) {
  const Op op = (Op)cmd.op;
  if (op == OP_SCORE || op == OP_NEXT_GREEDY || op == OP_NEXT_LOGITS || op == OP_FEED || op == OP_NEXT_SAMPLE) {
    Status st = check_tokens(e, tokens, cmd.num_tokens);
    if (st != STATUS_OK) return st;
  }
  return broadcast_and_execute(e, &cmd, NULL, tokens, out);
}

static Status drive(Engine *e, Op op, const int32_t *tokens, int64_t n, const OpResults *out) {
  Command cmd = {.op = op, .num_tokens = n};
  return drive_command(e, cmd, tokens, out);
}

static const OpResults NO_RESULTS = {0};

Status engine_next_sample(Engine *e, const int32_t *tokens, int64_t n, float temperature, float top_p, double uniform,
                          int32_t *next_out) {
  Command cmd = {.op = OP_NEXT_SAMPLE, .num_tokens = n, .temperature = temperature, .top_p = top_p, .uniform = uniform};
  const OpResults out = {.next = next_out};
  return drive_command(e, cmd, tokens, &out);
}

Status engine_step(Engine *e, const EngineSegment *segments, int64_t num_segments, const int32_t *tokens,
                   int32_t *next_out, float *logits_out) {
  if (num_segments <= 0 || num_segments > e->transformer.num_slots) {
    return status_error(STATUS_INVALID_ARGUMENT, "a step needs 1 to %lld sequences, got %lld",
                        (long long)e->transformer.num_slots, (long long)num_segments);
  }
  StepSegment steps[num_segments];
  int64_t num_tokens = 0;
  for (int64_t i = 0; i < num_segments; i++) {
    steps[i] = (StepSegment){.slot = segments[i].slot, .num_tokens = segments[i].num_tokens, .reset = segments[i].reset != 0};
    num_tokens += segments[i].num_tokens;
  }
  Status st = transformer_check_step(&e->transformer, steps, num_segments, tokens);
  if (st != STATUS_OK) return st;
  const Command cmd = {.op = OP_STEP, .num_tokens = num_tokens, .num_segments = num_segments,
                       .gather_logits = logits_out != NULL};
  const OpResults out = {.next = next_out, .logits = logits_out};
  return broadcast_and_execute(e, &cmd, segments, tokens, &out);
}

Status engine_collect_stats(Engine *e, RankStats *stats_out, bool reset) {
  const OpResults out = {.stats = stats_out};
  return drive(e, reset ? OP_STATS_RESET : OP_STATS, NULL, 0, &out);
}

Status engine_reset(Engine *e) { return drive(e, OP_RESET, NULL, 0, &NO_RESULTS); }
Status engine_feed(Engine *e, const int32_t *tokens, int64_t n) { return drive(e, OP_FEED, tokens, n, &NO_RESULTS); }
Status engine_mark(Engine *e) { return drive(e, OP_MARK, NULL, 0, &NO_RESULTS); }
Status engine_rollback(Engine *e) { return drive(e, OP_ROLLBACK, NULL, 0, &NO_RESULTS); }
Status engine_score(Engine *e, const int32_t *tokens, int64_t n, float *logits_out) {
  const OpResults out = {.logits = logits_out};
  return drive(e, OP_SCORE, tokens, n, &out);
}
Status engine_next_greedy(Engine *e, const int32_t *tokens, int64_t n, int32_t *next_out) {
  const OpResults out = {.next = next_out};
  return drive(e, OP_NEXT_GREEDY, tokens, n, &out);
}
Status engine_next_logits(Engine *e, const int32_t *tokens, int64_t n, float *logits_out) {
  const OpResults out = {.logits = logits_out};
  return drive(e, OP_NEXT_LOGITS, tokens, n, &out);
}

Status engine_replicas_agree(Engine *e, bool *agree_out) {
  const OpResults out = {.agree = agree_out};
  return drive(e, OP_CHECK_REPLICAS, NULL, 0, &out);
}

Status engine_stop(Engine *e, int exit_status) {
  if (e->rank.num_ranks == 1) return STATUS_OK;
  const Command cmd = {.op = OP_STOP, .exit_status = exit_status, .num_tokens = 0};
  memcpy(e->command, &cmd, sizeof cmd);
  return dist_bcast_idle(e->command, e->command_bytes, 0);
}

/* ---------- every other rank ---------- */

int engine_serve(Engine *e) {
  int32_t *tokens = NULL;
  int64_t capacity = 0;
  for (;;) {
    if (dist_bcast_idle(e->command, e->command_bytes, 0) != STATUS_OK) break;
    Command cmd;
    memcpy(&cmd, e->command, sizeof cmd);
    if (cmd.op == OP_STOP) {
      free(tokens);
      return cmd.exit_status;
    }
    const EngineSegment *segments = (const EngineSegment *)(e->command + sizeof cmd);
    const int32_t *step_tokens = (const int32_t *)(e->command + sizeof cmd + (size_t)cmd.num_segments * sizeof *segments);
    if (cmd.op != OP_STEP && cmd.num_tokens > capacity) {
      free(tokens);
      capacity = cmd.num_tokens;
      tokens = malloc((size_t)capacity * sizeof *tokens);
      if (!tokens) {
        status_error(STATUS_OUT_OF_MEMORY, "token buffer of %lld", (long long)capacity);
        dist_abort(1);
      }
    }
    if (cmd.op != OP_STEP && cmd.num_tokens > 0 &&
        dist_bcast(tokens, (size_t)cmd.num_tokens * sizeof *tokens, 0) != STATUS_OK) {
      break;
    }
    /* A failure here (it printed why) would leave the other ranks waiting in a collective. */
    if (execute(e, &cmd, segments, cmd.op == OP_STEP ? step_tokens : tokens, &NO_RESULTS) != STATUS_OK) dist_abort(1);
  }
  free(tokens);
  status_error(STATUS_REMOTE_ERROR, "lost contact with rank 0");
  dist_abort(1);
  return 1;
}
