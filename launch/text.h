/* Rank 0's text side of the model commands: the tokenizer a model carries, and turning the
 * user's words into ids. */
#ifndef GPTOSS_LAUNCH_TEXT_H
#define GPTOSS_LAUNCH_TEXT_H

#include "dist/engine.h"
#include "io/tokenizer.h"

/* Loads the tokenizer stored in the model directory; refuses a model whose vocabulary cannot
 * hold o200k_harmony's ids. */
Status text_load_tokenizer(const Engine *engine, const char *model_dir, Tokenizer **out);
/* The same without the vocabulary check, for decoding ids of a model with a small test
 * vocabulary (its ids are o200k's first ones); text_vocab_holds_tokenizer says whether text
 * can be encoded for it. */
Status text_load_tokenizer_any(const char *model_dir, Tokenizer **out);
bool text_vocab_holds_tokenizer(const Engine *engine);

/* Plain text (no chat format, special-token strings not parsed) -> ids. */
Status text_encode_plain(const Engine *engine, const char *model_dir, const char *text, int32_t **ids_out,
                         int64_t *count_out);

#endif
