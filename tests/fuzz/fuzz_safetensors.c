/* Fuzz target: the safetensors header and index reader (io/safetensors.c). The first byte picks
 * the layout: even, the rest is model.safetensors; odd, the rest up to the first NUL is
 * model.safetensors.index.json and what follows is the content of both shard files
 * model-00000-of-00001 and model-00001-of-00001. Every tensor an opened checkpoint lists must
 * lie inside its file and be readable. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

static const char *const FILES[] = {"model.safetensors", "model.safetensors.index.json",
                                    "model-00000-of-00001.safetensors", "model-00001-of-00001.safetensors"};

static void write_layout(const uint8_t *data, size_t size) {
  if (size == 0 || data[0] % 2 == 0) {
    fuzz_write_file(FILES[0], data + (size > 0), size - (size > 0));
    return;
  }
  const uint8_t *body = data + 1;
  const size_t body_size = size - 1;
  const uint8_t *nul = memchr(body, 0, body_size);
  const size_t index_size = nul ? (size_t)(nul - body) : body_size;
  const size_t rest = nul ? body_size - index_size - 1 : 0;
  fuzz_write_file(FILES[1], body, index_size);
  fuzz_write_file(FILES[2], nul ? nul + 1 : body, rest);
  fuzz_write_file(FILES[3], nul ? nul + 1 : body, rest);
}

static void check_tensors(const Checkpoint *ckpt) {
  for (int64_t i = 0; i < ckpt->num_tensors; i++) {
    const StTensor *t = &ckpt->tensors[i];
    if (t->file < 0 || t->file >= ckpt->num_files) fuzz_fail("a tensor names a file the checkpoint lacks");
    if (t->offset > ckpt->files[t->file].size || t->num_bytes > ckpt->files[t->file].size - t->offset) {
      fuzz_fail("a tensor lies past the end of its file");
    }
    if (checkpoint_find(ckpt, t->name) == NULL) fuzz_fail("a listed tensor cannot be found by name");
    uint8_t bytes[64];
    const size_t n = t->num_bytes < sizeof bytes ? (size_t)t->num_bytes : sizeof bytes;
    if (checkpoint_read(ckpt, t, t->num_bytes - n, bytes, n) != STATUS_OK) fuzz_fail("a listed tensor cannot be read");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) fuzz_remove_file(FILES[i]);
  write_layout(data, size);
  Checkpoint ckpt;
  if (checkpoint_open(fuzz_scratch_dir(), &ckpt) == STATUS_OK) {
    check_tensors(&ckpt);
    checkpoint_close(&ckpt);
  }
  for (size_t i = 0; i < sizeof FILES / sizeof FILES[0]; i++) fuzz_remove_file(FILES[i]);
  return 0;
}
