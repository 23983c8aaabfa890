/* The files of `gptoss generate --batch prompts.jsonl`: the requests read from JSON Lines, and
 * one JSON line written per result. Rank 0 reads and writes them; no tokenizing or decoding here.
 *
 * Every problem in a request file is refused as a whole with STATUS_BAD_FORMAT (STATUS_IO_ERROR
 * if it cannot be read, STATUS_OUT_OF_MEMORY, STATUS_INVALID_ARGUMENT for a bad vocab_size), with
 * a message naming the file, the 1-based line, the field (and element index for tokens), the
 * value and what is allowed, e.g.
 *   prompts.jsonl:3: "tokens"[2] = 201090 is outside the vocabulary [0, 201088)
 *   prompts.jsonl:5: unknown key "temprature" (allowed: prompt, tokens, max_tokens, temperature, top_p, seed, raw)
 *   prompts.jsonl:2: not valid JSON: <jansson's message> at column 17 */
#ifndef GPTOSS_IO_BATCH_FILE_H
#define GPTOSS_IO_BATCH_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "model/status.h"

/* A request file over 1 GiB is refused before it is read; so is a line over 16 MiB (a prompt that
 * fills the 131,072-token context is well under 1 MiB). */
#define BATCH_FILE_MAX_BYTES ((size_t)1 << 30)
#define BATCH_LINE_MAX_BYTES ((size_t)16 << 20)
#define BATCH_MAX_TEMPERATURE 100.0 /* as --temperature */

typedef struct {
  char *prompt;            /* UTF-8 text (valid, non-empty, no NUL), or NULL when "tokens" was given */
  int32_t *tokens;         /* "tokens": ids, or NULL */
  int64_t num_tokens;
  int64_t max_tokens;      /* -1: not given (the command's --max-tokens applies) */
  double temperature;      /* NAN: not given */
  double top_p;            /* NAN: not given */
  uint64_t seed;  bool has_seed;
  bool raw;       bool has_raw;
  int64_t line;            /* 1-based line number in the file */
} BatchRequest;

typedef struct { BatchRequest *requests; int64_t count; } BatchFile;

/* Reads a JSON Lines file: one object per non-blank line, {"prompt": "text"} or {"tokens": [1,2,3]}
 * (exactly one of the two), optional "max_tokens" (integer >= 1), "temperature" (number in [0, 100]),
 * "top_p" (number in (0, 1]), "seed" (integer in [0, 2^63-1]: Jansson's integers are signed 64-bit,
 * so a larger one is refused as not valid JSON), "raw" (boolean). Integers and reals are told apart:
 * "max_tokens": 2.5 (or 2.0) is refused, "temperature": 1 is 1.0. Blank lines (spaces, tabs) are
 * skipped but counted; a line may end in \n or \r\n; a UTF-8 byte order mark at the start is skipped.
 * A file with no requests is an error. Nothing is returned on error (out is left empty). */
Status batch_file_read(const char *path, int64_t vocab_size, BatchFile *out);
/* The same on bytes in memory (name is used in messages); the fuzz target calls this. */
Status batch_file_parse(const char *data, size_t length, const char *name, int64_t vocab_size, BatchFile *out);
void batch_file_free(BatchFile *f);

/* One output line of the batch, in JSON, ending in '\n' and flushed:
 *   {"index": 0, "tokens": [...], "text": "...", "finish_reason": "stop"}
 * plus "error": "message" when error != NULL. finish_reason is "stop", "length" or "context"
 * (anything else: STATUS_INVALID_ARGUMENT, nothing written). text may hold any bytes, NUL
 * included: each invalid UTF-8 sequence (in text or error) is written as U+FFFD, so the line is
 * always valid JSON. Returns STATUS_IO_ERROR if the write fails (disk full, closed pipe; the
 * caller ignores SIGPIPE to see the latter as an error rather than die of it). */
Status batch_result_write(FILE *out, int64_t index, const int32_t *tokens, int64_t num_tokens, const char *text,
                          size_t text_length, const char *finish_reason, const char *error);

#endif
