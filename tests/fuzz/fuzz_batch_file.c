/* libFuzzer target for io/batch_file. Each input is parsed as a request file, and an
 * accepted file is checked against what batch_file.h promises; the same bytes are then written as
 * a result's text and read back, which must always be valid JSON, and the very text when the bytes
 * were valid UTF-8. Any broken promise aborts, so the fuzzer reports it as a crash.
 * Built by tests/fuzz/CMakeLists.txt (libFuzzer with -DGPTOSS_FUZZ=ON, replay_* otherwise). */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/batch_file.h"
#include "io/utf8.h"

#define FUZZ_VOCAB 201088

static void require(int condition) {
  if (!condition) abort();
}

static void check_request(const BatchRequest *r, int64_t previous_line) {
  require((r->prompt == NULL) != (r->tokens == NULL));
  if (r->prompt) {
    size_t bad = 0;
    require(r->prompt[0] != '\0' && utf8_validate((const uint8_t *)r->prompt, strlen(r->prompt), &bad));
    require(r->num_tokens == 0);
  } else {
    require(r->num_tokens >= 1);
    for (int64_t i = 0; i < r->num_tokens; i++) require(r->tokens[i] >= 0 && r->tokens[i] < FUZZ_VOCAB);
  }
  require(r->max_tokens == -1 || r->max_tokens >= 1);
  require(isnan(r->temperature) || r->temperature >= 0);
  require(isnan(r->top_p) || (r->top_p > 0 && r->top_p <= 1));
  require(r->has_seed || r->seed == 0);
  require(r->has_raw || !r->raw);
  require(r->line > previous_line);
}

static void fuzz_parse(const uint8_t *data, size_t size) {
  BatchFile f = {0};
  const Status st = batch_file_parse((const char *)data, size, "fuzz.jsonl", FUZZ_VOCAB, &f);
  if (st == STATUS_OK) {
    require(f.count >= 1);
    for (int64_t i = 0; i < f.count; i++) check_request(&f.requests[i], i ? f.requests[i - 1].line : 0);
  } else {
    require(f.requests == NULL && f.count == 0);
  }
  batch_file_free(&f);
}

static void fuzz_write(const uint8_t *data, size_t size) {
  char *line = NULL;
  size_t line_bytes = 0;
  FILE *out = open_memstream(&line, &line_bytes);
  require(out != NULL);
  const int32_t tokens[] = {0, FUZZ_VOCAB - 1};
  require(batch_result_write(out, 1, tokens, 2, (const char *)data, size, "stop", (const char *)NULL) == STATUS_OK);
  fclose(out);
  require(line_bytes > 0 && line[line_bytes - 1] == '\n' && memchr(line, '\n', line_bytes) == line + line_bytes - 1);
  json_error_t error;
  json_t *parsed = json_loadb(line, line_bytes, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &error);
  require(parsed != NULL);
  json_t *text = json_object_get(parsed, "text");
  require(json_is_string(text));
  size_t bad = 0;
  if (utf8_validate(data, size, &bad)) {
    require(json_string_length(text) == size && memcmp(json_string_value(text), data, size) == 0);
  }
  json_decref(parsed);
  free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  status_set_silent(1);
  fuzz_parse(data, size);
  fuzz_write(data, size);
  return 0;
}
