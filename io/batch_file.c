/* The request and result files of `gptoss generate --batch` (see batch_file.h). Rank 0 only; it
 * knows nothing of tokenizing, sampling or MPI. Each line goes to Jansson on its own, so an error
 * names its line and a large file never becomes one large JSON tree; the first error refuses the
 * whole file, so a batch never starts on half of what was asked. */
#include "io/batch_file.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/utf8.h"

/* Where a line's errors point, and what its token ids must fit. */
typedef struct {
  const char *name;
  int64_t line;
  int64_t vocab_size;
} LineContext;

/* ---- messages ---- */

/* Room for a value as the user wrote it, re-encoded as ASCII JSON and cut short if long. */
#define VALUE_TEXT_BYTES 64

static void describe_value(const json_t *value, char text[VALUE_TEXT_BYTES]) {
  const size_t flags = JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15);
  char *dumped = value ? json_dumps(value, flags) : NULL;
  if (!dumped) {
    snprintf(text, VALUE_TEXT_BYTES, "(a value)");
  } else if (strlen(dumped) < VALUE_TEXT_BYTES) {
    snprintf(text, VALUE_TEXT_BYTES, "%s", dumped);
  } else {
    snprintf(text, VALUE_TEXT_BYTES, "%.*s...", VALUE_TEXT_BYTES - 4, dumped);
  }
  free(dumped);
}

static Status refuse_value(const LineContext *c, const char *field, const json_t *value, const char *allowed) {
  char text[VALUE_TEXT_BYTES];
  describe_value(value, text);
  return status_error(STATUS_BAD_FORMAT, "%s:%lld: \"%s\" = %s is not %s", c->name, (long long)c->line, field, text,
                      allowed);
}

static Status refuse_out_of_memory(const LineContext *c) {
  return status_error(STATUS_OUT_OF_MEMORY, "%s:%lld: out of memory", c->name, (long long)c->line);
}

static Status refuse_too_large(const char *name, size_t max_bytes) {
  return status_error(STATUS_BAD_FORMAT, "%s is larger than %zu bytes; split the batch into several files", name,
                      max_bytes);
}

/* ---- one field each ---- */

static Status parse_prompt(const LineContext *c, const json_t *value, BatchRequest *r) {
  /* Jansson has checked the string is valid UTF-8 without NUL (\u0000 needs JSON_ALLOW_NUL), so
   * it is whole as a C string. */
  if (!json_is_string(value) || json_string_length(value) == 0) {
    return refuse_value(c, "prompt", value, "a non-empty string");
  }
  r->prompt = strdup(json_string_value(value));
  return r->prompt ? STATUS_OK : refuse_out_of_memory(c);
}

static Status parse_token_id(const LineContext *c, const json_t *item, size_t index, int32_t *id_out) {
  if (!json_is_integer(item)) {
    char text[VALUE_TEXT_BYTES];
    describe_value(item, text);
    return status_error(STATUS_BAD_FORMAT, "%s:%lld: \"tokens\"[%zu] = %s is not an integer token id", c->name,
                        (long long)c->line, index, text);
  }
  const json_int_t id = json_integer_value(item);
  if (id < 0 || id >= c->vocab_size) {
    return status_error(STATUS_BAD_FORMAT, "%s:%lld: \"tokens\"[%zu] = %lld is outside the vocabulary [0, %lld)",
                        c->name, (long long)c->line, index, (long long)id, (long long)c->vocab_size);
  }
  *id_out = (int32_t)id;
  return STATUS_OK;
}

static Status parse_tokens(const LineContext *c, const json_t *value, BatchRequest *r) {
  if (!json_is_array(value) || json_array_size(value) == 0) {
    return refuse_value(c, "tokens", value, "a non-empty list of token ids");
  }
  const size_t num_tokens = json_array_size(value);
  int32_t *tokens = malloc(num_tokens * sizeof *tokens);
  if (!tokens) return refuse_out_of_memory(c);
  for (size_t i = 0; i < num_tokens; i++) {
    const Status st = parse_token_id(c, json_array_get(value, i), i, &tokens[i]);
    if (st != STATUS_OK) {
      free(tokens);
      return st;
    }
  }
  r->tokens = tokens;
  r->num_tokens = (int64_t)num_tokens;
  return STATUS_OK;
}

