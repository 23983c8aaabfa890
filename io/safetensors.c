/* safetensors reader (see safetensors.h). The format: 8-byte little-endian header length N, N
 * bytes of JSON {name: {dtype, shape, data_offsets: [begin, end)}, "__metadata__": {...}}, then
 * the data; offsets count from the end of the header. A header is untrusted input: every
 * number is checked against the file before it is used. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER_BYTES (100u << 20)

size_t safetensors_dtype_bytes(const char *dtype) {
  static const struct { const char *name; size_t bytes; } TABLE[] = {
      {"BF16", 2}, {"F16", 2}, {"F32", 4}, {"F64", 8}, {"U8", 1}, {"I8", 1}, {"U16", 2},
      {"I16", 2}, {"U32", 4}, {"I32", 4}, {"U64", 8}, {"I64", 8}, {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
  };
  for (size_t i = 0; i < sizeof TABLE / sizeof TABLE[0]; i++) {
    if (!strcmp(dtype, TABLE[i].name)) return TABLE[i].bytes;
  }
  return 0;
}

static Status read_exact(int fd, void *dst, size_t n, uint64_t offset, const char *path) {
  size_t done = 0;
  while (done < n) {
    ssize_t got = pread(fd, (char *)dst + done, n - done, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return status_error(STATUS_IO_ERROR, "cannot read %s: %s", path, strerror(errno));
    if (got == 0) {
      return status_error(STATUS_BAD_FORMAT, "%s ends early: wanted %zu bytes at offset %llu (truncated download?)",
                          path, n, (unsigned long long)(offset + done));
    }
    done += (size_t)got;
  }
  return STATUS_OK;
}

static Status parse_tensor_entry(const char *path, const char *name, json_t *entry, uint64_t data_start,
                                 uint64_t data_bytes, StTensor *t) {
  memset(t, 0, sizeof *t);
  if (strlen(name) >= sizeof t->name) return status_error(STATUS_BAD_FORMAT, "%s: tensor name too long: %.60s...", path, name);
  strcpy(t->name, name);
  json_t *dtype = json_object_get(entry, "dtype"), *shape = json_object_get(entry, "shape");
  json_t *offsets = json_object_get(entry, "data_offsets");
  if (!json_is_object(entry) || !json_is_string(dtype) || !json_is_array(shape) || !json_is_array(offsets) ||
      json_array_size(offsets) != 2 || json_array_size(shape) > TENSOR_MAX_DIMS) {
    return status_error(STATUS_BAD_FORMAT,
                        "%s: header entry for %s must have a dtype string, a shape of at most %d dims and "
                        "data_offsets [begin, end]",
                        path, name, TENSOR_MAX_DIMS);
  }
  snprintf(t->dtype, sizeof t->dtype, "%s", json_string_value(dtype));
  const size_t elem = safetensors_dtype_bytes(t->dtype);
  if (elem == 0) return status_error(STATUS_BAD_FORMAT, "%s: tensor %s has unknown dtype %s", path, name, t->dtype);
  uint64_t numel = 1;
  t->num_dims = (int)json_array_size(shape);
  for (int d = 0; d < t->num_dims; d++) {
    json_t *dim = json_array_get(shape, (size_t)d);
    if (!json_is_integer(dim) || json_integer_value(dim) < 0 || json_integer_value(dim) > (1LL << 40)) {
      return status_error(STATUS_BAD_FORMAT, "%s: tensor %s has an invalid shape", path, name);
    }
    t->shape[d] = json_integer_value(dim);
    /* Each dimension is below 2^40, but their product can still wrap a uint64 and then match a
     * small data_offsets span: refuse any element count no file could hold. */
    if (t->shape[d] != 0 && numel > (UINT64_MAX / 16) / (uint64_t)t->shape[d]) {
      return status_error(STATUS_BAD_FORMAT, "%s: tensor %s has a shape too large for any file", path, name);
    }
    numel *= (uint64_t)t->shape[d];
  }
  json_t *b = json_array_get(offsets, 0), *e = json_array_get(offsets, 1);
  if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
      json_integer_value(e) < json_integer_value(b)) {
    return status_error(STATUS_BAD_FORMAT, "%s: tensor %s has invalid data_offsets", path, name);
  }
  const uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
  if (end > data_bytes) {
    return status_error(STATUS_BAD_FORMAT,
                        "%s: tensor %s claims bytes [%llu, %llu) but the file holds only %llu data bytes "
                        "(truncated file or corrupt header; download it again)",
                        path, name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_bytes);
  }
  if (end - begin != numel * elem) {
    return status_error(STATUS_BAD_FORMAT,
                        "%s: tensor %s: data_offsets span %llu bytes but shape x dtype %s needs %llu",
                        path, name, (unsigned long long)(end - begin), t->dtype, (unsigned long long)(numel * elem));
  }
  t->offset = data_start + begin;
  t->num_bytes = end - begin;
  return STATUS_OK;
}

