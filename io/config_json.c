/* Parses a Hugging Face config.json for a GPT-OSS model. Every key the engine uses is required
 * (a missing key is named in the error), except rope_scaling (absent: plain RoPE) and
 * layer_types (absent: sliding on even layers, as the released models). */
#include "io/config_json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Status io_read_text_file(const char *path, size_t max_bytes, char **text_out, size_t *length_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return status_error(STATUS_IO_ERROR, "cannot open %s: %s", path, strerror(errno));
  char *text = malloc(max_bytes + 1);
  size_t length = text ? fread(text, 1, max_bytes + 1, f) : 0;
  const int failed = !text || ferror(f);
  fclose(f);
  if (failed) {
    free(text);
    return status_error(STATUS_IO_ERROR, "cannot read %s", path);
  }
  if (length > max_bytes) {
    free(text);
    return status_error(STATUS_BAD_FORMAT, "%s is larger than %zu bytes; is it the right file?", path, max_bytes);
  }
  text[length] = '\0';
  *text_out = text;
  *length_out = length;
  return STATUS_OK;
}

typedef struct {
  json_t *root;
  const char *origin;
} ConfigReader;

static Status get_number(ConfigReader *r, json_t *obj, const char *key, const char *where, double *out) {
  json_t *v = json_object_get(obj, key);
  if (!v) return status_error(STATUS_BAD_FORMAT, "%s: missing key \"%s%s\"", r->origin, where, key);
  if (!json_is_number(v)) {
    return status_error(STATUS_BAD_FORMAT, "%s: \"%s%s\" must be a number", r->origin, where, key);
  }
  *out = json_number_value(v);
  return STATUS_OK;
}

static Status get_int(ConfigReader *r, const char *key, int64_t *out) {
  json_t *v = json_object_get(r->root, key);
  if (!v) return status_error(STATUS_BAD_FORMAT, "%s: missing key \"%s\"", r->origin, key);
  if (!json_is_integer(v)) return status_error(STATUS_BAD_FORMAT, "%s: \"%s\" must be an integer", r->origin, key);
  *out = (int64_t)json_integer_value(v);
  return STATUS_OK;
}

static Status parse_eos(ConfigReader *r, GptOssConfig *c) {
  json_t *v = json_object_get(r->root, "eos_token_id");
  if (!v) return status_error(STATUS_BAD_FORMAT, "%s: missing key \"eos_token_id\"", r->origin);
  if (json_is_integer(v)) {
    c->eos_token_ids[c->num_eos_token_ids++] = (int64_t)json_integer_value(v);
    return STATUS_OK;
  }
  size_t i;
  json_t *item;
  if (!json_is_array(v) || json_array_size(v) > GPTOSS_MAX_EOS) goto bad;
  json_array_foreach(v, i, item) {
    if (!json_is_integer(item)) goto bad;
    c->eos_token_ids[c->num_eos_token_ids++] = (int64_t)json_integer_value(item);
  }
  return STATUS_OK;
bad:
  return status_error(STATUS_BAD_FORMAT, "%s: \"eos_token_id\" must be an integer or a list of up to %d integers",
                      r->origin, GPTOSS_MAX_EOS);
}

static Status parse_layer_types(ConfigReader *r, GptOssConfig *c) {
  json_t *v = json_object_get(r->root, "layer_types");
  if (!v || json_is_null(v)) {
    for (int64_t l = 0; l < c->num_hidden_layers; l++) c->layer_is_sliding[l] = (l % 2 == 0);
    return STATUS_OK;
  }
  if (!json_is_array(v) || (int64_t)json_array_size(v) != c->num_hidden_layers) {
    return status_error(STATUS_BAD_FORMAT, "%s: \"layer_types\" must list one type per layer (%lld)",
                        r->origin, (long long)c->num_hidden_layers);
  }
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    const char *type = json_string_value(json_array_get(v, (size_t)l));
    if (type && !strcmp(type, "sliding_attention")) {
      c->layer_is_sliding[l] = true;
    } else if (type && !strcmp(type, "full_attention")) {
      c->layer_is_sliding[l] = false;
    } else {
      return status_error(STATUS_BAD_FORMAT,
                          "%s: layer_types[%lld] must be \"sliding_attention\" or \"full_attention\"",
                          r->origin, (long long)l);
    }
  }
  return STATUS_OK;
}

