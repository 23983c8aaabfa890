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

static Status alloc_floats(float **out, int64_t count) {
  *out = calloc((size_t)(count > 0 ? count : 1), sizeof **out);
  if (!*out) return status_error(STATUS_OUT_OF_MEMORY, "cannot allocate %lld floats", (long long)count);
  return STATUS_OK;
}

static int64_t max_vocab_slice(const Transformer *t) {
  int64_t max = 0;
  for (int64_t s = 0; s < t->num_local_shards; s++) {
    const int64_t v = range_size(t->shard_weights[s].slice.vocab);
    if (v > max) max = v;
  }
  return max;
}

static Status scratch_init(Transformer *t) {
  const GptOssConfig *c = &t->config;
  const int64_t T = t->max_chunk, H = c->hidden_size, D = c->head_dim, G = config_q_per_kv(c);
  const int64_t I = c->intermediate_size, E = c->num_local_experts, K = c->num_experts_per_tok;
  Scratch *s = &t->scratch;
  struct { float **buf; int64_t count; } bufs[] = {
      {&s->x, T * H}, {&s->h, T * H}, {&s->sum, T * H}, {&s->parts, t->num_local_shards * T * H},
      {&s->q, T * G * D}, {&s->attn, T * G * D}, {&s->k, T * D}, {&s->v, T * D},
      {&s->scores, t->context_length + 1}, {&s->cos, T * D / 2}, {&s->sin, T * D / 2},
      {&s->router, T * E}, {&s->expert_weight, T * K}, {&s->expert_in, T * H},
      {&s->expert_up, T * 2 * I}, {&s->expert_act, T * I}, {&s->expert_out, T * H},
      {&s->expert_token_w, T}, {&s->logits, UNEMBED_ROWS * max_vocab_slice(t)},
  };
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    Status st = alloc_floats(bufs[i].buf, bufs[i].count);
    if (st != STATUS_OK) return st;
  }
  s->expert_index = calloc((size_t)(T * K), sizeof *s->expert_index);
  s->expert_tokens = calloc((size_t)T, sizeof *s->expert_tokens);
  if (!s->expert_index || !s->expert_tokens) return status_error(STATUS_OUT_OF_MEMORY, "scratch buffers");
  return STATUS_OK;
}

static void scratch_free(Scratch *s) {
  float *bufs[] = {s->x, s->h, s->sum, s->parts, s->q, s->attn, s->k, s->v, s->scores, s->cos,
                   s->sin, s->router, s->expert_weight, s->expert_in, s->expert_up,
                   s->expert_act, s->expert_out, s->expert_token_w, s->logits};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  free(s->expert_index);
  free(s->expert_tokens);
  memset(s, 0, sizeof *s);
}

static Status kv_init(Transformer *t) {
  const GptOssConfig *c = &t->config;
  const int64_t L = c->num_hidden_layers;
  t->kv = calloc((size_t)(t->num_local_shards * L), sizeof *t->kv);
  if (!t->kv) return status_error(STATUS_OUT_OF_MEMORY, "KV cache index");
  for (int64_t s = 0; s < t->num_local_shards; s++) {
    for (int64_t l = 0; l < L; l++) {
      KvRing *ring = &t->kv[s * L + l];
      ring->capacity = t->context_length;
      if (c->layer_is_sliding[l] && c->sliding_window < ring->capacity) ring->capacity = c->sliding_window;
      Status st = alloc_floats(&ring->k, ring->capacity * c->head_dim);
      if (st == STATUS_OK) st = alloc_floats(&ring->v, ring->capacity * c->head_dim);
      if (st != STATUS_OK) return st;
    }
  }
  return STATUS_OK;
}

Status transformer_init(Transformer *t, const GptOssConfig *config, Range shards,
                        const ShardWeights *shard_weights, const ReplicatedWeights *replicated,
                        int64_t context_length, int64_t max_chunk) {
  memset(t, 0, sizeof *t);
  t->config = *config;
  t->shards = shards;
  t->num_local_shards = range_size(shards);
  t->shard_weights = shard_weights;
  t->replicated = replicated;
  t->context_length = context_length;
  t->max_chunk = max_chunk;
  t->mark_position = -1;
  if (context_length <= 0 || max_chunk <= 0) {
    return status_error(STATUS_INVALID_ARGUMENT, "context length (%lld) and chunk size (%lld) must be positive",
                        (long long)context_length, (long long)max_chunk);
  }
  Status st = rope_init(&t->rope, config);
  if (st == STATUS_OK) st = kv_init(t);
  if (st == STATUS_OK) st = scratch_init(t);
  if (st != STATUS_OK) transformer_free(t);
  return st;
}

