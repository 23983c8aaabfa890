/* Benchmark (not a test): how close the single-token matmuls come to the memory bandwidth, and
 * (--batch) how close the batched ones come to the compute bound.
 *
 * Decode reads every weight once per token, so the figure of merit is GB/s of packed weight bytes
 * read, next to what a plain streaming read of memory achieves. "cold" rotates through enough
 * copies of the matrix (--footprint-mb, default 1024) that the weights come from DRAM and not
 * from the last-level cache, as in a real forward pass; "hot" repeats one matrix, which shows the
 * kernel's compute ceiling.
 *
 * Prefill is compute-bound, so --batch gives GFLOP/s of the engine's matmuls and chunk attention
 * at the shapes a 20b prefill runs (512-token chunk; ~64 tokens per expert), next to one plain
 * cblas_sgemm of the same shape on weights already in fp32 with OpenBLAS on the same number of
 * threads: that is the bound. Times are the best of --reps, wall clock; on a shared machine run
 * it twice and compare the ratios.
 *
 * Batched decode multiplies the unembedding by a few tokens per step with the row-streaming
 * kernel, and the experts each of a few tokens: --decode times both per ISA at 1 to 8 tokens, on the
 * whole 201,088 x 2880 bf16 matrix (1.16 GB: from DRAM) and on 0.55 GB of MXFP4 5760 x 2880 expert
 * matrices, and on 2,000 of their rows (hot: the kernel's compute ceiling), in ms and in
 * multiply-adds per second. Usage: bench_kernels [--batch | --decode] [--threads N] [--footprint-mb MB] [--reps R] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <omp.h>

#include "model/kernels.h"

typedef struct {
  int threads;
  size_t footprint_bytes;
  int reps;
  int batch;
  int decode;
} BenchOptions;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *alloc_filled(size_t bytes, uint64_t seed) {
  uint8_t *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  if (!p) {
    fprintf(stderr, "bench_kernels: cannot allocate %zu bytes\n", bytes);
    exit(1);
  }
  /* Touch every page before timing; the values only need to be ordinary (no subnormals). */
  for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)((seed + i * 2654435761u) >> 7);
  return p;
}

/* ---- baseline: stream through memory once, summing 64-bit words (vectorisable integer adds) ---- */

static uint64_t sum_words(const uint64_t *a, size_t n) {
  uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (size_t i = 0; i < n; i++) sum += a[i];
  return sum;
}

static double bench_memory_read(const BenchOptions *o) {
  const size_t n = o->footprint_bytes / sizeof(uint64_t);
  uint64_t *a = alloc_filled(n * sizeof *a, 1);
  double best = 0.0;
  volatile uint64_t sink = 0;
  for (int rep = 0; rep < o->reps; rep++) {
    const double t0 = now_seconds();
    sink += sum_words(a, n);
    const double gbps = (double)(n * sizeof *a) / (now_seconds() - t0) / 1e9;
    if (gbps > best) best = gbps;
  }
  free(a);
  return best;
}

/* ---- matvecs over `copies` distinct matrices of one shape ---- */

typedef struct {
  const char *name;
  int64_t rows, cols;
  size_t matrix_bytes;  /* packed weight bytes read per matvec */
  int is_mxfp4;
} MatvecShape;

static void run_matvec(const MatvecShape *s, const uint8_t *weights, const float *x, float *y) {
  if (s->is_mxfp4) {
    const size_t block_bytes = (size_t)(s->rows * s->cols / 2);
    matmul_f32_mxfp4w(y, weights, weights + block_bytes, NULL, x, 1, s->rows, s->cols);
  } else {
    matmul_f32_bf16w(y, (const uint16_t *)weights, NULL, x, 1, s->rows, s->cols);
  }
}

