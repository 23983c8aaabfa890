/* The interface between kernels.c and kernels_gemm.c, the batched (prefill) path: matmuls as
 * OpenBLAS matrix products on weight tiles decoded to fp32. Private to model/. */
#ifndef GPTOSS_MODEL_KERNELS_GEMM_H
#define GPTOSS_MODEL_KERNELS_GEMM_H

#include <stdint.h>

#include "model/kernels_isa.h"

/* Decodes weight row `row` of a->weights (all a->cols of it) to fp32, exactly. */
typedef void (*DecodeTileRowFn)(const MatmulArgs *a, int64_t row, float *out);

/* Y = X·Wᵀ (+ bias) for a batch: tiles of rows decoded with decode_row, then sgemm. Each output
 * element is computed by one thread in an order fixed by the shape alone, not by the thread
 * count. */
void matmul_gemm_f32(const MatmulArgs *a, DecodeTileRowFn decode_row);

#endif
