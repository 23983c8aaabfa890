/* The forward pass (see forward.h), in the order of the model card: embed, then per layer
 * attention for the local KV groups and the local experts, each followed by a reduction over
 * shards, then the final norm and the local slice of the unembedding. Runs on every rank. */
#include "model/forward.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/kernels.h"
#include "model/plan.h"

double phase_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------- reductions ---------- */

/* The reduction, timed: its time is the imbalance between ranks plus the exchange. */
static Status reduce_shards(Transformer *t, const ShardReducer *reducer, float *parts, int64_t n, float *out) {
  const double start = phase_clock();
  Status st = reducer->sum_shards(reducer->ctx, parts, n, out);
  t->times.reduce += phase_clock() - start;
  return st;
}

static void sum_subtree(float *blocks, int64_t begin, int64_t end, int64_t block_size, int64_t n) {
  if (end - begin <= block_size) return; /* a block: its value is already in place */
  const int64_t mid = plan_tree_split(begin, end);
  sum_subtree(blocks, begin, mid, block_size, n);
  sum_subtree(blocks, mid, end, block_size, n);
  float *left = blocks + (begin / block_size) * n;
  const float *right = blocks + (mid / block_size) * n;
  for (int64_t i = 0; i < n; i++) left[i] += right[i];
}

void sum_blocks_tree(float *blocks, int64_t num_shards, int64_t block_size, int64_t n) {
  sum_subtree(blocks, 0, num_shards, block_size, n);
}

static Status local_sum_shards(void *ctx, float *local_parts, int64_t n, float *out) {
  sum_blocks_tree(local_parts, (int64_t)(intptr_t)ctx, 1, n);
  memcpy(out, local_parts, (size_t)n * sizeof *out);
  return STATUS_OK;
}

ShardReducer shard_reducer_local(int64_t num_shards) {
  ShardReducer r = {(void *)(intptr_t)num_shards, local_sum_shards};
  return r;
}

/* ---------- set-up ---------- */

enum { UNEMBED_ROWS = 32 };

/* The step being run, in the order its rows are processed: segments shorter than
 * MATMUL_GEMM_MIN_TOKENS first (they share the row-streaming matmuls: rows [0, stream_rows)),
 * then the longer ones, each a contiguous block of rows with matrix products of its own. */
typedef struct {
  int32_t slot;
  int64_t first_row, n;
  int64_t p0;           /* the slot's position before the step */
  int64_t logit_index;  /* its row in the caller's logits, or -1 */
  bool gemm;
} PlannedSegment;

struct StepPlan {
  PlannedSegment *segments; /* [num_slots] */
  int64_t num_segments, num_rows, stream_rows, num_logits;
  uint8_t *expert_seen;     /* [E] */
};

static Status alloc_floats(float **out, int64_t count) {
  *out = calloc((size_t)(count > 0 ? count : 1), sizeof **out);
  if (!*out) return status_error(STATUS_OUT_OF_MEMORY, "cannot allocate %lld floats", (long long)count);
  return STATUS_OK;
}

static int64_t max_vocab_slice(const Transformer *t) {
  int64_t max = 0;
  for (int64_t s = 0; s < t->model.num_local_shards; s++) {
    const int64_t v = range_size(t->model.shard_weights[s].slice.vocab);
    if (v > max) max = v;
  }
  return max;
}

static bool config_has_sliding_layer(const GptOssConfig *c) {
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    if (c->layer_is_sliding[l]) return true;
  }
  return false;
}

/* Local shard ls's rows of q, k, v and attention output (Scratch: one [max_rows, ...] each). */
static float *shard_q(const Transformer *t, int64_t ls) {
  return t->scratch.q + ls * t->max_rows * config_q_per_kv(&t->model.config) * t->model.config.head_dim;
}
static float *shard_attn(const Transformer *t, int64_t ls) {
  return t->scratch.attn + ls * t->max_rows * config_q_per_kv(&t->model.config) * t->model.config.head_dim;
}
static float *shard_k(const Transformer *t, int64_t ls) { return t->scratch.k + ls * t->max_rows * t->model.config.head_dim; }
static float *shard_v(const Transformer *t, int64_t ls) { return t->scratch.v + ls * t->max_rows * t->model.config.head_dim; }

