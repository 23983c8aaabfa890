/* HDF5 side of the model directory (see model_dir.h). The only file that includes hdf5.h
 * besides the test tools; HDF5's own error printing is switched off and every failure is
 * reported with the file and dataset it concerns. */
#define _GNU_SOURCE /* MADV_HUGEPAGE */
#include "io/model_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/checksum.h"
#include "io/config_json.h"
#include "io/tokenizer.h"

struct ModelFile {
  hid_t file;
  char path[4096];
};

/* HDF5's own error printing is replaced by our messages. File locking is switched off (unless
 * the user set HDF5_USE_FILE_LOCKING): model files are written once, by a single converter, and
 * then only read — and flock fails on many cluster filesystems (NFS, Lustre), where it would
 * otherwise stop every rank from opening its shard. */
static void quiet_hdf5(void) {
  setenv("HDF5_USE_FILE_LOCKING", "FALSE", /*overwrite=*/0);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void modeldir_shard_path(char *out, size_t size, const char *dir, int64_t shard, int64_t num_shards) {
  snprintf(out, size, "%s/shard-%05lld-of-%05lld.h5", dir, (long long)shard, (long long)num_shards);
}

void modeldir_replicated_path(char *out, size_t size, const char *dir) {
  snprintf(out, size, "%s/replicated.h5", dir);
}

static hid_t hdf5_type(DType dtype) { return dtype == DTYPE_BF16 ? H5T_STD_U16LE : H5T_STD_U8LE; }

/* ---------- attributes ---------- */

static herr_t write_string_attr(hid_t obj, const char *name, const char *value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, strlen(value) + 1);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = attr < 0 ? -1 : H5Awrite(attr, type, value);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  return err;
}

static herr_t write_u64_attr(hid_t obj, const char *name, uint64_t value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = attr < 0 ? -1 : H5Awrite(attr, H5T_NATIVE_UINT64, &value);
  if (attr >= 0) H5Aclose(attr);
  H5Sclose(space);
  return err;
}

static herr_t read_u64_attr(hid_t obj, const char *name, uint64_t *value) {
  if (H5Aexists(obj, name) <= 0) return -1;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  herr_t err = attr < 0 ? -1 : H5Aread(attr, H5T_NATIVE_UINT64, value);
  if (attr >= 0) H5Aclose(attr);
  return err;
}

/* Returns a malloc'd copy of a string attribute, or NULL. */
static char *read_string_attr(hid_t obj, const char *name) {
  if (H5Aexists(obj, name) <= 0) return NULL;
  hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t type = attr < 0 ? -1 : H5Aget_type(attr);
  char *value = NULL;
  if (type >= 0 && H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
    size_t size = H5Tget_size(type);
    value = calloc(size + 1, 1);
    if (value && H5Aread(attr, type, value) < 0) {
      free(value);
      value = NULL;
    }
  }
  if (type >= 0) H5Tclose(type);
  if (attr >= 0) H5Aclose(attr);
  return value;
}

/* ---------- writing ---------- */

Status modeldir_create_file(const char *path, ModelFile **out) {
  quiet_hdf5();
  ModelFile *f = calloc(1, sizeof *f);
  if (!f) return status_error(STATUS_OUT_OF_MEMORY, "model file handle");
  snprintf(f->path, sizeof f->path, "%s", path);
  /* Every object at a 64-byte boundary, so a loader can map the file and use each tensor's
   * bytes where they lie (bf16 needs 2-byte alignment; 64 keeps vectors within cache lines). */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_alignment(fapl, 0, MODEL_TENSOR_ALIGNMENT);
  f->file = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (f->file < 0) {
    free(f);
    return status_error(STATUS_IO_ERROR, "cannot create %s (is the disk full or the directory read-only?)", path);
  }
  *out = f;
  return STATUS_OK;
}

