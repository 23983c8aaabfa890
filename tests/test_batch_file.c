/* Tests of io/batch_file: the request file of `gptoss generate --batch` (every field, defaults,
 * blank lines and CRLF, each refusal with its exact message), and the result writer (its lines
 * parsed back with Jansson, invalid UTF-8 replaced, write failures reported). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/batch_file.h"
#include "test_util.h"

#define VOCAB 201088 /* o200k_harmony */
#define NAME "prompts.jsonl"

static Status parse_text(const char *text, BatchFile *f) {
  return batch_file_parse(text, strlen(text), NAME, VOCAB, f);
}

/* The file is refused with exactly `message`, and nothing is returned. */
static void assert_refused_with(const char *text, size_t length, const char *message) {
  BatchFile f = {.requests = (BatchRequest *)&f, .count = 7}; /* must be emptied */
  const Status st = batch_file_parse(text, length, NAME, VOCAB, &f);
  if (st == STATUS_OK || strcmp(status_last_error(), message) != 0) {
    print_error("input:    %s\nexpected: %s\ngot:      %s (%s)\n", text, message, status_last_error(), status_name(st));
  }
  assert_int_equal(st, STATUS_BAD_FORMAT);
  assert_string_equal(status_last_error(), message);
  assert_null(f.requests);
  assert_int_equal(f.count, 0);
}

static void assert_refused(const char *text, const char *message) { assert_refused_with(text, strlen(text), message); }

/* For Jansson's own words: the message starts with `prefix` and holds `part`. */
static void assert_refused_like(const char *text, const char *prefix, const char *part) {
  BatchFile f;
  assert_int_equal(parse_text(text, &f), STATUS_BAD_FORMAT);
  const char *message = status_last_error();
  if (strncmp(message, prefix, strlen(prefix)) != 0 || !strstr(message, part)) {
    print_error("input: %s\nexpected: %s...%s...\ngot: %s\n", text, prefix, part, message);
    fail();
  }
  assert_null(f.requests);
  assert_int_equal(f.count, 0);
}

/* ---- reading: good files ---- */

static void test_every_field_blank_lines_and_crlf(void **state) {
  (void)state;
  const char *text =
      "{\"prompt\": \"Hello, \\u00e9\\n\", \"max_tokens\": 16, \"temperature\": 0.7, \"top_p\": 0.9, \"seed\": 42, \"raw\": true}\r\n"
      "\r\n"
      "  \t \n"
      "{\"tokens\": [0, 1, 201087], \"temperature\": 1, \"top_p\": 1, \"seed\": 0, \"raw\": false}\n"
      "{\"prompt\": \"last, with no newline\"}";
  BatchFile f;
  assert_int_equal(parse_text(text, &f), STATUS_OK);
  assert_int_equal(f.count, 3);

  const BatchRequest *a = &f.requests[0];
  assert_string_equal(a->prompt, "Hello, \xc3\xa9\n");
  assert_null(a->tokens);
  assert_int_equal(a->num_tokens, 0);
  assert_int_equal(a->max_tokens, 16);
  assert_true(a->temperature == 0.7);
  assert_true(a->top_p == 0.9);
  assert_true(a->has_seed && a->seed == 42);
  assert_true(a->has_raw && a->raw);
  assert_int_equal(a->line, 1);

  const BatchRequest *b = &f.requests[1];
  assert_null(b->prompt);
  assert_int_equal(b->num_tokens, 3);
  assert_int_equal(b->tokens[0], 0);
  assert_int_equal(b->tokens[1], 1);
  assert_int_equal(b->tokens[2], 201087); /* the last id of the vocabulary */
  assert_true(b->temperature == 1.0);      /* an integer where a number is wanted */
  assert_true(b->top_p == 1.0);
  assert_true(b->has_seed && b->seed == 0); /* given as 0: not the same as absent */
  assert_true(b->has_raw && !b->raw);
  assert_int_equal(b->line, 4); /* blank lines count */

  assert_string_equal(f.requests[2].prompt, "last, with no newline");
  assert_int_equal(f.requests[2].line, 5);
  batch_file_free(&f);
  assert_null(f.requests);
  assert_int_equal(f.count, 0);
}

