/* Error reporting shared by every layer: stderr plus a copy of the last message for tests. */
#include "model/status.h"

#include <stdarg.h>
#include <stdio.h>

static int g_rank = -1;
static int g_quiet = 0;
/* Per thread: gptoss serve's network thread and its driver thread each silence (and keep) their
 * own messages, so one never mutes or overwrites the other's. */
static _Thread_local int g_silent = 0;
static _Thread_local char g_last_error[2048];

const char *status_name(Status status) {
  switch (status) {
    case STATUS_OK: return "ok";
    case STATUS_INVALID_ARGUMENT: return "invalid argument";
    case STATUS_IO_ERROR: return "I/O error";
    case STATUS_BAD_FORMAT: return "bad format";
    case STATUS_MISMATCH: return "mismatch";
    case STATUS_OUT_OF_MEMORY: return "out of memory";
    case STATUS_UNSUPPORTED: return "unsupported";
    case STATUS_REMOTE_ERROR: return "error on another rank";
  }
  return "unknown status";
}

Status status_error(Status status, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, args);
  va_end(args);
  if (!g_silent) {
    if (g_rank >= 0) {
      fprintf(stderr, "gptoss: rank %d: error: %s\n", g_rank, g_last_error);
    } else {
      fprintf(stderr, "gptoss: error: %s\n", g_last_error);
    }
    fflush(stderr);
  }
  return status;
}

void status_note(const char *fmt, ...) {
  if (g_quiet || g_silent) return;
  va_list args;
  va_start(args, fmt);
  fputs("gptoss: ", stderr);
  vfprintf(stderr, fmt, args);
  fputc('\n', stderr);
  va_end(args);
}

void status_set_rank(int rank) { g_rank = rank; }
void status_set_quiet(int quiet) { g_quiet = quiet; }
void status_set_silent(int silent) { g_silent = silent; }
const char *status_last_error(void) { return g_last_error; }
