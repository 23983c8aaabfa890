/* Tokenizer loading and plain-text encoding for the model commands (rank 0 only). */
#include "launch/text.h"

#include <stdlib.h>
#include <string.h>

#include "io/model_dir.h"
#include "io/vocab_embedded.h"

bool text_vocab_holds_tokenizer(const Engine *e) { return e->config.vocab_size >= O200K_HARMONY_VOCAB_SIZE; }

Status text_load_tokenizer(const Engine *e, const char *model_dir, Tokenizer **out) {
  if (!text_vocab_holds_tokenizer(e)) {
    return status_error(STATUS_UNSUPPORTED,
                        "this model's vocabulary (%lld ids) cannot hold the o200k_harmony tokenizer (%d ids): "
                        "text needs a model with the real vocabulary; give token ids with --tokens instead",
                        (long long)e->config.vocab_size, O200K_HARMONY_VOCAB_SIZE);
  }
  return text_load_tokenizer_any(model_dir, out);
}

Status text_load_tokenizer_any(const char *model_dir, Tokenizer **out) {
  char *data = NULL;
  size_t num_bytes = 0;
  Status st = modeldir_read_tokenizer(model_dir, &data, &num_bytes);
  if (st == STATUS_OK) st = tokenizer_load_from_memory(out, data, num_bytes, model_dir);
  free(data);
  return st;
}

Status text_encode_plain(const Engine *e, const char *model_dir, const char *text, int32_t **ids_out,
                         int64_t *count_out) {
  Tokenizer *tok = NULL;
  Status st = text_load_tokenizer(e, model_dir, &tok);
  int32_t *ids = NULL;
  size_t n = 0;
  if (st == STATUS_OK) st = tokenizer_encode(tok, text, strlen(text), /*allow_special=*/false, &ids, &n);
  if (st == STATUS_OK && n == 0) st = status_error(STATUS_INVALID_ARGUMENT, "the text encodes to no tokens");
  tokenizer_free(tok);
  if (st != STATUS_OK) {
    free(ids);
    return st;
  }
  *ids_out = ids;
  *count_out = (int64_t)n;
  return STATUS_OK;
}