static void test_absent_fields_have_defaults(void **state) {
  (void)state;
  BatchFile f;
  assert_int_equal(parse_text("{\"tokens\": [7]}\n", &f), STATUS_OK);
  assert_int_equal(f.count, 1);
  const BatchRequest *r = &f.requests[0];
  assert_null(r->prompt);
  assert_int_equal(r->num_tokens, 1);
  assert_int_equal(r->tokens[0], 7);
  assert_int_equal(r->max_tokens, -1);
  assert_true(isnan(r->temperature));
  assert_true(isnan(r->top_p));
  assert_false(r->has_seed);
  assert_false(r->has_raw);
  assert_false(r->raw);
  assert_int_equal(r->line, 1);
  batch_file_free(&f);
}

static void test_seed_range(void **state) {
  (void)state;
  BatchFile f;
  assert_int_equal(parse_text("{\"prompt\": \"a\", \"seed\": 9223372036854775807}", &f), STATUS_OK);
  assert_true(f.requests[0].has_seed);
  assert_true(f.requests[0].seed == UINT64_C(9223372036854775807));
  batch_file_free(&f);
  /* Jansson's integers are signed 64-bit: 2^63 and 2^64-1 fail as JSON, with a hint. */
  assert_refused_like("{\"prompt\": \"a\", \"seed\": 9223372036854775808}", NAME ":1: not valid JSON: too big integer",
                      "must fit in 64-bit signed: at most 9223372036854775807");
  assert_refused_like("\n{\"prompt\": \"a\", \"seed\": 18446744073709551615}", NAME ":2: not valid JSON: too big integer",
                      "at most 9223372036854775807");
  assert_refused("{\"prompt\": \"a\", \"seed\": -1}",
                 NAME ":1: \"seed\" = -1 is not an integer in [0, 9223372036854775807]");
  assert_refused("{\"prompt\": \"a\", \"seed\": 1.0}",
                 NAME ":1: \"seed\" = 1.0 is not an integer in [0, 9223372036854775807]");
}

static void test_byte_order_mark_is_skipped(void **state) {
  (void)state;
  BatchFile f;
  assert_int_equal(parse_text("\xEF\xBB\xBF{\"prompt\": \"a\"}\n", &f), STATUS_OK);
  assert_int_equal(f.count, 1);
  assert_string_equal(f.requests[0].prompt, "a");
  batch_file_free(&f);
}

static void test_many_requests_grow(void **state) {
  (void)state;
  const int num_requests = 1000;
  char *text = malloc((size_t)num_requests * 32);
  assert_non_null(text);
  size_t length = 0;
  for (int i = 0; i < num_requests; i++) length += (size_t)sprintf(text + length, "{\"tokens\": [%d]}\n", i);
  BatchFile f;
  assert_int_equal(batch_file_parse(text, length, NAME, VOCAB, &f), STATUS_OK);
  assert_int_equal(f.count, num_requests);
  for (int i = 0; i < num_requests; i++) {
    assert_int_equal(f.requests[i].tokens[0], i);
    assert_int_equal(f.requests[i].line, i + 1);
  }
  batch_file_free(&f);
  free(text);
}

/* ---- reading: refusals ---- */

static void test_refuses_token_ids(void **state) {
  (void)state;
  assert_refused("{\"prompt\": \"a\"}\n\n{\"tokens\": [1, 2, 201090]}\n",
                 NAME ":3: \"tokens\"[2] = 201090 is outside the vocabulary [0, 201088)");
  assert_refused("{\"tokens\": [201088]}", NAME ":1: \"tokens\"[0] = 201088 is outside the vocabulary [0, 201088)");
  assert_refused("{\"tokens\": [5, -1]}", NAME ":1: \"tokens\"[1] = -1 is outside the vocabulary [0, 201088)");
  assert_refused("{\"tokens\": [1, \"2\"]}", NAME ":1: \"tokens\"[1] = \"2\" is not an integer token id");
  assert_refused("{\"tokens\": [1, 2.0]}", NAME ":1: \"tokens\"[1] = 2.0 is not an integer token id");
  assert_refused("{\"tokens\": [[1]]}", NAME ":1: \"tokens\"[0] = [1] is not an integer token id");
  assert_refused("{\"tokens\": []}", NAME ":1: \"tokens\" = [] is not a non-empty list of token ids");
  assert_refused("{\"tokens\": \"1,2\"}", NAME ":1: \"tokens\" = \"1,2\" is not a non-empty list of token ids");
}

