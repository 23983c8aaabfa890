/* The shard plan: which slice of the model each shard holds and which shards each rank loads.
 *
 * A pure function of (config, S, N, rank), shared by the converter (which writes shard s) and
 * the loader (which reads rank r's shards). Shard s is KV group s: KV head s with its query
 * heads, a contiguous range of experts and a contiguous range of vocabulary rows (for both
 * embed_tokens and lm_head). Ranges are split as evenly as possible: part i of n over `total`
 * items is [floor(i·total/n), floor((i+1)·total/n)), so sizes differ by at most one and a
 * shard may own no expert when E < S. */
#ifndef GPTOSS_MODEL_PLAN_H
#define GPTOSS_MODEL_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "model/config.h"

typedef struct {
  int64_t begin;
  int64_t end; /* exclusive */
} Range;

static inline int64_t range_size(Range r) { return r.end - r.begin; }

/* Part `index` of `num_parts` near-equal parts of [0, total). */
Range plan_split(int64_t total, int64_t num_parts, int64_t index);

typedef struct {
  int64_t shard;     /* = KV head index */
  Range kv_heads;    /* [shard, shard + 1) */
  Range q_heads;     /* query heads of this KV group */
  Range experts;
  Range vocab;       /* rows of embed_tokens and lm_head */
} ShardSlice;

ShardSlice plan_shard(const GptOssConfig *config, int64_t shard);

/* Shards [begin, end) loaded by `rank` of `num_ranks`; num_ranks must divide the shard count. */
Status plan_rank_shards(const GptOssConfig *config, int num_ranks, int rank, Range *shards_out);

/* The fixed tree in which shard partial sums are added: a range of shards [begin, end) splits at
 * begin + the largest power of two below its size, down to single shards. Any rank count adds in
 * this same shape, so sums are bitwise the same at every rank count. */
int64_t plan_tree_split(int64_t begin, int64_t end);
/* Whether [begin, end) is a node of the tree over [0, num_shards): then a rank holding exactly
 * those shards can add them before the exchange. */
bool plan_tree_has_node(int64_t num_shards, Range node);

/* Shard owning vocabulary row `token` (the inverse of ShardSlice.vocab). */
int64_t plan_vocab_owner(const GptOssConfig *config, int64_t token);

#endif
