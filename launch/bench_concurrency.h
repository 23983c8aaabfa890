/* gptoss bench --concurrency: decode speed at several numbers of sequences at once. */
#ifndef GPTOSS_LAUNCH_BENCH_CONCURRENCY_H
#define GPTOSS_LAUNCH_BENCH_CONCURRENCY_H

#include <stdio.h>

#include "dist/engine.h"
#include "launch/args.h"

enum { BENCH_MAX_CONCURRENCY_POINTS = 16, BENCH_MAX_SEQUENCES = 256 };

typedef struct {
  int64_t sequences;
  double aggregate_tokens_per_s;   /* decode rows of all sequences per second */
  double sequence_tokens_per_s;    /* one sequence's tokens per second (steps per second) */
  double bytes_per_step;           /* weight bytes a decode step reads */
  double unique_experts_per_layer; /* distinct experts a step's rows select, per layer */
  RankStats *stats;                /* [num_ranks]: phases of the decode steps */
} ConcurrencyPoint;

typedef struct {
  ConcurrencyPoint points[BENCH_MAX_CONCURRENCY_POINTS];
  int num_points;
  int64_t max_sequences;
} BenchConcurrency;

/* "1,2,4,8" -> points; refuses counts outside [1, BENCH_MAX_SEQUENCES]. */
Status bench_parse_concurrency(const char *text, BenchConcurrency *out);
/* Rank 0: measures every point (the engine needs max_sequences slots). */
Status bench_run_concurrency(Engine *e, int64_t decode_tokens, BenchConcurrency *b);
void bench_print_concurrency(const Engine *e, const BenchConcurrency *b, FILE *out);
/* `"concurrency": [...]` for bench --json; print_phases writes one per-phase object. */
void bench_print_concurrency_json(const Engine *e, const BenchConcurrency *b, FILE *out,
                                  void (*print_phases)(const Engine *e, const RankStats *stats, const char *name));
void bench_concurrency_free(BenchConcurrency *b);

#endif
