/* AVX2+FMA inner loops of the packed matmuls (interface: kernels_isa.h). Each function carries
 * its own target attribute, so this file builds without -march flags and the program still runs
 * on CPUs without AVX2; kernels.c checks the CPU before calling anything here.
 *
 * A single token (decode) streams each packed row straight into the dot product — decode is
 * bound by memory bandwidth, so weights are read once and never expanded in memory. A batch
 * decodes each row once into fp32 and dots it with every token, using the same lanes and the same
 * order of operations, so batching never changes a result. */
#include "model/kernels_isa.h"

#if GPTOSS_HAVE_AVX2_KERNELS

#include <assert.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#define AVX2_FN __attribute__((target("avx2,fma")))

/* Hardware prefetchers lose track of these streams while the loop is busy decoding; fetching a
 * few KB ahead keeps DRAM requests in flight (measured with tests/bench_kernels). */
enum { BF16_PREFETCH_BYTES = 1024, MXFP4_PREFETCH_BYTES = 4096 };

enum { LANES = 8 };
/* Rows whose bias a call converts at a time (a stack buffer, no allocation per call). */
enum { BF16_BIAS_CHUNK = 256 };

/* ================= bf16 =================
 * Every output — row r against token t — is summed the same way, whatever else the call computes.
 * The row goes in groups of 16 elements; one 256-bit load holds a group as eight 32-bit lanes of
 * two bf16 each, so a shift gives the eight even elements as fp32 and a mask the eight odd ones.
 * Even elements accumulate in one 8-lane accumulator, odd ones in another, group by group in
 * order; then their sum, a fixed horizontal sum, and a scalar fmaf tail for cols % 16. The token
 * side is split the same way once per call (bf16_split_x). The kernels differ only in how many
 * outputs they compute side by side: a block of rows against one token (decode: the rows stream
 * from memory, several FMA chains in flight) or a few rows against a few tokens (a batch: each
 * weight group is loaded and split once for all of them, each token group once for all rows).
 * So a token gets the same bits alone or in any batch. */
enum { BF16_GROUP = 16 };