/* Best GB/s over the reps of one sweep through `copies` matrices. */
static double time_sweeps(const MatvecShape *s, const uint8_t *weights, int64_t copies, const float *x, float *y,
                          int reps) {
  double best = 0.0;
  for (int rep = 0; rep < reps; rep++) {
    const double t0 = now_seconds();
    for (int64_t m = 0; m < copies; m++) run_matvec(s, weights + (size_t)m * s->matrix_bytes, x, y);
    const double gbps = (double)copies * (double)s->matrix_bytes / (now_seconds() - t0) / 1e9;
    if (gbps > best) best = gbps;
  }
  return best;
}

typedef struct {
  double cold_gbps[KERNEL_ISA_COUNT], hot_gbps[KERNEL_ISA_COUNT];  /* 0: ISA not run */
} MatvecResult;

static MatvecResult bench_matvec(const MatvecShape *s, const BenchOptions *o) {
  MatvecResult result = {{0}, {0}};
  const int64_t cold_copies = (int64_t)(o->footprint_bytes / s->matrix_bytes) + 1, hot_repeats = 64;
  uint8_t *weights = alloc_filled((size_t)cold_copies * s->matrix_bytes, 7);
  if (s->is_mxfp4) { /* scale codes 120..131: values near 1, no overflow or subnormals */
    for (int64_t m = 0; m < cold_copies; m++) {
      uint8_t *scales = weights + (size_t)m * s->matrix_bytes + (size_t)(s->rows * s->cols / 2);
      for (int64_t i = 0; i < s->rows * s->cols / 32; i++) scales[i] = (uint8_t)(120 + i % 12);
    }
  } else { /* bf16 with exponents near 1 */
    uint16_t *w = (uint16_t *)weights;
    for (size_t i = 0; i < (size_t)cold_copies * s->matrix_bytes / 2; i++) w[i] = (uint16_t)(0x3E00 + (w[i] & 0x3FF));
  }
  float *x = malloc((size_t)s->cols * sizeof *x), *y = malloc((size_t)s->rows * sizeof *y);
  for (int64_t c = 0; c < s->cols; c++) x[c] = (float)(c % 7) - 3.0f;
  for (int isa = 0; isa < KERNEL_ISA_COUNT; isa++) {
    if (!kernels_select_isa((KernelIsa)isa)) continue;
    run_matvec(s, weights, x, y); /* warm up threads and code */
    result.cold_gbps[isa] = time_sweeps(s, weights, cold_copies, x, y, o->reps);
    for (int rep = 0; rep < o->reps; rep++) {
      const double hot = time_sweeps(s, weights, 1, x, y, (int)hot_repeats);
      if (hot > result.hot_gbps[isa]) result.hot_gbps[isa] = hot;
    }
  }
  free(weights), free(x), free(y);
  return result;
}

static void print_matvec(const MatvecShape *s, const MatvecResult *r, double memory_gbps) {
  for (int isa = 0; isa < KERNEL_ISA_COUNT; isa++) {
    if (r->cold_gbps[isa] == 0.0) continue;
    printf("%-26s %-9s cold %7.2f GB/s (%5.1f%% of memory read)   hot %7.2f GB/s\n", s->name,
           kernels_isa_name((KernelIsa)isa), r->cold_gbps[isa], 100.0 * r->cold_gbps[isa] / memory_gbps,
           r->hot_gbps[isa]);
  }
}

/* ---- batches (prefill): GFLOP/s against a plain sgemm of the same shape ---- */

/* OpenBLAS's own threads, for the plain sgemm only: the engine expects 1 (kernels_gemm.c). */
extern void openblas_set_num_threads(int num_threads) __attribute__((weak));

static void blas_threads(int n) {
  if (openblas_set_num_threads) openblas_set_num_threads(n);
}

typedef struct {
  const char *name;
  int64_t num_tokens, rows, cols;
  int is_mxfp4;
} BatchShape;

typedef struct {
  const BatchShape *shape;
  const uint8_t *weights; /* bf16, or MXFP4 blocks then scales */
  const float *w_f32, *x; /* decoded weights [rows, cols]; x [num_tokens, cols] */
  float *y;
} BatchData;