static void test_refuses_prompt_and_tokens_together_or_neither(void **state) {
  (void)state;
  assert_refused("{\"prompt\": \"a\", \"tokens\": [1]}",
                 NAME ":1: both \"prompt\" and \"tokens\" are given; give exactly one");
  assert_refused("{\"prompt\": \"a\"}\n{\"seed\": 1}",
                 NAME ":2: neither \"prompt\" nor \"tokens\" is given; give exactly one, e.g. {\"prompt\": \"text\"}");
  assert_refused("{}", NAME ":1: neither \"prompt\" nor \"tokens\" is given; give exactly one, e.g. {\"prompt\": \"text\"}");
  assert_refused("{\"prompt\": \"\"}", NAME ":1: \"prompt\" = \"\" is not a non-empty string");
  assert_refused("{\"prompt\": 5}", NAME ":1: \"prompt\" = 5 is not a non-empty string");
  assert_refused("{\"prompt\": null}", NAME ":1: \"prompt\" = null is not a non-empty string");
}

static void test_refuses_unknown_keys(void **state) {
  (void)state;
  assert_refused("{\"prompt\": \"a\"}\n\n\n\n{\"prompt\": \"a\", \"temprature\": 1}",
                 NAME ":5: unknown key \"temprature\" (allowed: prompt, tokens, max_tokens, temperature, top_p, seed, raw)");
  /* Printed escaped, so the message stays one line. */
  assert_refused("{\"bad\\nkey\": 1}",
                 NAME ":1: unknown key \"bad\\nkey\" (allowed: prompt, tokens, max_tokens, temperature, top_p, seed, raw)");
  assert_refused("{\"Prompt\": \"a\"}",
                 NAME ":1: unknown key \"Prompt\" (allowed: prompt, tokens, max_tokens, temperature, top_p, seed, raw)");
}

static void test_refuses_values_of_wrong_type_or_range(void **state) {
  (void)state;
  static const struct {
    const char *text;
    const char *message;
  } CASES[] = {
      {"{\"prompt\": \"a\", \"max_tokens\": 2.5}", NAME ":1: \"max_tokens\" = 2.5 is not an integer >= 1"},
      {"{\"prompt\": \"a\", \"max_tokens\": 2.0}", NAME ":1: \"max_tokens\" = 2.0 is not an integer >= 1"},
      {"{\"prompt\": \"a\", \"max_tokens\": 0}", NAME ":1: \"max_tokens\" = 0 is not an integer >= 1"},
      {"{\"prompt\": \"a\", \"max_tokens\": \"5\"}", NAME ":1: \"max_tokens\" = \"5\" is not an integer >= 1"},
      {"{\"prompt\": \"a\", \"temperature\": -0.5}", NAME ":1: \"temperature\" = -0.5 is not a number in [0, 100]"},
      {"{\"prompt\": \"a\", \"temperature\": \"hot\"}", NAME ":1: \"temperature\" = \"hot\" is not a number in [0, 100]"},
      {"{\"prompt\": \"a\", \"temperature\": 100.5}", NAME ":1: \"temperature\" = 100.5 is not a number in [0, 100]"},
      {"{\"prompt\": \"a\", \"temperature\": 1e300}", NAME ":1: \"temperature\" = 1e300 is not a number in [0, 100]"},
      {"{\"prompt\": \"a\", \"top_p\": 0}", NAME ":1: \"top_p\" = 0 is not a number in (0, 1]"},
      {"{\"prompt\": \"a\", \"top_p\": 1.5}", NAME ":1: \"top_p\" = 1.5 is not a number in (0, 1]"},
      {"{\"prompt\": \"a\", \"top_p\": true}", NAME ":1: \"top_p\" = true is not a number in (0, 1]"},
      {"{\"prompt\": \"a\", \"raw\": 1}", NAME ":1: \"raw\" = 1 is not true or false"},
      {"{\"prompt\": \"a\", \"raw\": \"yes\"}", NAME ":1: \"raw\" = \"yes\" is not true or false"},
      {"[1, 2]", NAME ":1: [1,2] is not a JSON object like {\"prompt\": \"text\"}"},
  };
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) assert_refused(CASES[i].text, CASES[i].message);
}

