/* Validation of a parsed config: everything the engine relies on, checked once, up front. */
#include "model/config.h"

#include <inttypes.h>

static Status require_size(const char *key, int64_t value) {
  if (value > 0 && value <= GPTOSS_MAX_SIZE) return STATUS_OK;
  return status_error(STATUS_INVALID_ARGUMENT, "config.json: \"%s\" must be in [1, %" PRId64 "], got %" PRId64,
                      key, GPTOSS_MAX_SIZE, value);
}

/* a * b * c, or GPTOSS_MAX_TENSOR_ELEMENTS + 1 if it is larger (each factor is in [1, 2^24]). */
static int64_t bounded_product(int64_t a, int64_t b, int64_t c) {
  const int64_t ab = a * b; /* < 2^48 */
  return ab > GPTOSS_MAX_TENSOR_ELEMENTS / c ? GPTOSS_MAX_TENSOR_ELEMENTS + 1 : ab * c;
}

/* The largest tensors of a layer and the vocabulary ones, so that every shape, byte count and
 * per-token byte sum computed from the config stays far from overflow. */
static Status require_tensor_sizes(const GptOssConfig *c) {
  const struct { const char *tensor; int64_t elements; } tensors[] = {
      {"q_proj/o_proj (num_attention_heads x head_dim x hidden_size)",
       bounded_product(c->num_attention_heads, c->head_dim, c->hidden_size)},
      {"the experts (num_local_experts x 2 intermediate_size x hidden_size)",
       bounded_product(c->num_local_experts, 2 * c->intermediate_size, c->hidden_size)},
      {"embed_tokens/lm_head (vocab_size x hidden_size)", bounded_product(c->vocab_size, c->hidden_size, 1)},
  };
  for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
    if (tensors[i].elements > GPTOSS_MAX_TENSOR_ELEMENTS) {
      return status_error(STATUS_INVALID_ARGUMENT,
                          "config.json: the sizes give %s more than %" PRId64 " elements; is this config.json corrupt?",
                          tensors[i].tensor, GPTOSS_MAX_TENSOR_ELEMENTS);
    }
  }
  return STATUS_OK;
}

Status config_validate(const GptOssConfig *c) {
  const struct { const char *key; int64_t value; } sizes[] = {
      {"hidden_size", c->hidden_size},
      {"head_dim", c->head_dim},
      {"num_attention_heads", c->num_attention_heads},
      {"num_key_value_heads", c->num_key_value_heads},
      {"num_hidden_layers", c->num_hidden_layers},
      {"num_local_experts", c->num_local_experts},
      {"num_experts_per_tok", c->num_experts_per_tok},
      {"intermediate_size", c->intermediate_size},
      {"vocab_size", c->vocab_size},
      {"sliding_window", c->sliding_window},
      {"max_position_embeddings", c->max_position_embeddings},
  };
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    Status s = require_size(sizes[i].key, sizes[i].value);
    if (s != STATUS_OK) return s;
  }
  Status tensors_ok = require_tensor_sizes(c);
  if (tensors_ok != STATUS_OK) return tensors_ok;
  if (c->num_attention_heads % c->num_key_value_heads != 0) {
    return status_error(STATUS_UNSUPPORTED,
                        "config.json: num_attention_heads (%" PRId64
                        ") must be a multiple of num_key_value_heads (%" PRId64 ")",
                        c->num_attention_heads, c->num_key_value_heads);
  }
  if (c->head_dim % 2 != 0) {
    return status_error(STATUS_UNSUPPORTED, "config.json: head_dim (%" PRId64 ") must be even for RoPE",
                        c->head_dim);
  }
  if (c->hidden_size % MXFP4_BLOCK_ELEMS != 0 || c->intermediate_size % MXFP4_BLOCK_ELEMS != 0) {
    return status_error(STATUS_UNSUPPORTED,
                        "config.json: hidden_size (%" PRId64 ") and intermediate_size (%" PRId64
                        ") must be multiples of 32 (the MXFP4 block size)",
                        c->hidden_size, c->intermediate_size);
  }
  if (c->num_experts_per_tok > c->num_local_experts) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "config.json: num_experts_per_tok (%" PRId64 ") exceeds num_local_experts (%" PRId64 ")",
                        c->num_experts_per_tok, c->num_local_experts);
  }
  if (c->num_hidden_layers > GPTOSS_MAX_LAYERS) {
    return status_error(STATUS_UNSUPPORTED, "config.json: num_hidden_layers %" PRId64 " exceeds the limit %d",
                        c->num_hidden_layers, GPTOSS_MAX_LAYERS);
  }
  if (!(c->rope_theta > 1.0)) {
    return status_error(STATUS_INVALID_ARGUMENT, "config.json: rope_theta must be > 1, got %g", c->rope_theta);
  }
  if (!(c->rms_norm_eps > 0.0)) {
    return status_error(STATUS_INVALID_ARGUMENT, "config.json: rms_norm_eps must be > 0, got %g", c->rms_norm_eps);
  }
  if (!(c->swiglu_limit > 0.0)) {
    return status_error(STATUS_INVALID_ARGUMENT, "config.json: swiglu_limit must be > 0, got %g", c->swiglu_limit);
  }
  if (!(c->rope_scaling_factor >= 1.0)) {
    return status_error(STATUS_INVALID_ARGUMENT, "config.json: rope_scaling.factor must be >= 1, got %g",
                        c->rope_scaling_factor);
  }
  if (c->rope_scaling_factor > 1.0 &&
      (c->rope_original_max_position_embeddings <= 0 || !(c->rope_beta_fast > c->rope_beta_slow) ||
       !(c->rope_beta_slow > 0.0))) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "config.json: rope_scaling needs original_max_position_embeddings > 0 and "
                        "beta_fast > beta_slow > 0");
  }
  for (int i = 0; i < c->num_eos_token_ids; i++) {
    if (c->eos_token_ids[i] < 0 || c->eos_token_ids[i] >= c->vocab_size) {
      return status_error(STATUS_INVALID_ARGUMENT,
                          "config.json: eos_token_id %" PRId64 " is outside the vocabulary [0, %" PRId64 ")",
                          c->eos_token_ids[i], c->vocab_size);
    }
  }
  return STATUS_OK;
}