static Status scratch_init(Transformer *t) {
  const GptOssConfig *c = &t->model.config;
  const int64_t T = t->max_rows, H = c->hidden_size, D = c->head_dim, G = config_q_per_kv(c);
  const int64_t I = c->intermediate_size, E = c->num_local_experts, K = c->num_experts_per_tok;
  const int64_t window_keys = config_has_sliding_layer(c) ? c->sliding_window - 1 + t->max_chunk : 0;
  const int64_t L = t->model.num_local_shards;
  Scratch *s = &t->scratch;
  struct { float **buf; int64_t count; } bufs[] = {
      {&s->x, T * H}, {&s->h, T * H}, {&s->sum, T * H}, {&s->parts, t->model.num_local_shards * T * H},
      {&s->q, L * T * G * D}, {&s->attn, L * T * G * D}, {&s->k, L * T * D}, {&s->v, L * T * D},
      {&s->window_k, window_keys * D}, {&s->window_v, window_keys * D}, {&s->cos, T * D / 2}, {&s->sin, T * D / 2},
      {&s->router, T * E}, {&s->expert_weight, T * K}, {&s->expert_in, T * H},
      {&s->expert_up, T * 2 * I}, {&s->expert_act, T * I}, {&s->expert_out, T * H},
      {&s->expert_token_w, T}, {&s->logits, UNEMBED_ROWS * max_vocab_slice(t)}, {&s->logit_h, t->num_slots * H},
  };
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    Status st = alloc_floats(bufs[i].buf, bufs[i].count);
    if (st != STATUS_OK) return st;
  }
  s->expert_index = calloc((size_t)(T * K), sizeof *s->expert_index);
  s->expert_tokens = calloc((size_t)T, sizeof *s->expert_tokens);
  s->tokens = calloc((size_t)T, sizeof *s->tokens);
  s->products = calloc((size_t)(3 * L), sizeof *s->products);
  t->plan = calloc(1, sizeof *t->plan);
  if (t->plan) {
    t->plan->segments = calloc((size_t)t->num_slots, sizeof *t->plan->segments);
    t->plan->expert_seen = calloc((size_t)E, sizeof *t->plan->expert_seen);
  }
  if (!s->expert_index || !s->expert_tokens || !s->tokens || !s->products || !t->plan || !t->plan->segments || !t->plan->expert_seen) {
    return status_error(STATUS_OUT_OF_MEMORY, "scratch buffers");
  }
  return STATUS_OK;
}

static void scratch_free(Transformer *t) {
  Scratch *s = &t->scratch;
  float *bufs[] = {s->x, s->h, s->sum, s->parts, s->q, s->attn, s->k, s->v, s->window_k, s->window_v, s->cos,
                   s->sin, s->router, s->expert_weight, s->expert_in, s->expert_up,
                   s->expert_act, s->expert_out, s->expert_token_w, s->logits, s->logit_h};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  free(s->expert_index);
  free(s->expert_tokens);
  free(s->tokens);
  free(s->products);
  memset(s, 0, sizeof *s);
  if (t->plan) {
    free(t->plan->segments);
    free(t->plan->expert_seen);
    free(t->plan);
    t->plan = NULL;
  }
}

static int64_t ring_capacity(const GptOssConfig *c, int64_t layer, int64_t context_length) {
  return c->layer_is_sliding[layer] && c->sliding_window < context_length ? c->sliding_window : context_length;
}

uint64_t transformer_kv_bytes(const GptOssConfig *c, Range shards, int64_t context_length, int64_t num_slots) {
  uint64_t floats = 0;
  for (int64_t l = 0; l < c->num_hidden_layers; l++) floats += 2 * (uint64_t)(ring_capacity(c, l, context_length) * c->head_dim);
  return floats * sizeof(float) * (uint64_t)range_size(shards) * (uint64_t)num_slots;
}

static int64_t num_rings(const Transformer *t) { return t->model.num_local_shards * t->model.config.num_hidden_layers; }

static Status kv_cache_init(const Transformer *t, KvCache *cache) {
  const GptOssConfig *c = &t->model.config;
  const int64_t L = c->num_hidden_layers;
  cache->mark_position = -1;
  cache->rings = calloc((size_t)num_rings(t), sizeof *cache->rings);
  if (!cache->rings) return status_error(STATUS_OUT_OF_MEMORY, "KV cache index");
  for (int64_t i = 0; i < num_rings(t); i++) {
    KvRing *ring = &cache->rings[i];
    ring->capacity = ring_capacity(c, i % L, t->context_length);
    Status st = alloc_floats(&ring->k, ring->capacity * c->head_dim);
    if (st == STATUS_OK) st = alloc_floats(&ring->v, ring->capacity * c->head_dim);
    if (st != STATUS_OK) return st;
  }
  return STATUS_OK;
}

static void kv_cache_free(const Transformer *t, KvCache *cache) {
  for (int64_t i = 0; i < num_rings(t); i++) {
    if (cache->rings) {
      free(cache->rings[i].k);
      free(cache->rings[i].v);
    }
    if (cache->mark_rings) {
      free(cache->mark_rings[i].k);
      free(cache->mark_rings[i].v);
    }
  }
  free(cache->rings);
  free(cache->mark_rings);
  memset(cache, 0, sizeof *cache);
}

