/* The harmony chat format of GPT-OSS, as openai/harmony renders and parses it.
 *
 * A message is `<|start|>{header}<|message|>{text}<|end|>`; the header is the role (a tool's
 * message: the tool's name), then ` to={recipient}`, `<|channel|>{channel}` and
 * ` {content_type}` when present. An assistant message with a recipient (a tool call) ends with
 * `<|call|>` instead of `<|end|>`. A prompt ends with `<|start|>assistant`, and the model goes on
 * with its own header (`<|channel|>analysis<|message|>...`). Header pieces and message text are
 * encoded as ordinary text, each on its own (text typed as "<|end|>" stays ordinary ids); only
 * the format's own markers are special tokens.
 *
 * Not done here: writing a tools section (serve/chat_prompt turns OpenAI's JSON-schema tools into
 * the TypeScript namespace), and dropping earlier analysis messages from a multi-turn history
 * (the caller passes only the messages it wants rendered). */
#ifndef GPTOSS_IO_HARMONY_H
#define GPTOSS_IO_HARMONY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"
#include "model/status.h"

typedef enum {
  HARMONY_ROLE_SYSTEM,
  HARMONY_ROLE_DEVELOPER,
  HARMONY_ROLE_USER,
  HARMONY_ROLE_ASSISTANT,
  HARMONY_ROLE_TOOL,
} HarmonyRole;

typedef enum { HARMONY_REASONING_LOW, HARMONY_REASONING_MEDIUM, HARMONY_REASONING_HIGH } HarmonyReasoning;

/* A message to render. Strings are NUL-terminated UTF-8; NULL leaves a header part out. */
typedef struct {
  HarmonyRole role;
  const char *name;         /* a tool message's author, e.g. "functions.get_weather" (required for tools) */
  const char *recipient;    /* " to=..." (an assistant's tool call, or a tool's answer "assistant") */
  const char *channel;      /* assistant messages: "analysis", "commentary" or "final" */
  const char *content_type; /* e.g. "<|constrain|>json"; a leading <|constrain|> is its special token */
  const char *text;
} HarmonyMessage;

/* The system message's content. NULL identity / cutoff take the defaults below; a NULL
 * current_date leaves the "Current date:" line out. */
typedef struct {
  const char *model_identity;
  const char *knowledge_cutoff;
  const char *current_date; /* "YYYY-MM-DD" */
  HarmonyReasoning reasoning;
  bool function_tools;      /* the developer message declares functions: say they go to commentary */
} HarmonySystem;

#define HARMONY_DEFAULT_IDENTITY "You are ChatGPT, a large language model trained by OpenAI."
#define HARMONY_DEFAULT_KNOWLEDGE_CUTOFF "2024-06"

/* A conversation to continue: an optional system message (rendered from `system`), an optional
 * developer message ("# Instructions\n\n" + developer_instructions, then "# Tools\n\n" + tools),
 * then `messages`, then `<|start|>assistant`. */
typedef struct {
  const HarmonySystem *system;        /* NULL: no system message */
  const char *developer_instructions; /* NULL (and no tools): no developer message */
  const HarmonyMessage *messages;
  size_t num_messages;
  const char *tools;                  /* "## functions\n\nnamespace functions {...}": the developer
                                       * message's "# Tools" section, or NULL */
} HarmonyPrompt;

/* The prompt as token ids (appended to `ids`), ready for prefill. On error `ids` may hold part of
 * it (message text that is not valid UTF-8 is refused, with its byte offset). */
Status harmony_render_prompt(const Tokenizer *tok, const HarmonyPrompt *prompt, TokenList *ids);
/* The same prompt as text, special tokens written out ("<|start|>system<|message|>..."); the
 * caller frees it. Needs no tokenizer: it is what the ids decode to. */
Status harmony_render_prompt_text(const HarmonyPrompt *prompt, char **text_out, size_t *text_bytes_out);

