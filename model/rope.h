/* Rotary position embedding with YaRN scaling, as GPT-OSS defines it (SPEC.md, "RoPE (YaRN)").
 * Pairs are (i, i + D/2) — the "half split" — and cos/sin carry YaRN's concentration factor, so
 * it scales q and k alike (c² on every score, at every position). */
#ifndef GPTOSS_MODEL_ROPE_H
#define GPTOSS_MODEL_ROPE_H

#include <stdint.h>

#include "model/config.h"

typedef struct {
  int64_t half_dim;      /* D / 2 */
  float concentration;   /* 0.1·ln(factor) + 1, or 1 without scaling */
  float *inv_freq;       /* [D/2] */
} Rope;

Status rope_init(Rope *rope, const GptOssConfig *config);
void rope_free(Rope *rope);

/* cos and sin (each [D/2], concentration included) for one position. */
void rope_angles(const Rope *rope, int64_t position, float *cos_out, float *sin_out);

/* Rotates each of num_heads heads of D values in place. */
void rope_apply(float *x, int64_t num_heads, int64_t half_dim, const float *cos_p, const float *sin_p);

#endif