Status transformer_init(Transformer *t, const GptOssConfig *config, Range shards,
                        const ShardWeights *shard_weights, const ReplicatedWeights *replicated,
                        const TransformerOptions *o) {
  memset(t, 0, sizeof *t);
  t->model.config = *config;
  t->model.shards = shards;
  t->model.num_local_shards = range_size(shards);
  t->model.shard_weights = shard_weights;
  t->model.replicated = replicated;
  t->context_length = o->context_length;
  t->max_chunk = o->max_chunk;
  t->num_slots = o->num_slots > 0 ? o->num_slots : 1;
  t->max_rows = o->max_rows > 0 ? o->max_rows : t->max_chunk + t->num_slots - 1;
  if (t->context_length <= 0 || t->max_chunk <= 0 || t->max_rows < t->max_chunk) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "context length (%lld) and chunk size (%lld) must be positive, and rows per step (%lld) at "
                        "least the chunk size",
                        (long long)t->context_length, (long long)t->max_chunk, (long long)t->max_rows);
  }
  Status st = rope_init(&t->model.rope, config);
  if (st == STATUS_OK) {
    t->slots = calloc((size_t)t->num_slots, sizeof *t->slots);
    if (!t->slots) st = status_error(STATUS_OUT_OF_MEMORY, "KV cache slots");
  }
  for (int64_t i = 0; st == STATUS_OK && i < t->num_slots; i++) st = kv_cache_init(t, &t->slots[i]);
  if (st == STATUS_OK) st = scratch_init(t);
  if (st != STATUS_OK) transformer_free(t);
  return st;
}

void transformer_free(Transformer *t) {
  for (int64_t i = 0; t->slots && i < t->num_slots; i++) kv_cache_free(t, &t->slots[i]);
  free(t->slots);
  t->slots = NULL;
  scratch_free(t);
  rope_free(&t->model.rope);
}

void transformer_reset(Transformer *t, int32_t slot) {
  t->slots[slot].position = 0;
  t->slots[slot].mark_position = -1;
}

int64_t transformer_position(const Transformer *t, int32_t slot) { return t->slots[slot].position; }

static bool ring_is_window(const Transformer *t, const KvRing *ring) { return ring->capacity < t->context_length; }

Status transformer_mark(Transformer *t, int32_t slot) {
  KvCache *cache = &t->slots[slot];
  const int64_t D = t->model.config.head_dim;
  if (!cache->mark_rings) {
    cache->mark_rings = calloc((size_t)num_rings(t), sizeof *cache->mark_rings);
    if (!cache->mark_rings) return status_error(STATUS_OUT_OF_MEMORY, "KV cache mark");
    for (int64_t i = 0; i < num_rings(t); i++) {
      if (!ring_is_window(t, &cache->rings[i])) continue;
      cache->mark_rings[i].capacity = cache->rings[i].capacity;
      Status st = alloc_floats(&cache->mark_rings[i].k, cache->rings[i].capacity * D);
      if (st == STATUS_OK) st = alloc_floats(&cache->mark_rings[i].v, cache->rings[i].capacity * D);
      if (st != STATUS_OK) return st;
    }
  }
  for (int64_t i = 0; i < num_rings(t); i++) {
    if (!cache->mark_rings[i].k) continue;
    memcpy(cache->mark_rings[i].k, cache->rings[i].k, (size_t)(cache->rings[i].capacity * D) * sizeof(float));
    memcpy(cache->mark_rings[i].v, cache->rings[i].v, (size_t)(cache->rings[i].capacity * D) * sizeof(float));
  }
  cache->mark_position = cache->position;
  return STATUS_OK;
}

Status transformer_rollback(Transformer *t, int32_t slot) {
  KvCache *cache = &t->slots[slot];
  if (cache->mark_position < 0) return status_error(STATUS_INVALID_ARGUMENT, "no mark to roll the KV cache back to");
  const int64_t D = t->model.config.head_dim;
  for (int64_t i = 0; i < num_rings(t); i++) {
    if (!cache->mark_rings[i].k) continue;
    memcpy(cache->rings[i].k, cache->mark_rings[i].k, (size_t)(cache->rings[i].capacity * D) * sizeof(float));
    memcpy(cache->rings[i].v, cache->mark_rings[i].v, (size_t)(cache->rings[i].capacity * D) * sizeof(float));
  }
  cache->position = cache->mark_position;
  return STATUS_OK;
}

Range transformer_local_vocab(const Transformer *t) {
  const ModelView *m = &t->model;
  Range r = {m->shard_weights[0].slice.vocab.begin, m->shard_weights[m->num_local_shards - 1].slice.vocab.end};
  return r;
}

/* ---------- the step's plan ---------- */

