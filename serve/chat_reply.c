/* Parsed harmony messages to the chat.completion JSON (see chat_reply.h). Rank 0, driver thread. */
#include "serve/chat_reply.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/utf8.h"

#define FUNCTIONS_PREFIX "functions."

static bool is_function_call(const HarmonyParsedMessage *m) {
  return m->role == HARMONY_ROLE_ASSISTANT && m->recipient != NULL &&
         strncmp(m->recipient, FUNCTIONS_PREFIX, strlen(FUNCTIONS_PREFIX)) == 0;
}

static bool is_channel(const HarmonyParsedMessage *m, const char *channel) {
  return m->channel != NULL && strcmp(m->channel, channel) == 0;
}

/* Reasoning: analysis. Content: final, or commentary to no one (a preamble for the user). */
static bool is_reasoning(const HarmonyParsedMessage *m) {
  return m->role == HARMONY_ROLE_ASSISTANT && m->recipient == NULL && is_channel(m, "analysis");
}
static bool is_content(const HarmonyParsedMessage *m) {
  return m->role == HARMONY_ROLE_ASSISTANT && m->recipient == NULL && !is_channel(m, "analysis");
}

/* A JSON string of the bytes, each invalid UTF-8 sequence replaced by U+FFFD. */
static json_t *json_text(const char *bytes, size_t num_bytes) {
  uint8_t *clean = malloc(UTF8_REPLACED_MAX_BYTES(num_bytes) + 1);
  if (clean == NULL) return NULL;
  size_t clean_bytes = utf8_replace_invalid((const uint8_t *)bytes, num_bytes, clean);
  json_t *s = json_stringn((const char *)clean, clean_bytes);
  free(clean);
  return s;
}

/* The text of every message that `keep` selects, concatenated; JSON null when there is none. */
static json_t *joined_text(const HarmonyParsedMessage *messages, size_t num, bool (*keep)(const HarmonyParsedMessage *)) {
  size_t bytes = 0;
  bool any = false;
  for (size_t i = 0; i < num; i++) {
    if (keep(&messages[i])) bytes += messages[i].text_bytes, any = true;
  }
  if (!any) return json_null();
  char *text = malloc(bytes + 1);
  if (text == NULL) return NULL;
  size_t at = 0;
  for (size_t i = 0; i < num; i++) {
    if (!keep(&messages[i]) || messages[i].text_bytes == 0) continue;
    memcpy(text + at, messages[i].text, messages[i].text_bytes);
    at += messages[i].text_bytes;
  }
  json_t *s = json_text(text, at);
  free(text);
  return s;
}

void chat_reply_call_id(char *out, size_t out_bytes, const char *reply_id, size_t index) {
  snprintf(out, out_bytes, "call_%.64s_%zu", reply_id, index);
}

static json_t *tool_calls_json(const HarmonyParsedMessage *messages, size_t num, const char *reply_id) {
  json_t *calls = json_array();
  for (size_t i = 0; calls != NULL && i < num; i++) {
    const HarmonyParsedMessage *m = &messages[i];
    if (!is_function_call(m)) continue;
    char id[96];
    chat_reply_call_id(id, sizeof id, reply_id, json_array_size(calls));
    json_t *arguments = json_text(m->text ? m->text : "", m->text_bytes);
    json_t *name = json_text(m->recipient + strlen(FUNCTIONS_PREFIX), strlen(m->recipient + strlen(FUNCTIONS_PREFIX)));
    json_t *call = json_pack("{s:s, s:s, s:{s:o*, s:o*}}", "id", id, "type", "function", "function", "name", name,
                             "arguments", arguments);
    if (call == NULL || json_array_append_new(calls, call) != 0) {
      json_decref(calls);
      return NULL;
    }
  }
  return calls;
}

const char *chat_reply_finish_reason(const HarmonyParsedMessage *messages, size_t num_messages, bool hit_length) {
  for (size_t i = 0; i < num_messages; i++) {
    if (is_function_call(&messages[i])) return "tool_calls";
  }
  return hit_length ? "length" : "stop";
}

static json_t *message_json(const HarmonyParsedMessage *messages, size_t num, const char *reply_id) {
  json_t *message = json_pack("{s:s, s:o*, s:o*}", "role", "assistant", "content", joined_text(messages, num, is_content),
                              "reasoning_content", joined_text(messages, num, is_reasoning));
  json_t *calls = tool_calls_json(messages, num, reply_id);
  if (message == NULL || calls == NULL) {
    json_decref(message);
    json_decref(calls);
    return NULL;
  }
  if (json_array_size(calls) > 0) json_object_set(message, "tool_calls", calls);
  json_decref(calls);
  return message;
}

static json_t *usage_json(const ChatUsage *usage) {
  return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)usage->prompt_tokens, "completion_tokens",
                   (json_int_t)usage->completion_tokens, "total_tokens",
                   (json_int_t)(usage->prompt_tokens + usage->completion_tokens), "completion_tokens_details",
                   "reasoning_tokens", (json_int_t)usage->reasoning_tokens);
}

