/* MPI collectives for the engine (see comm.h). Runs on every rank. */
#include "dist/comm.h"

#include "dist/node.h"
#include "dist/placement.h"
#include "model/plan.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

Status dist_init(int *argc, char ***argv, RankInfo *out) {
  int provided = 0;
  placement_prepare_mpi_env();
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    return status_error(STATUS_IO_ERROR, "MPI_Init failed");
  }
  /* Errors come back as codes, so a failed call becomes a message instead of a silent abort. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &out->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &out->num_ranks);
  if (out->num_ranks > 1) status_set_rank(out->rank);
  return STATUS_OK;
}

void dist_finalize(void) {
  dist_node_comm_free();
  MPI_Finalize();
}

void dist_abort(int exit_code) { MPI_Abort(MPI_COMM_WORLD, exit_code); }

Status dist_agree(Status local) {
  int mine = local == STATUS_OK ? 0 : 1, any = 0;
  if (MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Allreduce failed while agreeing on errors");
  }
  if (!any) return STATUS_OK;
  return local != STATUS_OK ? local : STATUS_REMOTE_ERROR;
}

Status dist_bcast(void *buf, size_t num_bytes, int root) {
  char *p = buf;
  while (num_bytes > 0) {
    const int piece = num_bytes > (size_t)INT_MAX ? INT_MAX : (int)num_bytes;
    if (MPI_Bcast(p, piece, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS) {
      return status_error(STATUS_REMOTE_ERROR, "MPI_Bcast of %zu bytes failed", num_bytes);
    }
    p += piece;
    num_bytes -= (size_t)piece;
  }
  return STATUS_OK;
}

/* A receiver polls the broadcast: busily for the first SPIN_SECONDS (the gap between two decode
 * steps is far shorter, so steps lose nothing), then asleep between polls, the naps growing to
 * MAX_NAP_NS: an idle job costs a poll per millisecond instead of a spinning core per rank. */
#define IDLE_SPIN_SECONDS 0.002
#define IDLE_MAX_NAP_NS 1000000L

Status dist_bcast_idle(void *buf, size_t num_bytes, int root) {
  if (num_bytes > (size_t)INT_MAX) return status_error(STATUS_INVALID_ARGUMENT, "dist_bcast_idle of %zu bytes", num_bytes);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Request request;
  if (MPI_Ibcast(buf, (int)num_bytes, MPI_BYTE, root, MPI_COMM_WORLD, &request) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Ibcast of %zu bytes failed", num_bytes);
  }
  int done = 0, rc = MPI_SUCCESS;
  if (rank == root) rc = MPI_Wait(&request, MPI_STATUS_IGNORE), done = 1;
  const double start = MPI_Wtime();
  long nap = 10000L;
  while (!done && (rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE)) == MPI_SUCCESS && !done) {
    if (MPI_Wtime() - start < IDLE_SPIN_SECONDS) continue;
    nanosleep(&(struct timespec){0, nap}, NULL);
    nap = nap * 2 < IDLE_MAX_NAP_NS ? nap * 2 : IDLE_MAX_NAP_NS;
  }
  return rc == MPI_SUCCESS ? STATUS_OK : status_error(STATUS_REMOTE_ERROR, "MPI_Ibcast of %zu bytes failed", num_bytes);
}

double dist_time(void) { return MPI_Wtime(); }

/* The threshold, from the environment when set there (a test forcing one exchange). */
static Status reduce_scatter_min_floats(int64_t *out) {
  const char *env = getenv(DIST_REDUCE_SCATTER_ENV);
  *out = DIST_REDUCE_SCATTER_MIN_FLOATS;
  if (!env || !*env) return STATUS_OK;
  char *end = NULL;
  const long long v = strtoll(env, &end, 10);
  if (*end != '\0' || v < 0) {
    return status_error(STATUS_INVALID_ARGUMENT, "%s=%s: expected a float count >= 0 (0: always reduce-scatter)",
                        DIST_REDUCE_SCATTER_ENV, env);
  }
  *out = (int64_t)v;
  return STATUS_OK;
}

