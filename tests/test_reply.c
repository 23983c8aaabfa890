/* Tests of serve/reply: generated ids, fed one by one as the driver does, become the body or the
 * SSE events a client gets. The ids come from encoding harmony text with the real tokenizer, so
 * each case is what a model emitting that text would produce: reasoning and content split,
 * streamed deltas that add up to the same text, a tool call (whole body and its stream chunk),
 * garbled output skipped up to the next <|start|>, stop strings (never leaked in a stream,
 * whatever the token boundaries), completions' decoded text without the stop id, usage, token ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "serve/reply.h"

static Tokenizer *g_tok;

static int load(void **state) {
  (void)state;
  return tokenizer_load(&g_tok, GPTOSS_VOCAB_FILE) == STATUS_OK ? 0 : -1;
}
static int unload(void **state) {
  (void)state;
  tokenizer_free(g_tok);
  return 0;
}

/* What the model would emit after the prompt's `<|start|>assistant`. */
static TokenList ids_of(const char *harmony_text) {
  TokenList ids = {0};
  assert_int_equal(tokenizer_encode_append(g_tok, harmony_text, strlen(harmony_text), true, &ids), STATUS_OK);
  return ids;
}

typedef struct {
  ByteBuffer out;
  bool ended_by_stop;  /* reply_push said a stop string ended it */
  size_t pushed;
} Run;

/* Feeds every id (until a stop string ends it), then finishes. */
static Run run(ReplyOptions o, const char *text, bool hit_length) {
  Reply *r = reply_new(g_tok, &o);
  assert_non_null(r);
  TokenList ids = ids_of(text);
  Run result = {0};
  for (size_t i = 0; i < ids.num_ids; i++) {
    bool oom = false;
    result.pushed++;
    if (!reply_push(r, ids.ids[i], &result.out, &oom)) {
      result.ended_by_stop = true;
      break;
    }
    assert_false(oom);
  }
  assert_true(reply_finish(r, hit_length, &result.out));
  token_list_free(&ids);
  reply_free(r);
  return result;
}

static ReplyOptions chat(bool stream) {
  return (ReplyOptions){.kind = REPLY_CHAT, .stream = stream,
                        .info = {.id = "chatcmpl-1", .model = "gpt-oss", .created = 1700000000}, .prompt_tokens = 9};
}

static json_t *body_of(const Run *r) {
  json_t *root = json_loads(r->out.data, 0, NULL);
  assert_non_null(root);
  return root;
}

static json_t *first_choice(json_t *root) { return json_array_get(json_object_get(root, "choices"), 0); }
static const char *str(json_t *object, const char *key) { return json_string_value(json_object_get(object, key)); }

/* The stream's events: each `data: ` line parsed (the last must be [DONE]); what the deltas of
 * `field` add up to goes to `joined`. Returns the events but [DONE]. */
static json_t *events_of(const Run *r, const char *field, char *joined, size_t joined_bytes) {
  json_t *events = json_array();
  joined[0] = '\0';
  const char *at = r->out.data;
  bool done = false;
  while (at && *at) {
    assert_memory_equal(at, "data: ", 6);
    const char *end = strstr(at, "\n\n");
    assert_non_null(end);
    if (strncmp(at + 6, "[DONE]", 6) == 0) {
      done = true;
      assert_string_equal(end + 2, "");
      break;
    }
    json_t *event = json_loadb(at + 6, (size_t)(end - at - 6), 0, NULL);
    assert_non_null(event);
    const char *piece = str(json_object_get(first_choice(event), "delta"), field);
    if (piece == NULL) piece = str(first_choice(event), field); /* completions: choices[0].text */
    if (piece) strncat(joined, piece, joined_bytes - strlen(joined) - 1);
    json_array_append_new(events, event);
    at = end + 2;
  }
  assert_true(done);
  return events;
}

#define ANALYSIS "<|channel|>analysis<|message|>User says hi. Answer briefly.<|end|>"
#define FINAL_MESSAGE "<|channel|>final<|message|>Hello there, friend!<|return|>"
#define FINAL "<|start|>assistant" FINAL_MESSAGE

