/* gptoss: one program, a subcommand per task (see README.md and DESIGN.md's command table). */
#include <stdio.h>
#include <string.h>

#include "launch/commands.h"
#include "launch/version.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"convert", cmd_convert, "Hugging Face checkpoint -> sharded HDF5 model directory"},
    {"score", cmd_score, "teacher-forced logits and mean NLL of a token sequence (MPI)"},
    {"generate", cmd_generate, "answer a prompt (harmony chat format) or continue token ids (MPI)"},
    {"chat", cmd_chat, "multi-turn conversation on rank 0's terminal (MPI)"},
    {"bench", cmd_bench, "prefill and decode speed, bytes per token, per-phase split (MPI)"},
    {"serve", cmd_serve, "the OpenAI API (chat and completions) over HTTP, many requests at once (MPI)"},
    {"synth", cmd_synth, "write a random checkpoint in the Hugging Face layout"},
    {"tokenize", cmd_tokenize, "text <-> token ids (o200k_harmony)"},
};

static void print_usage(FILE *out) {
  fprintf(out, "usage: gptoss COMMAND [options]   (gptoss COMMAND --help for its options; gptoss --version)\n\ncommands:\n");
  for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
    fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  }
  fprintf(out, "\nModel commands run under `mpirun -np N` (N dividing num_key_value_heads) or alone.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    version_print(stdout);
    return 0;
  }
  for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
    if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
  }
  fprintf(stderr, "gptoss: unknown command '%s'\n\n", argv[1]);
  print_usage(stderr);
  return 2;
}