Status transformer_check_step(const Transformer *t, const StepSegment *segments, int64_t num_segments,
                              const int32_t *tokens) {
  const GptOssConfig *c = &t->model.config;
  if (num_segments <= 0 || num_segments > t->num_slots) {
    return status_error(STATUS_INVALID_ARGUMENT, "a step needs 1 to %lld sequences, got %lld", (long long)t->num_slots,
                        (long long)num_segments);
  }
  int64_t rows = 0;
  for (int64_t i = 0; i < num_segments; i++) {
    const StepSegment *g = &segments[i];
    if (g->slot < 0 || g->slot >= t->num_slots) {
      return status_error(STATUS_INVALID_ARGUMENT, "sequence slot %d is outside [0, %lld)", g->slot, (long long)t->num_slots);
    }
    for (int64_t j = 0; j < i; j++) {
      if (segments[j].slot == g->slot) return status_error(STATUS_INVALID_ARGUMENT, "slot %d appears twice in one step", g->slot);
    }
    if (g->num_tokens <= 0 || g->num_tokens > t->max_chunk) {
      return status_error(STATUS_INVALID_ARGUMENT, "a sequence feeds 1 to %lld tokens per step, got %d",
                          (long long)t->max_chunk, g->num_tokens);
    }
    const int64_t cached = g->reset ? 0 : t->slots[g->slot].position;
    if (cached + g->num_tokens > t->context_length) {
      return status_error(STATUS_INVALID_ARGUMENT,
                          "the context is full: %lld tokens cached + %d new exceed the context length %lld "
                          "(raise --context, up to max_position_embeddings = %lld)",
                          (long long)cached, g->num_tokens, (long long)t->context_length,
                          (long long)c->max_position_embeddings);
    }
    rows += g->num_tokens;
  }
  if (rows > t->max_rows) {
    return status_error(STATUS_INVALID_ARGUMENT, "a step of %lld token rows exceeds the %lld allocated",
                        (long long)rows, (long long)t->max_rows);
  }
  for (int64_t i = 0; i < rows; i++) {
    if (tokens[i] < 0 || tokens[i] >= c->vocab_size) {
      return status_error(STATUS_INVALID_ARGUMENT, "token id %d (at index %lld) is outside the vocabulary [0, %lld)",
                          tokens[i], (long long)i, (long long)c->vocab_size);
    }
  }
  return STATUS_OK;
}

/* Lays the segments out in processing order (streamed ones first), copies their tokens into that
 * order, and computes each row's rotary angles. */
static void plan_step(Transformer *t, const StepSegment *segments, int64_t num_segments, const int32_t *tokens) {
  struct StepPlan *p = t->plan;
  const int64_t half = t->model.config.head_dim / 2;
  int64_t offsets[num_segments], logit_index[num_segments];
  int64_t offset = 0, logits = 0;
  for (int64_t i = 0; i < num_segments; i++) {
    offsets[i] = offset;
    offset += segments[i].num_tokens;
    logit_index[i] = segments[i].logits ? logits++ : -1;
  }
  p->num_segments = 0;
  p->num_rows = 0;
  p->num_logits = logits;
  for (int pass = 0; pass < 2; pass++) {
    for (int64_t i = 0; i < num_segments; i++) {
      const bool gemm = segments[i].num_tokens >= MATMUL_GEMM_MIN_TOKENS;
      if (gemm != (pass == 1)) continue;
      PlannedSegment *g = &p->segments[p->num_segments++];
      *g = (PlannedSegment){.slot = segments[i].slot, .first_row = p->num_rows, .n = segments[i].num_tokens,
                            .p0 = t->slots[segments[i].slot].position, .logit_index = logit_index[i], .gemm = gemm};
      memcpy(t->scratch.tokens + g->first_row, tokens + offsets[i], (size_t)g->n * sizeof *tokens);
      for (int64_t r = 0; r < g->n; r++) {
        rope_angles(&t->model.rope, g->p0 + r, t->scratch.cos + (g->first_row + r) * half,
                    t->scratch.sin + (g->first_row + r) * half);
      }
      p->num_rows += g->n;
    }
    if (pass == 0) p->stream_rows = p->num_rows;
  }
}

/* y[rows, out] = x[rows, in]·Wᵀ (+ bias) over the step's rows for every product of a list (y and x
 * at the step's row 0): the streamed rows of all of them in one row-streaming pass, each long
 * segment product by product. */
static void step_matmul_bf16w(const Transformer *t, const Bf16Product *products, int64_t count) {
  const struct StepPlan *p = t->plan;
  if (p->stream_rows > 0) matmul_f32_bf16w_stream_list(products, count, p->stream_rows);
  for (int64_t i = 0; i < p->num_segments; i++) {
    const PlannedSegment *g = &p->segments[i];
    if (!g->gemm) continue;
    for (int64_t j = 0; j < count; j++) {
      const Bf16Product *m = &products[j];
      matmul_f32_bf16w(m->y + g->first_row * m->rows, m->w, m->bias, m->x + g->first_row * m->cols, g->n, m->rows,
                       m->cols);
    }
  }
}

/* ---------- the blocks ---------- */

/* Each shard contributes the embedding rows it owns and zeros elsewhere; the reduction then
 * gives every rank the full rows exactly (adding zeros is exact). */
