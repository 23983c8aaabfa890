/* Test helpers (see test_util.h). They abort the test run on failure: a broken fixture is not a
 * result. */
#include "test_util.h"

#include "max_diff.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "io/convert.h"
#include "model/kernels.h"

const char *test_data(const char *relative) {
  static char path[4096];
  snprintf(path, sizeof path, "%s/%s", GPTOSS_TEST_DATA, relative);
  return path;
}

char *test_make_tmpdir(void) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char *path = malloc(4096);
  snprintf(path, 4096, "%s/gptoss-test-XXXXXX", base);
  if (!mkdtemp(path)) {
    perror("mkdtemp");
    abort();
  }
  return path;
}

static void run_or_die(const char *cmd) {
  if (system(cmd) != 0) {
    fprintf(stderr, "test fixture command failed: %s\n", cmd);
    abort();
  }
}

void test_remove_tree(const char *path) {
  char cmd[8300];
  snprintf(cmd, sizeof cmd, "rm -rf -- '%s'", path);
  run_or_die(cmd);
}

void test_copy_tree(const char *from, const char *to) {
  char cmd[8300];
  snprintf(cmd, sizeof cmd, "cp -r -- '%s' '%s' && chmod -R u+w '%s'", from, to, to);
  run_or_die(cmd);
}

int test_path_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

char *test_read_file(const char *path, size_t *size_out) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    abort();
  }
  fseek(f, 0, SEEK_END);
  const long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *data = malloc((size_t)size + 1);
  if (fread(data, 1, (size_t)size, f) != (size_t)size) abort();
  data[size] = '\0';
  fclose(f);
  *size_out = (size_t)size;
  return data;
}

void test_write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
    perror(path);
    abort();
  }
}

char *test_convert_golden(const char *dir) {
  char *out = malloc(4096);
  snprintf(out, 4096, "%s/model", dir);
  ConvertOptions o = {test_data("tiny20/checkpoint"), out, false, false};
  if (convert_checkpoint(&o) != STATUS_OK) abort();
  return out;
}

void assert_logits_row_matches(const float *got, const float *want, int64_t vocab, int64_t row) {
  const float worst = max_abs_diff_f32(got, want, vocab);
  if (!(worst <= GOLDEN_LOGIT_TOLERANCE)) {
    fail_msg("position %lld: max |dlogit| = %g > %g", (long long)row, worst, GOLDEN_LOGIT_TOLERANCE);
  }
  assert_int_equal(argmax_f32(got, vocab), argmax_f32(want, vocab));
}