static int compare_by_offset(const void *a, const void *b) {
  const StTensor *x = a, *y = b;
  if (x->file != y->file) return x->file < y->file ? -1 : 1;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Two tensors sharing bytes means the header lies; reading either would give garbage. Each
 * tensor is checked against the furthest end of all before it in its file, not only against its
 * neighbour: an empty tensor between two overlapping ones must not hide the overlap. */
static Status check_no_overlap(Checkpoint *ckpt) {
  if (ckpt->num_tensors < 2) return STATUS_OK; /* also: memcpy from a NULL table is undefined */
  StTensor *sorted = malloc((size_t)ckpt->num_tensors * sizeof *sorted + 1);
  if (!sorted) return status_error(STATUS_OUT_OF_MEMORY, "checkpoint tensor table");
  memcpy(sorted, ckpt->tensors, (size_t)ckpt->num_tensors * sizeof *sorted);
  qsort(sorted, (size_t)ckpt->num_tensors, sizeof *sorted, compare_by_offset);
  Status st = STATUS_OK;
  const StTensor *furthest = &sorted[0]; /* of the tensors before cur in its file, the one ending last */
  for (int64_t i = 1; i < ckpt->num_tensors && st == STATUS_OK; i++) {
    const StTensor *cur = &sorted[i];
    if (furthest->file != cur->file) {
      furthest = cur;
      continue;
    }
    if (furthest->offset + furthest->num_bytes > cur->offset && cur->num_bytes > 0) {
      st = status_error(STATUS_BAD_FORMAT, "%s: tensors %s and %s overlap in the file (corrupt header)",
                        ckpt->files[cur->file].path, furthest->name, cur->name);
    }
    if (cur->offset + cur->num_bytes > furthest->offset + furthest->num_bytes) furthest = cur;
  }
  free(sorted);
  return st;
}

static Status add_file(Checkpoint *ckpt, const char *path, int *index_out) {
  StFile *files = realloc(ckpt->files, (size_t)(ckpt->num_files + 1) * sizeof *files);
  if (!files) return status_error(STATUS_OUT_OF_MEMORY, "checkpoint file table");
  ckpt->files = files;
  StFile *f = &files[ckpt->num_files];
  snprintf(f->path, sizeof f->path, "%s", path);
  f->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (f->fd < 0) return status_error(STATUS_IO_ERROR, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(f->fd, &sb) != 0) {
    close(f->fd);
    return status_error(STATUS_IO_ERROR, "cannot stat %s: %s", path, strerror(errno));
  }
  f->size = (uint64_t)sb.st_size;
  *index_out = ckpt->num_files++;
  return STATUS_OK;
}

static Status load_header(Checkpoint *ckpt, int file) {
  const StFile *f = &ckpt->files[file];
  uint8_t len_bytes[8];
  if (f->size < 8) {
    return status_error(STATUS_BAD_FORMAT, "%s is %llu bytes, too short to be a safetensors file (truncated?)",
                        f->path, (unsigned long long)f->size);
  }
  Status st = read_exact(f->fd, len_bytes, 8, 0, f->path);
  if (st != STATUS_OK) return st;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > MAX_HEADER_BYTES || header_len > f->size - 8) {
    return status_error(STATUS_BAD_FORMAT,
                        "%s: header length %llu does not fit the file of %llu bytes (truncated or not safetensors)",
                        f->path, (unsigned long long)header_len, (unsigned long long)f->size);
  }
  char *text = malloc(header_len + 1);
  if (!text) return status_error(STATUS_OUT_OF_MEMORY, "%s: header of %llu bytes", f->path, (unsigned long long)header_len);
  st = read_exact(f->fd, text, header_len, 8, f->path);
  json_error_t err;
  json_t *root = st == STATUS_OK ? json_loadb(text, header_len, JSON_REJECT_DUPLICATES, &err) : NULL;
  free(text);
  if (st != STATUS_OK) return st;
  if (!root || !json_is_object(root)) {
    json_decref(root);
    return status_error(STATUS_BAD_FORMAT, "%s: the header is not a JSON object (line %d, column %d: %s)", f->path,
                        root ? 0 : err.line, root ? 0 : err.column, root ? "not an object" : err.text);
  }
  const uint64_t data_start = 8 + header_len;
  StTensor *grown = realloc(ckpt->tensors, (size_t)(ckpt->num_tensors + (int64_t)json_object_size(root)) * sizeof *grown);
  if (!grown) st = status_error(STATUS_OUT_OF_MEMORY, "checkpoint tensor table");
  else ckpt->tensors = grown;
  const char *name;
  json_t *entry;
  json_object_foreach(root, name, entry) {
    if (st != STATUS_OK) break;
    if (!strcmp(name, "__metadata__")) continue;
    StTensor *t = &ckpt->tensors[ckpt->num_tensors];
    st = parse_tensor_entry(f->path, name, entry, data_start, f->size - data_start, t);
    if (st != STATUS_OK) break;
    t->file = file;
    ckpt->num_tensors++;
  }
  json_decref(root);
  return st;
}