static Status embed(Transformer *t, const ShardReducer *reducer) {
  const int64_t H = t->model.config.hidden_size, n = t->plan->num_rows;
  Scratch *s = &t->scratch;
  const double start = phase_clock();
  memset(s->parts, 0, (size_t)(t->model.num_local_shards * n * H) * sizeof *s->parts);
  for (int64_t ls = 0; ls < t->model.num_local_shards; ls++) {
    const ShardWeights *w = &t->model.shard_weights[ls];
    for (int64_t i = 0; i < n; i++) {
      const int32_t token = s->tokens[i];
      if (token < w->slice.vocab.begin || token >= w->slice.vocab.end) continue;
      bf16_decode_row(s->parts + (ls * n + i) * H, w->embed + (token - w->slice.vocab.begin) * H, H);
    }
  }
  t->times.embed += phase_clock() - start;
  return reduce_shards(t, reducer, s->parts, n * H, s->x);
}

/* Attention of one segment's n positions for one KV group, with the matrix-product kernel
 * (kernels.h: causal, the sliding window, the sink in the softmax, scale 1/sqrt(D)). It needs the
 * keys and values in position order, from the first key any query of the segment sees (the
 * window's start for position p0 on a sliding layer, else 0) to its last position.
 *
 * A ring as long as the context holds position j at index j: the segment is written first and
 * attended in place. A window ring (capacity W < context) cannot take the whole segment before
 * attending: position p0+i would overwrite p0+i−W, which the segment's earlier queries still see.
 * So its keys are gathered — the cached [keys_begin, p0) from the ring, then the segment's own —
 * and the segment is written to the ring afterwards (it keeps the last W). */
static void attend_segment(Transformer *t, int64_t local_shard, int64_t layer, KvRing *ring, const uint16_t *sinks,
                           const PlannedSegment *g) {
  const GptOssConfig *c = &t->model.config;
  const int64_t D = c->head_dim, G = config_q_per_kv(c), p0 = g->p0, n = g->n;
  const int64_t window = c->layer_is_sliding[layer] ? c->sliding_window : 0;
  const int64_t keys_begin = window && p0 >= window ? p0 - window + 1 : 0;
  const size_t row_bytes = (size_t)D * sizeof(float);
  Scratch *s = &t->scratch;
  const float *q = shard_q(t, local_shard) + g->first_row * G * D, *k = shard_k(t, local_shard) + g->first_row * D;
  const float *v = shard_v(t, local_shard) + g->first_row * D;
  float *out = shard_attn(t, local_shard) + g->first_row * G * D;
  if (!ring_is_window(t, ring)) {
    memcpy(ring->k + p0 * D, k, (size_t)n * row_bytes);
    memcpy(ring->v + p0 * D, v, (size_t)n * row_bytes);
    attention_chunk_f32(out, q, ring->k + keys_begin * D, ring->v + keys_begin * D, sinks, n, G, D, p0 - keys_begin,
                        window);
    return;
  }
  for (int64_t j = keys_begin; j < p0; j++) {
    memcpy(s->window_k + (j - keys_begin) * D, ring->k + (j % ring->capacity) * D, row_bytes);
    memcpy(s->window_v + (j - keys_begin) * D, ring->v + (j % ring->capacity) * D, row_bytes);
  }
  memcpy(s->window_k + (p0 - keys_begin) * D, k, (size_t)n * row_bytes);
  memcpy(s->window_v + (p0 - keys_begin) * D, v, (size_t)n * row_bytes);
  attention_chunk_f32(out, q, s->window_k, s->window_v, sinks, n, G, D, p0 - keys_begin, window);
  for (int64_t i = n > ring->capacity ? n - ring->capacity : 0; i < n; i++) {
    memcpy(ring->k + ((p0 + i) % ring->capacity) * D, k + i * D, row_bytes);
    memcpy(ring->v + ((p0 + i) % ring->capacity) * D, v + i * D, row_bytes);
  }
}

/* Every local shard's q, k and v over the step's rows: one list, so a rank holding several KV
 * groups (all eight on one rank) streams their 24 small matrices in one pass. */
static void project_qkv(Transformer *t, int64_t layer) {
  const GptOssConfig *c = &t->model.config;
  const int64_t H = c->hidden_size, D = c->head_dim, G = config_q_per_kv(c), L = t->model.num_local_shards;
  Bf16Product *products = t->scratch.products;
  for (int64_t ls = 0; ls < L; ls++) {
    const ShardLayerWeights *w = &t->model.shard_weights[ls].layers[layer];
    const float *h = t->scratch.h;
    products[3 * ls] = (Bf16Product){shard_q(t, ls), w->q_weight, w->q_bias, h, G * D, H};
    products[3 * ls + 1] = (Bf16Product){shard_k(t, ls), w->k_weight, w->k_bias, h, D, H};
    products[3 * ls + 2] = (Bf16Product){shard_v(t, ls), w->v_weight, w->v_bias, h, D, H};
  }
  step_matmul_bf16w(t, products, 3 * L);
}

