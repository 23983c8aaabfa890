/* The converter on the golden checkpoint and on damaged copies of it: a good conversion slices
 * exactly; every bad input is refused before anything is written, with a message naming the
 * file, tensor or key, and never leaves a directory behind. */
#define _GNU_SOURCE /* memmem */
#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/config_json.h"
#include "io/convert.h"
#include "io/model_dir.h"
#include "io/safetensors.h"
#include "test_util.h"

static char *g_dir;     /* scratch */
static char g_ckpt[2048], g_out[2048];

static int setup_each(void **state) {
  (void)state;
  g_dir = test_make_tmpdir();
  snprintf(g_ckpt, sizeof g_ckpt, "%s/ckpt", g_dir);
  snprintf(g_out, sizeof g_out, "%s/out.model", g_dir);
  test_copy_tree(test_data("tiny20/checkpoint"), g_ckpt);
  status_set_silent(1);
  return 0;
}

static int teardown_each(void **state) {
  (void)state;
  test_remove_tree(g_dir);
  free(g_dir);
  return 0;
}

static Status convert(bool force) {
  ConvertOptions o = {g_ckpt, g_out, force, false};
  return convert_checkpoint(&o);
}

/* Nothing but the checkpoint copy is left in the scratch directory. */
static void assert_nothing_written(void) {
  DIR *d = opendir(g_dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "ckpt")) continue;
    fail_msg("conversion failure left %s behind", e->d_name);
  }
  closedir(d);
}

static void expect_refusal(const char *needle) {
  assert_int_not_equal(convert(false), STATUS_OK);
  if (!strstr(status_last_error(), needle)) fail_msg("message '%s' lacks '%s'", status_last_error(), needle);
  assert_nothing_written();
}

static void ckpt_path(char *out, size_t size, const char *name) { snprintf(out, size, "%s/%s", g_ckpt, name); }

