/* The model's hyper-parameters, named as in the checkpoint's config.json, and the sizes derived
 * from them. Immutable once validated; every other module reads its shapes from here. */
#ifndef GPTOSS_MODEL_CONFIG_H
#define GPTOSS_MODEL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "model/status.h"

#define GPTOSS_MAX_LAYERS 1024
/* Bounds no real checkpoint comes near (gpt-oss-120b: sizes up to 201,088, tensors up to 2.1e9
 * elements) that keep every size derived from a config, products and sums included, inside
 * int64_t: a config.json is untrusted input until validated. */
#define GPTOSS_MAX_SIZE (INT64_C(1) << 24)
#define GPTOSS_MAX_TENSOR_ELEMENTS (INT64_C(1) << 40)
#define GPTOSS_MAX_EOS 8
#define MXFP4_BLOCK_ELEMS 32
#define MXFP4_BLOCK_BYTES 16

typedef struct {
  /* config.json keys (HF names) */
  int64_t hidden_size;          /* H */
  int64_t head_dim;             /* D */
  int64_t num_attention_heads;  /* Hq */
  int64_t num_key_value_heads;  /* Hkv */
  int64_t num_hidden_layers;    /* L */
  int64_t num_local_experts;    /* E */
  int64_t num_experts_per_tok;  /* k */
  int64_t intermediate_size;    /* I */
  int64_t vocab_size;           /* V */
  int64_t sliding_window;       /* W */
  int64_t max_position_embeddings;
  double rope_theta;
  double rms_norm_eps;
  double swiglu_limit;
  /* rope_scaling (YaRN); factor 1 means plain RoPE */
  double rope_scaling_factor;
  double rope_beta_fast;
  double rope_beta_slow;
  int64_t rope_original_max_position_embeddings;
  bool rope_truncate;
  int64_t eos_token_ids[GPTOSS_MAX_EOS];
  int num_eos_token_ids;
  /* layer_types: true where the layer uses the sliding window */
  bool layer_is_sliding[GPTOSS_MAX_LAYERS];
} GptOssConfig;

/* Checks the config can be run (divisibility, positive sizes, ranges); names the offending key. */
Status config_validate(const GptOssConfig *config);

static inline int64_t config_q_per_kv(const GptOssConfig *c) {
  return c->num_attention_heads / c->num_key_value_heads;
}
static inline int64_t config_num_shards(const GptOssConfig *c) { return c->num_key_value_heads; }
static inline bool config_is_eos(const GptOssConfig *c, int64_t token) {
  for (int i = 0; i < c->num_eos_token_ids; i++) {
    if (c->eos_token_ids[i] == token) return true;
  }
  return false;
}

#endif
