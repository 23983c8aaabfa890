/* Random checkpoint writer (see synth.h). Streams each tensor in 1 MiB pieces, so writing a
 * 65 GB 120b-shaped checkpoint needs a few MiB of memory. */
#include "io/synth.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/config_json.h"
#include "model/weights.h"

static void set_common(GptOssConfig *c) {
  c->max_position_embeddings = 131072;
  c->rope_theta = 150000.0;
  c->rms_norm_eps = 1e-5;
  c->swiglu_limit = 7.0;
  c->rope_scaling_factor = 32.0;
  c->rope_beta_fast = 32.0;
  c->rope_beta_slow = 1.0;
  c->rope_original_max_position_embeddings = 4096;
  c->rope_truncate = false;
  c->num_eos_token_ids = 1;
  c->num_attention_heads = 64;
  c->num_key_value_heads = 8;
  c->num_experts_per_tok = 4;
  c->sliding_window = 128;
}

Status synth_preset_config(const char *preset, GptOssConfig *c) {
  memset(c, 0, sizeof *c);
  set_common(c);
  if (!strcmp(preset, "20b") || !strcmp(preset, "120b")) {
    c->hidden_size = 2880;
    c->head_dim = 64;
    c->intermediate_size = 2880;
    c->vocab_size = 201088;
    c->num_hidden_layers = !strcmp(preset, "20b") ? 24 : 36;
    c->num_local_experts = !strcmp(preset, "20b") ? 32 : 128;
    c->eos_token_ids[0] = 200002;
  } else if (!strcmp(preset, "small")) {
    /* The real vocabulary and head structure at a width a laptop runs instantly. */
    c->hidden_size = 256;
    c->head_dim = 64;
    c->intermediate_size = 256;
    c->vocab_size = 201088;
    c->num_hidden_layers = 4;
    c->num_local_experts = 32;
    c->eos_token_ids[0] = 200002;
  } else if (!strcmp(preset, "tiny")) {
    /* The golden test model's shapes. */
    c->hidden_size = 64;
    c->head_dim = 8;
    c->intermediate_size = 64;
    c->vocab_size = 512;
    c->num_hidden_layers = 4;
    c->num_local_experts = 32;
    c->sliding_window = 8;
    c->eos_token_ids[0] = 510;
  } else {
    return status_error(STATUS_INVALID_ARGUMENT, "unknown preset '%s' (choose tiny, small, 20b or 120b)", preset);
  }
  for (int64_t l = 0; l < c->num_hidden_layers; l++) c->layer_is_sliding[l] = (l % 2 == 0);
  return STATUS_OK;
}

char *synth_config_json(const GptOssConfig *c) {
  json_t *layer_types = json_array();
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    json_array_append_new(layer_types, json_string(c->layer_is_sliding[l] ? "sliding_attention" : "full_attention"));
  }
  json_t *root = json_pack(
      "{s:[s], s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:{s:f, s:f, s:f, "
      "s:I, s:s, s:b}, s:f, s:I, s:f, s:b, s:s}",
      "architectures", "GptOssForCausalLM", "attention_bias", 1, "eos_token_id", (json_int_t)c->eos_token_ids[0],
      "experts_per_token", (json_int_t)c->num_experts_per_tok, "head_dim", (json_int_t)c->head_dim, "hidden_size",
      (json_int_t)c->hidden_size, "intermediate_size", (json_int_t)c->intermediate_size,
      "max_position_embeddings", (json_int_t)c->max_position_embeddings, "layer_types", layer_types,
      "num_attention_heads", (json_int_t)c->num_attention_heads, "model_type", "gpt_oss", "num_experts_per_tok",
      (json_int_t)c->num_experts_per_tok, "num_hidden_layers", (json_int_t)c->num_hidden_layers,
      "num_key_value_heads", (json_int_t)c->num_key_value_heads, "num_local_experts",
      (json_int_t)c->num_local_experts, "vocab_size", (json_int_t)c->vocab_size, "rms_norm_eps", c->rms_norm_eps,
      "rope_scaling", "beta_fast", c->rope_beta_fast, "beta_slow", c->rope_beta_slow, "factor",
      c->rope_scaling_factor, "original_max_position_embeddings", (json_int_t)c->rope_original_max_position_embeddings,
      "rope_type", "yarn", "truncate", (int)c->rope_truncate, "rope_theta", c->rope_theta, "sliding_window",
      (json_int_t)c->sliding_window, "swiglu_limit", c->swiglu_limit, "tie_word_embeddings", 0, "torch_dtype",
      "bfloat16");
  char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
  json_decref(root);
  return text;
}