/* Rewrites a safetensors file's header through `mutate`, keeping its data section. */
static void rewrite_header(const char *file, void (*mutate)(json_t *header)) {
  char path[4096];
  ckpt_path(path, sizeof path, file);
  size_t size;
  char *bytes = test_read_file(path, &size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | (unsigned char)bytes[i];
  json_t *header = json_loadb(bytes + 8, hlen, 0, NULL);
  assert_non_null(header);
  mutate(header);
  char *text = json_dumps(header, JSON_COMPACT);
  const size_t new_len = strlen(text), data_len = size - 8 - hlen;
  char *out = malloc(8 + new_len + data_len);
  for (int i = 0; i < 8; i++) out[i] = (char)((uint64_t)new_len >> (8 * i));
  memcpy(out + 8, text, new_len);
  memcpy(out + 8 + new_len, bytes + 8 + hlen, data_len);
  test_write_file(path, out, 8 + new_len + data_len);
  free(out);
  free(text);
  free(bytes);
  json_decref(header);
}

static void rewrite_config(void (*mutate)(json_t *config)) {
  char path[4096];
  ckpt_path(path, sizeof path, "config.json");
  json_t *config = json_load_file(path, 0, NULL);
  assert_non_null(config);
  mutate(config);
  assert_int_equal(json_dump_file(config, path, JSON_INDENT(2)), 0);
  json_decref(config);
}

/* ---- the good path ---- */

static void test_converts_and_slices_exactly(void **state) {
  (void)state;
  assert_int_equal(convert(false), STATUS_OK);
  Manifest m;
  assert_int_equal(modeldir_read_manifest(g_out, &m), STATUS_OK);
  assert_int_equal(m.num_shards, 8);
  assert_int_equal(m.config.hidden_size, 64);
  /* Load shards 3..5 and compare slices with the checkpoint bytes. */
  LoadedWeights w;
  const Range shards = {3, 6};
  assert_int_equal(modeldir_load_weights(g_out, &m, shards, true, &w), STATUS_OK);
  Checkpoint ckpt;
  assert_int_equal(checkpoint_open(g_ckpt, &ckpt), STATUS_OK);
  const int64_t H = 64, D = 8, G = 8, QD = 64 * 8;
  uint16_t *q = malloc((size_t)(QD * H) * 2), *o = malloc((size_t)(H * QD) * 2);
  assert_int_equal(checkpoint_read(&ckpt, checkpoint_find(&ckpt, "model.layers.2.self_attn.q_proj.weight"), 0, q, (size_t)(QD * H) * 2), STATUS_OK);
  assert_int_equal(checkpoint_read(&ckpt, checkpoint_find(&ckpt, "model.layers.2.self_attn.o_proj.weight"), 0, o, (size_t)(H * QD) * 2), STATUS_OK);
  for (int64_t i = 0; i < 3; i++) {
    const int64_t s = 3 + i;
    const ShardLayerWeights *lw = &w.shards[i].layers[2];
    /* q_proj rows of the KV group's G query heads. */
    assert_memory_equal(lw->q_weight, q + s * G * D * H, (size_t)(G * D * H) * 2);
    /* o_proj: the same heads' columns, row by row. */
    for (int64_t r = 0; r < H; r++) assert_memory_equal(lw->o_weight + r * G * D, o + r * QD + s * G * D, (size_t)(G * D) * 2);
    assert_int_equal(w.shards[i].slice.experts.begin, s * 4);
    assert_int_equal(w.shards[i].slice.vocab.begin, s * 64);
  }
  free(q);
  free(o);
  checkpoint_close(&ckpt);
  modeldir_free_weights(&w);
  modeldir_free_manifest(&m);
  /* No partial directory is left beside the result. */
  DIR *d = opendir(g_dir);
  struct dirent *e;
  while ((e = readdir(d))) assert_null(strstr(e->d_name, "partial"));
  closedir(d);
}

static void test_refuses_existing_output_and_force_replaces(void **state) {
  (void)state;
  char keep[4096];
  snprintf(keep, sizeof keep, "%s/precious.txt", g_out);
  assert_int_equal(system(NULL) != 0, 1);
  char cmd[8300];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && echo data > '%s'", g_out, keep);
  assert_int_equal(system(cmd), 0);
  assert_int_not_equal(convert(false), STATUS_OK);
  assert_non_null(strstr(status_last_error(), "already exists"));
  assert_true(test_path_exists(keep));
  assert_int_equal(convert(true), STATUS_OK);
  assert_false(test_path_exists(keep));
  char manifest[4200];
  snprintf(manifest, sizeof manifest, "%s/manifest.h5", g_out);
  assert_true(test_path_exists(manifest));
}

/* ---- bad inputs ---- */

static void test_missing_safetensors_file(void **state) {
  (void)state;
  char path[4096];
  ckpt_path(path, sizeof path, "model-00001-of-00001.safetensors");
  assert_int_equal(unlink(path), 0);
  expect_refusal("model-00001-of-00001.safetensors");
}

static void test_truncated_safetensors_file(void **state) {
  (void)state;
  char path[4096];
  ckpt_path(path, sizeof path, "model-00000-of-00001.safetensors");
  assert_int_equal(truncate(path, 500000), 0);
  expect_refusal("model-00000-of-00001.safetensors");
}

static void lie_about_offsets(json_t *header) {
  json_t *offsets = json_object_get(json_object_get(header, "model.layers.0.mlp.router.weight"), "data_offsets");
  json_array_set_new(offsets, 1, json_integer(json_integer_value(json_array_get(offsets, 1)) + 2));
}

static void test_header_lies_about_offsets(void **state) {
  (void)state;
  rewrite_header("model-00000-of-00001.safetensors", lie_about_offsets);
  expect_refusal("model.layers.0.mlp.router.weight");
}

static void wrong_dtype(json_t *header) {
  json_object_set_new(json_object_get(header, "model.layers.0.mlp.router.weight"), "dtype", json_string("F16"));
}

static void test_wrong_dtype(void **state) {
  (void)state;
  rewrite_header("model-00000-of-00001.safetensors", wrong_dtype);
  expect_refusal("tensor model.layers.0.mlp.router.weight has dtype F16, expected BF16");
}

static void wider_experts(json_t *config) { json_object_set_new(config, "intermediate_size", json_integer(96)); }

static void test_wrong_shape(void **state) {
  (void)state;
  rewrite_config(wider_experts);
  expect_refusal("but config.json implies [32, 192");
}

static void drop_key(json_t *config) { json_object_del(config, "num_key_value_heads"); }

static void test_config_missing_key(void **state) {
  (void)state;
  rewrite_config(drop_key);
  expect_refusal("missing key \"num_key_value_heads\"");
}

static void bad_heads(json_t *config) { json_object_set_new(config, "num_key_value_heads", json_integer(7)); }

static void test_config_that_cannot_run(void **state) {
  (void)state;
  rewrite_config(bad_heads);
  expect_refusal("must be a multiple of num_key_value_heads");
}

static int64_t g_value, g_old_value;
static const char *g_key;
static void set_key(json_t *config) {
  g_old_value = json_integer_value(json_object_get(config, g_key));
  json_object_set_new(config, g_key, json_integer(g_value));
}

/* Sets one key, expects the refusal, puts the key back. */
static void expect_config_refusal(const char *key, int64_t value, const char *needle) {
  g_key = key;
  g_value = value;
  rewrite_config(set_key);
  expect_refusal(needle);
  g_value = g_old_value;
  rewrite_config(set_key);
}

/* Sizes whose products would overflow int64 (undefined behaviour in every shape computed from
 * them) are refused by the config check, naming the key or the tensor, before any tensor is read. */
static void test_config_with_absurd_sizes(void **state) {
  (void)state;
  expect_config_refusal("hidden_size", -64, "config.json: \"hidden_size\" must be in [1, 16777216], got -64");
  expect_config_refusal("vocab_size", 0, "\"vocab_size\" must be in [1, 16777216], got 0");
  expect_config_refusal("hidden_size", INT64_C(1) << 45, "\"hidden_size\" must be in [1, 16777216], got 35184372088832");
  expect_config_refusal("num_attention_heads", INT64_C(1) << 62, "\"num_attention_heads\" must be in [1, 16777216]");
  /* Every size within bounds, but experts x 2 intermediate x hidden = 2^63. */
  g_key = "num_local_experts";
  g_value = 1 << 20;
  rewrite_config(set_key);
  g_key = "hidden_size";
  g_value = 1 << 21;
  rewrite_config(set_key);
  expect_config_refusal("intermediate_size", 1 << 21, "the sizes give the experts (num_local_experts x 2 intermediate_size");
}

static const char *g_json; /* the JSON text of the value set_json puts at g_key */
static json_t *g_old_json;
static void set_json(json_t *config) {
  g_old_json = json_incref(json_object_get(config, g_key));
  json_object_set_new(config, g_key, json_loads(g_json, JSON_DECODE_ANY, NULL));
}
static void restore_json(json_t *config) {
  if (g_old_json) json_object_set_new(config, g_key, g_old_json);
  else json_object_del(config, g_key);
}

/* Values of the wrong type or meaning, each refused naming the key. */
static void test_config_wrong_types(void **state) {
  (void)state;
  static const struct { const char *key, *json, *needle; } CASES[] = {
      {"hidden_size", "64.0", "\"hidden_size\" must be an integer"},
      {"vocab_size", "\"512\"", "\"vocab_size\" must be an integer"},
      {"rope_theta", "\"big\"", "\"rope_theta\" must be a number"},
      {"rms_norm_eps", "0", "rms_norm_eps must be > 0, got 0"},
      {"eos_token_id", "512", "eos_token_id 512 is outside the vocabulary [0, 512)"},
      {"eos_token_id", "[1, \"2\"]", "\"eos_token_id\" must be an integer or a list of up to 8 integers"},
      {"layer_types", "[\"sliding_attention\"]", "\"layer_types\" must list one type per layer (4)"},
      {"num_experts_per_tok", "99", "num_experts_per_tok (99) exceeds num_local_experts (32)"},
      {"rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 2}", "rope_scaling.rope_type must be \"yarn\""},
      {"head_dim", "7", "head_dim (7) must be even for RoPE"},
      {"hidden_size", "48", "hidden_size (48) and intermediate_size (64) must be multiples of 32"},
  };
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    g_key = CASES[i].key;
    g_json = CASES[i].json;
    rewrite_config(set_json);
    expect_refusal(CASES[i].needle);
    rewrite_config(restore_json);
  }
  char path[4096];
  ckpt_path(path, sizeof path, "config.json");
  assert_int_equal(unlink(path), 0);
  expect_refusal("cannot open");
  test_write_file(path, "[1, 2]", 6);
  expect_refusal("the top level must be an object");
  test_write_file(path, "{\"hidden_size\": 64,", 18);
  expect_refusal("invalid JSON at line 1");
}

