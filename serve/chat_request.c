/* The chat-completions request body: JSON (Jansson) to ChatRequest, with a 400 for anything the
 * server cannot honour exactly. Runs on rank 0's network threads; touches no engine state.
 *
 * Unknown fields that change what a client gets back (n > 1, logprobs, a forced tool_choice,
 * response_format) are refused by name rather than ignored, so a client never silently gets
 * something other than it asked for. `user` and `model` are accepted and ignored. */
#include "serve/chat_request.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_error_set(ApiError *error, int http_status, const char *param, const char *code, const char *fmt, ...) {
  error->http_status = http_status;
  error->type = "invalid_request_error";
  error->param = param;
  error->code = code;
  va_list args;
  va_start(args, fmt);
  vsnprintf(error->message, sizeof error->message, fmt, args);
  va_end(args);
}

char *api_error_json(const ApiError *error) {
  json_t *root = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", error->message, "type",
                           error->type ? error->type : "invalid_request_error", "param", error->param,
                           "code", error->code);
  if (root == NULL) return NULL;
  char *text = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return text;
}

static bool parse_role(const char *name, HarmonyRole *role_out) {
  static const struct { const char *name; HarmonyRole role; } roles[] = {
      {"system", HARMONY_ROLE_SYSTEM}, {"developer", HARMONY_ROLE_DEVELOPER}, {"user", HARMONY_ROLE_USER},
      {"assistant", HARMONY_ROLE_ASSISTANT}, {"tool", HARMONY_ROLE_TOOL},
  };
  for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++) {
    if (strcmp(name, roles[i].name) == 0) {
      *role_out = roles[i].role;
      return true;
    }
  }
  return false;
}

/* content: a string, or an array of {"type":"text","text":...} parts (only one part: the parts
 * would otherwise need joining into storage the JSON does not own). */
static bool parse_content(json_t *content, size_t index, const char **text_out, ApiError *error) {
  if (content == NULL || json_is_null(content)) {
    *text_out = "";
    return true;
  }
  if (json_is_string(content)) {
    *text_out = json_string_value(content);
    return true;
  }
  if (json_is_array(content) && json_array_size(content) == 1) {
    json_t *part = json_array_get(content, 0);
    const char *type = json_string_value(json_object_get(part, "type"));
    const char *text = json_string_value(json_object_get(part, "text"));
    if (type != NULL && strcmp(type, "text") == 0 && text != NULL) {
      *text_out = text;
      return true;
    }
  }
  api_error_set(error, 400, "messages", NULL,
                "messages[%zu].content must be a string or a single {\"type\": \"text\"} part", index);
  return false;
}

static bool parse_tool_calls(json_t *calls, size_t index, ChatMessage *message, ChatToolCall **storage_next,
                             ApiError *error) {
  message->tool_calls = *storage_next;
  for (size_t i = 0; i < json_array_size(calls); i++) {
    json_t *call = json_array_get(calls, i);
    json_t *function = json_object_get(call, "function");
    ChatToolCall *out = &(*storage_next)[0];
    out->id = json_string_value(json_object_get(call, "id"));
    out->name = json_string_value(json_object_get(function, "name"));
    out->arguments = json_string_value(json_object_get(function, "arguments"));
    if (out->name == NULL || out->arguments == NULL) {
      api_error_set(error, 400, "messages", NULL,
                    "messages[%zu].tool_calls[%zu] needs function.name and function.arguments strings", index, i);
      return false;
    }
    if (out->id == NULL) out->id = "";
    (*storage_next)++;
    message->num_tool_calls++;
  }
  return true;
}