static void test_reasoning_and_content_split(void **state) {
  (void)state;
  Run r = run(chat(false), ANALYSIS FINAL, false);
  json_t *root = body_of(&r);
  json_t *message = json_object_get(first_choice(root), "message");
  assert_string_equal(str(message, "content"), "Hello there, friend!");
  assert_string_equal(str(message, "reasoning_content"), "User says hi. Answer briefly.");
  assert_string_equal(str(first_choice(root), "finish_reason"), "stop");
  json_t *usage = json_object_get(root, "usage");
  TokenList all = ids_of(ANALYSIS FINAL), thinking = ids_of("User says hi. Answer briefly.<|end|>");
  assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), all.num_ids);
  assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 9);
  /* the analysis message's text and its <|end|> */
  assert_int_equal(json_integer_value(json_object_get(json_object_get(usage, "completion_tokens_details"),
                                                      "reasoning_tokens")), thinking.num_ids);
  token_list_free(&all);
  token_list_free(&thinking);
  json_decref(root);
  buffer_free(&r.out);
}

static void test_stream_adds_up_to_the_body(void **state) {
  (void)state;
  Run r = run(chat(true), ANALYSIS FINAL, false);
  char content[256], reasoning[256];
  json_t *events = events_of(&r, "content", content, sizeof content);
  json_decref(events);
  events = events_of(&r, "reasoning_content", reasoning, sizeof reasoning);
  assert_string_equal(content, "Hello there, friend!");
  assert_string_equal(reasoning, "User says hi. Answer briefly.");
  json_t *first = json_array_get(events, 0), *last = json_array_get(events, json_array_size(events) - 1);
  assert_string_equal(str(json_object_get(first_choice(first), "delta"), "role"), "assistant");
  assert_string_equal(str(last, "object"), "chat.completion.chunk");
  assert_string_equal(str(first_choice(last), "finish_reason"), "stop");
  assert_null(json_object_get(last, "usage")); /* not asked for */
  json_decref(events);
  buffer_free(&r.out);
}

static void test_stream_usage_when_asked(void **state) {
  (void)state;
  ReplyOptions o = chat(true);
  o.include_usage = true;
  Run r = run(o, FINAL_MESSAGE, false);
  char content[256];
  json_t *events = events_of(&r, "content", content, sizeof content);
  assert_string_equal(content, "Hello there, friend!");
  json_t *last = json_array_get(events, json_array_size(events) - 1);
  assert_int_equal(json_array_size(json_object_get(last, "choices")), 0);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(last, "usage"), "prompt_tokens")), 9);
  json_decref(events);
  buffer_free(&r.out);
}

#define CALL "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}<|call|>"

static void test_tool_call(void **state) {
  (void)state;
  Run r = run(chat(false), ANALYSIS "<|start|>assistant" CALL, false);
  json_t *root = body_of(&r);
  json_t *message = json_object_get(first_choice(root), "message");
  json_t *call = json_array_get(json_object_get(message, "tool_calls"), 0);
  assert_string_equal(str(json_object_get(call, "function"), "name"), "get_weather");
  assert_string_equal(str(json_object_get(call, "function"), "arguments"), "{\"city\":\"Paris\"}");
  assert_string_equal(str(call, "type"), "function");
  assert_string_equal(str(first_choice(root), "finish_reason"), "tool_calls");
  assert_true(json_is_null(json_object_get(message, "content")));
  json_decref(root);
  buffer_free(&r.out);

  Run s = run(chat(true), CALL, false);
  char content[256];
  json_t *events = events_of(&s, "content", content, sizeof content);
  assert_string_equal(content, ""); /* the arguments never show as content */
  bool streamed_call = false;
  for (size_t i = 0; i < json_array_size(events); i++) {
    json_t *calls = json_object_get(json_object_get(first_choice(json_array_get(events, i)), "delta"), "tool_calls");
    if (calls == NULL) continue;
    json_t *c = json_array_get(calls, 0);
    assert_int_equal(json_integer_value(json_object_get(c, "index")), 0);
    assert_string_equal(str(c, "id"), "call_chatcmpl-1_0");
    assert_string_equal(str(json_object_get(c, "function"), "arguments"), "{\"city\":\"Paris\"}");
    streamed_call = true;
  }
  assert_true(streamed_call);
  json_t *last = json_array_get(events, json_array_size(events) - 1);
  assert_string_equal(str(first_choice(last), "finish_reason"), "tool_calls");
  json_decref(events);
  buffer_free(&s.out);
}