/* The text of a system message's content, and of a developer message's; the caller frees it. */
Status harmony_system_content(const HarmonySystem *system, char **text_out);
Status harmony_developer_content(const char *instructions, const char *tools, char **text_out);

/* Generation stops at <|return|> (the answer is done) or <|call|> (a tool call waits for its
 * result). <|end|> only ends one message; the model then starts the next one itself. */
bool harmony_is_stop_token(int32_t id);

/* ---- parsing what the model generated ---- */

typedef enum {
  HARMONY_STOP_NONE,   /* the ids ended inside the message (e.g. the token limit was reached) */
  HARMONY_STOP_END,    /* <|end|> */
  HARMONY_STOP_RETURN, /* <|return|> */
  HARMONY_STOP_CALL,   /* <|call|> */
} HarmonyStop;

/* A parsed message; strings are owned by it, NULL when absent. `text` holds the content's
 * exact bytes (not necessarily valid UTF-8 if the model emitted broken bytes), NUL-terminated. */
typedef struct {
  HarmonyRole role;
  char *name; /* tool messages: the author */
  char *recipient;
  char *channel;
  char *content_type;
  char *text;
  size_t text_bytes;
  HarmonyStop stop;
} HarmonyParsedMessage;

/* Incremental parser: feed the generated ids one by one. Fields are for reading. */
typedef enum { HARMONY_EXPECT_START, HARMONY_IN_HEADER, HARMONY_IN_CONTENT } HarmonyParserState;

typedef struct {
  const Tokenizer *tok;
  HarmonyParserState state;
  bool role_known;            /* the header's role was rendered by the prompt ("<|start|>assistant") */
  HarmonyRole known_role;
  TokenList header_ids;       /* the current header so far */
  HarmonyParsedMessage current; /* the message being read (valid in HARMONY_IN_CONTENT) */
  size_t text_capacity;
  TokenizerStream stream;     /* content bytes, held back at an unfinished UTF-8 character */
  HarmonyParsedMessage *messages; /* finished messages */
  size_t num_messages;
  size_t messages_capacity;
  size_t num_ids;             /* ids pushed so far (for messages) */
} HarmonyParser;

/* `after_prompt` true: the ids continue a prompt that ended with `<|start|>assistant`, so the
 * first header is an assistant's without its role; false: they start with `<|start|>`. */
void harmony_parser_init(HarmonyParser *parser, const Tokenizer *tok, bool after_prompt);
/* Feeds one id. *delta_out (may be NULL) receives the content text this id completed, for
 * printing as it comes (complete UTF-8 characters only; empty while in a header); it stays
 * valid until the next call. parser->current.channel tells which channel it belongs to. */
Status harmony_parser_push(HarmonyParser *parser, int32_t id, const char **delta_out, size_t *delta_bytes_out);
/* After a push that failed (output the model garbled): drops the header or message being read and
 * waits for the next `<|start|>` (with its role, since no prompt rendered it); finished messages
 * are kept. The caller skips ids up to that `<|start|>`. */
void harmony_parser_resync(HarmonyParser *parser);
/* Ends the input: a message still open is kept with stop HARMONY_STOP_NONE; an open header is
 * an error. */
Status harmony_parser_finish(HarmonyParser *parser);
/* Hands the finished messages to the caller (free with harmony_messages_free) and frees the rest. */
void harmony_parser_take_messages(HarmonyParser *parser, HarmonyParsedMessage **messages_out, size_t *num_out);
void harmony_parser_free(HarmonyParser *parser);

/* All at once: push every id, then finish. */
Status harmony_parse(const Tokenizer *tok, const int32_t *ids, size_t num_ids, bool after_prompt,
                     HarmonyParsedMessage **messages_out, size_t *num_messages_out);
void harmony_messages_free(HarmonyParsedMessage *messages, size_t num_messages);

const char *harmony_role_name(HarmonyRole role);

#endif
