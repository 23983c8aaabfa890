/* Sampling over vocabulary slices (model/sampler.h) against the same procedure on the whole
 * vector, and the distribution it draws from. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

#include "model/plan.h"
#include "model/sampler.h"

enum { VOCAB = 1000, SLICES = 8 };

static void random_logits(float *logits, int64_t n, uint64_t seed, float scale) {
  Sampler rng;
  sampler_init(&rng, seed);
  for (int64_t i = 0; i < n; i++) logits[i] = (float)((sampler_uniform(&rng) * 2.0 - 1.0) * scale);
}

/* What dist/engine.c does with S slices, in one process. */
static int32_t sample_by_slices(const float *logits, float temperature, float top_p, double u) {
  float max = -INFINITY;
  double masses[SLICES], total = 0.0;
  for (int s = 0; s < SLICES; s++) {
    const Range r = plan_split(VOCAB, SLICES, s);
    const float m = sampler_slice_max(logits + r.begin, range_size(r));
    max = m > max ? m : max;
  }
  for (int s = 0; s < SLICES; s++) {
    const Range r = plan_split(VOCAB, SLICES, s);
    masses[s] = sampler_slice_mass(logits + r.begin, range_size(r), max, temperature);
    total += masses[s];
  }
  if (top_p >= 1.0f) {
    double before = 0.0;
    int s = 0;
    while (s < SLICES - 1 && before + masses[s] <= u * total) before += masses[s++];
    const Range r = plan_split(VOCAB, SLICES, s);
    return sampler_slice_pick(logits + r.begin, range_size(r), (int32_t)r.begin, max, temperature, before, u * total);
  }
  /* Rounds as in dist/engine.c: each slice sends its head, 4x longer each round. */
  SampleCandidate sorted[VOCAB], gathered[VOCAB];
  int64_t sizes[SLICES], counts[SLICES];
  for (int s = 0; s < SLICES; s++) {
    const Range r = plan_split(VOCAB, SLICES, s);
    sizes[s] = range_size(r);
    sampler_slice_sorted(logits + r.begin, sizes[s], (int32_t)r.begin, max, temperature, sorted + r.begin);
  }
  int32_t id = -1;
  for (int64_t head = 2;; head *= 4) {
    int64_t n = 0;
    for (int s = 0; s < SLICES; s++) {
      counts[s] = sizes[s] < head ? sizes[s] : head;
      for (int64_t i = 0; i < counts[s]; i++) gathered[n++] = sorted[plan_split(VOCAB, SLICES, s).begin + i];
    }
    if (sampler_pick_from_slices(gathered, counts, sizes, SLICES, total, top_p, u, &id)) break;
    assert_true(head < VOCAB);
  }
  return id;
}

static void test_slices_pick_what_the_whole_vector_picks(void **state) {
  (void)state;
  float logits[VOCAB];
  Sampler draws;
  sampler_init(&draws, 99);
  const float settings[][2] = {{1.0f, 1.0f}, {0.7f, 0.9f}, {1.3f, 0.5f}, {0.5f, 0.99f}};
  for (int trial = 0; trial < 200; trial++) {
    random_logits(logits, VOCAB, (uint64_t)trial, 6.0f);
    for (size_t k = 0; k < sizeof settings / sizeof settings[0]; k++) {
      const double u = sampler_uniform(&draws);
      const int32_t whole = sampler_sample_full(logits, VOCAB, settings[k][0], settings[k][1], u);
      assert_int_equal(sample_by_slices(logits, settings[k][0], settings[k][1], u), whole);
    }
  }
}

/* Two tokens with logits 0 and ln 3 at T = 1: the second comes up 3/4 of the time. */
static void test_draws_follow_the_softmax(void **state) {
  (void)state;
  const float logits[2] = {0.0f, logf(3.0f)};
  Sampler rng;
  sampler_init(&rng, 7);
  int second = 0;
  const int n = 20000;
  for (int i = 0; i < n; i++) second += sampler_sample_full(logits, 2, 1.0f, 1.0f, sampler_uniform(&rng)) == 1;
  assert_true(fabs((double)second / n - 0.75) < 0.015); /* ~5 standard deviations */
}

/* top_p small enough keeps only the most likely token. */
static void test_tiny_top_p_is_the_argmax(void **state) {
  (void)state;
  float logits[VOCAB];
  random_logits(logits, VOCAB, 5, 3.0f);
  int32_t best = 0;
  for (int32_t i = 1; i < VOCAB; i++) best = logits[i] > logits[best] ? i : best;
  Sampler rng;
  sampler_init(&rng, 1);
  for (int i = 0; i < 50; i++) assert_int_equal(sampler_sample_full(logits, VOCAB, 1.0f, 1e-6f, sampler_uniform(&rng)), best);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_slices_pick_what_the_whole_vector_picks),
      cmocka_unit_test(test_draws_follow_the_softmax),
      cmocka_unit_test(test_tiny_top_p_is_the_argmax),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
