/* The harmony chat format (see harmony.h): rendering a prompt to ids or text, and parsing the
 * ids the model generates back into messages. Rendering follows openai/harmony's renderer:
 * each header piece and each content is encoded on its own as ordinary text, with the format's
 * markers as special tokens between them. Runs the same on every rank; no MPI. */
#include "io/harmony.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSTRAIN_MARKER "<|constrain|>"
#define CHANNEL_MARKER "<|channel|>"

static const char *const ROLE_NAMES[] = {"system", "developer", "user", "assistant", "tool"};

const char *harmony_role_name(HarmonyRole role) { return ROLE_NAMES[role]; }

bool harmony_is_stop_token(int32_t id) { return id == TOKEN_RETURN || id == TOKEN_CALL; }

/* ---- a growable byte string ---- */

typedef struct {
  char *bytes; /* NUL-terminated */
  size_t num_bytes;
  size_t capacity;
} Text;

static Status text_append(Text *t, const char *bytes, size_t num_bytes) {
  if (t->num_bytes + num_bytes + 1 > t->capacity) {
    size_t capacity = t->capacity ? t->capacity : 256;
    while (capacity < t->num_bytes + num_bytes + 1) capacity *= 2;
    char *grown = realloc(t->bytes, capacity);
    if (!grown) return status_error(STATUS_OUT_OF_MEMORY, "cannot grow a text buffer to %zu bytes", capacity);
    t->bytes = grown;
    t->capacity = capacity;
  }
  memcpy(t->bytes + t->num_bytes, bytes, num_bytes);
  t->num_bytes += num_bytes;
  t->bytes[t->num_bytes] = '\0';
  return STATUS_OK;
}

static Status text_append_str(Text *t, const char *s) { return text_append(t, s, strlen(s)); }

/* ---- system and developer content ---- */

Status harmony_system_content(const HarmonySystem *system, char **text_out) {
  static const char *const EFFORTS[] = {"low", "medium", "high"};
  const char *identity = system->model_identity ? system->model_identity : HARMONY_DEFAULT_IDENTITY;
  const char *cutoff = system->knowledge_cutoff ? system->knowledge_cutoff : HARMONY_DEFAULT_KNOWLEDGE_CUTOFF;
  Text t = {0};
  Status status = text_append_str(&t, identity);
  if (status == STATUS_OK) status = text_append_str(&t, "\nKnowledge cutoff: ");
  if (status == STATUS_OK) status = text_append_str(&t, cutoff);
  if (status == STATUS_OK && system->current_date) status = text_append_str(&t, "\nCurrent date: ");
  if (status == STATUS_OK && system->current_date) status = text_append_str(&t, system->current_date);
  if (status == STATUS_OK) status = text_append_str(&t, "\n\nReasoning: ");
  if (status == STATUS_OK) status = text_append_str(&t, EFFORTS[system->reasoning]);
  if (status == STATUS_OK) {
    status = text_append_str(&t, "\n\n# Valid channels: analysis, commentary, final. "
                                 "Channel must be included for every message.");
  }
  if (status == STATUS_OK && system->function_tools) {
    status = text_append_str(&t, "\nCalls to these tools must go to the commentary channel: 'functions'.");
  }
  if (status != STATUS_OK) free(t.bytes);
  *text_out = status == STATUS_OK ? t.bytes : NULL;
  return status;
}

Status harmony_developer_content(const char *instructions, const char *tools, char **text_out) {
  Text t = {0};
  Status status = text_append_str(&t, instructions ? "# Instructions\n\n" : "");
  if (status == STATUS_OK && instructions) status = text_append_str(&t, instructions);
  if (status == STATUS_OK && tools) status = text_append_str(&t, instructions ? "\n\n# Tools\n\n" : "# Tools\n\n");
  if (status == STATUS_OK && tools) status = text_append_str(&t, tools);
  if (status != STATUS_OK) free(t.bytes);
  *text_out = status == STATUS_OK ? t.bytes : NULL;
  return status;
}

/* ---- rendering ---- */

/* Renders to ids (tok set) or to text (tok NULL): the one walk over a prompt serves both. */
typedef struct {
  const Tokenizer *tok;
  TokenList *ids;
  Text text;
} Renderer;

