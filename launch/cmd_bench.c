/* gptoss bench: prefill and decode speed of a model across the job's ranks, the weight bytes a
 * decoded token reads, the bandwidth that achieves against the job's measured read bandwidth
 * (every node's ranks reading at once: read_probe.h), and the per-phase split over ranks.
 * Prompts are pseudo-random ids (speed does not depend on which tokens they are); decoding is
 * greedy. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/bench_concurrency.h"
#include "launch/commands.h"
#include "launch/read_probe.h"
#include "launch/run.h"
#include "model/sampler.h"

typedef struct {
  int64_t prompt_tokens;
  int64_t decode_tokens;
  bool json;
  bool skip_probe;
  const char *concurrency_text;
  BenchConcurrency concurrency;
  ReadProbe probe;  /* rank 0: each node's read bandwidth and the job's sum (zero with --no-probe) */
} BenchOptions;

static BenchOptions g_bench = {.prompt_tokens = 512, .decode_tokens = 128};

/* Before the model is loaded, on every rank at once (RunOptions.before_load). */
static Status probe_before_load(RunOptions *o, const RankInfo *rank) {
  (void)o;
  return g_bench.skip_probe ? STATUS_OK : read_probe_run(rank, &g_bench.probe);
}

static void print_phases_json(const Engine *e, const RankStats *stats, const char *name) {
  const char *names[] = {"embedding", "attention", "experts", "allreduce_wait", "unembedding", "sampling"};
  printf("\"%s\": {", name);
  for (int p = 0; p < 6; p++) {
    double lo = 0, hi = 0, sum = 0;
    for (int r = 0; r < e->rank.num_ranks; r++) {
      const double v = (&stats[r].embed)[p];
      lo = r == 0 || v < lo ? v : lo;
      hi = r == 0 || v > hi ? v : hi;
      sum += v;
    }
    printf("%s\"%s\": [%.6f, %.6f, %.6f]", p ? ", " : "", names[p], lo, sum / e->rank.num_ranks, hi);
  }
  double sent = 0;
  for (int r = 0; r < e->rank.num_ranks; r++) sent = fmax(sent, stats[r].tokens > 0 ? stats[r].bytes_sent / stats[r].tokens : 0);
  printf(", \"max_bytes_sent_per_token\": %.0f}", sent);
}

static int drive_bench(Engine *e, const RunOptions *o, const int32_t *unused_tokens, int64_t unused_n) {
  (void)o;
  (void)unused_tokens;
  (void)unused_n;
  const BenchOptions *b = &g_bench;
  const int64_t P = b->prompt_tokens, D = b->decode_tokens;
  if (P + D > e->transformer.context_length) {
    status_error(STATUS_INVALID_ARGUMENT, "--prompt-tokens %lld + --decode-tokens %lld do not fit the context (%lld tokens)",
                 (long long)P, (long long)D, (long long)e->transformer.context_length);
    return 2;
  }
  int32_t *prompt = malloc((size_t)P * sizeof *prompt);
  RankStats *prefill_stats = calloc((size_t)e->rank.num_ranks, sizeof *prefill_stats);
  RankStats *decode_stats = calloc((size_t)e->rank.num_ranks, sizeof *decode_stats);
  if (!prompt || !prefill_stats || !decode_stats) return 1;
  Sampler rng;
  sampler_init(&rng, 1234);
  for (int64_t i = 0; i < P; i++) prompt[i] = (int32_t)(sampler_uniform(&rng) * (double)e->config.vocab_size);
  const double read_gbps = b->probe.job_gbps;

  Status st = engine_reset(e);
  if (st == STATUS_OK) st = engine_collect_stats(e, NULL, true);
  double start = phase_clock();
  if (st == STATUS_OK) st = engine_feed(e, prompt, P);
  const double prefill_s = phase_clock() - start;
  if (st == STATUS_OK) st = engine_collect_stats(e, prefill_stats, true);
  int32_t token = prompt[P - 1];
  start = phase_clock();
  for (int64_t i = 0; st == STATUS_OK && i < D; i++) st = engine_next_greedy(e, &token, 1, &token);
  const double decode_s = phase_clock() - start;
  if (st == STATUS_OK) st = engine_collect_stats(e, decode_stats, true);
  if (st == STATUS_OK && b->concurrency_text) st = bench_run_concurrency(e, D, &g_bench.concurrency);
  if (st == STATUS_OK) {
    const double prefill_tps = (double)P / prefill_s, decode_tps = (double)D / decode_s;
    const double bytes = (double)weights_decode_bytes_per_token(&e->config);
    const double gbps = bytes * decode_tps / 1e9;
    const double bound_tps = read_gbps > 0 ? read_gbps * 1e9 / bytes : 0.0;
    if (b->json) {
      printf("{\"ranks\": %d, \"threads_per_rank\": %d, \"prompt_tokens\": %lld, \"decode_tokens\": %lld, "
             "\"prefill_tokens_per_s\": %.3f, \"decode_tokens_per_s\": %.3f, \"decode_bytes_per_token\": %.0f, "
             "\"decode_GBps\": %.3f, \"node_read_GBps\": [",
             e->rank.num_ranks, omp_get_max_threads(), (long long)P, (long long)D, prefill_tps, decode_tps, bytes, gbps);
      for (int n = 0; n < b->probe.num_nodes; n++) printf("%s%.3f", n ? ", " : "", b->probe.node_gbps[n]);
      printf("], \"probe_bytes_per_rank\": %zu, \"job_read_GBps\": %.3f, \"decode_fraction_of_bound\": %.3f, ",
             b->probe.rank_bytes, read_gbps, bound_tps > 0 ? decode_tps / bound_tps : 0.0);
      print_phases_json(e, prefill_stats, "prefill");
      printf(", ");
      print_phases_json(e, decode_stats, "decode");
      if (b->concurrency_text) {
        printf(", ");
        bench_print_concurrency_json(e, &b->concurrency, stdout, print_phases_json);
      }
      printf("}\n");
    } else {
      printf("model: %lld layers, %lld experts (top-%lld), vocab %lld; %d rank(s) x %d thread(s)\n",
             (long long)e->config.num_hidden_layers, (long long)e->config.num_local_experts,
             (long long)e->config.num_experts_per_tok, (long long)e->config.vocab_size, e->rank.num_ranks,
             omp_get_max_threads());
      printf("prefill: %lld tokens in %.3f s = %.2f tokens/s\n", (long long)P, prefill_s, prefill_tps);
      printf("decode:  %lld tokens in %.3f s = %.2f tokens/s\n", (long long)D, decode_s, decode_tps);
      printf("decode reads %.3f GB of weights per token = %.2f GB/s", bytes / 1e9, gbps);
      if (read_gbps > 0) {
        printf("; the job's ranks read memory at %.2f GB/s together (per node:", read_gbps);
        for (int n = 0; n < b->probe.num_nodes; n++) printf(" %.2f", b->probe.node_gbps[n]);
        printf("), so the bound is %.2f tokens/s: %.0f%% of it", bound_tps, 100.0 * decode_tps / bound_tps);
      }
      printf("\n\nprefill phases:\n");
      engine_print_stats(e, prefill_stats, stdout);
      printf("\ndecode phases:\n");
      engine_print_stats(e, decode_stats, stdout);
      if (b->concurrency_text) bench_print_concurrency(e, &b->concurrency, stdout);
    }
  }
  bench_concurrency_free(&g_bench.concurrency);
  read_probe_free(&g_bench.probe);
  free(prompt);
  free(prefill_stats);
  free(decode_stats);
  return st == STATUS_OK ? 0 : 1;
}

