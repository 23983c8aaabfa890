/* AVX-512 inner loops of the bf16 and MXFP4 row-streaming matmuls, the MXFP4 row decode and the
 * prefill register block (interface: kernels_isa.h), for CPUs with AVX-512F/BW (Zen 4, Zen 5,
 * Intel since Skylake-SP). Like kernels_avx2.c it carries its own target attribute and kernels.c
 * checks the CPU before calling it. The bf16 row decoder of this ISA's table is AVX2's.
 *
 * Why a second bf16 kernel: batched decode multiplies the unembedding (201,088 x 2880) by up to
 * eight tokens per step, which in AVX2 is bound by compute and by the token vectors streaming
 * from L2 — 16 registers hold only six outputs' accumulators. 32 registers of 16 lanes hold
 * twelve, so each weight load and each token load feeds twice as many FMAs.
 *
 * The summation order is this ISA's own (16 lanes, not AVX2's 8) and, as in AVX2, the same for
 * every output whatever else the call computes: a token gets the same bits alone or in a batch. */
#include "model/kernels_isa.h"

#if GPTOSS_HAVE_AVX2_KERNELS

#include <assert.h>
#include <immintrin.h>
#include <math.h>

#define AVX512_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

/* Both one token and a batch fetch the next block of rows into L2 while a block runs (for a batch,
 * during its first pass of tokens): a whole block's work of lead time. On Zen 4 that streamed the
 * unembedding ~20 % faster for one token than AVX2's fetching a little ahead of each row, which
 * the last block of a thread's rows still does. */
enum { BF16_PREFETCH_BYTES = 1024 };

/* Rows whose bias a call converts at a time (a stack buffer, no allocation per call). */
enum { BF16_BIAS_CHUNK = 256 };

/* ================= bf16 =================
 * The row goes in groups of 32 elements; one 512-bit load holds a group as sixteen 32-bit lanes
 * of two bf16 each: a shift gives the sixteen even elements as fp32, a mask the sixteen odd ones.
 * Even elements accumulate in one 16-lane accumulator, odd ones in another, group by group in
 * order; then their sum, the two 8-lane halves added, a fixed horizontal sum, and a scalar fmaf
 * tail for cols % 32. The token side is split the same way once per call (bf16_split_x32). */
enum { GROUP = 32, HALF = GROUP / 2 };
/* Register blocks: a batch runs BATCH_ROWS rows against up to BATCH_TOKENS tokens at a time, one token
 * DECODE_ROWS rows at a time. 4 x 2 (16 accumulators, 4 weight and 4 decoded registers) beat 4 x 3
 * (24 accumulators, which with the weights spill) on Zen 5 at 2 threads for 8 tokens: 88.9 against
 * 80.6 GFMA/s from DRAM, 134.6 against 118.8 from cache; 3 x 3, 2 x 4, 2 x 6 and 1 x 8 were slower. */
enum { BATCH_ROWS = 4, BATCH_TOKENS = 2, DECODE_ROWS = 4 };
enum { BLOCK_ROWS_MAX = BATCH_ROWS > DECODE_ROWS ? BATCH_ROWS : DECODE_ROWS };

AVX512_FN static inline float hsum_f32x16(__m512 v) {
  const __m256 eight = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_movehdup_ps(h));
  return _mm_cvtss_f32(h);
}

/* xs[32k + m] = x[32k + 2m] and xs[32k + 16 + m] = x[32k + 2m + 1] for every whole group. */
static void bf16_split_x32(float *xs, const float *x, int64_t cols) {
  for (int64_t base = 0; base + GROUP <= cols; base += GROUP) {
    for (int m = 0; m < HALF; m++) {
      xs[base + m] = x[base + 2 * m];
      xs[base + HALF + m] = x[base + 2 * m + 1];
    }
  }
}

