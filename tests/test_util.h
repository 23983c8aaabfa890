/* Helpers shared by the tests: paths into tests/data, scratch directories, file surgery. */
#ifndef GPTOSS_TESTS_TEST_UTIL_H
#define GPTOSS_TESTS_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* GPTOSS_TEST_DATA/relative, in a static buffer (valid until the next call). */
const char *test_data(const char *relative);
/* A fresh directory under $TMPDIR (or /tmp); the caller frees the string. */
char *test_make_tmpdir(void);
void test_remove_tree(const char *path);
void test_copy_tree(const char *from, const char *to);
int test_path_exists(const char *path);

/* Whole-file helpers; test_read_file returns a malloc'd buffer. */
char *test_read_file(const char *path, size_t *size_out);
void test_write_file(const char *path, const void *data, size_t size);

/* SPEC.md's bar: logits within 2e-4 of the official reference (an fp32 engine sits near 1e-5). */
#define GOLDEN_LOGIT_TOLERANCE 2e-4f

/* cmocka assertion: row `row` of logits matches the reference row within the tolerance, and
 * has the same argmax. */
void assert_logits_row_matches(const float *got, const float *want, int64_t vocab, int64_t row);

/* Converts the golden tiny20 checkpoint into DIR/model; returns the model path (malloc'd). */
char *test_convert_golden(const char *dir);

#endif
