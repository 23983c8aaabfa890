/* The converter (see convert.h). One process; no MPI. */
#include "io/convert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config_json.h"
#include "io/model_dir.h"
#include "io/vocab_embedded.h"

typedef struct {
  TensorSpec *specs;
  int64_t count;
} SpecSet;

static Status make_specs(const GptOssConfig *c, int64_t shard, SpecSet *out) {
  /* shard < 0 selects the replicated file. */
  out->count = shard < 0 ? weights_replicated_spec_count(c) : weights_shard_spec_count(c);
  out->specs = calloc((size_t)out->count, sizeof *out->specs);
  if (!out->specs) return status_error(STATUS_OUT_OF_MEMORY, "tensor list");
  if (shard < 0) weights_replicated_specs(c, NULL, out->specs);
  else weights_shard_specs(c, shard, NULL, out->specs);
  return STATUS_OK;
}

static void format_shape(char *out, size_t size, int num_dims, const int64_t *shape) {
  size_t used = (size_t)snprintf(out, size, "[");
  for (int d = 0; d < num_dims && used < size; d++) {
    used += (size_t)snprintf(out + used, size - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
  }
  if (used < size) snprintf(out + used, size - used, "]");
}

static Status check_spec_source(const Checkpoint *ckpt, const TensorSpec *spec) {
  const StTensor *t = checkpoint_find(ckpt, spec->source);
  if (!t) {
    return status_error(STATUS_MISMATCH, "the checkpoint has no tensor %s, which config.json implies (incomplete download?)",
                        spec->source);
  }
  const char *file = ckpt->files[t->file].path;
  if (strcmp(t->dtype, dtype_name(spec->dtype)) != 0) {
    return status_error(STATUS_MISMATCH, "%s: tensor %s has dtype %s, expected %s", file, spec->source, t->dtype,
                        dtype_name(spec->dtype));
  }
  int same = t->num_dims == spec->num_dims;
  for (int d = 0; same && d < t->num_dims; d++) same = t->shape[d] == spec->source_shape[d];
  if (!same) {
    char want[96], got[96];
    format_shape(want, sizeof want, spec->num_dims, spec->source_shape);
    format_shape(got, sizeof got, t->num_dims, t->shape);
    return status_error(STATUS_MISMATCH, "%s: tensor %s has shape %s, but config.json implies %s", file, spec->source,
                        got, want);
  }
  return STATUS_OK;
}

Status convert_check_checkpoint(const Checkpoint *ckpt, const GptOssConfig *c) {
  /* The replicated list plus shard 0's list name every source tensor once (shards differ
   * only in the slice they take). */
  for (int64_t shard = -1; shard <= 0; shard++) {
    SpecSet set;
    Status st = make_specs(c, shard, &set);
    for (int64_t i = 0; st == STATUS_OK && i < set.count; i++) st = check_spec_source(ckpt, &set.specs[i]);
    free(set.specs);
    if (st != STATUS_OK) return st;
  }
  return STATUS_OK;
}

/* Reads the spec's slice of its source tensor into buf (spec->num_bytes). */
static Status read_slice(const Checkpoint *ckpt, const TensorSpec *spec, void *buf) {
  const StTensor *t = checkpoint_find(ckpt, spec->source);
  const size_t elem = dtype_bytes(spec->dtype);
  if (spec->slice == SLICE_ALL) return checkpoint_read(ckpt, t, 0, buf, spec->num_bytes);
  if (spec->slice == SLICE_ROWS) {
    const size_t row_bytes = spec->num_bytes / (size_t)(range_size(spec->range) > 0 ? range_size(spec->range) : 1);
    if (spec->num_bytes == 0) return STATUS_OK;
    return checkpoint_read(ckpt, t, (uint64_t)spec->range.begin * row_bytes, buf, spec->num_bytes);
  }
  const int64_t rows = spec->source_shape[0], cols = spec->source_shape[1];
  const size_t slice_bytes = (size_t)range_size(spec->range) * elem;
  for (int64_t r = 0; r < rows; r++) {
    const uint64_t offset = ((uint64_t)r * (uint64_t)cols + (uint64_t)spec->range.begin) * elem;
    Status st = checkpoint_read(ckpt, t, offset, (char *)buf + (size_t)r * slice_bytes, slice_bytes);
    if (st != STATUS_OK) return st;
  }
  return STATUS_OK;
}

typedef struct {
  uint64_t done, total;
  bool show;
} Progress;

static void progress_update(Progress *p, uint64_t bytes, const char *what) {
  p->done += bytes;
  if (!p->show) return;
  fprintf(stderr, "\rgptoss convert: %5.1f%%  %.2f / %.2f GB  %-40.40s", 100.0 * (double)p->done / (double)p->total,
          (double)p->done / 1e9, (double)p->total / 1e9, what);
  fflush(stderr);
}

/* Writes one file of the model directory; its size goes to *bytes_out and each dataset's
 * checksum to checksums[i]. */
static Status write_file(const Checkpoint *ckpt, const GptOssConfig *c, int64_t shard, const char *path,
                         void *buf, Progress *progress, uint64_t *bytes_out, uint64_t *checksums) {
  SpecSet set;
  Status st = make_specs(c, shard, &set);
  ModelFile *file = NULL;
  if (st == STATUS_OK) st = modeldir_create_file(path, &file);
  for (int64_t i = 0; st == STATUS_OK && i < set.count; i++) {
    st = read_slice(ckpt, &set.specs[i], buf);
    if (st == STATUS_OK) st = modeldir_write_tensor(file, &set.specs[i], buf, &checksums[i]);
    if (st == STATUS_OK) progress_update(progress, set.specs[i].num_bytes, path + (strlen(path) > 40 ? strlen(path) - 40 : 0));
  }
  Status close_st = modeldir_close_file(file);
  if (st == STATUS_OK) st = close_st;
  free(set.specs);
  struct stat sb;
  if (st == STATUS_OK && stat(path, &sb) != 0) st = status_error(STATUS_IO_ERROR, "cannot stat %s: %s", path, strerror(errno));
  if (st == STATUS_OK) *bytes_out = (uint64_t)sb.st_size;
  return st;
}

/* Largest single slice, so one buffer serves the whole conversion; also the total bytes. */
static Status plan_buffer(const GptOssConfig *c, size_t *max_bytes, uint64_t *total_bytes) {
  *max_bytes = 0;
  *total_bytes = 0;
  for (int64_t shard = -1; shard < config_num_shards(c); shard++) {
    SpecSet set;
    Status st = make_specs(c, shard, &set);
    if (st != STATUS_OK) return st;
    for (int64_t i = 0; i < set.count; i++) {
      if (set.specs[i].num_bytes > *max_bytes) *max_bytes = set.specs[i].num_bytes;
      *total_bytes += set.specs[i].num_bytes;
    }
    free(set.specs);
  }
  return STATUS_OK;
}

static void remove_tree(const char *dir, const GptOssConfig *c) {
  char path[4096];
  for (int64_t s = 0; s < config_num_shards(c); s++) {
    modeldir_shard_path(path, sizeof path, dir, s, config_num_shards(c));
    unlink(path);
  }
  modeldir_replicated_path(path, sizeof path, dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/manifest.h5", dir);
  unlink(path);
  rmdir(dir);
}

static Status write_model(const Checkpoint *ckpt, const GptOssConfig *c, const char *config_text,
                          const char *dir, bool show_progress) {
  const int64_t S = config_num_shards(c);
  size_t max_bytes = 0;
  Progress progress = {0, 0, show_progress};
  Status st = plan_buffer(c, &max_bytes, &progress.total);
  void *buf = st == STATUS_OK ? malloc(max_bytes ? max_bytes : 1) : NULL;
  uint64_t *file_bytes = calloc((size_t)S + 1, sizeof *file_bytes);
  const int64_t per_file = modeldir_checksums_per_file(c);
  uint64_t *checksums = calloc((size_t)((S + 1) * per_file), sizeof *checksums);
  if (st == STATUS_OK && (!buf || !file_bytes || !checksums)) st = status_error(STATUS_OUT_OF_MEMORY, "conversion buffer of %zu bytes", max_bytes);
  char path[4096];
  for (int64_t s = 0; st == STATUS_OK && s < S; s++) {
    modeldir_shard_path(path, sizeof path, dir, s, S);
    st = write_file(ckpt, c, s, path, buf, &progress, &file_bytes[s], checksums + s * per_file);
  }
  if (st == STATUS_OK) {
    modeldir_replicated_path(path, sizeof path, dir);
    st = write_file(ckpt, c, -1, path, buf, &progress, &file_bytes[S], checksums + S * per_file);
  }
  const void *vocab;
  size_t vocab_bytes;
  vocab_embedded(&vocab, &vocab_bytes);
  if (st == STATUS_OK) st = modeldir_write_manifest(dir, config_text, S, file_bytes, checksums, per_file, vocab, vocab_bytes);
  if (show_progress) fputc('\n', stderr);
  free(buf);
  free(file_bytes);
  free(checksums);
  return st;
}

/* Moves the finished directory into place; an old OUT (only with force) goes aside first and
 * is deleted after the new one is in place. */
static Status publish(const char *partial, const char *out, bool force) {
  struct stat sb;
  char aside[4096] = "";
  if (stat(out, &sb) == 0) {
    if (!force) return status_error(STATUS_IO_ERROR, "%s already exists; choose another --out or pass --force", out);
    snprintf(aside, sizeof aside, "%s.old-%ld", out, (long)getpid());
    if (rename(out, aside) != 0) return status_error(STATUS_IO_ERROR, "cannot move %s aside: %s", out, strerror(errno));
  }
  if (rename(partial, out) != 0) {
    Status st = status_error(STATUS_IO_ERROR, "cannot rename %s to %s: %s", partial, out, strerror(errno));
    if (aside[0]) rename(aside, out);
    return st;
  }
  if (aside[0]) {
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", aside);
    if (system(cmd) != 0) status_note("could not remove the replaced model at %s; delete it by hand", aside);
  }
  return STATUS_OK;
}

Status convert_checkpoint(const ConvertOptions *o) {
  struct stat sb;
  if (stat(o->out_dir, &sb) == 0 && !o->force) {
    return status_error(STATUS_IO_ERROR, "%s already exists; choose another --out or pass --force to replace it",
                        o->out_dir);
  }
  char config_path[4096];
  snprintf(config_path, sizeof config_path, "%s/config.json", o->checkpoint_dir);
  char *config_text = NULL;
  size_t config_len = 0;
  GptOssConfig config;
  Status st = io_read_text_file(config_path, 1 << 20, &config_text, &config_len);
  if (st == STATUS_OK) st = config_parse_json(config_text, config_len, config_path, &config);
  Checkpoint ckpt;
  memset(&ckpt, 0, sizeof ckpt);
  if (st == STATUS_OK) st = checkpoint_open(o->checkpoint_dir, &ckpt);
  if (st == STATUS_OK) st = convert_check_checkpoint(&ckpt, &config);
  char partial[4096];
  snprintf(partial, sizeof partial, "%s.partial-XXXXXX", o->out_dir);
  if (st == STATUS_OK && !mkdtemp(partial)) {
    st = status_error(STATUS_IO_ERROR, "cannot create %s: %s", partial, strerror(errno));
    partial[0] = '\0';
  }
  /* mkdtemp makes the directory private; a model is meant to be read by other users' jobs. */
  if (st == STATUS_OK && chmod(partial, 0755) != 0) st = status_error(STATUS_IO_ERROR, "cannot chmod %s: %s", partial, strerror(errno));
  if (st == STATUS_OK) st = write_model(&ckpt, &config, config_text, partial, o->progress && isatty(2));
  if (st == STATUS_OK) st = publish(partial, o->out_dir, o->force);
  if (st != STATUS_OK && partial[0] && stat(partial, &sb) == 0) remove_tree(partial, &config);
  checkpoint_close(&ckpt);
  free(config_text);
  return st;
}
