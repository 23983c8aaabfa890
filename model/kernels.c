/* Kernels for the forward pass (see kernels.h). The engine's matmuls read the packed weights once
 * per call. A few tokens (decode) run row by row: each row is decoded once and reused for every
 * token (or, for a single token, streamed straight into the dot product where the ISA has such a
 * loop), rows split across OpenMP threads. Batches of MATMUL_GEMM_MIN_TOKENS or more run as matrix
 * products on decoded tiles (kernels_gemm.c). The inner loops come from one table per ISA —
 * portable C here, AVX2 in kernels_avx2.c, AVX-512 (all but the bf16 row decode) in
 * kernels_avx512.c — the best the CPU has chosen once, at first use. */
#include "model/kernels.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "model/kernels_gemm.h"
#include "model/kernels_isa.h"

const float MXFP4_VALUES[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

/* MXFP4_SCALE_BITS_OF for every code: a table, because this runs once per block. */
#define SCALE_BITS4(s) MXFP4_SCALE_BITS_OF(s), MXFP4_SCALE_BITS_OF(s + 1), MXFP4_SCALE_BITS_OF(s + 2), MXFP4_SCALE_BITS_OF(s + 3)
#define SCALE_BITS16(s) SCALE_BITS4(s), SCALE_BITS4(s + 4), SCALE_BITS4(s + 8), SCALE_BITS4(s + 12)
#define SCALE_BITS64(s) SCALE_BITS16(s), SCALE_BITS16(s + 16), SCALE_BITS16(s + 32), SCALE_BITS16(s + 48)
const uint32_t MXFP4_SCALE_BITS[256] = {SCALE_BITS64(0), SCALE_BITS64(64), SCALE_BITS64(128),
                                               SCALE_BITS64(192)};

float mxfp4_scale(uint8_t scale_code) { return ldexpf(1.0f, (int)scale_code - 127); }

static void mxfp4_decode_row_portable(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols) {
  for (int64_t b = 0; b < cols / MXFP4_BLOCK_ELEMS; b++) {
    const float scale = mxfp4_scale(scales[b]);
    const uint8_t *codes = blocks + b * MXFP4_BLOCK_BYTES;
    float *dst = out + b * MXFP4_BLOCK_ELEMS;
    for (int i = 0; i < MXFP4_BLOCK_BYTES; i++) {
      dst[2 * i] = MXFP4_VALUES[codes[i] & 0x0F] * scale;
      dst[2 * i + 1] = MXFP4_VALUES[codes[i] >> 4] * scale;
    }
  }
}

static void bf16_decode_row_portable(float *out, const uint16_t *row, int64_t cols) {
  for (int64_t c = 0; c < cols; c++) out[c] = bf16_to_f32(row[c]);
}

static float dot_f32_f32_portable(const float *a, const float *b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
  return sum;
}

/* A thread's buffers live in thread-specific data whose destructor frees them when the thread
 * ends (OpenMP ends threads when a team shrinks). Slot 0 is kernel_thread_buffer's, slot 1
 * kernel_shared_buffer's. */
enum { BUFFER_SLOTS = 2 };

typedef struct {
  float *data[BUFFER_SLOTS];
  size_t capacity[BUFFER_SLOTS];
} ThreadBuffers;

static pthread_key_t g_buffer_key;
static pthread_once_t g_buffer_key_once = PTHREAD_ONCE_INIT;

static void free_thread_buffers(void *p) {
  ThreadBuffers *b = p;
  for (int slot = 0; slot < BUFFER_SLOTS; slot++) free(b->data[slot]);
  free(b);
}

static void create_buffer_key(void) { pthread_key_create(&g_buffer_key, free_thread_buffers); }

static float *thread_buffer_slot(int slot, size_t floats) {
  pthread_once(&g_buffer_key_once, create_buffer_key);
  ThreadBuffers *b = pthread_getspecific(g_buffer_key);
  if (!b) {
    b = calloc(1, sizeof *b);
    if (!b || pthread_setspecific(g_buffer_key, b) != 0) {
      free(b);
      return NULL;
    }
  }
  if (floats > b->capacity[slot]) {
    free(b->data[slot]);
    b->data[slot] = malloc(floats * sizeof *b->data[slot]);
    b->capacity[slot] = b->data[slot] ? floats : 0;
  }
  return b->data[slot];
}

float *kernel_thread_buffer(size_t floats) { return thread_buffer_slot(0, floats); }

float *kernel_shared_buffer(size_t floats) { return thread_buffer_slot(1, floats); }

/* ---- reference versions: element by element, no threads ---- */

void matmul_f32_bf16w_ref(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                          int64_t num_tokens, int64_t rows, int64_t cols) {
  for (int64_t t = 0; t < num_tokens; t++) {
    for (int64_t r = 0; r < rows; r++) {
      double sum = bias ? bf16_to_f32(bias[r]) : 0.0;
      for (int64_t c = 0; c < cols; c++) sum += (double)bf16_to_f32(w[r * cols + c]) * x[t * cols + c];
      y[t * rows + r] = (float)sum;
    }
  }
}

void matmul_f32_mxfp4w_ref(float *y, const uint8_t *blocks, const uint8_t *scales,
                           const uint16_t *bias, const float *x, int64_t num_tokens, int64_t rows,
                           int64_t cols) {
  const int64_t blocks_per_row = cols / MXFP4_BLOCK_ELEMS;
  for (int64_t t = 0; t < num_tokens; t++) {
    for (int64_t r = 0; r < rows; r++) {
      double sum = bias ? bf16_to_f32(bias[r]) : 0.0;
      for (int64_t c = 0; c < cols; c++) {
        const int64_t block = r * blocks_per_row + c / MXFP4_BLOCK_ELEMS;
        const uint8_t byte = blocks[block * MXFP4_BLOCK_BYTES + (c % MXFP4_BLOCK_ELEMS) / 2];
        const uint8_t code = (c % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
        sum += (double)MXFP4_VALUES[code] * mxfp4_scale(scales[block]) * x[t * cols + c];
      }
      y[t * rows + r] = (float)sum;
    }
  }
}

/* ---- engine versions: portable inner loops (decode each row once, dot it with every token) ---- */

static void matmul_rows_f32_bf16w_portable(const MatmulArgs *a, int64_t row_begin, int64_t row_end) {
  float *row = kernel_thread_buffer((size_t)a->cols);
  assert(row);
  for (int64_t r = row_begin; r < row_end; r++) {
    bf16_decode_row_portable(row, (const uint16_t *)a->weights + r * a->cols, a->cols);
    const float bias = matmul_bias_f32(a, r);
    for (int64_t t = 0; t < a->num_tokens; t++) {
      a->y[t * a->rows + r] = dot_f32_f32_portable(row, a->x + t * a->cols, a->cols) + bias;
    }
  }
}

static void matmul_rows_f32_mxfp4w_portable(const MatmulArgs *a, int64_t row_begin, int64_t row_end) {
  const int64_t blocks_per_row = a->cols / MXFP4_BLOCK_ELEMS;
  float *row = kernel_thread_buffer((size_t)a->cols);
  assert(row);
  for (int64_t r = row_begin; r < row_end; r++) {
    mxfp4_decode_row_portable(row, (const uint8_t *)a->weights + r * blocks_per_row * MXFP4_BLOCK_BYTES,
                              a->scales + r * blocks_per_row, a->cols);
    const float bias = matmul_bias_f32(a, r);
    for (int64_t t = 0; t < a->num_tokens; t++) {
      a->y[t * a->rows + r] = dot_f32_f32_portable(row, a->x + t * a->cols, a->cols) + bias;
    }
  }
}

/* ---- one table of inner loops per ISA, chosen once ---- */

typedef struct {
  KernelIsa isa;
  void (*decode_bf16)(float *out, const uint16_t *row, int64_t cols);
  void (*decode_mxfp4)(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols);
  MatmulRowsFn rows_f32_bf16w;
  MatmulRowsFn rows_f32_mxfp4w;
  const GemmKernel *gemm; /* batches' register blocks; NULL: OpenBLAS sgemm */
} KernelTable;

static const KernelTable KERNELS_PORTABLE = {
    .isa = KERNEL_ISA_PORTABLE,
    .decode_bf16 = bf16_decode_row_portable,
    .decode_mxfp4 = mxfp4_decode_row_portable,
    .rows_f32_bf16w = matmul_rows_f32_bf16w_portable,
    .rows_f32_mxfp4w = matmul_rows_f32_mxfp4w_portable,
};

#if GPTOSS_HAVE_AVX2_KERNELS
static const KernelTable KERNELS_AVX2 = {
    .isa = KERNEL_ISA_AVX2,
    .decode_bf16 = bf16_decode_row_avx2,
    .decode_mxfp4 = mxfp4_decode_row_avx2,
    .rows_f32_bf16w = matmul_rows_f32_bf16w_avx2,
    .rows_f32_mxfp4w = matmul_rows_f32_mxfp4w_avx2,
    .gemm = &GEMM_KERNEL_AVX2,
};

/* AVX-512 only where it pays: the bf16 and MXFP4 rows (decode, batched decode), the prefill blocks
 * and the MXFP4 decode that feeds them. */
static const KernelTable KERNELS_AVX512 = {
    .isa = KERNEL_ISA_AVX512,
    .decode_bf16 = bf16_decode_row_avx2,
    .decode_mxfp4 = mxfp4_decode_row_avx512,
    .rows_f32_bf16w = matmul_rows_f32_bf16w_avx512,
    .rows_f32_mxfp4w = matmul_rows_f32_mxfp4w_avx512,
    .gemm = &GEMM_KERNEL_AVX512,
};
#endif

/* The one place that knows which ISAs exist and how to detect them. */
static const KernelTable *kernel_table_for(KernelIsa isa) {
#if GPTOSS_HAVE_AVX2_KERNELS
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == KERNEL_ISA_AVX2 && avx2) return &KERNELS_AVX2;
  if (isa == KERNEL_ISA_AVX512 && avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
    return &KERNELS_AVX512;
  }
#endif
  return isa == KERNEL_ISA_PORTABLE ? &KERNELS_PORTABLE : NULL;
}

/* Atomic so that a first use from several threads is not a data race; choosing twice is harmless. */
static _Atomic(const KernelTable *) g_kernels = NULL;

static const KernelTable *kernels(void) {
  const KernelTable *table = atomic_load_explicit(&g_kernels, memory_order_acquire);
  if (table) return table;
  table = kernel_table_for(KERNEL_ISA_AVX512);
  if (!table) table = kernel_table_for(KERNEL_ISA_AVX2);
  if (!table) table = &KERNELS_PORTABLE;
  atomic_store_explicit(&g_kernels, table, memory_order_release);
  return table;
}

KernelIsa kernels_active_isa(void) { return kernels()->isa; }

const char *kernels_isa_name(KernelIsa isa) {
  switch (isa) {
    case KERNEL_ISA_PORTABLE: return "portable";
    case KERNEL_ISA_AVX2: return "avx2";
    case KERNEL_ISA_AVX512: return "avx512";
    case KERNEL_ISA_COUNT: break;
  }
  return "unknown";
}

bool kernels_select_isa(KernelIsa isa) {
  const KernelTable *table = kernel_table_for(isa);
  if (table) atomic_store_explicit(&g_kernels, table, memory_order_release);
  return table != NULL;
}

void mxfp4_decode_row(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols) {
  kernels()->decode_mxfp4(out, blocks, scales, cols);
}

void bf16_decode_row(float *out, const uint16_t *row, int64_t cols) { kernels()->decode_bf16(out, row, cols); }

/* Threads split the rows by index; every output is one thread's, so thread counts never change
 * results. */
static void matmul_parallel(MatmulRowsFn rows_fn, const MatmulArgs *args) {
#pragma omp parallel
  {
    const int64_t num_threads = omp_get_num_threads(), thread = omp_get_thread_num();
    rows_fn(args, args->rows * thread / num_threads, args->rows * (thread + 1) / num_threads);
  }
}

/* ---- batches: matrix products on decoded tiles (kernels_gemm.c) ---- */

/* Where column col_begin of weight row `row` starts: the bf16 element, or the MXFP4 block (its
 * codes at first_block · MXFP4_BLOCK_BYTES, its scale at first_block). */
static const uint16_t *bf16_tile_row_at(const MatmulArgs *a, int64_t row, int64_t col_begin) {
  return (const uint16_t *)a->weights + row * a->cols + col_begin;
}

static int64_t mxfp4_tile_row_block(const MatmulArgs *a, int64_t row, int64_t col_begin) {
  return row * (a->cols / MXFP4_BLOCK_ELEMS) + col_begin / MXFP4_BLOCK_ELEMS;
}

static void decode_bf16_tile_row(const MatmulArgs *a, int64_t row, int64_t col_begin, int64_t num_cols, float *out) {
  kernels()->decode_bf16(out, bf16_tile_row_at(a, row, col_begin), num_cols);
}

static void decode_mxfp4_tile_row(const MatmulArgs *a, int64_t row, int64_t col_begin, int64_t num_cols, float *out) {
  const int64_t first_block = mxfp4_tile_row_block(a, row, col_begin);
  kernels()->decode_mxfp4(out, (const uint8_t *)a->weights + first_block * MXFP4_BLOCK_BYTES, a->scales + first_block,
                          num_cols);
}

/* Every cache line of [p, p + bytes): into L2, where the next slice of a tile will be decoded from. */
static void fetch_bytes(const void *p, size_t bytes) {
  for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch((const char *)p + offset, 0, 2);
}

static void fetch_bf16_tile_row(const MatmulArgs *a, int64_t row, int64_t col_begin, int64_t num_cols) {
  fetch_bytes(bf16_tile_row_at(a, row, col_begin), (size_t)num_cols * sizeof(uint16_t));
}

static void fetch_mxfp4_tile_row(const MatmulArgs *a, int64_t row, int64_t col_begin, int64_t num_cols) {
  const int64_t first_block = mxfp4_tile_row_block(a, row, col_begin);
  fetch_bytes((const uint8_t *)a->weights + first_block * MXFP4_BLOCK_BYTES, (size_t)(num_cols / 2));
  fetch_bytes(a->scales + first_block, (size_t)(num_cols / MXFP4_BLOCK_ELEMS));
}

static const TileRowFns BF16_TILE_ROWS = {decode_bf16_tile_row, fetch_bf16_tile_row};
static const TileRowFns MXFP4_TILE_ROWS = {decode_mxfp4_tile_row, fetch_mxfp4_tile_row};

void matmul_f32_bf16w(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                      int64_t num_tokens, int64_t rows, int64_t cols) {
  const MatmulArgs args = {.y = y, .weights = w, .bias = bias, .x = x, .num_tokens = num_tokens, .rows = rows, .cols = cols};
  if (num_tokens < MATMUL_GEMM_MIN_TOKENS) {
    matmul_f32_bf16w_stream(y, w, bias, x, num_tokens, rows, cols);
    return;
  }
  matmul_gemm_f32(&args, &BF16_TILE_ROWS, kernels()->gemm);
}

void matmul_f32_bf16w_stream(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                             int64_t num_tokens, int64_t rows, int64_t cols) {
  const MatmulArgs args = {.y = y, .weights = w, .bias = bias, .x = x, .num_tokens = num_tokens, .rows = rows, .cols = cols};
  matmul_parallel(kernels()->rows_f32_bf16w, &args);
}

void matmul_f32_bf16w_stream_list(const Bf16Product *products, int64_t count, int64_t num_tokens) {
  const MatmulRowsFn rows_fn = kernels()->rows_f32_bf16w;
  int64_t total_rows = 0;
  for (int64_t i = 0; i < count; i++) total_rows += products[i].rows;
#pragma omp parallel
  {
    const int64_t num_threads = omp_get_num_threads(), thread = omp_get_thread_num();
    const int64_t begin = total_rows * thread / num_threads, end = total_rows * (thread + 1) / num_threads;
    int64_t first = 0; /* the product's first row in the list's numbering */
    for (int64_t i = 0; i < count && first < end; first += products[i].rows, i++) {
      const Bf16Product *p = &products[i];
      const int64_t lo = begin > first ? begin - first : 0, hi = end < first + p->rows ? end - first : p->rows;
      if (lo >= hi) continue;
      const MatmulArgs args = {.y = p->y, .weights = p->w, .bias = p->bias, .x = p->x, .num_tokens = num_tokens,
                               .rows = p->rows, .cols = p->cols};
      rows_fn(&args, lo, hi);
    }
  }
}

void matmul_f32_mxfp4w_stream(float *y, const uint8_t *blocks, const uint8_t *scales, const uint16_t *bias,
                              const float *x, int64_t num_tokens, int64_t rows, int64_t cols) {
  const MatmulArgs args = {.y = y, .weights = blocks, .scales = scales, .bias = bias, .x = x,
                           .num_tokens = num_tokens, .rows = rows, .cols = cols};
  matmul_parallel(kernels()->rows_f32_mxfp4w, &args);
}

void matmul_f32_bf16w_portable(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                               int64_t num_tokens, int64_t rows, int64_t cols) {
  const MatmulArgs args = {.y = y, .weights = w, .bias = bias, .x = x, .num_tokens = num_tokens, .rows = rows, .cols = cols};
  matmul_parallel(matmul_rows_f32_bf16w_portable, &args);
}

void matmul_f32_mxfp4w(float *y, const uint8_t *blocks, const uint8_t *scales, const uint16_t *bias,
                       const float *x, int64_t num_tokens, int64_t rows, int64_t cols) {
  const MatmulArgs args = {.y = y, .weights = blocks, .scales = scales, .bias = bias, .x = x,
                           .num_tokens = num_tokens, .rows = rows, .cols = cols};
  if (num_tokens < MATMUL_GEMM_MIN_TOKENS) {
    matmul_f32_mxfp4w_stream(y, blocks, scales, bias, x, num_tokens, rows, cols);
    return;
  }
  matmul_gemm_f32(&args, &MXFP4_TILE_ROWS, kernels()->gemm);
}

/* ---- elementwise ---- */

void rmsnorm_f32_bf16w(float *out, const float *x, const uint16_t *weight, int64_t num_tokens,
                       int64_t n, float eps) {
  for (int64_t t = 0; t < num_tokens; t++) {
    const float *xt = x + t * n;
    float sum_sq = 0.0f;
    for (int64_t i = 0; i < n; i++) sum_sq += xt[i] * xt[i];
    const float inv_rms = 1.0f / sqrtf(sum_sq / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[t * n + i] = xt[i] * inv_rms * bf16_to_f32(weight[i]);
  }
}

void swiglu_interleaved(float *out, const float *u, int64_t num_pairs, float limit) {
  for (int64_t j = 0; j < num_pairs; j++) {
    /* Only the gate is clamped from above; up is clamped both ways and shifted by one. */
    const float gate = fminf(u[2 * j], limit);
    const float up = fminf(fmaxf(u[2 * j + 1], -limit), limit);
    const float glu = gate / (1.0f + expf(-1.702f * gate));
    out[j] = glu * (up + 1.0f);
  }
}

/* Below this many rows a parallel region costs more than it saves (decode's one to a few rows). */
enum { ROWS_PARALLEL_MIN = 16 };

void swiglu_rows(float *out, const float *u, int64_t rows, int64_t num_pairs, float limit) {
#pragma omp parallel for schedule(static) if (rows >= ROWS_PARALLEL_MIN)
  for (int64_t i = 0; i < rows; i++) swiglu_interleaved(out + i * num_pairs, u + i * 2 * num_pairs, num_pairs, limit);
}

void gather_rows(float *dst, const float *src, const int32_t *index, int64_t n, int64_t width) {
#pragma omp parallel for schedule(static) if (n >= ROWS_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) memcpy(dst + i * width, src + (int64_t)index[i] * width, (size_t)width * sizeof *dst);
}

void add_weighted_rows(float *dst, const int32_t *index, const float *weight, const float *src, int64_t n,
                       int64_t width) {
#pragma omp parallel for schedule(static) if (n >= ROWS_PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) {
    float *row = dst + (int64_t)index[i] * width;
    for (int64_t d = 0; d < width; d++) row[d] += weight[i] * src[i * width + d];
  }
}

void topk_softmax(const float *logits, int64_t n, int64_t k, int32_t *index_out, float *weight_out) {
  for (int64_t i = 0; i < k; i++) {
    int64_t best = -1;
    for (int64_t e = 0; e < n; e++) {
      int taken = 0;
      for (int64_t j = 0; j < i; j++) taken |= (index_out[j] == e);
      if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
    }
    index_out[i] = (int32_t)best;
  }
  /* Softmax over the k selected logits only; index_out[0] holds the largest. */
  const float max_logit = logits[index_out[0]];
  float sum = 0.0f;
  for (int64_t i = 0; i < k; i++) {
    weight_out[i] = expf(logits[index_out[i]] - max_logit);
    sum += weight_out[i];
  }
  for (int64_t i = 0; i < k; i++) weight_out[i] /= sum;
}

int64_t argmax_f32(const float *x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++) {
    if (x[i] > x[best]) best = i;
  }
  return best;
}