static void test_long_values_are_cut_in_messages(void **state) {
  (void)state;
  char text[512];
  snprintf(text, sizeof text, "{\"prompt\": \"a\", \"raw\": \"%0200d\"}", 0);
  BatchFile f;
  assert_int_equal(parse_text(text, &f), STATUS_BAD_FORMAT);
  const char *message = status_last_error();
  assert_non_null(strstr(message, "\"raw\" = \"000"));
  assert_non_null(strstr(message, "... is not true or false"));
  assert_true(strlen(message) < 120);
}

static void test_refuses_bad_json(void **state) {
  (void)state;
  assert_refused_like("{\"prompt\": \"a\"}\n{\"prompt\": \"b\",}", NAME ":2: not valid JSON: ", " at column 16");
  assert_refused_like("{\"prompt\": \"a\", \"prompt\": \"b\"}", NAME ":1: not valid JSON: duplicate object key", "column");
  assert_refused_like("42", NAME ":1: not valid JSON: ", "at column");            /* a line must be an object */
  assert_refused_like("\"text\"", NAME ":1: not valid JSON: ", "at column");
  assert_refused_like("{\"prompt\": \"a\"} {}", NAME ":1: not valid JSON: end of file expected", "at column");
  assert_refused_like("{\"prompt\": \"a\\u0000b\"}", NAME ":1: not valid JSON: ", "\\u0000");
  assert_refused_like("{\"prompt\": \"\\ud800\"}", NAME ":1: not valid JSON: invalid Unicode", "at column");
  assert_refused_like("{\"prompt\": \"a\", \"temperature\": 1e400}", NAME ":1: not valid JSON: real number overflow",
                      "at column");
  assert_refused_like("{\"prompt\": \"a\"}\n\f\n", NAME ":2: not valid JSON: ", "at column"); /* not JSON whitespace */
}

static void test_refuses_invalid_utf8(void **state) {
  (void)state;
  assert_refused("{\"prompt\": \"ab\xff\"}", NAME ":1: not valid UTF-8: byte 0xff at column 15 (save the file as UTF-8)");
  /* Columns count characters: the two-byte e-acute is one. */
  assert_refused("{\"prompt\": \"a\"}\n{\"prompt\": \"\xc3\xa9\xe2\x82\"}",
                 NAME ":2: not valid UTF-8: byte 0xe2 at column 14 (save the file as UTF-8)");
  assert_refused("{\"prompt\": \"\xed\xa0\x80\"}", NAME ":1: not valid UTF-8: byte 0xed at column 13 (save the file as UTF-8)");
  /* A NUL byte is valid UTF-8 but not JSON. */
  static const char with_nul[] = "{\"prompt\": \"a\0b\"}";
  BatchFile f;
  assert_int_equal(batch_file_parse(with_nul, sizeof with_nul - 1, NAME, VOCAB, &f), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), NAME ":1: not valid JSON: "));
}

static void test_refuses_files_without_requests(void **state) {
  (void)state;
  const char *message = NAME ": no requests (give one JSON object per line, e.g. {\"prompt\": \"text\"})";
  assert_refused("", message);
  assert_refused("\n  \n\t\r\n\r\n", message);
}

static void test_refuses_long_lines(void **state) {
  (void)state;
  const size_t length = BATCH_LINE_MAX_BYTES + 1;
  char *text = malloc(length);
  assert_non_null(text);
  memset(text, ' ', length);
  memcpy(text, "{\"prompt\": \"a\"}", 15); /* valid JSON, padded past the limit */
  assert_refused_with(text, length, NAME ":1: the line is 16777217 bytes long; the limit is 16777216");
  /* At the limit it is read. */
  BatchFile f;
  assert_int_equal(batch_file_parse(text, length - 1, NAME, VOCAB, &f), STATUS_OK);
  assert_int_equal(f.count, 1);
  batch_file_free(&f);
  free(text);
}

