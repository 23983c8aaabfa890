/* Tests of io/tokenizer: every text -> ids case of tests/data/tokenizer/vectors.json (made by
 * OpenAI's tiktoken core), special tokens in both modes, invalid UTF-8, round trips, the heap
 * merge against tiktoken's plain loop, the streaming decoder, and malformed rank files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "io/config_json.h"
#include "io/tokenizer.h"

#define DATA GPTOSS_TEST_DATA "/tokenizer/"

typedef struct {
  Tokenizer *tok;
  json_t *vectors;
} Fixture;

static Fixture g;

static int setup(void **state) {
  (void)state;
  if (tokenizer_load(&g.tok, GPTOSS_VOCAB_FILE) != STATUS_OK) return -1;
  json_error_t error;
  g.vectors = json_load_file(DATA "vectors.json", 0, &error);
  if (!g.vectors) fprintf(stderr, "vectors.json line %d: %s\n", error.line, error.text);
  return g.vectors ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  tokenizer_free(g.tok);
  json_decref(g.vectors);
  return 0;
}

/* A case's bytes from its utf8_hex (the exact input, independent of JSON string escapes). */
static size_t case_bytes(json_t *c, char *out, size_t capacity) {
  const char *hex = json_string_value(json_object_get(c, "utf8_hex"));
  assert_non_null(hex);
  const size_t n = strlen(hex) / 2;
  assert_true(n <= capacity);
  for (size_t i = 0; i < n; i++) {
    unsigned byte = 0;
    assert_int_equal(sscanf(hex + 2 * i, "%2x", &byte), 1);
    out[i] = (char)byte;
  }
  return n;
}

static size_t case_ids(json_t *c, int32_t *out, size_t capacity) {
  json_t *ids = json_object_get(c, "ids");
  assert_true(json_is_array(ids) && json_array_size(ids) <= capacity);
  for (size_t i = 0; i < json_array_size(ids); i++) out[i] = (int32_t)json_integer_value(json_array_get(ids, i));
  return json_array_size(ids);
}

static void assert_ids_equal(const char *name, const int32_t *got, size_t num_got, const int32_t *want, size_t num_want) {
  if (num_got != num_want) fail_msg("%s: %zu ids, expected %zu", name, num_got, num_want);
  for (size_t i = 0; i < num_want; i++) {
    if (got[i] != want[i]) fail_msg("%s: id %zu is %d, expected %d", name, i, (int)got[i], (int)want[i]);
  }
}

/* Encodes every case of one group of vectors.json and checks ids and the decode back. */
static void check_group(const char *group, bool allow_special) {
  json_t *cases = json_object_get(g.vectors, group);
  assert_true(json_array_size(cases) > 0);
  static char bytes[4096];
  static int32_t want[1024];
  for (size_t k = 0; k < json_array_size(cases); k++) {
    json_t *c = json_array_get(cases, k);
    const char *name = json_string_value(json_object_get(c, "name"));
    const size_t num_bytes = case_bytes(c, bytes, sizeof bytes);
    const char *text = json_string_value(json_object_get(c, "text"));
    assert_true(strlen(text) == num_bytes && !memcmp(text, bytes, num_bytes)); /* the file agrees with itself */
    const size_t num_want = case_ids(c, want, sizeof want / sizeof want[0]);
    int32_t *ids = NULL;
    size_t num_ids = 0;
    assert_int_equal(tokenizer_encode(g.tok, bytes, num_bytes, allow_special, &ids, &num_ids), STATUS_OK);
    assert_ids_equal(name, ids, num_ids, want, num_want);
    char *decoded = NULL;
    size_t num_decoded = 0;
    assert_int_equal(tokenizer_decode(g.tok, want, num_want, &decoded, &num_decoded), STATUS_OK);
    assert_int_equal(num_decoded, num_bytes);
    assert_memory_equal(decoded, bytes, num_bytes);
    assert_int_equal(decoded[num_decoded], '\0');
    free(decoded);
    free(ids);
  }
}

static void test_vectors_ordinary(void **state) {
  (void)state;
  check_group("vectors", false);
}

