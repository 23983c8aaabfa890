/* Benchmark (not a test): how close the single-token matmuls come to the memory bandwidth.
 *
 * Decode reads every weight once per token, so the figure of merit is GB/s of packed weight bytes
 * read, next to what a plain streaming read of memory achieves. "cold" rotates through enough
 * copies of the matrix (--footprint-mb, default 1024) that the weights come from DRAM and not
 * from the last-level cache, as in a real forward pass; "hot" repeats one matrix, which shows the
 * kernel's compute ceiling. Usage: bench_kernels [--threads N] [--footprint-mb MB] [--reps R] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "model/kernels.h"

typedef struct {
  int threads;
  size_t footprint_bytes;
  int reps;
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

static BenchOptions parse_options(int argc, char **argv) {
  BenchOptions o = {.threads = 1, .footprint_bytes = (size_t)1024 << 20, .reps = 5};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--threads") == 0) o.threads = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--footprint-mb") == 0) o.footprint_bytes = (size_t)atol(argv[i + 1]) << 20;
    else if (strcmp(argv[i], "--reps") == 0) o.reps = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--threads N] [--footprint-mb MB] [--reps R]\n", argv[0]);
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
