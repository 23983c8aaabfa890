/* gptoss generate and gptoss chat: rank 0 turns text into harmony tokens, drives the ranks one
 * token at a time, samples, and streams the answer; the other ranks serve (dist/engine.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/harmony.h"
#include "launch/commands.h"
#include "launch/generate_batch.h"
#include "launch/run.h"
#include "launch/text.h"
#include "model/sampler.h"

/* Set by SIGINT during a chat answer: stops the answer, not the job. */
static volatile sig_atomic_t g_interrupted = 0;
static void on_interrupt(int signo) {
  (void)signo;
  g_interrupted = 1;
}

/* ---------- choosing the next token ---------- */

typedef struct {
  Engine *engine;
  Sampler sampler;
  float temperature;
  float top_p;
} Decoder;

/* --temperature and --top-p were checked with the other options (GENERATION_OPTIONS). */
static void decoder_init(Decoder *d, Engine *engine, const RunOptions *o) {
  d->engine = engine;
  d->temperature = (float)o->temperature;
  d->top_p = (float)o->top_p;
  sampler_init(&d->sampler, (uint64_t)o->seed);
}

/* Feeds `feed` and picks the token that follows: greedy agrees on the argmax across ranks;
 * sampling moves only per-shard summaries (dist/engine.h). */
static Status decoder_next(Decoder *d, const int32_t *feed, int64_t n, int32_t *next) {
  if (d->temperature == 0.0f) return engine_next_greedy(d->engine, feed, n, next);
  return engine_next_sample(d->engine, feed, n, d->temperature, d->top_p, sampler_uniform(&d->sampler), next);
}

/* ---------- showing what the model says ---------- */

typedef enum { SHOW_IDS, SHOW_PLAIN_TEXT, SHOW_HARMONY } ShowMode;

typedef struct {
  ShowMode mode;
  bool show_reasoning;
  const Tokenizer *tok;
  HarmonyParser parser;     /* SHOW_HARMONY */
  TokenizerStream stream;   /* SHOW_PLAIN_TEXT */
  size_t shown_message;     /* index of the message whose text is being printed, or SIZE_MAX */
  int64_t count;
  TokenList ids;            /* SHOW_IDS: what was shown */
} Printer;

static void printer_init(Printer *p, ShowMode mode, const Tokenizer *tok, bool show_reasoning) {
  memset(p, 0, sizeof *p);
  p->mode = mode;
  p->tok = tok;
  p->show_reasoning = show_reasoning;
  p->shown_message = (size_t)-1;
  if (mode == SHOW_HARMONY) harmony_parser_init(&p->parser, tok, /*after_prompt=*/true);
}

/* Harmony: the final channel is the answer; with --show-reasoning the other channels are shown
 * too, each message introduced by its channel's name in brackets. */
static void printer_show_harmony(Printer *p, int32_t id) {
  const char *delta = NULL;
  size_t n = 0;
  if (harmony_parser_push(&p->parser, id, &delta, &n) != STATUS_OK || n == 0) return;
  const char *channel = p->parser.current.channel ? p->parser.current.channel : "final";
  const bool answer = !strcmp(channel, "final");
  if (!answer && !p->show_reasoning) return;
  if (p->show_reasoning && p->shown_message != p->parser.num_messages) {
    printf("%s[%s] ", p->shown_message == (size_t)-1 ? "" : "\n", channel);
    p->shown_message = p->parser.num_messages;
  }
  fwrite(delta, 1, n, stdout);
}

static void printer_token(Printer *p, int32_t id) {
  if (p->mode == SHOW_IDS) {
    printf(p->count == 0 ? "%d" : " %d", id);
    token_list_push(&p->ids, id);
  } else if (p->mode == SHOW_PLAIN_TEXT) {
    const char *text = NULL;
    size_t n = 0;
    if (tokenizer_stream_push(p->tok, &p->stream, id, &text, &n) == STATUS_OK) fwrite(text, 1, n, stdout);
  } else {
    printer_show_harmony(p, id);
  }
  p->count++;
  fflush(stdout);
}

