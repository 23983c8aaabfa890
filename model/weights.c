/* The tensor list of a model directory (see weights.h). Dataset names mirror the HF names with
 * the shard's slice implied by the file: "layers.3.self_attn.q_proj.weight" in shard 5 holds the
 * q_proj rows of KV group 5. */
#include "model/weights.h"

#include <stdio.h>
#include <string.h>

size_t dtype_bytes(DType dtype) { return dtype == DTYPE_BF16 ? 2 : 1; }
const char *dtype_name(DType dtype) { return dtype == DTYPE_BF16 ? "BF16" : "U8"; }

int64_t tensor_spec_elements(const TensorSpec *spec) {
  int64_t n = 1;
  for (int d = 0; d < spec->num_dims; d++) n *= spec->shape[d];
  return n;
}

enum { SHARD_TENSORS_PER_LAYER = 14, REPLICATED_TENSORS_PER_LAYER = 5 };

int64_t weights_shard_spec_count(const GptOssConfig *c) {
  return c->num_hidden_layers * SHARD_TENSORS_PER_LAYER + 2;
}

int64_t weights_replicated_spec_count(const GptOssConfig *c) {
  return c->num_hidden_layers * REPLICATED_TENSORS_PER_LAYER + 1;
}

typedef struct {
  TensorSpec *specs;
  int64_t count;
  size_t num_bytes;
} SpecList;

/* Appends a spec; `source_shape` has num_dims entries, and the stored shape is derived from the
 * slice. */
