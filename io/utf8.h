/* UTF-8 as RFC 3629 defines it (no overlong forms, surrogates or code points past U+10FFFF):
 * validation for the tokenizer, and repair for text written out as JSON. */
#ifndef GPTOSS_IO_UTF8_H
#define GPTOSS_IO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the sequence a lead byte starts (1..4), or 0 if it cannot start one. */
size_t utf8_sequence_length(uint8_t lead);

/* Whether bytes[0..num_bytes) are a valid start of the sequence led by bytes[0]. */
bool utf8_prefix_ok(const uint8_t *bytes, size_t num_bytes);

/* Returns true if valid; otherwise *bad_offset is where the first invalid sequence starts. */
bool utf8_validate(const uint8_t *text, size_t num_bytes, size_t *bad_offset);

/* The largest output utf8_replace_invalid can write for num_bytes of input: each byte may become
 * a 3-byte U+FFFD. */
#define UTF8_REPLACED_MAX_BYTES(num_bytes) (3 * (num_bytes))

/* Copies text to out (room for UTF8_REPLACED_MAX_BYTES(num_bytes)) with each invalid sequence
 * replaced by one U+FFFD, the "maximal subpart" practice of Unicode (chapter 3) that browsers and
 * Python follow, so the count of replacements matches theirs. Returns the bytes written. */
size_t utf8_replace_invalid(const uint8_t *text, size_t num_bytes, uint8_t *out);

#endif