AVX2_FN static inline __m256 bf16x8_to_f32(const uint16_t *p) {
  const __m128i bits = _mm_loadu_si128((const __m128i *)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
}

AVX2_FN static inline float hsum_f32x8(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

/* xs[16k + m] = x[16k + 2m] and xs[16k + 8 + m] = x[16k + 2m + 1] for every whole group. */
static void bf16_split_x(float *xs, const float *x, int64_t cols) {
  for (int64_t base = 0; base + BF16_GROUP <= cols; base += BF16_GROUP) {
    for (int m = 0; m < BF16_GROUP / 2; m++) {
      xs[base + m] = x[base + 2 * m];
      xs[base + BF16_GROUP / 2 + m] = x[base + 2 * m + 1];
    }
  }
}

/* Outputs of R rows (w + i·cols) against T tokens (split: xs + j·cols; plain: x + j·cols, for the
 * tail), into y[j·y_stride + i] with bias[i] added. R and T are constants at every call, so the
 * loops unroll and the 2·R·T accumulators stay in registers. `next` (R rows, or NULL) is fetched
 * into L2 meanwhile; with NULL and T == 1 the rows' own bytes a little ahead are. */
AVX2_FN static inline __attribute__((always_inline)) void bf16_block(const uint16_t *w, const float *xs, const float *x,
                                                                    int64_t cols, float *y, int64_t y_stride,
                                                                    const float *bias, const uint16_t *next,
                                                                    const int R, const int T) {
  const __m256i odd_mask = _mm256_set1_epi32((int32_t)0xFFFF0000u);
  __m256 acc[4][3][2];
  for (int i = 0; i < R; i++) {
    for (int j = 0; j < T; j++) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
  }
  const int64_t whole = cols / BF16_GROUP * BF16_GROUP;
  for (int64_t c = 0; c < whole; c += BF16_GROUP) {
    __m256i bits[4];
    for (int i = 0; i < R; i++) {
      const uint16_t *p = w + i * cols + c;
      if (next) _mm_prefetch((const char *)(next + i * cols + c), _MM_HINT_T1);
      else if (T == 1) _mm_prefetch((const char *)p + BF16_PREFETCH_BYTES, _MM_HINT_T0);
      bits[i] = _mm256_loadu_si256((const __m256i *)p);
    }
    for (int half = 0; half < 2; half++) {
      __m256 wv[4];
      for (int i = 0; i < R; i++) {
        wv[i] = _mm256_castsi256_ps(half == 0 ? _mm256_slli_epi32(bits[i], 16) : _mm256_and_si256(bits[i], odd_mask));
      }
      for (int j = 0; j < T; j++) {
        __m256 xv = _mm256_loadu_ps(xs + j * cols + c + half * (BF16_GROUP / 2));
        /* One load per token vector for all R rows: without this the compiler folds the load
         * into each row's FMA, and the loads, not the FMAs, set the pace. */
        if (R > 1) __asm__("" : "+x"(xv));
        for (int i = 0; i < R; i++) acc[i][j][half] = _mm256_fmadd_ps(wv[i], xv, acc[i][j][half]);
      }
    }
  }
  for (int i = 0; i < R; i++) {
    for (int j = 0; j < T; j++) {
      const float dot = hsum_f32x8(_mm256_add_ps(acc[i][j][0], acc[i][j][1]));
      y[j * y_stride + i] = dot + bf16_tail(w + i * cols, x + j * cols, whole, cols) + bias[i];
    }
  }
}

AVX2_FN void bf16_decode_row_avx2(float *out, const uint16_t *row, int64_t cols) {
  int64_t c = 0;
  for (; c + LANES <= cols; c += LANES) _mm256_storeu_ps(out + c, bf16x8_to_f32(row + c));
  for (; c < cols; c++) out[c] = bf16_to_f32(row[c]);
}

/* One token: four rows at a time (eight FMA chains over four streams). A batch: two rows against
 * three tokens at a time, then the leftover tokens, then a leftover row. While a batch's first
 * group of tokens runs, the next two rows are fetched into L2 (a whole pair's work of lead time;
 * fetching them during the second group left batches of 2-3 tokens with no prefetch at all). */
AVX2_FN void matmul_rows_f32_bf16w_avx2(const MatmulArgs *a, int64_t row_begin, int64_t row_end) {
  const uint16_t *w = a->weights;
  float *xs = kernel_thread_buffer((size_t)(a->num_tokens * a->cols));
  assert(xs);
  for (int64_t t = 0; t < a->num_tokens; t++) bf16_split_x(xs + t * a->cols, a->x + t * a->cols, a->cols);
  float bias[BF16_BIAS_CHUNK];
  for (int64_t chunk = row_begin; chunk < row_end; chunk += BF16_BIAS_CHUNK) {
    const int64_t chunk_end = chunk + BF16_BIAS_CHUNK < row_end ? chunk + BF16_BIAS_CHUNK : row_end;
    for (int64_t r = chunk; r < chunk_end; r++) bias[r - chunk] = matmul_bias_f32(a, r);
/* Rows [r, r + R) against tokens [t, t + T), fetching `next` meanwhile. */
#define BF16_BLOCK(R, T, next)                                                                                   \
  bf16_block(w + r * a->cols, xs + t * a->cols, a->x + t * a->cols, a->cols, a->y + t * a->rows + r, a->rows,      \
             bias + (r - chunk), next, R, T)
    int64_t r = chunk;
    if (a->num_tokens == 1) {
      const int64_t t = 0;
      for (; r + 4 <= chunk_end; r += 4) BF16_BLOCK(4, 1, NULL);
      for (; r < chunk_end; r++) BF16_BLOCK(1, 1, NULL);
      continue;
    }
    for (; r + 2 <= chunk_end; r += 2) {
      const uint16_t *next = r + 4 <= row_end ? w + (r + 2) * a->cols : NULL;
      int64_t t = 0;
      for (; t + 3 <= a->num_tokens; t += 3) BF16_BLOCK(2, 3, t == 0 ? next : NULL);
      if (a->num_tokens - t == 2) BF16_BLOCK(2, 2, t == 0 ? next : NULL);
      if (a->num_tokens - t == 1) BF16_BLOCK(2, 1, t == 0 ? next : NULL);
    }
    for (; r < chunk_end; r++) {
      int64_t t = 0;
      for (; t + 3 <= a->num_tokens; t += 3) BF16_BLOCK(1, 3, NULL);
      for (; t < a->num_tokens; t++) BF16_BLOCK(1, 1, NULL);
    }
  }
}
#undef BF16_BLOCK

/* ================= MXFP4 =================
 * Decoding is the bottleneck here, not memory, so it avoids per-element work: pshufb looks up the
 * low and high bytes of each code's bf16 pattern for 32 nibbles at once, one unpack pairs them
 * into 16-bit bf16 values, and a shift or a mask turns each half of a 32-bit lane into an fp32.
 * The values come out in a fixed shuffled order, so x is permuted once per call to match
 * (mxfp4_permute_x); the scale, a power of two, multiplies each block's partial sum once.
 *
 * The unit is a pair of blocks (64 elements), block 2k in the low 128-bit lane and 2k+1 in the
 * high one (pshufb and unpack stay within lanes). A row with an odd block count ends with a pair
 * whose high lane is zeros: codes 0, x 0, scale 1. */

enum { BLOCK = MXFP4_BLOCK_ELEMS, PAIR = 2 * BLOCK, PAIR_VECTORS = PAIR / LANES };

/* bf16 bit patterns of the 16 E2M1 values (0, 0.5, 1, 1.5, 2, 3, 4, 6, then the same negated),
 * split into low and high bytes; once per 128-bit lane. */
static const uint8_t E2M1_BF16_LOW[32] = {
    0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0, 0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0,
    0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0, 0x00, 0x00, 0x80, 0xC0, 0x00, 0x40, 0x80, 0xC0};
static const uint8_t E2M1_BF16_HIGH[32] = {
    0x00, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, 0x80, 0xBF, 0xBF, 0xBF, 0xC0, 0xC0, 0xC0, 0xC0,
    0x00, 0x3F, 0x3F, 0x3F, 0x40, 0x40, 0x40, 0x40, 0x80, 0xBF, 0xBF, 0xBF, 0xC0, 0xC0, 0xC0, 0xC0};

/* Which element of its block each lane of unpacked vector v holds (lanes 4-7: the same elements
 * of the next block). Element 2i is byte i's low nibble; unpacklo/hi take bytes 0-7 / 8-15, and
 * the shift / mask take the even / odd 16-bit half of each lane. */
static const int8_t PAIR_ELEMENT[PAIR_VECTORS][4] = {
    {0, 4, 8, 12},  {2, 6, 10, 14},  {16, 20, 24, 28}, {18, 22, 26, 30}, /* low nibbles */
    {1, 5, 9, 13},  {3, 7, 11, 15},  {17, 21, 25, 29}, {19, 23, 27, 31}, /* high nibbles */
};

/* A whole MXFP4 row into fp32 in natural order (prefill decodes weight tiles for sgemm): the
 * nibbles of a block's 16 bytes are split and interleaved back into element order (element 2i =
 * low nibble of byte i), each code's magnitude looked up in an 8-lane table, its sign bit set
 * from bit 3, and the block scaled. Exact, like the portable decode (same bits, -0 included). */
AVX2_FN void mxfp4_decode_row_avx2(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols) {
  const __m256 magnitudes = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m128i nibble = _mm_set1_epi8(0x0F);
  const __m256i sign_bit = _mm256_set1_epi32(8);
  for (int64_t b = 0; b < cols / BLOCK; b++) {
    const __m128i bytes = _mm_loadu_si128((const __m128i *)(blocks + b * MXFP4_BLOCK_BYTES));
    const __m128i low = _mm_and_si128(bytes, nibble), high = _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble);
    const __m128i codes[2] = {_mm_unpacklo_epi8(low, high), _mm_unpackhi_epi8(low, high)};
    const __m256 scale = _mm256_castsi256_ps(_mm256_set1_epi32((int)MXFP4_SCALE_BITS[scales[b]]));
    for (int g = 0; g < BLOCK / LANES; g++) {
      const __m128i eight = g % 2 ? _mm_srli_si128(codes[g / 2], 8) : codes[g / 2];
      const __m256i code = _mm256_cvtepu8_epi32(eight);
      const __m256 magnitude = _mm256_permutevar8x32_ps(magnitudes, code);
      const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(code, sign_bit), 28);
      const __m256 value = _mm256_xor_ps(magnitude, _mm256_castsi256_ps(sign));
      _mm256_storeu_ps(out + b * BLOCK + g * LANES, _mm256_mul_ps(value, scale));
    }
  }
}