void transformer_free(Transformer *t) {
  for (int64_t i = 0; i < t->num_local_shards * t->config.num_hidden_layers; i++) {
    if (t->kv) {
      free(t->kv[i].k);
      free(t->kv[i].v);
    }
    if (t->kv_mark) {
      free(t->kv_mark[i].k);
      free(t->kv_mark[i].v);
    }
  }
  free(t->kv);
  free(t->kv_mark);
  t->kv = NULL;
  t->kv_mark = NULL;
  scratch_free(&t->scratch);
  rope_free(&t->rope);
}

void transformer_reset(Transformer *t) {
  t->position = 0;
  t->mark_position = -1;
}

static bool ring_is_window(const Transformer *t, const KvRing *ring) { return ring->capacity < t->context_length; }

Status transformer_mark(Transformer *t) {
  const int64_t num_rings = t->num_local_shards * t->config.num_hidden_layers, D = t->config.head_dim;
  if (!t->kv_mark) {
    t->kv_mark = calloc((size_t)num_rings, sizeof *t->kv_mark);
    if (!t->kv_mark) return status_error(STATUS_OUT_OF_MEMORY, "KV cache mark");
    for (int64_t i = 0; i < num_rings; i++) {
      if (!ring_is_window(t, &t->kv[i])) continue;
      t->kv_mark[i].capacity = t->kv[i].capacity;
      Status st = alloc_floats(&t->kv_mark[i].k, t->kv[i].capacity * D);
      if (st == STATUS_OK) st = alloc_floats(&t->kv_mark[i].v, t->kv[i].capacity * D);
      if (st != STATUS_OK) return st;
    }
  }
  for (int64_t i = 0; i < num_rings; i++) {
    if (!t->kv_mark[i].k) continue;
    memcpy(t->kv_mark[i].k, t->kv[i].k, (size_t)(t->kv[i].capacity * D) * sizeof(float));
    memcpy(t->kv_mark[i].v, t->kv[i].v, (size_t)(t->kv[i].capacity * D) * sizeof(float));
  }
  t->mark_position = t->position;
  return STATUS_OK;
}

Status transformer_rollback(Transformer *t) {
  if (t->mark_position < 0) return status_error(STATUS_INVALID_ARGUMENT, "no mark to roll the KV cache back to");
  const int64_t num_rings = t->num_local_shards * t->config.num_hidden_layers, D = t->config.head_dim;
  for (int64_t i = 0; i < num_rings; i++) {
    if (!t->kv_mark[i].k) continue;
    memcpy(t->kv[i].k, t->kv_mark[i].k, (size_t)(t->kv[i].capacity * D) * sizeof(float));
    memcpy(t->kv[i].v, t->kv_mark[i].v, (size_t)(t->kv[i].capacity * D) * sizeof(float));
  }
  t->position = t->mark_position;
  return STATUS_OK;
}

Range transformer_local_vocab(const Transformer *t) {
  Range r = {t->shard_weights[0].slice.vocab.begin,
             t->shard_weights[t->num_local_shards - 1].slice.vocab.end};
  return r;
}

/* ---------- the blocks ---------- */

/* Each shard contributes the embedding rows it owns and zeros elsewhere; the reduction then
 * gives every rank the full rows exactly (adding zeros is exact). */
static Status embed(Transformer *t, const int32_t *tokens, int64_t n, const ShardReducer *reducer) {
  const int64_t H = t->config.hidden_size;
  Scratch *s = &t->scratch;
  const double start = phase_clock();
  memset(s->parts, 0, (size_t)(t->num_local_shards * n * H) * sizeof *s->parts);
  for (int64_t ls = 0; ls < t->num_local_shards; ls++) {
    const ShardWeights *w = &t->shard_weights[ls];
    for (int64_t i = 0; i < n; i++) {
      if (tokens[i] < w->slice.vocab.begin || tokens[i] >= w->slice.vocab.end) continue;
      bf16_decode_row(s->parts + (ls * n + i) * H, w->embed + (tokens[i] - w->slice.vocab.begin) * H, H);
    }
  }
  t->times.embed += phase_clock() - start;
  return reduce_shards(t, reducer, s->parts, n * H, s->x);
}

