/* The weights one rank holds, and the list of tensors that makes up a model directory.
 *
 * weights_shard_specs()/weights_replicated_specs() enumerate every tensor of a shard (or of the
 * replicated file): its dataset name in the model directory, its dtype and shape there, and
 * where it comes from in the Hugging Face checkpoint (tensor name + the slice taken). The
 * converter writes exactly this list and the loader reads exactly this list, so the two cannot
 * drift apart. Each spec also names the weight-struct field that points at the tensor once
 * loaded. */
#ifndef GPTOSS_MODEL_WEIGHTS_H
#define GPTOSS_MODEL_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/plan.h"

typedef enum { DTYPE_BF16, DTYPE_U8 } DType;

size_t dtype_bytes(DType dtype);
const char *dtype_name(DType dtype); /* safetensors spelling: "BF16", "U8" */

/* One KV group's share of a layer. G = Hq/Hkv query heads, E_s experts of this shard. */
typedef struct {
  const uint16_t *q_weight;       /* [G·D, H] bf16 */
  const uint16_t *q_bias;         /* [G·D] */
  const uint16_t *k_weight;       /* [D, H] */
  const uint16_t *k_bias;         /* [D] */
  const uint16_t *v_weight;       /* [D, H] */
  const uint16_t *v_bias;         /* [D] */
  const uint16_t *o_weight;       /* [H, G·D]: o_proj's columns for these heads */
  const uint16_t *sinks;          /* [G] */
  const uint8_t *gate_up_blocks;  /* [E_s, 2I, H/32, 16] MXFP4; rows interleave gate/up */
  const uint8_t *gate_up_scales;  /* [E_s, 2I, H/32] */
  const uint16_t *gate_up_bias;   /* [E_s, 2I] */
  const uint8_t *down_blocks;     /* [E_s, H, I/32, 16] */
  const uint8_t *down_scales;     /* [E_s, H, I/32] */
  const uint16_t *down_bias;      /* [E_s, H] */
} ShardLayerWeights;

typedef struct {
  ShardSlice slice;
  ShardLayerWeights layers[GPTOSS_MAX_LAYERS];
  const uint16_t *embed;          /* [V_s, H] rows slice.vocab of embed_tokens */
  const uint16_t *lm_head;        /* [V_s, H] rows slice.vocab of lm_head */
} ShardWeights;

/* Small tensors every rank reads in full. */
typedef struct {
  const uint16_t *input_norm;     /* [H] */
  const uint16_t *post_norm;      /* [H] */
  const uint16_t *router_weight;  /* [E, H] */
  const uint16_t *router_bias;    /* [E] */
  const uint16_t *o_bias;         /* [H]: added once, after the o_proj reduction */
} ReplicatedLayerWeights;

typedef struct {
  ReplicatedLayerWeights layers[GPTOSS_MAX_LAYERS];
  const uint16_t *final_norm;     /* [H] */
} ReplicatedWeights;

typedef enum {
  SLICE_ALL,   /* the whole source tensor */
  SLICE_ROWS,  /* source rows [range) along dim 0 */
  SLICE_COLS,  /* source columns [range) along the last dim of a 2-D tensor */
} SliceKind;

#define TENSOR_MAX_DIMS 4
#define TENSOR_NAME_BYTES 96

typedef struct {
  char name[TENSOR_NAME_BYTES];        /* dataset in the model directory */
  char source[TENSOR_NAME_BYTES];      /* tensor in the HF checkpoint */
  DType dtype;
  int num_dims;
  int64_t shape[TENSOR_MAX_DIMS];      /* in the model directory */
  int64_t source_shape[TENSOR_MAX_DIMS];
  SliceKind slice;
  Range range;
  size_t num_bytes;
  const void **dest;                   /* field to point at the loaded tensor (may be NULL) */
} TensorSpec;

/* Fill `specs` (capacity given by weights_*_spec_count) and return their total bytes.
 * `bind` may be NULL (the converter needs no destinations). */
int64_t weights_shard_spec_count(const GptOssConfig *config);
size_t weights_shard_specs(const GptOssConfig *config, int64_t shard, ShardWeights *bind, TensorSpec *specs);
int64_t weights_replicated_spec_count(const GptOssConfig *config);
size_t weights_replicated_specs(const GptOssConfig *config, ReplicatedWeights *bind, TensorSpec *specs);

/* Weight bytes one decoded token reads across all ranks: every attention, norm and router
 * weight, the k selected experts of each layer, one embedding row and all of lm_head. */
uint64_t weights_decode_bytes_per_token(const GptOssConfig *config);
/* The same for a step of num_rows rows that selected unique_experts distinct experts in all
 * (summed over layers): the dense weights once, an embedding row per row, each expert once. */
uint64_t weights_step_bytes(const GptOssConfig *config, int64_t num_rows, double unique_experts);

/* Number of elements of a spec in the model directory / in the source checkpoint. */
int64_t tensor_spec_elements(const TensorSpec *spec);

#endif