static void run_engine_batch(const void *data) {
  const BatchData *d = data;
  const BatchShape *s = d->shape;
  if (s->is_mxfp4) {
    matmul_f32_mxfp4w(d->y, d->weights, d->weights + s->rows * s->cols / 2, NULL, d->x, s->num_tokens, s->rows, s->cols);
  } else {
    matmul_f32_bf16w(d->y, (const uint16_t *)d->weights, NULL, d->x, s->num_tokens, s->rows, s->cols);
  }
}

static void run_plain_sgemm(const void *data) {
  const BatchData *d = data;
  const BatchShape *s = d->shape;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->num_tokens, (int)s->rows, (int)s->cols, 1.0f, d->x,
              (int)s->cols, d->w_f32, (int)s->cols, 0.0f, d->y, (int)s->rows);
}

typedef void (*BenchFn)(const void *data);

static double best_seconds(BenchFn fn, const void *data, int reps) {
  double best = 1e30;
  fn(data); /* warm up threads, code and caches */
  for (int rep = 0; rep < reps; rep++) {
    const double t0 = now_seconds();
    fn(data);
    const double seconds = now_seconds() - t0;
    if (seconds < best) best = seconds;
  }
  return best;
}

/* Weights with ordinary values (scale codes 120..131; bf16 exponents near 1), decoded once for
 * the plain sgemm. */
static void fill_batch_weights(const BatchShape *s, uint8_t *weights, float *w_f32) {
  const int64_t blocks_per_row = s->cols / MXFP4_BLOCK_ELEMS;
  if (s->is_mxfp4) {
    uint8_t *scales = weights + s->rows * s->cols / 2;
    for (int64_t i = 0; i < s->rows * blocks_per_row; i++) scales[i] = (uint8_t)(120 + i % 12);
    for (int64_t r = 0; r < s->rows; r++) {
      mxfp4_decode_row(w_f32 + r * s->cols, weights + r * blocks_per_row * MXFP4_BLOCK_BYTES, scales + r * blocks_per_row,
                       s->cols);
    }
  } else {
    uint16_t *w = (uint16_t *)weights;
    for (int64_t i = 0; i < s->rows * s->cols; i++) w[i] = (uint16_t)(0x3E00 + (w[i] & 0x3FF));
    bf16_decode_row(w_f32, w, s->rows * s->cols);
  }
}

static void bench_batch(const BatchShape *s, const BenchOptions *o) {
  const size_t weight_bytes = s->is_mxfp4 ? (size_t)(s->rows * s->cols / 2 + s->rows * s->cols / MXFP4_BLOCK_ELEMS)
                                          : (size_t)(s->rows * s->cols * 2);
  uint8_t *weights = alloc_filled(weight_bytes, 7);
  float *w_f32 = alloc_filled((size_t)(s->rows * s->cols) * sizeof(float), 0);
  float *x = alloc_filled((size_t)(s->num_tokens * s->cols) * sizeof(float), 0);
  float *y = alloc_filled((size_t)(s->num_tokens * s->rows) * sizeof(float), 0);
  fill_batch_weights(s, weights, w_f32);
  for (int64_t i = 0; i < s->num_tokens * s->cols; i++) x[i] = (float)(i % 7) - 3.0f;
  const BatchData d = {s, weights, w_f32, x, y};
  const double engine = best_seconds(run_engine_batch, &d, o->reps);
  blas_threads(o->threads);
  const double plain = best_seconds(run_plain_sgemm, &d, o->reps);
  blas_threads(1);
  const double gflop = 2.0 * (double)s->num_tokens * (double)s->rows * (double)s->cols / 1e9;
  printf("%-34s %8.2f ms %7.1f GFLOP/s   plain sgemm %7.1f GFLOP/s   %5.2f of it\n", s->name, engine * 1e3,
         gflop / engine, gflop / plain, plain / engine);
  free(weights), free(w_f32), free(x), free(y);
}

typedef struct {
  const char *name;
  int64_t n, num_heads, head_dim, first_query_key, window;
} AttentionShape;

typedef struct {
  const AttentionShape *shape;
  const float *q, *keys, *values;
  float *out, *scores;
  const uint16_t *sinks;
} AttentionData;