/* These texts hold no special-token strings, so allowing specials changes nothing. */
static void test_vectors_allow_special(void **state) {
  (void)state;
  check_group("vectors", true);
}

static void test_harmony_vectors_allow_special(void **state) {
  (void)state;
  check_group("harmony", true);
}

/* Read as ordinary text, the same harmony strings give no special ids and decode back exactly. */
static void test_harmony_vectors_ordinary(void **state) {
  (void)state;
  json_t *cases = json_object_get(g.vectors, "harmony");
  static char bytes[4096];
  for (size_t k = 0; k < json_array_size(cases); k++) {
    const size_t num_bytes = case_bytes(json_array_get(cases, k), bytes, sizeof bytes);
    int32_t *ids = NULL;
    size_t num_ids = 0;
    assert_int_equal(tokenizer_encode(g.tok, bytes, num_bytes, false, &ids, &num_ids), STATUS_OK);
    for (size_t i = 0; i < num_ids; i++) assert_true(ids[i] >= 0 && ids[i] < TOKENIZER_NUM_RANKS);
    char *decoded = NULL;
    size_t num_decoded = 0;
    assert_int_equal(tokenizer_decode(g.tok, ids, num_ids, &decoded, &num_decoded), STATUS_OK);
    assert_int_equal(num_decoded, num_bytes);
    assert_memory_equal(decoded, bytes, num_bytes);
    free(decoded);
    free(ids);
  }
}

/* SPEC.md's table of special tokens. */
static void test_special_ids(void **state) {
  (void)state;
  static const struct {
    const char *name;
    int32_t id;
  } SPEC[] = {
      {"<|startoftext|>", 199998}, {"<|endoftext|>", 199999}, {"<|return|>", 200002}, {"<|constrain|>", 200003},
      {"<|channel|>", 200005},     {"<|start|>", 200006},     {"<|end|>", 200007},    {"<|message|>", 200008},
      {"<|call|>", 200012},        {"<|endofprompt|>", 200018},
      {"<|reserved_200000|>", 200000}, {"<|reserved_200001|>", 200001}, {"<|reserved_200004|>", 200004},
      {"<|reserved_200013|>", 200013}, {"<|reserved_200017|>", 200017}, {"<|reserved_200019|>", 200019},
      {"<|reserved_201087|>", 201087},
  };
  for (size_t i = 0; i < sizeof SPEC / sizeof SPEC[0]; i++) {
    assert_int_equal(tokenizer_special_id(SPEC[i].name, strlen(SPEC[i].name)), SPEC[i].id);
    const char *bytes = NULL;
    size_t num_bytes = 0;
    assert_int_equal(tokenizer_token_bytes(g.tok, SPEC[i].id, &bytes, &num_bytes), STATUS_OK);
    assert_int_equal(num_bytes, strlen(SPEC[i].name));
    assert_memory_equal(bytes, SPEC[i].name, num_bytes);
    int32_t *ids = NULL;
    size_t num_ids = 0;
    assert_int_equal(tokenizer_encode(g.tok, SPEC[i].name, strlen(SPEC[i].name), true, &ids, &num_ids), STATUS_OK);
    assert_int_equal(num_ids, 1);
    assert_int_equal(ids[0], SPEC[i].id);
    free(ids);
  }
  /* not specials: past the vocabulary, named ids spelled as reserved, other spellings */
  static const char *const NOT_SPECIAL[] = {"<|reserved_201088|>", "<|reserved_199999|>", "<|reserved_200002|>",
                                            "<|reserved_200018|>", "<|reserved_0200000|>", "<|reserved_20000|>",
                                            "<|END|>", "<|end|", "<end|>", "<||>"};
  for (size_t i = 0; i < sizeof NOT_SPECIAL / sizeof NOT_SPECIAL[0]; i++) {
    assert_int_equal(tokenizer_special_id(NOT_SPECIAL[i], strlen(NOT_SPECIAL[i])), -1);
    int32_t *ids = NULL;
    size_t num_ids = 0;
    assert_int_equal(tokenizer_encode(g.tok, NOT_SPECIAL[i], strlen(NOT_SPECIAL[i]), true, &ids, &num_ids), STATUS_OK);
    for (size_t k = 0; k < num_ids; k++) assert_true(ids[k] < TOKENIZER_NUM_RANKS);
    free(ids);
  }
  status_set_silent(1);
  const char *bytes = NULL;
  size_t num_bytes = 0;
  assert_int_equal(tokenizer_token_bytes(g.tok, TOKENIZER_VOCAB_SIZE, &bytes, &num_bytes), STATUS_INVALID_ARGUMENT);
  assert_int_equal(tokenizer_token_bytes(g.tok, -1, &bytes, &num_bytes), STATUS_INVALID_ARGUMENT);
  char *text = NULL;
  const int32_t bad[] = {220, 201088};
  assert_int_equal(tokenizer_decode(g.tok, bad, 2, &text, &num_bytes), STATUS_INVALID_ARGUMENT);
  assert_null(text);
  status_set_silent(0);
}

