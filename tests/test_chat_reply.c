/* Tests of serve/chat_reply: parsed harmony messages as the chat.completion object, parsed back
 * with Jansson: analysis as reasoning_content, final as content, a functions.NAME call as a
 * tool_calls entry with finish_reason "tool_calls", other recipients dropped, length, usage, and
 * broken UTF-8 replaced; and each kind of streamed chunk as an SSE event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "serve/chat_reply.h"

static HarmonyParsedMessage assistant(const char *channel, const char *recipient, const char *text) {
  return (HarmonyParsedMessage){.role = HARMONY_ROLE_ASSISTANT, .channel = (char *)channel,
                                .recipient = (char *)recipient, .text = (char *)text, .text_bytes = strlen(text)};
}

static json_t *reply(const HarmonyParsedMessage *messages, size_t num, bool hit_length) {
  ChatReplyInfo info = {.id = "chatcmpl-7", .model = "gpt-oss", .created = 1700000000, .hit_length = hit_length};
  ChatUsage usage = {.prompt_tokens = 11, .completion_tokens = 5, .reasoning_tokens = 2};
  char *text = chat_reply_json(messages, num, &info, &usage);
  assert_non_null(text);
  json_t *root = json_loads(text, 0, NULL);
  assert_non_null(root);
  free(text);
  return root;
}

static json_t *choice(json_t *root) { return json_array_get(json_object_get(root, "choices"), 0); }
static json_t *message(json_t *root) { return json_object_get(choice(root), "message"); }
static const char *str(json_t *object, const char *key) { return json_string_value(json_object_get(object, key)); }

static void test_reasoning_and_content_are_split(void **state) {
  HarmonyParsedMessage m[] = {assistant("analysis", NULL, "Think."), assistant("final", NULL, "Hello!")};
  json_t *root = reply(m, 2, false);
  assert_string_equal(str(root, "id"), "chatcmpl-7");
  assert_string_equal(str(root, "object"), "chat.completion");
  assert_int_equal(json_integer_value(json_object_get(root, "created")), 1700000000);
  assert_string_equal(str(message(root), "role"), "assistant");
  assert_string_equal(str(message(root), "content"), "Hello!");
  assert_string_equal(str(message(root), "reasoning_content"), "Think.");
  assert_null(json_object_get(message(root), "tool_calls"));
  assert_string_equal(str(choice(root), "finish_reason"), "stop");
  json_t *usage = json_object_get(root, "usage");
  assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")), 11);
  assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), 5);
  assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")), 16);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens")), 2);
  json_decref(root);
}

static void test_function_call_becomes_tool_calls(void **state) {
  HarmonyParsedMessage m[] = {assistant("analysis", NULL, "Need weather."),
                              assistant("commentary", "functions.get_weather", "{\"city\":\"Oslo\"}")};
  json_t *root = reply(m, 2, false);
  assert_true(json_is_null(json_object_get(message(root), "content")));
  json_t *calls = json_object_get(message(root), "tool_calls");
  assert_int_equal(json_array_size(calls), 1);
  json_t *call = json_array_get(calls, 0);
  assert_string_equal(str(call, "id"), "call_chatcmpl-7_0");
  assert_string_equal(str(call, "type"), "function");
  assert_string_equal(str(json_object_get(call, "function"), "name"), "get_weather");
  assert_string_equal(str(json_object_get(call, "function"), "arguments"), "{\"city\":\"Oslo\"}");
  assert_string_equal(str(choice(root), "finish_reason"), "tool_calls");
  json_decref(root);
}

static void test_other_recipients_are_not_content(void **state) {
  HarmonyParsedMessage m[] = {assistant("commentary", "browser.search", "{\"q\":1}"), assistant("commentary", NULL, "Looking."),
                              assistant("final", NULL, " Done.")};
  json_t *root = reply(m, 3, false);
  assert_string_equal(str(message(root), "content"), "Looking. Done.");
  assert_true(json_is_null(json_object_get(message(root), "reasoning_content")));
  assert_string_equal(str(choice(root), "finish_reason"), "stop");
  json_decref(root);
}

static void test_length_and_empty_output(void **state) {
  json_t *root = reply(NULL, 0, true);
  assert_true(json_is_null(json_object_get(message(root), "content")));
  assert_string_equal(str(choice(root), "finish_reason"), "length");
  json_decref(root);
}

static void test_broken_utf8_is_replaced(void **state) {
  HarmonyParsedMessage m[] = {assistant("final", NULL, "a\xff" "b\xe2\x82")};
  json_t *root = reply(m, 1, false);
  assert_string_equal(str(message(root), "content"), "a\xef\xbf\xbd" "b\xef\xbf\xbd");
  json_decref(root);
}

/* The SSE event's JSON, checked to be framed as `data: ...\n\n`. */
static json_t *chunk(ChatDeltaKind kind, const char *text, const char *finish_reason) {
  ChatReplyInfo info = {.id = "chatcmpl-7", .model = "gpt-oss", .created = 5};
  ChatUsage usage = {.prompt_tokens = 3, .completion_tokens = 4, .reasoning_tokens = 1};
  char *event = chat_reply_chunk_sse(&info, kind, text, text ? strlen(text) : 0, finish_reason, &usage);
  assert_non_null(event);
  assert_true(strncmp(event, "data: {", 7) == 0);
  size_t len = strlen(event);
  assert_string_equal(event + len - 2, "\n\n");
  event[len - 2] = '\0';
  json_t *root = json_loads(event + 6, 0, NULL);
  assert_non_null(root);
  free(event);
  assert_string_equal(str(root, "object"), "chat.completion.chunk");
  assert_string_equal(str(root, "id"), "chatcmpl-7");
  return root;
}

static json_t *delta(json_t *root) { return json_object_get(choice(root), "delta"); }

static void test_stream_chunks(void **state) {
  json_t *root = chunk(CHAT_DELTA_ROLE, NULL, NULL);
  assert_string_equal(str(delta(root), "role"), "assistant");
  assert_true(json_is_null(json_object_get(choice(root), "finish_reason")));
  json_decref(root);
  root = chunk(CHAT_DELTA_CONTENT, "Hel\xff", NULL);
  assert_string_equal(str(delta(root), "content"), "Hel\xef\xbf\xbd");
  assert_null(json_object_get(delta(root), "reasoning_content"));
  json_decref(root);
  root = chunk(CHAT_DELTA_REASONING, "hmm", NULL);
  assert_string_equal(str(delta(root), "reasoning_content"), "hmm");
  json_decref(root);
  root = chunk(CHAT_DELTA_FINISH, NULL, "length");
  assert_int_equal(json_object_size(delta(root)), 0);
  assert_string_equal(str(choice(root), "finish_reason"), "length");
  assert_null(json_object_get(root, "usage"));
  json_decref(root);
  root = chunk(CHAT_DELTA_USAGE, NULL, NULL);
  assert_int_equal(json_array_size(json_object_get(root, "choices")), 0);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(root, "usage"), "total_tokens")), 7);
  json_decref(root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reasoning_and_content_are_split),
      cmocka_unit_test(test_function_call_becomes_tool_calls),
      cmocka_unit_test(test_other_recipients_are_not_content),
      cmocka_unit_test(test_length_and_empty_output),
      cmocka_unit_test(test_broken_utf8_is_replaced),
      cmocka_unit_test(test_stream_chunks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
