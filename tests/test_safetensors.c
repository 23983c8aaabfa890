/* The safetensors reader: single files, index + several files (the golden checkpoint), and every
 * way a file can lie or be cut short — each must be refused with a message naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "io/safetensors.h"
#include "test_util.h"

static char *g_dir;

static int setup(void **state) {
  (void)state;
  g_dir = test_make_tmpdir();
  status_set_silent(1);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  test_remove_tree(g_dir);
  free(g_dir);
  return 0;
}

/* Writes DIR/name: 8-byte header length, the header text, then data_len bytes 0, 1, 2, ... */
static void write_st(const char *name, const char *header, size_t data_len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", g_dir, name);
  const size_t hlen = strlen(header);
  unsigned char *buf = malloc(8 + hlen + data_len);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
  memcpy(buf + 8, header, hlen);
  for (size_t i = 0; i < data_len; i++) buf[8 + hlen + i] = (unsigned char)i;
  test_write_file(path, buf, 8 + hlen + data_len);
  free(buf);
}

static void remove_all(void) {
  test_remove_tree(g_dir);
  free(g_dir);
  g_dir = test_make_tmpdir();
}

static void expect_error(const char *needle) {
  Checkpoint ckpt;
  assert_int_not_equal(checkpoint_open(g_dir, &ckpt), STATUS_OK);
  if (!strstr(status_last_error(), needle)) fail_msg("message '%s' lacks '%s'", status_last_error(), needle);
  remove_all();
}

static void test_single_file_reads_bytes(void **state) {
  (void)state;
  write_st("model.safetensors",
           "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[12,16]}}",
           16);
  Checkpoint ckpt;
  assert_int_equal(checkpoint_open(g_dir, &ckpt), STATUS_OK);
  assert_int_equal(ckpt.num_tensors, 2);
  const StTensor *b = checkpoint_find(&ckpt, "b");
  assert_non_null(b);
  assert_string_equal(b->dtype, "U8");
  assert_int_equal(b->shape[0], 4);
  unsigned char got[4];
  assert_int_equal(checkpoint_read(&ckpt, b, 0, got, 4), STATUS_OK);
  for (int i = 0; i < 4; i++) assert_int_equal(got[i], 12 + i);
  assert_int_not_equal(checkpoint_read(&ckpt, b, 2, got, 4), STATUS_OK); /* past the tensor's end */
  checkpoint_close(&ckpt);
  remove_all();
}

/* The golden checkpoint is two files + an index; its lm_head must equal the same weights in
 * OpenAI's original layout (`unembedding.weight`), read through an independent single file. */
static void test_multi_file_checkpoint_matches_original_layout(void **state) {
  (void)state;
  Checkpoint hf, orig;
  assert_int_equal(checkpoint_open(test_data("tiny20/checkpoint"), &hf), STATUS_OK);
  assert_int_equal(hf.num_files, 2);
  assert_int_equal(hf.num_tensors, 4 * 19 + 3);
  assert_int_equal(checkpoint_open(test_data("tiny20/checkpoint/original"), &orig), STATUS_OK);
  const char *pairs[][2] = {{"lm_head.weight", "unembedding.weight"}, {"model.embed_tokens.weight", "embedding.weight"}};
  for (int i = 0; i < 2; i++) {
    const StTensor *a = checkpoint_find(&hf, pairs[i][0]), *b = checkpoint_find(&orig, pairs[i][1]);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->num_bytes, b->num_bytes);
    char *x = malloc(a->num_bytes), *y = malloc(b->num_bytes);
    assert_int_equal(checkpoint_read(&hf, a, 0, x, a->num_bytes), STATUS_OK);
    assert_int_equal(checkpoint_read(&orig, b, 0, y, b->num_bytes), STATUS_OK);
    assert_memory_equal(x, y, a->num_bytes);
    free(x);
    free(y);
  }
  /* The two HF files really are both used. */
  assert_int_not_equal(checkpoint_find(&hf, "lm_head.weight")->file, checkpoint_find(&hf, "model.embed_tokens.weight")->file);
  checkpoint_close(&hf);
  checkpoint_close(&orig);
}

static void test_missing_files(void **state) {
  (void)state;
  expect_error("holds neither model.safetensors nor model.safetensors.index.json");
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", g_dir);
  const char *index = "{\"weight_map\":{\"a\":\"model-00000-of-00001.safetensors\"}}";
  test_write_file(path, index, strlen(index));
  expect_error("model-00000-of-00001.safetensors");
}