Status dist_reducer_init(DistReducer *r, int64_t num_shards, int64_t num_local_shards, int64_t max_floats) {
  memset(r, 0, sizeof *r);
  r->num_shards = num_shards;
  r->num_local_shards = num_local_shards;
  r->max_floats = max_floats;
  MPI_Comm_size(MPI_COMM_WORLD, &r->num_ranks);
  MPI_Comm_rank(MPI_COMM_WORLD, &r->rank);
  /* Every rank decides the same: whether every rank's block of shards is a tree node. */
  r->pre_reduce = true;
  for (int64_t b = 0; b < num_shards; b += num_local_shards) {
    const Range block = {b, b + num_local_shards};
    r->pre_reduce = r->pre_reduce && plan_tree_has_node(num_shards, block);
  }
  /* The reduce-scatter receives every contribution's largest piece: about the same count. */
  const int64_t contributions = r->pre_reduce ? r->num_ranks : num_shards;
  const int64_t max_piece = (max_floats + r->num_ranks - 1) / r->num_ranks;
  if (num_local_shards * max_floats > INT_MAX || contributions * max_piece > INT_MAX) {
    return status_error(STATUS_UNSUPPORTED, "a reduction of %lld floats per rank exceeds MPI's int count; lower --chunk",
                        (long long)(num_local_shards * max_floats));
  }
  Status st = reduce_scatter_min_floats(&r->reduce_scatter_min_floats);
  if (st != STATUS_OK) return st;
  r->gathered = malloc((size_t)(num_shards * max_floats) * sizeof *r->gathered);
  r->packed = r->pre_reduce ? NULL : malloc((size_t)(num_local_shards * max_floats) * sizeof *r->packed);
  r->send_counts = malloc(6 * (size_t)r->num_ranks * sizeof *r->send_counts);
  if (!r->gathered || (!r->pre_reduce && !r->packed) || !r->send_counts) {
    return status_error(STATUS_OUT_OF_MEMORY, "reduction buffers of %lld floats", (long long)(num_shards * max_floats));
  }
  r->send_displs = r->send_counts + r->num_ranks;
  r->recv_counts = r->send_displs + r->num_ranks;
  r->recv_displs = r->recv_counts + r->num_ranks;
  r->piece_counts = r->recv_displs + r->num_ranks;
  r->piece_displs = r->piece_counts + r->num_ranks;
  return STATUS_OK;
}

