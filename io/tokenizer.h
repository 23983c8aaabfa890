/* o200k_harmony, the tokenizer of GPT-OSS: byte-level BPE exactly as tiktoken does it.
 *
 * Text is validated as UTF-8, cut into pieces by the o200k regex (PCRE2, UTF + UCP, JIT), and
 * each piece is merged by lowest rank (leftmost on ties) from its single bytes; a piece that is
 * itself a token is taken whole. Ranks come from o200k_base.tiktoken (199,998 lines of
 * `base64(bytes) rank`). Ids 199998..201087 are special tokens (see TOKEN_* below); every id in
 * 200000..201087 without a name of its own is `<|reserved_N|>`, N being the id.
 *
 * Invalid UTF-8: encoding refuses it with STATUS_INVALID_ARGUMENT and names the byte offset of
 * the first bad byte (overlong forms, surrogates and code points past U+10FFFF included); no
 * byte is ever dropped or replaced. Decoding returns the exact bytes of the tokens, which need
 * not be valid UTF-8 on their own; TokenizerStream holds back an incomplete character.
 *
 * A loaded Tokenizer is read-only: any number of threads may encode and decode with it at once. */
#ifndef GPTOSS_IO_TOKENIZER_H
#define GPTOSS_IO_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/status.h"

#define TOKENIZER_NUM_RANKS 199998 /* ordinary tokens, ids 0..199997 */
#define TOKENIZER_VOCAB_SIZE 201088
/* A rank file larger than this is not o200k_base.tiktoken (3.6 MB); the bound also keeps every
 * token's offset within 32 bits. */
#define TOKENIZER_FILE_MAX_BYTES ((size_t)64 << 20)

enum {
  TOKEN_STARTOFTEXT = 199998,
  TOKEN_ENDOFTEXT = 199999,
  TOKEN_RETURN = 200002,
  TOKEN_CONSTRAIN = 200003,
  TOKEN_CHANNEL = 200005,
  TOKEN_START = 200006,
  TOKEN_END = 200007,
  TOKEN_MESSAGE = 200008,
  TOKEN_CALL = 200012,
  TOKEN_ENDOFPROMPT = 200018,
};

typedef struct Tokenizer Tokenizer;

/* A growable array of token ids; start from {0} and release with token_list_free. */
typedef struct {
  int32_t *ids;
  size_t num_ids;
  size_t capacity;
} TokenList;

Status token_list_push(TokenList *list, int32_t id);
void token_list_free(TokenList *list);

/* Loads o200k_base.tiktoken. Every rank 0..199997 must appear exactly once with distinct bytes;
 * the error names the line otherwise. */
Status tokenizer_load(Tokenizer **out, const char *tiktoken_path);
/* The same from the file's bytes (e.g. embedded in a model directory); `origin` names them in
 * messages. The bytes are not kept. */
Status tokenizer_load_from_memory(Tokenizer **out, const void *data, size_t num_bytes, const char *origin);
void tokenizer_free(Tokenizer *tok);

/* Encodes `text_bytes` bytes of UTF-8 and appends the ids to `ids`. With allow_special false,
 * every byte is ordinary text (a user typing "<|end|>" gets ordinary ids); with it true, the
 * special-token strings are cut out first and become their ids. On error `ids` keeps what it
 * had, possibly with some ids appended. */
Status tokenizer_encode_append(const Tokenizer *tok, const char *text, size_t text_bytes, bool allow_special,
                               TokenList *ids);
/* The same into a new array the caller frees (NULL with *num_ids_out = 0 for empty text). */
Status tokenizer_encode(const Tokenizer *tok, const char *text, size_t text_bytes, bool allow_special,
                        int32_t **ids_out, size_t *num_ids_out);

/* The bytes of one token (special tokens decode to their names); the pointer lives as long as
 * `tok`. STATUS_INVALID_ARGUMENT for an id outside [0, TOKENIZER_VOCAB_SIZE). */
Status tokenizer_token_bytes(const Tokenizer *tok, int32_t id, const char **bytes_out, size_t *num_bytes_out);
/* Concatenated bytes of `ids`, NUL-terminated (the terminator is not counted); caller frees. */
Status tokenizer_decode(const Tokenizer *tok, const int32_t *ids, size_t num_ids, char **text_out,
                        size_t *text_bytes_out);

/* The id of a special-token string such as "<|end|>" or "<|reserved_200013|>", or -1. */
int32_t tokenizer_special_id(const char *name, size_t name_bytes);
/* The string of a special token with a name of its own (TOKEN_*), NULL for any other id. */
const char *tokenizer_special_name(int32_t id);

/* Streaming decoder: push ids one at a time and print what comes back. Bytes that end inside a
 * UTF-8 character are held until the character is complete; a sequence that can never become
 * valid is passed through as it is, so the concatenation of every push plus the final flush is
 * exactly tokenizer_decode of the same ids. Start from {0}; free with tokenizer_stream_free. */
typedef struct {
  char held[4];
  size_t num_held;
  char *out; /* the text returned by the last push or flush */
  size_t out_capacity;
} TokenizerStream;

/* *text_out (possibly 0 bytes) stays valid until the next call on `stream`. */
Status tokenizer_stream_push(const Tokenizer *tok, TokenizerStream *stream, int32_t id, const char **text_out,
                             size_t *text_bytes_out);
/* Returns the held bytes of an unfinished character (the ids ended inside it) and resets. */
void tokenizer_stream_flush(TokenizerStream *stream, const char **text_out, size_t *text_bytes_out);
void tokenizer_stream_free(TokenizerStream *stream);

/* The pre-split regex (o200k, written for PCRE2 with UTF + UCP) and, for tests, the BPE merge of
 * one piece: the plain O(n^2) tiktoken loop when `reference`, else the heap-based one that
 * encoding uses for long pieces. Writes at most `piece_bytes` ids; returns how many (0 only if
 * out of memory or the piece is empty). */
extern const char TOKENIZER_O200K_PATTERN[];
size_t tokenizer_merge_piece(const Tokenizer *tok, const uint8_t *piece, size_t piece_bytes, bool reference,
                             int32_t *ids_out);

#endif