/* One KV group's rotary embedding and attention over the step's rows, into its attention output. */
static void attend_shard(Transformer *t, int64_t local_shard, int64_t layer) {
  const GptOssConfig *c = &t->model.config;
  const int64_t D = c->head_dim, G = config_q_per_kv(c), half = D / 2, n = t->plan->num_rows;
  const ShardLayerWeights *w = &t->model.shard_weights[local_shard].layers[layer];
  Scratch *s = &t->scratch;
  float *q = shard_q(t, local_shard), *k = shard_k(t, local_shard);
  for (int64_t i = 0; i < n; i++) {
    rope_apply(q + i * G * D, G, half, s->cos + i * half, s->sin + i * half);
    rope_apply(k + i * D, 1, half, s->cos + i * half, s->sin + i * half);
  }
  for (int64_t i = 0; i < t->plan->num_segments; i++) {
    const PlannedSegment *g = &t->plan->segments[i];
    KvRing *ring = &t->slots[g->slot].rings[local_shard * c->num_hidden_layers + layer];
    attend_segment(t, local_shard, layer, ring, w->sinks, g);
  }
}

/* Every local shard's partial o_proj (no bias) into parts[ls], one list as for q, k, v. */
static void project_o(Transformer *t, int64_t layer, float *parts) {
  const GptOssConfig *c = &t->model.config;
  const int64_t H = c->hidden_size, D = c->head_dim, G = config_q_per_kv(c), L = t->model.num_local_shards;
  const int64_t n = t->plan->num_rows;
  Bf16Product *products = t->scratch.products;
  for (int64_t ls = 0; ls < L; ls++) {
    const ShardLayerWeights *w = &t->model.shard_weights[ls].layers[layer];
    products[ls] = (Bf16Product){parts + ls * n * H, w->o_weight, NULL, shard_attn(t, ls), H, G * D};
  }
  step_matmul_bf16w(t, products, L);
}

/* Expert e (local index le) over the rows [first_row, first_row + n) routed to it: gathered,
 * multiplied (row-streaming when `stream`, else whichever kernel suits the count), and added
 * into part with the router's weight. */
static void expert_rows(Transformer *t, const ShardLayerWeights *w, int64_t e, int64_t le, int64_t first_row, int64_t n,
                        bool stream, float *part) {
  const GptOssConfig *c = &t->model.config;
  const int64_t H = c->hidden_size, I = c->intermediate_size, K = c->num_experts_per_tok;
  const int64_t up_blocks = 2 * I * (H / MXFP4_BLOCK_ELEMS), down_blocks = H * (I / MXFP4_BLOCK_ELEMS);
  Scratch *s = &t->scratch;
  int64_t count = 0;
  for (int64_t i = first_row; i < first_row + n; i++) {
    for (int64_t j = 0; j < K; j++) {
      if (s->expert_index[i * K + j] != e) continue;
      s->expert_tokens[count] = (int32_t)i;
      s->expert_token_w[count] = s->expert_weight[i * K + j];
      count++;
    }
  }
  if (count == 0) return;
  gather_rows(s->expert_in, s->h, s->expert_tokens, count, H);
  void (*matmul)(float *, const uint8_t *, const uint8_t *, const uint16_t *, const float *, int64_t, int64_t,
                 int64_t) = stream ? matmul_f32_mxfp4w_stream : matmul_f32_mxfp4w;
  matmul(s->expert_up, w->gate_up_blocks + le * up_blocks * MXFP4_BLOCK_BYTES, w->gate_up_scales + le * up_blocks,
         w->gate_up_bias + le * 2 * I, s->expert_in, count, 2 * I, H);
  swiglu_rows(s->expert_act, s->expert_up, count, I, (float)c->swiglu_limit);
  matmul(s->expert_out, w->down_blocks + le * down_blocks * MXFP4_BLOCK_BYTES, w->down_scales + le * down_blocks,
         w->down_bias + le * H, s->expert_act, count, H, I);
  add_weighted_rows(part, s->expert_tokens, s->expert_token_w, s->expert_out, count, H);
}

/* The shard's experts over the step's rows, grouped by expert so each expert's weights are read
 * once for the streamed rows and once per long segment. part[t] = Σ over this shard's selected
 * experts, in expert order, of weight · expert(h[t]). */
static void experts_shard(Transformer *t, int64_t local_shard, int64_t layer, float *part) {
  const int64_t H = t->model.config.hidden_size;
  const ShardWeights *sw = &t->model.shard_weights[local_shard];
  const struct StepPlan *p = t->plan;
  memset(part, 0, (size_t)(p->num_rows * H) * sizeof *part);
  for (int64_t e = sw->slice.experts.begin; e < sw->slice.experts.end; e++) {
    const int64_t le = e - sw->slice.experts.begin;
    if (p->stream_rows > 0) expert_rows(t, &sw->layers[layer], e, le, 0, p->stream_rows, true, part);
    for (int64_t i = 0; i < p->num_segments; i++) {
      const PlannedSegment *g = &p->segments[i];
      if (g->gemm) expert_rows(t, &sw->layers[layer], e, le, g->first_row, g->n, false, part);
    }
  }
}

