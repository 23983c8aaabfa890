/* Option parsing shared by the subcommands: every value is checked against what its option
 * declares (args.h) while parsing, so a command never starts work on a value it cannot use. */
#include "launch/args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Enough for every command's table; args_parse refuses a larger one. */
#define ARGS_MAX_OPTIONS 64

static bool in_range(const Option *o, double v) {
  if (!o->has_range) return !isnan(v);
  const bool above_min = o->min_exclusive ? v > o->min : v >= o->min;
  return above_min && v <= o->max; /* false for NaN */
}

static Status out_of_range(const char *command, const Option *o, const char *value) {
  return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s %s is outside the allowed range %c%.15g, %.15g]", command,
                      o->name, value, o->min_exclusive ? '(' : '[', o->min, o->max);
}

/* Whether `value` is one of the '|'-separated `choices`. */
static bool is_choice(const char *choices, const char *value) {
  const size_t n = strlen(value);
  for (const char *c = choices; *c;) {
    const char *bar = strchr(c, '|');
    const size_t len = bar ? (size_t)(bar - c) : strlen(c);
    if (len == n && !strncmp(c, value, n)) return true;
    if (!bar) break;
    c = bar + 1;
  }
  return false;
}

static bool is_leap_year(long y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* YYYY-MM-DD, a day that exists. */
static bool is_date(const char *s) {
  static const char SHAPE[] = "dddd-dd-dd";
  for (size_t i = 0; i < sizeof SHAPE; i++) {
    if (SHAPE[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != SHAPE[i]) return false;
  }
  const long year = strtol(s, NULL, 10), month = strtol(s + 5, NULL, 10), day = strtol(s + 8, NULL, 10);
  static const int DAYS[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1 || day > DAYS[month - 1]) return false;
  return !(month == 2 && day == 29 && !is_leap_year(year));
}

static Status parse_string(const char *command, const Option *o, const char *value) {
  if (!*value && !o->allow_empty) {
    return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s needs a value, got an empty string", command, o->name);
  }
  if (o->choices && !is_choice(o->choices, value)) {
    return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s '%s' is not one of %s", command, o->name, value,
                        o->choices);
  }
  if (o->kind == OPT_DATE && !is_date(value)) {
    return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s '%s' is not a date YYYY-MM-DD (e.g. 2025-08-05)",
                        command, o->name, value);
  }
  *(const char **)o->dest = value;
  return STATUS_OK;
}

static Status parse_value(const char *command, const Option *o, const char *value) {
  char *end = NULL;
  errno = 0;
  switch (o->kind) {
    case OPT_STRING:
    case OPT_DATE:
      return parse_string(command, o, value);
    case OPT_INT: {
      const long long v = strtoll(value, &end, 10);
      if (end == value || *end) break;
      if (errno || !in_range(o, (double)v)) return out_of_range(command, o, value);
      *(int64_t *)o->dest = v;
      return STATUS_OK;
    }
    case OPT_DOUBLE: {
      const double v = strtod(value, &end);
      if (end == value || *end) break;
      if (errno || !in_range(o, v)) return out_of_range(command, o, value);
      *(double *)o->dest = v;
      return STATUS_OK;
    }
    case OPT_FLAG: break;
  }
  return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s expects a %s, got '%s'", command, o->name,
                      o->kind == OPT_INT ? "whole number" : "number", value);
}

static const Option *find_option(const Option *options, int num_options, const char *name) {
  for (int j = 0; j < num_options; j++) {
    if (!strcmp(name, options[j].name)) return &options[j];
  }
  return NULL;
}

Status args_parse(int argc, char **argv, const Option *options, int num_options, bool *help) {
  *help = false;
  if (num_options > ARGS_MAX_OPTIONS) return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: too many options", argv[0]);
  bool given[ARGS_MAX_OPTIONS] = {false};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      *help = true;
      return STATUS_OK;
    }
    const Option *o = find_option(options, num_options, argv[i]);
    if (!o) {
      return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: unknown option '%s' (see gptoss %s --help)", argv[0],
                          argv[i], argv[0]);
    }
    /* The last of two values silently winning hides a typo in a long command line. */
    if (given[o - options]) return status_error(STATUS_INVALID_ARGUMENT, "gptoss %s: %s given twice", argv[0], o->name);
    given[o - options] = true;
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
    const Option *o = &options[i];
    const char *arg = o->kind == OPT_FLAG ? "" : o->kind == OPT_STRING ? " VALUE" : o->kind == OPT_DATE ? " DATE" : " N";
    fprintf(out, "  %s%-*s %s", o->name, (int)(22 - strlen(o->name)), arg, o->help);
    if (o->has_range) fprintf(out, "; %c%.15g, %.15g]", o->min_exclusive ? '(' : '[', o->min, o->max);
    fputc('\n', out);
  }
}

/* ---------- token id lists ---------- */

static bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\n'; }
static const char *skip_blanks(const char *p) {
  while (is_blank(*p)) p++;
  return p;
}

static Status bad_id_list(const char *option, const char *text, int64_t entry, const char *why) {
  return status_error(STATUS_INVALID_ARGUMENT, "%s: entry %lld of '%.40s' %s (give ids >= 0, e.g. 1,2,3)", option,
                      (long long)entry, text, why);
}

/* One id at *p; on success *p moves past it. */
static Status parse_one_id(const char *option, const char *text, int64_t entry, const char **p, int32_t *id_out) {
  if (**p == ',' || !**p) return bad_id_list(option, text, entry, "is empty");
  if (!(**p >= '0' && **p <= '9')) return bad_id_list(option, text, entry, "is not a token id");
  char *end = NULL;
  errno = 0;
  const long long v = strtoll(*p, &end, 10);
  if (*end && *end != ',' && !is_blank(*end)) return bad_id_list(option, text, entry, "is not a token id");
  if (errno || v > INT32_MAX) return bad_id_list(option, text, entry, "is too large to be a token id");
  *id_out = (int32_t)v;
  *p = end;
  return STATUS_OK;
}

static Status push_id(int32_t **ids, int64_t *count, int64_t *capacity, int32_t id) {
  if (*count == *capacity) {
    *capacity = *capacity ? 2 * *capacity : 16;
    int32_t *grown = realloc(*ids, (size_t)*capacity * sizeof **ids);
    if (!grown) return status_error(STATUS_OUT_OF_MEMORY, "token list");
    *ids = grown;
  }
  (*ids)[(*count)++] = id;
  return STATUS_OK;
}

Status args_parse_ids(const char *option, const char *text, int32_t **ids_out, int64_t *count_out) {
  int32_t *ids = NULL;
  int64_t count = 0, capacity = 0;
  const char *p = skip_blanks(text);
  Status st = *p ? STATUS_OK : status_error(STATUS_INVALID_ARGUMENT, "%s: no token ids given (e.g. 1,2,3)", option);
  while (st == STATUS_OK && *p) {
    int32_t id = 0;
    st = parse_one_id(option, text, count + 1, &p, &id);
    if (st == STATUS_OK) st = push_id(&ids, &count, &capacity, id);
    p = skip_blanks(p);
    /* One comma between two ids; blanks alone separate them too. */
    if (st == STATUS_OK && *p == ',') {
      p = skip_blanks(p + 1);
      if (!*p) st = bad_id_list(option, text, count + 1, "is empty");
    }
  }
  if (st != STATUS_OK) {
    free(ids);
    return st;
  }
  *ids_out = ids;
  *count_out = count;
  return STATUS_OK;
}