static Status parse_rope_scaling(ConfigReader *r, GptOssConfig *c) {
  json_t *v = json_object_get(r->root, "rope_scaling");
  c->rope_scaling_factor = 1.0;
  if (!v || json_is_null(v)) return STATUS_OK;
  if (!json_is_object(v)) return status_error(STATUS_BAD_FORMAT, "%s: \"rope_scaling\" must be an object", r->origin);
  const char *type = json_string_value(json_object_get(v, "rope_type"));
  if (!type) type = json_string_value(json_object_get(v, "type"));
  if (!type || strcmp(type, "yarn") != 0) {
    return status_error(STATUS_UNSUPPORTED, "%s: rope_scaling.rope_type must be \"yarn\" (GPT-OSS)", r->origin);
  }
  double original = 0;
  Status st = get_number(r, v, "factor", "rope_scaling.", &c->rope_scaling_factor);
  if (st == STATUS_OK) st = get_number(r, v, "beta_fast", "rope_scaling.", &c->rope_beta_fast);
  if (st == STATUS_OK) st = get_number(r, v, "beta_slow", "rope_scaling.", &c->rope_beta_slow);
  if (st == STATUS_OK) st = get_number(r, v, "original_max_position_embeddings", "rope_scaling.", &original);
  if (st != STATUS_OK) return st;
  /* A double outside int64's range makes the cast undefined; no context is that long. The value's
   * meaning (> 0) is checked with the rest of the model's config. */
  if (!(original > -(double)(1LL << 40) && original < (double)(1LL << 40))) {
    return status_error(STATUS_BAD_FORMAT,
                        "%s: rope_scaling.original_max_position_embeddings %g is out of range (GPT-OSS uses 4096)",
                        r->origin, original);
  }
  c->rope_original_max_position_embeddings = (int64_t)original;
  /* GPT-OSS sets truncate: false; Hugging Face's default (absent) is true. */
  json_t *truncate = json_object_get(v, "truncate");
  c->rope_truncate = truncate ? json_is_true(truncate) : true;
  return STATUS_OK;
}

Status config_parse_json(const char *text, size_t length, const char *origin, GptOssConfig *out) {
  GptOssConfig c;
  memset(&c, 0, sizeof c);
  json_error_t err;
  json_t *root = json_loadb(text, length, JSON_REJECT_DUPLICATES, &err);
  if (!root) {
    return status_error(STATUS_BAD_FORMAT, "%s: invalid JSON at line %d, column %d: %s", origin, err.line,
                        err.column, err.text);
  }
  ConfigReader r = {root, origin};
  Status st = STATUS_OK;
  if (!json_is_object(root)) st = status_error(STATUS_BAD_FORMAT, "%s: the top level must be an object", origin);
  const struct { const char *key; int64_t *field; } ints[] = {
      {"hidden_size", &c.hidden_size},
      {"head_dim", &c.head_dim},
      {"num_attention_heads", &c.num_attention_heads},
      {"num_key_value_heads", &c.num_key_value_heads},
      {"num_hidden_layers", &c.num_hidden_layers},
      {"num_local_experts", &c.num_local_experts},
      {"intermediate_size", &c.intermediate_size},
      {"vocab_size", &c.vocab_size},
      {"sliding_window", &c.sliding_window},
      {"max_position_embeddings", &c.max_position_embeddings},
  };
  for (size_t i = 0; st == STATUS_OK && i < sizeof ints / sizeof ints[0]; i++) st = get_int(&r, ints[i].key, ints[i].field);
  if (st == STATUS_OK) {
    /* HF names it num_experts_per_tok; OpenAI's own config says experts_per_token. */
    const char *key = json_object_get(root, "num_experts_per_tok") ? "num_experts_per_tok" : "experts_per_token";
    st = get_int(&r, key, &c.num_experts_per_tok);
  }
  if (st == STATUS_OK) st = get_number(&r, root, "rope_theta", "", &c.rope_theta);
  if (st == STATUS_OK) st = get_number(&r, root, "rms_norm_eps", "", &c.rms_norm_eps);
  if (st == STATUS_OK) st = get_number(&r, root, "swiglu_limit", "", &c.swiglu_limit);
  if (st == STATUS_OK) st = parse_eos(&r, &c);
  if (st == STATUS_OK && c.num_hidden_layers > GPTOSS_MAX_LAYERS) {
    st = status_error(STATUS_UNSUPPORTED, "%s: num_hidden_layers %lld exceeds the limit %d", origin,
                      (long long)c.num_hidden_layers, GPTOSS_MAX_LAYERS);
  }
  if (st == STATUS_OK && c.num_hidden_layers > 0) st = parse_layer_types(&r, &c);
  if (st == STATUS_OK) st = parse_rope_scaling(&r, &c);
  if (st == STATUS_OK) {
    json_t *bias = json_object_get(root, "attention_bias");
    if (bias && json_is_false(bias)) {
      st = status_error(STATUS_UNSUPPORTED, "%s: attention_bias = false is not a GPT-OSS model", origin);
    }
  }
  json_decref(root);
  if (st == STATUS_OK) st = config_validate(&c);
  if (st == STATUS_OK) *out = c;
  return st;
}

Status config_load_json(const char *path, GptOssConfig *out) {
  char *text = NULL;
  size_t length = 0;
  Status st = io_read_text_file(path, CONFIG_JSON_MAX_BYTES, &text, &length);
  if (st != STATUS_OK) return st;
  st = config_parse_json(text, length, path, out);
  free(text);
  return st;
}
