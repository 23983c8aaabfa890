/* The batched (prefill) kernels: the packed matmuls on weight tiles decoded to fp32 (kernels.c
 * sends batches of MATMUL_GEMM_MIN_TOKENS or more here), and the attention of a chunk of queries
 * (attention_chunk_f32, OpenBLAS sgemm). Runs on every rank; OpenMP threads each take whole work
 * items and OpenBLAS runs single-threaded inside them. Single tokens (decode matmuls) never come
 * here: they stream the packed rows (kernels.c, kernels_avx2.c).
 *
 * The matmuls run in our own register blocks (kernels_gemm_block.h) on the AVX2 and AVX-512
 * kernels, and as OpenBLAS sgemm on decoded tiles with the portable ones. Why our own: OpenBLAS
 * 0.3.21 runs its AVX2 ("Haswell") sgemm on CPUs it does not know (Zen 5: AMD family 26) and
 * repacks each tile's weights and tokens per call; and its summation order is its own. Ours packs
 * the tokens once per call, decodes the weights one 256-column slice at a time into L2, and gives
 * every output one FMA chain in column order — the same bits on either ISA, whatever the batch.
 * Measured with tests/bench_kernels --batch --threads 1 (AMD EPYC Zen 5, 2-core VM, best of 9,
 * two runs), against one plain OpenBLAS sgemm of the same shape on fp32 weights:
 *   shape (tokens x rows x cols)   GFLOP/s, one thread         x plain sgemm
 *   bf16  q        512 x 512x2880  167-180                      1.59-1.66
 *   mxfp4 gate_up   64 x 5760x2880 169-174 (OpenBLAS tiles: ~90) 1.89-1.95
 *   mxfp4 down      64 x 2880x2880 174-190                      1.97-2.02
 *   mxfp4 gate_up   16 x 5760x2880 71-74                        1.36-1.45
 * The MXFP4 tiles are decoded with AVX-512 where there is AVX-512 (a third of AVX2's instructions:
 * 150 -> 170 GFLOP/s at 64 tokens). In the engine, fetching each tile's next slice ahead (its bytes
 * are scattered over the tile's rows, too little per row for the hardware prefetcher) cut the
 * decode's share of a 512-token prefill from 18 % to 10 %. At 48 tokens a call runs 124 GFLOP/s,
 * at 16 tokens 71: a group's empty lanes cost as much as full ones.
 *
 * Earlier, with OpenBLAS on every ISA (2 threads, 2-core AVX-512 Intel VM), as a fraction of plain
 * sgemm: q 0.82-0.86, k/v 1.12-1.16, o_proj 0.84-0.88, gate_up (64 tokens) 0.80-0.89, down
 * 0.77-0.81.
 *   attention, 512 queries x 8 heads: causal from 0: 5.0 -> 2.2 ms (plain QKᵀ and PV over all
 *   keys: 2.6 ms); after 3584 cached keys: 48-51 -> 28 ms (plain: 22 ms).
 * Threads: OpenMP over tiles with OpenBLAS on one thread ran 2x faster than tiles one after
 * another with OpenBLAS on 2 threads (64 x 5760x2880: 191 vs 96 GFLOP/s; 512 x 512x2880: 281 vs
 * 142) — OpenBLAS does not split products this small well — and the fixed items keep results
 * independent of the thread count. */
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
    for (int64_t r = 0; r < n; r++) decode_row(a, first_row + r, 0, a->cols, tile + r * a->cols);
    *decoded_tile = i;
  }
  gemm_tile_f32(a, tile, first_row, n, first_token, min_i64(GEMM_TOKEN_BLOCK, a->num_tokens - first_token));
}

/* Items have sizes fixed by the shape, and whichever thread takes one computes all of it the same
 * way, so how they are shared changes no result. They are taken dynamically (the ragged last tile
 * and a busy core even out) unless there are too few to go round: then a thread that wakes late
 * would find none left, and a static split is faster (k and v: 2 items). */
enum { GEMM_DYNAMIC_ITEMS_PER_THREAD = 4 };

static bool gemm_items_dynamic(int64_t num_items) {
  return num_items >= GEMM_DYNAMIC_ITEMS_PER_THREAD * omp_get_max_threads();
}

