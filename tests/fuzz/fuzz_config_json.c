/* Fuzz target: config.json parsing and validation (io/config_json.c, model/config.c). A config
 * that validates must also be safe to derive sizes from: the shard plan, the tensor lists, the
 * bytes per token, as the converter and the loader do next. */
#include <stdlib.h>

#include "io/config_json.h"
#include "io/model_dir.h"
#include "model/plan.h"
#include "model/weights.h"
#include "tests/fuzz/fuzz_util.h"

static void use_config(const GptOssConfig *c) {
  const int64_t num_shards = config_num_shards(c);
  Range shards;
  for (int ranks = 1; ranks <= 8; ranks *= 2) (void)plan_rank_shards(c, ranks, ranks - 1, &shards);
  (void)plan_shard(c, 0);
  (void)plan_shard(c, num_shards - 1);
  (void)plan_vocab_owner(c, c->vocab_size - 1);
  (void)weights_decode_bytes_per_token(c);
  (void)modeldir_checksums_per_file(c);
  const int64_t n = weights_shard_spec_count(c), r = weights_replicated_spec_count(c);
  if (n <= 0 || r <= 0) fuzz_fail("a valid config has no tensors");
  TensorSpec *specs = calloc((size_t)(n > r ? n : r), sizeof *specs);
  ShardWeights *shard = calloc(1, sizeof *shard);
  ReplicatedWeights *replicated = calloc(1, sizeof *replicated);
  if (!specs || !shard || !replicated) fuzz_fail("out of memory");
  weights_shard_specs(c, num_shards - 1, shard, specs);
  for (int64_t i = 0; i < n; i++) (void)tensor_spec_elements(&specs[i]);
  weights_replicated_specs(c, replicated, specs);
  for (int64_t i = 0; i < r; i++) (void)tensor_spec_elements(&specs[i]);
  free(specs);
  free(shard);
  free(replicated);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)fuzz_scratch_dir(); /* silences the expected messages */
  GptOssConfig c;
  if (config_parse_json((const char *)data, size, "fuzz", &c) == STATUS_OK) use_config(&c);
  return 0;
}