/* Ends the output; in harmony mode hands back the parsed messages (caller frees). */
static void printer_finish(Printer *p, HarmonyParsedMessage **messages, size_t *num_messages) {
  if (p->mode == SHOW_PLAIN_TEXT) {
    const char *text = NULL;
    size_t n = 0;
    tokenizer_stream_flush(&p->stream, &text, &n);
    fwrite(text, 1, n, stdout);
    tokenizer_stream_free(&p->stream);
  }
  if (p->mode == SHOW_HARMONY) {
    /* Output cut inside a header (the token limit, or a model that never opens a message) is
     * something to say, not an error. */
    status_set_silent(1);
    const bool cut = harmony_parser_finish(&p->parser) != STATUS_OK;
    status_set_silent(0);
    if (cut) status_note("the reply ended inside a message header; --ids shows the raw tokens");
    HarmonyParsedMessage *m = NULL;
    size_t k = 0;
    harmony_parser_take_messages(&p->parser, &m, &k);
    if (messages) {
      *messages = m;
      *num_messages = k;
    } else {
      harmony_messages_free(m, k);
    }
  }
  if (p->count > 0) putchar('\n');
  fflush(stdout);
}

/* ---------- one reply ---------- */

typedef enum { REPLY_DONE, REPLY_LIMIT, REPLY_CONTEXT_FULL, REPLY_INTERRUPTED } ReplyEnd;

/* Feeds the prompt and generates until a stop token (harmony's <|return|>/<|call|> when
 * `harmony_stops`, and the model's eos_token_id always), max_tokens, a full context or Ctrl-C. */
static Status generate_reply(Decoder *d, Printer *p, const int32_t *prompt, int64_t n, int64_t max_tokens,
                             bool harmony_stops, ReplyEnd *end) {
  Engine *e = d->engine;
  const int32_t *feed = prompt;
  int64_t feed_len = n;
  int32_t next = 0;
  *end = REPLY_LIMIT;
  for (int64_t generated = 0; generated < max_tokens; generated++) {
    if (g_interrupted) {
      *end = REPLY_INTERRUPTED;
      break;
    }
    if (engine_position(e) + feed_len > e->transformer.context_length) {
      *end = REPLY_CONTEXT_FULL;
      break;
    }
    Status st = decoder_next(d, feed, feed_len, &next);
    if (st != STATUS_OK) return st;
    printer_token(p, next);
    if (config_is_eos(&e->config, next) || (harmony_stops && harmony_is_stop_token(next))) {
      *end = REPLY_DONE;
      break;
    }
    feed = &next;
    feed_len = 1;
  }
  return STATUS_OK;
}

/* A reply the context cut short did not do what was asked: an error, so the exit status says so. */
static Status note_reply_end(ReplyEnd end, const Engine *e, const Printer *p, int64_t max_tokens) {
  if (end == REPLY_CONTEXT_FULL) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "the context is full (%lld tokens) after %lld of --max-tokens %lld new tokens; raise --context "
                        "or start over",
                        (long long)e->transformer.context_length, (long long)p->count, (long long)max_tokens);
  }
  if (end == REPLY_INTERRUPTED) status_note("stopped");
  return STATUS_OK;
}

/* Refuses a prompt the context cannot hold before any of it is fed. */
static Status check_prompt_fits(const Engine *e, int64_t num_prompt_tokens) {
  if (num_prompt_tokens == 0) return status_error(STATUS_INVALID_ARGUMENT, "the prompt is empty");
  if (num_prompt_tokens <= e->transformer.context_length) return STATUS_OK;
  return status_error(STATUS_INVALID_ARGUMENT,
                      "the prompt (%lld tokens) does not fit the context (%lld tokens): shorten it or raise --context "
                      "(at most max_position_embeddings = %lld)",
                      (long long)num_prompt_tokens, (long long)e->transformer.context_length,
                      (long long)e->config.max_position_embeddings);
}

static Status parse_reasoning(const char *text, HarmonyReasoning *out) {
  if (!text || !strcmp(text, "medium")) *out = HARMONY_REASONING_MEDIUM;
  else if (!strcmp(text, "low")) *out = HARMONY_REASONING_LOW;
  else if (!strcmp(text, "high")) *out = HARMONY_REASONING_HIGH;
  else return status_error(STATUS_INVALID_ARGUMENT, "--reasoning must be low, medium or high, not '%s'", text);
  return STATUS_OK;
}