static Status render_special(Renderer *r, int32_t id) {
  return r->tok ? token_list_push(r->ids, id) : text_append_str(&r->text, tokenizer_special_name(id));
}

/* `prefix` and `s` together, encoded as one ordinary string. */
static Status render_text(Renderer *r, const char *prefix, const char *s) {
  if (!r->tok) {
    Status status = text_append_str(&r->text, prefix);
    return status == STATUS_OK ? text_append_str(&r->text, s) : status;
  }
  if (!*prefix) return tokenizer_encode_append(r->tok, s, strlen(s), /*allow_special=*/false, r->ids);
  Text joined = {0};
  Status status = text_append_str(&joined, prefix);
  if (status == STATUS_OK) status = text_append_str(&joined, s);
  if (status == STATUS_OK) {
    status = tokenizer_encode_append(r->tok, joined.bytes, joined.num_bytes, /*allow_special=*/false, r->ids);
  }
  free(joined.bytes);
  return status;
}

static Status render_message(Renderer *r, const HarmonyMessage *m) {
  if (m->role == HARMONY_ROLE_TOOL && !m->name) {
    return status_error(STATUS_INVALID_ARGUMENT, "a tool message needs the tool's name as its author");
  }
  Status status = render_special(r, TOKEN_START);
  if (status == STATUS_OK) status = render_text(r, "", m->role == HARMONY_ROLE_TOOL ? m->name : ROLE_NAMES[m->role]);
  if (status == STATUS_OK && m->recipient && strcmp(m->recipient, "all") != 0) {
    status = render_text(r, " to=", m->recipient);
  }
  if (status == STATUS_OK && m->channel) {
    status = render_special(r, TOKEN_CHANNEL);
    if (status == STATUS_OK) status = render_text(r, "", m->channel);
  }
  if (status == STATUS_OK && m->content_type) {
    const size_t num_marker = strlen(CONSTRAIN_MARKER);
    if (!strncmp(m->content_type, CONSTRAIN_MARKER, num_marker)) {
      /* the marker is a special token between the space and the format name */
      status = render_text(r, "", " ");
      if (status == STATUS_OK) status = render_special(r, TOKEN_CONSTRAIN);
      if (status == STATUS_OK) status = render_text(r, "", m->content_type + num_marker);
    } else {
      status = render_text(r, " ", m->content_type);
    }
  }
  if (status == STATUS_OK) status = render_special(r, TOKEN_MESSAGE);
  if (status == STATUS_OK) status = render_text(r, "", m->text ? m->text : "");
  if (status == STATUS_OK) {
    const bool tool_call = m->role == HARMONY_ROLE_ASSISTANT && m->recipient;
    status = render_special(r, tool_call ? TOKEN_CALL : TOKEN_END);
  }
  return status;
}

static Status render_prompt(Renderer *r, const HarmonyPrompt *prompt) {
  char *content = NULL;
  Status status = STATUS_OK;
  if (prompt->system) {
    status = harmony_system_content(prompt->system, &content);
    if (status == STATUS_OK) status = render_message(r, &(HarmonyMessage){.role = HARMONY_ROLE_SYSTEM, .text = content});
    free(content);
  }
  if (status == STATUS_OK && (prompt->developer_instructions || prompt->tools)) {
    status = harmony_developer_content(prompt->developer_instructions, prompt->tools, &content);
    if (status == STATUS_OK) {
      status = render_message(r, &(HarmonyMessage){.role = HARMONY_ROLE_DEVELOPER, .text = content});
    }
    free(content);
  }
  for (size_t i = 0; status == STATUS_OK && i < prompt->num_messages; i++) {
    status = render_message(r, &prompt->messages[i]);
  }
  if (status == STATUS_OK) status = render_special(r, TOKEN_START);
  if (status == STATUS_OK) status = render_text(r, "", ROLE_NAMES[HARMONY_ROLE_ASSISTANT]);
  return status;
}

Status harmony_render_prompt(const Tokenizer *tok, const HarmonyPrompt *prompt, TokenList *ids) {
  Renderer r = {.tok = tok, .ids = ids};
  return render_prompt(&r, prompt);
}

