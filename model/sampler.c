/* Temperature + nucleus (top-p) sampling with a splitmix64 generator. */
#include "model/sampler.h"

#include <math.h>
#include <stdlib.h>

#include "model/kernels.h"

void sampler_init(Sampler *s, uint64_t seed, float temperature, float top_p) {
  s->state = seed;
  s->temperature = temperature;
  s->top_p = top_p;
  s->probs = NULL;
  s->order = NULL;
  s->capacity = 0;
}

void sampler_free(Sampler *s) {
  free(s->probs);
  free(s->order);
  s->probs = NULL;
  s->order = NULL;
}

static double next_uniform(Sampler *s) {
  uint64_t z = (s->state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

static const float *g_sort_probs;
static int by_prob_desc(const void *a, const void *b) {
  const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  if (g_sort_probs[x] != g_sort_probs[y]) return g_sort_probs[x] > g_sort_probs[y] ? -1 : 1;
  return x < y ? -1 : x > y;
}

int32_t sampler_sample(Sampler *s, const float *logits, int64_t vocab) {
  if (s->temperature <= 0.0f) return (int32_t)argmax_f32(logits, vocab);
  if (s->capacity < vocab) {
    sampler_free(s);
    s->probs = malloc((size_t)vocab * sizeof *s->probs);
    s->order = malloc((size_t)vocab * sizeof *s->order);
    if (!s->probs || !s->order) return -1;
    s->capacity = vocab;
  }
  const float max = logits[argmax_f32(logits, vocab)];
  double sum = 0.0;
  for (int64_t v = 0; v < vocab; v++) {
    s->probs[v] = expf((logits[v] - max) / s->temperature);
    sum += s->probs[v];
  }
  const double u = next_uniform(s);
  if (s->top_p >= 1.0f) {
    double acc = 0.0;
    for (int64_t v = 0; v < vocab; v++) {
      acc += s->probs[v] / sum;
      if (u < acc) return (int32_t)v;
    }
    return (int32_t)(vocab - 1);
  }
  /* Nucleus: the smallest set of most likely tokens whose mass reaches top_p. */
  for (int64_t v = 0; v < vocab; v++) s->order[v] = (int32_t)v;
  g_sort_probs = s->probs;
  qsort(s->order, (size_t)vocab, sizeof *s->order, by_prob_desc);
  double mass = 0.0;
  int64_t keep = 0;
  while (keep < vocab && mass < s->top_p * sum) mass += s->probs[s->order[keep++]];
  double acc = 0.0;
  for (int64_t i = 0; i < keep; i++) {
    acc += s->probs[s->order[i]] / mass;
    if (u < acc) return s->order[i];
  }
  return s->order[keep - 1];
}