/* ---------- gptoss generate ---------- */

/* The prompt as ids: --tokens as given, --raw text as plain text, otherwise a harmony
 * conversation (system, optional developer instructions, the user's message). */
Status generate_build_prompt(const RunOptions *o, const Tokenizer *tok, TokenList *ids) {
  if (o->raw) return tokenizer_encode_append(tok, o->prompt, strlen(o->prompt), false, ids);
  HarmonySystem system = {.current_date = o->date};
  Status st = parse_reasoning(o->reasoning, &system.reasoning);
  if (st != STATUS_OK) return st;
  if (o->system) system.model_identity = o->system;
  HarmonyMessage user = {.role = HARMONY_ROLE_USER, .text = o->prompt};
  HarmonyPrompt prompt = {&system, o->developer, &user, 1};
  return harmony_render_prompt(tok, &prompt, ids);
}

static int drive_generate(Engine *e, const RunOptions *o, const int32_t *tokens, int64_t n) {
  if (o->batch_path) return generate_batch(e, o);
  Tokenizer *tok = NULL;
  TokenList prompt = {0};
  Decoder decoder;
  decoder_init(&decoder, e, o);
  const bool text_out = !o->ids;
  Status st = STATUS_OK;
  if (o->prompt || text_out) st = text_load_tokenizer(e, o->model, &tok);
  if (st == STATUS_OK && o->prompt) st = generate_build_prompt(o, tok, &prompt);
  if (st == STATUS_OK && !o->prompt) {
    for (int64_t i = 0; i < n && st == STATUS_OK; i++) st = token_list_push(&prompt, tokens[i]);
  }
  const bool harmony = o->prompt && !o->raw;
  ShowMode mode = !text_out ? SHOW_IDS : harmony ? SHOW_HARMONY : SHOW_PLAIN_TEXT;
  ReplyEnd end = REPLY_DONE;
  if (st == STATUS_OK) st = check_prompt_fits(e, (int64_t)prompt.num_ids);
  if (st == STATUS_OK) st = engine_reset(e);
  if (st == STATUS_OK) {
    Printer printer;
    printer_init(&printer, mode, tok, o->show_reasoning);
    const double start = phase_clock();
    st = generate_reply(&decoder, &printer, prompt.ids, (int64_t)prompt.num_ids, o->max_tokens, harmony, &end);
    const double seconds = phase_clock() - start;
    printer_finish(&printer, NULL, NULL);
    if (st == STATUS_OK && printer.count > 0) {
      status_note("%lld tokens in %.2f s (%.1f tokens/s, including the %zu-token prompt) on %d rank(s)",
                  (long long)printer.count, seconds, (double)printer.count / seconds, prompt.num_ids,
                  e->rank.num_ranks);
    }
    token_list_free(&printer.ids);
    if (st == STATUS_OK) st = note_reply_end(end, e, &printer, o->max_tokens);
  }
  token_list_free(&prompt);
  tokenizer_free(tok);
  return st == STATUS_OK ? 0 : 1;
}

/* Temperatures past 100 are indistinguishable from uniform noise. */
#define GENERATION_OPTIONS(o)                                                                          \
  {"--max-tokens", OPT_INT, &(o).max_tokens, "stop after this many new tokens",                       \
   OPT_RANGE(1, ARGS_MAX_TOKEN_COUNT)},                                                                \
  {"--temperature", OPT_DOUBLE, &(o).temperature, "0 = greedy (ties: lowest id); default 1", OPT_RANGE(0, 100)}, \
  {"--top-p", OPT_DOUBLE, &(o).top_p, "nucleus sampling mass (default 1)", OPT_ABOVE(0, 1)},          \
  {"--seed", OPT_INT, &(o).seed, "sampling seed, any whole number (default 0): same seed, same tokens, any rank count"}, \
  {"--system", OPT_STRING, &(o).system, "the system message's model identity line", .allow_empty = true}, \
  {"--developer", OPT_STRING, &(o).developer, "developer instructions (rendered under # Instructions)",  \
   .allow_empty = true},                                                                               \
  {"--reasoning", OPT_STRING, &(o).reasoning, "low | medium | high (default medium)", .choices = "low|medium|high"}, \
  {"--date", OPT_DATE, &(o).date, "current date for the system message, YYYY-MM-DD"},                \
  {"--show-reasoning", OPT_FLAG, &(o).show_reasoning, "also stream the analysis channel, marked"}

