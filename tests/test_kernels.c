/* Kernel tests: every kernel in model/kernels.h and model/rope.h against a slow, obviously-correct
 * version written here from SPEC.md (or, for the matmuls, the *_ref versions), for every ISA this
 * CPU can run. Also the engine's promises: results do not depend on the OpenMP thread count, and a
 * batch computes exactly what each of its tokens computes alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>
#include <omp.h>

#include "model/kernels.h"
#include "model/rope.h"

/* Engine matmul vs the double-accumulating reference, relative to Σ|w·x| + |bias|: fp32
 * accumulation in a different order loses a few eps of that sum; one wrong element of 2880 costs
 * ~1/2880 = 3.5e-4 of it. */
static const double MATMUL_TOL = 1e-5;
/* rmsnorm / swiglu / topk weights vs double: a few ulps of libm (expf, sqrtf) and a float sum. */
static const double RMSNORM_TOL = 1e-5;
static const double SWIGLU_TOL = 1e-6;  /* times (1 + |1.702·gate|): exp amplifies its rounding */
static const double TOPK_TOL = 1e-6;
/* inv_freq vs the official reference's fp32 bits (shared/notes): torch's powf is not correctly
 * rounded, so exact equality is not required. */
static const int64_t ROPE_INV_FREQ_ULPS = 1;
/* cos/sin spot values are quoted to 8 decimals. */
static const double ROPE_ANGLE_TOL = 1e-6;
static const double ROPE_APPLY_TOL = 1e-6;
/* YaRN tables vs a double-precision evaluation of the same formula. */
static const double ROPE_TABLE_REL_TOL = 4e-7;
static const double ATTENTION_TOL = 2e-5; /* absolute, outputs are O(1): fp32 sums over up to 433 keys */
/* One softmax weight against double: the kernel's own exp (1.3 ulps), the sink's expf, the sum,
 * the reciprocal and the product each round once. Weights below e^-87 may be flushed to 0. */
static const double ATTENTION_WEIGHT_REL_TOL = 4.0 * 0x1p-24;
static const double ATTENTION_WEIGHT_FLUSH = 2e-38;

