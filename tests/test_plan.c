/* The shard plan: every query head, KV head, expert and vocabulary row is owned by exactly one
 * shard, every shard by exactly one rank, for every valid rank count; bad rank counts are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/forward.h"
#include "model/plan.h"

static GptOssConfig make_config(int64_t hq, int64_t hkv, int64_t experts, int64_t vocab) {
  GptOssConfig c;
  memset(&c, 0, sizeof c);
  c.num_attention_heads = hq;
  c.num_key_value_heads = hkv;
  c.num_local_experts = experts;
  c.vocab_size = vocab;
  return c;
}

static void count_owners(const Range *ranges, int64_t num_ranges, int64_t total, int *owners) {
  memset(owners, 0, (size_t)total * sizeof *owners);
  for (int64_t i = 0; i < num_ranges; i++) {
    assert_true(ranges[i].begin <= ranges[i].end);
    for (int64_t x = ranges[i].begin; x < ranges[i].end; x++) {
      assert_in_range(x, 0, total - 1);
      owners[x]++;
    }
  }
  for (int64_t x = 0; x < total; x++) assert_int_equal(owners[x], 1);
}

static void check_config(const GptOssConfig *c) {
  const int64_t S = config_num_shards(c);
  Range q[64], kv[64], ex[64], vocab[64];
  for (int64_t s = 0; s < S; s++) {
    const ShardSlice slice = plan_shard(c, s);
    assert_int_equal(slice.shard, s);
    q[s] = slice.q_heads;
    kv[s] = slice.kv_heads;
    ex[s] = slice.experts;
    vocab[s] = slice.vocab;
    /* Query heads of a shard all map to its KV head (GQA: head h uses KV head h / group). */
    for (int64_t h = slice.q_heads.begin; h < slice.q_heads.end; h++) {
      assert_int_equal(h / config_q_per_kv(c), slice.kv_heads.begin);
    }
    for (int64_t v = slice.vocab.begin; v < slice.vocab.end; v++) assert_int_equal(plan_vocab_owner(c, v), s);
    /* Shard sizes differ by at most one. */
    assert_true(range_size(slice.experts) >= c->num_local_experts / S);
    assert_true(range_size(slice.experts) <= c->num_local_experts / S + 1);
  }
  int *owners = malloc((size_t)(c->vocab_size + c->num_attention_heads + c->num_local_experts + 64) * sizeof *owners);
  count_owners(q, S, c->num_attention_heads, owners);
  count_owners(kv, S, c->num_key_value_heads, owners);
  count_owners(ex, S, c->num_local_experts, owners);
  count_owners(vocab, S, c->vocab_size, owners);
  for (int n = 1; n <= S; n++) {
    if (S % n != 0) continue;
    Range shards[64];
    for (int r = 0; r < n; r++) {
      assert_int_equal(plan_rank_shards(c, n, r, &shards[r]), STATUS_OK);
      assert_int_equal(range_size(shards[r]), S / n);
    }
    count_owners(shards, n, S, owners);
  }
  free(owners);
}

static void test_released_shapes(void **state) {
  (void)state;
  GptOssConfig c20 = make_config(64, 8, 32, 201088), c120 = make_config(64, 8, 128, 201088);
  check_config(&c20);
  check_config(&c120);
}

static void test_uneven_shapes(void **state) {
  (void)state;
  /* Fewer experts than shards, a vocabulary that does not divide, other head counts. */
  const int64_t shapes[][4] = {{64, 8, 32, 512}, {16, 4, 6, 300}, {8, 8, 3, 1001}, {12, 2, 5, 7}, {4, 1, 1, 10}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    GptOssConfig c = make_config(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3]);
    check_config(&c);
  }
}

