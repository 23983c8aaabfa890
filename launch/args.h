/* A small table-driven option parser for the subcommands: `--name value` and `--flag`. */
#ifndef GPTOSS_LAUNCH_ARGS_H
#define GPTOSS_LAUNCH_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/status.h"

typedef enum { OPT_STRING, OPT_INT, OPT_DOUBLE, OPT_FLAG } OptKind;

typedef struct {
  const char *name;   /* "--model" */
  OptKind kind;
  void *dest;         /* const char **, int64_t *, double *, bool * */
  const char *help;
} Option;

/* Parses argv[1..argc) (argv[0] is the command name). Sets *help when --help/-h was given. */
Status args_parse(int argc, char **argv, const Option *options, int num_options, bool *help);
void args_print_help(FILE *out, const char *usage, const Option *options, int num_options);

/* "1,2,3" (commas and/or spaces) -> a malloc'd id array. */
Status args_parse_ids(const char *text, int32_t **ids_out, int64_t *count_out);

#endif
