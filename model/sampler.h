/* Sampling the next token: temperature, nucleus (top-p), a seeded generator — computed where
 * the logits are. Each vocabulary shard reduces its own slice to a few numbers (its maximum, its
 * probability mass) or a short list of candidates; rank 0 combines them. Shards are summed in
 * shard order and candidates ordered by (probability, id), so the choice does not depend on how
 * shards are spread over ranks: the same seed gives the same tokens at any rank count.
 *
 * Probabilities are unnormalised weights w = exp((logit − M) / T), M the global maximum, in
 * double precision. Greedy decoding (T = 0) does not come here: dist/ agrees on the argmax. */
#ifndef GPTOSS_MODEL_SAMPLER_H
#define GPTOSS_MODEL_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  uint64_t state;
} Sampler;

void sampler_init(Sampler *s, uint64_t seed);
/* The next uniform draw in [0, 1). */
double sampler_uniform(Sampler *s);

typedef struct {
  double weight;
  int32_t id;
} SampleCandidate;

float sampler_slice_max(const float *logits, int64_t n);
/* Σ exp((logit − max) / T) over the slice, in order. */
double sampler_slice_mass(const float *logits, int64_t n, float max, float temperature);

/* Picks from a slice by inverse CDF: the first id whose running mass (starting at `mass_before`)
 * exceeds `target`; the last id if rounding leaves none. */
int32_t sampler_slice_pick(const float *logits, int64_t n, int32_t first_id, float max, float temperature,
                           double mass_before, double target);

/* The slice's tokens as candidates in (weight desc, id asc) order; `out` holds n entries. */
void sampler_slice_sorted(const float *logits, int64_t n, int32_t first_id, float max, float temperature,
                          SampleCandidate *out);

/* Nucleus sampling from the heads of sorted slices. Slice i sent its first counts[i] of
 * slice_sizes[i] candidates (gathered, concatenated in slice order; `gathered` is reordered).
 * The nucleus is the shortest prefix, in global (weight desc, id asc) order, whose mass reaches
 * top_p · total_mass. It is decided when every slice that held back tokens sent a last
 * candidate that comes after the nucleus's last member (so nothing held back can be in it);
 * then *id_out gets the pick for uniform draw u and the result is true. False: some slice must
 * send more. */
bool sampler_pick_from_slices(SampleCandidate *gathered, const int64_t *counts, const int64_t *slice_sizes,
                              int64_t num_slices, double total_mass, double top_p, double u, int32_t *id_out);

/* Reference: the whole procedure on one full logits vector (one slice). */
int32_t sampler_sample_full(const float *logits, int64_t vocab, float temperature, float top_p, double u);

#endif
