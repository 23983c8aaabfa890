/* Fuzz target: the tokenizer (io/tokenizer.c). The first byte picks the mode. Even: the rest is
 * text; encoding either refuses it (invalid UTF-8) or gives ids in the vocabulary whose decoding
 * is exactly the text (special-token strings included when allowed: they decode to their names).
 * Odd: the rest is ids, 3 bytes each, some outside the vocabulary; decoding refuses those, and
 * otherwise streaming the ids one by one gives exactly the bytes decoding gives. */
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz_util.h"

static void fuzz_encode(const Tokenizer *tok, const char *text, size_t size, bool allow_special) {
  int32_t *ids = NULL;
  size_t num_ids = 0;
  if (tokenizer_encode(tok, text, size, allow_special, &ids, &num_ids) != STATUS_OK) return;
  for (size_t i = 0; i < num_ids; i++) {
    if (ids[i] < 0 || ids[i] >= TOKENIZER_VOCAB_SIZE) fuzz_fail("encode gave an id outside the vocabulary");
  }
  char *decoded = NULL;
  size_t decoded_size = 0;
  if (tokenizer_decode(tok, ids, num_ids, &decoded, &decoded_size) != STATUS_OK) fuzz_fail("encoded ids do not decode");
  if (decoded_size != size || memcmp(decoded, text, size) != 0) fuzz_fail("decode(encode(text)) is not the text");
  free(decoded);
  free(ids);
}

/* 3 bytes per id, over a range a little wider than the vocabulary on both sides. */
static int32_t id_at(const uint8_t *p) {
  const uint32_t raw = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
  return (int32_t)(raw % (TOKENIZER_VOCAB_SIZE + 64)) - 32;
}

static void fuzz_decode(const Tokenizer *tok, const uint8_t *data, size_t size) {
  const size_t num_ids = size / 3;
  int32_t *ids = malloc((num_ids ? num_ids : 1) * sizeof *ids);
  if (!ids) fuzz_fail("out of memory");
  bool in_vocab = true;
  for (size_t i = 0; i < num_ids; i++) {
    ids[i] = id_at(data + 3 * i);
    in_vocab = in_vocab && ids[i] >= 0 && ids[i] < TOKENIZER_VOCAB_SIZE;
  }
  char *decoded = NULL;
  size_t decoded_size = 0;
  const bool ok = tokenizer_decode(tok, ids, num_ids, &decoded, &decoded_size) == STATUS_OK;
  if (ok != in_vocab) fuzz_fail("decode accepted an id outside the vocabulary, or refused one inside");
  if (ok) {
    TokenizerStream stream = {0};
    char *streamed = malloc(decoded_size + 1);
    size_t streamed_size = 0;
    for (size_t i = 0; streamed && i < num_ids; i++) {
      const char *piece = NULL;
      size_t n = 0;
      if (tokenizer_stream_push(tok, &stream, ids[i], &piece, &n) != STATUS_OK) fuzz_fail("stream refused an id");
      if (streamed_size + n > decoded_size) fuzz_fail("the stream gave more bytes than decode");
      memcpy(streamed + streamed_size, piece, n);
      streamed_size += n;
    }
    const char *rest = NULL;
    size_t n = 0;
    tokenizer_stream_flush(&stream, &rest, &n);
    if (!streamed || streamed_size + n != decoded_size) fuzz_fail("the stream and decode differ in length");
    memcpy(streamed + streamed_size, rest, n);
    if (memcmp(streamed, decoded, decoded_size) != 0) fuzz_fail("the stream and decode differ");
    tokenizer_stream_free(&stream);
    free(streamed);
  }
  free(decoded);
  free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const Tokenizer *tok = fuzz_tokenizer();
  if (data[0] % 2 == 0) fuzz_encode(tok, (const char *)data + 1, size - 1, data[0] & 2);
  else fuzz_decode(tok, data + 1, size - 1);
  return 0;
}
