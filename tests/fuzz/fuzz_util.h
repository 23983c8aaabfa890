/* What the fuzz targets share: a scratch directory for targets whose reader takes a path, and
 * the o200k tokenizer loaded once per process. Each target defines LLVMFuzzerTestOneInput;
 * libFuzzer drives it in the fuzz build (-DGPTOSS_FUZZ=ON), replay_main.c in the normal one. */
#ifndef GPTOSS_TESTS_FUZZ_UTIL_H
#define GPTOSS_TESTS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A directory private to this process, created on first use (under $TMPDIR or /tmp). */
const char *fuzz_scratch_dir(void);
/* Writes `size` bytes to DIR/name; aborts if it cannot (a harness fault, not a finding). */
void fuzz_write_file(const char *name, const void *data, size_t size);
void fuzz_remove_file(const char *name);
/* The built-in o200k_base vocabulary, loaded on first use. */
const Tokenizer *fuzz_tokenizer(void);
/* Aborts with a message: an invariant the code under test promised does not hold. */
void fuzz_fail(const char *what) __attribute__((noreturn));

#endif
