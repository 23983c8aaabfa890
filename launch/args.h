/* A small table-driven option parser for the subcommands: `--name value` and `--flag`.
 *
 * Each option declares what it accepts, and args_parse refuses anything else before a command
 * does any work, naming the option, the value and what is allowed. An option that is not given
 * keeps the default its destination was initialised with; that default is never checked, so a
 * default of 0 may mean "choose for me" without 0 being a value a user can type. */
#ifndef GPTOSS_LAUNCH_ARGS_H
#define GPTOSS_LAUNCH_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/status.h"

typedef enum {
  OPT_STRING, /* const char *: non-empty unless allow_empty; one of `choices` when set */
  OPT_INT,    /* int64_t, in [min, max] */
  OPT_DOUBLE, /* double, in [min, max] ((min, max] when min_exclusive); never NaN */
  OPT_FLAG,   /* bool */
  OPT_DATE,   /* const char *: a calendar date YYYY-MM-DD */
} OptKind;

typedef struct {
  const char *name;   /* "--model" */
  OptKind kind;
  void *dest;         /* const char **, int64_t *, double *, bool * */
  const char *help;
  /* OPT_INT / OPT_DOUBLE: the allowed range, declared with OPT_RANGE / OPT_ABOVE. Every numeric
   * option should declare one; without it any value of the type is taken. */
  double min, max;
  bool min_exclusive;
  bool has_range;
  const char *choices; /* OPT_STRING: "low|medium|high", or NULL for any text */
  bool allow_empty;    /* OPT_STRING: "" is a meaningful value */
} Option;

/* Trailing initialisers of an Option: {"--top-p", OPT_DOUBLE, &p, "help", OPT_ABOVE(0, 1)}. */
#define OPT_RANGE(lo, hi) .min = (lo), .max = (hi), .has_range = true
#define OPT_ABOVE(lo, hi) .min = (lo), .max = (hi), .min_exclusive = true, .has_range = true

/* Counts of tokens a user may ask for (--max-tokens, --context, ...): beyond any real model. */
#define ARGS_MAX_TOKEN_COUNT 1000000000.0

/* Parses argv[1..argc) (argv[0] is the command name). Sets *help when --help/-h was given.
 * An option given twice is refused, as is a value outside what the option accepts. */
Status args_parse(int argc, char **argv, const Option *options, int num_options, bool *help);
void args_print_help(FILE *out, const char *usage, const Option *options, int num_options);

/* "1,2,3" or "1 2 3" (single commas, optionally spaced, or whitespace) -> a malloc'd array of
 * ids >= 0. An empty entry ("1,,2", ",1", "1,"), a sign or anything else is refused, naming
 * `option` and the entry. */
Status args_parse_ids(const char *option, const char *text, int32_t **ids_out, int64_t *count_out);

#endif