/* ---- deterministic values ---- */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static uint64_t name_seed(uint64_t seed, const char *name) {
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
  return h;
}

static uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

/* Value scale per tensor kind: norms near 1, biases and sinks small, matrices ~ 1/sqrt(fan-in). */
static float tensor_scale(const TensorSpec *spec, const GptOssConfig *c) {
  if (strstr(spec->source, "norm")) return 0.0f; /* marks "1 + noise" */
  if (strstr(spec->source, "bias") || strstr(spec->source, "sinks")) return 0.1f;
  const int64_t fan_in = spec->source_shape[spec->num_dims - 1];
  return 1.0f / sqrtf((float)(fan_in > 0 ? fan_in : c->hidden_size));
}

static void fill_piece(const TensorSpec *spec, const GptOssConfig *c, uint64_t *state, uint8_t *buf, size_t bytes,
                       uint64_t offset_in_tensor) {
  const bool scales = strstr(spec->source, "_scales") != NULL;
  if (spec->dtype == DTYPE_U8) {
    for (size_t i = 0; i < bytes; i++) {
      const uint64_t r = splitmix64(state);
      /* E8M0 scales around 2^-4 keep MXFP4 rows (values up to 6) at a sane magnitude. */
      buf[i] = scales ? (uint8_t)(127 - 5 + (int)(r % 3)) : (uint8_t)r;
    }
    (void)offset_in_tensor;
    return;
  }
  const float scale = tensor_scale(spec, c);
  uint16_t *out = (uint16_t *)buf;
  for (size_t i = 0; i < bytes / 2; i++) {
    const double u = (double)(splitmix64(state) >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* [-1, 1) */
    const float v = scale == 0.0f ? 1.0f + 0.1f * (float)u : (float)(u * 1.7320508 * scale);
    out[i] = f32_to_bf16(v);
  }
}

/* ---- the files ---- */

typedef struct {
  TensorSpec *specs;     /* one per source tensor, full shape */
  int64_t count;
  int *file_of;          /* [count] */
} TensorPlan;

static Status collect_sources(const GptOssConfig *c, TensorPlan *plan) {
  const int64_t nr = weights_replicated_spec_count(c), ns = weights_shard_spec_count(c);
  plan->specs = calloc((size_t)(nr + ns), sizeof *plan->specs);
  plan->file_of = calloc((size_t)(nr + ns), sizeof *plan->file_of);
  if (!plan->specs || !plan->file_of) return status_error(STATUS_OUT_OF_MEMORY, "tensor plan");
  weights_replicated_specs(c, NULL, plan->specs);
  weights_shard_specs(c, 0, NULL, plan->specs + nr);
  plan->count = nr + ns;
  for (int64_t i = 0; i < plan->count; i++) {
    TensorSpec *s = &plan->specs[i];
    memcpy(s->shape, s->source_shape, sizeof s->shape);
    s->slice = SLICE_ALL;
    s->num_bytes = (size_t)tensor_spec_elements(s) * dtype_bytes(s->dtype);
  }
  return STATUS_OK;
}

static Status write_safetensors(const char *path, const TensorPlan *plan, int file, const GptOssConfig *c,
                                uint64_t seed) {
  json_t *header = json_object();
  json_object_set_new(header, "__metadata__", json_pack("{s:s, s:s}", "format", "pt", "generator", "gptoss synth"));
  uint64_t offset = 0;
  for (int64_t i = 0; i < plan->count; i++) {
    if (plan->file_of[i] != file) continue;
    const TensorSpec *s = &plan->specs[i];
    json_t *shape = json_array();
    for (int d = 0; d < s->num_dims; d++) json_array_append_new(shape, json_integer(s->shape[d]));
    json_object_set_new(header, s->source,
                        json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype_name(s->dtype), "shape", shape, "data_offsets",
                                  (json_int_t)offset, (json_int_t)(offset + s->num_bytes)));
    offset += s->num_bytes;
  }
  char *text = json_dumps(header, JSON_COMPACT);
  json_decref(header);
  FILE *f = text ? fopen(path, "wb") : NULL;
  if (!f) {
    free(text);
    return status_error(STATUS_IO_ERROR, "cannot create %s: %s", path, strerror(errno));
  }
  size_t header_len = strlen(text);
  const size_t padded = (header_len + 7) & ~(size_t)7; /* 8-byte aligned data, as the hub's files */
  uint8_t len_bytes[8];
  for (int b = 0; b < 8; b++) len_bytes[b] = (uint8_t)((uint64_t)padded >> (8 * b));
  int ok = fwrite(len_bytes, 1, 8, f) == 8 && fwrite(text, 1, header_len, f) == header_len;
  for (size_t p = header_len; ok && p < padded; p++) ok = fputc(' ', f) != EOF;
  free(text);
  enum { PIECE = 1 << 20 };
  uint8_t *buf = malloc(PIECE);
  ok = ok && buf;
  for (int64_t i = 0; ok && i < plan->count; i++) {
    if (plan->file_of[i] != file) continue;
    const TensorSpec *s = &plan->specs[i];
    uint64_t state = name_seed(seed, s->source);
    for (size_t done = 0; ok && done < s->num_bytes; done += PIECE) {
      const size_t n = s->num_bytes - done < PIECE ? s->num_bytes - done : PIECE;
      fill_piece(s, c, &state, buf, n, done);
      ok = fwrite(buf, 1, n, f) == n;
    }
  }
  free(buf);
  if (fclose(f) != 0) ok = 0;
  if (!ok) return status_error(STATUS_IO_ERROR, "cannot write %s (disk full?)", path);
  return STATUS_OK;
}