/* choices[0].token_ids, when the request asked for them. */
static void add_token_ids(json_t *root, const ChatReplyInfo *info) {
  if (root == NULL || info->token_ids == NULL) return;
  json_t *ids = json_array();
  for (size_t i = 0; ids != NULL && i < info->num_token_ids; i++) json_array_append_new(ids, json_integer(info->token_ids[i]));
  json_object_set_new(json_array_get(json_object_get(root, "choices"), 0), "token_ids", ids);
}

char *chat_reply_json(const HarmonyParsedMessage *messages, size_t num_messages, const ChatReplyInfo *info,
                      const ChatUsage *usage) {
  json_t *root = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o*, s:s}], s:o*}", "id", info->id, "object",
                           "chat.completion", "created", (json_int_t)info->created, "model", info->model, "choices",
                           "index", 0, "message", message_json(messages, num_messages, info->id), "finish_reason",
                           chat_reply_finish_reason(messages, num_messages, info->hit_length), "usage",
                           usage_json(usage));
  if (root == NULL) return NULL;
  add_token_ids(root, info);
  char *text = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return text;
}

static json_t *delta_json(ChatDeltaKind kind, const char *text, size_t text_bytes) {
  switch (kind) {
  case CHAT_DELTA_ROLE: return json_pack("{s:s}", "role", "assistant");
  case CHAT_DELTA_CONTENT: return json_pack("{s:o*}", "content", json_text(text, text_bytes));
  case CHAT_DELTA_REASONING: return json_pack("{s:o*}", "reasoning_content", json_text(text, text_bytes));
  default: return json_object();
  }
}

/* `data: {object}\n\n` around an `object` ("chat.completion.chunk", "text_completion") with
 * these choices and, when not NULL, usage (both stolen). */
static char *event_of(const char *object, const ChatReplyInfo *info, json_t *choices, json_t *usage) {
  json_t *root = json_pack("{s:s, s:s, s:I, s:s, s:o*}", "id", info->id, "object", object, "created",
                           (json_int_t)info->created, "model", info->model, "choices", choices);
  if (root != NULL && usage != NULL) json_object_set_new(root, "usage", usage);
  else json_decref(usage);
  char *body = root ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  if (body == NULL) return NULL;
  char *event = malloc(strlen(body) + sizeof "data: \n\n");
  if (event != NULL) sprintf(event, "data: %s\n\n", body);
  free(body);
  return event;
}

static char *chunk_event(const ChatReplyInfo *info, json_t *choices, json_t *usage) {
  return event_of("chat.completion.chunk", info, choices, usage);
}

char *chat_reply_tool_call_sse(const ChatReplyInfo *info, size_t index, const char *name, const char *arguments,
                               size_t arguments_bytes) {
  char id[96];
  chat_reply_call_id(id, sizeof id, info->id, index);
  json_t *call = json_pack("{s:I, s:s, s:s, s:{s:o*, s:o*}}", "index", (json_int_t)index, "id", id, "type", "function",
                           "function", "name", json_text(name, strlen(name)), "arguments",
                           json_text(arguments, arguments_bytes));
  return chunk_event(info, json_pack("[{s:i, s:{s:[o*]}, s:n}]", "index", 0, "delta", "tool_calls", call,
                                     "finish_reason"), NULL);
}

char *chat_reply_chunk_sse(const ChatReplyInfo *info, ChatDeltaKind kind, const char *text, size_t text_bytes,
                           const char *finish_reason, const ChatUsage *usage) {
  json_t *choices = kind == CHAT_DELTA_USAGE
                        ? json_array()
                        : json_pack("[{s:i, s:o*, s:s?}]", "index", 0, "delta", delta_json(kind, text, text_bytes),
                                    "finish_reason", kind == CHAT_DELTA_FINISH ? finish_reason : NULL);
  return chunk_event(info, choices, kind == CHAT_DELTA_USAGE ? usage_json(usage) : NULL);
}

static json_t *completion_choices(const char *text, size_t text_bytes, const char *finish_reason) {
  return json_pack("[{s:o*, s:i, s:n, s:s?}]", "text", json_text(text, text_bytes), "index", 0, "logprobs",
                   "finish_reason", finish_reason);
}

static json_t *completion_usage_json(const ChatUsage *usage) {
  return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)usage->prompt_tokens, "completion_tokens",
                   (json_int_t)usage->completion_tokens, "total_tokens",
                   (json_int_t)(usage->prompt_tokens + usage->completion_tokens));
}

char *completion_reply_json(const ChatReplyInfo *info, const char *text, size_t text_bytes, const char *finish_reason,
                            const ChatUsage *usage) {
  json_t *root = json_pack("{s:s, s:s, s:I, s:s, s:o*, s:o*}", "id", info->id, "object", "text_completion", "created",
                           (json_int_t)info->created, "model", info->model, "choices",
                           completion_choices(text, text_bytes, finish_reason), "usage", completion_usage_json(usage));
  if (root == NULL) return NULL;
  add_token_ids(root, info);
  char *body = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return body;
}

char *completion_chunk_sse(const ChatReplyInfo *info, const char *text, size_t text_bytes, const char *finish_reason,
                           const ChatUsage *usage) {
  if (usage != NULL) return event_of("text_completion", info, json_array(), completion_usage_json(usage));
  return event_of("text_completion", info, completion_choices(text, text_bytes, finish_reason), NULL);
}
