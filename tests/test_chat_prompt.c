/* Tests of serve/chat_prompt: OpenAI messages rendered as the harmony text GPT-OSS continues
 * (system and developer joined into developer instructions, a tool call as a commentary message
 * to=functions.NAME, its result from functions.NAME, reasoning effort and date in the system
 * message), and a tool result that answers no call refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve/chat_prompt.h"

/* The request's body rendered as harmony text (special tokens written out); the caller frees it. */
static char *render(const char *body) {
  ChatRequest request;
  ApiError error;
  assert_true(chat_request_parse(body, strlen(body), &request, &error));
  ChatPrompt prompt;
  assert_true(chat_prompt_build(&request, "2026-12-03", &prompt, &error));
  char *text = NULL;
  size_t bytes = 0;
  assert_int_equal(harmony_render_prompt_text(&prompt.prompt, &text, &bytes), STATUS_OK);
  chat_prompt_free(&prompt);
  chat_request_free(&request);
  return text;
}

static const char *after(const char *text, const char *marker) {
  const char *at = strstr(text, marker);
  if (at == NULL) fail_msg("'%s' not in:\n%s", marker, text);
  return at;
}

static void test_user_message_after_system(void **state) {
  char *text = render("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"reasoning_effort\":\"low\"}");
  assert_true(strncmp(text, "<|start|>system<|message|>", 26) == 0);
  after(text, "Current date: 2026-12-03");
  after(text, "Reasoning: low");
  assert_null(strstr(text, "<|start|>developer"));
  assert_string_equal(after(text, "<|start|>user"), "<|start|>user<|message|>Hi<|end|><|start|>assistant");
  free(text);
}

static void test_system_and_developer_become_instructions(void **state) {
  char *text = render("{\"messages\":[{\"role\":\"system\",\"content\":\"Be terse.\"},"
                      "{\"role\":\"developer\",\"content\":\"Use French.\"},{\"role\":\"user\",\"content\":\"Hi\"}]}");
  after(text, "Reasoning: medium");
  after(text, "<|start|>developer<|message|># Instructions\n\nBe terse.\n\nUse French.<|end|><|start|>user<|message|>Hi");
  free(text);
}

static void test_tool_call_and_result_are_commentary(void **state) {
  char *text = render(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
      "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
      "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"3C\"},{\"role\":\"assistant\",\"content\":\"It is 3C.\"},"
      "{\"role\":\"user\",\"content\":\"Thanks\"}]}");
  assert_string_equal(after(text, "<|start|>user<|message|>Weather?"),
                      "<|start|>user<|message|>Weather?<|end|>"
                      "<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>"
                      "{\"city\":\"Oslo\"}<|call|>"
                      "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>3C<|end|>"
                      "<|start|>assistant<|channel|>final<|message|>It is 3C.<|end|>"
                      "<|start|>user<|message|>Thanks<|end|><|start|>assistant");
  free(text);
}

static void test_tool_result_without_its_call_is_refused(void **state) {
  const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"tool_call_id\":\"x9\",\"content\":\"r\"}]}";
  ChatRequest request;
  ApiError error;
  assert_true(chat_request_parse(body, strlen(body), &request, &error));
  ChatPrompt prompt;
  assert_false(chat_prompt_build(&request, NULL, &prompt, &error));
  assert_int_equal(error.http_status, 400);
  assert_string_equal(error.param, "messages");
  assert_non_null(strstr(error.message, "'x9' answers no earlier assistant tool call"));
  assert_null(prompt.messages);
  chat_request_free(&request);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_user_message_after_system),
      cmocka_unit_test(test_system_and_developer_become_instructions),
      cmocka_unit_test(test_tool_call_and_result_are_commentary),
      cmocka_unit_test(test_tool_result_without_its_call_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
