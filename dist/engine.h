/* A model loaded across MPI ranks, and the protocol by which rank 0 drives it.
 *
 * Every rank calls engine_load (collective; errors are agreed so all ranks fail together).
 * Then rank 0 — the driver, which owns all user I/O — calls the engine_* operations below, and
 * every other rank calls engine_serve(), which follows rank 0's broadcast commands until
 * engine_stop(). Each operation runs the same code on every rank, so one path serves 1 and N
 * ranks. Worker ranks print nothing but their own errors. */
#ifndef GPTOSS_DIST_ENGINE_H
#define GPTOSS_DIST_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dist/comm.h"
#include "io/model_dir.h"
#include "model/forward.h"

typedef struct {
  int64_t context_length;  /* 0: min(max_position_embeddings, 4096) */
  int64_t max_chunk;       /* tokens per forward step during prefill; 0: 512 */
  int64_t num_slots;       /* sequences held at once, each with a KV cache of context_length; 0: 1 */
  bool verify_checksums;
} EngineOptions;

typedef struct {
  RankInfo rank;
  GptOssConfig config;
  Range shards;               /* this rank's shards */
  Range local_vocab;
  LoadedWeights weights;
  Transformer transformer;
  DistReducer reducer;
  float *local_logits;        /* [max(SCORE_ROWS, slots), V_local] */
  char *command;              /* the broadcast buffer: a command header, then a step's segments and tokens */
  size_t command_bytes;
  uint64_t sample_bytes_sent; /* bytes this rank sent for sampling decisions and logits */
  double sample_seconds;      /* choosing tokens: argmax agreement, sampling, logits gathers */
  int64_t tokens_forwarded;
  double load_seconds;
} Engine;

/* Collective. On failure every rank returns an error status; the rank that saw the problem
 * printed it (the manifest and rank-count checks are printed by rank 0 only). */
Status engine_load(Engine *e, RankInfo rank, const char *model_dir, const EngineOptions *options);
void engine_free(Engine *e);

/* ---- rank 0 (driver) operations; every other rank is inside engine_serve() ---- */

/* Start a new sequence (empty KV cache). */
Status engine_reset(Engine *e);
/* Feed tokens into the KV cache without computing logits. */
Status engine_feed(Engine *e, const int32_t *tokens, int64_t n);
/* Remember the KV cache as it is, and return to it later (transformer_mark / _rollback). */
Status engine_mark(Engine *e);
Status engine_rollback(Engine *e);
/* Feed tokens; rank 0 gets the full logits [n, V] (teacher forcing). */
Status engine_score(Engine *e, const int32_t *tokens, int64_t n, float *logits_out);
/* Feed tokens; return the argmax of the last position's logits (ties: lowest id). */
Status engine_next_greedy(Engine *e, const int32_t *tokens, int64_t n, int32_t *next_out);
/* Feed tokens; sample the next token at `temperature` (> 0) with nucleus `top_p`, using rank 0's
 * uniform draw. Only per-shard summaries and nucleus candidates move (model/sampler.h). */
Status engine_next_sample(Engine *e, const int32_t *tokens, int64_t n, float temperature, float top_p, double uniform,
                          int32_t *next_out);
/* Feed tokens; rank 0 gets the last position's logits [V]. */
Status engine_next_logits(Engine *e, const int32_t *tokens, int64_t n, float *logits_out);
/* One sequence's share of a step (engine_step): its next num_tokens tokens, appended to slot's
 * KV cache (emptied first with `reset`); with `choose`, the step also picks the token after its
 * last one — greedy at temperature 0, else sampling with nucleus top_p and rank 0's draw
 * `uniform`. Integers, so the struct crosses the wire as it is. */
typedef struct {
  int32_t slot;
  int32_t num_tokens;
  int32_t reset;
  int32_t choose;
  float temperature;
  float top_p;
  double uniform;
} EngineSegment;

/* One forward step over several sequences, then their next tokens: next_out[j] is the token of
 * the j-th segment with `choose` set. With logits_out (rank 0: [choosing segments, V]) the step
 * also gathers those rows' logits (one more collective; tests, log-probabilities). A sequence's tokens and logits never depend on the other
 * segments. Workers follow with one broadcast. Refused (nothing runs) if a slot is out of range
 * or repeated, a segment is empty or longer than the chunk size, a sequence would overflow its
 * context, the step has more rows than allocated, or a token id is out of range. */
Status engine_step(Engine *e, const EngineSegment *segments, int64_t num_segments, const int32_t *tokens,
                   int32_t *next_out, float *logits_out);

/* Whether every rank holds a bitwise-identical hidden state after the last forward (the
 * replicated router depends on it). */
Status engine_replicas_agree(Engine *e, bool *agree_out);
/* Release the workers from engine_serve(); they return `exit_status`. */
Status engine_stop(Engine *e, int exit_status);

/* One rank's counters since the last reset (engine_collect_stats). */
typedef struct {
  double embed, attention, experts, reduce, unembed, sampling; /* seconds */
  double bytes_sent;                                          /* to other ranks */
  double tokens;                                              /* forwarded */
} RankStats;

/* Collective: rank 0 receives every rank's counters in stats_out[num_ranks] (others pass NULL),
 * then (if reset) everyone starts counting afresh. */
Status engine_collect_stats(Engine *e, RankStats *stats_out, bool reset);
/* Rank 0: the per-phase table (min / avg / max over ranks), and the bytes each rank sent per
 * token, to `out`. */
void engine_print_stats(const Engine *e, const RankStats *stats, FILE *out);

/* Tokens in the KV cache, and the context length. */
int64_t engine_position(const Engine *e);

/* ---- every other rank ---- */
/* Follows rank 0's commands; returns the exit status rank 0 passed to engine_stop(). */
int engine_serve(Engine *e);

#endif
