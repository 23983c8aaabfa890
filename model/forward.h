/* The GPT-OSS forward pass over the shards one rank holds.
 *
 * A Transformer owns the run state of one rank: the view of its weights (shared by every
 * sequence), one KV cache per sequence slot for its KV groups (a window-sized ring on sliding
 * layers), and scratch buffers for one step of token rows. It never
 * talks MPI: where the model needs the sum over all shards (the embedding lookup, o_proj, the
 * experts) it hands its shards' partial vectors to a ShardReducer. One process holding every
 * shard uses shard_reducer_local(); dist/ supplies the MPI one. Both add the S partials in shard
 * order, so the result is bitwise the same for every rank count, and identical on every rank —
 * which the replicated router needs to pick the same experts everywhere. */
#ifndef GPTOSS_MODEL_FORWARD_H
#define GPTOSS_MODEL_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "model/config.h"
#include "model/kernels.h"
#include "model/rope.h"
#include "model/weights.h"

typedef struct {
  void *ctx;
  /* local_parts: this rank's shards' partial vectors, n floats each, in shard order (the
   * reducer may overwrite them). out: n floats = the sum of all S shards' partials, added in
   * the shape of the shard tree (plan_tree_split). */
  Status (*sum_shards)(void *ctx, float *local_parts, int64_t n, float *out);
} ShardReducer;

/* For a process that holds every shard. */
ShardReducer shard_reducer_local(int64_t num_shards);

/* Adds vectors in the shard tree's shape, in place: `blocks` holds one vector of n floats per
 * block of block_size consecutive shards of [0, num_shards) (each block a tree node); the sum
 * ends up in blocks[0 .. n). With block_size 1 it adds single shards. */
void sum_blocks_tree(float *blocks, int64_t num_shards, int64_t block_size, int64_t n);

typedef struct {
  float *k;          /* [capacity, D] */
  float *v;          /* [capacity, D] */
  int64_t capacity;  /* window (sliding layers) or context length; position p sits at p % capacity */
} KvRing;

/* One sequence's KV cache on this rank: a ring per local KV group and layer, its length, and the
 * mark it can roll back to. */
typedef struct {
  KvRing *rings;          /* [num_local_shards][L] */
  KvRing *mark_rings;     /* copies of the sliding rings at the mark (NULL until used) */
  int64_t position;       /* tokens in the cache */
  int64_t mark_position;  /* -1: no mark */
} KvCache;

/* The weights this rank computes with, shared by every sequence (read only). */
typedef struct {
  GptOssConfig config;
  Range shards;                        /* the shards this rank holds */
  int64_t num_local_shards;
  const ShardWeights *shard_weights;   /* [num_local_shards] */
  const ReplicatedWeights *replicated;
  Rope rope;
} ModelView;

/* Buffers for one forward step of up to max_rows token rows, allocated once. */
typedef struct {
  float *x, *h, *sum;      /* [rows, H] */
  float *parts;            /* [num_local_shards, rows, H] */
  float *q, *attn;         /* [num_local_shards, rows, G·D] */
  float *k, *v;            /* [num_local_shards, rows, D] */
  float *window_k, *window_v; /* [window - 1 + max_chunk, D]: a sliding layer's keys in order */
  float *cos, *sin;        /* [rows, D/2] */
  float *router;           /* [rows, E] */
  int32_t *expert_index;   /* [rows, k] */
  float *expert_weight;    /* [rows, k] */
  float *expert_in;        /* [rows, H] */
  float *expert_up;        /* [rows, 2I] */
  float *expert_act;       /* [rows, I] */
  float *expert_out;       /* [rows, H] */
  int32_t *expert_tokens;  /* [rows] */
  float *expert_token_w;   /* [rows] */
  float *logits;           /* [UNEMBED_ROWS, max V_s] */
  float *logit_h;          /* [rows, H]: the normed rows whose logits a step wants */
  Bf16Product *products;   /* [3 · num_local_shards]: a layer's attention projections as one list */
  int32_t *tokens;         /* [rows]: the step's tokens, in processing order */
} Scratch;

/* Seconds this rank spent in each phase, accumulated over forward calls. `reduce` is the time
 * inside the shard reduction: the wait for the slowest rank plus the exchange. */