/* Attention of the chunk's n positions for one KV group, with the matrix-product kernel
 * (kernels.h: causal, the sliding window, the sink in the softmax, scale 1/sqrt(D)). It needs the
 * keys and values in position order, from the first key any query of the chunk sees (the
 * window's start for position p0 on a sliding layer, else 0) to the chunk's last position.
 *
 * A ring as long as the context holds position j at index j: the chunk is written first and
 * attended in place. A window ring (capacity W < context) cannot take the whole chunk before
 * attending: position p0+i would overwrite p0+i−W, which the chunk's earlier queries still see.
 * So its keys are gathered — the cached [keys_begin, p0) from the ring, then the chunk's own from
 * s->k / s->v — and the chunk is written to the ring afterwards (it keeps the last W). */
static void attend_chunk(Transformer *t, int64_t layer, KvRing *ring, const uint16_t *sinks, int64_t n) {
  const GptOssConfig *c = &t->config;
  const int64_t D = c->head_dim, G = config_q_per_kv(c), p0 = t->position;
  const int64_t window = c->layer_is_sliding[layer] ? c->sliding_window : 0;
  const int64_t keys_begin = window && p0 >= window ? p0 - window + 1 : 0, num_keys = p0 + n - keys_begin;
  const size_t row_bytes = (size_t)D * sizeof(float);
  Scratch *s = &t->scratch;
  if (!ring_is_window(t, ring)) {
    memcpy(ring->k + p0 * D, s->k, (size_t)n * row_bytes);
    memcpy(ring->v + p0 * D, s->v, (size_t)n * row_bytes);
    attention_chunk_f32(s->attn, s->q, ring->k + keys_begin * D, ring->v + keys_begin * D, sinks, n, G, D,
                        p0 - keys_begin, window);
    return;
  }
  float *keys = malloc((size_t)num_keys * row_bytes), *values = malloc((size_t)num_keys * row_bytes);
  assert(keys && values);
  for (int64_t j = keys_begin; j < p0; j++) {
    memcpy(keys + (j - keys_begin) * D, ring->k + (j % ring->capacity) * D, row_bytes);
    memcpy(values + (j - keys_begin) * D, ring->v + (j % ring->capacity) * D, row_bytes);
  }
  memcpy(keys + (p0 - keys_begin) * D, s->k, (size_t)n * row_bytes);
  memcpy(values + (p0 - keys_begin) * D, s->v, (size_t)n * row_bytes);
  attention_chunk_f32(s->attn, s->q, keys, values, sinks, n, G, D, p0 - keys_begin, window);
  for (int64_t i = n > ring->capacity ? n - ring->capacity : 0; i < n; i++) {
    memcpy(ring->k + ((p0 + i) % ring->capacity) * D, s->k + i * D, row_bytes);
    memcpy(ring->v + ((p0 + i) % ring->capacity) * D, s->v + i * D, row_bytes);
  }
  free(keys);
  free(values);
}

/* Attention of one KV group over a chunk of n tokens (any n: a prompt chunk or one decoded
 * token); writes its partial o_proj (no bias). */
static void attention_shard(Transformer *t, int64_t local_shard, int64_t layer, int64_t n, float *part) {
  const GptOssConfig *c = &t->config;
  const int64_t H = c->hidden_size, D = c->head_dim, G = config_q_per_kv(c), half = D / 2;
  const ShardLayerWeights *w = &t->shard_weights[local_shard].layers[layer];
  KvRing *ring = &t->kv[local_shard * c->num_hidden_layers + layer];
  Scratch *s = &t->scratch;
  matmul_f32_bf16w(s->q, w->q_weight, w->q_bias, s->h, n, G * D, H);
  matmul_f32_bf16w(s->k, w->k_weight, w->k_bias, s->h, n, D, H);
  matmul_f32_bf16w(s->v, w->v_weight, w->v_bias, s->h, n, D, H);
  for (int64_t i = 0; i < n; i++) {
    rope_apply(s->q + i * G * D, G, half, s->cos + i * half, s->sin + i * half);
    rope_apply(s->k + i * D, 1, half, s->cos + i * half, s->sin + i * half);
  }
  attend_chunk(t, layer, ring, w->sinks, n);
  matmul_f32_bf16w(part, w->o_weight, NULL, s->attn, n, H, G * D);
}

