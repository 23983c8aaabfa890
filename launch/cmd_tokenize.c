/* gptoss tokenize: text -> token ids and ids -> text with the o200k_harmony tokenizer. One
 * process, no MPI. The vocabulary: --vocab, else $GPTOSS_TOKENIZER, else the one built in. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config_json.h" /* io_read_text_file */
#include "io/tokenizer.h"
#include "io/vocab_embedded.h"
#include "launch/args.h"
#include "launch/commands.h"

#define MAX_TEXT_FILE_BYTES (256u << 20)

/* Every id within the vocabulary (args_parse_ids has refused anything that is not an id). */
static Status parse_ids(const char *list, TokenList *ids) {
  int32_t *parsed = NULL;
  int64_t n = 0;
  Status status = args_parse_ids("--decode", list, &parsed, &n);
  for (int64_t i = 0; status == STATUS_OK && i < n; i++) {
    if (parsed[i] >= TOKENIZER_VOCAB_SIZE) {
      status = status_error(STATUS_INVALID_ARGUMENT, "--decode: token id %d is outside the vocabulary [0, %d)",
                            (int)parsed[i], TOKENIZER_VOCAB_SIZE);
    }
    if (status == STATUS_OK) status = token_list_push(ids, parsed[i]);
  }
  free(parsed);
  return status;
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

static Status run_decode(const Tokenizer *tok, const TokenList *ids) {
  char *text = NULL;
  size_t num_bytes = 0;
  Status status = tokenizer_decode(tok, ids->ids, ids->num_ids, &text, &num_bytes);
  if (status == STATUS_OK) {
    fwrite(text, 1, num_bytes, stdout);
    putchar('\n');
  }
  free(text);
  return status;
}

int cmd_tokenize(int argc, char **argv) {
  const char *text = NULL, *file = NULL, *decode = NULL, *vocab = getenv("GPTOSS_TOKENIZER");
  bool allow_special = false, help = false;
  const Option options[] = {
      {"--text", OPT_STRING, &text, "encode this text; prints the ids on one line, separated by spaces",
       .allow_empty = true},
      {"--file", OPT_STRING, &file, "encode the contents of this file (UTF-8)"},
      {"--decode", OPT_STRING, &decode, "decode ids given as \"1,2,3\" (commas or spaces); prints the text"},
      {"--allow-special", OPT_FLAG, &allow_special,
       "read special-token strings such as <|start|> in the text as their ids (by default all text is ordinary)"},
      {"--vocab", OPT_STRING, &vocab, "o200k_base.tiktoken (default: $GPTOSS_TOKENIZER, else the built-in one)"},
  };
  const int num_options = (int)(sizeof options / sizeof options[0]);
  const char *usage = "gptoss tokenize (--text T | --file F | --decode IDS) [--allow-special] [--vocab PATH]";
  if (args_parse(argc, argv, options, num_options, &help) != STATUS_OK) return 2;
  if (help) {
    args_print_help(stdout, usage, options, num_options);
    return 0;
  }
  if ((text != NULL) + (file != NULL) + (decode != NULL) != 1) {
    status_error(STATUS_INVALID_ARGUMENT, "gptoss tokenize: give exactly one of --text, --file and --decode");
    return 2;
  }
  /* The ids are an option's value: refused before the vocabulary is loaded. */
  TokenList decode_ids = {0};
  if (decode && parse_ids(decode, &decode_ids) != STATUS_OK) {
    token_list_free(&decode_ids);
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
      status = run_decode(tok, &decode_ids);
    } else if (file) {
      status = run_encode(tok, file_text, num_file_bytes, allow_special, file);
    } else {
      status = run_encode(tok, text, strlen(text), allow_special, "--text");
    }
  }
  free(file_text);
  token_list_free(&decode_ids);
  tokenizer_free(tok);
  return status == STATUS_OK ? 0 : 1;
}