/* Every token of a call split as bf16_split_x32 does, into this thread's buffer. */
static const float *split_tokens_x32(const MatmulArgs *a) {
  float *xs = kernel_thread_buffer((size_t)(a->num_tokens * a->cols));
  assert(xs);
  for (int64_t t = 0; t < a->num_tokens; t++) bf16_split_x32(xs + t * a->cols, a->x + t * a->cols, a->cols);
  return xs;
}

/* Outputs of R rows (w + i·cols) against T tokens (split: xs + j·cols; plain: x + j·cols, for the
 * tail), into y[j·y_stride + i] with bias[i] added. R and T are constants at every call, so the
 * loops unroll and the 2·R·T accumulators stay in registers. `next` (R rows, or NULL) is fetched
 * into L2 meanwhile; with NULL and T == 1 the rows' own bytes a little ahead are. */
AVX512_FN static inline __attribute__((always_inline)) void bf16_block(const uint16_t *w, const float *xs, const float *x,
                                                                      int64_t cols, float *y, int64_t y_stride,
                                                                      const float *bias, const uint16_t *next,
                                                                      const int R, const int T) {
  const __m512i odd_mask = _mm512_set1_epi32((int32_t)0xFFFF0000u);
  __m512 acc[BLOCK_ROWS_MAX][BATCH_TOKENS][2];
  for (int i = 0; i < R; i++) {
    for (int j = 0; j < T; j++) acc[i][j][0] = acc[i][j][1] = _mm512_setzero_ps();
  }
  const int64_t whole = cols / GROUP * GROUP;
  for (int64_t c = 0; c < whole; c += GROUP) {
    __m512i bits[BLOCK_ROWS_MAX];
    for (int i = 0; i < R; i++) {
      const uint16_t *p = w + i * cols + c;
      if (next) _mm_prefetch((const char *)(next + i * cols + c), _MM_HINT_T1);
      else if (T == 1) _mm_prefetch((const char *)p + BF16_PREFETCH_BYTES, _MM_HINT_T0);
      bits[i] = _mm512_loadu_si512((const void *)p);
    }
    for (int half = 0; half < 2; half++) {
      __m512 wv[BLOCK_ROWS_MAX];
      for (int i = 0; i < R; i++) {
        wv[i] = _mm512_castsi512_ps(half == 0 ? _mm512_slli_epi32(bits[i], 16) : _mm512_and_si512(bits[i], odd_mask));
      }
      for (int j = 0; j < T; j++) {
        __m512 xv = _mm512_loadu_ps(xs + j * cols + c + half * HALF);
        /* One load per token vector for all R rows, not one folded into each row's FMA. */
        if (R > 1) __asm__("" : "+v"(xv));
        for (int i = 0; i < R; i++) acc[i][j][half] = _mm512_fmadd_ps(wv[i], xv, acc[i][j][half]);
      }
    }
  }
  for (int i = 0; i < R; i++) {
    for (int j = 0; j < T; j++) {
      const float dot = hsum_f32x16(_mm512_add_ps(acc[i][j][0], acc[i][j][1]));
      y[j * y_stride + i] = dot + bf16_tail(w + i * cols, x + j * cols, whole, cols) + bias[i];
    }
  }
}

/* One token: DECODE_ROWS rows at a time. A batch: BATCH_ROWS rows against BATCH_TOKENS tokens at
 * a time, then the leftover tokens; then the leftover rows one by one. Either way the next block
 * of rows is fetched meanwhile. */
