/* The shard plan: every query head, KV head, expert and vocabulary row is owned by exactly one
 * shard, every shard by exactly one rank, for every valid rank count; bad rank counts are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_released_shapes),
      cmocka_unit_test(test_uneven_shapes),
      cmocka_unit_test(test_refuses_rank_counts_that_do_not_divide),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