static Status attention_block(Transformer *t, int64_t layer, const ShardReducer *reducer) {
  const GptOssConfig *c = &t->model.config;
  const int64_t H = c->hidden_size, n = t->plan->num_rows;
  const ReplicatedLayerWeights *rw = &t->model.replicated->layers[layer];
  Scratch *s = &t->scratch;
  const double start = phase_clock();
  rmsnorm_f32_bf16w(s->h, s->x, rw->input_norm, n, H, (float)c->rms_norm_eps);
  project_qkv(t, layer);
  for (int64_t ls = 0; ls < t->model.num_local_shards; ls++) attend_shard(t, ls, layer);
  project_o(t, layer, s->parts);
  t->times.attention += phase_clock() - start;
  Status st = reduce_shards(t, reducer, s->parts, n * H, s->sum);
  if (st != STATUS_OK) return st;
  /* o_proj's bias is added once, after the reduction. */
  for (int64_t i = 0; i < n; i++) {
    for (int64_t d = 0; d < H; d++) s->x[i * H + d] += s->sum[i * H + d] + bf16_to_f32(rw->o_bias[d]);
  }
  return STATUS_OK;
}

/* Distinct experts the step's rows selected in one layer (the replicated router's choice, the
 * same on every rank): the expert weights the step reads. */
static int64_t count_unique_experts(Transformer *t) {
  const GptOssConfig *c = &t->model.config;
  const int64_t K = c->num_experts_per_tok, n = t->plan->num_rows;
  uint8_t *seen = t->plan->expert_seen;
  memset(seen, 0, (size_t)c->num_local_experts);
  int64_t unique = 0;
  for (int64_t i = 0; i < n * K; i++) {
    unique += !seen[t->scratch.expert_index[i]];
    seen[t->scratch.expert_index[i]] = 1;
  }
  return unique;
}

static Status moe_block(Transformer *t, int64_t layer, const ShardReducer *reducer) {
  const GptOssConfig *c = &t->model.config;
  const int64_t H = c->hidden_size, E = c->num_local_experts, K = c->num_experts_per_tok, n = t->plan->num_rows;
  const ReplicatedLayerWeights *rw = &t->model.replicated->layers[layer];
  Scratch *s = &t->scratch;
  const double start = phase_clock();
  rmsnorm_f32_bf16w(s->h, s->x, rw->post_norm, n, H, (float)c->rms_norm_eps);
  /* The router is replicated: x is bitwise identical on every rank, and the portable kernel
   * gives the same bits on any CPU, so every rank picks the same experts. */
  matmul_f32_bf16w_portable(s->router, rw->router_weight, rw->router_bias, s->h, n, E, H);
  for (int64_t i = 0; i < n; i++) topk_softmax(s->router + i * E, E, K, s->expert_index + i * K, s->expert_weight + i * K);
  t->counters.unique_experts += count_unique_experts(t);
  for (int64_t ls = 0; ls < t->model.num_local_shards; ls++) experts_shard(t, ls, layer, s->parts + ls * n * H);
  t->times.experts += phase_clock() - start;
  Status st = reduce_shards(t, reducer, s->parts, n * H, s->sum);
  if (st != STATUS_OK) return st;
  for (int64_t i = 0; i < n * H; i++) s->x[i] += s->sum[i];
  return STATUS_OK;
}

/* This rank's vocabulary slice for `rows` normed rows h (UNEMBED_ROWS at a time: a row of the
 * slice is 25,136 floats per shard), into logits rows given by `out_rows` (NULL: 0, 1, 2, ...).
 * `stream` keeps each row's result independent of the others (row-streaming kernels). */
static void unembed_normed(Transformer *t, const float *h, int64_t rows, const int64_t *out_rows, bool stream,
                           float *logits) {
  const int64_t H = t->model.config.hidden_size, local_vocab = range_size(transformer_local_vocab(t));
  Scratch *s = &t->scratch;
  for (int64_t done = 0; done < rows; done += UNEMBED_ROWS) {
    const int64_t n = rows - done < UNEMBED_ROWS ? rows - done : UNEMBED_ROWS;
    int64_t column = 0;
    for (int64_t ls = 0; ls < t->model.num_local_shards; ls++) {
      const ShardWeights *w = &t->model.shard_weights[ls];
      const int64_t vs = range_size(w->slice.vocab);
      if (stream) matmul_f32_bf16w_stream(s->logits, w->lm_head, NULL, h + done * H, n, vs, H);
      else matmul_f32_bf16w(s->logits, w->lm_head, NULL, h + done * H, n, vs, H);
      for (int64_t i = 0; i < n; i++) {
        const int64_t row = out_rows ? out_rows[done + i] : done + i;
        memcpy(logits + row * local_vocab + column, s->logits + i * vs, (size_t)vs * sizeof(float));
      }
      column += vs;
    }
  }
}