/* Jansson keeps the last of two equal keys; which one the user meant is unknowable, so refuse. */
static void test_config_duplicate_key(void **state) {
  (void)state;
  char path[4096];
  ckpt_path(path, sizeof path, "config.json");
  size_t size;
  char *text = test_read_file(path, &size);
  const char *open_brace = strchr(text, '{');
  assert_non_null(open_brace);
  const char *extra = "\"hidden_size\": 128, ";
  char *doubled = malloc(size + strlen(extra) + 1);
  const size_t head = (size_t)(open_brace + 1 - text);
  memcpy(doubled, text, head);
  memcpy(doubled + head, extra, strlen(extra));
  memcpy(doubled + head + strlen(extra), text + head, size - head);
  test_write_file(path, doubled, size + strlen(extra));
  free(doubled);
  free(text);
  expect_refusal("duplicate object key");
}

static void test_missing_tensor(void **state) {
  (void)state;
  char path[4096];
  ckpt_path(path, sizeof path, "model.safetensors.index.json");
  json_t *index = json_load_file(path, 0, NULL);
  json_object_del(json_object_get(index, "weight_map"), "lm_head.weight");
  json_dump_file(index, path, 0);
  json_decref(index);
  /* The file still holds lm_head, but the index no longer lists it: the index is the truth. */
  expect_refusal("lm_head.weight");
}