static bool parse_message(json_t *item, size_t index, ChatMessage *message, ChatToolCall **storage_next,
                          ApiError *error) {
  const char *role = json_string_value(json_object_get(item, "role"));
  if (!json_is_object(item) || role == NULL) {
    api_error_set(error, 400, "messages", NULL, "messages[%zu] must be an object with a string role", index);
    return false;
  }
  if (!parse_role(role, &message->role)) {
    api_error_set(error, 400, "messages", NULL,
                  "messages[%zu].role '%.64s' is not one of system, developer, user, assistant, tool", index, role);
    return false;
  }
  if (!parse_content(json_object_get(item, "content"), index, &message->content, error)) return false;
  json_t *calls = json_object_get(item, "tool_calls");
  if (calls != NULL && !json_is_null(calls)) {
    if (message->role != HARMONY_ROLE_ASSISTANT || !json_is_array(calls)) {
      api_error_set(error, 400, "messages", NULL, "messages[%zu].tool_calls must be an array on an assistant message",
                    index);
      return false;
    }
    if (!parse_tool_calls(calls, index, message, storage_next, error)) return false;
  }
  /* The reasoning a client got with an earlier reply (vLLM's name, and OpenRouter's). */
  json_t *reasoning = json_object_get(item, "reasoning_content");
  if (reasoning == NULL || json_is_null(reasoning)) reasoning = json_object_get(item, "reasoning");
  if (reasoning != NULL && !json_is_null(reasoning)) {
    if (message->role != HARMONY_ROLE_ASSISTANT || !json_is_string(reasoning)) {
      api_error_set(error, 400, "messages", NULL, "messages[%zu].reasoning_content must be a string on an assistant message",
                    index);
      return false;
    }
    message->reasoning = json_string_value(reasoning);
  }
  if (message->role == HARMONY_ROLE_TOOL) {
    message->tool_call_id = json_string_value(json_object_get(item, "tool_call_id"));
    if (message->tool_call_id == NULL) {
      api_error_set(error, 400, "messages", NULL, "messages[%zu] (a tool message) needs a tool_call_id string", index);
      return false;
    }
  }
  return true;
}

static bool parse_messages(json_t *root, ChatRequest *out, ApiError *error) {
  json_t *messages = json_object_get(root, "messages");
  if (!json_is_array(messages) || json_array_size(messages) == 0) {
    api_error_set(error, 400, "messages", NULL, "'messages' must be a non-empty array");
    return false;
  }
  size_t num = json_array_size(messages), num_calls = 0;
  for (size_t i = 0; i < num; i++) num_calls += json_array_size(json_object_get(json_array_get(messages, i), "tool_calls"));
  out->messages = calloc(num, sizeof *out->messages);
  out->tool_call_storage = calloc(num_calls + 1, sizeof *out->tool_call_storage);
  if (out->messages == NULL || out->tool_call_storage == NULL) {
    api_error_set(error, 500, NULL, NULL, "out of memory");
    error->type = "server_error";
    return false;
  }
  ChatToolCall *storage_next = out->tool_call_storage;
  for (size_t i = 0; i < num; i++) {
    if (!parse_message(json_array_get(messages, i), i, &out->messages[i], &storage_next, error)) return false;
    out->num_messages++;
  }
  return true;
}

/* A number field in [lo, hi] (lo_open: lo itself excluded); absent or null keeps *value. */
static bool parse_number(json_t *root, const char *key, double lo, bool lo_open, double hi, double *value,
                         ApiError *error) {
  json_t *field = json_object_get(root, key);
  if (field == NULL || json_is_null(field)) return true;
  double v = json_is_number(field) ? json_number_value(field) : -1e300;
  if (!json_is_number(field) || v < lo || (lo_open && v == lo) || v > hi) {
    api_error_set(error, 400, key, NULL, "'%s' must be a number in %s%g, %g]", key, lo_open ? "(" : "[", lo, hi);
    return false;
  }
  *value = v;
  return true;
}

