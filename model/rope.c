/* YaRN RoPE tables. The arithmetic follows the official reference in float32 (its inv_freq bit
 * patterns are listed in shared/notes) — low/high are not rounded (`truncate: false`). */
#include "model/rope.h"

#include <math.h>
#include <stdlib.h>

Status rope_init(Rope *rope, const GptOssConfig *c) {
  const int64_t half = c->head_dim / 2;
  rope->half_dim = half;
  rope->inv_freq = malloc((size_t)half * sizeof *rope->inv_freq);
  if (!rope->inv_freq) return status_error(STATUS_OUT_OF_MEMORY, "RoPE table of %lld floats", (long long)half);
  const float theta = (float)c->rope_theta;
  const float factor = (float)c->rope_scaling_factor;
  rope->concentration = 1.0f;
  if (factor > 1.0f) rope->concentration = (float)(0.1 * log((double)factor) + 1.0);

  double low = 0.0, high = 1.0;
  if (factor > 1.0f) {
    const double two_pi = 6.283185307179586476925;
    const double original = (double)c->rope_original_max_position_embeddings;
    low = half * log(original / (c->rope_beta_fast * two_pi)) / log(c->rope_theta);
    high = half * log(original / (c->rope_beta_slow * two_pi)) / log(c->rope_theta);
    if (c->rope_truncate) {
      low = floor(low);
      high = ceil(high);
    }
  }
  for (int64_t i = 0; i < half; i++) {
    const float freq = powf(theta, (float)(2 * i) / (float)c->head_dim);
    const float extrapolation = 1.0f / freq;
    if (factor <= 1.0f) {
      rope->inv_freq[i] = extrapolation;
      continue;
    }
    const float interpolation = 1.0f / (factor * freq);
    float ramp = (float)(((double)i - low) / (high - low));
    ramp = fminf(fmaxf(ramp, 0.0f), 1.0f);
    const float keep = 1.0f - ramp; /* weight of the unscaled frequency */
    rope->inv_freq[i] = interpolation * (1.0f - keep) + extrapolation * keep;
  }
  return STATUS_OK;
}

void rope_free(Rope *rope) {
  free(rope->inv_freq);
  rope->inv_freq = NULL;
}

void rope_angles(const Rope *rope, int64_t position, float *cos_out, float *sin_out) {
  for (int64_t i = 0; i < rope->half_dim; i++) {
    const float angle = (float)position * rope->inv_freq[i];
    cos_out[i] = cosf(angle) * rope->concentration;
    sin_out[i] = sinf(angle) * rope->concentration;
  }
}

void rope_apply(float *x, int64_t num_heads, int64_t half_dim, const float *cos_p, const float *sin_p) {
  for (int64_t h = 0; h < num_heads; h++) {
    float *head = x + h * 2 * half_dim;
    for (int64_t i = 0; i < half_dim; i++) {
      const float a = head[i], b = head[i + half_dim];
      head[i] = a * cos_p[i] - b * sin_p[i];
      head[i + half_dim] = b * cos_p[i] + a * sin_p[i];
    }
  }
}