static void matmul_sgemm_f32(const MatmulArgs *a, DecodeTileRowFn decode_row) {
  blas_single_threaded();
  GemmItems g = {.tile_rows = gemm_tile_rows(a->rows, a->cols)};
  g.num_tiles = (a->rows + g.tile_rows - 1) / g.tile_rows;
  g.num_blocks = (a->num_tokens + GEMM_TOKEN_BLOCK - 1) / GEMM_TOKEN_BLOCK;
  const int64_t num_items = g.num_tiles * g.num_blocks;
  const bool dynamic = gemm_items_dynamic(num_items);
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

/* ---- matmuls in our own register blocks ----
 * The tokens are packed once per call, in groups of the kernel's token_lanes: group g holds
 * xp[g][c][l] = x[g·lanes + l][c] (zero past the last token), so a block reads one contiguous
 * vector of tokens per column. A work item is a tile of rows against a block of GEMM_TOKEN_BLOCK
 * tokens; it goes along the columns in slices of PACKED_COLS: decodes the slice of its rows
 * (PACKED_TILE_ROWS x PACKED_COLS fp32, in L2) and asks for the next slice's packed bytes, then
 * runs every token group against it, the group's
 * slice (PACKED_COLS x lanes, in L1) reused by all the tile's rows. The accumulators go to memory
 * between slices, so every output stays one FMA chain in column order. */
enum { PACKED_COLS = 256, PACKED_TILE_BLOCKS = 8 };

typedef struct {
  const MatmulArgs *a;
  const TileRowFns *tile_rows_fns;
  const GemmKernel *kernel;
  float *xp;                       /* [num_groups, cols, lanes] */
  int64_t num_groups, tile_rows, num_tiles, groups_per_block, num_blocks;
} PackedGemm;

static void pack_token_group(const PackedGemm *g, int64_t group) {
  const MatmulArgs *a = g->a;
  const int64_t lanes = g->kernel->token_lanes, first = group * lanes, n = min_i64(lanes, a->num_tokens - first);
  float *xp = g->xp + group * a->cols * lanes;
  for (int64_t c0 = 0; c0 < a->cols; c0 += 16) {
    const int64_t c1 = min_i64(c0 + 16, a->cols);
    for (int64_t l = 0; l < lanes; l++) {
      const float *x = a->x + (first + l) * a->cols;
      for (int64_t c = c0; c < c1; c++) xp[c * lanes + l] = l < n ? x[c] : 0.0f;
    }
  }
}

/* acc[(group · tile rows + r) · lanes + l]: row first_row + r against token (first group + group)
 * · lanes + l, plus the bias, into y. */
static void store_packed_tile(const PackedGemm *g, const float *acc, int64_t first_row, int64_t n, int64_t first_group,
                              int64_t num_groups) {
  const MatmulArgs *a = g->a;
  const int64_t lanes = g->kernel->token_lanes;
  for (int64_t group = 0; group < num_groups; group++) {
    for (int64_t l = 0; l < lanes; l++) {
      const int64_t t = (first_group + group) * lanes + l;
      if (t >= a->num_tokens) break;
      float *y = a->y + t * a->rows + first_row;
      for (int64_t r = 0; r < n; r++) y[r] = acc[(group * n + r) * lanes + l] + matmul_bias_f32(a, first_row + r);
    }
  }
}

static void packed_item(const PackedGemm *g, int64_t item, float *tile, float *acc) {
  const MatmulArgs *a = g->a;
  const GemmKernel *k = g->kernel;
  const int64_t first_row = item / g->num_blocks * g->tile_rows, n = min_i64(g->tile_rows, a->rows - first_row);
  const int64_t first_group = item % g->num_blocks * g->groups_per_block;
  const int64_t num_groups = min_i64(g->groups_per_block, g->num_groups - first_group);
  for (int64_t c0 = 0; c0 < a->cols; c0 += PACKED_COLS) {
    const int64_t width = min_i64(PACKED_COLS, a->cols - c0);
    for (int64_t r = 0; r < n; r++) g->tile_rows_fns->decode(a, first_row + r, c0, width, tile + r * width);
    /* The rows' next slice is scattered over n rows, too few bytes each for the hardware
     * prefetcher to see a stream: ask for it while this slice is multiplied. */
    const int64_t next = c0 + PACKED_COLS, next_width = min_i64(PACKED_COLS, a->cols - next);
    for (int64_t r = 0; next < a->cols && r < n; r++) g->tile_rows_fns->fetch(a, first_row + r, next, next_width);
    for (int64_t group = 0; group < num_groups; group++) {
      const float *xp = g->xp + (first_group + group) * a->cols * k->token_lanes + c0 * k->token_lanes;
      for (int64_t r = 0; r < n; r += k->max_rows) {
        k->block(xp, tile + r * width, width, width, acc + (group * n + r) * k->token_lanes,
                 (int)min_i64(k->max_rows, n - r), c0 > 0);
      }
    }
  }
  store_packed_tile(g, acc, first_row, n, first_group, num_groups);
}

static void matmul_packed_f32(const MatmulArgs *a, const TileRowFns *tile_rows, const GemmKernel *kernel) {
  const int64_t lanes = kernel->token_lanes;
  PackedGemm g = {.a = a, .tile_rows_fns = tile_rows, .kernel = kernel};
  g.num_groups = (a->num_tokens + lanes - 1) / lanes;
  g.tile_rows = min_i64(a->rows, (int64_t)kernel->max_rows * PACKED_TILE_BLOCKS);
  g.num_tiles = (a->rows + g.tile_rows - 1) / g.tile_rows;
  g.groups_per_block = GEMM_TOKEN_BLOCK / lanes;
  g.num_blocks = (g.num_groups + g.groups_per_block - 1) / g.groups_per_block;
  g.xp = kernel_shared_buffer((size_t)(g.num_groups * a->cols * lanes));
  assert(g.xp);
  const int64_t num_items = g.num_tiles * g.num_blocks;
  const bool dynamic = gemm_items_dynamic(num_items);
#pragma omp parallel
  {
    float *tile = kernel_thread_buffer((size_t)(g.tile_rows * (PACKED_COLS + g.groups_per_block * lanes)));
    assert(tile);
    float *acc = tile + g.tile_rows * PACKED_COLS;
#pragma omp for schedule(static)
    for (int64_t group = 0; group < g.num_groups; group++) pack_token_group(&g, group);
    if (dynamic) {
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < num_items; item++) packed_item(&g, item, tile, acc);
    } else {
#pragma omp for schedule(static)
      for (int64_t item = 0; item < num_items; item++) packed_item(&g, item, tile, acc);
    }
  }
}

void matmul_gemm_f32(const MatmulArgs *a, const TileRowFns *tile_rows, const GemmKernel *kernel) {
  if (kernel) matmul_packed_f32(a, tile_rows, kernel);
  else matmul_sgemm_f32(a, tile_rows->decode);
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