static void add_spec(SpecList *list, const void **dest, DType dtype, const char *source,
                     const char *name, int num_dims, const int64_t *source_shape, SliceKind slice,
                     Range range) {
  TensorSpec *s = &list->specs[list->count++];
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  snprintf(s->source, sizeof s->source, "%s", source);
  s->dtype = dtype;
  s->num_dims = num_dims;
  memcpy(s->source_shape, source_shape, (size_t)num_dims * sizeof *source_shape);
  memcpy(s->shape, source_shape, (size_t)num_dims * sizeof *source_shape);
  s->slice = slice;
  s->range = range;
  if (slice == SLICE_ROWS) s->shape[0] = range_size(range);
  if (slice == SLICE_COLS) s->shape[num_dims - 1] = range_size(range);
  s->num_bytes = (size_t)tensor_spec_elements(s) * dtype_bytes(dtype);
  s->dest = dest;
  list->num_bytes += s->num_bytes;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIMS(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* Layer-local helper: names are "model.layers.<l>.<suffix>" in the checkpoint and
 * "layers.<l>.<suffix>" in the model directory. */
static void add_layer_spec(SpecList *list, int64_t layer, const char *suffix, const void **dest,
                           DType dtype, int num_dims, const int64_t *shape, SliceKind slice, Range range) {
  char source[TENSOR_NAME_BYTES], name[TENSOR_NAME_BYTES];
  snprintf(source, sizeof source, "model.layers.%lld.%s", (long long)layer, suffix);
  snprintf(name, sizeof name, "layers.%lld.%s", (long long)layer, suffix);
  add_spec(list, dest, dtype, source, name, num_dims, shape, slice, range);
}

#define LAYER_SPEC(field, suffix, dtype, slice, range, ...)                                     \
  add_layer_spec(&list, l, suffix, lw ? (const void **)&lw->field : NULL, dtype, NDIMS(__VA_ARGS__), \
                 SHAPE(__VA_ARGS__), slice, range)

size_t weights_shard_specs(const GptOssConfig *c, int64_t shard, ShardWeights *bind, TensorSpec *specs) {
  SpecList list = {specs, 0, 0};
  const ShardSlice slice = plan_shard(c, shard);
  if (bind) bind->slice = slice;
  const int64_t H = c->hidden_size, D = c->head_dim, E = c->num_local_experts, I = c->intermediate_size;
  const int64_t Hq = c->num_attention_heads, Hkv = c->num_key_value_heads;
  const Range q_rows = {slice.q_heads.begin * D, slice.q_heads.end * D};
  const Range kv_rows = {slice.kv_heads.begin * D, slice.kv_heads.end * D};
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    ShardLayerWeights *lw = bind ? &bind->layers[l] : NULL;
    LAYER_SPEC(q_weight, "self_attn.q_proj.weight", DTYPE_BF16, SLICE_ROWS, q_rows, Hq * D, H);
    LAYER_SPEC(q_bias, "self_attn.q_proj.bias", DTYPE_BF16, SLICE_ROWS, q_rows, Hq * D);
    LAYER_SPEC(k_weight, "self_attn.k_proj.weight", DTYPE_BF16, SLICE_ROWS, kv_rows, Hkv * D, H);
    LAYER_SPEC(k_bias, "self_attn.k_proj.bias", DTYPE_BF16, SLICE_ROWS, kv_rows, Hkv * D);
    LAYER_SPEC(v_weight, "self_attn.v_proj.weight", DTYPE_BF16, SLICE_ROWS, kv_rows, Hkv * D, H);
    LAYER_SPEC(v_bias, "self_attn.v_proj.bias", DTYPE_BF16, SLICE_ROWS, kv_rows, Hkv * D);
    LAYER_SPEC(o_weight, "self_attn.o_proj.weight", DTYPE_BF16, SLICE_COLS, q_rows, H, Hq * D);
    LAYER_SPEC(sinks, "self_attn.sinks", DTYPE_BF16, SLICE_ROWS, slice.q_heads, Hq);
    LAYER_SPEC(gate_up_blocks, "mlp.experts.gate_up_proj_blocks", DTYPE_U8, SLICE_ROWS, slice.experts,
               E, 2 * I, H / MXFP4_BLOCK_ELEMS, MXFP4_BLOCK_BYTES);
    LAYER_SPEC(gate_up_scales, "mlp.experts.gate_up_proj_scales", DTYPE_U8, SLICE_ROWS, slice.experts,
               E, 2 * I, H / MXFP4_BLOCK_ELEMS);
    LAYER_SPEC(gate_up_bias, "mlp.experts.gate_up_proj_bias", DTYPE_BF16, SLICE_ROWS, slice.experts, E, 2 * I);
    LAYER_SPEC(down_blocks, "mlp.experts.down_proj_blocks", DTYPE_U8, SLICE_ROWS, slice.experts,
               E, H, I / MXFP4_BLOCK_ELEMS, MXFP4_BLOCK_BYTES);
    LAYER_SPEC(down_scales, "mlp.experts.down_proj_scales", DTYPE_U8, SLICE_ROWS, slice.experts,
               E, H, I / MXFP4_BLOCK_ELEMS);
    LAYER_SPEC(down_bias, "mlp.experts.down_proj_bias", DTYPE_BF16, SLICE_ROWS, slice.experts, E, H);
  }
  const int64_t V = c->vocab_size;
  add_spec(&list, bind ? (const void **)&bind->embed : NULL, DTYPE_BF16, "model.embed_tokens.weight",
           "embed_tokens.weight", 2, SHAPE(V, H), SLICE_ROWS, slice.vocab);
  add_spec(&list, bind ? (const void **)&bind->lm_head : NULL, DTYPE_BF16, "lm_head.weight",
           "lm_head.weight", 2, SHAPE(V, H), SLICE_ROWS, slice.vocab);
  return list.num_bytes;
}

size_t weights_replicated_specs(const GptOssConfig *c, ReplicatedWeights *bind, TensorSpec *specs) {
  SpecList list = {specs, 0, 0};
  const int64_t H = c->hidden_size, E = c->num_local_experts;
  const Range all = {0, 0};
  for (int64_t l = 0; l < c->num_hidden_layers; l++) {
    ReplicatedLayerWeights *lw = bind ? &bind->layers[l] : NULL;
    LAYER_SPEC(input_norm, "input_layernorm.weight", DTYPE_BF16, SLICE_ALL, all, H);
    LAYER_SPEC(post_norm, "post_attention_layernorm.weight", DTYPE_BF16, SLICE_ALL, all, H);
    LAYER_SPEC(router_weight, "mlp.router.weight", DTYPE_BF16, SLICE_ALL, all, E, H);
    LAYER_SPEC(router_bias, "mlp.router.bias", DTYPE_BF16, SLICE_ALL, all, E);
    LAYER_SPEC(o_bias, "self_attn.o_proj.bias", DTYPE_BF16, SLICE_ALL, all, H);
  }
  add_spec(&list, bind ? (const void **)&bind->final_norm : NULL, DTYPE_BF16, "model.norm.weight",
           "norm.weight", 1, SHAPE(H), SLICE_ALL, all);
  return list.num_bytes;
}

uint64_t weights_step_bytes(const GptOssConfig *c, int64_t num_rows, double unique_experts) {
  const uint64_t H = (uint64_t)c->hidden_size, D = (uint64_t)c->head_dim, Hq = (uint64_t)c->num_attention_heads;
  const uint64_t Hkv = (uint64_t)c->num_key_value_heads, E = (uint64_t)c->num_local_experts;
  const uint64_t I = (uint64_t)c->intermediate_size;
  const uint64_t bf16 = 2, mxfp4_per_32 = MXFP4_BLOCK_BYTES + 1; /* 16 code bytes + 1 scale byte */
  const uint64_t attention = (2 * Hq * D * H + 2 * Hkv * D * H + Hq * D + 2 * Hkv * D + H + Hq) * bf16;
  const uint64_t norms_router = (2 * H + E * H + E) * bf16;
  const uint64_t expert = (2 * I * (H / 32) + H * (I / 32)) * mxfp4_per_32 + (2 * I + H) * bf16;
  const uint64_t dense = (uint64_t)c->num_hidden_layers * (attention + norms_router) +
                         ((uint64_t)num_rows * H + (uint64_t)c->vocab_size * H + H) * bf16;
  return dense + (uint64_t)(unique_experts * (double)expert + 0.5);
}

uint64_t weights_decode_bytes_per_token(const GptOssConfig *c) {
  return weights_step_bytes(c, 1, (double)(c->num_hidden_layers * c->num_experts_per_tok));
}