/* ---------- helpers ---------- */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static uint64_t rng_next(void) { /* splitmix64: reproducible across platforms */
  uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static float rng_uniform(float lo, float hi) {
  return lo + (hi - lo) * (float)((double)(rng_next() >> 11) / 9007199254740992.0);
}

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static uint16_t f32_to_bf16(float f) { /* round to nearest even; inputs here are finite */
  const uint32_t u = f32_bits(f);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

static void fill_bf16(uint16_t *w, int64_t n, float scale) {
  for (int64_t i = 0; i < n; i++) w[i] = f32_to_bf16(rng_uniform(-scale, scale));
}

static void fill_f32(float *x, int64_t n, float scale) {
  for (int64_t i = 0; i < n; i++) x[i] = rng_uniform(-scale, scale);
}

static void assert_close(double actual, double expected, double tol, const char *what, int64_t index) {
  if (fabs(actual - expected) <= tol) return;
  fail_msg("%s[%lld]: got %.9g, expected %.9g (tolerance %.3g)", what, (long long)index, actual, expected, tol);
}

/* Runs `body` once per ISA this CPU supports, then restores the automatic choice. */
typedef void (*IsaTest)(KernelIsa isa);

static void for_each_isa(IsaTest body) {
  const KernelIsa chosen = kernels_active_isa();
  for (int isa = 0; isa < KERNEL_ISA_COUNT; isa++) {
    if (!kernels_select_isa((KernelIsa)isa)) {
      print_message("  (%s kernels: not supported by this CPU, skipped)\n", kernels_isa_name((KernelIsa)isa));
      continue;
    }
    body((KernelIsa)isa);
  }
  assert_true(kernels_select_isa(chosen));
  assert_false(kernels_select_isa(KERNEL_ISA_COUNT));
  assert_int_equal(kernels_active_isa(), chosen);
}

/* ---------- decoding ---------- */

/* E2M1 from its fields (sign, 2 exponent bits with bias 1, 1 mantissa bit), not from a table. */
static double e2m1_value(unsigned code) {
  const unsigned exponent = (code >> 1) & 3u, mantissa = code & 1u;
  const double magnitude = exponent == 0 ? 0.5 * mantissa : ldexp(1.0 + 0.5 * mantissa, (int)exponent - 1);
  return (code & 8u) ? -magnitude : magnitude;
}

static void test_e2m1_table(void **state) {
  (void)state;
  static const double expected[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  for (unsigned code = 0; code < 16; code++) {
    assert_true(e2m1_value(code) == ((code & 8u) ? -expected[code & 7u] : expected[code & 7u]));
    assert_true(MXFP4_VALUES[code] == (float)e2m1_value(code));
    assert_int_equal(signbit(MXFP4_VALUES[code]) != 0, code >= 8);
  }
}

/* One row of every code pair (each byte value once per 16-byte block) under one scale code. */
static void check_mxfp4_decode_scale(int scale_code) {
  enum { COLS = 256 * 2, BLOCKS = COLS / MXFP4_BLOCK_ELEMS };
  uint8_t codes[BLOCKS * MXFP4_BLOCK_BYTES], scales[BLOCKS];
  float out[COLS];
  for (int i = 0; i < BLOCKS * MXFP4_BLOCK_BYTES; i++) codes[i] = (uint8_t)i;
  memset(scales, scale_code, sizeof scales);
  mxfp4_decode_row(out, codes, scales, COLS);
  for (int c = 0; c < COLS; c++) {
    const uint8_t byte = codes[c / 2];
    const unsigned code = (c % 2 == 0) ? (byte & 0x0Fu) : (byte >> 4); /* element 2i = low nibble */
    const double value = e2m1_value(code) * ldexp(1.0, scale_code - 127);
    if (scale_code == 255) {
      /* E8M0 255 is NaN in the OCP spec; the reference's ldexp gives inf (NaN for zero codes). */
      assert_false(isfinite(out[c]));
      continue;
    }
    if (value == 0.0) {
      assert_true(out[c] == 0.0f);
      assert_int_equal(signbit(out[c]) != 0, (code & 8u) != 0);
      continue;
    }
    if (f32_bits(out[c]) != f32_bits((float)value)) {
      fail_msg("scale %d element %d (code %u): got %a, expected %a", scale_code, c, code, (double)out[c], value);
    }
  }
}

static void mxfp4_decode_for_isa(KernelIsa isa) {
  static const int scale_codes[] = {0, 1, 2, 100, 126, 127, 128, 129, 200, 253, 254, 255};
  for (size_t i = 0; i < sizeof scale_codes / sizeof scale_codes[0]; i++) check_mxfp4_decode_scale(scale_codes[i]);
  /* Blocks with different scales in one row: each block uses its own scale byte. */
  uint8_t codes[3 * MXFP4_BLOCK_BYTES], scales[3] = {127, 130, 120};
  float out[3 * MXFP4_BLOCK_ELEMS];
  memset(codes, 0x21, sizeof codes); /* low nibble 1 (0.5), high nibble 2 (1.0) */
  mxfp4_decode_row(out, codes, scales, 3 * MXFP4_BLOCK_ELEMS);
  for (int c = 0; c < 3 * MXFP4_BLOCK_ELEMS; c++) {
    const double expected = (c % 2 ? 1.0 : 0.5) * ldexp(1.0, scales[c / MXFP4_BLOCK_ELEMS] - 127);
    if (out[c] != (float)expected) fail_msg("%s: element %d = %g, expected %g", kernels_isa_name(isa), c, (double)out[c], expected);
  }
}

static void test_mxfp4_decode(void **state) {
  (void)state;
  for_each_isa(mxfp4_decode_for_isa);
}

/* bf16 from its fields, for all 65536 patterns. */
static void bf16_decode_for_isa(KernelIsa isa) {
  enum { N = 65536 + 3 }; /* not a multiple of 8: exercises the tail */
  uint16_t *bits = malloc(N * sizeof *bits);
  float *out = malloc(N * sizeof *out);
  for (int i = 0; i < N; i++) bits[i] = (uint16_t)i;
  bf16_decode_row(out, bits, N);
  for (int i = 0; i < N; i++) {
    const unsigned sign = bits[i] >> 15, exponent = (bits[i] >> 7) & 0xFFu, mantissa = bits[i] & 0x7Fu;
    if (exponent == 0xFF) {
      assert_true(mantissa ? isnan(out[i]) : isinf(out[i]));
      continue;
    }
    const double magnitude = exponent == 0 ? ldexp(mantissa / 128.0, -126) : ldexp(1.0 + mantissa / 128.0, (int)exponent - 127);
    const float expected = (float)(sign ? -magnitude : magnitude);
    if (f32_bits(out[i]) != f32_bits(expected)) {
      fail_msg("%s: bf16 0x%04x -> %a, expected %a", kernels_isa_name(isa), bits[i], (double)out[i], (double)expected);
    }
    assert_true(bf16_to_f32(bits[i]) == out[i] || isnan(out[i]));
  }
  free(bits);
  free(out);
}

static void test_bf16_decode(void **state) {
  (void)state;
  for_each_isa(bf16_decode_for_isa);
}

/* ---------- matmuls ---------- */

typedef struct {
  int64_t num_tokens, rows, cols;
  int with_bias;
} Shape;

/* num_tokens 1 and > 1; rows that are not multiples of 8 (or of the thread count); cols with
 * odd block counts (2880 = 90 blocks, 96 = 3) and, for bf16, cols that are not multiples of 32.
 * The batches of MATMUL_GEMM_MIN_TOKENS or more (matrix products on decoded tiles) include
 * several row tiles with a ragged last one (sgemm: 128-row tiles at 2880 columns, narrower ones
 * at 8192; packed: 8 register blocks of rows — AVX-512 14 rows of 32 tokens, AVX2 6 of 16), token
 * counts that leave a partial group of lanes, column counts that leave a partial slice
 * of 256 (2880, 8192 not, 100, 31), several token blocks of 256 with a ragged last one, and enough tiles (13, 14) that 1-3 threads
 * take them dynamically as well as few enough that they split them statically. The streamed bf16
 * batches cover every leftover of the register blocks (AVX2: 2 rows x 3 tokens; AVX-512: 4 x 3,
 * 32-element groups): 6 to 9 tokens, as batched decode runs them, and cols below one group. */
static const Shape MXFP4_SHAPES[] = {
    {1, 1, 32, 0},   {1, 7, 64, 1},    {1, 13, 96, 1},  {3, 13, 96, 0},   {2, 5, 32, 1},
    {5, 33, 320, 1}, {1, 67, 2880, 1}, {4, 19, 2880, 0}, {17, 9, 160, 1}, {8, 3, 96, 0},
    {70, 300, 2880, 1}, {300, 20, 96, 1}, {12, 1700, 2880, 0}, {30, 61, 2880, 1}, {64, 130, 2880, 0},
};
static const Shape BF16_SHAPES[] = {
    {1, 1, 1, 0},     {1, 3, 7, 1},      {2, 5, 8, 0},      {1, 9, 33, 1},    {3, 11, 40, 1},
    {1, 13, 64, 0},   {4, 7, 95, 1},     {1, 67, 2880, 1},  {5, 21, 2880, 0}, {2, 6, 4096, 1},
    {17, 10, 100, 1}, {300, 530, 256, 1}, {9, 100, 8192, 0}, {520, 64, 64, 1}, {9, 1600, 2880, 1},
    {6, 9, 96, 1},    {7, 10, 200, 0},   {8, 23, 2880, 1},  {8, 6, 31, 0},    {30, 29, 300, 0},
    {64, 130, 2880, 1},
};

/* Σ|w·x| + |bias| per output, the scale MATMUL_TOL is relative to; w given decoded. */
static void check_against_ref(const float *y, const float *y_ref, const float *w_f32, const uint16_t *bias,
                              const float *x, const Shape *s, const char *what) {
  for (int64_t t = 0; t < s->num_tokens; t++) {
    for (int64_t r = 0; r < s->rows; r++) {
      double magnitude = bias ? fabs(bf16_to_f32(bias[r])) : 0.0;
      for (int64_t c = 0; c < s->cols; c++) magnitude += fabs((double)w_f32[r * s->cols + c] * x[t * s->cols + c]);
      assert_close(y[t * s->rows + r], y_ref[t * s->rows + r], MATMUL_TOL * magnitude, what, t * s->rows + r);
    }
  }
}

/* Batches of MATMUL_GEMM_MIN_TOKENS or more on the AVX2 and AVX-512 kernels (their own register
 * blocks, kernels_gemm.c): every output is exactly one fmaf chain over the columns in order, then
 * the bias — the same bits on either ISA and whatever else shares the batch. */
static void check_packed_exact(KernelIsa isa, const float *y, const float *w_f32, const uint16_t *bias, const float *x,
                               const Shape *s, const char *what) {
  if (isa == KERNEL_ISA_PORTABLE || s->num_tokens < MATMUL_GEMM_MIN_TOKENS) return;
  for (int64_t t = 0; t < s->num_tokens; t++) {
    for (int64_t r = 0; r < s->rows; r++) {
      float chain = 0.0f;
      for (int64_t c = 0; c < s->cols; c++) chain = fmaf(w_f32[r * s->cols + c], x[t * s->cols + c], chain);
      const float expected = chain + (bias ? bf16_to_f32(bias[r]) : 0.0f);
      if (f32_bits(y[t * s->rows + r]) != f32_bits(expected)) {
        fail_msg("%s: output [%lld, %lld] = %.9g is not the column-order FMA chain %.9g", what, (long long)t,
                 (long long)r, y[t * s->rows + r], expected);
      }
    }
  }
}

typedef void (*MatmulFn)(float *y, const void *weights, const uint16_t *bias, const float *x, int64_t num_tokens,
                         int64_t rows, int64_t cols);

/* Same numbers on 1, 2 and 3 threads, and each token of a small batch the same as alone (batches
 * of MATMUL_GEMM_MIN_TOKENS or more run as matrix products, which add in another order: the
 * reference comparison covers them). */
static void check_deterministic(MatmulFn matmul, const float *y, const void *weights, const uint16_t *bias,
                                const float *x, const Shape *s, const char *what) {
  const size_t y_bytes = (size_t)(s->num_tokens * s->rows) * sizeof(float);
  float *other = malloc(y_bytes);
  for (int threads = 1; threads <= 3; threads++) {
    omp_set_num_threads(threads);
    matmul(other, weights, bias, x, s->num_tokens, s->rows, s->cols);
    if (memcmp(other, y, y_bytes) != 0) fail_msg("%s: %d thread(s) changed the result", what, threads);
  }
  omp_set_num_threads(2);
  for (int64_t t = 0; s->num_tokens < MATMUL_GEMM_MIN_TOKENS && t < s->num_tokens; t++) {
    matmul(other, weights, bias, x + t * s->cols, 1, s->rows, s->cols);
    if (memcmp(other, y + t * s->rows, (size_t)s->rows * sizeof(float)) != 0) {
      fail_msg("%s: token %lld of a batch of %lld differs from the same token alone", what, (long long)t,
               (long long)s->num_tokens);
    }
  }
  free(other);
}

/* The row-streaming variant (batched decode): close to the reference for any batch, and every
 * token of a batch of any size exactly what it gives alone. */
static void check_stream_batch_invariant(MatmulFn stream, const float *y_ref, const float *w_f32, const void *weights,
                                         const uint16_t *bias, const float *x, const Shape *s, const char *what) {
  const size_t y_bytes = (size_t)(s->num_tokens * s->rows) * sizeof(float);
  float *batch = malloc(y_bytes), *alone = malloc((size_t)s->rows * sizeof(float));
  stream(batch, weights, bias, x, s->num_tokens, s->rows, s->cols);
  check_against_ref(batch, y_ref, w_f32, bias, x, s, what);
  for (int64_t t = 0; t < s->num_tokens; t++) {
    stream(alone, weights, bias, x + t * s->cols, 1, s->rows, s->cols);
    if (memcmp(alone, batch + t * s->rows, (size_t)s->rows * sizeof(float)) != 0) {
      fail_msg("%s: streamed token %lld of a batch of %lld differs from the same token alone", what, (long long)t,
               (long long)s->num_tokens);
    }
  }
  free(batch);
  free(alone);
}

/* ---- bf16 ---- */

static void matmul_bf16w_stream_engine(float *y, const void *w, const uint16_t *bias, const float *x, int64_t n,
                                       int64_t rows, int64_t cols) {
  matmul_f32_bf16w_stream(y, w, bias, x, n, rows, cols);
}

static void matmul_bf16w_engine(float *y, const void *w, const uint16_t *bias, const float *x, int64_t n, int64_t rows,
                                int64_t cols) {
  matmul_f32_bf16w(y, w, bias, x, n, rows, cols);
}

static void check_matmul_bf16w(KernelIsa isa, const Shape *s) {
  char what[128];
  snprintf(what, sizeof what, "%s bf16 T=%lld %lldx%lld%s", kernels_isa_name(isa), (long long)s->num_tokens,
           (long long)s->rows, (long long)s->cols, s->with_bias ? " +bias" : "");
  uint16_t *w = malloc((size_t)(s->rows * s->cols) * sizeof *w), *bias = malloc((size_t)s->rows * sizeof *bias);
  float *w_f32 = malloc((size_t)(s->rows * s->cols) * sizeof *w_f32), *x = malloc((size_t)(s->num_tokens * s->cols) * sizeof *x);
  float *y = malloc((size_t)(s->num_tokens * s->rows) * sizeof *y), *y_ref = malloc((size_t)(s->num_tokens * s->rows) * sizeof *y_ref);
  fill_bf16(w, s->rows * s->cols, 1.0f);
  fill_bf16(bias, s->rows, 2.0f);
  fill_f32(x, s->num_tokens * s->cols, 3.0f);
  for (int64_t i = 0; i < s->rows * s->cols; i++) w_f32[i] = bf16_to_f32(w[i]);
  const uint16_t *b = s->with_bias ? bias : NULL;
  omp_set_num_threads(2);
  matmul_f32_bf16w(y, w, b, x, s->num_tokens, s->rows, s->cols);
  matmul_f32_bf16w_ref(y_ref, w, b, x, s->num_tokens, s->rows, s->cols);
  check_against_ref(y, y_ref, w_f32, b, x, s, what);
  check_packed_exact(isa, y, w_f32, b, x, s, what);
  check_deterministic(matmul_bf16w_engine, y, w, b, x, s, what);
  check_stream_batch_invariant(matmul_bf16w_stream_engine, y_ref, w_f32, w, b, x, s, what);
  free(w), free(bias), free(w_f32), free(x), free(y), free(y_ref);
}

static void matmul_bf16w_for_isa(KernelIsa isa) {
  for (size_t i = 0; i < sizeof BF16_SHAPES / sizeof BF16_SHAPES[0]; i++) check_matmul_bf16w(isa, &BF16_SHAPES[i]);
}

static void test_matmul_bf16w(void **state) {
  (void)state;
  for_each_isa(matmul_bf16w_for_isa);
}

/* A list of products of different shapes (as a rank's attention shards give: q, k, v, then the
 * next shard's), 1-3 tokens, with and without bias, on 1-3 threads: every output bitwise what one
 * streamed call per product gives, and nothing written past a product's outputs. */
static void bf16_stream_list_for_isa(KernelIsa isa) {
  enum { COUNT = 7, COLS = 96, MAX_TOKENS = 3 };
  const int64_t rows[COUNT] = {13, 1, 2, 40, 5, 64, 3};
  uint16_t *w[COUNT], *bias[COUNT];
  float *x = malloc((size_t)(MAX_TOKENS * COLS) * sizeof *x), *y[COUNT], *expected[COUNT];
  fill_f32(x, MAX_TOKENS * COLS, 3.0f);
  for (int i = 0; i < COUNT; i++) {
    w[i] = malloc((size_t)(rows[i] * COLS) * sizeof *w[i]);
    bias[i] = malloc((size_t)rows[i] * sizeof *bias[i]);
    fill_bf16(w[i], rows[i] * COLS, 1.0f + (float)i);
    fill_bf16(bias[i], rows[i], 2.0f);
    y[i] = malloc((size_t)(MAX_TOKENS * rows[i] + 1) * sizeof *y[i]);
    expected[i] = malloc((size_t)(MAX_TOKENS * rows[i]) * sizeof *expected[i]);
  }
  Bf16Product products[COUNT];
  for (int threads = 1; threads <= 3; threads++) {
    omp_set_num_threads(threads);
    for (int64_t n = 1; n <= MAX_TOKENS; n++) {
      for (int i = 0; i < COUNT; i++) {
        const uint16_t *b = i % 2 ? bias[i] : NULL;
        products[i] = (Bf16Product){y[i], w[i], b, x, rows[i], COLS};
        for (int64_t j = 0; j <= n * rows[i]; j++) y[i][j] = -12345.0f; /* one past the end: a guard */
        matmul_f32_bf16w_stream(expected[i], w[i], b, x, n, rows[i], COLS);
      }
      matmul_f32_bf16w_stream_list(products, COUNT, n);
      for (int i = 0; i < COUNT; i++) {
        if (memcmp(y[i], expected[i], (size_t)(n * rows[i]) * sizeof(float)) != 0) {
          fail_msg("%s: list product %d (%lld rows, %lld tokens, %d threads) differs from its own call",
                   kernels_isa_name(isa), i, (long long)rows[i], (long long)n, threads);
        }
        if (y[i][n * rows[i]] != -12345.0f) fail_msg("%s: list product %d written past its end", kernels_isa_name(isa), i);
      }
    }
  }
  for (int i = 0; i < COUNT; i++) free(w[i]), free(bias[i]), free(y[i]), free(expected[i]);
  free(x);
}

static void test_matmul_bf16w_stream_list(void **state) {
  (void)state;
  for_each_isa(bf16_stream_list_for_isa);
}

/* ---- mxfp4 ---- */

typedef struct {
  const uint8_t *blocks, *scales;
} Mxfp4Weights;

static void matmul_mxfp4w_engine(float *y, const void *weights, const uint16_t *bias, const float *x, int64_t n,
                                 int64_t rows, int64_t cols) {
  const Mxfp4Weights *w = weights;
  matmul_f32_mxfp4w(y, w->blocks, w->scales, bias, x, n, rows, cols);
}

static void matmul_mxfp4w_stream_engine(float *y, const void *weights, const uint16_t *bias, const float *x, int64_t n,
                                        int64_t rows, int64_t cols) {
  const Mxfp4Weights *w = weights;
  matmul_f32_mxfp4w_stream(y, w->blocks, w->scales, bias, x, n, rows, cols);
}

/* scale_code < 0: random ordinary scales; otherwise every block uses scale_code, and x is
 * scaled by its inverse so results stay finite. */
static void check_matmul_mxfp4w(KernelIsa isa, const Shape *s, int scale_code) {
  char what[128];
  snprintf(what, sizeof what, "%s mxfp4 T=%lld %lldx%lld%s scale %d", kernels_isa_name(isa), (long long)s->num_tokens,
           (long long)s->rows, (long long)s->cols, s->with_bias ? " +bias" : "", scale_code);
  const int64_t num_blocks = s->rows * s->cols / MXFP4_BLOCK_ELEMS;
  uint8_t *blocks = malloc((size_t)num_blocks * MXFP4_BLOCK_BYTES), *scales = malloc((size_t)num_blocks);
  uint16_t *bias = malloc((size_t)s->rows * sizeof *bias);
  float *w_f32 = malloc((size_t)(s->rows * s->cols) * sizeof *w_f32), *x = malloc((size_t)(s->num_tokens * s->cols) * sizeof *x);
  float *y = malloc((size_t)(s->num_tokens * s->rows) * sizeof *y), *y_ref = malloc((size_t)(s->num_tokens * s->rows) * sizeof *y_ref);
  for (int64_t i = 0; i < num_blocks * MXFP4_BLOCK_BYTES; i++) blocks[i] = (uint8_t)rng_next();
  for (int64_t i = 0; i < num_blocks; i++) {
    scales[i] = (uint8_t)(scale_code < 0 ? 119 + (int)(rng_next() % 12) : scale_code); /* 2^-8 .. 2^3 */
  }
  fill_bf16(bias, s->rows, 2.0f);
  fill_f32(x, s->num_tokens * s->cols, scale_code > 127 ? ldexpf(3.0f, 127 - scale_code) : 3.0f);
  for (int64_t r = 0; r < s->rows; r++) {
    const int64_t bpr = s->cols / MXFP4_BLOCK_ELEMS;
    mxfp4_decode_row(w_f32 + r * s->cols, blocks + r * bpr * MXFP4_BLOCK_BYTES, scales + r * bpr, s->cols);
  }
  const uint16_t *b = s->with_bias ? bias : NULL;
  omp_set_num_threads(2);
  matmul_f32_mxfp4w(y, blocks, scales, b, x, s->num_tokens, s->rows, s->cols);
  matmul_f32_mxfp4w_ref(y_ref, blocks, scales, b, x, s->num_tokens, s->rows, s->cols);
  check_against_ref(y, y_ref, w_f32, b, x, s, what);
  check_packed_exact(isa, y, w_f32, b, x, s, what);
  const Mxfp4Weights weights = {blocks, scales};
  check_deterministic(matmul_mxfp4w_engine, y, &weights, b, x, s, what);
  check_stream_batch_invariant(matmul_mxfp4w_stream_engine, y_ref, w_f32, &weights, b, x, s, what);
  free(blocks), free(scales), free(bias), free(w_f32), free(x), free(y), free(y_ref);
}

static void matmul_mxfp4w_for_isa(KernelIsa isa) {
  for (size_t i = 0; i < sizeof MXFP4_SHAPES / sizeof MXFP4_SHAPES[0]; i++) check_matmul_mxfp4w(isa, &MXFP4_SHAPES[i], -1);
  /* Extreme E8M0 codes, with odd and even block counts: 0 is the subnormal 2^-127; 252 is the
   * largest for which every decoded value (6·2^125) is finite in fp32, as in the reference. */
  static const int extreme_scales[] = {0, 1, 2, 64, 126, 128, 200, 250, 252};
  static const Shape shapes[] = {{1, 3, 96, 1}, {2, 3, 96, 0}, {1, 2, 64, 0}, {3, 2, 64, 1}};
  for (size_t i = 0; i < sizeof extreme_scales / sizeof extreme_scales[0]; i++) {
    for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++) check_matmul_mxfp4w(isa, &shapes[j], extreme_scales[i]);
  }
}

static void test_matmul_mxfp4w(void **state) {
  (void)state;
  for_each_isa(matmul_mxfp4w_for_isa);
}

/* The reference itself, on numbers small enough to check by hand: nibble order, per-block scale,
 * bias, and the [num_tokens, rows] output layout. */
static void test_matmul_refs_by_hand(void **state) {
  (void)state;
  uint8_t blocks[2 * MXFP4_BLOCK_BYTES] = {0}, scales[2] = {127, 128};
  blocks[0] = 0x92;                  /* element 0 = code 2 (+1), element 1 = code 9 (-0.5) */
  blocks[MXFP4_BLOCK_BYTES] = 0x07;  /* row 1, element 0 = code 7 (+6), times 2 */
  const uint16_t bias[2] = {0x3F80, 0xC000}; /* 1, -2 */
  float x[2 * MXFP4_BLOCK_ELEMS] = {0};
  x[0] = 3.0f, x[1] = 4.0f, x[MXFP4_BLOCK_ELEMS] = 0.25f;
  float y[4];
  matmul_f32_mxfp4w_ref(y, blocks, scales, bias, x, 2, 2, MXFP4_BLOCK_ELEMS);
  const float expected[4] = {1 * 3 - 0.5f * 4 + 1, 12 * 3 - 2, 0.25f + 1, 12 * 0.25f - 2};
  for (int i = 0; i < 4; i++) assert_true(y[i] == expected[i]);

  const uint16_t w[6] = {0x3F80, 0x4000, 0xC040, 0x3F00, 0, 0x4080}; /* [[1, 2, -3], [0.5, 0, 4]] */
  const float xb[3] = {1, 10, 100};
  matmul_f32_bf16w_ref(y, w, bias, xb, 1, 2, 3);
  assert_true(y[0] == 1 + 20 - 300 + 1);
  assert_true(y[1] == 0.5f + 400 - 2);
}

/* ---------- elementwise ---------- */

static void test_rmsnorm(void **state) {
  (void)state;
  enum { TOKENS = 4, N = 2880 };
  static const float token_scale[TOKENS] = {1.0f, 1e-3f, 50.0f, 1e4f};
  float *x = malloc(TOKENS * N * sizeof *x), *out = malloc(TOKENS * N * sizeof *out);
  uint16_t *weight = malloc(N * sizeof *weight);
  fill_bf16(weight, N, 2.0f);
  for (int t = 0; t < TOKENS; t++) fill_f32(x + t * N, N, token_scale[t]);
  const float eps = 1e-5f;
  rmsnorm_f32_bf16w(out, x, weight, TOKENS, N, eps);
  for (int t = 0; t < TOKENS; t++) {
    double sum_sq = 0.0;
    for (int i = 0; i < N; i++) sum_sq += (double)x[t * N + i] * x[t * N + i];
    const double inv_rms = 1.0 / sqrt(sum_sq / N + eps);
    for (int i = 0; i < N; i++) {
      /* The weight multiplies after normalising. */
      const double expected = x[t * N + i] * inv_rms * bf16_to_f32(weight[i]);
      assert_close(out[t * N + i], expected, RMSNORM_TOL * fabs(expected) + 1e-30, "rmsnorm", t * N + i);
    }
  }
  /* eps matters for tiny inputs: x = 1e-3 everywhere, weight 1 -> 1e-3 / sqrt(1e-6 + 1e-5). */
  for (int i = 0; i < N; i++) x[i] = 1e-3f, weight[i] = 0x3F80;
  rmsnorm_f32_bf16w(out, x, weight, 1, N, eps);
  assert_close(out[0], 1e-3 / sqrt(1e-6 + 1e-5), RMSNORM_TOL, "rmsnorm eps", 0);
  free(x), free(out), free(weight);
}

/* exp turns the fp32 rounding of 1.702·gate (relative eps) into a relative error of about
 * eps·|1.702·gate| in its result. */
static double swiglu_tolerance(double expected, double gate, double limit) {
  return SWIGLU_TOL * (1.0 + 1.702 * fabs(fmin(gate, limit))) * fabs(expected) + 1e-37;
}

static double swiglu_double(double gate, double up, double limit) {
  gate = fmin(gate, limit);                 /* the gate is clamped from above only */
  up = fmax(fmin(up, limit), -limit);       /* up on both sides */
  return gate / (1.0 + exp(-1.702 * gate)) * (up + 1.0);
}

static void test_swiglu(void **state) {
  (void)state;
  static const float edges[] = {-1e6f, -20.0f, -7.5f, -7.0f, -6.9f, -1.0f, -0.0f, 0.0f,
                                0.5f,  1.0f,   6.9f,  7.0f,  7.1f,  20.0f, 1e6f};
  enum { NUM_EDGES = sizeof edges / sizeof edges[0], RANDOM = 1000, PAIRS = NUM_EDGES * NUM_EDGES + RANDOM };
  const float limit = 7.0f;
  float *u = malloc(2 * PAIRS * sizeof *u), *out = malloc(PAIRS * sizeof *out);
  for (int g = 0; g < NUM_EDGES; g++) {
    for (int p = 0; p < NUM_EDGES; p++) u[2 * (g * NUM_EDGES + p)] = edges[g], u[2 * (g * NUM_EDGES + p) + 1] = edges[p];
  }
  fill_f32(u + 2 * NUM_EDGES * NUM_EDGES, 2 * RANDOM, 12.0f);
  swiglu_interleaved(out, u, PAIRS, limit);
  for (int j = 0; j < PAIRS; j++) {
    const double expected = swiglu_double(u[2 * j], u[2 * j + 1], limit);
    assert_close(out[j], expected, swiglu_tolerance(expected, u[2 * j], limit), "swiglu", j);
  }
  /* Spot checks that tell the clamps apart (relative tolerance, so tiny values count). */
  float pair[2] = {-10.0f, -10.0f}; /* gate not clamped from below; up clamped to -7, +1 -> -6 */
  swiglu_interleaved(out, pair, 1, limit);
  const double below = -10.0 / (1.0 + exp(17.02)) * -6.0;
  assert_close(out[0], below, swiglu_tolerance(below, -10.0, limit), "swiglu gate below", 0);
  pair[0] = 10.0f, pair[1] = 10.0f; /* gate -> 7, up -> 7, +1 -> 8 */
  swiglu_interleaved(out, pair, 1, limit);
  const double above = 7.0 / (1.0 + exp(-1.702 * 7.0)) * 8.0;
  assert_close(out[0], above, swiglu_tolerance(above, 10.0, limit), "swiglu both above", 0);
  pair[0] = 1.0f, pair[1] = -1.0f; /* up + 1 = 0 */
  swiglu_interleaved(out, pair, 1, limit);
  assert_true(out[0] == 0.0f);
  free(u), free(out);
}

/* Reference top-k: repeatedly take the first strictly-largest unused logit. */
static void topk_check(const float *logits, int64_t n, int64_t k) {
  int32_t index[64];
  float weight[64];
  topk_softmax(logits, n, k, index, weight);
  int used[256] = {0};
  double max_logit = 0.0, sum = 0.0;
  for (int64_t i = 0; i < k; i++) {
    int64_t best = -1;
    for (int64_t e = 0; e < n; e++) {
      if (!used[e] && (best < 0 || logits[e] > logits[best])) best = e;
    }
    used[best] = 1;
    assert_int_equal(index[i], best);
    if (i == 0) max_logit = logits[best];
    sum += exp((double)logits[best] - max_logit);
  }
  double weight_sum = 0.0;
  for (int64_t i = 0; i < k; i++) {
    /* Softmax over the k selected logits only, not over all n. */
    const double expected = exp((double)logits[index[i]] - max_logit) / sum;
    assert_close(weight[i], expected, TOPK_TOL, "topk weight", i);
    if (i > 0) assert_true(weight[i] <= weight[i - 1]);
    weight_sum += weight[i];
  }
  assert_close(weight_sum, 1.0, TOPK_TOL * (double)k, "topk weight sum", 0);
}

/* The MoE's row helpers on 1-3 threads, at row counts below and above the threshold for threads:
 * bitwise the serial loops they replace (gather, SwiGLU per row, weighted scatter-add). */
static void test_moe_row_helpers(void **state) {
  (void)state;
  enum { WIDTH = 40, SRC_ROWS = 70 };
  static const int64_t counts[] = {1, 5, 15, 16, 17, 64};
  float *src = malloc(SRC_ROWS * WIDTH * sizeof *src), *rows = malloc(SRC_ROWS * WIDTH * sizeof *rows);
  float *dst = malloc(SRC_ROWS * WIDTH * sizeof *dst), *expected = malloc(SRC_ROWS * WIDTH * sizeof *expected);
  float *act = malloc(SRC_ROWS * WIDTH / 2 * sizeof *act), *weights = malloc(SRC_ROWS * sizeof *weights);
  int32_t index[SRC_ROWS];
  fill_f32(src, SRC_ROWS * WIDTH, 10.0f);
  fill_f32(weights, SRC_ROWS, 1.0f);
  for (int i = 0; i < SRC_ROWS; i++) index[i] = (int32_t)((i * 37 + 11) % SRC_ROWS); /* distinct, shuffled */
  for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
    const int64_t n = counts[c];
    for (int threads = 1; threads <= 3; threads++) {
      omp_set_num_threads(threads);
      gather_rows(rows, src, index, n, WIDTH);
      for (int64_t i = 0; i < n; i++) assert_memory_equal(rows + i * WIDTH, src + index[i] * WIDTH, WIDTH * sizeof(float));
      swiglu_rows(act, src, n, WIDTH / 2, 7.0f);
      for (int64_t i = 0; i < n; i++) {
        float one[WIDTH / 2];
        swiglu_interleaved(one, src + i * WIDTH, WIDTH / 2, 7.0f);
        assert_memory_equal(act + i * WIDTH / 2, one, sizeof one);
      }
      memcpy(dst, src, SRC_ROWS * WIDTH * sizeof *dst);
      memcpy(expected, src, SRC_ROWS * WIDTH * sizeof *expected);
      add_weighted_rows(dst, index, weights, rows, n, WIDTH);
      for (int64_t i = 0; i < n; i++) {
        for (int d = 0; d < WIDTH; d++) expected[index[i] * WIDTH + d] += weights[i] * rows[i * WIDTH + d];
      }
      assert_memory_equal(dst, expected, SRC_ROWS * WIDTH * sizeof *dst);
    }
  }
  omp_set_num_threads(2);
  free(src), free(rows), free(dst), free(expected), free(act), free(weights);
}

static void test_topk_softmax(void **state) {
  (void)state;
  const float ties[] = {1.0f, 3.0f, 3.0f, 2.0f, 3.0f, -5.0f};
  int32_t index[4];
  float weight[4];
  topk_softmax(ties, 6, 4, index, weight);
  const int32_t expected_index[4] = {1, 2, 4, 3}; /* descending; equal values by lowest index */
  for (int i = 0; i < 4; i++) assert_int_equal(index[i], expected_index[i]);
  assert_close(weight[0], 1.0 / (3.0 + exp(-1.0)), TOPK_TOL, "tie weight", 0);
  assert_true(weight[0] == weight[1] && weight[1] == weight[2]);

  topk_softmax(ties, 6, 1, index, weight);
  assert_int_equal(index[0], 1);
  assert_true(weight[0] == 1.0f);

  float logits[128];
  for (int trial = 0; trial < 50; trial++) {
    const int64_t n = 4 + (int64_t)(rng_next() % 125), k = 1 + (int64_t)(rng_next() % 4);
    fill_f32(logits, n, 8.0f);
    if (trial % 3 == 0) logits[n / 2] = logits[n - 1] = logits[0]; /* plant ties */
    topk_check(logits, n, k);
  }
  for (int e = 0; e < 32; e++) logits[e] = -3.0f; /* all equal: indices 0..k-1, uniform weights */
  topk_check(logits, 32, 4);
}

static void test_argmax(void **state) {
  (void)state;
  const float a[] = {1.0f, 5.0f, 5.0f, 2.0f};
  assert_int_equal(argmax_f32(a, 4), 1);
  const float b[] = {-3.0f, -1.0f, -2.0f, -1.0f};
  assert_int_equal(argmax_f32(b, 4), 1);
  const float c[] = {7.0f, 7.0f, 7.0f};
  assert_int_equal(argmax_f32(c, 3), 0);
  const float d[] = {0.0f, -1.0f, 0.0f, 1e-30f};
  assert_int_equal(argmax_f32(d, 4), 3);
  assert_int_equal(argmax_f32(d, 1), 0);
}

/* ---------- RoPE ---------- */

static GptOssConfig released_rope_config(void) {
  GptOssConfig c;
  memset(&c, 0, sizeof c);
  c.head_dim = 64;
  c.rope_theta = 150000.0;
  c.rope_scaling_factor = 32.0;
  c.rope_beta_fast = 32.0;
  c.rope_beta_slow = 1.0;
  c.rope_original_max_position_embeddings = 4096;
  c.rope_truncate = false;
  return c;
}

static void test_rope_released_config(void **state) {
  (void)state;
  /* The official reference's inv_freq (torch, fp32), from shared/notes/gptoss-pitfalls.md. */
  static const uint32_t reference_bits[32] = {
      0x3f800000, 0x3f306535, 0x3ef316a2, 0x3ea77faa, 0x3e66d3fa, 0x3e1f0cfd, 0x3ddb2f9f, 0x3d970764,
      0x3d502194, 0x3d01ddd5, 0x3c9e646f, 0x3c3dec94, 0x3bdea840, 0x3b7cfe14, 0x3b093803, 0x3a89f778,
      0x39ef543c, 0x390799b9, 0x3820adc6, 0x37dd6dfc, 0x37989328, 0x375242fa, 0x3710e12c, 0x36c7a82b,
      0x3689928c, 0x363d9647, 0x3602a245, 0x35b40668, 0x35781728, 0x352af200, 0x34eb93eb, 0x34a252d3};
  const GptOssConfig c = released_rope_config();
  Rope rope;
  assert_int_equal(rope_init(&rope, &c), STATUS_OK);
  assert_int_equal(rope.half_dim, 32);
  for (int i = 0; i < 32; i++) {
    const int64_t ulps = llabs((long long)f32_bits(rope.inv_freq[i]) - (long long)reference_bits[i]);
    if (ulps > ROPE_INV_FREQ_ULPS) {
      fail_msg("inv_freq[%d] = 0x%08x, reference 0x%08x (%lld ulps)", i, f32_bits(rope.inv_freq[i]),
               reference_bits[i], (long long)ulps);
    }
  }
  assert_true(f32_bits(rope.concentration) == 0x3fac5c86u);
  assert_close(rope.concentration, 1.3465735902799727, 1e-7, "concentration", 0);

  float cos_p[32], sin_p[32];
  rope_angles(&rope, 1, cos_p, sin_p);
  static const double expected_cos[4] = {0.72755688, 1.03935814, 1.19763231, 1.27515590};
  static const double expected_sin[4] = {1.13310254, 0.85615128, 0.61557889, 0.43271011};
  for (int i = 0; i < 4; i++) {
    assert_close(cos_p[i], expected_cos[i], ROPE_ANGLE_TOL, "cos at position 1", i);
    assert_close(sin_p[i], expected_sin[i], ROPE_ANGLE_TOL, "sin at position 1", i);
  }
  /* Position 0: no rotation, but the concentration still scales (also below 4096 tokens). */
  rope_angles(&rope, 0, cos_p, sin_p);
  for (int i = 0; i < 32; i++) assert_true(cos_p[i] == rope.concentration && sin_p[i] == 0.0f);
  rope_free(&rope);
}

/* YaRN inv_freq in double, straight from SPEC.md. */
static double yarn_inv_freq_double(const GptOssConfig *c, int64_t i) {
  const double half = (double)c->head_dim / 2, plain = 1.0 / pow(c->rope_theta, 2.0 * (double)i / (double)c->head_dim);
  if (c->rope_scaling_factor <= 1.0) return plain;
  const double L0 = (double)c->rope_original_max_position_embeddings, two_pi = 6.283185307179586477;
  double low = half * log(L0 / (c->rope_beta_fast * two_pi)) / log(c->rope_theta);
  double high = half * log(L0 / (c->rope_beta_slow * two_pi)) / log(c->rope_theta);
  if (c->rope_truncate) low = floor(low), high = ceil(high);
  const double ramp = fmin(fmax(((double)i - low) / (high - low), 0.0), 1.0);
  return plain * (1.0 - ramp) + plain / c->rope_scaling_factor * ramp;
}

static void check_rope_table(const GptOssConfig *c, double concentration) {
  Rope rope;
  assert_int_equal(rope_init(&rope, c), STATUS_OK);
  assert_close(rope.concentration, concentration, 1e-7, "concentration", 0);
  for (int64_t i = 0; i < rope.half_dim; i++) {
    const double expected = yarn_inv_freq_double(c, i);
    assert_close(rope.inv_freq[i], expected, ROPE_TABLE_REL_TOL * expected, "inv_freq", i);
  }
  rope_free(&rope);
}

static void test_rope_tables(void **state) {
  (void)state;
  GptOssConfig c = released_rope_config();
  check_rope_table(&c, 1.0 + 0.1 * log(32.0));
  /* Dims i <= 8 keep the plain frequency, i >= 18 are divided by the factor. */
  Rope rope;
  assert_int_equal(rope_init(&rope, &c), STATUS_OK);
  for (int i = 0; i <= 8; i++) assert_close(rope.inv_freq[i], pow(150000.0, -i / 32.0), 4e-7 * pow(150000.0, -i / 32.0), "plain dim", i);
  for (int i = 18; i < 32; i++) assert_close(rope.inv_freq[i], pow(150000.0, -i / 32.0) / 32, 4e-7 * pow(150000.0, -i / 32.0) / 32, "scaled dim", i);
  rope_free(&rope);
  c.rope_truncate = true; /* Hugging Face's default rounding of low/high, for other models */
  check_rope_table(&c, 1.0 + 0.1 * log(32.0));
  c.rope_scaling_factor = 1.0; /* plain RoPE: no blend, no concentration */
  check_rope_table(&c, 1.0);
  c = released_rope_config();
  c.head_dim = 128, c.rope_theta = 10000.0, c.rope_scaling_factor = 8.0;
  check_rope_table(&c, 1.0 + 0.1 * log(8.0));
}

/* cos/sin at many positions: the angle is the fp32 product position·inv_freq (as in the
 * reference), its cos/sin then exact up to libm's fp32 error. */
static void test_rope_angles(void **state) {
  (void)state;
  const GptOssConfig c = released_rope_config();
  Rope rope;
  assert_int_equal(rope_init(&rope, &c), STATUS_OK);
  float cos_p[32], sin_p[32];
  static const int64_t positions[] = {0, 1, 2, 127, 128, 4095, 4096, 100000, 131071};
  for (size_t k = 0; k < sizeof positions / sizeof positions[0]; k++) {
    rope_angles(&rope, positions[k], cos_p, sin_p);
    for (int i = 0; i < 32; i++) {
      const double angle = (float)positions[k] * rope.inv_freq[i];
      assert_close(cos_p[i], rope.concentration * cos(angle), ROPE_ANGLE_TOL, "cos", i);
      assert_close(sin_p[i], rope.concentration * sin(angle), ROPE_ANGLE_TOL, "sin", i);
    }
  }
  rope_free(&rope);
}

static void test_rope_apply(void **state) {
  (void)state;
  enum { HEADS = 3, HALF = 32, D = 2 * HALF };
  float x[HEADS * D], original[HEADS * D], cos_p[HALF], sin_p[HALF];
  fill_f32(original, HEADS * D, 2.0f);
  fill_f32(cos_p, HALF, 1.4f);
  fill_f32(sin_p, HALF, 1.4f);
  memcpy(x, original, sizeof x);
  rope_apply(x, HEADS, HALF, cos_p, sin_p);
  for (int h = 0; h < HEADS; h++) {
    for (int i = 0; i < HALF; i++) {
      /* Half split: x[i] pairs with x[i + D/2], never with x[i + 1]. */
      const double a = original[h * D + i], b = original[h * D + i + HALF];
      assert_close(x[h * D + i], a * cos_p[i] - b * sin_p[i], ROPE_APPLY_TOL, "rope first half", h * D + i);
      assert_close(x[h * D + i + HALF], b * cos_p[i] + a * sin_p[i], ROPE_APPLY_TOL, "rope second half", h * D + i);
    }
  }
}

/* ---- attention for a chunk ---- */

/* Straight from the model card, in double: query i (key index first + i) against each visible
 * key, the sink in the denominator only. */
static void attention_chunk_ref(double *out, const float *q, const float *keys, const float *values,
                                const uint16_t *sinks, int64_t n, int64_t G, int64_t D, int64_t first, int64_t window) {
  for (int64_t i = 0; i < n; i++) {
    const int64_t self = first + i, lo = window && self - window + 1 > 0 ? self - window + 1 : 0;
    for (int64_t g = 0; g < G; g++) {
      const float *qh = q + (i * G + g) * D;
      double max = bf16_to_f32(sinks[g]), scores[512];
      for (int64_t j = lo; j <= self; j++) {
        double dot = 0;
        for (int64_t d = 0; d < D; d++) dot += (double)qh[d] * keys[j * D + d];
        scores[j - lo] = dot / sqrt((double)D);
        max = scores[j - lo] > max ? scores[j - lo] : max;
      }
      double denom = exp(bf16_to_f32(sinks[g]) - max);
      for (int64_t j = lo; j <= self; j++) denom += exp(scores[j - lo] - max);
      for (int64_t d = 0; d < D; d++) {
        double acc = 0;
        for (int64_t j = lo; j <= self; j++) acc += exp(scores[j - lo] - max) / denom * values[j * D + d];
        out[(i * G + g) * D + d] = acc;
      }
    }
  }
}

/* The same bits on 1, 2 and 3 threads: query blocks are whole work items. */
static void check_attention_threads(const float *out, const float *q, const float *k, const float *v,
                                    const uint16_t *sinks, const int64_t shape[5]) {
  const int64_t n = shape[0], G = shape[1], D = shape[2];
  float *other = malloc((size_t)(n * G * D) * sizeof *other);
  for (int threads = 1; threads <= 3; threads++) {
    omp_set_num_threads(threads);
    attention_chunk_f32(other, q, k, v, sinks, n, G, D, shape[3], shape[4]);
    if (memcmp(other, out, (size_t)(n * G * D) * sizeof *other) != 0) {
      fail_msg("attention_chunk_f32 n=%lld: %d thread(s) changed the result", (long long)n, threads);
    }
  }
  omp_set_num_threads(2);
  free(other);
}

static void test_attention_chunk(void **state) {
  (void)state;
  /* n queries after `first` cached keys; windows: none, shorter than the chunk, longer; one
   * query block and several (32 queries each), a ragged last one; long histories. The last
   * column scales q: at 40, scores spread by hundreds, so many weights underflow to exactly 0
   * (the softmax's exp flushes below e^-87) and one key dominates. */
  const int64_t cases[][6] = {{40, 8, 16, 0, 0, 2},    {40, 8, 16, 13, 0, 2}, {37, 4, 8, 20, 5, 2},
                              {70, 2, 64, 3, 100, 2},  {9, 1, 8, 0, 8, 2},    {45, 8, 64, 200, 16, 2},
                              {33, 8, 64, 400, 0, 2},  {100, 8, 64, 0, 0, 2}, {70, 4, 64, 10, 0, 40},
                              {50, 2, 64, 30, 20, 40}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const int64_t n = cases[c][0], G = cases[c][1], D = cases[c][2], first = cases[c][3], window = cases[c][4];
    const int64_t keys_n = first + n;
    float *q = malloc((size_t)(n * G * D) * sizeof *q), *k = malloc((size_t)(keys_n * D) * sizeof *k);
    float *v = malloc((size_t)(keys_n * D) * sizeof *v), *out = malloc((size_t)(n * G * D) * sizeof *out);
    double *want = malloc((size_t)(n * G * D) * sizeof *want);
    uint16_t sinks[8];
    fill_f32(q, n * G * D, (float)cases[c][5]);
    fill_f32(k, keys_n * D, 2.0f);
    fill_f32(v, keys_n * D, 1.0f);
    fill_bf16(sinks, G, 3.0f);
    attention_chunk_f32(out, q, k, v, sinks, n, G, D, first, window);
    attention_chunk_ref(want, q, k, v, sinks, n, G, D, first, window);
    for (int64_t i = 0; i < n * G * D; i++) assert_close(out[i], want[i], ATTENTION_TOL, "attention_chunk_f32", i);
    check_attention_threads(out, q, k, v, sinks, cases[c]);
    free(q);
    free(k);
    free(v);
    free(out);
    free(want);
  }
}

/* The softmax weight of one key against a sink of logit 0, for scores from -100 to 20: each
 * query sees only its own key (window 1), whose value is 1, so the output is the weight itself,
 * e^s / (e^s + 1). Checks the exp the kernel uses to a few ulps, which the O(1) outputs above
 * cannot. */
static void test_attention_softmax_precision(void **state) {
  (void)state;
  enum { N = 4801 };
  float *q = malloc(N * sizeof *q), *k = malloc(N * sizeof *k), *v = malloc(N * sizeof *v), *out = malloc(N * sizeof *out);
  const uint16_t sink = 0; /* bf16 +0.0 */
  for (int i = 0; i < N; i++) q[i] = -100.0f + 0.025f * (float)i, k[i] = 1.0f, v[i] = 1.0f;
  attention_chunk_f32(out, q, k, v, &sink, N, /*num_heads=*/1, /*head_dim=*/1, /*first_query_key=*/0, /*window=*/1);
  for (int i = 0; i < N; i++) {
    const double weight = 1.0 / (1.0 + exp(-(double)q[i]));
    assert_close(out[i], weight, ATTENTION_WEIGHT_REL_TOL * weight + ATTENTION_WEIGHT_FLUSH, "softmax weight", i);
  }
  free(q);
  free(k);
  free(v);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_e2m1_table),       cmocka_unit_test(test_mxfp4_decode),
      cmocka_unit_test(test_bf16_decode),      cmocka_unit_test(test_matmul_refs_by_hand),
      cmocka_unit_test(test_matmul_bf16w),     cmocka_unit_test(test_matmul_bf16w_stream_list),
      cmocka_unit_test(test_matmul_mxfp4w),
      cmocka_unit_test(test_rmsnorm),          cmocka_unit_test(test_swiglu),
      cmocka_unit_test(test_topk_softmax),     cmocka_unit_test(test_argmax),
      cmocka_unit_test(test_moe_row_helpers),
      cmocka_unit_test(test_rope_released_config), cmocka_unit_test(test_rope_tables),
      cmocka_unit_test(test_rope_angles),      cmocka_unit_test(test_rope_apply),
      cmocka_unit_test(test_attention_chunk),  cmocka_unit_test(test_attention_softmax_precision),
  };
  print_message("kernels: %s chosen for this CPU\n", kernels_isa_name(kernels_active_isa()));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