static void run_engine_attention(const void *data) {
  const AttentionData *a = data;
  const AttentionShape *s = a->shape;
  attention_chunk_f32(a->out, a->q, a->keys, a->values, a->sinks, s->n, s->num_heads, s->head_dim, s->first_query_key,
                      s->window);
}

/* The same two products over every key, without the mask or the softmax: the bound. */
static void run_plain_attention(const void *data) {
  const AttentionData *a = data;
  const AttentionShape *s = a->shape;
  const int m = (int)(s->n * s->num_heads), keys = (int)(s->first_query_key + s->n), dim = (int)s->head_dim;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, keys, dim, 1.0f, a->q, dim, a->keys, dim, 0.0f, a->scores, keys);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, dim, keys, 1.0f, a->scores, keys, a->values, dim, 0.0f,
              a->out, dim);
}

/* GFLOP of the products the engine must do: each query against the keys it sees. */
static double attention_gflop(const AttentionShape *s) {
  double flop = 0.0;
  for (int64_t i = 0; i < s->n; i++) {
    const int64_t self = s->first_query_key + i, lo = s->window && self - s->window + 1 > 0 ? self - s->window + 1 : 0;
    flop += 4.0 * (double)(s->num_heads * s->head_dim * (self - lo + 1));
  }
  return flop / 1e9;
}

static void bench_attention(const AttentionShape *s, const BenchOptions *o) {
  const int64_t keys = s->first_query_key + s->n, rows = s->n * s->num_heads, dim = s->head_dim;
  float *q = alloc_filled((size_t)(rows * dim) * sizeof(float), 0), *k = alloc_filled((size_t)(keys * dim) * sizeof(float), 0);
  float *v = alloc_filled((size_t)(keys * dim) * sizeof(float), 0), *out = alloc_filled((size_t)(rows * dim) * sizeof(float), 0);
  float *scores = alloc_filled((size_t)(rows * keys) * sizeof(float), 0);
  uint16_t sinks[64];
  for (int64_t i = 0; i < rows * dim; i++) q[i] = (float)(i % 17) * 0.05f - 0.4f;
  for (int64_t i = 0; i < keys * dim; i++) k[i] = (float)(i % 13) * 0.05f - 0.3f, v[i] = (float)(i % 11) * 0.1f - 0.5f;
  for (int i = 0; i < 64; i++) sinks[i] = 0x3F80; /* 1.0 */
  const AttentionData a = {s, q, k, v, out, scores, sinks};
  const double engine = best_seconds(run_engine_attention, &a, o->reps);
  blas_threads(o->threads);
  const double plain = best_seconds(run_plain_attention, &a, o->reps);
  blas_threads(1);
  const double plain_gflop = 4.0 * (double)(rows * keys * dim) / 1e9;
  printf("%-34s %8.2f ms %7.1f GFLOP/s   plain sgemm %7.1f GFLOP/s (all keys: %.2f ms)\n", s->name, engine * 1e3,
         attention_gflop(s) / engine, plain_gflop / plain, plain * 1e3);
  free(q), free(k), free(v), free(out), free(scores);
}

static void bench_batches(const BenchOptions *o) {
  /* Per KV group of 20b: q 512 rows, k/v 64, o_proj 2880 x 512; experts 5760/2880 x 2880. */
  static const BatchShape shapes[] = {
      {"bf16 q     512 x 512x2880", 512, 512, 2880, 0},  {"bf16 k/v   512 x 64x2880", 512, 64, 2880, 0},
      {"bf16 o     512 x 2880x512", 512, 2880, 512, 0},  {"mxfp4 up    64 x 5760x2880", 64, 5760, 2880, 1},
      {"mxfp4 down  64 x 2880x2880", 64, 2880, 2880, 1}, {"mxfp4 up    16 x 5760x2880", 16, 5760, 2880, 1}, {"mxfp4 up    48 x 5760x2880", 48, 5760, 2880, 1},
      {"mxfp4 up     8 x 5760x2880", 8, 5760, 2880, 1},  {"mxfp4 up     7 x 5760x2880 (rows)", 7, 5760, 2880, 1},
      {"mxfp4 up     4 x 5760x2880 (rows)", 4, 5760, 2880, 1},
  };
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) bench_batch(&shapes[i], o);
  static const AttentionShape attention[] = {
      {"attention 512 q, 8 heads, causal", 512, 8, 64, 0, 0},
      {"attention 512 q, window 128", 512, 8, 64, 0, 128},
      {"attention 512 q after 3584 keys", 512, 8, 64, 3584, 0},
  };
  for (size_t i = 0; i < sizeof attention / sizeof attention[0]; i++) bench_attention(&attention[i], o);
}

