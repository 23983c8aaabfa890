/* The batched (prefill) kernels, as OpenBLAS matrix products: the packed matmuls on weight tiles
 * decoded to fp32 (kernels.c sends batches of MATMUL_GEMM_MIN_TOKENS or more here), and the
 * attention of a chunk of queries (attention_chunk_f32). Runs on every rank; OpenMP threads each
 * take whole work items and OpenBLAS runs single-threaded inside them. Single tokens (decode
 * matmuls) never come here: they stream the packed rows (kernels.c, kernels_avx2.c).
 *
 * Measured with tests/bench_kernels --batch (2 threads, best of 9, two runs; 2-core AVX-512 VM,
 * OpenBLAS 0.3.21), as a fraction of one plain sgemm of the same shape on fp32 weights with
 * OpenBLAS on 2 threads — the compute bound:
 *   shape (tokens x rows x cols)   before (64-row tiles, static   now
 *                                  split, portable MXFP4 decode)
 *   bf16  q        512 x 512x2880  0.72-0.76                       0.82-0.86
 *   bf16  k, v     512 x 64x2880   0.26-0.61 (one tile: 1 thread)  1.12-1.16
 *   bf16  o_proj   512 x 2880x512  0.74-0.75                       0.84-0.88
 *   mxfp4 gate_up   64 x 5760x2880 0.62-0.65                       0.80-0.89
 *   mxfp4 down      64 x 2880x2880 0.62-0.63                       0.77-0.81
 *   attention, 512 queries x 8 heads: causal from 0: 5.0 -> 2.2 ms (plain QKᵀ and PV over all
 *   keys: 2.6 ms); after 3584 cached keys: 48-51 -> 28 ms (plain: 22 ms).
 * (The MXFP4 gain needs kernels_avx2.c's natural-order decode; with the portable one the tiles
 * spend as long decoding as multiplying.)
 * Threads: OpenMP over tiles with OpenBLAS on one thread ran 2x faster than tiles one after
 * another with OpenBLAS on 2 threads (64 x 5760x2880: 191 vs 96 GFLOP/s; 512 x 512x2880: 281 vs
 * 142) — OpenBLAS does not split products this small well — and the fixed items keep results
 * independent of the thread count. A hand-written AVX2 kernel would top out at half the FMA rate
 * of OpenBLAS's AVX-512 sgemm on this CPU. */
#include "model/kernels_gemm.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS must not start threads of its own inside ours. Weak: another BLAS may not have it. */
extern void openblas_set_num_threads(int num_threads) __attribute__((weak));

static void blas_single_threaded(void) {
  static atomic_flag configured = ATOMIC_FLAG_INIT;
  if (!atomic_flag_test_and_set(&configured) && openblas_set_num_threads) openblas_set_num_threads(1);
}

/* ---- matmuls on decoded tiles ---- */

/* A tile holds about GEMM_TILE_FLOATS decoded weights (1.5 MB, inside this CPU's 2 MB L2 while
 * sgemm packs it; 128 rows of 2880), at most GEMM_MAX_TILE_ROWS rows. sgemm repacks the tokens'
 * X for every tile, so small tiles lose (one thread, 512 x 512x2880: 64-row tiles 129 GFLOP/s,
 * 128 rows 147, plain sgemm 172; o_proj's 512 columns want 512-row tiles). Larger ones would
 * leave too few tiles for many threads. Tokens go in blocks of GEMM_TOKEN_BLOCK so that a matrix
 * of one tile (k and v: 64 rows) still spreads over the threads. */
enum { GEMM_TILE_FLOATS = 384 * 1024, GEMM_MIN_TILE_ROWS = 16, GEMM_MAX_TILE_ROWS = 512, GEMM_TOKEN_BLOCK = 256 };

static int64_t gemm_tile_rows(int64_t rows, int64_t cols) {
  int64_t tile = GEMM_TILE_FLOATS / cols / GEMM_MIN_TILE_ROWS * GEMM_MIN_TILE_ROWS;
  if (tile < GEMM_MIN_TILE_ROWS) tile = GEMM_MIN_TILE_ROWS;
  if (tile > GEMM_MAX_TILE_ROWS) tile = GEMM_MAX_TILE_ROWS;
  return tile < rows ? tile : rows;
}