int cmd_generate(int argc, char **argv) {
  RunOptions o = {.max_tokens = 256, .temperature = 1.0, .top_p = 1.0, .needs_input = true};
  const Option options[] = {
      RUN_COMMON_OPTIONS(o),
      {"--prompt", OPT_STRING, &o.prompt, "the user's message (harmony chat format unless --raw)"},
      {"--raw", OPT_FLAG, &o.raw, "send --prompt as plain text, without the chat format"},
      {"--tokens", OPT_STRING, &o.tokens_text, "input token ids instead of text, e.g. 1,2,3"},
      {"--ids", OPT_FLAG, &o.ids, "print the generated token ids on one line instead of text"},
      {"--batch", OPT_STRING, &o.batch_path,
       "JSON Lines of requests ({\"prompt\": TEXT} or {\"tokens\": [ids]}, optional max_tokens, temperature, top_p, "
       "seed, raw); one JSON result per line on stdout, in input order"},
      {"--parallel", OPT_INT, &o.parallel,
       "sequences decoded at once with --batch (default 1); KV memory is allocated for --parallel x --context",
       OPT_RANGE(1, 1000000)},
      GENERATION_OPTIONS(o),
  };
  return run_model_command(argc, argv, options, (int)(sizeof options / sizeof options[0]),
                           "gptoss generate --model MODEL (--prompt TEXT | --tokens 1,2,3 | --batch FILE [--parallel P]) [--ids] "
                           "[--max-tokens N] [--temperature T]",
                           &o, drive_generate);
}

/* ---------- gptoss chat ---------- */

/* Renders messages without the trailing `<|start|>assistant` (the chat adds that itself). */
static Status render_messages(const Tokenizer *tok, const HarmonySystem *system, const char *developer,
                              const HarmonyMessage *messages, size_t n, const TokenList *suffix, TokenList *out) {
  HarmonyPrompt prompt = {system, developer, messages, n};
  Status st = harmony_render_prompt(tok, &prompt, out);
  if (st == STATUS_OK) out->num_ids -= suffix->num_ids;
  return st;
}

static char *final_text(const HarmonyParsedMessage *messages, size_t n) {
  for (size_t i = n; i-- > 0;) {
    if (messages[i].channel && !strcmp(messages[i].channel, "final")) return strdup(messages[i].text);
  }
  return NULL;
}

/* One turn: feed what the cache lacks (the last answer as harmony keeps it, the user's message),
 * mark, answer, then roll back to the mark so the answer's reasoning leaves the cache — the next
 * turn re-feeds only the final answer, as harmony prescribes for past turns. */
static Status chat_turn(Decoder *d, const RunOptions *o, const Tokenizer *tok, const TokenList *suffix,
                        const HarmonySystem *system, const char *user_text, char **last_answer, bool first) {
  Engine *e = d->engine;
  HarmonyMessage messages[2];
  size_t n = 0;
  if (*last_answer) {
    messages[n++] = (HarmonyMessage){.role = HARMONY_ROLE_ASSISTANT, .channel = "final", .text = *last_answer};
  }
  messages[n++] = (HarmonyMessage){.role = HARMONY_ROLE_USER, .text = user_text};
  TokenList feed = {0};
  Status st = render_messages(tok, first ? system : NULL, first ? o->developer : NULL, messages, n, suffix, &feed);
  if (st == STATUS_OK && engine_position(e) + (int64_t)(feed.num_ids + suffix->num_ids) >= e->transformer.context_length) {
    st = status_error(STATUS_INVALID_ARGUMENT, "the context is full (%lld tokens): start a new chat (Ctrl-D)",
                      (long long)e->transformer.context_length);
  }
  if (st == STATUS_OK) st = engine_feed(e, feed.ids, (int64_t)feed.num_ids);
  token_list_free(&feed);
  if (st == STATUS_OK) st = engine_mark(e);
  if (st != STATUS_OK) return st;
  Printer printer;
  printer_init(&printer, o->ids ? SHOW_IDS : SHOW_HARMONY, tok, o->show_reasoning);
  ReplyEnd end = REPLY_DONE;
  g_interrupted = 0;
  st = generate_reply(d, &printer, suffix->ids, (int64_t)suffix->num_ids, o->max_tokens, true, &end);
  HarmonyParsedMessage *parsed = NULL;
  size_t num_parsed = 0;
  printer_finish(&printer, &parsed, &num_parsed);
  if (o->ids) {
    /* The printer showed ids; parse them now to keep the final answer. */
    status_set_silent(1);
    harmony_parse(tok, printer.ids.ids, printer.ids.num_ids, true, &parsed, &num_parsed);
    status_set_silent(0);
    token_list_free(&printer.ids);
  }
  if (st == STATUS_OK) st = note_reply_end(end, e, &printer, o->max_tokens);
  free(*last_answer);
  *last_answer = final_text(parsed, num_parsed);
  harmony_messages_free(parsed, num_parsed);
  if (st == STATUS_OK) st = engine_rollback(e);
  return st;
}