Status harmony_render_prompt_text(const HarmonyPrompt *prompt, char **text_out, size_t *text_bytes_out) {
  Renderer r = {0};
  Status status = render_prompt(&r, prompt);
  if (status != STATUS_OK) free(r.text.bytes);
  *text_out = status == STATUS_OK ? r.text.bytes : NULL;
  *text_bytes_out = status == STATUS_OK ? r.text.num_bytes : 0;
  return status;
}

/* ---- parsing a header ---- */

static bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static bool role_from_name(const char *name, HarmonyRole *role_out) {
  for (size_t i = 0; i < sizeof ROLE_NAMES / sizeof ROLE_NAMES[0]; i++) {
    if (!strcmp(name, ROLE_NAMES[i])) {
      *role_out = (HarmonyRole)i;
      return true;
    }
  }
  return false;
}

/* Cuts "<|channel|>VALUE" out of `header` (VALUE ends at whitespace or '<'). */
static Status take_channel(char *header, char **channel_out) {
  char *marker = strstr(header, CHANNEL_MARKER);
  if (!marker) return STATUS_OK;
  char *value = marker + strlen(CHANNEL_MARKER), *end = value;
  while (*end && !is_ascii_space(*end) && *end != '<') end++;
  if (end == value) {
    return status_error(STATUS_BAD_FORMAT, "message header \"%s\" has <|channel|> but no channel", header);
  }
  *channel_out = strndup(value, (size_t)(end - value));
  if (!*channel_out) return status_error(STATUS_OUT_OF_MEMORY, "cannot copy a channel name");
  memmove(marker, end, strlen(end) + 1);
  return STATUS_OK;
}

/* Splits on ASCII whitespace, with a break before every <|constrain|> so that "to=x<|constrain|>json"
 * gives two parts. Writes the parts (pointing into `buffer`, at least 2 * strlen(header) + 1 bytes). */
static size_t split_header(const char *header, char *buffer, char **parts) {
  char *out = buffer;
  for (const char *p = header; *p; p++) {
    if (!strncmp(p, CONSTRAIN_MARKER, strlen(CONSTRAIN_MARKER))) *out++ = ' ';
    *out++ = *p;
  }
  *out = '\0';
  size_t num_parts = 0;
  for (char *p = buffer; *p;) {
    while (*p && is_ascii_space(*p)) *p++ = '\0';
    if (!*p) break;
    parts[num_parts++] = p;
    while (*p && !is_ascii_space(*p)) p++;
  }
  return num_parts;
}

static Status dup_field(char **field, const char *value) {
  *field = strdup(value);
  return *field ? STATUS_OK : status_error(STATUS_OUT_OF_MEMORY, "cannot copy a header field");
}

/* The header grammar of openai/harmony's parser: channel cut out first; then the role (unless
 * the prompt gave it; an unknown first word followed by more is a tool's name); then the last
 * part is a recipient ("to=X", or a lone unconstrained word) or a content type, with at most
 * one recipient before it. Anything left over is an error. */