static int64_t mxfp4_padded_cols(int64_t cols) { return (cols + PAIR - 1) / PAIR * PAIR; }

/* xp[64k + 8v + 4h + l] = x[64k + 32h + PAIR_ELEMENT[v][l]], zero past cols. */
static void mxfp4_permute_x(float *xp, const float *x, int64_t cols) {
  for (int64_t base = 0; base < cols; base += PAIR) {
    for (int v = 0; v < PAIR_VECTORS; v++) {
      for (int lane = 0; lane < LANES; lane++) {
        const int64_t c = base + (lane / 4) * BLOCK + PAIR_ELEMENT[v][lane % 4];
        xp[base + v * LANES + lane] = c < cols ? x[c] : 0.0f;
      }
    }
  }
}

AVX2_FN static inline __m256i scale_bits_x4(uint8_t code) { return _mm256_set1_epi32((int32_t)MXFP4_SCALE_BITS[code]); }

/* Codes and scales of blocks b and b+1, or of a last block b alone (high lane: codes 0, scale 1). */
AVX2_FN static inline __m256i mxfp4_pair_codes(const uint8_t *blocks, int64_t b, int64_t num_blocks) {
  const uint8_t *p = blocks + b * MXFP4_BLOCK_BYTES;
  if (b + 1 < num_blocks) return _mm256_loadu_si256((const __m256i *)p);
  return _mm256_inserti128_si256(_mm256_setzero_si256(), _mm_loadu_si128((const __m128i *)p), 0);
}