static int drive_chat(Engine *e, const RunOptions *o, const int32_t *tokens, int64_t n) {
  (void)tokens;
  (void)n;
  Tokenizer *tok = NULL;
  Decoder decoder;
  TokenList suffix = {0};
  HarmonySystem system = {.current_date = o->date};
  if (o->system) system.model_identity = o->system;
  decoder_init(&decoder, e, o);
  Status st = parse_reasoning(o->reasoning, &system.reasoning);
  if (st == STATUS_OK) st = text_load_tokenizer(e, o->model, &tok);
  /* The ids of `<|start|>assistant`: what an empty prompt renders to. */
  const HarmonyPrompt empty = {NULL, NULL, NULL, 0};
  if (st == STATUS_OK) st = harmony_render_prompt(tok, &empty, &suffix);
  if (st == STATUS_OK) st = engine_reset(e);
  /* mpirun ends the job on SIGINT but forwards SIGUSR1 to every rank: both stop an answer. */
  struct sigaction sa = {.sa_handler = on_interrupt};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  const bool interactive = isatty(STDIN_FILENO);
  /* Printed only once the handlers are in place: a script may signal as soon as it reads this. */
  if (interactive && st == STATUS_OK) {
    fprintf(stderr, "gptoss chat: type a message and press Enter; Ctrl-C stops an answer, Ctrl-D ends.\n");
  } else if (st == STATUS_OK) {
    status_note("chat ready: one message per line on standard input; SIGINT or SIGUSR1 stops an answer");
  }
  char *line = NULL, *last_answer = NULL;
  size_t capacity = 0;
  bool first = true;
  while (st == STATUS_OK) {
    if (interactive) fputs("> ", stdout), fflush(stdout);
    g_interrupted = 0;
    const ssize_t len = getline(&line, &capacity, stdin);
    if (len < 0) {
      if (g_interrupted) {
        clearerr(stdin);
        continue;
      }
      break; /* Ctrl-D / end of input: a clean stop on every rank */
    }
    if (len > 0 && line[len - 1] == '\n') line[len - 1] = '\0';
    if (line[0] == '\0') continue;
    st = chat_turn(&decoder, o, tok, &suffix, &system, line, &last_answer, first);
    first = false;
  }
  free(line);
  free(last_answer);
  token_list_free(&suffix);
  tokenizer_free(tok);
  return st == STATUS_OK ? 0 : 1;
}

int cmd_chat(int argc, char **argv) {
  RunOptions o = {.max_tokens = 2048, .temperature = 1.0, .top_p = 1.0};
  const Option options[] = {
      RUN_COMMON_OPTIONS(o),
      GENERATION_OPTIONS(o),
      {"--ids", OPT_FLAG, &o.ids, "print each answer's token ids on one line instead of its text"},
  };
  /* Ctrl-C (and SIGUSR1) are rank 0's to handle: the other ranks ignore them and follow rank 0. */
  signal(SIGINT, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  return run_model_command(argc, argv, options, (int)(sizeof options / sizeof options[0]),
                           "gptoss chat --model MODEL [--reasoning low|medium|high] [--developer TEXT]", &o,
                           drive_chat);
}
