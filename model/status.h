/* One status enum for every fallible call, and the error log that says what went wrong.
 *
 * Setup code returns a Status and calls status_error() with the file, tensor or key involved,
 * the expected and actual values, and what to do. The message is printed to stderr (prefixed
 * with the rank when one is set) and kept, so tests can check what the user would read. */
#ifndef GPTOSS_MODEL_STATUS_H
#define GPTOSS_MODEL_STATUS_H

#include <stddef.h>

typedef enum {
  STATUS_OK = 0,
  STATUS_INVALID_ARGUMENT, /* bad option, token out of range, unusable config */
  STATUS_IO_ERROR,         /* a file could not be opened, read or written */
  STATUS_BAD_FORMAT,       /* a file's contents are malformed or inconsistent */
  STATUS_MISMATCH,         /* a tensor or model does not match what the config says */
  STATUS_OUT_OF_MEMORY,
  STATUS_UNSUPPORTED,      /* valid, but not something this engine runs */
  STATUS_REMOTE_ERROR,     /* another rank failed; it printed the reason */
} Status;

const char *status_name(Status status);

/* Logs an error (printf-style) and returns `status`, so callers can write
 * `return status_error(STATUS_IO_ERROR, "cannot open %s: %s", path, strerror(errno));` */
Status status_error(Status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a one-line note to stderr (progress, warnings); silenced by status_set_quiet. */
void status_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The rank prefixed to messages ("rank 3: "); -1 (the default) prints no prefix. */
void status_set_rank(int rank);
void status_set_quiet(int quiet);
/* Keep messages instead of printing them (tests, expected failures); the last one stays readable
 * either way. Both are per thread: the calling thread's messages only. */
void status_set_silent(int silent);
const char *status_last_error(void);

#endif