/* --concurrency sets how many sequence slots the engine allocates. */
static Status prepare_bench(RunOptions *o) {
  if (!g_bench.concurrency_text) return STATUS_OK;
  Status st = bench_parse_concurrency(g_bench.concurrency_text, &g_bench.concurrency);
  if (st == STATUS_OK && o->parallel < g_bench.concurrency.max_sequences) o->parallel = g_bench.concurrency.max_sequences;
  return st;
}

int cmd_bench(int argc, char **argv) {
  RunOptions o = {.prepare = prepare_bench, .before_load = probe_before_load};
  const Option options[] = {
      RUN_COMMON_OPTIONS(o),
      {"--prompt-tokens", OPT_INT, &g_bench.prompt_tokens, "prefill length (default 512)", OPT_RANGE(1, ARGS_MAX_TOKEN_COUNT)},
      {"--decode-tokens", OPT_INT, &g_bench.decode_tokens, "tokens decoded after the prompt (default 128)",
       OPT_RANGE(1, ARGS_MAX_TOKEN_COUNT)},
      {"--json", OPT_FLAG, &g_bench.json, "print one JSON object"},
      {"--no-probe", OPT_FLAG, &g_bench.skip_probe,
       "skip the read bandwidth probe. The probe runs before loading: the ranks of each node meet at a barrier, then "
       "every rank's threads read their own buffer of max(256 MiB, 4 x the node's L3 / its ranks) at once (AVX2 "
       "loads and adds); a node's GB/s is all the bytes its ranks read over the slowest rank's time, best of 5 passes; "
       "the bound is the sum over nodes (node_read_GBps, job_read_GBps), and decode_fraction_of_bound is the job's "
       "decode GB/s over it"},
      {"--concurrency", OPT_STRING, &g_bench.concurrency_text,
       "also decode with P sequences at once for each P of a list like 1,2,4,8: aggregate and per-sequence tokens/s, "
       "weight bytes per step, distinct experts per layer"},
      {"--parallel", OPT_INT, &o.parallel, "sequence slots (KV caches) to allocate; default: the largest --concurrency",
       OPT_RANGE(1, 1000000)},
  };
  return run_model_command(argc, argv, options, (int)(sizeof options / sizeof options[0]),
                           "gptoss bench --model MODEL [--prompt-tokens 512] [--decode-tokens 128] [--concurrency 1,2,4,8] [--json]", &o,
                           drive_bench);
}