static int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Y[tokens, first_row .. first_row+n) = X[tokens] · tileᵀ (+ bias). */
static void gemm_tile_f32(const MatmulArgs *a, const float *tile, int64_t first_row, int64_t n, int64_t first_token,
                          int64_t num_tokens) {
  float *y = a->y + first_token * a->rows + first_row;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)num_tokens, (int)n, (int)a->cols, 1.0f,
              a->x + first_token * a->cols, (int)a->cols, tile, (int)a->cols, 0.0f, y, (int)a->rows);
  if (!a->bias) return;
  for (int64_t t = 0; t < num_tokens; t++) {
    for (int64_t r = 0; r < n; r++) y[t * a->rows + r] += matmul_bias_f32(a, first_row + r);
  }
}

typedef struct {
  int64_t tile_rows, num_tiles, num_blocks;
} GemmItems;

/* Work item `item`: row tile item / num_blocks against token block item % num_blocks. A thread
 * that takes consecutive items of one tile decodes it once. */
static void gemm_item_f32(const MatmulArgs *a, DecodeTileRowFn decode_row, const GemmItems *g, int64_t item,
                          float *tile, int64_t *decoded_tile) {
  const int64_t i = item / g->num_blocks, first_row = i * g->tile_rows, n = min_i64(g->tile_rows, a->rows - first_row);
  const int64_t first_token = (item % g->num_blocks) * GEMM_TOKEN_BLOCK;
  if (*decoded_tile != i) {
    for (int64_t r = 0; r < n; r++) decode_row(a, first_row + r, tile + r * a->cols);
    *decoded_tile = i;
  }
  gemm_tile_f32(a, tile, first_row, n, first_token, min_i64(GEMM_TOKEN_BLOCK, a->num_tokens - first_token));
}

/* Items have sizes fixed by the shape, and whichever thread takes one computes all of it the same
 * way, so how they are shared changes no result. They are taken dynamically (the ragged last tile
 * and a busy core even out) unless there are too few to go round: then a thread that wakes late
 * would find none left, and a static split is faster (k and v: 2 items). */
enum { GEMM_DYNAMIC_ITEMS_PER_THREAD = 4 };

void matmul_gemm_f32(const MatmulArgs *a, DecodeTileRowFn decode_row) {
  blas_single_threaded();
  GemmItems g = {.tile_rows = gemm_tile_rows(a->rows, a->cols)};
  g.num_tiles = (a->rows + g.tile_rows - 1) / g.tile_rows;
  g.num_blocks = (a->num_tokens + GEMM_TOKEN_BLOCK - 1) / GEMM_TOKEN_BLOCK;
  const int64_t num_items = g.num_tiles * g.num_blocks;
  const bool dynamic = num_items >= GEMM_DYNAMIC_ITEMS_PER_THREAD * omp_get_max_threads();
#pragma omp parallel
  {
    float *tile = kernel_thread_buffer((size_t)(g.tile_rows * a->cols));
    assert(tile);
    int64_t decoded_tile = -1;
    if (dynamic) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < num_items; item++) gemm_item_f32(a, decode_row, &g, item, tile, &decoded_tile);
    } else {
#pragma omp for schedule(static)
      for (int64_t item = 0; item < num_items; item++) gemm_item_f32(a, decode_row, &g, item, tile, &decoded_tile);
    }
  }
}

/* ---- attention for a chunk of queries ---- */

/* e^x for x <= 0 (scores less their max), within 2 ulps of expf (measured: 1.3), and 0 below -87
 * where e^x leaves fp32's normal range. Plain arithmetic, so the loop calling it vectorises — a
 * loop of expf calls does not, and was half the time of long-context attention. x = n·ln2 + r
 * with |r| <= ln2/2 (ln2 in two parts, the first exact in few bits, so n·ln2 loses nothing);
 * e^r by Cephes' expf polynomial; 2^n from its exponent bits. */
