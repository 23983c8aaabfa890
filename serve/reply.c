/* A request's answer, token by token (see reply.h). Rank 0's driver thread. */
#define _GNU_SOURCE /* memmem */
#include "serve/reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/harmony.h"

#define FUNCTIONS_PREFIX "functions."

typedef struct {
  char *name;
  char *arguments;
  size_t arguments_bytes;
} ToolCall;

struct Reply {
  ReplyOptions o;
  const Tokenizer *tok;
  bool started, stopped, finished, oom;
  int64_t completion_tokens, reasoning_tokens;
  /* chat */
  HarmonyParser parser;
  bool skipping;             /* garbled output: waiting for the next <|start|> */
  size_t messages_seen;
  ByteBuffer reasoning;
  bool has_content, has_reasoning;
  ToolCall *calls;
  size_t num_calls;
  /* completion */
  TokenizerStream decoder;
  /* the content (chat) or text (completion) released so far, and what stop strings hold back */
  ByteBuffer text, pending;
  TokenList ids;             /* every generated id, when return_token_ids */
};

static bool append_event(Reply *r, ByteBuffer *out, char *event) {
  if (!buffer_append_owned(out, event)) r->oom = true;
  return !r->oom;
}

/* A stream's first event: the assistant role (chat only). */
static void start(Reply *r, ByteBuffer *out) {
  if (r->started) return;
  r->started = true;
  if (r->o.stream && r->o.kind == REPLY_CHAT) {
    append_event(r, out, chat_reply_chunk_sse(&r->o.info, CHAT_DELTA_ROLE, NULL, 0, NULL, NULL));
  }
}

/* Content / text the client may have now. */
static void release(Reply *r, const char *bytes, size_t n, ByteBuffer *out) {
  if (n == 0) return;
  if (!r->o.stream) {
    if (!buffer_append(&r->text, bytes, n)) r->oom = true;
  } else if (r->o.kind == REPLY_CHAT) {
    append_event(r, out, chat_reply_chunk_sse(&r->o.info, CHAT_DELTA_CONTENT, bytes, n, NULL, NULL));
  } else {
    append_event(r, out, completion_chunk_sse(&r->o.info, bytes, n, NULL, NULL));
  }
}

/* The length of the longest suffix of pending that some stop string begins with (and is not). */
static size_t held_back(const Reply *r) {
  size_t hold = 0;
  for (size_t s = 0; s < r->o.num_stop; s++) {
    const size_t len = strlen(r->o.stop[s]);
    for (size_t k = len - 1; k > hold; k--) {
      if (k <= r->pending.length && memcmp(r->pending.data + r->pending.length - k, r->o.stop[s], k) == 0) {
        hold = k;
        break;
      }
    }
  }
  return hold;
}

/* New content / text through the stop strings; false once one has matched. */
static bool filter(Reply *r, const char *bytes, size_t n, ByteBuffer *out) {
  if (r->o.num_stop == 0) {
    release(r, bytes, n, out);
    return true;
  }
  if (!buffer_append(&r->pending, bytes, n)) return r->oom = true, true;
  size_t first = SIZE_MAX;
  for (size_t s = 0; s < r->o.num_stop; s++) {
    const char *hit = memmem(r->pending.data, r->pending.length, r->o.stop[s], strlen(r->o.stop[s]));
    if (hit != NULL && (size_t)(hit - r->pending.data) < first) first = (size_t)(hit - r->pending.data);
  }
  if (first != SIZE_MAX) {
    release(r, r->pending.data, first, out);
    buffer_consume(&r->pending, r->pending.length);
    r->stopped = true;
    return false;
  }
  const size_t ready = r->pending.length - held_back(r);
  release(r, r->pending.data, ready, out);
  buffer_consume(&r->pending, ready);
  return true;
}

static bool is_function_call(const HarmonyParsedMessage *m) {
  return m->role == HARMONY_ROLE_ASSISTANT && m->recipient != NULL &&
         strncmp(m->recipient, FUNCTIONS_PREFIX, strlen(FUNCTIONS_PREFIX)) == 0;
}

static bool is_analysis(const HarmonyParsedMessage *m) {
  return m->role == HARMONY_ROLE_ASSISTANT && m->recipient == NULL && m->channel && !strcmp(m->channel, "analysis");
}

/* Final text, and commentary to no one (a preamble for the user). */
static bool is_content(const HarmonyParsedMessage *m) {
  return m->role == HARMONY_ROLE_ASSISTANT && m->recipient == NULL && !is_analysis(m);
}

