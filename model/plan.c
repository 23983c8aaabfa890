/* Shard plan arithmetic; see plan.h for the layout it defines. */
#include "model/plan.h"

Range plan_split(int64_t total, int64_t num_parts, int64_t index) {
  Range r = {index * total / num_parts, (index + 1) * total / num_parts};
  return r;
}

ShardSlice plan_shard(const GptOssConfig *c, int64_t shard) {
  const int64_t num_shards = config_num_shards(c);
  const int64_t group = config_q_per_kv(c);
  ShardSlice s = {
      .shard = shard,
      .kv_heads = {shard, shard + 1},
      .q_heads = {shard * group, (shard + 1) * group},
      .experts = plan_split(c->num_local_experts, num_shards, shard),
      .vocab = plan_split(c->vocab_size, num_shards, shard),
  };
  return s;
}

Status plan_rank_shards(const GptOssConfig *c, int num_ranks, int rank, Range *shards_out) {
  const int64_t num_shards = config_num_shards(c);
  if (num_ranks <= 0 || num_shards % num_ranks != 0) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "%d ranks cannot split this model: the rank count must divide "
                        "num_key_value_heads = %lld (each rank holds whole KV groups); "
                        "run with one of the divisors of %lld",
                        num_ranks, (long long)num_shards, (long long)num_shards);
  }
  *shards_out = plan_split(num_shards, num_ranks, rank);
  return STATUS_OK;
}

int64_t plan_vocab_owner(const GptOssConfig *c, int64_t token) {
  const int64_t num_shards = config_num_shards(c);
  /* plan_split boundaries are floor(s·V/S); start from the estimate and correct by one. */
  int64_t s = token * num_shards / c->vocab_size;
  while (s + 1 < num_shards && plan_split(c->vocab_size, num_shards, s + 1).begin <= token) s++;
  while (s > 0 && plan_split(c->vocab_size, num_shards, s).begin > token) s--;
  return s;
}

int64_t plan_tree_split(int64_t begin, int64_t end) {
  int64_t half = 1;
  while (half * 2 < end - begin) half *= 2;
  return begin + half;
}

bool plan_tree_has_node(int64_t num_shards, Range node) {
  Range at = {0, num_shards};
  while (range_size(at) > range_size(node)) {
    const int64_t mid = plan_tree_split(at.begin, at.end);
    if (node.begin < mid) at.end = mid;
    else at.begin = mid;
  }
  return at.begin == node.begin && at.end == node.end;
}