Status dist_reducer_agree(DistReducer *r) {
  if (MPI_Bcast(&r->reduce_scatter_min_floats, 1, MPI_INT64_T, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Bcast of the reduce-scatter threshold failed");
  }
  return STATUS_OK;
}

void dist_reducer_free(DistReducer *r) {
  free(r->gathered);
  free(r->packed);
  free(r->send_counts);
  r->gathered = r->packed = NULL;
  r->send_counts = r->send_displs = r->recv_counts = r->recv_displs = r->piece_counts = r->piece_displs = NULL;
}

/* Every rank's vector(s) to every rank; each finishes the whole tree. */
static Status allgather_sum(DistReducer *r, const float *local_parts, int64_t block, int64_t n, float *out) {
  const int count = (int)(r->num_local_shards / block * n);
  if (MPI_Allgather(local_parts, count, MPI_FLOAT, r->gathered, count, MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Allgather of shard partial sums failed");
  }
  sum_blocks_tree(r->gathered, r->num_shards, block, n);
  memcpy(out, r->gathered, (size_t)n * sizeof *out);
  r->bytes_sent += (uint64_t)count * sizeof(float) * (uint64_t)(r->num_ranks - 1);
  return STATUS_OK;
}

/* The counts and offsets of one reduce-scatter of n elements, each rank contributing
 * `per_rank` vectors: piece j of all of them goes to rank j, sent in contribution order, so the
 * receiver holds [N·per_rank, piece] — the shard-tree's blocks of its piece, in tree order. */
static void plan_pieces(DistReducer *r, int64_t per_rank, int64_t n) {
  const Range mine = plan_split(n, r->num_ranks, r->rank);
  for (int j = 0; j < r->num_ranks; j++) {
    const Range piece = plan_split(n, r->num_ranks, j);
    r->piece_counts[j] = (int)range_size(piece);
    r->piece_displs[j] = (int)piece.begin;
    r->send_counts[j] = (int)(per_rank * range_size(piece));
    r->send_displs[j] = (int)(per_rank * piece.begin);
    r->recv_counts[j] = (int)(per_rank * range_size(mine));
    r->recv_displs[j] = j * r->recv_counts[j];
  }
}

/* Without pre_reduce a rank sends several shards' pieces to each rank: laid out by
 * destination, so each destination's pieces are one contiguous run of the send buffer. */
static const float *pack_by_destination(DistReducer *r, const float *local_parts, int64_t n) {
  if (r->pre_reduce) return local_parts; /* one vector: piece j already sits at piece_displs[j] */
  const int64_t L = r->num_local_shards;
  for (int j = 0; j < r->num_ranks; j++) {
    const int64_t begin = r->piece_displs[j], size = r->piece_counts[j];
    for (int64_t s = 0; s < L; s++) {
      memcpy(r->packed + L * begin + s * size, local_parts + s * n + begin, (size_t)size * sizeof *r->packed);
    }
  }
  return r->packed;
}

static Status reduce_scatter_sum(DistReducer *r, const float *local_parts, int64_t block, int64_t n, float *out) {
  const int64_t per_rank = r->num_local_shards / block;
  plan_pieces(r, per_rank, n);
  const float *send = pack_by_destination(r, local_parts, n);
  if (MPI_Alltoallv(send, r->send_counts, r->send_displs, MPI_FLOAT, r->gathered, r->recv_counts, r->recv_displs,
                    MPI_FLOAT, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Alltoallv of shard partial sums failed");
  }
  const int mine = r->piece_counts[r->rank];
  sum_blocks_tree(r->gathered, r->num_shards, block, mine);
  if (MPI_Allgatherv(r->gathered, mine, MPI_FLOAT, out, r->piece_counts, r->piece_displs, MPI_FLOAT, MPI_COMM_WORLD) !=
      MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Allgatherv of summed pieces failed");
  }
  const uint64_t others = (uint64_t)r->num_ranks - 1;
  r->bytes_sent += ((uint64_t)(per_rank * (n - mine)) + (uint64_t)mine * others) * sizeof(float);
  return STATUS_OK;
}

static Status dist_sum_shards(void *ctx, float *local_parts, int64_t n, float *out) {
  DistReducer *r = ctx;
  const int64_t block = r->pre_reduce ? r->num_local_shards : 1;
  if (r->pre_reduce) sum_blocks_tree(local_parts, r->num_local_shards, 1, n);
  if (r->num_ranks > 1 && n >= r->reduce_scatter_min_floats) return reduce_scatter_sum(r, local_parts, block, n, out);
  return allgather_sum(r, local_parts, block, n, out);
}

ShardReducer dist_reducer_as_shard_reducer(DistReducer *r) {
  ShardReducer s = {r, dist_sum_shards};
  return s;
}

Status dist_gather_columns(const float *local, int64_t num_rows, int64_t local_cols, float *out, int64_t total_cols) {
  int rank, num_ranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &num_ranks);
  int mine = (int)local_cols;
  int *cols = rank == 0 ? calloc((size_t)num_ranks, sizeof *cols) : NULL;
  if (MPI_Gather(&mine, 1, MPI_INT, cols, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    free(cols);
    return status_error(STATUS_REMOTE_ERROR, "MPI_Gather of logit widths failed");
  }
  /* Row by row keeps every message small and the receive side a plain strided copy. */
  int *displs = rank == 0 ? calloc((size_t)num_ranks, sizeof *displs) : NULL;
  for (int r = 1; rank == 0 && r < num_ranks; r++) displs[r] = displs[r - 1] + cols[r - 1];
  Status st = STATUS_OK;
  for (int64_t row = 0; row < num_rows && st == STATUS_OK; row++) {
    if (MPI_Gatherv(local + row * local_cols, mine, MPI_FLOAT, rank == 0 ? out + row * total_cols : NULL, cols,
                    displs, MPI_FLOAT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
      st = status_error(STATUS_REMOTE_ERROR, "MPI_Gatherv of logits failed");
    }
  }
  free(cols);
  free(displs);
  return st;
}

Status dist_argmax(float local_value, int64_t local_index, int64_t *index_out) {
  struct { float value; int index; } mine = {local_value, (int)local_index}, best;
  /* MPI_MAXLOC breaks ties toward the lower index, which is greedy's rule. */
  if (MPI_Allreduce(&mine, &best, 1, MPI_FLOAT_INT, MPI_MAXLOC, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Allreduce(MAXLOC) failed");
  }
  *index_out = best.index;
  return STATUS_OK;
}

Status dist_all_equal_u64(uint64_t value, bool *equal_out) {
  uint64_t lo = 0, hi = 0;
  if (MPI_Allreduce(&value, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS ||
      MPI_Allreduce(&value, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Allreduce of a hash failed");
  }
  *equal_out = lo == hi;
  return STATUS_OK;
}

Status dist_allgather_bytes(const void *local, size_t bytes_each, void *out) {
  if (bytes_each > INT_MAX) return status_error(STATUS_UNSUPPORTED, "allgather of %zu bytes per rank", bytes_each);
  if (MPI_Allgather(local, (int)bytes_each, MPI_BYTE, out, (int)bytes_each, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Allgather failed");
  }
  return STATUS_OK;
}

Status dist_gather_bytes(const void *local, size_t num_bytes, void **out_root, size_t *total_root) {
  int rank, num_ranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &num_ranks);
  *out_root = NULL;
  *total_root = 0;
  if (num_bytes > INT_MAX) return status_error(STATUS_UNSUPPORTED, "gather of %zu bytes from one rank", num_bytes);
  int mine = (int)num_bytes;
  int *counts = rank == 0 ? calloc((size_t)num_ranks, sizeof *counts) : NULL;
  int *displs = rank == 0 ? calloc((size_t)num_ranks, sizeof *displs) : NULL;
  Status st = STATUS_OK;
  if (MPI_Gather(&mine, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    st = status_error(STATUS_REMOTE_ERROR, "MPI_Gather of sizes failed");
  }
  size_t total = 0;
  for (int r = 0; rank == 0 && r < num_ranks; r++) {
    displs[r] = (int)total;
    total += (size_t)counts[r];
  }
  char *out = rank == 0 ? malloc(total ? total : 1) : NULL;
  if (st == STATUS_OK && MPI_Gatherv(local, mine, MPI_BYTE, out, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    st = status_error(STATUS_REMOTE_ERROR, "MPI_Gatherv failed");
  }
  free(counts);
  free(displs);
  if (st != STATUS_OK || rank != 0) {
    free(out);
    return st;
  }
  *out_root = out;
  *total_root = total;
  return STATUS_OK;
}

Status dist_argmax_rows(const float *local_values, const int64_t *local_indices, int64_t n, int64_t *indices_out) {
  struct FloatInt { float value; int index; };
  struct FloatInt *pairs = calloc((size_t)(2 * (n > 0 ? n : 1)), sizeof *pairs);
  if (!pairs) return status_error(STATUS_OUT_OF_MEMORY, "argmax of %lld rows", (long long)n);
  for (int64_t i = 0; i < n; i++) pairs[i] = (struct FloatInt){local_values[i], (int)local_indices[i]};
  /* MPI_MAXLOC breaks ties toward the lower index, which is greedy's rule. */
  const int rc = MPI_Allreduce(pairs, pairs + n, (int)n, MPI_FLOAT_INT, MPI_MAXLOC, MPI_COMM_WORLD);
  for (int64_t i = 0; rc == MPI_SUCCESS && i < n; i++) indices_out[i] = pairs[n + i].index;
  free(pairs);
  return rc == MPI_SUCCESS ? STATUS_OK : status_error(STATUS_REMOTE_ERROR, "MPI_Allreduce(MAXLOC) failed");
}

Status dist_max_i32(int32_t *values, int64_t n) {
  if (MPI_Allreduce(MPI_IN_PLACE, values, (int)n, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return status_error(STATUS_REMOTE_ERROR, "MPI_Allreduce(MAX) failed");
  }
  return STATUS_OK;
}
