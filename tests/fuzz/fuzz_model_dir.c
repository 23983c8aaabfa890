/* Fuzz target: the model directory's manifest reader (io/model_dir.c). HDF5 itself is not what
 * is fuzzed (its own parser is not ours to fix): the input says what a manifest.h5 holds and
 * this harness writes it with HDF5, so every attribute and dataset the reader trusts — format
 * name, format version, shard count, config.json text, file sizes, checksums, the tokenizer —
 * can be missing, of another type or shape, or of another size.
 *
 * Input: 10 control bytes, then the config.json text.
 *   [0] format: 0 right, 1 another name, 2 absent, 3 an integer   [1] format_version: 0 = 1,
 *   1 absent, 2 = 999, 3 a string, else the byte    [2] num_shards: 0 = [3], 1 absent, 2 = 0,
 *   3 a huge value    [4] file_bytes count - (num_shards + 1), signed    [5..6] checksums count -
 *   expected, signed 16-bit    [7] config_json: 0 u8 1-d, 1 u8 2-d, 2 u64, 3 absent
 *   [8] tokenizer: 0 a few bytes, 1 absent, 2 empty    [9] u64 datasets as: 0 u64, 1 u8, 2 f32 */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "io/config_json.h"
#include "io/model_dir.h"
#include "tests/fuzz/fuzz_util.h"

enum { CONTROL_BYTES = 10 };

static void string_attr(hid_t obj, const char *name, const char *value) {
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, strlen(value) + 1);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, type, value);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

static void u64_attr(hid_t obj, const char *name, uint64_t value) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(obj, name, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(attr, H5T_NATIVE_UINT64, &value);
  H5Aclose(attr);
  H5Sclose(space);
}

static void dataset(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                    const void *data) {
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t dset = H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (dset >= 0 && data) H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (dset >= 0) H5Dclose(dset);
  H5Sclose(space);
}

/* A u64 dataset of `count` values 0, 1, 2, ... stored as the type `as` picks. */
static void counted_dataset(hid_t file, const char *name, int64_t count, uint8_t as) {
  if (count < 0 || count > (1 << 16)) return; /* absent */
  uint64_t *values = calloc((size_t)count + 1, sizeof *values);
  if (!values) fuzz_fail("out of memory");
  for (int64_t i = 0; i < count; i++) values[i] = (uint64_t)i * 4096;
  const hsize_t dims[1] = {(hsize_t)count};
  const hid_t type = as == 1 ? H5T_STD_U8LE : as == 2 ? H5T_IEEE_F32LE : H5T_STD_U64LE;
  dataset(file, name, type, H5T_NATIVE_UINT64, 1, dims, count ? values : NULL);
  free(values);
}

static void write_attributes(hid_t root, const uint8_t *c) {
  if (c[0] == 0) string_attr(root, "format", MODEL_FORMAT_NAME);
  if (c[0] == 1) string_attr(root, "format", "gptoss-mpi modem");
  if (c[0] == 3) u64_attr(root, "format", 1);
  if (c[1] == 0) u64_attr(root, "format_version", MODEL_FORMAT_VERSION);
  else if (c[1] == 2) u64_attr(root, "format_version", 999);
  else if (c[1] == 3) string_attr(root, "format_version", "1");
  else if (c[1] != 1) u64_attr(root, "format_version", c[1]);
  if (c[2] == 0) u64_attr(root, "num_shards", c[3]);
  if (c[2] == 2) u64_attr(root, "num_shards", 0);
  if (c[2] == 3) u64_attr(root, "num_shards", UINT64_MAX - c[3]);
}

static void write_manifest(const char *path, const uint8_t *c, const char *config, size_t config_bytes) {
  hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file < 0) fuzz_fail("cannot create the manifest");
  hid_t root = H5Gopen2(file, "/", H5P_DEFAULT);
  write_attributes(root, c);
  H5Gclose(root);
  const hsize_t flat[1] = {config_bytes}, square[2] = {1, config_bytes};
  if (c[7] == 0) dataset(file, "config_json", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, flat, config_bytes ? config : NULL);
  if (c[7] == 1) dataset(file, "config_json", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 2, square, config_bytes ? config : NULL);
  if (c[7] == 2) counted_dataset(file, "config_json", (int64_t)config_bytes / 8, 0);
  /* The counts the reader will expect, if the config is one. */
  GptOssConfig parsed;
  const bool valid = config_parse_json(config, config_bytes, "fuzz", &parsed) == STATUS_OK;
  const int64_t num_shards = c[2] == 0 ? c[3] : 1;
  const int64_t per_file = valid ? modeldir_checksums_per_file(&parsed) : 1;
  counted_dataset(file, "file_bytes", num_shards + 1 + (int8_t)c[4], c[9]);
  counted_dataset(file, "checksums", (num_shards + 1) * per_file + (int16_t)(c[5] | c[6] << 8), c[9]);
  const hsize_t tokenizer_dims[1] = {c[8] == 2 ? 0 : 5};
  if (c[8] != 1) dataset(file, "tokenizer", H5T_STD_U8LE, H5T_NATIVE_UCHAR, 1, tokenizer_dims, "abcde");
  H5Fclose(file);
}

static void check_manifest(const Manifest *m) {
  if (m->num_shards != config_num_shards(&m->config)) fuzz_fail("accepted a shard count the config disagrees with");
  if (!m->file_bytes || !m->checksums) fuzz_fail("accepted a manifest without sizes or checksums");
  /* The loader reads every entry: touch the last of each. */
  volatile uint64_t sink = m->file_bytes[m->num_shards];
  sink += m->checksums[(m->num_shards + 1) * m->checksums_per_file - 1];
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < CONTROL_BYTES) return 0;
  const char *dir = fuzz_scratch_dir();
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  char path[4200];
  snprintf(path, sizeof path, "%s/manifest.h5", dir);
  write_manifest(path, data, (const char *)data + CONTROL_BYTES, size - CONTROL_BYTES);
  Manifest m;
  if (modeldir_read_manifest(dir, &m) == STATUS_OK) {
    check_manifest(&m);
    modeldir_free_manifest(&m);
  }
  char *tokenizer = NULL;
  size_t tokenizer_bytes = 0;
  if (modeldir_read_tokenizer(dir, &tokenizer, &tokenizer_bytes) == STATUS_OK && tokenizer_bytes > 5) {
    fuzz_fail("the tokenizer read back larger than written");
  }
  free(tokenizer);
  fuzz_remove_file("manifest.h5");
  return 0;
}