static Status write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) return status_error(STATUS_IO_ERROR, "cannot create %s: %s", path, strerror(errno));
  const int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
  if (fclose(f) != 0 || !ok) return status_error(STATUS_IO_ERROR, "cannot write %s", path);
  return STATUS_OK;
}

static Status write_index(const char *dir, const TensorPlan *plan, int num_files) {
  json_t *map = json_object();
  uint64_t total = 0;
  for (int64_t i = 0; i < plan->count; i++) {
    char name[64];
    snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", plan->file_of[i], num_files - 1);
    json_object_set_new(map, plan->specs[i].source, json_string(name));
    total += plan->specs[i].num_bytes;
  }
  json_t *root = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
  char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
  json_decref(root);
  char path[4096];
  snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
  Status st = text ? write_text(path, text) : status_error(STATUS_OUT_OF_MEMORY, "index JSON");
  free(text);
  return st;
}

Status synth_checkpoint(const SynthOptions *o) {
  GptOssConfig c;
  Status st = o->preset ? synth_preset_config(o->preset, &c) : config_load_json(o->config_path, &c);
  if (st != STATUS_OK) return st;
  if (o->layers > 0) {
    if (o->layers > GPTOSS_MAX_LAYERS) return status_error(STATUS_INVALID_ARGUMENT, "--layers %lld is too many", (long long)o->layers);
    c.num_hidden_layers = o->layers;
    for (int64_t l = 0; l < c.num_hidden_layers; l++) c.layer_is_sliding[l] = (l % 2 == 0);
  }
  st = config_validate(&c);
  if (st != STATUS_OK) return st;
  if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST) {
    return status_error(STATUS_IO_ERROR, "cannot create %s: %s", o->out_dir, strerror(errno));
  }
  TensorPlan plan = {0};
  st = collect_sources(&c, &plan);
  uint64_t total = 0;
  for (int64_t i = 0; st == STATUS_OK && i < plan.count; i++) total += plan.specs[i].num_bytes;
  int num_files = o->num_files > 0 ? o->num_files : (int)(total / (4ULL << 30)) + 1;
  if (num_files > plan.count) num_files = (int)plan.count;
  /* Tensors go to files in order, a new file each time the running total passes a share. */
  uint64_t running = 0;
  for (int64_t i = 0; st == STATUS_OK && i < plan.count; i++) {
    plan.file_of[i] = (int)(running * (uint64_t)num_files / (total ? total : 1));
    running += plan.specs[i].num_bytes;
  }
  char path[4096];
  for (int f = 0; st == STATUS_OK && f < num_files; f++) {
    if (num_files == 1) snprintf(path, sizeof path, "%s/model.safetensors", o->out_dir);
    else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", o->out_dir, f, num_files - 1);
    st = write_safetensors(path, &plan, f, &c, o->seed);
  }
  if (st == STATUS_OK && num_files > 1) st = write_index(o->out_dir, &plan, num_files);
  if (st == STATUS_OK) {
    char *text = synth_config_json(&c);
    snprintf(path, sizeof path, "%s/config.json", o->out_dir);
    st = text ? write_text(path, text) : status_error(STATUS_OUT_OF_MEMORY, "config JSON");
    free(text);
  }
  free(plan.specs);
  free(plan.file_of);
  return st;
}