typedef struct {
  double embed, attention, experts, reduce, unembed;
} PhaseTimes;

/* What the forward steps did, for the benchmarks: the experts a step's rows selected (distinct
 * experts per layer, summed over layers and steps: the expert weights a step reads). */
typedef struct {
  int64_t steps;
  int64_t rows;
  int64_t unique_experts; /* Σ over steps and layers of the distinct experts selected */
} StepCounters;

/* One sequence's share of a forward step: num_tokens consecutive tokens appended to slot's cache
 * at its current position (0 with `reset`). With `logits` set the step computes the logits of its
 * last token. */
typedef struct {
  int32_t slot;
  int32_t num_tokens;
  bool reset;   /* a new sequence: forget the slot's cache first */
  bool logits;
} StepSegment;

typedef struct {
  ModelView model;
  int64_t context_length;         /* per sequence */
  int64_t max_chunk;              /* tokens of one sequence per step */
  int64_t max_rows;               /* token rows of all sequences per step */
  int64_t num_slots;              /* sequences held at once */
  KvCache *slots;                 /* [num_slots] */
  Scratch scratch;
  struct StepPlan *plan;          /* the step being run (forward.c) */
  PhaseTimes times;
  StepCounters counters;
} Transformer;

double phase_clock(void); /* monotonic seconds */

typedef struct {
  int64_t context_length;  /* KV cache length of each sequence */
  int64_t max_chunk;       /* a sequence's tokens per forward step (prefill chunk) */
  int64_t num_slots;       /* sequences held at once (each with its own KV cache); 0: 1 */
  int64_t max_rows;        /* token rows per step over all sequences; 0: max_chunk + num_slots - 1 */
} TransformerOptions;

/* Bytes of KV cache `num_slots` sequences of context_length take on a rank holding `shards`. */
uint64_t transformer_kv_bytes(const GptOssConfig *config, Range shards, int64_t context_length, int64_t num_slots);

Status transformer_init(Transformer *t, const GptOssConfig *config, Range shards,
                        const ShardWeights *shard_weights, const ReplicatedWeights *replicated,
                        const TransformerOptions *options);
void transformer_free(Transformer *t);
/* Forget a slot's KV cache (a new sequence starts there at position 0). */
void transformer_reset(Transformer *t, int32_t slot);
int64_t transformer_position(const Transformer *t, int32_t slot);

/* Remember a slot's cache as it is now, and later return to it, forgetting what came after (a
 * chat drops an answer's reasoning this way). Full-attention entries before the mark are never
 * overwritten; the sliding-window rings are, so the mark keeps a copy of them. */
Status transformer_mark(Transformer *t, int32_t slot);
Status transformer_rollback(Transformer *t, int32_t slot);

/* Vocabulary rows [begin, end) whose logits this rank computes. */
Range transformer_local_vocab(const Transformer *t);

/* Checks a step before any rank runs it: slots in range and distinct, each segment 1..max_chunk
 * tokens that fit its slot's context, at most max_rows rows, token ids in the vocabulary. */
Status transformer_check_step(const Transformer *t, const StepSegment *segments, int64_t num_segments,
                              const int32_t *tokens);

/* One forward step over several sequences: segments[i]'s tokens are the next num_tokens of
 * `tokens` (in segment order). Every matmul runs over the step's rows together; attention runs
 * per segment against its own slot's cache; MoE groups rows by expert. A segment's results never
 * depend on the other segments: segments shorter than MATMUL_GEMM_MIN_TOKENS (decoding) go
 * through the row-streaming kernels together, longer ones (prompt chunks) each through their own
 * matrix products. logits: [segments with .logits set, V_local], in segment order. Every rank
 * must call it with the same arguments. */
Status transformer_step(Transformer *t, const StepSegment *segments, int64_t num_segments, const int32_t *tokens,
                        const ShardReducer *reducer, float *logits);

/* Feeds n tokens to slot 0 (in chunks of max_chunk) and appends them to its KV cache. Writes
 * this rank's logits slice for every token (all_rows) or for the last token only: logits is
 * [n or 1, V_local]. Every rank must call it with the same tokens. */
Status transformer_forward(Transformer *t, const int32_t *tokens, int64_t n,
                           const ShardReducer *reducer, float *logits, bool all_rows);

#endif