static void test_refuses_bad_vocab_size(void **state) {
  (void)state;
  BatchFile f;
  assert_int_equal(batch_file_parse("{\"tokens\": [0]}", 15, NAME, 0, &f), STATUS_INVALID_ARGUMENT);
  assert_int_equal(batch_file_parse("{\"tokens\": [0]}", 15, NAME, (int64_t)1 << 40, &f), STATUS_INVALID_ARGUMENT);
  assert_int_equal(batch_file_parse("{\"tokens\": [9]}", 15, NAME, 10, &f), STATUS_OK);
  batch_file_free(&f);
  assert_int_equal(batch_file_parse("{\"tokens\": [10]}", 16, NAME, 10, &f), STATUS_BAD_FORMAT);
  assert_string_equal(status_last_error(), NAME ":1: \"tokens\"[0] = 10 is outside the vocabulary [0, 10)");
}

/* ---- reading files ---- */

static void test_read_from_a_file(void **state) {
  (void)state;
  char *dir = test_make_tmpdir();
  char path[4096];
  snprintf(path, sizeof path, "%s/prompts.jsonl", dir);
  const char *text = "{\"prompt\": \"one\"}\n{\"tokens\": [1, 2]}\n";
  test_write_file(path, text, strlen(text));
  BatchFile f;
  assert_int_equal(batch_file_read(path, VOCAB, &f), STATUS_OK);
  assert_int_equal(f.count, 2);
  assert_string_equal(f.requests[0].prompt, "one");
  assert_int_equal(f.requests[1].num_tokens, 2);
  batch_file_free(&f);

  /* Messages name the path as given. */
  test_write_file(path, "{\"prompt\": 1}\n", 14);
  assert_int_equal(batch_file_read(path, VOCAB, &f), STATUS_BAD_FORMAT);
  char expected[4200];
  snprintf(expected, sizeof expected, "%s:1: \"prompt\" = 1 is not a non-empty string", path);
  assert_string_equal(status_last_error(), expected);

  /* Refused by its size, before a byte is read (the file is sparse). */
  FILE *big = fopen(path, "wb");
  assert_non_null(big);
  fclose(big);
  assert_int_equal(truncate(path, (off_t)BATCH_FILE_MAX_BYTES + 1), 0);
  assert_int_equal(batch_file_read(path, VOCAB, &f), STATUS_BAD_FORMAT);
  snprintf(expected, sizeof expected, "%s is larger than 1073741824 bytes; split the batch into several files", path);
  assert_string_equal(status_last_error(), expected);
  assert_null(f.requests);

  snprintf(path, sizeof path, "%s/missing.jsonl", dir);
  assert_int_equal(batch_file_read(path, VOCAB, &f), STATUS_IO_ERROR);
  assert_non_null(strstr(status_last_error(), "cannot open"));
  assert_non_null(strstr(status_last_error(), path));

  assert_int_equal(batch_file_read(dir, VOCAB, &f), STATUS_IO_ERROR); /* a directory opens but cannot be read */
  test_remove_tree(dir);
  free(dir);
}