static Status parse_max_tokens(const LineContext *c, const json_t *value, BatchRequest *r) {
  if (!json_is_integer(value) || json_integer_value(value) < 1) return refuse_value(c, "max_tokens", value, "an integer >= 1");
  r->max_tokens = json_integer_value(value);
  return STATUS_OK;
}

/* json_number_value takes integers too: "temperature": 1 is 1.0. The range is --temperature's: a
 * larger value (1e300 would become an infinite float) samples as if uniformly, never what was meant. */
static Status parse_temperature(const LineContext *c, const json_t *value, BatchRequest *r) {
  if (!json_is_number(value) || !(json_number_value(value) >= 0 && json_number_value(value) <= BATCH_MAX_TEMPERATURE)) {
    return refuse_value(c, "temperature", value, "a number in [0, 100]");
  }
  r->temperature = json_number_value(value);
  return STATUS_OK;
}

static Status parse_top_p(const LineContext *c, const json_t *value, BatchRequest *r) {
  const double top_p = json_is_number(value) ? json_number_value(value) : NAN;
  if (!(top_p > 0 && top_p <= 1)) return refuse_value(c, "top_p", value, "a number in (0, 1]");
  r->top_p = top_p;
  return STATUS_OK;
}

/* Jansson's integers are signed 64-bit: a larger seed fails as JSON, with a hint (refuse_json). */
static Status parse_seed(const LineContext *c, const json_t *value, BatchRequest *r) {
  if (!json_is_integer(value) || json_integer_value(value) < 0) {
    return refuse_value(c, "seed", value, "an integer in [0, 9223372036854775807]");
  }
  r->seed = (uint64_t)json_integer_value(value);
  r->has_seed = true;
  return STATUS_OK;
}

static Status parse_raw(const LineContext *c, const json_t *value, BatchRequest *r) {
  if (!json_is_boolean(value)) return refuse_value(c, "raw", value, "true or false");
  r->raw = json_is_true(value);
  r->has_raw = true;
  return STATUS_OK;
}

typedef Status (*FieldParser)(const LineContext *c, const json_t *value, BatchRequest *r);

static const struct {
  const char *key;
  FieldParser parse;
} FIELDS[] = {
    {"prompt", parse_prompt}, {"tokens", parse_tokens}, {"max_tokens", parse_max_tokens},
    {"temperature", parse_temperature}, {"top_p", parse_top_p}, {"seed", parse_seed}, {"raw", parse_raw},
};
#define NUM_FIELDS (sizeof FIELDS / sizeof FIELDS[0])

static Status refuse_unknown_key(const LineContext *c, const char *key) {
  char allowed[128] = "";
  for (size_t i = 0; i < NUM_FIELDS; i++) {
    strncat(allowed, i ? ", " : "", sizeof allowed - strlen(allowed) - 1);
    strncat(allowed, FIELDS[i].key, sizeof allowed - strlen(allowed) - 1);
  }
  /* Quoted and escaped as JSON, so a key holding a newline or an escape sequence prints as one. */
  json_t *quoted = json_string(key);
  char text[VALUE_TEXT_BYTES];
  describe_value(quoted, text);
  json_decref(quoted);
  return status_error(STATUS_BAD_FORMAT, "%s:%lld: unknown key %s (allowed: %s)", c->name, (long long)c->line, text,
                      allowed);
}

/* ---- one line ---- */

static Status parse_fields(const LineContext *c, json_t *object, BatchRequest *r) {
  const char *key;
  json_t *value;
  json_object_foreach(object, key, value) {
    size_t i = 0;
    while (i < NUM_FIELDS && strcmp(FIELDS[i].key, key) != 0) i++;
    const Status st = i < NUM_FIELDS ? FIELDS[i].parse(c, value, r) : refuse_unknown_key(c, key);
    if (st != STATUS_OK) return st;
  }
  return STATUS_OK;
}