AVX512_FN void matmul_rows_f32_bf16w_avx512(const MatmulArgs *a, int64_t row_begin, int64_t row_end) {
  const uint16_t *w = a->weights;
  const float *xs = split_tokens_x32(a);
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
      for (; r + DECODE_ROWS <= chunk_end; r += DECODE_ROWS) {
        const uint16_t *next = r + 2 * DECODE_ROWS <= row_end ? w + (r + DECODE_ROWS) * a->cols : NULL;
        BF16_BLOCK(DECODE_ROWS, 1, next);
      }
      for (; r < chunk_end; r++) BF16_BLOCK(1, 1, NULL);
      continue;
    }
    for (; r + BATCH_ROWS <= chunk_end; r += BATCH_ROWS) {
      const uint16_t *next = r + 2 * BATCH_ROWS <= row_end ? w + (r + BATCH_ROWS) * a->cols : NULL;
      int64_t t = 0;
      for (; t + BATCH_TOKENS <= a->num_tokens; t += BATCH_TOKENS) BF16_BLOCK(BATCH_ROWS, BATCH_TOKENS, t == 0 ? next : NULL);
      _Static_assert(BATCH_TOKENS == 2, "the leftover below is one token");
      if (a->num_tokens - t == 1) BF16_BLOCK(BATCH_ROWS, 1, t == 0 ? next : NULL);
    }
    for (; r < chunk_end; r++) {
      int64_t t = 0;
      for (; t + BATCH_TOKENS <= a->num_tokens; t += BATCH_TOKENS) BF16_BLOCK(1, BATCH_TOKENS, NULL);
      for (; t < a->num_tokens; t++) BF16_BLOCK(1, 1, NULL);
    }
  }
}
#undef BF16_BLOCK

/* ================= MXFP4 rows (decode, batched decode) =================
 * A block's 16 code bytes widen to sixteen 32-bit lanes (vpmovzxbd), lane i holding byte i: its
 * low nibble is element 2i, its high nibble element 2i+1. vpermps reads only the low 4 bits of
 * each lane's index, so one permute of the block's value table gives the sixteen even elements
 * and one more, after a 4-bit shift, the sixteen odd ones — with the table scaled once per block
 * (values × 2^(scale - 127): exact, the same weights as every decoder). Per 32 elements that is
 * five decode instructions, where AVX2's pshufb route needs thirteen; on a CPU with full-width
 * 512-bit shuffles (Zen 5, Intel) the permutes are single instructions, so the decode no longer
 * sets the pace. The token side is split even/odd as for bf16 (bf16_split_x32, the same layout),
 * even and odd elements accumulate in two chains, block by block in order, then their sum and the
 * fixed horizontal sum: the same for every output whatever else the call computes. */
/* 3 rows x 3 tokens for a batch: on Zen 5 at 2 threads 121 GFMA/s for 2 tokens (2 x 4: 95) and 110
 * for 8 (2 x 4: 104); most experts of a batched decode step see one or two tokens. */
enum { MXFP4_DECODE_ROWS = 4, MXFP4_BATCH_ROWS = 3, MXFP4_BATCH_TOKENS = 3 };
enum { MXFP4_ROWS_MAX = MXFP4_BATCH_ROWS > MXFP4_DECODE_ROWS ? MXFP4_BATCH_ROWS : MXFP4_DECODE_ROWS };
/* The rows of a thread's share are contiguous, so R rows side by side read one region in R
 * streams: one fetch per block step, this far ahead of the block's start, keeps the DRAM requests
 * in flight (12 KB: cold 5760x2880 at 2 threads on Zen 5 went from ~28 to 32-38 GB/s; 2-4 KB and
 * 32-64 KB were as good or worse within this VM's noise). */
enum { MXFP4_PREFETCH_BYTES = 12288 };

/* Outputs of R rows (blocks/scales of row i at + i·blocks_per_row) against T split tokens (xs +
 * j·cols) into y[j·y_stride + i], bias[i] added. R and T are constants at every call. */