static Status parse_header(const char *header_text, bool role_known, HarmonyRole known_role, HarmonyParsedMessage *m) {
  const size_t num_bytes = strlen(header_text);
  char *header = strdup(header_text), *buffer = malloc(2 * num_bytes + 1);
  char **parts = malloc((num_bytes + 1) * sizeof *parts);
  Status status = header && buffer && parts ? STATUS_OK
                                            : status_error(STATUS_OUT_OF_MEMORY, "cannot parse a message header");
  if (status == STATUS_OK) status = take_channel(header, &m->channel);
  size_t num_parts = status == STATUS_OK ? split_header(header, buffer, parts) : 0;
  size_t first = 0;
  if (status == STATUS_OK && role_known) {
    m->role = known_role;
  } else if (status == STATUS_OK && num_parts == 0) {
    status = status_error(STATUS_BAD_FORMAT, "message header \"%s\" has no role", header_text);
  } else if (status == STATUS_OK && !role_from_name(parts[0], &m->role)) {
    if (num_parts == 1 && strncmp(parts[0], "to=", 3) != 0) {
      status = status_error(STATUS_BAD_FORMAT, "message header \"%s\": unknown role %s", header_text, parts[0]);
    } else {
      m->role = HARMONY_ROLE_TOOL;
      status = dup_field(&m->name, parts[first++]);
    }
  } else if (status == STATUS_OK && m->role == HARMONY_ROLE_TOOL) {
    status = dup_field(&m->name, parts[0]);
  }
  if (status == STATUS_OK && first < num_parts && !strcmp(parts[first], ROLE_NAMES[m->role])) first++;
  if (status == STATUS_OK && first < num_parts) {
    const char *last = parts[--num_parts];
    const bool constrained = !strncmp(last, CONSTRAIN_MARKER, strlen(CONSTRAIN_MARKER));
    if (!strncmp(last, "to=", 3)) {
      status = dup_field(&m->recipient, last + 3);
    } else if (num_parts == first && !constrained) {
      status = dup_field(&m->recipient, last);
    } else {
      status = dup_field(&m->content_type, last);
      if (status == STATUS_OK && num_parts > first) {
        const char *recipient = parts[--num_parts];
        status = dup_field(&m->recipient, strncmp(recipient, "to=", 3) ? recipient : recipient + 3);
      }
    }
    if (status == STATUS_OK && num_parts > first) {
      status = status_error(STATUS_BAD_FORMAT, "message header \"%s\": unexpected \"%s\"", header_text, parts[first]);
    }
  }
  free(header);
  free(buffer);
  free(parts);
  return status;
}

/* ---- the incremental parser ---- */

static void message_free(HarmonyParsedMessage *m) {
  free(m->name);
  free(m->recipient);
  free(m->channel);
  free(m->content_type);
  free(m->text);
  *m = (HarmonyParsedMessage){0};
}

void harmony_messages_free(HarmonyParsedMessage *messages, size_t num_messages) {
  for (size_t i = 0; i < num_messages; i++) message_free(&messages[i]);
  free(messages);
}

void harmony_parser_init(HarmonyParser *parser, const Tokenizer *tok, bool after_prompt) {
  *parser = (HarmonyParser){.tok = tok,
                            .state = after_prompt ? HARMONY_IN_HEADER : HARMONY_EXPECT_START,
                            .role_known = after_prompt,
                            .known_role = HARMONY_ROLE_ASSISTANT};
}

static Status append_content(HarmonyParser *p, const char *bytes, size_t num_bytes) {
  Text t = {.bytes = p->current.text, .num_bytes = p->current.text_bytes, .capacity = p->text_capacity};
  Status status = text_append(&t, bytes, num_bytes);
  p->current.text = t.bytes;
  p->current.text_bytes = t.num_bytes;
  p->text_capacity = t.capacity;
  return status;
}

static Status begin_content(HarmonyParser *p) {
  char *header = NULL;
  size_t num_bytes = 0;
  Status status = tokenizer_decode(p->tok, p->header_ids.ids, p->header_ids.num_ids, &header, &num_bytes);
  if (status == STATUS_OK) status = parse_header(header, p->role_known, p->known_role, &p->current);
  if (status == STATUS_OK) status = append_content(p, "", 0); /* text is never NULL, even when empty */
  free(header);
  p->header_ids.num_ids = 0;
  p->role_known = false;
  p->state = HARMONY_IN_CONTENT;
  return status;
}

static Status end_message(HarmonyParser *p, HarmonyStop stop) {
  const char *held = NULL;
  size_t num_held = 0;
  tokenizer_stream_flush(&p->stream, &held, &num_held);
  Status status = append_content(p, held, num_held);
  if (status == STATUS_OK && p->num_messages == p->messages_capacity) {
    const size_t capacity = p->messages_capacity ? 2 * p->messages_capacity : 8;
    HarmonyParsedMessage *grown = realloc(p->messages, capacity * sizeof *grown);
    if (!grown) return status_error(STATUS_OUT_OF_MEMORY, "cannot keep %zu parsed messages", capacity);
    p->messages = grown;
    p->messages_capacity = capacity;
  }
  if (status != STATUS_OK) return status;
  p->current.stop = stop;
  p->messages[p->num_messages++] = p->current;
  p->current = (HarmonyParsedMessage){0};
  p->text_capacity = 0;
  p->state = HARMONY_EXPECT_START;
  return STATUS_OK;
}

