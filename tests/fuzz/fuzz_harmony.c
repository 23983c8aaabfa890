/* Fuzz target: the harmony parser (io/harmony.c), streaming and whole. The first byte says
 * whether the ids continue a prompt (after `<|start|>assistant`); the rest is ids, 3 bytes each
 * (as fuzz_tokenizer.c, some outside the vocabulary), with a byte >= 0xf0 standing for one of
 * the format's special tokens so the fuzzer meets headers often. Pushing the ids one by one and
 * parsing them whole must agree on success, the messages and their text; the streamed deltas
 * must add up to the messages' text. */
#include <stdlib.h>
#include <string.h>

#include "io/harmony.h"
#include "tests/fuzz/fuzz_util.h"

static const int32_t SPECIALS[] = {TOKEN_START,  TOKEN_END,  TOKEN_MESSAGE,   TOKEN_CHANNEL,    TOKEN_RETURN,
                                   TOKEN_CALL,   TOKEN_CONSTRAIN, TOKEN_ENDOFTEXT, TOKEN_ENDOFPROMPT, TOKEN_STARTOFTEXT,
                                   200001, 200013, -1, TOKENIZER_VOCAB_SIZE, INT32_MAX, INT32_MIN};

/* The ids the bytes stand for; returns how many. */
static size_t decode_ids(const uint8_t *data, size_t size, int32_t *ids) {
  size_t n = 0;
  for (size_t i = 0; i < size;) {
    if (data[i] >= 0xf0) {
      ids[n++] = SPECIALS[data[i] - 0xf0];
      i += 1;
    } else if (i + 3 <= size) {
      const uint32_t raw = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 | (uint32_t)data[i + 2] << 16;
      ids[n++] = (int32_t)(raw % (TOKENIZER_VOCAB_SIZE + 64)) - 32;
      i += 3;
    } else {
      break;
    }
  }
  return n;
}

static bool same_string(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static void compare_messages(const HarmonyParsedMessage *a, size_t na, const HarmonyParsedMessage *b, size_t nb) {
  if (na != nb) fuzz_fail("streaming and whole parsing found different numbers of messages");
  for (size_t i = 0; i < na; i++) {
    if (a[i].role != b[i].role || a[i].stop != b[i].stop || a[i].text_bytes != b[i].text_bytes ||
        !same_string(a[i].channel, b[i].channel) || !same_string(a[i].recipient, b[i].recipient) ||
        !same_string(a[i].name, b[i].name) || !same_string(a[i].content_type, b[i].content_type) ||
        (a[i].text_bytes && memcmp(a[i].text, b[i].text, a[i].text_bytes) != 0)) {
      fuzz_fail("streaming and whole parsing disagree on a message");
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const Tokenizer *tok = fuzz_tokenizer();
  const bool after_prompt = data[0] & 1;
  int32_t *ids = malloc(size * sizeof *ids);
  if (!ids) fuzz_fail("out of memory");
  const size_t num_ids = decode_ids(data + 1, size - 1, ids);

  HarmonyParser parser;
  harmony_parser_init(&parser, tok, after_prompt);
  Status streamed = STATUS_OK;
  size_t delta_total = 0;
  for (size_t i = 0; i < num_ids && streamed == STATUS_OK; i++) {
    const char *delta = NULL;
    size_t n = 0;
    streamed = harmony_parser_push(&parser, ids[i], &delta, &n);
    if (n && !delta) fuzz_fail("a delta of bytes without a pointer");
    delta_total += n;
  }
  if (streamed == STATUS_OK) streamed = harmony_parser_finish(&parser);
  HarmonyParsedMessage *a = NULL;
  size_t na = 0;
  if (streamed == STATUS_OK) harmony_parser_take_messages(&parser, &a, &na);
  else harmony_parser_free(&parser);

  HarmonyParsedMessage *b = NULL;
  size_t nb = 0;
  const Status whole = harmony_parse(tok, ids, num_ids, after_prompt, &b, &nb);
  if ((streamed == STATUS_OK) != (whole == STATUS_OK)) fuzz_fail("streaming and whole parsing disagree on success");
  if (streamed == STATUS_OK) {
    compare_messages(a, na, b, nb);
    size_t text_total = 0;
    for (size_t i = 0; i < na; i++) text_total += a[i].text_bytes;
    if (delta_total > text_total) fuzz_fail("the deltas hold more bytes than the messages");
  }
  harmony_messages_free(a, na);
  harmony_messages_free(b, nb);
  free(ids);
  return 0;
}
