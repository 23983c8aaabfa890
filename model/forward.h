/* The GPT-OSS forward pass over the shards one rank holds.
 *
 * A Transformer owns the run state of one rank: the KV cache of its KV groups (a window-sized
 * ring on sliding layers), scratch buffers for a chunk of tokens, and the RoPE table. It never
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

typedef struct {
  float *x, *h, *sum;      /* [chunk, H] */
  float *parts;            /* [num_local_shards, chunk, H] */
  float *q, *attn;         /* [chunk, G·D] */
  float *k, *v;            /* [chunk, D] */
  float *scores;           /* [context + 1] */
  float *cos, *sin;        /* [chunk, D/2] */
  float *router;           /* [chunk, E] */
  int32_t *expert_index;   /* [chunk, k] */
  float *expert_weight;    /* [chunk, k] */
  float *expert_in;        /* [chunk, H] */
  float *expert_up;        /* [chunk, 2I] */
  float *expert_act;       /* [chunk, I] */
  float *expert_out;       /* [chunk, H] */
  int32_t *expert_tokens;  /* [chunk] */
  float *expert_token_w;   /* [chunk] */
  float *logits;           /* [chunk, max V_s] */
} Scratch;

/* Seconds this rank spent in each phase, accumulated over forward calls. `reduce` is the time
 * inside the shard reduction: the wait for the slowest rank plus the exchange. */
typedef struct {
  double embed, attention, experts, reduce, unembed;
} PhaseTimes;

typedef struct {
  GptOssConfig config;
  Range shards;                   /* the shards this rank holds */
  int64_t num_local_shards;
  const ShardWeights *shard_weights;   /* [num_local_shards] */
  const ReplicatedWeights *replicated;
  Rope rope;
  int64_t context_length;
  int64_t max_chunk;
  int64_t position;               /* tokens already in the KV cache */
  KvRing *kv;                     /* [num_local_shards][L] */
  KvRing *kv_mark;                /* copies of the sliding rings at the mark (NULL until used) */
  int64_t mark_position;          /* -1: no mark */
  Scratch scratch;
  PhaseTimes times;
} Transformer;

double phase_clock(void); /* monotonic seconds */

Status transformer_init(Transformer *t, const GptOssConfig *config, Range shards,
                        const ShardWeights *shard_weights, const ReplicatedWeights *replicated,
                        int64_t context_length, int64_t max_chunk);
void transformer_free(Transformer *t);
/* Forget the KV cache (a new sequence starts at position 0). */
void transformer_reset(Transformer *t);

/* Remember the cache as it is now, and later return to it, forgetting what came after (a chat
 * drops an answer's reasoning this way). Full-attention entries before the mark are never
 * overwritten; the sliding-window rings are, so the mark keeps a copy of them. */
Status transformer_mark(Transformer *t);
Status transformer_rollback(Transformer *t);

/* Vocabulary rows [begin, end) whose logits this rank computes. */
Range transformer_local_vocab(const Transformer *t);

/* Feeds n tokens at positions [position, position + n) through the model (in chunks of
 * max_chunk) and appends them to the KV cache. Writes this rank's logits slice for every token
 * (all_rows) or for the last token only: logits is [n or 1, V_local]. Every rank must call it
 * with the same tokens. */
Status transformer_forward(Transformer *t, const int32_t *tokens, int64_t n,
                           const ShardReducer *reducer, float *logits, bool all_rows);

#endif
