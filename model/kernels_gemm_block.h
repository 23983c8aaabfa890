/* The packed-GEMM register block (kernels_isa.h: GemmBlockFn), written once for every ISA: the file
 * that includes this defines the vector type and its operations, then gets GEMM_KERNEL (the name it
 * gives). Private to model/; no include guard, on purpose.
 *
 * Tokens run along the lanes, two registers of them per row, and up to GEMM_ROWS rows broadcast
 * one weight at a time: 2·GEMM_ROWS accumulators. Per k, two token loads and GEMM_ROWS broadcasts
 * feed 2·GEMM_ROWS FMAs, so the FMA units, not the loads, set the pace; each output is one FMA
 * chain in column order. (A narrow variant — one register of tokens, twice the rows — for batches
 * that leave a wide group's lanes half empty ran at half the wide one's speed per FMA on Zen 5,
 * even at 16 tokens, so there is none.)
 *
 * Expected from the includer: GEMM_FN (target attribute), GEMM_VEC (type), GEMM_VECTOR (lanes),
 * GEMM_LOAD, GEMM_STORE, GEMM_ZERO, GEMM_FMADD, GEMM_BROADCAST(const float *), GEMM_ROWS (at most
 * GEMM_MAX_ROWS) and GEMM_KERNEL. */
enum { GEMM_MAX_ROWS = 16 };
_Static_assert(GEMM_ROWS <= GEMM_MAX_ROWS, "gemm block rows");

GEMM_FN static inline __attribute__((always_inline)) void gemm_block_rows(const float *xp, const float *w, int64_t ldw,
                                                                         int64_t kc, float *acc, int accumulate,
                                                                         const int R) {
  enum { BLOCK_LANES = 2 * GEMM_VECTOR };
  GEMM_VEC c[GEMM_MAX_ROWS][2];
  for (int r = 0; r < R; r++) {
    for (int v = 0; v < 2; v++) c[r][v] = accumulate ? GEMM_LOAD(acc + r * BLOCK_LANES + v * GEMM_VECTOR) : GEMM_ZERO();
  }
  for (int64_t k = 0; k < kc; k++) {
    const GEMM_VEC x0 = GEMM_LOAD(xp + k * BLOCK_LANES), x1 = GEMM_LOAD(xp + k * BLOCK_LANES + GEMM_VECTOR);
    for (int r = 0; r < R; r++) {
      const GEMM_VEC wv = GEMM_BROADCAST(w + r * ldw + k);
      c[r][0] = GEMM_FMADD(wv, x0, c[r][0]);
      c[r][1] = GEMM_FMADD(wv, x1, c[r][1]);
    }
  }
  for (int r = 0; r < R; r++) {
    for (int v = 0; v < 2; v++) GEMM_STORE(acc + r * BLOCK_LANES + v * GEMM_VECTOR, c[r][v]);
  }
}

/* num_rows is a constant in each case, so the loops above unroll and the accumulators stay in
 * registers; cases past GEMM_ROWS are never called (kernels_gemm.c caps num_rows). */
#define GEMM_CASE(R)                                                      \
  case R:                                                                 \
    if (R <= GEMM_ROWS) gemm_block_rows(xp, w, ldw, kc, acc, accumulate, R); \
    break;

GEMM_FN static void gemm_block(const float *xp, const float *w, int64_t ldw, int64_t kc, float *acc, int num_rows,
                               int accumulate) {
  switch (num_rows) {
    GEMM_CASE(1) GEMM_CASE(2) GEMM_CASE(3) GEMM_CASE(4) GEMM_CASE(5) GEMM_CASE(6) GEMM_CASE(7) GEMM_CASE(8)
    GEMM_CASE(9) GEMM_CASE(10) GEMM_CASE(11) GEMM_CASE(12) GEMM_CASE(13) GEMM_CASE(14) GEMM_CASE(15) GEMM_CASE(16)
    default: assert(!"gemm_block: num_rows out of range");
  }
}
#undef GEMM_CASE

const GemmKernel GEMM_KERNEL = {2 * GEMM_VECTOR, GEMM_ROWS, gemm_block};
