/* The interface between kernels.c and kernels_gemm.c, the batched (prefill) path: matmuls as
 * OpenBLAS matrix products on weight tiles decoded to fp32. Private to model/. */
#ifndef GPTOSS_MODEL_KERNELS_GEMM_H
#define GPTOSS_MODEL_KERNELS_GEMM_H

#include <stdint.h>

#include "model/kernels_isa.h"

/* Decodes columns [col_begin, col_begin + num_cols) of weight row `row` of a->weights to fp32,
 * exactly (col_begin a multiple of 32). */
typedef void (*DecodeTileRowFn)(const MatmulArgs *a, int64_t row, int64_t col_begin, int64_t num_cols, float *out);

/* Asks for columns [col_begin, col_begin + num_cols) of weight row `row` to be fetched into cache
 * (a hint: no effect on any result). */
typedef void (*FetchTileRowFn)(const MatmulArgs *a, int64_t row, int64_t col_begin, int64_t num_cols);

typedef struct {
  DecodeTileRowFn decode;
  FetchTileRowFn fetch;
} TileRowFns;

/* Y = X·Wᵀ (+ bias) for a batch: tiles of rows decoded with decode_row, multiplied by `kernel`'s
 * register blocks (each output one FMA chain over the columns in order: its bits depend on its
 * row and token alone), or with kernel NULL by OpenBLAS sgemm (each output computed by one thread
 * in an order fixed by the shape alone, not by the thread count). */
void matmul_gemm_f32(const MatmulArgs *a, const TileRowFns *tile_rows, const GemmKernel *kernel);

#endif