static void test_refuses_rank_counts_that_do_not_divide(void **state) {
  (void)state;
  status_set_silent(1);
  GptOssConfig c8 = make_config(64, 8, 32, 512), c4 = make_config(32, 4, 8, 512);
  Range r;
  assert_int_equal(plan_rank_shards(&c8, 3, 0, &r), STATUS_INVALID_ARGUMENT);
  assert_non_null(strstr(status_last_error(), "must divide num_key_value_heads = 8"));
  assert_int_equal(plan_rank_shards(&c8, 16, 0, &r), STATUS_INVALID_ARGUMENT);
  assert_int_equal(plan_rank_shards(&c4, 8, 0, &r), STATUS_INVALID_ARGUMENT);
  assert_int_equal(plan_rank_shards(&c4, 0, 0, &r), STATUS_INVALID_ARGUMENT);
  assert_int_equal(plan_rank_shards(&c4, 4, 3, &r), STATUS_OK);
  assert_int_equal(r.begin, 3);
  status_set_silent(0);
}

static void test_summation_tree_nodes(void **state) {
  (void)state;
  for (int64_t n = 1; n <= 8; n *= 2) {
    for (int64_t b = 0; b < 8; b += 8 / n) {
      const Range block = {b, b + 8 / n};
      assert_true(plan_tree_has_node(8, block));
    }
  }
  const Range six_by_three[] = {{0, 2}, {2, 4}, {4, 6}}, six_by_two[] = {{0, 3}, {3, 6}};
  for (int i = 0; i < 3; i++) assert_true(plan_tree_has_node(6, six_by_three[i]));
  for (int i = 0; i < 2; i++) assert_false(plan_tree_has_node(6, six_by_two[i]));
  assert_int_equal(plan_tree_split(0, 6), 4);
  assert_int_equal(plan_tree_split(4, 6), 5);
}

/* Ranks that add their own block first, then the blocks, get the bits of adding shard by shard
 * in the same tree: this is what makes logits identical at every rank count. */
static void test_block_sums_equal_shard_sums(void **state) {
  (void)state;
  enum { N = 97 };
  const int64_t shard_counts[] = {8, 6, 4, 12};
  for (size_t c = 0; c < sizeof shard_counts / sizeof shard_counts[0]; c++) {
    const int64_t S = shard_counts[c];
    float *parts = malloc((size_t)(S * N) * sizeof *parts), *blocks = malloc((size_t)(S * N) * sizeof *blocks);
    uint64_t x = 12345 + (uint64_t)S;
    for (int64_t i = 0; i < S * N; i++) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      parts[i] = (float)((double)(x >> 11) / 9007199254740992.0 - 0.5) * 1000.0f;
    }
    float reference[N];
    memcpy(blocks, parts, (size_t)(S * N) * sizeof *blocks);
    sum_blocks_tree(blocks, S, 1, N);
    memcpy(reference, blocks, sizeof reference);
    for (int64_t k = 1; k <= S; k++) {
      if (S % k != 0) continue;
      bool aligned = true;
      for (int64_t b = 0; b < S; b += k) aligned = aligned && plan_tree_has_node(S, (Range){b, b + k});
      if (!aligned) continue;
      /* Each "rank" adds its k shards, then the blocks are added. */
      for (int64_t b = 0; b < S; b += k) {
        float *local = malloc((size_t)(k * N) * sizeof *local);
        memcpy(local, parts + b * N, (size_t)(k * N) * sizeof *local);
        sum_blocks_tree(local, k, 1, N);
        memcpy(blocks + (b / k) * N, local, N * sizeof *local);
        free(local);
      }
      sum_blocks_tree(blocks, S, k, N);
      assert_memory_equal(blocks, reference, sizeof reference);
    }
    free(parts);
    free(blocks);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_released_shapes),
      cmocka_unit_test(test_uneven_shapes),
      cmocka_unit_test(test_refuses_rank_counts_that_do_not_divide),
      cmocka_unit_test(test_summation_tree_nodes),
      cmocka_unit_test(test_block_sums_equal_shard_sums),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
