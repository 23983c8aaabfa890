/* One request's answer as its client gets it, built token by token on rank 0's driver thread.
 *
 * A chat reply runs the generated ids through the harmony parser: analysis text becomes
 * reasoning_content, final text (and commentary to no one) content, and a finished commentary
 * message `to=functions.NAME` a tool call; messages to any other recipient are dropped. Output
 * the model garbles (an id other than <|start|> where a message must begin, junk in a header) is
 * skipped up to the next <|start|>, so it never becomes an error or markup in the content. A
 * completion reply is the decoded ids, the stop token left out.
 *
 * Stop strings cut the content (chat) or the text (completion) before their first occurrence;
 * when streaming, the bytes that could still begin one are held back until they cannot. A stream
 * is SSE events (`data: {chunk}`), then the finish chunk, the usage chunk when asked and
 * `data: [DONE]`; otherwise the whole response body comes at the end. */
#ifndef GPTOSS_SERVE_REPLY_H
#define GPTOSS_SERVE_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "serve/buffer.h"
#include "serve/chat_reply.h"
#include "serve/chat_request.h"

typedef enum { REPLY_CHAT, REPLY_COMPLETION } ReplyKind;

typedef struct {
  ReplyKind kind;
  bool stream;
  bool include_usage;
  ChatReplyInfo info;             /* id and model are copied */
  const char *const *stop;        /* stop strings (copied) */
  size_t num_stop;
  const int32_t *stop_ids;        /* completion: the ids that end it, left out of the text */
  size_t num_stop_ids;
  int64_t prompt_tokens;
  bool return_token_ids;          /* a non-streamed body lists every generated id */
} ReplyOptions;

typedef struct Reply Reply;

/* NULL when out of memory. `tok` must outlive the reply. */
Reply *reply_new(const Tokenizer *tok, const ReplyOptions *options);
void reply_free(Reply *reply);

/* Feeds one generated id; appends to `out` what the client gets now (stream events; nothing
 * otherwise). Returns false when a stop string has ended the reply: the caller stops the
 * sequence and calls reply_finish. Feeding after that is ignored. `*oom` is set when an
 * allocation failed (the reply is then unusable: answer 500 / end the stream). */
bool reply_push(Reply *reply, int32_t id, ByteBuffer *out, bool *oom);

/* The end: `hit_length` when the sequence stopped at max_tokens or the context's end (and no
 * stop string or stop token ended it). Appends the last events and `data: [DONE]`, or the whole
 * body. False when out of memory. */
bool reply_finish(Reply *reply, bool hit_length, ByteBuffer *out);

ChatUsage reply_usage(const Reply *reply);

#endif
