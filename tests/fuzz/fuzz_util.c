/* Shared fuzz harness helpers (see fuzz_util.h). */
#include "tests/fuzz/fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/vocab_embedded.h"
#include "model/status.h"

static char g_dir[4096];

static void remove_scratch_dir(void) {
  if (g_dir[0]) rmdir(g_dir); /* the targets remove their files; a leftover keeps the directory */
}

const char *fuzz_scratch_dir(void) {
  if (!g_dir[0]) {
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/gptoss-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) fuzz_fail("cannot create a scratch directory");
    atexit(remove_scratch_dir);
    /* Messages about hostile input are expected by the thousand; keep them out of the log. */
    status_set_silent(1);
  }
  return g_dir;
}

void fuzz_write_file(const char *name, const void *data, size_t size) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", fuzz_scratch_dir(), name);
  FILE *f = fopen(path, "wb");
  if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) fuzz_fail("cannot write a scratch file");
}

void fuzz_remove_file(const char *name) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", fuzz_scratch_dir(), name);
  unlink(path);
}

const Tokenizer *fuzz_tokenizer(void) {
  static Tokenizer *tok = NULL;
  if (!tok) {
    const void *vocab;
    size_t num_bytes;
    vocab_embedded(&vocab, &num_bytes);
    if (tokenizer_load_from_memory(&tok, vocab, num_bytes, "the built-in vocabulary") != STATUS_OK) {
      fuzz_fail("cannot load the built-in vocabulary");
    }
    status_set_silent(1);
  }
  return tok;
}

void fuzz_fail(const char *what) {
  fprintf(stderr, "fuzz: %s\n", what);
  abort();
}
