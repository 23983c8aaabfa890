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

/* Declared tools: harmony's TypeScript namespace in the developer message (the layout of
 * openai/harmony's rendering, written out here by hand), the commentary line in the system one. */
static void test_tools_are_declared_as_a_namespace(void **state) {
  char *text = render(
      "{\"messages\":[{\"role\":\"system\",\"content\":\"Be concise.\"},{\"role\":\"user\",\"content\":\"Tokyo?\"}],"
      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Get weather for a city\","
      "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"description\":\"The city\"},"
      "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"],\"default\":\"celsius\"},"
      "\"days\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"}},\"note\":{\"type\":[\"string\",\"null\"]},"
      "\"lang\":{\"type\":\"string\",\"default\":\"en\"},"
      "\"where\":{\"type\":\"object\",\"properties\":{\"lat\":{\"type\":\"number\"}},\"required\":[\"lat\"]}},"
      "\"required\":[\"city\"]}}},"
      "{\"type\":\"function\",\"function\":{\"name\":\"get_location\"}}]}");
  after(text, "Channel must be included for every message.\nCalls to these tools must go to the commentary channel: "
              "'functions'.<|end|>");
  assert_string_equal(after(text, "<|start|>developer"),
                      "<|start|>developer<|message|># Instructions\n\nBe concise.\n\n# Tools\n\n## functions\n\n"
                      "namespace functions {\n\n"
                      "// Get weather for a city\ntype get_weather = (_: {\n// The city\ncity: string,\n"
                      "unit?: \"celsius\" | \"fahrenheit\", // default: celsius\ndays?: number[],\nnote?: string | null,\n"
                      "lang?: string, // default: \"en\"\nwhere?: {\n    lat: number,\n    },\n"
                      "}) => any;\n\n"
                      "type get_location = () => any;\n\n"
                      "} // namespace functions<|end|><|start|>user<|message|>Tokyo?<|end|><|start|>assistant");
  free(text);
  /* tool_choice "none": nothing declared */
  text = render("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"tool_choice\":\"none\","
                "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}");
  assert_null(strstr(text, "# Tools"));
  assert_null(strstr(text, "Calls to these tools"));
  free(text);
}

/* openai/harmony's test_does_not_drop_if_ongoing_analysis: the reasoning that led to a tool call
 * stays while the turn goes on; an earlier turn's reasoning is dropped. */
static void test_reasoning_kept_only_in_the_turn_in_progress(void **state) {
  char *text = render(
      "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
      "{\"role\":\"assistant\",\"content\":\"Hello.\",\"reasoning_content\":\"Greet back.\"},"
      "{\"role\":\"user\",\"content\":\"What is the weather in SF?\"},"
      "{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"We need to use lookup_weather tool.\","
      "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"lookup_weather\","
      "\"arguments\":\"{\\\"location\\\": \\\"San Francisco\\\"}\"}}]},"
      "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"{\\\"temperature\\\": 20}\"}]}");
  assert_null(strstr(text, "Greet back."));
  assert_string_equal(after(text, "<|start|>user<|message|>What"),
                      "<|start|>user<|message|>What is the weather in SF?<|end|>"
                      "<|start|>assistant<|channel|>analysis<|message|>We need to use lookup_weather tool.<|end|>"
                      "<|start|>assistant to=functions.lookup_weather<|channel|>commentary <|constrain|>json<|message|>"
                      "{\"location\": \"San Francisco\"}<|call|>"
                      "<|start|>functions.lookup_weather to=assistant<|channel|>commentary<|message|>{\"temperature\": 20}<|end|>"
                      "<|start|>assistant");
  free(text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_user_message_after_system),
      cmocka_unit_test(test_system_and_developer_become_instructions),
      cmocka_unit_test(test_tool_call_and_result_are_commentary),
      cmocka_unit_test(test_tool_result_without_its_call_is_refused),
      cmocka_unit_test(test_tools_are_declared_as_a_namespace),
      cmocka_unit_test(test_reasoning_kept_only_in_the_turn_in_progress),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
