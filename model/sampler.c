/* Temperature + nucleus sampling over vocabulary slices (see sampler.h). */
#include "model/sampler.h"

#include <math.h>
#include <stdlib.h>

void sampler_init(Sampler *s, uint64_t seed) { s->state = seed; }

double sampler_uniform(Sampler *s) {
  uint64_t z = (s->state += 0x9E3779B97F4A7C15ULL); /* splitmix64 */
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

float sampler_slice_max(const float *logits, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; i++) max = logits[i] > max ? logits[i] : max;
  return max;
}

static double weight_of(float logit, float max, float temperature) {
  return exp(((double)logit - (double)max) / (double)temperature);
}

double sampler_slice_mass(const float *logits, int64_t n, float max, float temperature) {
  double mass = 0.0;
  for (int64_t i = 0; i < n; i++) mass += weight_of(logits[i], max, temperature);
  return mass;
}

int32_t sampler_slice_pick(const float *logits, int64_t n, int32_t first_id, float max, float temperature,
                           double mass_before, double target) {
  double mass = mass_before;
  for (int64_t i = 0; i < n; i++) {
    mass += weight_of(logits[i], max, temperature);
    if (mass > target) return first_id + (int32_t)i;
  }
  return first_id + (int32_t)(n - 1);
}

static int by_weight_desc(const void *a, const void *b) {
  const SampleCandidate *x = a, *y = b;
  if (x->weight != y->weight) return x->weight > y->weight ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

void sampler_slice_sorted(const float *logits, int64_t n, int32_t first_id, float max, float temperature,
                          SampleCandidate *out) {
  for (int64_t i = 0; i < n; i++) out[i] = (SampleCandidate){weight_of(logits[i], max, temperature), first_id + (int32_t)i};
  qsort(out, (size_t)n, sizeof *out, by_weight_desc);
}

bool sampler_pick_from_slices(SampleCandidate *gathered, const int64_t *counts, const int64_t *slice_sizes,
                              int64_t num_slices, double total_mass, double top_p, double u, int32_t *id_out) {
  /* The last candidate of each slice that held some back: nothing unsent can precede it. */
  SampleCandidate floors[num_slices > 0 ? num_slices : 1];
  int64_t num_floors = 0, n = 0;
  for (int64_t i = 0; i < num_slices; i++) {
    n += counts[i];
    if (counts[i] < slice_sizes[i]) floors[num_floors++] = counts[i] > 0 ? gathered[n - 1] : (SampleCandidate){INFINITY, -1};
  }
  qsort(gathered, (size_t)n, sizeof *gathered, by_weight_desc);
  double mass = 0.0;
  int64_t kept = 0;
  while (kept < n && mass < top_p * total_mass) mass += gathered[kept++].weight;
  if (kept == 0 || (mass < top_p * total_mass && num_floors > 0)) return false;
  for (int64_t f = 0; f < num_floors; f++) {
    if (by_weight_desc(&floors[f], &gathered[kept - 1]) <= 0) return false;
  }
  const double target = u * mass;
  double running = 0.0;
  *id_out = gathered[kept - 1].id;
  for (int64_t i = 0; i < kept; i++) {
    running += gathered[i].weight;
    if (running > target) {
      *id_out = gathered[i].id;
      break;
    }
  }
  return true;
}

int32_t sampler_sample_full(const float *logits, int64_t vocab, float temperature, float top_p, double u) {
  const float max = sampler_slice_max(logits, vocab);
  const double total = sampler_slice_mass(logits, vocab, max, temperature);
  if (top_p >= 1.0f) return sampler_slice_pick(logits, vocab, 0, max, temperature, 0.0, u * total);
  SampleCandidate *c = malloc((size_t)vocab * sizeof *c);
  if (!c) return -1;
  sampler_slice_sorted(logits, vocab, 0, max, temperature, c);
  int32_t id = -1;
  sampler_pick_from_slices(c, &vocab, &vocab, 1, total, top_p, u, &id);
  free(c);
  return id;
}
