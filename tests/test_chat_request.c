/* Tests of serve/chat_request: a chat-completions body to ChatRequest (every field and its
 * default, content parts, tool calls and tool results), each refusal with its status, field and
 * message, and the OpenAI error object parsed back with Jansson. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "serve/chat_request.h"

static bool parse(const char *body, ChatRequest *request, ApiError *error) {
  return chat_request_parse(body, strlen(body), request, error);
}

/* The body is refused with a 400 naming `param` (NULL: none) and a message containing `words`. */
static void assert_refused(const char *body, const char *param, const char *words) {
  ChatRequest request;
  ApiError error;
  assert_false(parse(body, &request, &error));
  assert_int_equal(error.http_status, 400);
  assert_string_equal(error.type, "invalid_request_error");
  if (param == NULL) assert_null(error.param);
  else assert_string_equal(error.param, param);
  if (strstr(error.message, words) == NULL) fail_msg("message '%s' lacks '%s'", error.message, words);
  assert_null(request.json);
  assert_null(request.messages);
}

static void test_minimal_request_takes_the_defaults(void **state) {
  ChatRequest r;
  ApiError error;
  assert_true(parse("{\"model\":\"gpt-oss\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"user\":\"u1\"}", &r, &error));
  assert_int_equal(r.num_messages, 1);
  assert_int_equal(r.messages[0].role, HARMONY_ROLE_USER);
  assert_string_equal(r.messages[0].content, "Hi");
  assert_int_equal(r.gen.max_tokens, 0);
  assert_true(r.gen.temperature == 1.0 && r.gen.top_p == 1.0);
  assert_false(r.gen.has_seed || r.gen.stream || r.gen.include_usage);
  assert_int_equal(r.gen.num_stop, 0);
  assert_int_equal(r.reasoning, HARMONY_REASONING_MEDIUM);
  assert_null(r.tools);
  assert_int_equal(r.tool_choice, CHAT_TOOL_CHOICE_AUTO);
  chat_request_free(&r);
}

static void test_every_field_is_read(void **state) {
  ChatRequest r;
  ApiError error;
  const char *body =
      "{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"D\"}]},"
      "{\"role\":\"user\",\"content\":\"U\"}],"
      "\"max_tokens\":9,\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"seed\":42,"
      "\"stop\":[\"a\",\"bc\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
      "\"reasoning_effort\":\"high\",\"n\":1,\"logprobs\":false,"
      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{}}}],\"tool_choice\":\"none\"}";
  assert_true(parse(body, &r, &error));
  assert_int_equal(r.num_messages, 3);
  assert_int_equal(r.messages[0].role, HARMONY_ROLE_SYSTEM);
  assert_int_equal(r.messages[1].role, HARMONY_ROLE_DEVELOPER);
  assert_string_equal(r.messages[1].content, "D");
  assert_int_equal(r.gen.max_tokens, 7); /* max_completion_tokens wins */
  assert_true(r.gen.temperature == 0.0 && r.gen.top_p == 0.5);
  assert_true(r.gen.has_seed);
  assert_int_equal(r.gen.seed, 42);
  assert_int_equal(r.gen.num_stop, 2);
  assert_string_equal(r.gen.stop[1], "bc");
  assert_true(r.gen.stream && r.gen.include_usage);
  assert_int_equal(r.reasoning, HARMONY_REASONING_HIGH);
  assert_non_null(r.tools);
  assert_int_equal(r.num_tools, 1);
  assert_int_equal(r.tool_choice, CHAT_TOOL_CHOICE_NONE);
  chat_request_free(&r);
}

static void test_tool_call_and_its_result_are_read(void **state) {
  ChatRequest r;
  ApiError error;
  const char *body =
      "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
      "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
      "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"3C\"}],\"stop\":\"END\"}";
  assert_true(parse(body, &r, &error));
  assert_int_equal(r.num_messages, 3);
  const ChatMessage *call = &r.messages[1];
  assert_string_equal(call->content, "");
  assert_int_equal(call->num_tool_calls, 1);
  assert_string_equal(call->tool_calls[0].id, "call_1");
  assert_string_equal(call->tool_calls[0].name, "get_weather");
  assert_string_equal(call->tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
  assert_int_equal(r.messages[2].role, HARMONY_ROLE_TOOL);
  assert_string_equal(r.messages[2].tool_call_id, "call_1");
  assert_string_equal(r.messages[2].content, "3C");
  assert_int_equal(r.gen.num_stop, 1);
  assert_string_equal(r.gen.stop[0], "END");
  chat_request_free(&r);
}

static void test_bad_requests_are_refused_by_field(void **state) {
  assert_refused("{\"messages\":", NULL, "not valid JSON");
  assert_refused("[1,2]", NULL, "JSON object");
  assert_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"messages\":[]}", NULL, "not valid JSON");
  assert_refused("{}", "messages", "non-empty array");
  assert_refused("{\"messages\":[]}", "messages", "non-empty array");
  assert_refused("{\"messages\":\"Hi\"}", "messages", "non-empty array");
  assert_refused("{\"messages\":[{\"content\":\"Hi\"}]}", "messages", "string role");
  assert_refused("{\"messages\":[{\"role\":\"robot\",\"content\":\"Hi\"}]}", "messages", "'robot' is not one of");
  assert_refused("{\"messages\":[{\"role\":\"user\",\"content\":7}]}", "messages", "messages[0].content");
  assert_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"x\"}]}", "messages",
                 "messages[1] (a tool message) needs a tool_call_id");
  assert_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"tool_calls\":[]}]}", "messages", "assistant message");
  assert_refused("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]}", "messages",
                 "function.arguments");
}