static int compare_by_name(const void *a, const void *b) {
  return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

/* Sorts the table by name, for checkpoint_find's binary search, and refuses a name that two
 * files hold (Jansson already refused one a header holds twice). A header of 100 MB holds over a
 * million entries: a linear search per entry would take hours, so nothing here is quadratic. */
static Status index_by_name(Checkpoint *ckpt) {
  if (ckpt->num_tensors < 2) return STATUS_OK; /* also: qsort of a NULL table */
  qsort(ckpt->tensors, (size_t)ckpt->num_tensors, sizeof *ckpt->tensors, compare_by_name);
  for (int64_t i = 1; i < ckpt->num_tensors; i++) {
    const StTensor *prev = &ckpt->tensors[i - 1], *cur = &ckpt->tensors[i];
    if (!strcmp(prev->name, cur->name)) {
      return status_error(STATUS_BAD_FORMAT, "%s: tensor %s appears in more than one file (also in %s)",
                          ckpt->files[cur->file].path, cur->name, ckpt->files[prev->file].path);
    }
  }
  return STATUS_OK;
}

static int find_file(const Checkpoint *ckpt, const char *path) {
  for (int i = 0; i < ckpt->num_files; i++) {
    if (!strcmp(ckpt->files[i].path, path)) return i;
  }
  return -1;
}

/* The index maps tensor -> file; trust it, not the file names ("of" is the last index). */
static Status open_indexed(Checkpoint *ckpt, const char *dir, const char *index_path) {
  json_error_t err;
  json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &err);
  if (!root) {
    return status_error(STATUS_BAD_FORMAT, "%s: invalid JSON at line %d, column %d: %s", index_path, err.line,
                        err.column, err.text);
  }
  json_t *map = json_object_get(root, "weight_map");
  Status st = STATUS_OK;
  if (!json_is_object(map)) st = status_error(STATUS_BAD_FORMAT, "%s: missing the \"weight_map\" object", index_path);
  const char *name;
  json_t *file;
  char path[4096];
  /* First every file the index names, then (the table sorted) every entry against its file. */
  json_object_foreach(map, name, file) {
    if (st != STATUS_OK) break;
    const char *file_name = json_string_value(file);
    if (!file_name || strchr(file_name, '/')) {
      st = status_error(STATUS_BAD_FORMAT, "%s: weight_map[%s] must be a file name in the same directory", index_path, name);
      break;
    }
    snprintf(path, sizeof path, "%s/%s", dir, file_name);
    int known = find_file(ckpt, path);
    if (known < 0) {
      st = add_file(ckpt, path, &known);
      if (st == STATUS_OK) st = load_header(ckpt, known);
    }
  }
  if (st == STATUS_OK) st = index_by_name(ckpt);
  json_object_foreach(map, name, file) {
    if (st != STATUS_OK) break;
    snprintf(path, sizeof path, "%s/%s", dir, json_string_value(file));
    const StTensor *t = checkpoint_find(ckpt, name);
    if (!t || t->file != find_file(ckpt, path)) {
      st = status_error(STATUS_BAD_FORMAT, "%s lists tensor %s in %s, but that file's header does not hold it",
                        index_path, name, path);
    }
  }
  /* A tensor a file holds but the index does not list is not part of the model (the order, by
   * name, stays). */
  int64_t kept = 0;
  for (int64_t i = 0; st == STATUS_OK && i < ckpt->num_tensors; i++) {
    if (json_object_get(map, ckpt->tensors[i].name)) ckpt->tensors[kept++] = ckpt->tensors[i];
  }
  if (st == STATUS_OK) ckpt->num_tensors = kept;
  json_decref(root);
  return st;
}