static Status check_prompt_or_tokens(const LineContext *c, const BatchRequest *r) {
  if (r->prompt && r->tokens) {
    return status_error(STATUS_BAD_FORMAT, "%s:%lld: both \"prompt\" and \"tokens\" are given; give exactly one",
                        c->name, (long long)c->line);
  }
  if (!r->prompt && !r->tokens) {
    return status_error(STATUS_BAD_FORMAT,
                        "%s:%lld: neither \"prompt\" nor \"tokens\" is given; give exactly one, e.g. {\"prompt\": \"text\"}",
                        c->name, (long long)c->line);
  }
  return STATUS_OK;
}

/* Checked before Jansson, whose message for a bad byte shows only the text before it. */
static Status check_utf8(const LineContext *c, const char *text, size_t num_bytes) {
  size_t bad = 0;
  if (utf8_validate((const uint8_t *)text, num_bytes, &bad)) return STATUS_OK;
  size_t column = 1; /* in characters, as Jansson counts them */
  for (size_t i = 0; i < bad; i++) column += ((uint8_t)text[i] & 0xC0) != 0x80;
  return status_error(STATUS_BAD_FORMAT, "%s:%lld: not valid UTF-8: byte 0x%02x at column %zu (save the file as UTF-8)",
                      c->name, (long long)c->line, (uint8_t)text[bad], column);
}

static Status refuse_json(const LineContext *c, const json_error_t *error) {
  const char *hint = strncmp(error->text, "too big", 7) == 0
                         ? " (integers, \"seed\" included, must fit in 64-bit signed: at most 9223372036854775807)"
                         : "";
  return status_error(STATUS_BAD_FORMAT, "%s:%lld: not valid JSON: %s at column %d%s", c->name, (long long)c->line,
                      error->text, error->column, hint);
}

static void request_free(BatchRequest *r) {
  free(r->prompt);
  free(r->tokens);
  r->prompt = NULL;
  r->tokens = NULL;
}

static Status parse_request(const LineContext *c, const char *text, size_t num_bytes, BatchRequest *r) {
  *r = (BatchRequest){.max_tokens = -1, .temperature = NAN, .top_p = NAN, .line = c->line};
  if (num_bytes > BATCH_LINE_MAX_BYTES) {
    return status_error(STATUS_BAD_FORMAT, "%s:%lld: the line is %zu bytes long; the limit is %zu", c->name,
                        (long long)c->line, num_bytes, BATCH_LINE_MAX_BYTES);
  }
  Status st = check_utf8(c, text, num_bytes);
  if (st != STATUS_OK) return st;
  json_error_t error;
  /* Without JSON_DECODE_ANY a bare number or string is refused, but an array is not: checked below. */
  json_t *root = json_loadb(text, num_bytes, JSON_REJECT_DUPLICATES, &error);
  if (!root) return refuse_json(c, &error);
  if (json_is_object(root)) {
    st = parse_fields(c, root, r);
  } else {
    char value[VALUE_TEXT_BYTES];
    describe_value(root, value);
    st = status_error(STATUS_BAD_FORMAT, "%s:%lld: %s is not a JSON object like {\"prompt\": \"text\"}", c->name,
                      (long long)c->line, value);
  }
  if (st == STATUS_OK) st = check_prompt_or_tokens(c, r);
  json_decref(root);
  if (st != STATUS_OK) request_free(r);
  return st;
}

/* ---- the file ---- */

/* '\r' is the rest of a CRLF line ending; on other lines Jansson skips it as whitespace. */
static bool is_blank(const char *text, size_t num_bytes) {
  for (size_t i = 0; i < num_bytes; i++) {
    if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r') return false;
  }
  return true;
}

