/* An OpenAI chat-completions request body, parsed and checked, and the OpenAI-style error a bad
 * one gets.
 *
 * Takes the request's bytes and nothing else (no HTTP, no MPI, no model), so it is unit-testable
 * and fuzzable. It does not render the prompt: the server maps ChatRequest to harmony itself.
 * Strings in a ChatRequest point into the parsed JSON it owns; chat_request_free releases both. */
#ifndef GPTOSS_SERVE_CHAT_REQUEST_H
#define GPTOSS_SERVE_CHAT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/harmony.h"

#define CHAT_MAX_STOP_STRINGS 4  /* the OpenAI API's limit */

/* What a refused request answers: the HTTP status and the body's error object. */
typedef struct {
  int http_status;
  char message[256];
  const char *type;   /* "invalid_request_error", ... */
  const char *param;  /* the offending field, or NULL */
  const char *code;   /* NULL, or e.g. "unsupported_parameter" */
} ApiError;

/* What both generation endpoints take besides the prompt (chat and legacy completions). */
typedef struct {
  int64_t max_tokens;          /* 0: not given (the server picks) */
  double temperature;          /* default 1 */
  double top_p;                /* default 1 */
  bool has_seed;
  uint64_t seed;
  const char *stop[CHAT_MAX_STOP_STRINGS]; /* point into the parsed JSON */
  size_t num_stop;
  bool stream;
  bool include_usage;          /* stream_options.include_usage */
  bool return_token_ids;       /* vLLM's extension: choices[0].token_ids in a non-streamed reply */
} ApiGeneration;

/* Fills `out` from a request object (`root` is a json_t *; strings stay owned by it): the
 * defaults, then max_tokens / max_completion_tokens, temperature, top_p, seed, stop, stream and
 * stream_options, each checked; n > 1 and the fields this server cannot honour (logprobs,
 * response_format, logit_bias, ...) are refused by name. */
bool api_parse_generation(void *root, ApiGeneration *out, ApiError *error);

/* The body as a JSON object (json_t *, the caller decrefs it), or NULL with a 400 in `error`:
 * not JSON (with where), a key given twice, or not an object. */
void *api_parse_body(const char *body, size_t body_bytes, ApiError *error);

typedef struct {
  const char *id;
  const char *name;       /* the function's name (without "functions.") */
  const char *arguments;  /* JSON text, as the client sent it */
} ChatToolCall;

typedef struct {
  HarmonyRole role;
  const char *content;       /* "" when absent (an assistant message that only calls tools) */
  const char *tool_call_id;  /* tool messages */
  const char *reasoning;     /* assistant messages: reasoning_content sent back, or NULL */
  const ChatToolCall *tool_calls; /* assistant messages */
  size_t num_tool_calls;
} ChatMessage;

typedef enum { CHAT_TOOL_CHOICE_AUTO, CHAT_TOOL_CHOICE_NONE } ChatToolChoice;

typedef struct {
  ChatMessage *messages;
  size_t num_messages;
  ApiGeneration gen;
  HarmonyReasoning reasoning;  /* reasoning_effort; default medium */
  const void *tools;           /* the `tools` array (json_t), NULL when absent or empty */
  size_t num_tools;
  ChatToolChoice tool_choice;
  void *json;                  /* owns every string above */
  ChatToolCall *tool_call_storage;
} ChatRequest;

/* Parses `body`; on failure fills `error` (a 400 naming the field) and leaves nothing to free. */
bool chat_request_parse(const char *body, size_t body_bytes, ChatRequest *out, ApiError *error);
void chat_request_free(ChatRequest *request);

/* Fills `error` with an invalid_request_error at `status` (printf-style message). */
void api_error_set(ApiError *error, int http_status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* `{"error": {"message", "type", "param", "code"}}` as a NUL-terminated string; the caller frees
 * it. NULL when out of memory. */
char *api_error_json(const ApiError *error);

#endif