static void test_truncated_file(void **state) {
  (void)state;
  write_st("model.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 7);
  expect_error("the file holds only 7 data bytes");
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
  test_write_file(path, "\x10\x00", 2);
  expect_error("too short to be a safetensors file");
}

static void test_lying_headers(void **state) {
  (void)state;
  write_st("model.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,10]}}", 12);
  expect_error("needs 12");
  write_st("model.safetensors",
           "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"BF16\",\"shape\":[2],"
           "\"data_offsets\":[2,6]}}",
           8);
  expect_error("overlap");
  /* An empty tensor between them must not hide that a and c share bytes [4, 8). */
  write_st("model.safetensors",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"U8\",\"shape\":[0],"
           "\"data_offsets\":[2,2]},\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
           8);
  expect_error("tensors a and c overlap");
  write_st("model.safetensors", "{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
  expect_error("unknown dtype Q9");
  write_st("model.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-2],\"data_offsets\":[0,4]}}", 4);
  expect_error("invalid shape");
  /* Each dimension allowed, but their product wraps a uint64 round to 4. */
  write_st("model.safetensors",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[1099511627776,1099511627776,1099511627776,4],\"data_offsets\":[0,4]}}", 4);
  expect_error("has a shape too large for any file");
  write_st("model.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,0]}}", 4);
  expect_error("invalid data_offsets");
  write_st("model.safetensors", "{\"a\": {\"dtype\": \"U8\", ", 4);
  expect_error("not a JSON object");
  /* A header length larger than the file. */
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors", g_dir);
  const unsigned char big[16] = {0xff, 0xff, 0xff, 0x00, 0, 0, 0, 0, '{', '}'};
  test_write_file(path, big, sizeof big);
  expect_error("does not fit the file");
}

static void test_index_must_agree_with_files(void **state) {
  (void)state;
  write_st("model-00000-of-00000.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", g_dir);
  const char *index = "{\"weight_map\":{\"a\":\"model-00000-of-00000.safetensors\",\"z\":\"model-00000-of-00000.safetensors\"}}";
  test_write_file(path, index, strlen(index));
  expect_error("lists tensor z");
}

static void write_index(const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", g_dir);
  test_write_file(path, text, strlen(text));
}

/* An index that is not JSON, lacks its map, points outside the directory, or gives one tensor to
 * two files. */
static void test_index_lies(void **state) {
  (void)state;
  write_index("{\"weight_map\": {");
  expect_error("model.safetensors.index.json: invalid JSON at line 1");
  write_index("{\"metadata\": {}}");
  expect_error("missing the \"weight_map\" object");
  write_index("{\"weight_map\": {\"a\": \"../elsewhere/model.safetensors\"}}");
  expect_error("weight_map[a] must be a file name in the same directory");
  write_index("{\"weight_map\": {\"a\": 7}}");
  expect_error("weight_map[a] must be a file name in the same directory");
  write_st("one.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
  write_st("two.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
  write_index("{\"weight_map\": {\"a\": \"one.safetensors\", \"b\": \"two.safetensors\"}}");
  expect_error("tensor a appears in more than one file");
}

/* A 6 MB header of 100,000 empty tensors: checked in well under a second. A search per entry
 * through the entries before it (what the reader once did) took minutes here, and hours for the
 * million entries a 100 MB header holds. The bound is loose: a loaded machine must not fail it. */
static void test_many_tensors_are_not_quadratic(void **state) {
  (void)state;
  enum { NUM_TENSORS = 100000, ENTRY_BYTES = 64 };
  char *header = malloc((size_t)NUM_TENSORS * ENTRY_BYTES + 2);
  assert_non_null(header);
  size_t n = 0;
  header[n++] = '{';
  for (int i = 0; i < NUM_TENSORS; i++) {
    n += (size_t)sprintf(header + n, "%s\"t%07d\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}", i ? "," : "",
                         NUM_TENSORS - 1 - i);
  }
  header[n++] = '}';
  header[n] = '\0';
  write_st("model.safetensors", header, 0);
  free(header);
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  Checkpoint ckpt;
  assert_int_equal(checkpoint_open(g_dir, &ckpt), STATUS_OK);
  clock_gettime(CLOCK_MONOTONIC, &end);
  const double seconds = (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec);
  if (seconds > 10.0) fail_msg("opening %d tensors took %.1f s", NUM_TENSORS, seconds);
  assert_int_equal(ckpt.num_tensors, NUM_TENSORS);
  assert_non_null(checkpoint_find(&ckpt, "t0000000"));
  assert_non_null(checkpoint_find(&ckpt, "t0099999"));
  assert_null(checkpoint_find(&ckpt, "t0100000"));
  checkpoint_close(&ckpt);
  remove_all();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_single_file_reads_bytes),
      cmocka_unit_test(test_multi_file_checkpoint_matches_original_layout),
      cmocka_unit_test(test_missing_files),
      cmocka_unit_test(test_truncated_file),
      cmocka_unit_test(test_lying_headers),
      cmocka_unit_test(test_index_must_agree_with_files),
      cmocka_unit_test(test_index_lies),
      cmocka_unit_test(test_many_tensors_are_not_quadratic),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