/* Specials among ordinary text: cut out only where allowed, the text between them encoded on its
 * own. The question's ids come from vectors.json (harmony_user_turn). */
static void test_special_in_text(void **state) {
  (void)state;
  static const char TEXT[] = "<|<|end|>What is 2 + 2?<|end|><|end|";
  static const int32_t QUESTION[] = {4827, 382, 220, 17, 659, 220, 17, 30};
  int32_t *ids = NULL;
  size_t num_ids = 0;
  assert_int_equal(tokenizer_encode(g.tok, TEXT, strlen(TEXT), true, &ids, &num_ids), STATUS_OK);
  size_t at = 0;
  while (at < num_ids && ids[at] != TOKEN_END) at++;
  assert_true(at > 0 && at + 10 < num_ids); /* "<|" before, "<|end|" after */
  assert_ids_equal("question", ids + at + 1, 8, QUESTION, 8);
  assert_int_equal(ids[at + 9], TOKEN_END);
  for (size_t i = 0; i < num_ids; i++) assert_true(i == at || i == at + 9 || ids[i] < TOKENIZER_NUM_RANKS);
  char *decoded = NULL;
  size_t num_decoded = 0;
  assert_int_equal(tokenizer_decode(g.tok, ids, num_ids, &decoded, &num_decoded), STATUS_OK);
  assert_string_equal(decoded, TEXT);
  free(decoded);
  free(ids);
  /* ordinary mode: no special id at all, same bytes back */
  assert_int_equal(tokenizer_encode(g.tok, TEXT, strlen(TEXT), false, &ids, &num_ids), STATUS_OK);
  for (size_t i = 0; i < num_ids; i++) assert_true(ids[i] < TOKENIZER_NUM_RANKS);
  assert_int_equal(tokenizer_decode(g.tok, ids, num_ids, &decoded, &num_decoded), STATUS_OK);
  assert_string_equal(decoded, TEXT);
  free(decoded);
  free(ids);
}

static void test_invalid_utf8(void **state) {
  (void)state;
  static const struct {
    const char *bytes;
    size_t num_bytes;
    const char *where;
  } CASES[] = {
      {"\xff", 1, "offset 0 "},
      {"ok\x80", 3, "offset 2 "},             /* lone continuation byte */
      {"abc\xc3", 4, "offset 3 "},            /* truncated 2-byte sequence */
      {"a\xc0\xaf", 3, "offset 1 "},          /* overlong '/' */
      {"ab\xe0\x80\xaf", 5, "offset 2 "},     /* overlong 3-byte */
      {"\xed\xa0\x80", 3, "offset 0 "},       /* UTF-16 surrogate */
      {"x\xf4\x90\x80\x80", 5, "offset 1 "},  /* past U+10FFFF */
      {"\xe2\x82", 2, "offset 0 "},           /* truncated euro sign */
      {"\xe2\x82\x41", 3, "offset 0 "},       /* a non-continuation inside */
      {"caf\xc3\xa9 \xf8", 7, "offset 6 "},   /* valid é, then a 5-byte lead */
  };
  status_set_silent(1);
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
    for (int allow = 0; allow < 2; allow++) {
      int32_t *ids = (int32_t *)1;
      size_t num_ids = 1;
      assert_int_equal(tokenizer_encode(g.tok, CASES[i].bytes, CASES[i].num_bytes, allow, &ids, &num_ids),
                       STATUS_INVALID_ARGUMENT);
      assert_null(ids);
      assert_int_equal(num_ids, 0);
      if (!strstr(status_last_error(), CASES[i].where)) {
        fail_msg("case %zu: \"%s\" lacks \"%s\"", i, status_last_error(), CASES[i].where);
      }
    }
  }
  status_set_silent(0);
  /* NUL is valid UTF-8 and is encoded, not treated as the end */
  int32_t *ids = NULL;
  size_t num_ids = 0;
  assert_int_equal(tokenizer_encode(g.tok, "a\0b", 3, false, &ids, &num_ids), STATUS_OK);
  char *decoded = NULL;
  size_t num_decoded = 0;
  assert_int_equal(tokenizer_decode(g.tok, ids, num_ids, &decoded, &num_decoded), STATUS_OK);
  assert_int_equal(num_decoded, 3);
  assert_memory_equal(decoded, "a\0b", 3);
  free(decoded);
  free(ids);
}

