/* The math of one forward pass on fp32 activations, with weights read in their packed form.
 *
 * Every matrix kernel has a reference version (`*_ref`: the obviously-correct loop, kept for the
 * tests) and the version the engine calls, which the dispatch in kernels.c picks once.
 * Names give the dtypes: f32 activations, bf16w / mxfp4w weights. Weights are [rows, cols]
 * row-major (y = W·x); a batch X is [num_tokens, cols] and Y is [num_tokens, rows].
 * Results are deterministic: each output element is computed by one thread in a fixed order,
 * so thread counts never change the numbers. */
#ifndef GPTOSS_MODEL_KERNELS_H
#define GPTOSS_MODEL_KERNELS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "model/config.h"

static inline float bf16_to_f32(uint16_t bits) {
  uint32_t u = (uint32_t)bits << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* MXFP4: E2M1 code -> value; the E8M0 scale multiplies by 2^(scale - 127). */
extern const float MXFP4_VALUES[16];
float mxfp4_scale(uint8_t scale_code);

/* One MXFP4 row: cols/32 blocks of 16 code bytes (element 2i = low nibble of byte i) and
 * cols/32 scale bytes. */
void mxfp4_decode_row(float *out, const uint8_t *blocks, const uint8_t *scales, int64_t cols);
void bf16_decode_row(float *out, const uint16_t *row, int64_t cols);

/* Batches of at least this many tokens run as matrix products on decoded weight tiles (OpenBLAS
 * sgemm); smaller ones, and single tokens, stream the packed rows. The two add in different
 * orders, both within the tests' tolerance of the reference. */
#define MATMUL_GEMM_MIN_TOKENS 8

/* Y = X·Wᵀ (+ bias when bias != NULL). */
void matmul_f32_bf16w(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                      int64_t num_tokens, int64_t rows, int64_t cols);
void matmul_f32_bf16w_ref(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                          int64_t num_tokens, int64_t rows, int64_t cols);
void matmul_f32_mxfp4w(float *y, const uint8_t *blocks, const uint8_t *scales, const uint16_t *bias,
                       const float *x, int64_t num_tokens, int64_t rows, int64_t cols);
/* The same products, always row by row whatever num_tokens: each weight row is decoded once and
 * dotted with every token in the order a single token uses, so a token's result never depends on
 * the other tokens of the batch (batched decode relies on this; matmul_* switch to sgemm, whose
 * order depends on the batch, from MATMUL_GEMM_MIN_TOKENS tokens on). */
void matmul_f32_bf16w_stream(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                             int64_t num_tokens, int64_t rows, int64_t cols);
void matmul_f32_mxfp4w_stream(float *y, const uint8_t *blocks, const uint8_t *scales, const uint16_t *bias,
                              const float *x, int64_t num_tokens, int64_t rows, int64_t cols);
/* One product of a list for matmul_f32_bf16w_stream_list: y[num_tokens, rows] = x·wᵀ (+ bias). */
typedef struct {
  float *y;
  const uint16_t *w, *bias;
  const float *x;
  int64_t rows, cols;
} Bf16Product;

/* matmul_f32_bf16w_stream of every product, num_tokens tokens each, in one parallel region: the
 * threads split the products' rows between them as if they were one matrix, so a rank's many small
 * products (q, k, v or o of each of its attention shards) pay one fork and join and start from
 * DRAM once, not once each. Each output gets the bits one call per product gives. */
void matmul_f32_bf16w_stream_list(const Bf16Product *products, int64_t count, int64_t num_tokens);
void matmul_f32_mxfp4w_ref(float *y, const uint8_t *blocks, const uint8_t *scales,
                           const uint16_t *bias, const float *x, int64_t num_tokens, int64_t rows,
                           int64_t cols);

/* The same product with the portable inner loop whatever the CPU: the same bits on every node.
 * For replicated computations that must agree across ranks (the router: every rank must pick
 * the same experts, even on a cluster whose nodes pick different instruction sets). */
void matmul_f32_bf16w_portable(float *y, const uint16_t *w, const uint16_t *bias, const float *x,
                               int64_t num_tokens, int64_t rows, int64_t cols);

/* The instruction set the decode/matmul inner loops use. The best one the CPU supports is picked
 * at first use; every ISA stays within the tests' tolerance of the *_ref versions and is
 * deterministic, but different ISAs sum in different orders, so ranks that must agree bitwise
 * must run the same one. */
typedef enum { KERNEL_ISA_PORTABLE, KERNEL_ISA_AVX2, KERNEL_ISA_AVX512, KERNEL_ISA_COUNT } KernelIsa;

KernelIsa kernels_active_isa(void);
const char *kernels_isa_name(KernelIsa isa);
/* Forces an ISA (tests, benchmarks; not while a matmul runs). False if this CPU lacks it. */
bool kernels_select_isa(KernelIsa isa);

/* Attention of n consecutive query positions, each with num_heads heads sharing one KV head, as
 * matrix products (prefill). keys/values: [first_query_key + n, head_dim] in position order, key
 * first_query_key + i being query i's own position. q and out: [n, num_heads, head_dim]. Query
 * i sees keys up to its own, the last `window` of them (0: all). Scores are scaled by
 * 1/sqrt(head_dim); each head's sink logit (bf16) joins the softmax and its weight is dropped. */
void attention_chunk_f32(float *out, const float *q, const float *keys, const float *values, const uint16_t *sinks,
                         int64_t n, int64_t num_heads, int64_t head_dim, int64_t first_query_key, int64_t window);

/* out = x / sqrt(mean(x²) + eps) · weight, for each of num_tokens rows of n. */
void rmsnorm_f32_bf16w(float *out, const float *x, const uint16_t *weight, int64_t num_tokens,
                       int64_t n, float eps);

/* GPT-OSS SwiGLU on interleaved gate/up pairs: u[2j] = gate j, u[2j+1] = up j.
 * out[j] = min(gate, limit)·σ(1.702·min(gate, limit))·(clamp(up, ±limit) + 1). */
void swiglu_interleaved(float *out, const float *u, int64_t num_pairs, float limit);

/* swiglu_interleaved for `rows` rows (out: [rows, num_pairs], u: [rows, 2·num_pairs]); rows go to
 * threads when there are enough of them (the same bits either way: each element alone). */
void swiglu_rows(float *out, const float *u, int64_t rows, int64_t num_pairs, float limit);

/* dst[i] = src[index[i]] for i < n, rows of `width` floats (threads as above). */
void gather_rows(float *dst, const float *src, const int32_t *index, int64_t n, int64_t width);

/* dst[index[i]] += weight[i] · src[i] for i < n, rows of `width` floats; the index rows must be
 * distinct (threads as above: each dst row has one writer). */
void add_weighted_rows(float *dst, const int32_t *index, const float *weight, const float *src, int64_t n,
                       int64_t width);

/* Indices of the k largest values (descending; ties: lowest index), softmax over those k. */
void topk_softmax(const float *logits, int64_t n, int64_t k, int32_t *index_out, float *weight_out);

/* Index of the largest value, lowest index on ties. */
int64_t argmax_f32(const float *x, int64_t n);

#endif
