/* Kernels for the forward pass (see kernels.h). The engine's versions decode each weight row
 * once into a small fp32 buffer and reuse it for every token of the batch, so a batch of T
 * tokens reads the packed weights once; rows are split across OpenMP threads. */
#include "model/kernels.h"

#include <math.h>
#include <stdlib.h>

const float MXFP4_VALUES[16] = {+0.0f, +0.5f, +1.0f, +1.5f, +2.0f, +3.0f, +4.0f, +6.0f,
                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float mxfp4_scale(uint8_t scale_code) { return ldexpf(1.0f, (int)scale_code - 127); }

void mxfp4_decode_row(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols) {
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

void bf16_decode_row(float *out, const uint16_t *row, int64_t cols) {
  for (int64_t c = 0; c < cols; c++) out[c] = bf16_to_f32(row[c]);
}

static float dot_f32(const float *a, const float *b, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; i++) sum += a[i] * b[i];
  return sum;
}

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

/* ---- engine versions ---- */

/* Shared shape of both packed matmuls: decode row r into `row`, dot it with every token. */
#define MATMUL_BY_DECODED_ROWS(DECODE_ROW)                                        \
  _Pragma("omp parallel") {                                                       \
    float *row = malloc((size_t)cols * sizeof *row);                              \
    _Pragma("omp for schedule(static)") for (int64_t r = 0; r < rows; r++) {      \
      DECODE_ROW;                                                                 \
      const float b = bias ? bf16_to_f32(bias[r]) : 0.0f;                         \
      for (int64_t t = 0; t < num_tokens; t++) {                                  \
        y[t * rows + r] = dot_f32(row, x + t * cols, cols) + b;                   \
      }                                                                           \
    }                                                                             \
    free(row);                                                                    \
  }

void matmul_f32_bf16w(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                      int64_t num_tokens, int64_t rows, int64_t cols) {
  MATMUL_BY_DECODED_ROWS(bf16_decode_row(row, w + r * cols, cols))
}

void matmul_f32_mxfp4w(float *y, const uint8_t *blocks, const uint8_t *scales, const uint16_t *bias,
                       const float *x, int64_t num_tokens, int64_t rows, int64_t cols) {
  const int64_t blocks_per_row = cols / MXFP4_BLOCK_ELEMS;
  MATMUL_BY_DECODED_ROWS(mxfp4_decode_row(row, blocks + r * blocks_per_row * MXFP4_BLOCK_BYTES,
                                          scales + r * blocks_per_row, cols))
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
