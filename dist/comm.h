/* The MPI layer: rank identity, agreeing on errors, the shard reduction and the few
 * collectives the engine uses. The only place (with engine.c) that includes mpi.h. */
#ifndef GPTOSS_DIST_COMM_H
#define GPTOSS_DIST_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/forward.h"
#include "model/status.h"

typedef struct {
  int rank;
  int num_ranks;
} RankInfo;

Status dist_init(int *argc, char ***argv, RankInfo *out);
void dist_finalize(void);
/* Ends every rank of the job at once (an unrecoverable error mid-run). */
void dist_abort(int exit_code);

/* Every rank passes its local status; all get the same answer: OK when all were OK, the local
 * status where it failed, and STATUS_REMOTE_ERROR on ranks that were fine while another was not.
 * The failing rank has already printed why. */
Status dist_agree(Status local);

Status dist_bcast(void *buf, size_t num_bytes, int root);
/* The same for a small message (< 2 GiB) the receivers may wait long for — the engine's next
 * command, while rank 0 waits on a user or an idle server: they do not hold a core meanwhile.
 * Every rank of one broadcast must call this one (a non-blocking broadcast underneath). */
Status dist_bcast_idle(void *buf, size_t num_bytes, int root);

/* A ShardReducer over MPI. Where this rank's shards form a node of the shard tree (always when
 * S is a power of two), each rank first adds its own shards in the tree's shape and contributes
 * one vector; otherwise it contributes every shard's partial. The tree is then finished in the
 * same order everywhere: all ranks get bitwise the same sum, and the same sum for any rank count.
 *
 * Two exchanges give that sum. Short vectors (decode) are allgathered whole and every rank
 * finishes the tree on all of it: one collective, latency-bound. Long ones (prefill) are
 * reduce-scattered: rank j receives piece j (plan_split of the n elements over the ranks) of
 * every contribution, finishes the tree on that piece, and the summed pieces are allgathered —
 * a rank sends 2(N - 1)/N·n floats instead of (N - 1)·n (one vector each). The tree adds
 * element by element, so a piece summed alone has the bits it has inside the whole vector. */
typedef struct {
  int64_t num_shards;
  int64_t num_local_shards;
  bool pre_reduce;          /* rank blocks are tree nodes: one vector per rank */
  int64_t max_floats;
  int num_ranks;
  int rank;
  int64_t reduce_scatter_min_floats; /* n from which the reduce-scatter exchange is used */
  float *gathered;          /* [num_shards, max_floats]: the allgathered vectors, or the pieces received */
  float *packed;            /* [num_local_shards, max_floats], by destination; only without pre_reduce */
  int *send_counts, *send_displs, *recv_counts, *recv_displs; /* [num_ranks] each, for MPI_Alltoallv */
  int *piece_counts, *piece_displs;                            /* [num_ranks] each: plan_split of n */
  uint64_t bytes_sent;      /* the floats this rank sent to other ranks, in bytes */
} DistReducer;

/* The threshold's default, and the variable that overrides it (0: always reduce-scatter).
 * Measured with tests/bench_reduce (2-core EPYC, shared memory, 2 and 8 ranks, two runs): at 2880
 * and 5760 floats (one and two decode rows of 20b) the allgather is 1.2-1.5x faster at both rank
 * counts — the reduce-scatter's two collectives cost more than its bytes save; the crossover
 * moved between 11.5k and 35k floats from run to run; from 35k on the reduce-scatter won at both
 * (1.0-1.5x at 2 ranks, 1.1-3.1x at 8, growing with n). 2^15 keeps decode steps of up to 11 rows
 * on the one-collective path. On a real network, rerun bench_reduce to choose again. */
#define DIST_REDUCE_SCATTER_MIN_FLOATS 32768
#define DIST_REDUCE_SCATTER_ENV "GPTOSS_REDUCE_SCATTER_MIN_FLOATS"

/* Local: allocates and reads DIST_REDUCE_SCATTER_ENV. Then dist_reducer_agree, collectively,
 * before the first reduction. */
Status dist_reducer_init(DistReducer *r, int64_t num_shards, int64_t num_local_shards, int64_t max_floats);
/* Every rank takes rank 0's threshold: another node's environment may differ, and ranks that
 * chose different exchanges would wait on each other forever. */
Status dist_reducer_agree(DistReducer *r);
void dist_reducer_free(DistReducer *r);
ShardReducer dist_reducer_as_shard_reducer(DistReducer *r);

/* Rank 0 receives every rank's block of num_rows rows (rank r's rows are local_cols[r] wide)
 * laid side by side: out is [num_rows, Σ local_cols]. Other ranks pass out = NULL. */
Status dist_gather_columns(const float *local, int64_t num_rows, int64_t local_cols, float *out, int64_t total_cols);

/* The global (value, index) maximum: lowest index on ties, the same answer on every rank. */
Status dist_argmax(float local_value, int64_t local_index, int64_t *index_out);

/* dist_argmax for n rows at once, in one collective. */
Status dist_argmax_rows(const float *local_values, const int64_t *local_indices, int64_t n, int64_t *indices_out);

/* Element-wise maximum over ranks of n int32 values, in place. */
Status dist_max_i32(int32_t *values, int64_t n);

/* Every rank contributes `bytes_each` bytes (the same count everywhere); out receives them all,
 * in rank order. */
Status dist_allgather_bytes(const void *local, size_t bytes_each, void *out);

/* Rank 0 receives every rank's `num_bytes` bytes (counts may differ), concatenated in rank
 * order, in a new buffer (*out_root, *total_root); other ranks get NULL / 0. */
Status dist_gather_bytes(const void *local, size_t num_bytes, void **out_root, size_t *total_root);

/* Whether `value` is the same on every rank. */
Status dist_all_equal_u64(uint64_t value, bool *equal_out);

double dist_time(void);

#endif