static bool parse_max_tokens(json_t *root, ApiGeneration *out, ApiError *error) {
  const char *keys[] = {"max_completion_tokens", "max_tokens"};  /* the newer name wins */
  for (size_t i = 0; i < 2; i++) {
    json_t *field = json_object_get(root, keys[i]);
    if (field == NULL || json_is_null(field)) continue;
    if (!json_is_integer(field) || json_integer_value(field) < 1) {
      api_error_set(error, 400, keys[i], NULL, "'%s' must be an integer >= 1", keys[i]);
      return false;
    }
    if (out->max_tokens == 0) out->max_tokens = json_integer_value(field);
  }
  return true;
}

static bool parse_stop(json_t *root, ApiGeneration *out, ApiError *error) {
  json_t *stop = json_object_get(root, "stop");
  if (stop == NULL || json_is_null(stop)) return true;
  if (json_is_string(stop)) {
    out->stop[out->num_stop++] = json_string_value(stop);
    return true;
  }
  if (json_is_array(stop) && json_array_size(stop) <= CHAT_MAX_STOP_STRINGS) {
    for (size_t i = 0; i < json_array_size(stop); i++) {
      const char *s = json_string_value(json_array_get(stop, i));
      if (s == NULL || s[0] == '\0') break;
      out->stop[out->num_stop++] = s;
    }
    if (out->num_stop == json_array_size(stop)) return true;
  }
  api_error_set(error, 400, "stop", NULL, "'stop' must be a string or an array of up to %d non-empty strings",
                CHAT_MAX_STOP_STRINGS);
  return false;
}

static bool parse_bool(json_t *object, const char *key, bool *value, ApiError *error) {
  json_t *field = json_object_get(object, key);
  if (field == NULL || json_is_null(field)) return true;
  if (!json_is_boolean(field)) {
    api_error_set(error, 400, key, NULL, "'%s' must be true or false", key);
    return false;
  }
  *value = json_is_true(field);
  return true;
}

static bool parse_sampling(json_t *root, ApiGeneration *out, ApiError *error) {
  if (!parse_number(root, "temperature", 0, false, 2, &out->temperature, error)) return false;
  if (!parse_number(root, "top_p", 0, true, 1, &out->top_p, error)) return false;
  json_t *seed = json_object_get(root, "seed");
  if (seed != NULL && !json_is_null(seed)) {
    if (!json_is_integer(seed)) {
      api_error_set(error, 400, "seed", NULL, "'seed' must be an integer");
      return false;
    }
    out->has_seed = true;
    out->seed = (uint64_t)json_integer_value(seed);
  }
  return parse_max_tokens(root, out, error) && parse_stop(root, out, error);
}

static bool parse_stream(json_t *root, ApiGeneration *out, ApiError *error) {
  if (!parse_bool(root, "stream", &out->stream, error)) return false;
  json_t *options = json_object_get(root, "stream_options");
  if (options == NULL || json_is_null(options)) return true;
  if (!json_is_object(options)) {
    api_error_set(error, 400, "stream_options", NULL, "'stream_options' must be an object");
    return false;
  }
  return parse_bool(options, "include_usage", &out->include_usage, error);
}

static bool parse_reasoning(json_t *root, ChatRequest *out, ApiError *error) {
  json_t *field = json_object_get(root, "reasoning_effort");
  if (field == NULL || json_is_null(field)) return true;
  const char *effort = json_string_value(field);
  if (effort != NULL && strcmp(effort, "low") == 0) out->reasoning = HARMONY_REASONING_LOW;
  else if (effort != NULL && strcmp(effort, "medium") == 0) out->reasoning = HARMONY_REASONING_MEDIUM;
  else if (effort != NULL && strcmp(effort, "high") == 0) out->reasoning = HARMONY_REASONING_HIGH;
  else {
    api_error_set(error, 400, "reasoning_effort", NULL, "'reasoning_effort' must be \"low\", \"medium\" or \"high\"");
    return false;
  }
  return true;
}

