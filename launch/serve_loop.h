/* Rank 0's driver thread of `gptoss serve`: the jobs the HTTP server queues (serve/server.h)
 * through the scheduler (dist/scheduler.h), every generated token to its job's reply, every
 * reply's bytes back to its client. Only this thread calls the engine, so only it talks MPI. */
#ifndef GPTOSS_LAUNCH_SERVE_LOOP_H
#define GPTOSS_LAUNCH_SERVE_LOOP_H

#include <signal.h>

#include "dist/engine.h"
#include "serve/server.h"

/* Runs until *stop is set (SIGTERM), then drains: new requests get a 503, what was admitted
 * finishes and reaches its client. Returns the exit status (0 drained; 1 the engine failed). */
int serve_loop_run(Engine *engine, Server *server, const volatile sig_atomic_t *stop);

#endif