/* A dataset whose recorded address is near 2^64: address + size wraps round to a small number,
 * which must not pass for "inside the file" (the loader would point a tensor at wild memory). */
static void test_dataset_address_past_the_file(void **state) {
  (void)state;
  assert_int_equal(convert(false), STATUS_OK);
  char path[4200];
  snprintf(path, sizeof path, "%s/replicated.h5", g_out);
  size_t size;
  char *file = test_read_file(path, &size);
  /* model.norm.weight's 128 bytes, found in the file, give its address; the layout message
   * holds that address as a little-endian u64. */
  Checkpoint ckpt;
  assert_int_equal(checkpoint_open(g_ckpt, &ckpt), STATUS_OK);
  const StTensor *norm = checkpoint_find(&ckpt, "model.norm.weight");
  char bytes[128];
  assert_int_equal(norm->num_bytes, sizeof bytes);
  assert_int_equal(checkpoint_read(&ckpt, norm, 0, bytes, sizeof bytes), STATUS_OK);
  checkpoint_close(&ckpt);
  const char *data = memmem(file, size, bytes, sizeof bytes);
  assert_non_null(data);
  assert_null(memmem(data + 1, size - (size_t)(data + 1 - file), bytes, sizeof bytes));
  const uint64_t address = (uint64_t)(data - file);
  char encoded[8], wrapped[8];
  for (int i = 0; i < 8; i++) {
    encoded[i] = (char)(address >> (8 * i));
    wrapped[i] = (char)((UINT64_MAX - 63) >> (8 * i)); /* 64-aligned; + 128 bytes wraps to 64 */
  }
  char *field = memmem(file, size, encoded, sizeof encoded);
  assert_non_null(field);
  memcpy(field, wrapped, sizeof wrapped);
  test_write_file(path, file, size);
  free(file);
  Manifest m;
  assert_int_equal(modeldir_read_manifest(g_out, &m), STATUS_OK);
  LoadedWeights w;
  const Range shards = {0, 1};
  assert_int_not_equal(modeldir_load_weights(g_out, &m, shards, true, &w), STATUS_OK);
  const char *needle = "replicated.h5: dataset norm.weight is not stored contiguously at an aligned offset inside the file";
  if (!strstr(status_last_error(), needle)) fail_msg("message '%s' lacks '%s'", status_last_error(), needle);
  modeldir_free_weights(&w);
  modeldir_free_manifest(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_converts_and_slices_exactly, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_refuses_existing_output_and_force_replaces, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_missing_safetensors_file, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_truncated_safetensors_file, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_header_lies_about_offsets, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_wrong_dtype, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_wrong_shape, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_config_missing_key, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_config_that_cannot_run, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_config_with_absurd_sizes, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_config_duplicate_key, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_config_wrong_types, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_missing_tensor, setup_each, teardown_each),
      cmocka_unit_test_setup_teardown(test_dataset_address_past_the_file, setup_each, teardown_each),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