AVX512_FN static inline __attribute__((always_inline)) void mxfp4_block(const uint8_t *blocks, const uint8_t *scales,
                                                                       int64_t blocks_per_row, const float *xs,
                                                                       int64_t cols, float *y, int64_t y_stride,
                                                                       const float *bias, const int R, const int T) {
  const __m512 values = _mm512_loadu_ps(MXFP4_VALUES);
  __m512 acc[MXFP4_ROWS_MAX][MXFP4_BATCH_TOKENS][2];
  for (int i = 0; i < R; i++) {
    for (int j = 0; j < T; j++) acc[i][j][0] = acc[i][j][1] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < blocks_per_row; b++) {
    __m512 even[MXFP4_ROWS_MAX], odd[MXFP4_ROWS_MAX];
    _mm_prefetch((const char *)blocks + MXFP4_PREFETCH_BYTES + b * R * MXFP4_BLOCK_BYTES, _MM_HINT_T0);
    for (int i = 0; i < R; i++) {
      const uint8_t *codes = blocks + (i * blocks_per_row + b) * MXFP4_BLOCK_BYTES;
      const __m512i index = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)codes));
      const __m512 scale = _mm512_castsi512_ps(_mm512_set1_epi32((int32_t)MXFP4_SCALE_BITS[scales[i * blocks_per_row + b]]));
      const __m512 table = _mm512_mul_ps(values, scale);
      even[i] = _mm512_permutexvar_ps(index, table);
      odd[i] = _mm512_permutexvar_ps(_mm512_srli_epi32(index, 4), table);
    }
    for (int j = 0; j < T; j++) {
      __m512 x_even = _mm512_loadu_ps(xs + j * cols + b * MXFP4_BLOCK_ELEMS);
      __m512 x_odd = _mm512_loadu_ps(xs + j * cols + b * MXFP4_BLOCK_ELEMS + HALF);
      if (R > 1) __asm__("" : "+v"(x_even), "+v"(x_odd));
      for (int i = 0; i < R; i++) {
        acc[i][j][0] = _mm512_fmadd_ps(even[i], x_even, acc[i][j][0]);
        acc[i][j][1] = _mm512_fmadd_ps(odd[i], x_odd, acc[i][j][1]);
      }
    }
  }
  for (int i = 0; i < R; i++) {
    for (int j = 0; j < T; j++) y[j * y_stride + i] = hsum_f32x16(_mm512_add_ps(acc[i][j][0], acc[i][j][1])) + bias[i];
  }
}

/* One token: MXFP4_DECODE_ROWS rows at a time (eight FMA chains). A batch: MXFP4_BATCH_ROWS rows
 * against MXFP4_BATCH_TOKENS tokens at a time, each block decoded once per group of tokens; then
 * the leftover tokens; then the leftover rows one by one. */
