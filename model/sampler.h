/* Sampling the next token from full logits on rank 0: temperature, top-p, a seeded generator.
 * The logits are bitwise identical for every rank count, so the same seed gives the same
 * tokens at any rank count. Greedy decoding does not come here (dist/ agrees on the argmax
 * without gathering the vocabulary). */
#ifndef GPTOSS_MODEL_SAMPLER_H
#define GPTOSS_MODEL_SAMPLER_H

#include <stdint.h>

typedef struct {
  uint64_t state;
  float temperature;
  float top_p;
  float *probs;        /* [vocab] scratch */
  int32_t *order;      /* [vocab] scratch */
  int64_t capacity;
} Sampler;

void sampler_init(Sampler *s, uint64_t seed, float temperature, float top_p);
void sampler_free(Sampler *s);
/* Returns a token id; temperature 0 returns the argmax (lowest id on ties). -1 if out of memory. */
int32_t sampler_sample(Sampler *s, const float *logits, int64_t vocab);

#endif