/* Small deterministic generator for the property tests. */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rng_next(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 11);
}

/* Appends one code point as UTF-8 (skipping surrogates). */
static size_t put_code_point(char *out, uint32_t cp) {
  if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Random valid UTF-8 (ASCII-heavy, with whitespace, marks, CJK, emoji, astral planes) encodes
 * and decodes back to itself, with specials allowed or not. */
static void test_round_trip_random(void **state) {
  (void)state;
  static const uint32_t RANGES[][2] = {{0x20, 0x7E},   {0x09, 0x0D},     {0x80, 0x7FF},     {0x300, 0x36F},
                                       {0x4E00, 0x9FFF}, {0x1F300, 0x1F6FF}, {0x10000, 0x10FFFF}, {0x2000, 0x206F}};
  char text[2048];
  for (int round = 0; round < 400; round++) {
    size_t n = 0;
    const size_t num_chars = rng_next() % 300;
    for (size_t i = 0; i < num_chars; i++) {
      const uint32_t r = rng_next() % 16;
      const uint32_t *range = RANGES[r < 8 ? 0 : r - 8];
      n += put_code_point(text + n, range[0] + rng_next() % (range[1] - range[0] + 1));
    }
    for (int allow = 0; allow < 2; allow++) {
      int32_t *ids = NULL;
      size_t num_ids = 0;
      assert_int_equal(tokenizer_encode(g.tok, text, n, allow, &ids, &num_ids), STATUS_OK);
      char *decoded = NULL;
      size_t num_decoded = 0;
      assert_int_equal(tokenizer_decode(g.tok, ids, num_ids, &decoded, &num_decoded), STATUS_OK);
      assert_int_equal(num_decoded, n);
      assert_memory_equal(decoded, text, n);
      free(decoded);
      free(ids);
    }
  }
}

/* The heap merge used for long pieces gives exactly tiktoken's loop, on random pieces from small
 * alphabets (many merge ties) and from real text, and on the repeated_a vector. */
static void test_merge_heap_matches_reference(void **state) {
  (void)state;
  static const char *const ALPHABETS[] = {"a", "ab", "abc ", "aeiou", "0123456789", "!=-+", "the quick brown fox"};
  uint8_t piece[3000];
  int32_t ref[3000], fast[3000];
  for (int round = 0; round < 2000; round++) {
    const char *alphabet = ALPHABETS[round % (sizeof ALPHABETS / sizeof ALPHABETS[0])];
    const size_t n = 1 + rng_next() % (round < 1990 ? 300 : 3000);
    for (size_t i = 0; i < n; i++) {
      piece[i] = round % 3 == 2 ? (uint8_t)(rng_next() % 256) : (uint8_t)alphabet[rng_next() % strlen(alphabet)];
    }
    const size_t num_ref = tokenizer_merge_piece(g.tok, piece, n, true, ref);
    const size_t num_fast = tokenizer_merge_piece(g.tok, piece, n, false, fast);
    assert_true(num_ref > 0);
    assert_ids_equal("heap vs reference", fast, num_fast, ref, num_ref);
  }
  json_t *cases = json_object_get(g.vectors, "vectors");
  for (size_t k = 0; k < json_array_size(cases); k++) {
    json_t *c = json_array_get(cases, k);
    if (strcmp(json_string_value(json_object_get(c, "name")), "repeated_a") != 0) continue;
    char bytes[256];
    int32_t want[64];
    const size_t n = case_bytes(c, bytes, sizeof bytes), num_want = case_ids(c, want, 64);
    const size_t num_fast = tokenizer_merge_piece(g.tok, (const uint8_t *)bytes, n, false, fast);
    assert_ids_equal("repeated_a (heap)", fast, num_fast, want, num_want);
    return;
  }
  fail_msg("vectors.json has no repeated_a case");
}

/* A piece longer than the reference loop's limit is encoded by the heap merge: same ids. */
static void test_long_piece(void **state) {
  (void)state;
  enum { N = 5000 };
  static char text[N];
  static int32_t ref[N];
  for (size_t round = 0; round < 3; round++) {
    for (size_t i = 0; i < N; i++) text[i] = round == 0 ? 'a' : round == 1 ? "xyz"[rng_next() % 3] : "!?"[i % 2];
    int32_t *ids = NULL;
    size_t num_ids = 0;
    assert_int_equal(tokenizer_encode(g.tok, text, N, false, &ids, &num_ids), STATUS_OK);
    const size_t num_ref = tokenizer_merge_piece(g.tok, (const uint8_t *)text, N, true, ref);
    assert_ids_equal("long piece", ids, num_ids, ref, num_ref);
    free(ids);
  }
}

/* probe_u180e_run is "x", U+180E twice (3 bytes each) and "!", one id per byte: the decoder must
 * hold the first two bytes of each character and give all three with the third. */
static void test_stream_holds_partial_utf8(void **state) {
  (void)state;
  json_t *cases = json_object_get(g.vectors, "vectors");
  json_t *c = NULL;
  for (size_t k = 0; k < json_array_size(cases) && !c; k++) {
    json_t *candidate = json_array_get(cases, k);
    if (!strcmp(json_string_value(json_object_get(candidate, "name")), "probe_u180e_run")) c = candidate;
  }
  assert_non_null(c);
  char bytes[16];
  int32_t ids[16];
  assert_int_equal(case_bytes(c, bytes, sizeof bytes), 8);
  assert_int_equal(case_ids(c, ids, 16), 8);
  static const size_t EMITTED[8] = {1, 0, 0, 3, 0, 0, 3, 1};
  static const size_t FROM[8] = {0, 0, 0, 1, 0, 0, 4, 7};
  TokenizerStream stream = {0};
  for (size_t i = 0; i < 8; i++) {
    const char *text = NULL;
    size_t num_text = 99;
    assert_int_equal(tokenizer_stream_push(g.tok, &stream, ids[i], &text, &num_text), STATUS_OK);
    assert_int_equal(num_text, EMITTED[i]);
    assert_memory_equal(text, bytes + FROM[i], num_text);
  }
  const char *text = NULL;
  size_t num_text = 99;
  tokenizer_stream_flush(&stream, &text, &num_text);
  assert_int_equal(num_text, 0);

  /* ids ending inside a character: flush hands the held bytes over as they are */
  assert_int_equal(tokenizer_stream_push(g.tok, &stream, ids[1], &text, &num_text), STATUS_OK);
  assert_int_equal(num_text, 0);
  tokenizer_stream_flush(&stream, &text, &num_text);
  assert_int_equal(num_text, 1);
  assert_memory_equal(text, bytes + 1, 1);
  /* a held lead byte followed by something that cannot continue it is passed through, unchanged */
  assert_int_equal(tokenizer_stream_push(g.tok, &stream, ids[1], &text, &num_text), STATUS_OK);
  assert_int_equal(tokenizer_stream_push(g.tok, &stream, ids[7], &text, &num_text), STATUS_OK);
  assert_int_equal(num_text, 2);
  assert_memory_equal(text, "\xe1!", 2);
  status_set_silent(1);
  assert_int_equal(tokenizer_stream_push(g.tok, &stream, -5, &text, &num_text), STATUS_INVALID_ARGUMENT);
  status_set_silent(0);
  tokenizer_stream_free(&stream);
}

/* Over every vector: pushes concatenate to the exact bytes and every chunk is whole characters
 * (checked by encoding it, which refuses invalid UTF-8). */
static void test_stream_all_vectors(void **state) {
  (void)state;
  const char *groups[] = {"vectors", "harmony"};
  for (size_t gi = 0; gi < 2; gi++) {
    json_t *cases = json_object_get(g.vectors, groups[gi]);
    for (size_t k = 0; k < json_array_size(cases); k++) {
      static char bytes[4096], joined[4096];
      static int32_t ids[1024];
      json_t *c = json_array_get(cases, k);
      const size_t num_bytes = case_bytes(c, bytes, sizeof bytes), num_ids = case_ids(c, ids, 1024);
      TokenizerStream stream = {0};
      size_t used = 0;
      for (size_t i = 0; i <= num_ids; i++) {
        const char *text = NULL;
        size_t num_text = 0;
        if (i < num_ids) {
          assert_int_equal(tokenizer_stream_push(g.tok, &stream, ids[i], &text, &num_text), STATUS_OK);
        } else {
          tokenizer_stream_flush(&stream, &text, &num_text);
        }
        int32_t *check = NULL;
        size_t num_check = 0;
        assert_int_equal(tokenizer_encode(g.tok, text, num_text, false, &check, &num_check), STATUS_OK);
        free(check);
        memcpy(joined + used, text, num_text);
        used += num_text;
      }
      assert_int_equal(used, num_bytes);
      assert_memory_equal(joined, bytes, num_bytes);
      tokenizer_stream_free(&stream);
    }
  }
}

/* SPEC.md and the data README: ranks 0..255 are bytes in GPT-2 order, '!' is 0 and ' ' is 220. */
static void test_vocabulary_facts(void **state) {
  (void)state;
  const char *bytes = NULL;
  size_t num_bytes = 0;
  assert_int_equal(tokenizer_token_bytes(g.tok, 0, &bytes, &num_bytes), STATUS_OK);
  assert_int_equal(num_bytes, 1);
  assert_int_equal(bytes[0], '!');
  assert_int_equal(tokenizer_token_bytes(g.tok, 220, &bytes, &num_bytes), STATUS_OK);
  assert_int_equal(num_bytes, 1);
  assert_int_equal(bytes[0], ' ');
  int seen[256] = {0};
  for (int32_t id = 0; id < 256; id++) {
    assert_int_equal(tokenizer_token_bytes(g.tok, id, &bytes, &num_bytes), STATUS_OK);
    assert_int_equal(num_bytes, 1);
    seen[(uint8_t)bytes[0]]++;
  }
  for (int b = 0; b < 256; b++) assert_int_equal(seen[b], 1);
  for (int32_t id = 256; id < TOKENIZER_NUM_RANKS; id++) {
    assert_int_equal(tokenizer_token_bytes(g.tok, id, &bytes, &num_bytes), STATUS_OK);
    assert_true(num_bytes >= 2);
  }
}

/* The pattern compiled in is the vendored o200k_pattern_pcre2.txt, byte for byte. */
static void test_pattern_is_vendored_file(void **state) {
  (void)state;
  char *text = NULL;
  size_t num_bytes = 0;
  assert_int_equal(io_read_text_file(DATA "o200k_pattern_pcre2.txt", 4096, &text, &num_bytes), STATUS_OK);
  while (num_bytes > 0 && text[num_bytes - 1] == '\n') text[--num_bytes] = '\0';
  assert_string_equal(TOKENIZER_O200K_PATTERN, text);
  free(text);
}

/* Malformed rank files fail with a message naming the problem; built from the real file. */
static void test_load_errors(void **state) {
  (void)state;
  char *real = NULL;
  size_t num_real = 0;
  assert_int_equal(io_read_text_file(GPTOSS_VOCAB_FILE, 64u << 20, &real, &num_real), STATUS_OK);
  char *copy = malloc(num_real + 64);
  assert_non_null(copy);
  const char *second_line = strchr(real, '\n') + 1; /* "Ig== 1" */
  const size_t first_line_bytes = (size_t)(second_line - real);
  Tokenizer *tok = (Tokenizer *)1;
  status_set_silent(1);

  assert_int_equal(tokenizer_load(&tok, DATA "no-such-file.tiktoken"), STATUS_IO_ERROR);
  assert_null(tok);
  assert_int_equal(tokenizer_load_from_memory(&tok, real, first_line_bytes, "one line"), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), "has 1 ranks"));
  assert_int_equal(tokenizer_load_from_memory(&tok, real, num_real / 2, "half"), STATUS_BAD_FORMAT);

  /* line 2 claims rank 0 again */
  memcpy(copy, real, num_real);
  copy[first_line_bytes + 5] = '0';
  assert_int_equal(tokenizer_load_from_memory(&tok, copy, num_real, "dup"), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), "line 2: rank 0 appears twice"));
  /* line 2's bytes replaced by line 1's ('!'), under its own rank */
  memcpy(copy, real, num_real);
  memcpy(copy + first_line_bytes, "IQ==", 4);
  assert_int_equal(tokenizer_load_from_memory(&tok, copy, num_real, "same bytes"), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), "line 2: rank 1 has the same bytes as rank 0"));
  /* not base64 */
  memcpy(copy, real, num_real);
  memcpy(copy + first_line_bytes, "I*==", 4);
  assert_int_equal(tokenizer_load_from_memory(&tok, copy, num_real, "bad base64"), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), "line 2: the token is not valid"));
  /* a rank past the end */
  const char *extra = "QUJD 199998\n";
  memcpy(copy, real, num_real);
  memcpy(copy + num_real, extra, strlen(extra));
  assert_int_equal(tokenizer_load_from_memory(&tok, copy, num_real + strlen(extra), "extra"), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), "line 199999: rank 199998 is out of range"));
  /* no rank */
  memcpy(copy, real, num_real);
  copy[first_line_bytes + 4] = 'x';
  assert_int_equal(tokenizer_load_from_memory(&tok, copy, num_real, "no rank"), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), "line 2: expected `base64 rank`"));
  assert_null(tok);
  status_set_silent(0);

  /* larger than any rank file (token offsets are 32-bit): refused before it is parsed */
  char *huge = calloc(TOKENIZER_FILE_MAX_BYTES + 1, 1);
  assert_non_null(huge);
  status_set_silent(1);
  assert_int_equal(tokenizer_load_from_memory(&tok, huge, TOKENIZER_FILE_MAX_BYTES + 1, "huge"), STATUS_BAD_FORMAT);
  assert_non_null(strstr(status_last_error(), "huge is 67108865 bytes"));
  assert_null(tok);
  status_set_silent(0);
  free(huge);

  /* CRLF line ends load the same vocabulary */
  char *crlf = malloc(num_real + 200000);
  assert_non_null(crlf);
  size_t n = 0;
  for (size_t i = 0; i < num_real; i++) {
    if (real[i] == '\n') crlf[n++] = '\r';
    crlf[n++] = real[i];
  }
  assert_int_equal(tokenizer_load_from_memory(&tok, crlf, n, "crlf"), STATUS_OK);
  const char *bytes = NULL;
  size_t num_bytes = 0;
  assert_int_equal(tokenizer_token_bytes(tok, 220, &bytes, &num_bytes), STATUS_OK);
  assert_true(num_bytes == 1 && bytes[0] == ' ');
  tokenizer_free(tok);
  free(crlf);
  free(copy);
  free(real);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors_ordinary),
      cmocka_unit_test(test_vectors_allow_special),
      cmocka_unit_test(test_harmony_vectors_allow_special),
      cmocka_unit_test(test_harmony_vectors_ordinary),
      cmocka_unit_test(test_special_ids),
      cmocka_unit_test(test_special_in_text),
      cmocka_unit_test(test_invalid_utf8),
      cmocka_unit_test(test_round_trip_random),
      cmocka_unit_test(test_merge_heap_matches_reference),
      cmocka_unit_test(test_long_piece),
      cmocka_unit_test(test_stream_holds_partial_utf8),
      cmocka_unit_test(test_stream_all_vectors),
      cmocka_unit_test(test_vocabulary_facts),
      cmocka_unit_test(test_pattern_is_vendored_file),
      cmocka_unit_test(test_load_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