static HarmonyStop stop_of(int32_t id) {
  switch (id) {
    case TOKEN_END: return HARMONY_STOP_END;
    case TOKEN_RETURN: return HARMONY_STOP_RETURN;
    case TOKEN_CALL: return HARMONY_STOP_CALL;
    default: return HARMONY_STOP_NONE;
  }
}

Status harmony_parser_push(HarmonyParser *p, int32_t id, const char **delta_out, size_t *delta_bytes_out) {
  const char *delta = "";
  size_t num_delta = 0;
  const size_t index = p->num_ids++;
  Status status = STATUS_OK;
  switch (p->state) {
    case HARMONY_EXPECT_START:
      if (id != TOKEN_START) {
        status = status_error(STATUS_BAD_FORMAT, "token %zu: expected <|start|> (%d) to begin a message, got id %d",
                              index, TOKEN_START, (int)id);
      }
      p->state = HARMONY_IN_HEADER;
      break;
    case HARMONY_IN_HEADER:
      if (id == TOKEN_MESSAGE) {
        status = begin_content(p);
      } else if (stop_of(id) != HARMONY_STOP_NONE) {
        status = status_error(STATUS_BAD_FORMAT, "token %zu: message header ends with id %d before <|message|>",
                              index, (int)id);
      } else {
        status = token_list_push(&p->header_ids, id);
      }
      break;
    case HARMONY_IN_CONTENT:
      if (stop_of(id) != HARMONY_STOP_NONE) {
        status = end_message(p, stop_of(id));
      } else {
        status = tokenizer_stream_push(p->tok, &p->stream, id, &delta, &num_delta);
        if (status == STATUS_OK) status = append_content(p, delta, num_delta);
      }
      break;
  }
  if (delta_out) *delta_out = status == STATUS_OK ? delta : "";
  if (delta_bytes_out) *delta_bytes_out = status == STATUS_OK ? num_delta : 0;
  return status;
}

void harmony_parser_resync(HarmonyParser *p) {
  message_free(&p->current);
  p->current = (HarmonyParsedMessage){0};
  p->text_capacity = 0;
  p->header_ids.num_ids = 0;
  tokenizer_stream_free(&p->stream);
  p->stream = (TokenizerStream){0};
  p->role_known = false;
  p->state = HARMONY_EXPECT_START;
}

Status harmony_parser_finish(HarmonyParser *p) {
  if (p->state == HARMONY_IN_HEADER) {
    return status_error(STATUS_BAD_FORMAT, "the ids end inside a message header (%zu header tokens, no <|message|>)",
                        p->header_ids.num_ids);
  }
  return p->state == HARMONY_IN_CONTENT ? end_message(p, HARMONY_STOP_NONE) : STATUS_OK;
}

void harmony_parser_take_messages(HarmonyParser *p, HarmonyParsedMessage **messages_out, size_t *num_out) {
  *messages_out = p->messages;
  *num_out = p->num_messages;
  p->messages = NULL;
  p->num_messages = p->messages_capacity = 0;
  harmony_parser_free(p);
}

void harmony_parser_free(HarmonyParser *p) {
  harmony_messages_free(p->messages, p->num_messages);
  message_free(&p->current);
  token_list_free(&p->header_ids);
  tokenizer_stream_free(&p->stream);
  *p = (HarmonyParser){0};
}

Status harmony_parse(const Tokenizer *tok, const int32_t *ids, size_t num_ids, bool after_prompt,
                     HarmonyParsedMessage **messages_out, size_t *num_messages_out) {
  *messages_out = NULL;
  *num_messages_out = 0;
  HarmonyParser parser;
  harmony_parser_init(&parser, tok, after_prompt);
  Status status = STATUS_OK;
  for (size_t i = 0; status == STATUS_OK && i < num_ids; i++) status = harmony_parser_push(&parser, ids[i], NULL, NULL);
  if (status == STATUS_OK) status = harmony_parser_finish(&parser);
  if (status == STATUS_OK) {
    harmony_parser_take_messages(&parser, messages_out, num_messages_out);
  } else {
    harmony_parser_free(&parser);
  }
  return status;
}
