/* The interface between kernels.c (dispatch and threading) and each instruction set's inner
 * loops for the packed matmuls. Private to model/.
 *
 * A MatmulRowsFn computes y[t, r] for every token t and every row r in [row_begin, row_end): one
 * thread's share. It must compute each output the same way whatever the split and whatever
 * num_tokens — that is what makes results independent of the thread count and makes a batch
 * give, token for token, the bits a single token gives. */
#ifndef GPTOSS_MODEL_KERNELS_ISA_H
#define GPTOSS_MODEL_KERNELS_ISA_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "model/kernels.h"

typedef struct {
  float *y;               /* [num_tokens, rows] */
  const void *weights;    /* bf16 [rows, cols], or MXFP4 blocks [rows, cols/32, 16] */
  const uint8_t *scales;  /* MXFP4 only: [rows, cols/32] */
  const uint16_t *bias;   /* [rows], or NULL */
  const float *x;         /* [num_tokens, cols] */
  int64_t num_tokens, rows, cols;
} MatmulArgs;

typedef void (*MatmulRowsFn)(const MatmulArgs *args, int64_t row_begin, int64_t row_end);

static inline float matmul_bias_f32(const MatmulArgs *args, int64_t r) {
  return args->bias ? bf16_to_f32(args->bias[r]) : 0.0f;
}

/* Σ w[c]·x[c] for c in [from, cols), one fmaf at a time: the tail past a SIMD kernel's last whole
 * group, the same in every ISA's bf16 kernel. */
static inline float bf16_tail(const uint16_t *w, const float *x, int64_t from, int64_t cols) {
  float tail = 0.0f;
  for (int64_t c = from; c < cols; c++) tail = fmaf(bf16_to_f32(w[c]), x[c], tail);
  return tail;
}

/* This thread's scratch buffer of at least `floats` floats: grown when a call needs more, then
 * kept, so the kernels allocate nothing per call once warm. One per thread: a caller must not
 * hold it across another kernel call. NULL if out of memory. */
float *kernel_thread_buffer(size_t floats);

/* The calling thread's second buffer, for data it prepares before a parallel region and the
 * region's threads then read (kernels_gemm.c's packed tokens). Same rules otherwise. */
float *kernel_shared_buffer(size_t floats);

/* A packed-GEMM register block (kernels_gemm.c drives it): for rows r < num_rows and lanes
 * l < token_lanes,
 *   acc[r·token_lanes + l] = fma(w[r·ldw + kc-1], xp[(kc-1)·token_lanes + l], ... fma(w[r·ldw],
 *                            xp[l], accumulate ? acc[r·token_lanes + l] : 0) ...)
 * one fused multiply-add per k in order, so an output's bits depend on nothing but its own row
 * and token: not on the ISA, the lane, the block or the rest of the batch. */
typedef void (*GemmBlockFn)(const float *xp, const float *w, int64_t ldw, int64_t kc, float *acc, int num_rows,
                            int accumulate);

typedef struct {
  int token_lanes; /* tokens side by side in registers (a multiple of the vector width) */
  int max_rows;    /* rows one call takes at most */
  GemmBlockFn block;
} GemmKernel;

/* E8M0 scale code -> fp32 bits of 2^(code - 127): code 0 is the subnormal 2^-127 and 255 is inf,
 * as ldexpf gives in the portable path. A constant expression, for the SIMD kernels' tables. */
#define MXFP4_SCALE_BITS_OF(code) ((code) ? (uint32_t)(code) << 23 : 0x00400000u)
/* MXFP4_SCALE_BITS_OF of every code (kernels.c): the SIMD kernels look a block's scale up once. */
extern const uint32_t MXFP4_SCALE_BITS[256];

#if defined(__x86_64__) || defined(__i386__)
#define GPTOSS_HAVE_AVX2_KERNELS 1
/* kernels_avx2.c: call only where the CPU has AVX2 and FMA. */
void bf16_decode_row_avx2(float *out, const uint16_t *row, int64_t cols);
void mxfp4_decode_row_avx2(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols);
void matmul_rows_f32_bf16w_avx2(const MatmulArgs *args, int64_t row_begin, int64_t row_end);
void matmul_rows_f32_mxfp4w_avx2(const MatmulArgs *args, int64_t row_begin, int64_t row_end);
extern const GemmKernel GEMM_KERNEL_AVX2;
/* kernels_avx512.c: call only where the CPU also has AVX-512F and AVX-512BW. */
void matmul_rows_f32_bf16w_avx512(const MatmulArgs *args, int64_t row_begin, int64_t row_end);
extern const GemmKernel GEMM_KERNEL_AVX512;
void mxfp4_decode_row_avx512(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols);
void matmul_rows_f32_mxfp4w_avx512(const MatmulArgs *args, int64_t row_begin, int64_t row_end);
#else
#define GPTOSS_HAVE_AVX2_KERNELS 0
#endif

#endif