AVX2_FN static inline __m256 mxfp4_pair_scale(const uint8_t *scales, int64_t b, int64_t num_blocks) {
  const __m256i high = b + 1 < num_blocks ? scale_bits_x4(scales[b + 1]) : _mm256_set1_epi32(0x3F800000);
  return _mm256_castsi256_ps(_mm256_blend_epi32(scale_bits_x4(scales[b]), high, 0xF0));
}

/* The 64 values of a pair of code blocks, unscaled, in PAIR_ELEMENT order (exact). */
AVX2_FN static inline void mxfp4_unpack_pair(__m256i codes, __m256 v[PAIR_VECTORS]) {
  const __m256i low_table = _mm256_loadu_si256((const __m256i *)E2M1_BF16_LOW);
  const __m256i high_table = _mm256_loadu_si256((const __m256i *)E2M1_BF16_HIGH);
  const __m256i nibble_mask = _mm256_set1_epi8(0x0F), upper_half = _mm256_set1_epi32((int32_t)0xFFFF0000u);
  const __m256i nibbles[2] = {_mm256_and_si256(codes, nibble_mask),
                              _mm256_and_si256(_mm256_srli_epi16(codes, 4), nibble_mask)};
  for (int n = 0; n < 2; n++) {
    const __m256i low = _mm256_shuffle_epi8(low_table, nibbles[n]), high = _mm256_shuffle_epi8(high_table, nibbles[n]);
    const __m256i bf16_pairs[2] = {_mm256_unpacklo_epi8(low, high), _mm256_unpackhi_epi8(low, high)};
    for (int h = 0; h < 2; h++) {
      v[4 * n + 2 * h] = _mm256_castsi256_ps(_mm256_slli_epi32(bf16_pairs[h], 16));
      v[4 * n + 2 * h + 1] = _mm256_castsi256_ps(_mm256_and_si256(bf16_pairs[h], upper_half));
    }
  }
}

/* Σ v·xp over one pair, per lane (lanes 0-3 block 2k, 4-7 block 2k+1): two chains, fixed order. */
AVX2_FN static inline __m256 mxfp4_pair_dot(const __m256 v[PAIR_VECTORS], const float *xp) {
  __m256 even = _mm256_mul_ps(v[0], _mm256_loadu_ps(xp));
  __m256 odd = _mm256_mul_ps(v[1], _mm256_loadu_ps(xp + LANES));
  for (int i = 2; i < PAIR_VECTORS; i += 2) {
    even = _mm256_fmadd_ps(v[i], _mm256_loadu_ps(xp + i * LANES), even);
    odd = _mm256_fmadd_ps(v[i + 1], _mm256_loadu_ps(xp + (i + 1) * LANES), odd);
  }
  return _mm256_add_ps(even, odd);
}

/* T tokens (1 to 4) straight from the packed row: each pair of blocks is unpacked once into
 * registers and dotted with every token's permuted, padded x (xp + t·padded); for each token the
 * same operations in the same order whatever T is, so a token gets the same bits alone or in a
 * batch. The last pair is peeled so the main loop carries no tail checks. */
