/* compare_logits OUT.h5 REF.h5 [--tol T | --exact]: compares the /logits datasets of two files
 * (max |difference|, argmax per row) and exits 1 if they disagree. Used by tests/cli.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/logits_file.h"
#include "model/kernels.h"
#include "max_diff.h"

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: compare_logits OUT.h5 REF.h5 [--tol T | --exact]\n");
    return 2;
  }
  const int exact = argc > 3 && !strcmp(argv[3], "--exact");
  const float tol = argc > 4 && !strcmp(argv[3], "--tol") ? strtof(argv[4], NULL) : 2e-4f;
  float *a = NULL, *b = NULL;
  int64_t da[2], db[2];
  if (h5_read_floats(argv[1], "logits", &a, da) != STATUS_OK || h5_read_floats(argv[2], "logits", &b, db) != STATUS_OK) return 2;
  if (da[0] != db[0] || da[1] != db[1]) {
    fprintf(stderr, "shapes differ: [%lld, %lld] vs [%lld, %lld]\n", (long long)da[0], (long long)da[1], (long long)db[0],
            (long long)db[1]);
    return 1;
  }
  float worst = 0.0f;
  int64_t argmax_mismatches = 0, bit_mismatches = 0;
  for (int64_t r = 0; r < da[0]; r++) {
    const float *x = a + r * da[1], *y = b + r * da[1];
    const float row_worst = max_abs_diff_f32(x, y, da[1]);
    if (!(row_worst <= worst)) worst = isnan(worst) ? worst : row_worst; /* a NaN stays */
    for (int64_t v = 0; v < da[1]; v++) bit_mismatches += memcmp(&x[v], &y[v], sizeof(float)) != 0;
    argmax_mismatches += argmax_f32(x, da[1]) != argmax_f32(y, da[1]);
  }
  printf("rows %lld  max_abs_diff %.3g  argmax_mismatches %lld  bitwise_mismatches %lld\n", (long long)da[0], worst,
         (long long)argmax_mismatches, (long long)bit_mismatches);
  free(a);
  free(b);
  if (exact) return bit_mismatches == 0 ? 0 : 1;
  return worst <= tol && argmax_mismatches == 0 ? 0 : 1; /* false for NaN */
}