/* The final norm and the logits of each segment's last row that asks for them. */
static void unembed_segments(Transformer *t, float *logits) {
  const GptOssConfig *c = &t->model.config;
  const int64_t H = c->hidden_size;
  const struct StepPlan *p = t->plan;
  int64_t out_rows[p->num_segments > 0 ? p->num_segments : 1], rows = 0;
  for (int64_t i = 0; i < p->num_segments; i++) {
    const PlannedSegment *g = &p->segments[i];
    if (g->logit_index < 0) continue;
    rmsnorm_f32_bf16w(t->scratch.logit_h + rows * H, t->scratch.x + (g->first_row + g->n - 1) * H,
                      t->model.replicated->final_norm, 1, H, (float)c->rms_norm_eps);
    out_rows[rows++] = g->logit_index;
  }
  unembed_normed(t, t->scratch.logit_h, rows, out_rows, true, logits);
}

/* Embedding and every layer for the planned rows; then the slots' caches hold the new tokens. */
static Status run_layers(Transformer *t, const ShardReducer *reducer) {
  Status st = embed(t, reducer);
  for (int64_t l = 0; st == STATUS_OK && l < t->model.config.num_hidden_layers; l++) {
    st = attention_block(t, l, reducer);
    if (st == STATUS_OK) st = moe_block(t, l, reducer);
  }
  if (st != STATUS_OK) return st;
  for (int64_t i = 0; i < t->plan->num_segments; i++) t->slots[t->plan->segments[i].slot].position += t->plan->segments[i].n;
  t->counters.steps++;
  t->counters.rows += t->plan->num_rows;
  return STATUS_OK;
}

Status transformer_step(Transformer *t, const StepSegment *segments, int64_t num_segments, const int32_t *tokens,
                        const ShardReducer *reducer, float *logits) {
  Status st = transformer_check_step(t, segments, num_segments, tokens);
  if (st != STATUS_OK) return st;
  for (int64_t i = 0; i < num_segments; i++) {
    if (segments[i].reset) transformer_reset(t, segments[i].slot);
  }
  plan_step(t, segments, num_segments, tokens);
  st = run_layers(t, reducer);
  if (st != STATUS_OK || !logits || t->plan->num_logits == 0) return st;
  const double start = phase_clock();
  unembed_segments(t, logits);
  t->times.unembed += phase_clock() - start;
  return STATUS_OK;
}

/* All rows' logits of a one-segment step (teacher forcing): matrix products over the rows. */
static void unembed_all_rows(Transformer *t, float *logits) {
  const GptOssConfig *c = &t->model.config;
  const int64_t n = t->plan->num_rows;
  const double start = phase_clock();
  rmsnorm_f32_bf16w(t->scratch.h, t->scratch.x, t->model.replicated->final_norm, n, c->hidden_size, (float)c->rms_norm_eps);
  unembed_normed(t, t->scratch.h, n, NULL, false, logits);
  t->times.unembed += phase_clock() - start;
}

Status transformer_forward(Transformer *t, const int32_t *tokens, int64_t n,
                           const ShardReducer *reducer, float *logits, bool all_rows) {
  if (n <= 0) return status_error(STATUS_INVALID_ARGUMENT, "no tokens to run");
  /* Refuse what cannot run whole before running any of it. */
  if (t->slots[0].position + n > t->context_length) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "the context is full: %lld tokens cached + %lld new exceed the context length %lld "
                        "(raise --context, up to max_position_embeddings = %lld)",
                        (long long)t->slots[0].position, (long long)n, (long long)t->context_length,
                        (long long)t->model.config.max_position_embeddings);
  }
  for (int64_t i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= t->model.config.vocab_size) {
      return status_error(STATUS_INVALID_ARGUMENT, "token id %d (at index %lld) is outside the vocabulary [0, %lld)",
                          tokens[i], (long long)i, (long long)t->model.config.vocab_size);
    }
  }
  const int64_t local_vocab = range_size(transformer_local_vocab(t));
  for (int64_t done = 0; done < n; done += t->max_chunk) {
    const int64_t len = n - done < t->max_chunk ? n - done : t->max_chunk;
    const bool last_chunk = done + len == n;
    const StepSegment segment = {.slot = 0, .num_tokens = (int32_t)len, .logits = last_chunk && logits && !all_rows};
    if (!all_rows) {
      Status st = transformer_step(t, &segment, 1, tokens + done, reducer, segment.logits ? logits : NULL);
      if (st != STATUS_OK) return st;
      continue;
    }
    Status st = transformer_check_step(t, &segment, 1, tokens + done);
    if (st != STATUS_OK) return st;
    plan_step(t, &segment, 1, tokens + done);
    st = run_layers(t, reducer);
    if (st != STATUS_OK) return st;
    unembed_all_rows(t, logits + done * local_vocab);
  }
  return STATUS_OK;
}