static void test_bad_fields_are_refused_by_name(void **state) {
#define MSG "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
  assert_refused(MSG "\"max_tokens\":0}", "max_tokens", "integer >= 1");
  assert_refused(MSG "\"max_completion_tokens\":\"5\"}", "max_completion_tokens", "integer >= 1");
  assert_refused(MSG "\"temperature\":2.5}", "temperature", "[0, 2]");
  assert_refused(MSG "\"temperature\":\"hot\"}", "temperature", "number");
  assert_refused(MSG "\"top_p\":0}", "top_p", "(0, 1]");
  assert_refused(MSG "\"seed\":1.5}", "seed", "integer");
  assert_refused(MSG "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", "stop", "up to 4");
  assert_refused(MSG "\"stop\":[\"\"]}", "stop", "non-empty");
  assert_refused(MSG "\"stream\":\"yes\"}", "stream", "true or false");
  assert_refused(MSG "\"stream_options\":{\"include_usage\":1}}", "include_usage", "true or false");
  assert_refused(MSG "\"reasoning_effort\":\"max\"}", "reasoning_effort", "\"low\"");
  assert_refused(MSG "\"tools\":{}}", "tools", "array");
  assert_refused(MSG "\"tools\":[{\"type\":\"code\"}]}", "tools", "tools[0]");
  assert_refused(MSG "\"tool_choice\":\"required\"}", "tool_choice", "\"auto\" and \"none\"");
  assert_refused(MSG "\"n\":2}", "n", "'n' must be 1");
  assert_refused(MSG "\"logprobs\":true}", "logprobs", "not supported");
  assert_refused(MSG "\"response_format\":{\"type\":\"json_object\"}}", "response_format", "not supported");
#undef MSG
}

/* Bodies no client library sends: bytes that are not UTF-8, a NUL, nesting past Jansson's depth
 * limit, items of the wrong kind, values outside their range. Each is a 400, never a crash. */
static void test_hostile_bodies_are_refused(void **state) {
  (void)state;
  assert_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}", NULL, "not valid JSON");
  static const char with_nul[] = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\0b\"}]}";
  ChatRequest request;
  ApiError error;
  assert_false(chat_request_parse(with_nul, sizeof with_nul - 1, &request, &error));
  assert_int_equal(error.http_status, 400);
  assert_non_null(strstr(error.message, "not valid JSON"));
  assert_null(request.json);
  assert_refused("{\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", NULL, "not valid JSON");
  enum { DEPTH = 5000 };
  char *deep = malloc(2 * DEPTH + 64);
  assert_non_null(deep);
  size_t n = (size_t)sprintf(deep, "{\"messages\":");
  for (int i = 0; i < DEPTH; i++) deep[n++] = '[';
  for (int i = 0; i < DEPTH; i++) deep[n++] = ']';
  deep[n++] = '}';
  deep[n] = '\0';
  assert_refused(deep, NULL, "not valid JSON");
  free(deep);
#define MSG "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],"
  assert_refused("{\"messages\":[5]}", "messages", "messages[0] must be an object with a string role");
  assert_refused("{\"messages\":[{\"role\":7,\"content\":\"Hi\"}]}", "messages", "string role");
  assert_refused("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[5]}]}", "messages",
                 "messages[0].tool_calls[0] needs function.name and function.arguments strings");
  assert_refused("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{\"id\":\"x\"}}]}", "messages",
                 "tool_calls must be an array");
  assert_refused(MSG "\"temperature\":-0.1}", "temperature", "'temperature' must be a number in [0, 2]");
  assert_refused(MSG "\"top_p\":1.5}", "top_p", "'top_p' must be a number in (0, 1]");
  assert_refused(MSG "\"max_tokens\":-3}", "max_tokens", "'max_tokens' must be an integer >= 1");
  assert_refused(MSG "\"max_tokens\":1e3}", "max_tokens", "'max_tokens' must be an integer >= 1");
  assert_refused(MSG "\"seed\":99999999999999999999}", NULL, "not valid JSON");
  assert_refused(MSG "\"stop\":7}", "stop", "'stop' must be a string or an array of up to 4 non-empty strings");
#undef MSG
}

static void test_error_json_is_the_openai_shape(void **state) {
  ApiError error;
  api_error_set(&error, 400, "n", "unsupported_parameter", "'n' must be %d", 1);
  char *text = api_error_json(&error);
  assert_non_null(text);
  json_t *root = json_loads(text, 0, NULL);
  assert_non_null(root);
  json_t *e = json_object_get(root, "error");
  assert_string_equal(json_string_value(json_object_get(e, "message")), "'n' must be 1");
  assert_string_equal(json_string_value(json_object_get(e, "type")), "invalid_request_error");
  assert_string_equal(json_string_value(json_object_get(e, "param")), "n");
  assert_string_equal(json_string_value(json_object_get(e, "code")), "unsupported_parameter");
  json_decref(root);
  free(text);

  api_error_set(&error, 404, NULL, NULL, "no route");
  text = api_error_json(&error);
  root = json_loads(text, 0, NULL);
  e = json_object_get(root, "error");
  assert_true(json_is_null(json_object_get(e, "param")));
  assert_true(json_is_null(json_object_get(e, "code")));
  json_decref(root);
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_minimal_request_takes_the_defaults),
      cmocka_unit_test(test_every_field_is_read),
      cmocka_unit_test(test_tool_call_and_its_result_are_read),
      cmocka_unit_test(test_bad_requests_are_refused_by_field),
      cmocka_unit_test(test_bad_fields_are_refused_by_name),
      cmocka_unit_test(test_hostile_bodies_are_refused),
      cmocka_unit_test(test_error_json_is_the_openai_shape),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