/* Junk where a message should begin, and a header with no role: skipped, the later message kept. */
static void test_garbled_output_resynchronises(void **state) {
  (void)state;
  const char *garbled = "<|channel|>final<|message|>First.<|end|>stray words<|start|>nonsense header<|message|>junk<|end|>"
                        "<|start|>assistant<|channel|>final<|message|> Second.<|return|>";
  Run r = run(chat(false), garbled, false);
  json_t *root = body_of(&r);
  const char *content = str(json_object_get(first_choice(root), "message"), "content");
  assert_string_equal(content, "First. Second.");
  assert_null(strstr(r.out.data, "<|"));
  json_decref(root);
  buffer_free(&r.out);
}

static void test_stop_string_cuts_content(void **state) {
  (void)state;
  static const char *const stops[] = {"zzz", "friend"};
  ReplyOptions o = chat(false);
  o.stop = stops;
  o.num_stop = 2;
  Run r = run(o, ANALYSIS FINAL, false);
  assert_true(r.ended_by_stop);
  json_t *root = body_of(&r);
  assert_string_equal(str(json_object_get(first_choice(root), "message"), "content"), "Hello there, ");
  assert_string_equal(str(first_choice(root), "finish_reason"), "stop");
  json_decref(root);
  buffer_free(&r.out);

  o.stream = true;
  Run s = run(o, ANALYSIS FINAL, true);
  char content[256];
  json_t *events = events_of(&s, "content", content, sizeof content);
  assert_string_equal(content, "Hello there, ");
  json_t *last = json_array_get(events, json_array_size(events) - 1);
  assert_string_equal(str(first_choice(last), "finish_reason"), "stop"); /* a stop string, not the length */
  json_decref(events);
  buffer_free(&s.out);
}

/* A stop string that never completes is released whole at the end. */
static void test_unmatched_stop_prefix_is_released(void **state) {
  (void)state;
  static const char *const stops[] = {"friend?"};
  ReplyOptions o = chat(true);
  o.stop = stops;
  o.num_stop = 1;
  Run r = run(o, FINAL_MESSAGE, false);
  assert_false(r.ended_by_stop);
  char content[256];
  json_decref(events_of(&r, "content", content, sizeof content));
  assert_string_equal(content, "Hello there, friend!");
  buffer_free(&r.out);
}

static void test_length_finish(void **state) {
  (void)state;
  Run r = run(chat(false), "<|channel|>final<|message|>Cut sh", true);
  json_t *root = body_of(&r);
  assert_string_equal(str(json_object_get(first_choice(root), "message"), "content"), "Cut sh");
  assert_string_equal(str(first_choice(root), "finish_reason"), "length");
  json_decref(root);
  buffer_free(&r.out);
}

static void test_completion_text_and_ids(void **state) {
  (void)state;
  const int32_t stop_ids[] = {TOKEN_RETURN};
  ReplyOptions o = {.kind = REPLY_COMPLETION, .info = {.id = "cmpl-1", .model = "m", .created = 1},
                    .stop_ids = stop_ids, .num_stop_ids = 1, .prompt_tokens = 3, .return_token_ids = true};
  Run r = run(o, "Once upon a time 東京<|return|>", false);
  json_t *root = body_of(&r);
  assert_string_equal(str(root, "object"), "text_completion");
  assert_string_equal(str(first_choice(root), "text"), "Once upon a time 東京");
  TokenList ids = ids_of("Once upon a time 東京<|return|>");
  json_t *got = json_object_get(first_choice(root), "token_ids");
  assert_int_equal(json_array_size(got), ids.num_ids);
  for (size_t i = 0; i < ids.num_ids; i++) assert_int_equal(json_integer_value(json_array_get(got, i)), ids.ids[i]);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "usage"), "completion_tokens")), ids.num_ids);
  token_list_free(&ids);
  json_decref(root);
  buffer_free(&r.out);

  o.stream = true;
  o.return_token_ids = false;
  Run s = run(o, "Once upon a time 東京<|return|>", false);
  char text[256];
  json_t *events = events_of(&s, "text", text, sizeof text);
  assert_string_equal(text, "Once upon a time 東京");
  json_decref(events);
  buffer_free(&s.out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reasoning_and_content_split), cmocka_unit_test(test_stream_adds_up_to_the_body),
      cmocka_unit_test(test_stream_usage_when_asked),     cmocka_unit_test(test_tool_call),
      cmocka_unit_test(test_garbled_output_resynchronises), cmocka_unit_test(test_stop_string_cuts_content),
      cmocka_unit_test(test_unmatched_stop_prefix_is_released), cmocka_unit_test(test_length_finish),
      cmocka_unit_test(test_completion_text_and_ids),
  };
  return cmocka_run_group_tests(tests, load, unload);
}