AVX2_FN static inline __attribute__((always_inline)) void dot_mxfp4w_tokens(const uint8_t *blocks, const uint8_t *scales,
                                                                           const float *xp, int64_t padded, int64_t cols,
                                                                           float *out, const int T) {
  const int64_t num_blocks = cols / BLOCK, last_pair = (num_blocks - 1) / 2 * 2;
  if (num_blocks == 0) {
    for (int t = 0; t < T; t++) out[t] = 0.0f;
    return;
  }
  __m256 acc[4], v[PAIR_VECTORS];
  for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
  for (int64_t b = 0; b < last_pair; b += 2) {
    _mm_prefetch((const char *)(blocks + b * MXFP4_BLOCK_BYTES) + MXFP4_PREFETCH_BYTES, _MM_HINT_T0);
    mxfp4_unpack_pair(_mm256_loadu_si256((const __m256i *)(blocks + b * MXFP4_BLOCK_BYTES)), v);
    const __m256 scale = _mm256_castsi256_ps(_mm256_blend_epi32(scale_bits_x4(scales[b]), scale_bits_x4(scales[b + 1]), 0xF0));
    for (int t = 0; t < T; t++) acc[t] = _mm256_fmadd_ps(mxfp4_pair_dot(v, xp + t * padded + b * BLOCK), scale, acc[t]);
  }
  mxfp4_unpack_pair(mxfp4_pair_codes(blocks, last_pair, num_blocks), v);
  const __m256 scale = mxfp4_pair_scale(scales, last_pair, num_blocks);
  for (int t = 0; t < T; t++) acc[t] = _mm256_fmadd_ps(mxfp4_pair_dot(v, xp + t * padded + last_pair * BLOCK), scale, acc[t]);
  for (int t = 0; t < T; t++) out[t] = hsum_f32x8(acc[t]);
}

enum { MXFP4_TOKEN_GROUP = 4 };

/* Tokens in groups of up to four per pass over the row: the row is unpacked once per group. */
AVX2_FN void matmul_rows_f32_mxfp4w_avx2(const MatmulArgs *a, int64_t row_begin, int64_t row_end) {
  const int64_t padded = mxfp4_padded_cols(a->cols), blocks_per_row = a->cols / BLOCK;
  float *xp = kernel_thread_buffer((size_t)(a->num_tokens * padded));
  assert(xp);
  for (int64_t t = 0; t < a->num_tokens; t++) mxfp4_permute_x(xp + t * padded, a->x + t * a->cols, a->cols);
  for (int64_t r = row_begin; r < row_end; r++) {
    const uint8_t *blocks = (const uint8_t *)a->weights + r * blocks_per_row * MXFP4_BLOCK_BYTES;
    const uint8_t *scales = a->scales + r * blocks_per_row;
    const float bias = matmul_bias_f32(a, r);
    for (int64_t t = 0; t < a->num_tokens; t += MXFP4_TOKEN_GROUP) {
      float dots[MXFP4_TOKEN_GROUP];
      const int64_t n = a->num_tokens - t < MXFP4_TOKEN_GROUP ? a->num_tokens - t : MXFP4_TOKEN_GROUP;
      const float *x = xp + t * padded;
      switch (n) {
        case 1: dot_mxfp4w_tokens(blocks, scales, x, padded, a->cols, dots, 1); break;
        case 2: dot_mxfp4w_tokens(blocks, scales, x, padded, a->cols, dots, 2); break;
        case 3: dot_mxfp4w_tokens(blocks, scales, x, padded, a->cols, dots, 3); break;
        default: dot_mxfp4w_tokens(blocks, scales, x, padded, a->cols, dots, 4); break;
      }
      for (int64_t i = 0; i < n; i++) a->y[(t + i) * a->rows + r] = dots[i] + bias;
    }
  }
}
/* ================= packed GEMM block (prefill): kernels_gemm_block.h ================= */
#define GEMM_FN AVX2_FN
#define GEMM_VEC __m256
#define GEMM_VECTOR 8
#define GEMM_LOAD _mm256_loadu_ps
#define GEMM_STORE _mm256_storeu_ps
#define GEMM_ZERO _mm256_setzero_ps
#define GEMM_FMADD _mm256_fmadd_ps
#define GEMM_BROADCAST(p) _mm256_broadcast_ss(p)
#define GEMM_ROWS 6
#define GEMM_KERNEL GEMM_KERNEL_AVX2
#include "model/kernels_gemm_block.h"

#endif