AVX512_FN void matmul_rows_f32_mxfp4w_avx512(const MatmulArgs *a, int64_t row_begin, int64_t row_end) {
  _Static_assert(MXFP4_BLOCK_ELEMS == GROUP, "a block is one even/odd group of the split tokens");
  const int64_t blocks_per_row = a->cols / MXFP4_BLOCK_ELEMS;
  const float *xs = split_tokens_x32(a);
  float bias[BF16_BIAS_CHUNK];
  for (int64_t chunk = row_begin; chunk < row_end; chunk += BF16_BIAS_CHUNK) {
    const int64_t chunk_end = chunk + BF16_BIAS_CHUNK < row_end ? chunk + BF16_BIAS_CHUNK : row_end;
    for (int64_t r = chunk; r < chunk_end; r++) bias[r - chunk] = matmul_bias_f32(a, r);
/* Rows [r, r + R) against tokens [t, t + T). */
#define MXFP4_BLOCK(R, T)                                                                                         \
  mxfp4_block((const uint8_t *)a->weights + r * blocks_per_row * MXFP4_BLOCK_BYTES, a->scales + r * blocks_per_row, \
              blocks_per_row, xs + t * a->cols, a->cols, a->y + t * a->rows + r, a->rows, bias + (r - chunk), R, T)
    int64_t r = chunk;
    if (a->num_tokens == 1) {
      const int64_t t = 0;
      for (; r + MXFP4_DECODE_ROWS <= chunk_end; r += MXFP4_DECODE_ROWS) MXFP4_BLOCK(MXFP4_DECODE_ROWS, 1);
      for (; r < chunk_end; r++) MXFP4_BLOCK(1, 1);
      continue;
    }
    for (; r + MXFP4_BATCH_ROWS <= chunk_end; r += MXFP4_BATCH_ROWS) {
      int64_t t = 0;
      for (; t + MXFP4_BATCH_TOKENS <= a->num_tokens; t += MXFP4_BATCH_TOKENS) MXFP4_BLOCK(MXFP4_BATCH_ROWS, MXFP4_BATCH_TOKENS);
      _Static_assert(MXFP4_BATCH_TOKENS == 3, "the leftovers below are two tokens or one");
      if (a->num_tokens - t == 2) MXFP4_BLOCK(MXFP4_BATCH_ROWS, 2);
      if (a->num_tokens - t == 1) MXFP4_BLOCK(MXFP4_BATCH_ROWS, 1);
    }
    for (; r < chunk_end; r++) {
      int64_t t = 0;
      for (; t + MXFP4_BATCH_TOKENS <= a->num_tokens; t += MXFP4_BATCH_TOKENS) MXFP4_BLOCK(1, MXFP4_BATCH_TOKENS);
      for (; t < a->num_tokens; t++) MXFP4_BLOCK(1, 1);
    }
  }
}
#undef MXFP4_BLOCK

/* ================= MXFP4 row decode (prefill) =================
 * A 32-element block in two registers: the 16 bytes' nibbles interleaved back into element order
 * (element 2i = low nibble of byte i), each code looked up whole — sign included — in the
 * 16-entry value table, then scaled by 2^(scale - 127) (MXFP4_SCALE_BITS_OF). The same products
 * as the AVX2 and portable decoders: the same bits. A third of AVX2's instructions per element,
 * which prefill pays once per weight per chunk. */
AVX512_FN static inline __m512 mxfp4_scale_x16(uint8_t code) {
  return _mm512_castsi512_ps(_mm512_set1_epi32((int32_t)MXFP4_SCALE_BITS_OF(code)));
}

AVX512_FN void mxfp4_decode_row_avx512(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols) {
  const __m512 values = _mm512_loadu_ps(MXFP4_VALUES);
  const __m128i nibble = _mm_set1_epi8(0x0F);
  for (int64_t b = 0; b < cols / MXFP4_BLOCK_ELEMS; b++) {
    const __m128i bytes = _mm_loadu_si128((const __m128i *)(blocks + b * MXFP4_BLOCK_BYTES));
    const __m128i low = _mm_and_si128(bytes, nibble), high = _mm_and_si128(_mm_srli_epi16(bytes, 4), nibble);
    const __m512 scale = mxfp4_scale_x16(scales[b]);
    const __m512 first = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(low, high)), values);
    const __m512 second = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(low, high)), values);
    _mm512_storeu_ps(out + b * MXFP4_BLOCK_ELEMS, _mm512_mul_ps(first, scale));
    _mm512_storeu_ps(out + b * MXFP4_BLOCK_ELEMS + 16, _mm512_mul_ps(second, scale));
  }
}

/* ================= packed GEMM block (prefill): kernels_gemm_block.h ================= */
#define GEMM_FN AVX512_FN
#define GEMM_VEC __m512
#define GEMM_VECTOR 16
#define GEMM_LOAD _mm512_loadu_ps
#define GEMM_STORE _mm512_storeu_ps
#define GEMM_ZERO _mm512_setzero_ps
#define GEMM_FMADD _mm512_fmadd_ps
#define GEMM_BROADCAST(p) _mm512_set1_ps(*(p))
#define GEMM_ROWS 14
#define GEMM_KERNEL GEMM_KERNEL_AVX512
#include "model/kernels_gemm_block.h"

#endif
