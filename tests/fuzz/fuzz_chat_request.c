/* libFuzzer target for serve's request bodies: chat_request with chat_prompt (the tools'
 * TypeScript rendering included), and completion_request. Each input is a request body: a
 * refused one must carry a 400 (or a 500 out of memory) whose error object is valid JSON; an accepted one must keep chat_request.h's promises and either render as a
 * harmony prompt or be refused by chat_prompt with a 400. Any broken promise aborts.
 * Built by tests/fuzz/CMakeLists.txt (libFuzzer with -DGPTOSS_FUZZ=ON, replay_* otherwise). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/chat_prompt.h"
#include "serve/chat_request.h"
#include "serve/completion_request.h"

static void require(int condition) {
  if (!condition) abort();
}

static void check_refusal(const ApiError *error) {
  require(error->http_status == 400 || error->http_status == 500);
  char *text = api_error_json(error);
  if (text == NULL) return; /* out of memory */
  json_t *root = json_loads(text, 0, NULL);
  require(root != NULL && json_is_string(json_object_get(json_object_get(root, "error"), "message")));
  json_decref(root);
  free(text);
}

static void check_request(const ChatRequest *r) {
  require(r->num_messages >= 1 && r->gen.max_tokens >= 0 && r->gen.num_stop <= CHAT_MAX_STOP_STRINGS);
  require(r->gen.temperature >= 0 && r->gen.temperature <= 2 && r->gen.top_p > 0 && r->gen.top_p <= 1);
  for (size_t i = 0; i < r->num_messages; i++) {
    require(r->messages[i].content != NULL);
    require(r->messages[i].role != HARMONY_ROLE_TOOL || r->messages[i].tool_call_id != NULL);
  }
}

/* The same bytes as a /v1/completions body: a text prompt or ids inside the vocabulary. */
static void fuzz_completion(const uint8_t *data, size_t size) {
  CompletionRequest r;
  ApiError error;
  if (!completion_request_parse((const char *)data, size, 201088, &r, &error)) {
    check_refusal(&error);
    return;
  }
  require((r.prompt_text != NULL) != (r.prompt_ids != NULL) && r.gen.max_tokens >= 1);
  require(r.prompt_text == NULL || r.prompt_bytes > 0);
  for (size_t i = 0; i < r.num_prompt_ids; i++) require(r.prompt_ids[i] >= 0 && r.prompt_ids[i] < 201088);
  completion_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_completion(data, size);
  ChatRequest request;
  ApiError error;
  if (!chat_request_parse((const char *)data, size, &request, &error)) {
    check_refusal(&error);
    return 0;
  }
  check_request(&request);
  ChatPrompt prompt;
  if (chat_prompt_build(&request, "2026-01-01", &prompt, &error)) {
    char *text = NULL;
    size_t bytes = 0;
    /* Jansson hands out valid UTF-8 only, so rendering cannot fail on the text. */
    require(harmony_render_prompt_text(&prompt.prompt, &text, &bytes) == STATUS_OK);
    free(text);
    chat_prompt_free(&prompt);
  } else {
    check_refusal(&error);
  }
  chat_request_free(&request);
  return 0;
}
