/* Reading a Hugging Face checkpoint: one model.safetensors, or several files listed by
 * model.safetensors.index.json. Opening parses and checks every header (sizes, offsets, dtypes,
 * overlaps, the index against the files) before anything is read; tensors are then read by
 * byte range with pread, so memory stays bounded by what the caller asks for. */
#ifndef GPTOSS_IO_SAFETENSORS_H
#define GPTOSS_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "model/status.h"
#include "model/weights.h"

typedef struct {
  char name[TENSOR_NAME_BYTES];
  char dtype[16];
  int num_dims;
  int64_t shape[TENSOR_MAX_DIMS];
  int file;               /* index into Checkpoint.files */
  uint64_t offset;        /* absolute byte offset in the file */
  uint64_t num_bytes;
} StTensor;

typedef struct {
  char path[4096];
  int fd;
  uint64_t size;
} StFile;

typedef struct {
  StFile *files;
  int num_files;
  StTensor *tensors;      /* sorted by name */
  int64_t num_tensors;
} Checkpoint;

Status checkpoint_open(const char *dir, Checkpoint *out);
void checkpoint_close(Checkpoint *ckpt);
const StTensor *checkpoint_find(const Checkpoint *ckpt, const char *name);
/* Reads num_bytes at byte `offset` within the tensor. */
Status checkpoint_read(const Checkpoint *ckpt, const StTensor *tensor, uint64_t offset, void *dst, size_t num_bytes);

/* Size in bytes of one element of a safetensors dtype, or 0 if unknown. */
size_t safetensors_dtype_bytes(const char *dtype);

#endif
