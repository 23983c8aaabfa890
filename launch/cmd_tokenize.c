/* gptoss tokenize: text -> token ids and ids -> text with the o200k_harmony tokenizer. One
 * process, no MPI. The vocabulary: --vocab, else $GPTOSS_TOKENIZER, else the one built in. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config_json.h" /* io_read_text_file */
#include "io/tokenizer.h"
#include "io/vocab_embedded.h"
#include "launch/commands.h"

#define MAX_TEXT_FILE_BYTES (256u << 20)

static void print_usage(FILE *out) {
  fprintf(out,
          "usage: gptoss tokenize (--text T | --file F | --decode IDS) [--allow-special] [--vocab PATH]\n\n"
          "  --text T          encode T; prints the ids on one line, separated by spaces\n"
          "  --file F          encode the contents of file F (UTF-8)\n"
          "  --decode IDS      decode ids given as \"1,2,3\" (commas or spaces); prints the text and a newline\n"
          "  --allow-special   read special-token strings such as <|start|> in the text as their ids\n"
          "                    (by default all text is ordinary, as message text in a chat is)\n"
          "  --vocab PATH      o200k_base.tiktoken (default: $GPTOSS_TOKENIZER, else the built-in one)\n");
}

/* Parses "1,2,3" / "1 2 3" into ids within the vocabulary. */
static Status parse_ids(const char *list, TokenList *ids) {
  for (const char *p = list;;) {
    while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n') p++;
    if (!*p) return STATUS_OK;
    char *end = NULL;
    errno = 0;
    const long id = strtol(p, &end, 10);
    if (end == p || errno != 0 || (*end && *end != ',' && *end != ' ' && *end != '\t' && *end != '\n')) {
      return status_error(STATUS_INVALID_ARGUMENT, "--decode: \"%.20s\" is not a token id (give e.g. 1,2,3)", p);
    }
    if (id < 0 || id >= TOKENIZER_VOCAB_SIZE) {
      return status_error(STATUS_INVALID_ARGUMENT, "--decode: token id %ld is outside the vocabulary [0, %d)", id,
                          TOKENIZER_VOCAB_SIZE);
    }
    Status status = token_list_push(ids, (int32_t)id);
    if (status != STATUS_OK) return status;
    p = end;
  }
}

static Status run_encode(const Tokenizer *tok, const char *text, size_t num_bytes, bool allow_special,
                         const char *origin) {
  int32_t *ids = NULL;
  size_t num_ids = 0;
  Status status = tokenizer_encode(tok, text, num_bytes, allow_special, &ids, &num_ids);
  if (status != STATUS_OK) status_error(status, "cannot tokenize %s", origin);
  for (size_t i = 0; status == STATUS_OK && i < num_ids; i++) printf(i ? " %d" : "%d", (int)ids[i]);
  if (status == STATUS_OK) putchar('\n');
  free(ids);
  return status;
}

static Status run_decode(const Tokenizer *tok, const char *list) {
  TokenList ids = {0};
  char *text = NULL;
  size_t num_bytes = 0;
  Status status = parse_ids(list, &ids);
  if (status == STATUS_OK) status = tokenizer_decode(tok, ids.ids, ids.num_ids, &text, &num_bytes);
  if (status == STATUS_OK) {
    fwrite(text, 1, num_bytes, stdout);
    putchar('\n');
  }
  free(text);
  token_list_free(&ids);
  return status;
}

int cmd_tokenize(int argc, char **argv) {
  const char *text = NULL, *file = NULL, *decode = NULL, *vocab = getenv("GPTOSS_TOKENIZER");
  bool allow_special = false;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      print_usage(stdout);
      return 0;
    }
    if (!strcmp(arg, "--allow-special")) {
      allow_special = true;
      continue;
    }
    const char **value = !strcmp(arg, "--text")     ? &text
                         : !strcmp(arg, "--file")   ? &file
                         : !strcmp(arg, "--decode") ? &decode
                         : !strcmp(arg, "--vocab")  ? &vocab
                                                    : NULL;
    if (!value || i + 1 >= argc) {
      fprintf(stderr, value ? "gptoss tokenize: %s needs a value\n\n" : "gptoss tokenize: unknown option %s\n\n", arg);
      print_usage(stderr);
      return 2;
    }
    *value = argv[++i];
  }
  if ((text != NULL) + (file != NULL) + (decode != NULL) != 1) {
    fprintf(stderr, "gptoss tokenize: give exactly one of --text, --file and --decode\n\n");
    print_usage(stderr);
    return 2;
  }
  Tokenizer *tok = NULL;
  char *file_text = NULL;
  size_t num_file_bytes = 0;
  Status status;
  if (vocab && *vocab) {
    status = tokenizer_load(&tok, vocab);
  } else {
    /* The o200k_base vocabulary compiled into the program. */
    const void *data;
    size_t num_bytes;
    vocab_embedded(&data, &num_bytes);
    status = tokenizer_load_from_memory(&tok, data, num_bytes, "the built-in o200k_base vocabulary");
  }
  if (status == STATUS_OK && file) status = io_read_text_file(file, MAX_TEXT_FILE_BYTES, &file_text, &num_file_bytes);
  if (status == STATUS_OK) {
    if (decode) {
      status = run_decode(tok, decode);
    } else if (file) {
      status = run_encode(tok, file_text, num_file_bytes, allow_special, file);
    } else {
      status = run_encode(tok, text, strlen(text), allow_special, "--text");
    }
  }
  free(file_text);
  tokenizer_free(tok);
  return status == STATUS_OK ? 0 : 1;
}
