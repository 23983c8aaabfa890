/* UTF-8 validation and repair (see utf8.h). Pure functions; any rank may call them. */
#include "io/utf8.h"

#include <string.h>

size_t utf8_sequence_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

/* The second byte's range rules out overlong forms, surrogates and code points past U+10FFFF. */
static bool utf8_second_byte_ok(uint8_t lead, uint8_t byte) {
  switch (lead) {
    case 0xE0: return byte >= 0xA0 && byte <= 0xBF;
    case 0xED: return byte >= 0x80 && byte <= 0x9F;
    case 0xF0: return byte >= 0x90 && byte <= 0xBF;
    case 0xF4: return byte >= 0x80 && byte <= 0x8F;
    default: return (byte & 0xC0) == 0x80;
  }
}

bool utf8_prefix_ok(const uint8_t *bytes, size_t num_bytes) {
  for (size_t i = 1; i < num_bytes; i++) {
    const bool ok = i == 1 ? utf8_second_byte_ok(bytes[0], bytes[1]) : (bytes[i] & 0xC0) == 0x80;
    if (!ok) return false;
  }
  return true;
}

bool utf8_validate(const uint8_t *text, size_t num_bytes, size_t *bad_offset) {
  size_t i = 0;
  while (i < num_bytes) {
    if (text[i] < 0x80) {
      i++;
      continue;
    }
    const size_t length = utf8_sequence_length(text[i]);
    if (length == 0 || length > num_bytes - i || !utf8_prefix_ok(text + i, length)) {
      *bad_offset = i;
      return false;
    }
    i += length;
  }
  return true;
}

/* How many bytes from bytes[0] (a lead that cannot complete here) one U+FFFD stands for: the
 * longest valid start of a sequence, at least the lead byte itself. */
static size_t utf8_maximal_subpart(const uint8_t *bytes, size_t num_bytes, size_t length) {
  size_t k = 1;
  while (k < length && k < num_bytes && utf8_prefix_ok(bytes, k + 1)) k++;
  return k;
}

size_t utf8_replace_invalid(const uint8_t *text, size_t num_bytes, uint8_t *out) {
  static const uint8_t REPLACEMENT[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */
  size_t written = 0;
  size_t i = 0;
  while (i < num_bytes) {
    const size_t length = utf8_sequence_length(text[i]);
    if (length != 0 && length <= num_bytes - i && utf8_prefix_ok(text + i, length)) {
      memcpy(out + written, text + i, length);
      written += length;
      i += length;
      continue;
    }
    i += length == 0 ? 1 : utf8_maximal_subpart(text + i, num_bytes - i, length);
    memcpy(out + written, REPLACEMENT, sizeof REPLACEMENT);
    written += sizeof REPLACEMENT;
  }
  return written;
}