Status checkpoint_open(const char *dir, Checkpoint *out) {
  memset(out, 0, sizeof *out);
  char index_path[4096], single_path[4096];
  snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
  snprintf(single_path, sizeof single_path, "%s/model.safetensors", dir);
  Status st;
  if (access(index_path, F_OK) == 0) {
    st = open_indexed(out, dir, index_path);
  } else if (access(single_path, F_OK) == 0) {
    int file = 0;
    st = add_file(out, single_path, &file);
    if (st == STATUS_OK) st = load_header(out, file);
    if (st == STATUS_OK) st = index_by_name(out);
  } else {
    st = status_error(STATUS_IO_ERROR,
                      "%s holds neither model.safetensors nor model.safetensors.index.json: "
                      "point --checkpoint at the downloaded Hugging Face model directory",
                      dir);
  }
  if (st == STATUS_OK) st = check_no_overlap(out);
  if (st != STATUS_OK) checkpoint_close(out);
  return st;
}

void checkpoint_close(Checkpoint *ckpt) {
  for (int i = 0; i < ckpt->num_files; i++) {
    if (ckpt->files[i].fd >= 0) close(ckpt->files[i].fd);
  }
  free(ckpt->files);
  free(ckpt->tensors);
  memset(ckpt, 0, sizeof *ckpt);
}

const StTensor *checkpoint_find(const Checkpoint *ckpt, const char *name) {
  if (ckpt->num_tensors == 0) return NULL; /* bsearch of a NULL table */
  StTensor key;
  if (strlen(name) >= sizeof key.name) return NULL; /* no tensor has so long a name */
  snprintf(key.name, sizeof key.name, "%s", name);
  return bsearch(&key, ckpt->tensors, (size_t)ckpt->num_tensors, sizeof *ckpt->tensors, compare_by_name);
}

Status checkpoint_read(const Checkpoint *ckpt, const StTensor *tensor, uint64_t offset, void *dst, size_t num_bytes) {
  if (offset + num_bytes > tensor->num_bytes) {
    return status_error(STATUS_INVALID_ARGUMENT, "read past the end of tensor %s", tensor->name);
  }
  const StFile *f = &ckpt->files[tensor->file];
  return read_exact(f->fd, dst, num_bytes, tensor->offset + offset, f->path);
}