/* The shard's experts over a chunk: tokens are grouped by expert so each expert's weights are
 * read once per chunk. part[t] = Σ over this shard's selected experts, in expert order, of
 * weight · expert(h[t]). */
static void experts_shard(Transformer *t, int64_t local_shard, int64_t layer, int64_t n, float *part) {
  const GptOssConfig *c = &t->config;
  const int64_t H = c->hidden_size, I = c->intermediate_size, K = c->num_experts_per_tok;
  const ShardWeights *sw = &t->shard_weights[local_shard];
  const ShardLayerWeights *w = &sw->layers[layer];
  Scratch *s = &t->scratch;
  const int64_t up_blocks = 2 * I * (H / MXFP4_BLOCK_ELEMS), down_blocks = H * (I / MXFP4_BLOCK_ELEMS);
  memset(part, 0, (size_t)(n * H) * sizeof *part);
  for (int64_t e = sw->slice.experts.begin; e < sw->slice.experts.end; e++) {
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++) {
      for (int64_t j = 0; j < K; j++) {
        if (s->expert_index[i * K + j] != e) continue;
        s->expert_tokens[count] = (int32_t)i;
        s->expert_token_w[count] = s->expert_weight[i * K + j];
        memcpy(s->expert_in + count * H, s->h + i * H, (size_t)H * sizeof(float));
        count++;
      }
    }
    if (count == 0) continue;
    const int64_t le = e - sw->slice.experts.begin;
    matmul_f32_mxfp4w(s->expert_up, w->gate_up_blocks + le * up_blocks * MXFP4_BLOCK_BYTES,
                      w->gate_up_scales + le * up_blocks, w->gate_up_bias + le * 2 * I,
                      s->expert_in, count, 2 * I, H);
    for (int64_t i = 0; i < count; i++) swiglu_interleaved(s->expert_act + i * I, s->expert_up + i * 2 * I, I, (float)c->swiglu_limit);
    matmul_f32_mxfp4w(s->expert_out, w->down_blocks + le * down_blocks * MXFP4_BLOCK_BYTES,
                      w->down_scales + le * down_blocks, w->down_bias + le * H, s->expert_act, count, H, I);
    for (int64_t i = 0; i < count; i++) {
      float *dst = part + s->expert_tokens[i] * H;
      const float *y = s->expert_out + i * H;
      for (int64_t d = 0; d < H; d++) dst[d] += s->expert_token_w[i] * y[d];
    }
  }
}

static Status attention_block(Transformer *t, int64_t layer, int64_t n, const ShardReducer *reducer) {
  const GptOssConfig *c = &t->config;
  const int64_t H = c->hidden_size;
  const ReplicatedLayerWeights *rw = &t->replicated->layers[layer];
  Scratch *s = &t->scratch;
  const double start = phase_clock();
  rmsnorm_f32_bf16w(s->h, s->x, rw->input_norm, n, H, (float)c->rms_norm_eps);
  for (int64_t ls = 0; ls < t->num_local_shards; ls++) attention_shard(t, ls, layer, n, s->parts + ls * n * H);
  t->times.attention += phase_clock() - start;
  Status st = reduce_shards(t, reducer, s->parts, n * H, s->sum);
  if (st != STATUS_OK) return st;
  /* o_proj's bias is added once, after the reduction. */
  for (int64_t i = 0; i < n; i++) {
    for (int64_t d = 0; d < H; d++) s->x[i * H + d] += s->sum[i * H + d] + bf16_to_f32(rw->o_bias[d]);
  }
  return STATUS_OK;
}

static Status moe_block(Transformer *t, int64_t layer, int64_t n, const ShardReducer *reducer) {
  const GptOssConfig *c = &t->config;
  const int64_t H = c->hidden_size, E = c->num_local_experts, K = c->num_experts_per_tok;
  const ReplicatedLayerWeights *rw = &t->replicated->layers[layer];
  Scratch *s = &t->scratch;
  const double start = phase_clock();
  rmsnorm_f32_bf16w(s->h, s->x, rw->post_norm, n, H, (float)c->rms_norm_eps);
  /* The router is replicated: x is bitwise identical on every rank, and the portable kernel
   * gives the same bits on any CPU, so every rank picks the same experts. */
  matmul_f32_bf16w_portable(s->router, rw->router_weight, rw->router_bias, s->h, n, E, H);
  for (int64_t i = 0; i < n; i++) topk_softmax(s->router + i * E, E, K, s->expert_index + i * K, s->expert_weight + i * K);
  for (int64_t ls = 0; ls < t->num_local_shards; ls++) experts_shard(t, ls, layer, n, s->parts + ls * n * H);
  t->times.experts += phase_clock() - start;
  Status st = reduce_shards(t, reducer, s->parts, n * H, s->sum);
  if (st != STATUS_OK) return st;
  for (int64_t i = 0; i < n * H; i++) s->x[i] += s->sum[i];
  return STATUS_OK;
}

