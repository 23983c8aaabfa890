/* The read bandwidth probe (see read_probe.h). Every rank runs it at the same call; the MPI
 * parts are dist/node_reduce.h's. It measures reads only (decode streams weights it never
 * writes), with a load-and-add loop: AVX2 where the CPU has it, else portable C. */
#define _GNU_SOURCE /* MADV_HUGEPAGE */
#include "launch/read_probe.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dist/comm.h"
#include "dist/node_reduce.h"
#include "model/forward.h"

enum { PROBE_PASSES = 5, PROBE_MAX_L3_IDS = 1024 };
/* Words per block, the unit a thread reads: 32 KiB, a multiple of the AVX2 loop's 16 words. */
enum { PROBE_BLOCK_WORDS = 4096 };
#define PROBE_MIN_RANK_BYTES ((size_t)256 << 20)
#define PROBE_HUGE_PAGE ((size_t)2 << 20)
_Static_assert(PROBE_HUGE_PAGE % (PROBE_BLOCK_WORDS * sizeof(uint64_t)) == 0, "whole blocks per huge page");

typedef uint64_t (*SumBlockFn)(const uint64_t *words);

static uint64_t sum_block_portable(const uint64_t *words) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i < PROBE_BLOCK_WORDS; i += 4) {
    s0 += words[i];
    s1 += words[i + 1];
    s2 += words[i + 2];
    s3 += words[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PROBE_HAVE_AVX2 1
/* Four independent 256-bit accumulators: 128 bytes per iteration, loads never wait on adds. */
__attribute__((target("avx2"))) static uint64_t sum_block_avx2(const uint64_t *words) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i < PROBE_BLOCK_WORDS; i += 16) {
    a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(words + i)));
    b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(words + i + 4)));
    c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(words + i + 8)));
    d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(words + i + 12)));
  }
  uint64_t lanes[4];
  _mm256_storeu_si256((__m256i *)lanes, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#else
#define PROBE_HAVE_AVX2 0
#endif

static SumBlockFn choose_sum_block(void) {
#if PROBE_HAVE_AVX2
  if (__builtin_cpu_supports("avx2")) return sum_block_avx2;
#endif
  return sum_block_portable;
}

/* Σ over this node's distinct L3 caches (Linux names each by an id); 0 if unknown. */
static size_t node_l3_bytes(void) {
  long ids[PROBE_MAX_L3_IDS];
  int num_ids = 0;
  size_t total = 0;
  const long num_cpus = sysconf(_SC_NPROCESSORS_CONF);
  for (long c = 0; c < num_cpus && num_ids < PROBE_MAX_L3_IDS; c++) {
    char path[96];
    long id = -1, level = 0, kib = 0;
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/cache/index3/level", c);
    FILE *f = fopen(path, "r");
    if (f && fscanf(f, "%ld", &level) != 1) level = 0;
    if (f) fclose(f);
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/cache/index3/id", c);
    if (level == 3 && (f = fopen(path, "r"))) {
      if (fscanf(f, "%ld", &id) != 1) id = -1;
      fclose(f);
    }
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/cache/index3/size", c);
    if (id >= 0 && (f = fopen(path, "r"))) {
      if (fscanf(f, "%ldK", &kib) != 1) kib = 0;
      fclose(f);
    }
    int seen = 0;
    for (int i = 0; i < num_ids; i++) seen |= ids[i] == id;
    if (id < 0 || seen || kib <= 0) continue;
    ids[num_ids++] = id;
    total += (size_t)kib << 10;
  }
  if (total == 0) {
    const long one = sysconf(_SC_LEVEL3_CACHE_SIZE);
    total = one > 0 ? (size_t)one : 0;
  }
  return total;
}

/* One timed pass of this rank's threads over its buffer; the sum is checked by the caller. */
static uint64_t read_pass(const uint64_t *words, size_t num_blocks, SumBlockFn sum_block) {
  uint64_t sum = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum)
  for (size_t b = 0; b < num_blocks; b++) sum += sum_block(words + b * PROBE_BLOCK_WORDS);
  return sum;
}