static Status append_request(const LineContext *c, BatchFile *f, size_t *capacity, const BatchRequest *r) {
  if ((size_t)f->count == *capacity) {
    const size_t grown = *capacity ? 2 * *capacity : 16;
    BatchRequest *bigger = realloc(f->requests, grown * sizeof *bigger);
    if (!bigger) return refuse_out_of_memory(c);
    f->requests = bigger;
    *capacity = grown;
  }
  f->requests[f->count++] = *r;
  return STATUS_OK;
}

static Status parse_line(const LineContext *c, const char *text, size_t num_bytes, BatchFile *f, size_t *capacity) {
  BatchRequest r;
  Status st = parse_request(c, text, num_bytes, &r);
  if (st == STATUS_OK) st = append_request(c, f, capacity, &r);
  if (st != STATUS_OK) request_free(&r);
  return st;
}

Status batch_file_parse(const char *data, size_t length, const char *name, int64_t vocab_size, BatchFile *out) {
  *out = (BatchFile){0};
  if (!name) name = "batch file";
  if (vocab_size < 1 || vocab_size > (int64_t)INT32_MAX + 1) {
    return status_error(STATUS_INVALID_ARGUMENT, "%s: vocab_size %lld must be in [1, 2^31]", name, (long long)vocab_size);
  }
  if (!data && length > 0) return status_error(STATUS_INVALID_ARGUMENT, "%s: no data", name);
  if (length > BATCH_FILE_MAX_BYTES) return refuse_too_large(name, BATCH_FILE_MAX_BYTES);
  size_t pos = length >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0; /* Windows editors write a BOM */
  BatchFile f = {0};
  size_t capacity = 0;
  LineContext c = {name, 0, vocab_size};
  Status st = STATUS_OK;
  while (st == STATUS_OK && pos < length) {
    const char *start = data + pos;
    const char *newline = memchr(start, '\n', length - pos);
    const size_t num_bytes = newline ? (size_t)(newline - start) : length - pos;
    pos += num_bytes + (newline != NULL);
    c.line++;
    if (!is_blank(start, num_bytes)) st = parse_line(&c, start, num_bytes, &f, &capacity);
  }
  if (st == STATUS_OK && f.count == 0) {
    st = status_error(STATUS_BAD_FORMAT, "%s: no requests (give one JSON object per line, e.g. {\"prompt\": \"text\"})",
                      name);
  }
  if (st != STATUS_OK) {
    batch_file_free(&f);
    return st;
  }
  *out = f;
  return STATUS_OK;
}

/* Reads path whole, refusing more than max_bytes: a regular file by its size before a byte is
 * read, a pipe (e.g. /dev/stdin) as it grows. */
static Status read_whole_file(const char *path, size_t max_bytes, char **data_out, size_t *length_out) {
  FILE *f = fopen(path, "rb");
  if (!f) return status_error(STATUS_IO_ERROR, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  size_t capacity = (size_t)64 << 10;
  if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) {
    if ((uint64_t)sb.st_size > max_bytes) {
      fclose(f);
      return refuse_too_large(path, max_bytes);
    }
    capacity = (size_t)sb.st_size + 1; /* + 1: the end of file shows as a short read, with no regrowth */
  }
  char *data = malloc(capacity);
  size_t length = 0;
  bool too_large = false;
  while (data) {
    length += fread(data + length, 1, capacity - length, f);
    if (length < capacity) break; /* end of file, or an error (ferror, below) */
    if (length > max_bytes) {
      too_large = true;
      break;
    }
    const size_t grown = capacity > max_bytes / 2 ? max_bytes + 1 : 2 * capacity;
    char *bigger = realloc(data, grown);
    if (!bigger) free(data);
    data = bigger;
    capacity = grown;
  }
  const bool read_failed = ferror(f) != 0;
  const int read_errno = errno;
  fclose(f);
  Status st = STATUS_OK;
  if (!data) st = status_error(STATUS_OUT_OF_MEMORY, "out of memory reading %s", path);
  else if (read_failed) st = status_error(STATUS_IO_ERROR, "cannot read %s: %s", path, strerror(read_errno));
  else if (too_large) st = refuse_too_large(path, max_bytes);
  if (st != STATUS_OK) {
    free(data);
    return st;
  }
  *data_out = data;
  *length_out = length;
  return STATUS_OK;
}

