/* The model directory: HDF5 files written by `gptoss convert` and read by every rank.
 *
 *   MODEL/manifest.h5      format name + version, config.json text, shard count, the plan,
 *                          the byte size of every other file (a truncated copy is named) and
 *                          the checksum of every dataset (a damaged one is named), and the
 *                          tokenizer (o200k_base.tiktoken), so a model is self-contained
 *   MODEL/replicated.h5    tensors every rank reads in full (norms, router, o_proj bias)
 *   MODEL/shard-SSSSS-of-NNNNN.h5   KV group s: its attention slices, experts, vocab rows
 *
 * Each dataset keeps its checkpoint bytes (bf16 as 16-bit words, MXFP4 as u8 blocks and
 * scales) in contiguous layout, with a `dtype` attribute. */
#ifndef GPTOSS_IO_MODEL_DIR_H
#define GPTOSS_IO_MODEL_DIR_H

#include <stdbool.h>
#include <stdint.h>

#include "model/config.h"
#include "model/weights.h"

#define MODEL_FORMAT_NAME "gptoss-mpi model"
#define MODEL_FORMAT_VERSION 1

typedef struct ModelFile ModelFile;

void modeldir_shard_path(char *out, size_t size, const char *dir, int64_t shard, int64_t num_shards);
void modeldir_replicated_path(char *out, size_t size, const char *dir);

/* ---- writing (the converter) ---- */
Status modeldir_create_file(const char *path, ModelFile **out);
Status modeldir_write_tensor(ModelFile *file, const TensorSpec *spec, const void *data, uint64_t *checksum_out);
Status modeldir_close_file(ModelFile *file);
/* Written last: its presence marks a complete directory. Per file — the shards in order, then
 * replicated.h5 — file_bytes [num_shards + 1] holds its size and checksums
 * [num_shards + 1][checksums_per_file] the checksum64 of each dataset in tensor-list order. */
Status modeldir_write_manifest(const char *dir, const char *config_json, int64_t num_shards,
                               const uint64_t *file_bytes, const uint64_t *checksums, int64_t checksums_per_file,
                               const void *tokenizer, size_t tokenizer_bytes);

/* The tokenizer stored in the manifest (o200k_base.tiktoken bytes); the caller frees it. */
Status modeldir_read_tokenizer(const char *dir, char **data_out, size_t *num_bytes_out);

/* Datasets per file: the longer of the shard and replicated tensor lists. */
int64_t modeldir_checksums_per_file(const GptOssConfig *config);

/* ---- reading (every rank) ---- */
typedef struct {
  GptOssConfig config;
  int64_t num_shards;
  int64_t format_version;
  uint64_t *file_bytes;  /* [num_shards + 1], see modeldir_write_manifest */
  uint64_t *checksums;   /* [num_shards + 1][checksums_per_file] */
  int64_t checksums_per_file;
} Manifest;

Status modeldir_read_manifest(const char *dir, Manifest *out);
void modeldir_free_manifest(Manifest *manifest);

/* Tensors start at multiples of this many bytes in every model file. */
#define MODEL_TENSOR_ALIGNMENT 64

/* A model file mapped read-only: the tensors are used where they lie in the page cache —
 * loaded at disk speed, never copied, and shared by every process that maps the same file. */
typedef struct {
  char *base;
  size_t num_bytes;
} FileMap;

/* Maps one file and points each spec's destination at its tensor, checking each dataset's
 * shape and dtype, and its checksum against `checksums` (the manifest's row for this file; NULL
 * skips it). expected_bytes: the size the manifest recorded. */
Status modeldir_map_tensors(const char *path, uint64_t expected_bytes, const TensorSpec *specs, int64_t num_specs,
                            const uint64_t *checksums, FileMap *map_out);
void modeldir_unmap(FileMap *map);

/* The weights of shards [begin, end) and the replicated tensors, in their packed form (bf16 and
 * MXFP4 as in the checkpoint, never expanded). */
typedef struct {
  Range shard_range;
  FileMap *shard_maps;        /* [num shards] */
  ShardWeights *shards;       /* [num shards] */
  FileMap replicated_map;
  ReplicatedWeights replicated;
  size_t num_bytes;           /* weight bytes held */
} LoadedWeights;

Status modeldir_load_weights(const char *dir, const Manifest *manifest, Range shards, bool verify, LoadedWeights *out);
void modeldir_free_weights(LoadedWeights *weights);

#endif