static void add_tool_call(Reply *r, const HarmonyParsedMessage *m, ByteBuffer *out) {
  ToolCall *calls = realloc(r->calls, (r->num_calls + 1) * sizeof *calls);
  if (calls == NULL) return (void)(r->oom = true);
  r->calls = calls;
  ToolCall *c = &calls[r->num_calls];
  c->name = strdup(m->recipient + strlen(FUNCTIONS_PREFIX));
  c->arguments = malloc(m->text_bytes + 1);
  if (c->name == NULL || c->arguments == NULL) {
    free(c->name);
    free(c->arguments);
    return (void)(r->oom = true);
  }
  memcpy(c->arguments, m->text ? m->text : "", m->text_bytes);
  c->arguments[m->text_bytes] = '\0';
  c->arguments_bytes = m->text_bytes;
  r->num_calls++;
  if (r->o.stream) {
    append_event(r, out, chat_reply_tool_call_sse(&r->o.info, r->num_calls - 1, c->name, c->arguments,
                                                  c->arguments_bytes));
  }
}

static bool push_chat(Reply *r, int32_t id, ByteBuffer *out) {
  if (r->skipping && id != TOKEN_START) return true;
  r->skipping = false;
  HarmonyParser *p = &r->parser;
  const bool was_in_content = p->state == HARMONY_IN_CONTENT;
  if (was_in_content && is_analysis(&p->current)) r->reasoning_tokens++;
  const char *delta = NULL;
  size_t n = 0;
  status_set_silent(1); /* garbled output is the model's, not an error to print */
  const Status st = harmony_parser_push(p, id, &delta, &n);
  status_set_silent(0);
  if (st == STATUS_OUT_OF_MEMORY) return r->oom = true, true;
  if (st != STATUS_OK) {
    harmony_parser_resync(p);
    r->skipping = true;
    return true;
  }
  if (p->num_messages > r->messages_seen) { /* a message ended */
    r->messages_seen = p->num_messages;
    const HarmonyParsedMessage *m = &p->messages[p->num_messages - 1];
    if (is_function_call(m)) add_tool_call(r, m, out);
    return true;
  }
  if (p->state != HARMONY_IN_CONTENT) return true;
  const HarmonyParsedMessage *m = &p->current;
  if (!was_in_content) { /* a message began */
    r->has_reasoning |= is_analysis(m);
    r->has_content |= is_content(m);
  }
  if (n == 0) return true;
  if (is_analysis(m)) {
    if (r->o.stream) return append_event(r, out, chat_reply_chunk_sse(&r->o.info, CHAT_DELTA_REASONING, delta, n, NULL, NULL)), true;
    if (!buffer_append(&r->reasoning, delta, n)) r->oom = true;
    return true;
  }
  return is_content(m) ? filter(r, delta, n, out) : true;
}

static bool push_completion(Reply *r, int32_t id, ByteBuffer *out) {
  for (size_t i = 0; i < r->o.num_stop_ids; i++) {
    if (id == r->o.stop_ids[i]) return true;
  }
  const char *text = NULL;
  size_t n = 0;
  if (tokenizer_stream_push(r->tok, &r->decoder, id, &text, &n) != STATUS_OK) return r->oom = true, true;
  return filter(r, text, n, out);
}

bool reply_push(Reply *r, int32_t id, ByteBuffer *out, bool *oom) {
  if (r->stopped || r->finished) return false;
  start(r, out);
  r->completion_tokens++;
  if (r->o.return_token_ids && token_list_push(&r->ids, id) != STATUS_OK) r->oom = true;
  const bool go_on = r->o.kind == REPLY_CHAT ? push_chat(r, id, out) : push_completion(r, id, out);
  if (oom) *oom = r->oom;
  return go_on;
}

ChatUsage reply_usage(const Reply *r) {
  return (ChatUsage){.prompt_tokens = r->o.prompt_tokens, .completion_tokens = r->completion_tokens,
                     .reasoning_tokens = r->reasoning_tokens};
}

static const char *finish_reason(const Reply *r, bool hit_length) {
  if (r->num_calls > 0) return "tool_calls";
  return hit_length && !r->stopped ? "length" : "stop";
}

static ChatReplyInfo with_ids(const Reply *r) {
  ChatReplyInfo info = r->o.info;
  if (r->o.return_token_ids) {
    static const int32_t none[1];
    info.token_ids = r->ids.ids ? r->ids.ids : none;
    info.num_token_ids = r->ids.num_ids;
  }
  return info;
}