Status read_probe_run(const RankInfo *rank, ReadProbe *out) {
  memset(out, 0, sizeof *out);
  double node_ranks = 1.0;
  Status st = dist_node_sum(&node_ranks, 1);
  if (st != STATUS_OK) return st;
  const size_t node_l3 = node_l3_bytes(), share = 4 * node_l3 / (size_t)node_ranks;
  const size_t block_bytes = PROBE_BLOCK_WORDS * sizeof(uint64_t);
  out->rank_bytes = (share > PROBE_MIN_RANK_BYTES ? share : PROBE_MIN_RANK_BYTES) / PROBE_HUGE_PAGE * PROBE_HUGE_PAGE;
  out->num_passes = PROBE_PASSES;
  const size_t num_blocks = out->rank_bytes / block_bytes, num_words = out->rank_bytes / sizeof(uint64_t);
  uint64_t *words = aligned_alloc(PROBE_HUGE_PAGE, out->rank_bytes);
  if (!words) status_note("bench: cannot allocate the %.0f MB probe buffer; this rank reads nothing", out->rank_bytes / 1e6);
  /* In huge pages, as the mapped weights are (io/model_dir.c). Without the advice the buffer's
   * pages depend on how fragmented free memory is: on Zen 4 with a 13.8 GB model cached the same
   * probe read 31.6 GB/s in one run and 55 in another, against 60-64 advised (the kernel's
   * default THP defrag policy compacts only for advised regions). */
  if (words) (void)madvise(words, out->rank_bytes, MADV_HUGEPAGE);
  /* Each thread first touches the blocks it will read (its NUMA node's memory). */
  const size_t fill_blocks = words ? num_blocks : 0;
#pragma omp parallel for schedule(static)
  for (size_t b = 0; b < fill_blocks; b++) {
    for (size_t i = b * PROBE_BLOCK_WORDS; i < (b + 1) * PROBE_BLOCK_WORDS; i++) words[i] = i;
  }
  /* Σ i for i < num_words, mod 2^64 as the loop adds: halve the even factor before multiplying. */
  const uint64_t w = num_words, expected = w % 2 == 0 ? w / 2 * (w - 1) : w * ((w - 1) / 2);
  const SumBlockFn sum_block = choose_sum_block();
  double best = 0.0;
  for (int pass = 0; st == STATUS_OK && pass < PROBE_PASSES; pass++) {
    st = dist_node_barrier();
    const double start = phase_clock();
    const uint64_t sum = words ? read_pass(words, num_blocks, sum_block) : expected;
    double bytes = words ? (double)out->rank_bytes : 0.0, seconds = phase_clock() - start;
    if (sum != expected) {
      st = status_error(STATUS_MISMATCH, "bench: the probe read a sum of %llu, expected %llu (memory or loop broken)",
                        (unsigned long long)sum, (unsigned long long)expected);
    }
    st = dist_agree(st);
    if (st == STATUS_OK) st = dist_node_sum(&bytes, 1);
    if (st == STATUS_OK) st = dist_node_max(&seconds, 1);
    const double gbps = seconds > 0 ? bytes / seconds / 1e9 : 0.0;
    best = gbps > best ? gbps : best;
  }
  free(words);
  out->node_gbps = rank->rank == 0 ? calloc((size_t)rank->num_ranks, sizeof *out->node_gbps) : NULL;
  if (st == STATUS_OK) {
    st = dist_agree(rank->rank == 0 && !out->node_gbps ? status_error(STATUS_OUT_OF_MEMORY, "per-node figures") : STATUS_OK);
  }
  if (st == STATUS_OK) st = dist_gather_per_node(best, out->node_gbps, &out->num_nodes);
  for (int n = 0; st == STATUS_OK && rank->rank == 0 && n < out->num_nodes; n++) out->job_gbps += out->node_gbps[n];
  return st;
}

void read_probe_free(ReadProbe *p) {
  free(p->node_gbps);
  memset(p, 0, sizeof *p);
}