static inline float exp_nonpositive_f32(float x) {
  const float clamped = x < -87.0f ? -87.0f : x, round_shift = 12582912.0f; /* 1.5·2^23 */
  const float n = (clamped * 1.44269504088896341f + round_shift) - round_shift;
  const float r = (clamped - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const union { uint32_t bits; float value; } two_to_n = {.bits = (uint32_t)((int32_t)n + 127) << 23};
  return x < -87.0f ? 0.0f : (p * r * r + r + 1.0f) * two_to_n.value;
}

enum { SUM_LANES = 8 };

/* Σ x in SUM_LANES interleaved partial sums: vectorisable, and a fixed order. (A max needs no
 * such care: any order gives the same max.) */
static float sum_f32(const float *x, int64_t n) {
  float lanes[SUM_LANES] = {0};
  int64_t i = 0;
  for (; i + SUM_LANES <= n; i += SUM_LANES) {
    for (int l = 0; l < SUM_LANES; l++) lanes[l] += x[i + l];
  }
  for (; i < n; i++) lanes[0] += x[i];
  float sum = 0.0f;
  for (int l = 0; l < SUM_LANES; l++) sum += lanes[l];
  return sum;
}

/* Softmax numerators of one row of scores over the visible keys [first, last], with the head's
 * sink logit in the max and the denominator (its weight is dropped: the sink has no value).
 * Entries outside are zeroed, so the PV product over the block's full width ignores them.
 * Returns 1/denominator: the caller scales the output row once instead of every weight. */
static float softmax_numerators_with_sink(float *row, int64_t width, int64_t first, int64_t last, float sink) {
  float max_score = sink;
#pragma omp simd reduction(max : max_score)
  for (int64_t j = first; j <= last; j++) max_score = row[j] > max_score ? row[j] : max_score;
#pragma omp simd
  for (int64_t j = first; j <= last; j++) row[j] = exp_nonpositive_f32(row[j] - max_score);
  const float denom = sum_f32(row + first, last - first + 1) + expf(sink - max_score);
  memset(row, 0, (size_t)first * sizeof *row);
  memset(row + last + 1, 0, (size_t)(width - last - 1) * sizeof *row);
  return 1.0f / denom;
}

enum { ATTENTION_QUERY_BLOCK = 32 };

typedef struct {
  float *out;
  const float *q, *keys, *values;
  const uint16_t *sinks;
  int64_t n, num_heads, head_dim, first_query_key, window;
} AttentionChunk;

/* Queries [i0, i0 + len) against the keys any of them sees, from the first query's window start
 * to the last query: scores = scale·Q·Kᵀ, softmax numerators, out = P·V, rows scaled by 1/denom. */
static void attention_block_f32(const AttentionChunk *c, int64_t i0, int64_t len, float *scores, float *inv_denom) {
  const int64_t G = c->num_heads, D = c->head_dim, q0 = c->first_query_key + i0;
  const int64_t block_lo = c->window && q0 - c->window + 1 > 0 ? q0 - c->window + 1 : 0, width = q0 + len - block_lo;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(len * G), (int)width, (int)D, 1.0f / sqrtf((float)D),
              c->q + i0 * G * D, (int)D, c->keys + block_lo * D, (int)D, 0.0f, scores, (int)width);
  for (int64_t i = 0; i < len; i++) {
    const int64_t key = q0 + i; /* the query's own position among the keys */
    const int64_t first = (c->window && key - c->window + 1 > 0 ? key - c->window + 1 : 0) - block_lo;
    for (int64_t g = 0; g < G; g++) {
      inv_denom[i * G + g] = softmax_numerators_with_sink(scores + (i * G + g) * width, width, first, key - block_lo,
                                                          bf16_to_f32(c->sinks[g]));
    }
  }
  float *out = c->out + i0 * G * D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(len * G), (int)D, (int)width, 1.0f, scores, (int)width,
              c->values + block_lo * D, (int)D, 0.0f, out, (int)D);
  for (int64_t row = 0; row < len * G; row++) {
    for (int64_t d = 0; d < D; d++) out[row * D + d] *= inv_denom[row];
  }
}

/* Query blocks are independent; later ones see more keys (causal), so they are handed out
 * last-first to keep the threads' shares even. One block (a decoded token) runs on the calling
 * thread. */
void attention_chunk_f32(float *out, const float *q, const float *keys, const float *values, const uint16_t *sinks,
                         int64_t n, int64_t num_heads, int64_t head_dim, int64_t first_query_key, int64_t window) {
  const AttentionChunk c = {out, q, keys, values, sinks, n, num_heads, head_dim, first_query_key, window};
  const int64_t num_blocks = (n + ATTENTION_QUERY_BLOCK - 1) / ATTENTION_QUERY_BLOCK, num_keys = first_query_key + n;
  const int64_t block_rows = min_i64(n, ATTENTION_QUERY_BLOCK) * num_heads;
  const int64_t max_width = window ? min_i64(num_keys, window + ATTENTION_QUERY_BLOCK - 1) : num_keys;
  blas_single_threaded();
#pragma omp parallel if (num_blocks > 1)
  {
    float *scores = kernel_thread_buffer((size_t)(block_rows * (max_width + 1)));
    assert(scores);
    float *inv_denom = scores + block_rows * max_width;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = num_blocks - 1; b >= 0; b--) {
      const int64_t i0 = b * ATTENTION_QUERY_BLOCK;
      attention_block_f32(&c, i0, min_i64(ATTENTION_QUERY_BLOCK, n - i0), scores, inv_denom);
    }
  }
}