Status modeldir_write_tensor(ModelFile *f, const TensorSpec *spec, const void *data, uint64_t *checksum_out) {
  hsize_t dims[TENSOR_MAX_DIMS];
  for (int d = 0; d < spec->num_dims; d++) dims[d] = (hsize_t)spec->shape[d];
  hid_t space = H5Screate_simple(spec->num_dims, dims, NULL);
  hid_t dset = H5Dcreate2(f->file, spec->name, hdf5_type(spec->dtype), space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = dset < 0 ? -1 : H5Dwrite(dset, hdf5_type(spec->dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (err >= 0) err = write_string_attr(dset, "dtype", dtype_name(spec->dtype));
  *checksum_out = checksum64(data, spec->num_bytes);
  if (dset >= 0) H5Dclose(dset);
  H5Sclose(space);
  if (err < 0) return status_error(STATUS_IO_ERROR, "cannot write dataset %s to %s (disk full?)", spec->name, f->path);
  return STATUS_OK;
}

Status modeldir_close_file(ModelFile *f) {
  if (!f) return STATUS_OK;
  herr_t err = H5Fclose(f->file);
  Status st = err < 0 ? status_error(STATUS_IO_ERROR, "cannot finish writing %s (disk full?)", f->path) : STATUS_OK;
  free(f);
  return st;
}

int64_t modeldir_checksums_per_file(const GptOssConfig *c) {
  const int64_t shard = weights_shard_spec_count(c), replicated = weights_replicated_spec_count(c);
  return shard > replicated ? shard : replicated;
}

static herr_t write_u64_dataset(hid_t file, const char *name, int num_dims, const hsize_t *dims, const uint64_t *data) {
  hid_t space = H5Screate_simple(num_dims, dims, NULL);
  hid_t dset = H5Dcreate2(file, name, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = dset < 0 ? -1 : H5Dwrite(dset, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (dset >= 0) H5Dclose(dset);
  H5Sclose(space);
  return err;
}

static herr_t write_u8_dataset(hid_t file, const char *name, const void *data, size_t num_bytes) {
  const hsize_t len = num_bytes;
  hid_t space = H5Screate_simple(1, &len, NULL);
  hid_t dset = H5Dcreate2(file, name, H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t err = dset < 0 ? -1 : H5Dwrite(dset, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (dset >= 0) H5Dclose(dset);
  H5Sclose(space);
  return err;
}

Status modeldir_write_manifest(const char *dir, const char *config_json, int64_t num_shards,
                               const uint64_t *file_bytes, const uint64_t *checksums, int64_t checksums_per_file,
                               const void *tokenizer, size_t tokenizer_bytes) {
  quiet_hdf5();
  char path[4096];
  snprintf(path, sizeof path, "%s/manifest.h5", dir);
  hid_t file = H5Fcreate(path, H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) return status_error(STATUS_IO_ERROR, "cannot create %s", path);
  hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  herr_t err = write_string_attr(root, "format", MODEL_FORMAT_NAME);
  if (err >= 0) err = write_u64_attr(root, "format_version", MODEL_FORMAT_VERSION);
  if (err >= 0) err = write_u64_attr(root, "num_shards", (uint64_t)num_shards);
  if (err >= 0) {
    err = write_string_attr(root, "plan",
                            "shard s = KV head s with its query heads; experts and vocabulary rows "
                            "[floor(s*n/S), floor((s+1)*n/S)); norms, router and o_proj bias in replicated.h5");
  }
  H5Gclose(root);
  /* config.json can outgrow an attribute's 64 KiB: keep it (and the tokenizer) as byte datasets. */
  if (err >= 0) err = write_u8_dataset(file, "config_json", config_json, strlen(config_json));
  if (err >= 0) err = write_u8_dataset(file, "tokenizer", tokenizer, tokenizer_bytes);
  const hsize_t dims[2] = {(hsize_t)num_shards + 1, (hsize_t)checksums_per_file};
  if (err >= 0) err = write_u64_dataset(file, "file_bytes", 1, dims, file_bytes);
  if (err >= 0) err = write_u64_dataset(file, "checksums", 2, dims, checksums);
  if (H5Fclose(file) < 0) err = -1;
  if (err < 0) return status_error(STATUS_IO_ERROR, "cannot write %s (disk full?)", path);
  return STATUS_OK;
}

/* ---------- reading ---------- */

/* Reads a byte dataset of at most max_bytes. The bound comes first: a damaged or hostile manifest
 * can declare a dataset of any size without storing it, and reading it would fill that much
 * memory with its fill value. */
static Status read_u8_dataset(hid_t file, const char *name, const char *path, size_t max_bytes, char **out,
                              size_t *num_bytes_out) {
  hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
  if (dset < 0) return status_error(STATUS_BAD_FORMAT, "%s: missing dataset %s", path, name);
  hid_t space = H5Dget_space(dset);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  H5Sclose(space);
  if (n > (hssize_t)max_bytes) {
    H5Dclose(dset);
    return status_error(STATUS_BAD_FORMAT, "%s: dataset %s holds %lld bytes, more than the %zu it may (damaged? re-run gptoss convert)",
                        path, name, (long long)n, max_bytes);
  }
  char *buf = n >= 0 ? calloc((size_t)n + 1, 1) : NULL;
  if (!buf || H5Dread(dset, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    free(buf);
    H5Dclose(dset);
    return status_error(STATUS_BAD_FORMAT, "%s: cannot read dataset %s", path, name);
  }
  H5Dclose(dset);
  *out = buf;
  if (num_bytes_out) *num_bytes_out = (size_t)n;
  return STATUS_OK;
}

/* Reads a u64 dataset that must hold exactly `count` values into a new array. */
static Status read_u64_dataset(hid_t file, const char *path, const char *name, int64_t count, uint64_t **out) {
  hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
  if (dset < 0) return status_error(STATUS_BAD_FORMAT, "%s: missing dataset %s", path, name);
  hid_t space = H5Dget_space(dset);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  H5Sclose(space);
  Status st = STATUS_OK;
  *out = n == count ? calloc((size_t)n, sizeof **out) : NULL;
  if (!*out || H5Dread(dset, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
    st = status_error(STATUS_BAD_FORMAT, "%s: dataset %s must hold %lld values", path, name, (long long)count);
  }
  H5Dclose(dset);
  return st;
}

Status modeldir_read_manifest(const char *dir, Manifest *m) {
  quiet_hdf5();
  memset(m, 0, sizeof *m);
  char path[4096];
  snprintf(path, sizeof path, "%s/manifest.h5", dir);
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return status_error(STATUS_IO_ERROR, "model directory %s: %s (give --model the directory `gptoss convert --out` wrote)",
                        dir, stat(dir, &sb) != 0 ? strerror(errno) : "not a directory");
  }
  if (stat(path, &sb) != 0) {
    return status_error(STATUS_IO_ERROR, "%s: %s (not a converted model, or its conversion did not finish; run gptoss convert)",
                        path, strerror(errno));
  }
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) return status_error(STATUS_BAD_FORMAT, "%s is not a readable HDF5 file (damaged? re-run gptoss convert)", path);
  hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  char *format = read_string_attr(root, "format");
  uint64_t version = 0, num_shards = 0;
  Status st = STATUS_OK;
  if (!format || strcmp(format, MODEL_FORMAT_NAME) != 0 || read_u64_attr(root, "format_version", &version) < 0) {
    st = status_error(STATUS_BAD_FORMAT, "%s is not a gptoss-mpi manifest (no format/format_version attributes)", path);
  } else if (version != MODEL_FORMAT_VERSION) {
    st = status_error(STATUS_MISMATCH,
                      "%s was written in model format version %llu, but this gptoss reads version %d: "
                      "convert the checkpoint again with this gptoss",
                      dir, (unsigned long long)version, MODEL_FORMAT_VERSION);
  } else if (read_u64_attr(root, "num_shards", &num_shards) < 0 || num_shards == 0) {
    st = status_error(STATUS_BAD_FORMAT, "%s: missing num_shards", path);
  }
  free(format);
  H5Gclose(root);
  m->format_version = (int64_t)version;
  m->num_shards = (int64_t)num_shards;
  char *config_text = NULL;
  if (st == STATUS_OK) st = read_u8_dataset(file, "config_json", path, CONFIG_JSON_MAX_BYTES, &config_text, NULL);
  if (st == STATUS_OK) st = config_parse_json(config_text, strlen(config_text), path, &m->config);
  free(config_text);
  if (st == STATUS_OK && config_num_shards(&m->config) != m->num_shards) {
    st = status_error(STATUS_MISMATCH, "%s: num_shards %lld does not match num_key_value_heads %lld", path,
                      (long long)m->num_shards, (long long)config_num_shards(&m->config));
  }
  m->checksums_per_file = modeldir_checksums_per_file(&m->config);
  if (st == STATUS_OK) st = read_u64_dataset(file, path, "file_bytes", m->num_shards + 1, &m->file_bytes);
  if (st == STATUS_OK) {
    st = read_u64_dataset(file, path, "checksums", (m->num_shards + 1) * m->checksums_per_file, &m->checksums);
  }
  H5Fclose(file);
  if (st != STATUS_OK) modeldir_free_manifest(m);
  return st;
}

Status modeldir_read_tokenizer(const char *dir, char **data_out, size_t *num_bytes_out) {
  quiet_hdf5();
  char path[4096];
  snprintf(path, sizeof path, "%s/manifest.h5", dir);
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) return status_error(STATUS_BAD_FORMAT, "%s is not a readable HDF5 file (damaged? re-run gptoss convert)", path);
  Status st = read_u8_dataset(file, "tokenizer", path, TOKENIZER_FILE_MAX_BYTES, data_out, num_bytes_out);
  H5Fclose(file);
  return st;
}

void modeldir_free_manifest(Manifest *m) {
  free(m->file_bytes);
  free(m->checksums);
  m->file_bytes = NULL;
  m->checksums = NULL;
}

/* Checks one dataset against its spec and finds its bytes in the mapped file. */
static Status locate_tensor(hid_t file, const char *path, const TensorSpec *spec, const char *map, uint64_t map_bytes,
                            const uint64_t *checksum) {
  hid_t dset = H5Dopen2(file, spec->name, H5P_DEFAULT);
  if (dset < 0) return status_error(STATUS_BAD_FORMAT, "%s: missing dataset %s (damaged file? re-run gptoss convert)", path, spec->name);
  Status st = STATUS_OK;
  hid_t space = H5Dget_space(dset), type = H5Dget_type(dset);
  hsize_t dims[TENSOR_MAX_DIMS] = {0};
  const int ndims = H5Sget_simple_extent_ndims(space);
  int shape_ok = ndims == spec->num_dims && H5Sget_simple_extent_dims(space, dims, NULL) == ndims;
  for (int d = 0; shape_ok && d < ndims; d++) shape_ok = dims[d] == (hsize_t)spec->shape[d];
  const haddr_t offset = spec->num_bytes > 0 ? H5Dget_offset(dset) : 0;
  if (!shape_ok || H5Tget_size(type) != dtype_bytes(spec->dtype)) {
    st = status_error(STATUS_MISMATCH, "%s: dataset %s does not have the shape and dtype the config implies", path, spec->name);
  } else if (offset == HADDR_UNDEF || offset % MODEL_TENSOR_ALIGNMENT != 0 || offset > map_bytes ||
             spec->num_bytes > map_bytes - offset) { /* not offset + num_bytes: a hostile offset wraps it */
    st = status_error(STATUS_BAD_FORMAT,
                      "%s: dataset %s is not stored contiguously at an aligned offset inside the file "
                      "(damaged, or written by another tool); re-run gptoss convert",
                      path, spec->name);
  } else if (checksum && *checksum != checksum64(map + offset, spec->num_bytes)) {
    st = status_error(STATUS_BAD_FORMAT,
                      "%s: dataset %s does not match the manifest's checksum: the file is damaged or from "
                      "another model; copy it again or re-run gptoss convert",
                      path, spec->name);
  }
  if (st == STATUS_OK && spec->dest) *spec->dest = map + offset;
  H5Tclose(type);
  H5Sclose(space);
  H5Dclose(dset);
  return st;
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older kernels refuse it and map_file falls back */
#endif

/* Faults every page of a fresh mapping in now, so the first token does not wait on the disk.
 * Returns 0, or the errno of a read that failed (the file could not be read: EIO, EFAULT...). A
 * kernel without MADV_POPULATE_READ (EINVAL) gets the pages touched one by one instead. */
static int populate(void *map, size_t num_bytes) {
  if (madvise(map, num_bytes, MADV_POPULATE_READ) == 0) return 0;
  if (errno != EINVAL) return errno;
  const long page = sysconf(_SC_PAGESIZE);
  volatile const uint8_t *bytes = map;
  for (size_t i = 0; i < num_bytes; i += (size_t)page) (void)bytes[i];
  return 0;
}

/* Maps a whole model file read-only and reads it in. The weights are streamed end to end every
 * token, so the mapping asks for transparent huge pages first: a file not yet in the page cache is
 * then read into 2 MiB folios mapped by one TLB entry each. On Zen 4 (kernel 6.18, ext4) that took
 * the PMD-mapped share of a cold-loaded model from 91 % to 99.6 % and decode a median 1.065x faster
 * over ten alternating cold-cache runs (BENCHMARKS.md). Where the kernel has no THP for files the
 * advice is refused and nothing changes. */
static Status map_file(const char *path, uint64_t expected_bytes, FileMap *out) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    return status_error(STATUS_IO_ERROR, "%s: %s (the model directory is incomplete; re-run gptoss convert or copy the file)",
                        path, strerror(errno));
  }
  if ((uint64_t)sb.st_size != expected_bytes) {
    return status_error(STATUS_BAD_FORMAT,
                        "%s is %llu bytes but the manifest recorded %llu: the file is truncated or damaged; "
                        "copy it again or re-run gptoss convert",
                        path, (unsigned long long)sb.st_size, (unsigned long long)expected_bytes);
  }
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return status_error(STATUS_IO_ERROR, "cannot open %s: %s", path, strerror(errno));
  void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return status_error(STATUS_OUT_OF_MEMORY, "cannot map %s: %s", path, strerror(errno));
  (void)madvise(map, (size_t)sb.st_size, MADV_HUGEPAGE); /* advice only: refused without THP */
  const int read_error = populate(map, (size_t)sb.st_size);
  if (read_error != 0) {
    munmap(map, (size_t)sb.st_size);
    return status_error(STATUS_IO_ERROR, "cannot read %s: %s (a disk or network filesystem error; copy the file again)",
                        path, strerror(read_error));
  }
  out->base = map;
  out->num_bytes = (size_t)sb.st_size;
  return STATUS_OK;
}

Status modeldir_map_tensors(const char *path, uint64_t expected_bytes, const TensorSpec *specs, int64_t num_specs,
                            const uint64_t *checksums, FileMap *map_out) {
  quiet_hdf5();
  Status st = map_file(path, expected_bytes, map_out);
  if (st != STATUS_OK) return st;
  hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) return status_error(STATUS_BAD_FORMAT, "%s is not a readable HDF5 file (damaged? re-run gptoss convert)", path);
  for (int64_t i = 0; i < num_specs && st == STATUS_OK; i++) {
    st = locate_tensor(file, path, &specs[i], map_out->base, map_out->num_bytes, checksums ? &checksums[i] : NULL);
  }
  H5Fclose(file);
  return st;
}

void modeldir_unmap(FileMap *map) {
  if (map->base) munmap(map->base, map->num_bytes);
  map->base = NULL;
  map->num_bytes = 0;
}

/* ---------- whole weight sets ---------- */

Status modeldir_load_weights(const char *dir, const Manifest *m, Range shards, bool verify, LoadedWeights *w) {
  memset(w, 0, sizeof *w);
  w->shard_range = shards;
  const GptOssConfig *c = &m->config;
  const int64_t num_local = range_size(shards);
  const int64_t n_rep = weights_replicated_spec_count(c), n_shard = weights_shard_spec_count(c);
  TensorSpec *specs = calloc((size_t)(n_rep > n_shard ? n_rep : n_shard), sizeof *specs);
  w->shard_maps = calloc((size_t)num_local, sizeof *w->shard_maps);
  w->shards = calloc((size_t)num_local, sizeof *w->shards);
  Status st = specs && w->shard_maps && w->shards ? STATUS_OK : status_error(STATUS_OUT_OF_MEMORY, "weight tables");
  char path[4096];
  if (st == STATUS_OK) {
    w->num_bytes += weights_replicated_specs(c, &w->replicated, specs);
    modeldir_replicated_path(path, sizeof path, dir);
    const uint64_t *sums = verify ? m->checksums + m->num_shards * m->checksums_per_file : NULL;
    st = modeldir_map_tensors(path, m->file_bytes[m->num_shards], specs, n_rep, sums, &w->replicated_map);
  }
  for (int64_t i = 0; st == STATUS_OK && i < num_local; i++) {
    const int64_t shard = shards.begin + i;
    w->num_bytes += weights_shard_specs(c, shard, &w->shards[i], specs);
    modeldir_shard_path(path, sizeof path, dir, shard, m->num_shards);
    const uint64_t *sums = verify ? m->checksums + shard * m->checksums_per_file : NULL;
    st = modeldir_map_tensors(path, m->file_bytes[shard], specs, n_shard, sums, &w->shard_maps[i]);
  }
  free(specs);
  return st;
}

void modeldir_free_weights(LoadedWeights *w) {
  for (int64_t i = 0; w->shard_maps && i < range_size(w->shard_range); i++) modeldir_unmap(&w->shard_maps[i]);
  free(w->shard_maps);
  free(w->shards);
  modeldir_unmap(&w->replicated_map);
  memset(w, 0, sizeof *w);
}