/* A pipe has no size to check first: it is read as it grows, past the first 64 KiB buffer. */
static void test_read_from_a_pipe(void **state) {
  (void)state;
  char *dir = test_make_tmpdir();
  char path[4096];
  snprintf(path, sizeof path, "%s/fifo", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  const int num_requests = 10000; /* ~170 KB */
  const pid_t writer = fork();
  assert_true(writer >= 0);
  if (writer == 0) {
    FILE *f = fopen(path, "w");
    for (int i = 0; f && i < num_requests; i++) fprintf(f, "{\"tokens\": [%d]}\n", i);
    _exit(f && fclose(f) == 0 ? 0 : 1);
  }
  BatchFile f;
  const Status st = batch_file_read(path, VOCAB, &f);
  int wstatus = 0;
  assert_int_equal(waitpid(writer, &wstatus, 0), writer);
  assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  assert_int_equal(st, STATUS_OK);
  assert_int_equal(f.count, num_requests);
  assert_int_equal(f.requests[num_requests - 1].tokens[0], num_requests - 1);
  batch_file_free(&f);
  test_remove_tree(dir);
  free(dir);
}

/* ---- writing results ---- */

/* What batch_result_write wrote to a fresh temporary file: one line, checked to end in its only
 * newline, then parsed as JSON. */
static json_t *write_and_parse(int64_t index, const int32_t *tokens, int64_t num_tokens, const char *text,
                               size_t text_length, const char *finish_reason, const char *error, char *line,
                               size_t capacity) {
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(batch_result_write(f, index, tokens, num_tokens, text, text_length, finish_reason, error), STATUS_OK);
  rewind(f);
  const size_t length = fread(line, 1, capacity - 1, f);
  fclose(f);
  line[length] = '\0';
  assert_true(length > 0 && length < capacity - 1);
  assert_int_equal(line[length - 1], '\n');
  assert_ptr_equal(memchr(line, '\n', length), line + length - 1);
  json_error_t jerr; /* JSON_ALLOW_NUL: a NUL byte in the text is written as \u0000, which JSON allows */
  json_t *parsed = json_loadb(line, length, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  if (!parsed) print_error("%s: %s\n", line, jerr.text);
  assert_non_null(parsed);
  return parsed;
}

static void assert_json_bytes(json_t *value, const char *bytes, size_t num_bytes) {
  assert_true(json_is_string(value));
  assert_int_equal(json_string_length(value), num_bytes);
  assert_memory_equal(json_string_value(value), bytes, num_bytes);
}

static void test_write_round_trip(void **state) {
  (void)state;
  const int32_t tokens[] = {0, 200005, 201087, 42};
  char line[1024];
  json_t *r = write_and_parse(3, tokens, 4, "Paris.", 6, "stop", NULL, line, sizeof line);
  /* The documented layout, keys in order. */
  assert_string_equal(line, "{\"index\": 3, \"tokens\": [0, 200005, 201087, 42], \"text\": \"Paris.\", \"finish_reason\": \"stop\"}\n");
  assert_int_equal(json_integer_value(json_object_get(r, "index")), 3);
  json_t *ids = json_object_get(r, "tokens");
  assert_int_equal(json_array_size(ids), 4);
  for (size_t i = 0; i < 4; i++) assert_int_equal(json_integer_value(json_array_get(ids, i)), tokens[i]);
  assert_null(json_object_get(r, "error"));
  json_decref(r);

  r = write_and_parse(0, NULL, 0, NULL, 0, "length", NULL, line, sizeof line);
  assert_int_equal(json_array_size(json_object_get(r, "tokens")), 0);
  assert_json_bytes(json_object_get(r, "text"), "", 0);
  assert_string_equal(json_string_value(json_object_get(r, "finish_reason")), "length");
  json_decref(r);
}

static void test_write_escapes_any_valid_text(void **state) {
  (void)state;
  /* Quotes, backslash, newline, tab, other controls, DEL, a NUL, and 2-, 3- and 4-byte characters. */
  static const char text[] = "say \"hi\"\\ \n\t\r\x01\x1f\x7f \0 after NUL, \xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80 \xe2\x80\xa8";
  const size_t length = sizeof text - 1;
  const int32_t token = 1;
  char line[1024];
  json_t *r = write_and_parse(1, &token, 1, text, length, "context", NULL, line, sizeof line);
  assert_json_bytes(json_object_get(r, "text"), text, length);
  assert_string_equal(json_string_value(json_object_get(r, "finish_reason")), "context");
  json_decref(r);
}

static void test_write_replaces_invalid_utf8(void **state) {
  (void)state;
#define FFFD "\xef\xbf\xbd"
  /* Expected as Python's bytes.decode("utf-8", "replace") gives them: one U+FFFD per maximal subpart. */
  static const struct {
    const char *in;
    const char *out;
  } CASES[] = {
      {"a\xff" "b", "a" FFFD "b"},
      {"\xe2\x82", FFFD},                      /* a euro sign cut short (a token boundary) */
      {"\xe2\x82x", FFFD "x"},
      {"\xf0\x9f\x98", FFFD},                  /* an emoji cut short at the end */
      {"\xf0\x9f\x98\xe2\x82\xac", FFFD "\xe2\x82\xac"},
      {"\xed\xa0\x80", FFFD FFFD FFFD},        /* a surrogate */
      {"\xc0\xaf", FFFD FFFD},                 /* overlong '/' */
      {"\xe0\x80\xaf", FFFD FFFD FFFD},
      {"\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD}, /* past U+10FFFF */
      {"\x80 x", FFFD " x"},
      {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"}, /* valid: unchanged */
  };
  char line[1024];
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    json_t *r = write_and_parse((int64_t)i, NULL, 0, CASES[i].in, strlen(CASES[i].in), "stop", NULL, line, sizeof line);
    assert_json_bytes(json_object_get(r, "text"), CASES[i].out, strlen(CASES[i].out));
    json_decref(r);
  }
}

static void test_write_error_field(void **state) {
  (void)state;
  char line[1024];
  json_t *r = write_and_parse(9, NULL, 0, "", 0, "stop", "context full: \"x\"\n\xff", line, sizeof line);
  assert_string_equal(json_string_value(json_object_get(r, "error")), "context full: \"x\"\n" FFFD);
  assert_int_equal(json_integer_value(json_object_get(r, "index")), 9);
  assert_int_equal(json_object_size(r), 5);
  json_decref(r);
}

static void test_write_refuses_bad_finish_reason(void **state) {
  (void)state;
  FILE *f = tmpfile();
  assert_non_null(f);
  assert_int_equal(batch_result_write(f, 0, NULL, 0, "", 0, "done", NULL), STATUS_INVALID_ARGUMENT);
  assert_int_equal(batch_result_write(f, 0, NULL, 0, "", 0, NULL, NULL), STATUS_INVALID_ARGUMENT);
  assert_int_equal(batch_result_write(f, 0, NULL, 2, "", 0, "stop", NULL), STATUS_INVALID_ARGUMENT);
  assert_int_equal(ftell(f), 0); /* nothing written */
  fclose(f);
}

static void test_write_failures_are_io_errors(void **state) {
  (void)state;
  const int32_t tokens[] = {1, 2, 3};
  FILE *full = fopen("/dev/full", "w");
  assert_non_null(full);
  assert_int_equal(batch_result_write(full, 5, tokens, 3, "abc", 3, "stop", NULL), STATUS_IO_ERROR);
  assert_string_equal(status_last_error(), "cannot write batch result 5: No space left on device");
  fclose(full);

  /* A pipe whose reader has gone: EPIPE once SIGPIPE is ignored, as the batch command does. */
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  close(fds[0]);
  void (*previous)(int) = signal(SIGPIPE, SIG_IGN);
  FILE *pipe_out = fdopen(fds[1], "w");
  assert_non_null(pipe_out);
  assert_int_equal(batch_result_write(pipe_out, 6, tokens, 3, "abc", 3, "stop", NULL), STATUS_IO_ERROR);
  assert_string_equal(status_last_error(), "cannot write batch result 6: Broken pipe");
  fclose(pipe_out);
  signal(SIGPIPE, previous);
}

int main(void) {
  status_set_silent(1);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_field_blank_lines_and_crlf),
      cmocka_unit_test(test_absent_fields_have_defaults),
      cmocka_unit_test(test_seed_range),
      cmocka_unit_test(test_byte_order_mark_is_skipped),
      cmocka_unit_test(test_many_requests_grow),
      cmocka_unit_test(test_refuses_token_ids),
      cmocka_unit_test(test_refuses_prompt_and_tokens_together_or_neither),
      cmocka_unit_test(test_refuses_unknown_keys),
      cmocka_unit_test(test_refuses_values_of_wrong_type_or_range),
      cmocka_unit_test(test_long_values_are_cut_in_messages),
      cmocka_unit_test(test_refuses_bad_json),
      cmocka_unit_test(test_refuses_invalid_utf8),
      cmocka_unit_test(test_refuses_files_without_requests),
      cmocka_unit_test(test_refuses_long_lines),
      cmocka_unit_test(test_refuses_bad_vocab_size),
      cmocka_unit_test(test_read_from_a_file),
      cmocka_unit_test(test_read_from_a_pipe),
      cmocka_unit_test(test_write_round_trip),
      cmocka_unit_test(test_write_escapes_any_valid_text),
      cmocka_unit_test(test_write_replaces_invalid_utf8),
      cmocka_unit_test(test_write_error_field),
      cmocka_unit_test(test_write_refuses_bad_finish_reason),
      cmocka_unit_test(test_write_failures_are_io_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
