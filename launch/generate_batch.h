/* gptoss generate --batch FILE: requests from a JSON Lines file, --parallel at a time, results in
 * input order on stdout (generate_batch.c). */
#ifndef GPTOSS_LAUNCH_GENERATE_BATCH_H
#define GPTOSS_LAUNCH_GENERATE_BATCH_H

#include "io/tokenizer.h"
#include "launch/run.h"

/* Rank 0's part; returns the exit status. */
int generate_batch(Engine *e, const RunOptions *o);

/* The prompt of generate --prompt as ids: o->prompt as plain text with o->raw, otherwise a
 * harmony conversation (system message from o, optional developer instructions, the user's
 * message). cmd_generate.c. */
Status generate_build_prompt(const RunOptions *o, const Tokenizer *tok, TokenList *ids);

#endif
