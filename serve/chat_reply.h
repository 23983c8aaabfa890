/* What the model generated, as the OpenAI chat-completion object a client expects.
 *
 * Harmony's analysis channel becomes `reasoning_content`, the final channel (and commentary
 * meant for the user, i.e. without a recipient) `content`, and each commentary message
 * `to=functions.NAME` a `tool_calls` entry with finish_reason "tool_calls". Messages to any other
 * recipient (built-in tools this server does not run) are dropped rather than shown as content.
 * Text the model produced as broken UTF-8 is sent with U+FFFD in place of each bad sequence.
 * Takes parsed messages and counts, no engine or HTTP, so it is unit-testable. */
#ifndef GPTOSS_SERVE_CHAT_REPLY_H
#define GPTOSS_SERVE_CHAT_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/harmony.h"

typedef struct {
  int64_t prompt_tokens;
  int64_t completion_tokens;
  int64_t reasoning_tokens;  /* of completion_tokens, those in the analysis channel */
} ChatUsage;

typedef struct {
  const char *id;      /* "chatcmpl-..." */
  const char *model;
  int64_t created;     /* Unix seconds */
  bool hit_length;     /* the scheduler stopped at max_tokens or the context's end */
  const int32_t *token_ids; /* when not NULL: every generated id, as choices[0].token_ids */
  size_t num_token_ids;
} ChatReplyInfo;

/* The response body (NUL-terminated JSON); the caller frees it. NULL when out of memory. */
char *chat_reply_json(const HarmonyParsedMessage *messages, size_t num_messages, const ChatReplyInfo *info,
                      const ChatUsage *usage);

/* "tool_calls" when any message calls a function, else "length" if info says so, else "stop". */
const char *chat_reply_finish_reason(const HarmonyParsedMessage *messages, size_t num_messages, bool hit_length);

/* What one streamed chunk carries (the delta of one token, or the end). */
typedef enum {
  CHAT_DELTA_ROLE,       /* the first chunk: {"role": "assistant"} */
  CHAT_DELTA_CONTENT,    /* text of the final channel (or commentary to no one) */
  CHAT_DELTA_REASONING,  /* text of the analysis channel */
  CHAT_DELTA_FINISH,     /* empty delta with finish_reason */
  CHAT_DELTA_USAGE,      /* choices [] and usage (stream_options.include_usage) */
} ChatDeltaKind;

/* The id of the reply's `index`-th tool call: "call_{reply id}_{index}". */
void chat_reply_call_id(char *out, size_t out_bytes, const char *reply_id, size_t index);

/* The SSE event that streams one whole tool call (delta.tool_calls[0]: index, id, type, name,
 * arguments). The caller frees it; NULL when out of memory. */
char *chat_reply_tool_call_sse(const ChatReplyInfo *info, size_t index, const char *name, const char *arguments,
                               size_t arguments_bytes);

/* One `data: {...}\n\n` SSE event of a chat.completion.chunk; `text` (may hold broken UTF-8,
 * replaced) for CONTENT/REASONING, `finish_reason` for FINISH, `usage` for USAGE. The caller
 * frees it. NULL when out of memory. */
char *chat_reply_chunk_sse(const ChatReplyInfo *info, ChatDeltaKind kind, const char *text, size_t text_bytes,
                           const char *finish_reason, const ChatUsage *usage);

/* ---- legacy completions (POST /v1/completions): the same, for raw text ---- */

/* The text_completion body: choices[0].text (broken UTF-8 replaced), finish_reason, usage. */
char *completion_reply_json(const ChatReplyInfo *info, const char *text, size_t text_bytes, const char *finish_reason,
                            const ChatUsage *usage);
/* One streamed text_completion event: `text` with finish_reason (NULL while running), or, when
 * `usage` is not NULL, the usage event (choices []). */
char *completion_chunk_sse(const ChatReplyInfo *info, const char *text, size_t text_bytes, const char *finish_reason,
                           const ChatUsage *usage);

#endif