/* Final norm and this rank's vocabulary slice for `rows` tokens starting at chunk row `first`. */
/* Final norm and this rank's vocabulary slice for `rows` tokens starting at chunk row `first`,
 * UNEMBED_ROWS rows at a time (the slice is wide: a row of it is 25,136 floats per shard). */
static void unembed(Transformer *t, int64_t first, int64_t rows, float *logits) {
  const GptOssConfig *c = &t->config;
  const int64_t H = c->hidden_size;
  const int64_t local_vocab = range_size(transformer_local_vocab(t));
  Scratch *s = &t->scratch;
  rmsnorm_f32_bf16w(s->h, s->x + first * H, t->replicated->final_norm, rows, H, (float)c->rms_norm_eps);
  for (int64_t done = 0; done < rows; done += UNEMBED_ROWS) {
    const int64_t n = rows - done < UNEMBED_ROWS ? rows - done : UNEMBED_ROWS;
    int64_t column = 0;
    for (int64_t ls = 0; ls < t->num_local_shards; ls++) {
      const ShardWeights *w = &t->shard_weights[ls];
      const int64_t vs = range_size(w->slice.vocab);
      matmul_f32_bf16w(s->logits, w->lm_head, NULL, s->h + done * H, n, vs, H);
      for (int64_t i = 0; i < n; i++) {
        memcpy(logits + (done + i) * local_vocab + column, s->logits + i * vs, (size_t)vs * sizeof(float));
      }
      column += vs;
    }
  }
}

static Status forward_chunk(Transformer *t, const int32_t *tokens, int64_t n, const ShardReducer *reducer,
                            float *logits, bool all_rows) {
  const int64_t half = t->config.head_dim / 2;
  for (int64_t i = 0; i < n; i++) {
    rope_angles(&t->rope, t->position + i, t->scratch.cos + i * half, t->scratch.sin + i * half);
  }
  Status st = embed(t, tokens, n, reducer);
  for (int64_t l = 0; st == STATUS_OK && l < t->config.num_hidden_layers; l++) {
    st = attention_block(t, l, n, reducer);
    if (st == STATUS_OK) st = moe_block(t, l, n, reducer);
  }
  if (st != STATUS_OK) return st;
  const double start = phase_clock();
  if (all_rows) {
    unembed(t, 0, n, logits);
  } else if (logits) {
    unembed(t, n - 1, 1, logits);
  }
  t->times.unembed += phase_clock() - start;
  t->position += n;
  return STATUS_OK;
}

Status transformer_forward(Transformer *t, const int32_t *tokens, int64_t n,
                           const ShardReducer *reducer, float *logits, bool all_rows) {
  const GptOssConfig *c = &t->config;
  if (n <= 0) return status_error(STATUS_INVALID_ARGUMENT, "no tokens to run");
  if (t->position + n > t->context_length) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "the context is full: %lld tokens cached + %lld new exceed the context length %lld "
                        "(raise --context, up to max_position_embeddings = %lld)",
                        (long long)t->position, (long long)n, (long long)t->context_length,
                        (long long)c->max_position_embeddings);
  }
  for (int64_t i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= c->vocab_size) {
      return status_error(STATUS_INVALID_ARGUMENT, "token id %d (at index %lld) is outside the vocabulary [0, %lld)",
                          tokens[i], (long long)i, (long long)c->vocab_size);
    }
  }
  const int64_t local_vocab = range_size(transformer_local_vocab(t));
  for (int64_t done = 0; done < n; done += t->max_chunk) {
    const int64_t len = n - done < t->max_chunk ? n - done : t->max_chunk;
    const bool last_chunk = done + len == n;
    float *chunk_logits = NULL;
    if (all_rows) chunk_logits = logits + done * local_vocab;
    else if (last_chunk) chunk_logits = logits;
    Status st = forward_chunk(t, tokens + done, len, reducer, chunk_logits, all_rows);
    if (st != STATUS_OK) return st;
  }
  return STATUS_OK;
}
