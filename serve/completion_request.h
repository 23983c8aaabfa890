/* A legacy completions request body (POST /v1/completions): a raw prompt, no chat format.
 *
 * `prompt` is a string, an array holding one string, or an array of token ids (each checked
 * against the vocabulary); the generation fields are chat's (ApiGeneration), with the API's
 * default of 16 tokens when max_tokens is absent. Fields this server cannot honour (echo, suffix,
 * best_of > 1, n > 1, logprobs) are refused by name. */
#ifndef GPTOSS_SERVE_COMPLETION_REQUEST_H
#define GPTOSS_SERVE_COMPLETION_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "serve/chat_request.h"

#define COMPLETION_DEFAULT_MAX_TOKENS 16  /* the OpenAI API's default */

typedef struct {
  const char *prompt_text;    /* NULL when the prompt is token ids */
  size_t prompt_bytes;
  int32_t *prompt_ids;        /* owned; NULL when the prompt is text */
  size_t num_prompt_ids;
  ApiGeneration gen;
  void *json;                 /* owns prompt_text and the stop strings */
} CompletionRequest;

/* Parses `body`; ids must lie in [0, vocab_size). On failure fills `error` and leaves nothing to
 * free. */
bool completion_request_parse(const char *body, size_t body_bytes, int64_t vocab_size, CompletionRequest *out,
                              ApiError *error);
void completion_request_free(CompletionRequest *request);

#endif