Status batch_file_read(const char *path, int64_t vocab_size, BatchFile *out) {
  *out = (BatchFile){0};
  char *data = NULL;
  size_t length = 0;
  Status st = read_whole_file(path, BATCH_FILE_MAX_BYTES, &data, &length);
  if (st != STATUS_OK) return st;
  st = batch_file_parse(data, length, path, vocab_size, out);
  free(data);
  return st;
}

void batch_file_free(BatchFile *f) {
  if (!f) return;
  for (int64_t i = 0; i < f->count; i++) request_free(&f->requests[i]);
  free(f->requests);
  *f = (BatchFile){0};
}

/* ---- results ---- */

/* A JSON string of text with each invalid UTF-8 sequence replaced by U+FFFD (NUL bytes kept:
 * Jansson writes them as \u0000). NULL when out of memory. */
static json_t *json_string_replacing_invalid(const char *text, size_t num_bytes) {
  if (num_bytes > SIZE_MAX / 3 - 1) return NULL;
  uint8_t *valid = malloc(UTF8_REPLACED_MAX_BYTES(num_bytes) + 1);
  if (!valid) return NULL;
  const size_t num_valid = utf8_replace_invalid((const uint8_t *)text, num_bytes, valid);
  json_t *string = json_stringn_nocheck((const char *)valid, num_valid);
  free(valid);
  return string;
}

static bool is_finish_reason(const char *reason) {
  return reason && (!strcmp(reason, "stop") || !strcmp(reason, "length") || !strcmp(reason, "context"));
}

/* The result as a JSON object, keys in the documented order (Jansson keeps insertion order);
 * NULL when out of memory. The *_new calls take ownership even when they fail. */
static json_t *result_object(int64_t index, const int32_t *tokens, int64_t num_tokens, const char *text,
                             size_t text_length, const char *finish_reason, const char *error) {
  json_t *object = json_object();
  json_t *ids = json_array();
  int failed = !object || !ids;
  for (int64_t i = 0; i < num_tokens && !failed; i++) failed |= json_array_append_new(ids, json_integer(tokens[i]));
  failed |= json_object_set_new(object, "index", json_integer(index));
  failed |= json_object_set_new(object, "tokens", ids);
  failed |= json_object_set_new(object, "text", json_string_replacing_invalid(text ? text : "", text_length));
  failed |= json_object_set_new(object, "finish_reason", json_string(finish_reason));
  if (error) failed |= json_object_set_new(object, "error", json_string_replacing_invalid(error, strlen(error)));
  if (failed) {
    json_decref(object);
    return NULL;
  }
  return object;
}

Status batch_result_write(FILE *out, int64_t index, const int32_t *tokens, int64_t num_tokens, const char *text,
                          size_t text_length, const char *finish_reason, const char *error) {
  if (!out || num_tokens < 0 || (num_tokens > 0 && !tokens) || (!text && text_length > 0) ||
      !is_finish_reason(finish_reason)) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "batch result %lld: bad arguments (finish_reason must be stop, length or context)",
                        (long long)index);
  }
  json_t *object = result_object(index, tokens, num_tokens, text, text_length, finish_reason, error);
  /* Flags 0 (indent 0): one line, with ", " and ": " between items as in the documented example. */
  char *line = object ? json_dumps(object, 0) : NULL;
  json_decref(object);
  if (!line) return status_error(STATUS_OUT_OF_MEMORY, "batch result %lld: out of memory", (long long)index);
  const size_t num_bytes = strlen(line);
  /* Flushed per result: a full disk shows here rather than at fclose, and a reader of the
   * output sees each result as it comes. */
  const bool written = fwrite(line, 1, num_bytes, out) == num_bytes && fputc('\n', out) != EOF && fflush(out) == 0;
  free(line);
  if (!written) {
    return status_error(STATUS_IO_ERROR, "cannot write batch result %lld: %s", (long long)index, strerror(errno));
  }
  return STATUS_OK;
}
