/* The largest |a[i] - b[i]| of two float arrays, for the tests' tolerance checks. NaN if any
 * difference is NaN: fmaxf would drop it, and a NaN logit would pass as a match. */
#ifndef GPTOSS_TESTS_MAX_DIFF_H
#define GPTOSS_TESTS_MAX_DIFF_H

#include <math.h>
#include <stdint.h>

static inline float max_abs_diff_f32(const float *a, const float *b, int64_t n) {
  float worst = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float d = fabsf(a[i] - b[i]);
    if (isnan(d)) return NAN;
    if (d > worst) worst = d;
  }
  return worst;
}

#endif