/* ---- batched decode: the unembedding and one expert streamed against 1 to 8 tokens ---- */

enum { DECODE_MAX_TOKENS = 8 };

/* A streamed product's weights: bf16 rows, or MXFP4 blocks followed by their scales. */
typedef struct {
  const char *name;
  int64_t rows, hot_rows, cols;
  int is_mxfp4;
  const uint8_t *weights;
} StreamShape;

static void run_stream(const StreamShape *s, const float *x, float *y, int64_t num_tokens, int64_t rows) {
  if (s->is_mxfp4) {
    const uint8_t *scales = s->weights + (size_t)(s->rows * s->cols / 2);
    matmul_f32_mxfp4w_stream(y, s->weights, scales, NULL, x, num_tokens, rows, s->cols);
  } else {
    matmul_f32_bf16w_stream(y, (const uint16_t *)s->weights, NULL, x, num_tokens, rows, s->cols);
  }
}

/* Best wall time over `reps` of one streamed product of the first `rows` rows against num_tokens tokens. */
static double time_stream(const StreamShape *s, const float *x, float *y, int64_t num_tokens, int64_t rows, int reps) {
  double best = 1e30;
  for (int rep = 0; rep < reps; rep++) {
    const double t0 = now_seconds();
    run_stream(s, x, y, num_tokens, rows);
    const double seconds = now_seconds() - t0;
    if (seconds < best) best = seconds;
  }
  return best;
}

static void bench_stream(const StreamShape *s, const float *x, float *y, const BenchOptions *o) {
  for (int isa = 0; isa < KERNEL_ISA_COUNT; isa++) {
    if (!kernels_select_isa((KernelIsa)isa)) continue;
    for (int64_t n = 1; n <= DECODE_MAX_TOKENS; n++) {
      const double cold = time_stream(s, x, y, n, s->rows, o->reps);
      const double hot = time_stream(s, x, y, n, s->hot_rows, 20 * o->reps);
      printf("%s stream %-9s %lld token(s) %lldx%lld  cold %7.1f ms %6.1f GFMA/s   hot (%lld rows) %6.1f GFMA/s\n",
             s->name, kernels_isa_name((KernelIsa)isa), (long long)n, (long long)s->rows, (long long)s->cols, cold * 1e3,
             (double)(n * s->rows * s->cols) / cold / 1e9, (long long)s->hot_rows,
             (double)(n * s->hot_rows * s->cols) / hot / 1e9);
    }
  }
}

/* The unembedding (201,088 x 2880 bf16, 1.16 GB: from DRAM) and, for the experts, 64 copies of
 * one 5760 x 2880 MXFP4 gate_up matrix side by side (0.55 GB), each "cold" pass over all of it;
 * "hot" repeats the first rows, which stay in cache. */
