/* Option parsing shared by the subcommands. */
#include "launch/args.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static Status parse_value(const char *command, const Option *o, const char *value) {
  char *end = NULL;
  errno = 0;
  switch (o->kind) {
    case OPT_STRING:
      *(const char **)o->dest = value;
      return STATUS_OK;
    case OPT_INT: {
      const long long v = strtoll(value, &end, 10);
      if (errno || end == value || *end) break;
      *(int64_t *)o->dest = v;
      return STATUS_OK;
    }
    case OPT_DOUBLE: {
      const double v = strtod(value, &end);
      if (errno || end == value || *end) break;
      *(double *)o->dest = v;
      return STATUS_OK;
    }
    case OPT_FLAG: break;
  }
  return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s expects a %s, got '%s'", command, o->name,
                      o->kind == OPT_INT ? "whole number" : "number", value);
}

Status args_parse(int argc, char **argv, const Option *options, int num_options, bool *help) {
  *help = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      *help = true;
      return STATUS_OK;
    }
    const Option *o = NULL;
    for (int j = 0; j < num_options; j++) {
      if (!strcmp(argv[i], options[j].name)) o = &options[j];
    }
    if (!o) {
      return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: unknown option '%s' (see gptoss %s --help)", argv[0],
                          argv[i], argv[0]);
    }
    if (o->kind == OPT_FLAG) {
      *(bool *)o->dest = true;
      continue;
    }
    if (i + 1 >= argc) return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s needs a value", argv[0], o->name);
    Status st = parse_value(argv[0], o, argv[++i]);
    if (st != STATUS_OK) return st;
  }
  return STATUS_OK;
}

void args_print_help(FILE *out, const char *usage, const Option *options, int num_options) {
  fprintf(out, "usage: %s\n\noptions:\n", usage);
  for (int i = 0; i < num_options; i++) {
    const char *arg = options[i].kind == OPT_FLAG ? "" : options[i].kind == OPT_STRING ? " VALUE" : " N";
    fprintf(out, "  %s%-*s %s\n", options[i].name, (int)(22 - strlen(options[i].name)), arg, options[i].help);
  }
}

Status args_parse_ids(const char *text, int32_t **ids_out, int64_t *count_out) {
  int64_t capacity = 16, count = 0;
  int32_t *ids = malloc((size_t)capacity * sizeof *ids);
  if (!ids) return status_error(STATUS_OUT_OF_MEMORY, "token list");
  const char *p = text;
  while (*p) {
    while (*p == ',' || *p == ' ') p++;
    if (!*p) break;
    char *end = NULL;
    errno = 0;
    const long long v = strtoll(p, &end, 10);
    if (end == p || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',' && *end != ' ')) {
      free(ids);
      return status_error(STATUS_INVALID_ARGUMENT, "--tokens: '%.20s' is not a token id (want e.g. 1,2,3)", p);
    }
    if (count == capacity) {
      capacity *= 2;
      int32_t *grown = realloc(ids, (size_t)capacity * sizeof *ids);
      if (!grown) {
        free(ids);
        return status_error(STATUS_OUT_OF_MEMORY, "token list");
      }
      ids = grown;
    }
    ids[count++] = (int32_t)v;
    p = end;
  }
  if (count == 0) {
    free(ids);
    return status_error(STATUS_INVALID_ARGUMENT, "--tokens: no token ids given");
  }
  *ids_out = ids;
  *count_out = count;
  return STATUS_OK;
}