/* The non-streamed chat body, from what was collected (chat_reply_json takes messages). */
static char *chat_body(Reply *r, bool hit_length) {
  const ChatUsage usage = reply_usage(r);
  HarmonyParsedMessage *messages = calloc(r->num_calls + 2, sizeof *messages);
  if (messages == NULL) return NULL;
  size_t n = 0;
  if (r->has_reasoning) {
    messages[n++] = (HarmonyParsedMessage){.role = HARMONY_ROLE_ASSISTANT, .channel = "analysis",
                                           .text = r->reasoning.data ? r->reasoning.data : "",
                                           .text_bytes = r->reasoning.length};
  }
  if (r->has_content) {
    messages[n++] = (HarmonyParsedMessage){.role = HARMONY_ROLE_ASSISTANT, .channel = "final",
                                           .text = r->text.data ? r->text.data : "", .text_bytes = r->text.length};
  }
  char recipients[r->num_calls + 1][128];
  for (size_t i = 0; i < r->num_calls; i++) {
    snprintf(recipients[i], sizeof recipients[i], FUNCTIONS_PREFIX "%.100s", r->calls[i].name);
    messages[n++] = (HarmonyParsedMessage){.role = HARMONY_ROLE_ASSISTANT, .recipient = recipients[i],
                                           .channel = "commentary", .text = r->calls[i].arguments,
                                           .text_bytes = r->calls[i].arguments_bytes};
  }
  ChatReplyInfo info = with_ids(r);
  info.hit_length = hit_length && !r->stopped;
  char *body = chat_reply_json(messages, n, &info, &usage);
  free(messages);
  return body;
}

bool reply_finish(Reply *r, bool hit_length, ByteBuffer *out) {
  if (r->finished) return !r->oom;
  r->finished = true;
  start(r, out);
  if (r->o.kind == REPLY_COMPLETION && !r->stopped) {
    const char *rest = NULL;
    size_t n = 0;
    tokenizer_stream_flush(&r->decoder, &rest, &n);
    filter(r, rest, n, out);
  }
  if (!r->stopped) release(r, r->pending.data, r->pending.length, out);
  const char *reason = finish_reason(r, hit_length);
  const ChatUsage usage = reply_usage(r);
  const bool chat = r->o.kind == REPLY_CHAT;
  const ChatReplyInfo info = with_ids(r);
  if (!r->o.stream) {
    return append_event(r, out, chat ? chat_body(r, hit_length)
                                     : completion_reply_json(&info, r->text.data ? r->text.data : "",
                                                             r->text.length, reason, &usage));
  }
  append_event(r, out, chat ? chat_reply_chunk_sse(&r->o.info, CHAT_DELTA_FINISH, NULL, 0, reason, NULL)
                            : completion_chunk_sse(&r->o.info, "", 0, reason, NULL));
  if (r->o.include_usage) {
    append_event(r, out, chat ? chat_reply_chunk_sse(&r->o.info, CHAT_DELTA_USAGE, NULL, 0, NULL, &usage)
                              : completion_chunk_sse(&r->o.info, NULL, 0, NULL, &usage));
  }
  if (!buffer_append_str(out, "data: [DONE]\n\n")) r->oom = true;
  return !r->oom;
}

Reply *reply_new(const Tokenizer *tok, const ReplyOptions *options) {
  Reply *r = calloc(1, sizeof *r);
  if (r == NULL) return NULL;
  r->o = *options;
  r->tok = tok;
  r->o.info.id = strdup(options->info.id);
  r->o.info.model = strdup(options->info.model);
  char **stop = calloc(options->num_stop + 1, sizeof *stop);
  int32_t *stop_ids = calloc(options->num_stop_ids + 1, sizeof *stop_ids);
  bool ok = r->o.info.id && r->o.info.model && stop && stop_ids;
  for (size_t i = 0; ok && i < options->num_stop; i++) ok = (stop[i] = strdup(options->stop[i])) != NULL;
  if (stop_ids && options->num_stop_ids) memcpy(stop_ids, options->stop_ids, options->num_stop_ids * sizeof *stop_ids);
  r->o.stop = (const char *const *)stop;
  r->o.stop_ids = stop_ids;
  if (options->kind == REPLY_CHAT) harmony_parser_init(&r->parser, tok, /*after_prompt=*/true);
  if (!ok) {
    reply_free(r);
    return NULL;
  }
  return r;
}

void reply_free(Reply *r) {
  if (r == NULL) return;
  for (size_t i = 0; r->o.stop && i < r->o.num_stop; i++) free((char *)r->o.stop[i]);
  free((void *)r->o.stop);
  free((void *)r->o.stop_ids);
  free((char *)r->o.info.id);
  free((char *)r->o.info.model);
  if (r->o.kind == REPLY_CHAT) harmony_parser_free(&r->parser);
  tokenizer_stream_free(&r->decoder);
  for (size_t i = 0; i < r->num_calls; i++) free(r->calls[i].name), free(r->calls[i].arguments);
  free(r->calls);
  buffer_free(&r->reasoning);
  buffer_free(&r->text);
  buffer_free(&r->pending);
  token_list_free(&r->ids);
  free(r);
}