static void bench_decode(const BenchOptions *o) {
  const int64_t cols = 2880, unembedding_rows = 201088, expert_rows = 64 * 5760;
  uint16_t *w = alloc_filled((size_t)(unembedding_rows * cols) * sizeof *w, 7);
  for (int64_t i = 0; i < unembedding_rows * cols; i++) w[i] = (uint16_t)(0x3E00 + (w[i] & 0x3FF)); /* exponents near 1 */
  uint8_t *mx = alloc_filled((size_t)(expert_rows * cols / 2 + expert_rows * cols / 32), 11);
  uint8_t *scales = mx + (size_t)(expert_rows * cols / 2); /* codes 120..131: values near 1 */
  for (int64_t i = 0; i < expert_rows * cols / 32; i++) scales[i] = (uint8_t)(120 + i % 12);
  float *x = malloc((size_t)(DECODE_MAX_TOKENS * cols) * sizeof *x);
  const int64_t max_rows = expert_rows > unembedding_rows ? expert_rows : unembedding_rows;
  float *y = malloc((size_t)(DECODE_MAX_TOKENS * max_rows) * sizeof *y);
  for (int64_t c = 0; c < DECODE_MAX_TOKENS * cols; c++) x[c] = (float)(c % 7) - 3.0f;
  const StreamShape shapes[] = {{"bf16", unembedding_rows, 2000, cols, 0, (const uint8_t *)w},
                                {"mxfp4", expert_rows, 2000, cols, 1, mx}};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) bench_stream(&shapes[i], x, y, o);
  free(w), free(mx), free(x), free(y);
}

static BenchOptions parse_options(int argc, char **argv) {
  BenchOptions o = {.threads = 1, .footprint_bytes = (size_t)1024 << 20, .reps = 5, .batch = 0, .decode = 0};
  for (int i = 1; i < argc; i += 2) {
    if (strcmp(argv[i], "--batch") == 0) {
      o.batch = 1;
      i--; /* takes no value */
    } else if (strcmp(argv[i], "--decode") == 0) {
      o.decode = 1;
      i--;
    } else if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) o.threads = atoi(argv[i + 1]);
    else if (i + 1 < argc && strcmp(argv[i], "--footprint-mb") == 0) o.footprint_bytes = (size_t)atol(argv[i + 1]) << 20;
    else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) o.reps = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--batch | --decode] [--threads N] [--footprint-mb MB] [--reps R]\n", argv[0]);
      exit(2);
    }
  }
  if (o.threads < 1 || o.reps < 1 || o.footprint_bytes == 0) {
    fprintf(stderr, "bench_kernels: --threads, --reps and --footprint-mb must be positive\n");
    exit(2);
  }
  return o;
}

int main(int argc, char **argv) {
  const BenchOptions o = parse_options(argc, argv);
  omp_set_num_threads(o.threads);
  const KernelIsa chosen = kernels_active_isa();
  if (o.batch || o.decode) {
    printf("threads %d, best of %d; engine picks: %s\n", o.threads, o.reps, kernels_isa_name(chosen));
    if (o.batch) bench_batches(&o);
    else bench_decode(&o);
    kernels_select_isa(chosen);
    return 0;
  }
  printf("threads %d, footprint %zu MB, best of %d; engine picks: %s\n", o.threads, o.footprint_bytes >> 20, o.reps,
         kernels_isa_name(chosen));
  /* The machine may be shared: measure memory before and after, and compare with the better. */
  const double memory_before = bench_memory_read(&o);
  const MatvecShape shapes[] = {
      {"bf16 2880x2880 (q/o-like)", 2880, 2880, (size_t)2880 * 2880 * 2, 0},
      {"mxfp4 5760x2880 (gate_up)", 5760, 2880, (size_t)5760 * 2880 / 2 + (size_t)5760 * 2880 / 32, 1},
  };
  enum { NUM_SHAPES = sizeof shapes / sizeof shapes[0] };
  MatvecResult results[NUM_SHAPES];
  for (int i = 0; i < NUM_SHAPES; i++) results[i] = bench_matvec(&shapes[i], &o);
  const double memory_after = bench_memory_read(&o);
  const double memory_gbps = memory_before > memory_after ? memory_before : memory_after;
  printf("%-26s %-9s      %7.2f GB/s (before %.2f, after %.2f)\n", "memory read (sum u64)", "", memory_gbps,
         memory_before, memory_after);
  for (int i = 0; i < NUM_SHAPES; i++) print_matvec(&shapes[i], &results[i], memory_gbps);
  kernels_select_isa(chosen);
  return 0;
}