static bool parse_tools(json_t *root, ChatRequest *out, ApiError *error) {
  json_t *tools = json_object_get(root, "tools");
  if (tools != NULL && !json_is_null(tools)) {
    if (!json_is_array(tools)) {
      api_error_set(error, 400, "tools", NULL, "'tools' must be an array");
      return false;
    }
    for (size_t i = 0; i < json_array_size(tools); i++) {
      json_t *tool = json_array_get(tools, i);
      const char *type = json_string_value(json_object_get(tool, "type"));
      const char *name = json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
      if (type == NULL || strcmp(type, "function") != 0 || name == NULL) {
        api_error_set(error, 400, "tools", NULL, "tools[%zu] must be {\"type\": \"function\", \"function\": {\"name\", ...}}", i);
        return false;
      }
    }
    out->num_tools = json_array_size(tools);
    out->tools = out->num_tools > 0 ? tools : NULL;
  }
  json_t *choice = json_object_get(root, "tool_choice");
  if (choice == NULL || json_is_null(choice)) return true;
  const char *name = json_string_value(choice);
  if (name != NULL && strcmp(name, "auto") == 0) out->tool_choice = CHAT_TOOL_CHOICE_AUTO;
  else if (name != NULL && strcmp(name, "none") == 0) out->tool_choice = CHAT_TOOL_CHOICE_NONE;
  else {
    api_error_set(error, 400, "tool_choice", "unsupported_parameter",
                  "'tool_choice' supports only \"auto\" and \"none\" here (no forced or required tool calls)");
    return false;
  }
  return true;
}

/* Fields this server cannot honour exactly: refused, never ignored. */
static bool refuse_unsupported(json_t *root, ApiError *error) {
  json_t *n = json_object_get(root, "n");
  if (n != NULL && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1)) {
    api_error_set(error, 400, "n", "unsupported_parameter", "'n' must be 1: one choice per request is supported");
    return false;
  }
  static const char *const refused[] = {"logprobs", "top_logprobs", "response_format", "logit_bias", "audio",
                                        "modalities", "prediction"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    json_t *field = json_object_get(root, refused[i]);
    if (field != NULL && !json_is_null(field) && !json_is_false(field)) {
      api_error_set(error, 400, refused[i], "unsupported_parameter", "'%s' is not supported by this server", refused[i]);
      return false;
    }
  }
  return true;
}

bool api_parse_generation(void *root_json, ApiGeneration *out, ApiError *error) {
  json_t *root = root_json;
  memset(out, 0, sizeof *out);
  out->temperature = 1.0;
  out->top_p = 1.0;
  return refuse_unsupported(root, error) && parse_sampling(root, out, error) && parse_stream(root, out, error) &&
         parse_bool(root, "return_token_ids", &out->return_token_ids, error);
}

void *api_parse_body(const char *body, size_t body_bytes, ApiError *error) {
  json_error_t json_error;
  json_t *root = json_loadb(body, body_bytes, JSON_REJECT_DUPLICATES, &json_error);
  if (root == NULL) {
    api_error_set(error, 400, NULL, NULL, "the body is not valid JSON: %s (at byte %d)", json_error.text,
                  json_error.position);
  } else if (!json_is_object(root)) {
    api_error_set(error, 400, NULL, NULL, "the body must be a JSON object");
    json_decref(root);
    root = NULL;
  }
  return root;
}

bool chat_request_parse(const char *body, size_t body_bytes, ChatRequest *out, ApiError *error) {
  memset(out, 0, sizeof *out);
  out->reasoning = HARMONY_REASONING_MEDIUM;
  json_t *root = api_parse_body(body, body_bytes, error);
  if (root == NULL) return false;
  out->json = root;
  const bool ok = api_parse_generation(root, &out->gen, error) && parse_messages(root, out, error) &&
                  parse_reasoning(root, out, error) && parse_tools(root, out, error);
  if (!ok) chat_request_free(out);
  return ok;
}

void chat_request_free(ChatRequest *request) {
  free(request->messages);
  free(request->tool_call_storage);
  json_decref(request->json);
  memset(request, 0, sizeof *request);
}
