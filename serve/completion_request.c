/* The legacy completions body (see completion_request.h). Rank 0's network thread. */
#include "serve/completion_request.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static bool parse_prompt_ids(json_t *array, int64_t vocab_size, CompletionRequest *out, ApiError *error) {
  const size_t n = json_array_size(array);
  out->prompt_ids = malloc(n * sizeof *out->prompt_ids);
  if (out->prompt_ids == NULL) {
    api_error_set(error, 500, NULL, NULL, "out of memory for %zu prompt ids", n);
    error->type = "server_error";
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *id = json_array_get(array, i);
    if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= vocab_size) {
      api_error_set(error, 400, "prompt", NULL, "prompt[%zu] must be a token id in [0, %lld)", i, (long long)vocab_size);
      return false;
    }
    out->prompt_ids[i] = (int32_t)json_integer_value(id);
  }
  out->num_prompt_ids = n;
  return true;
}

static bool parse_prompt(json_t *root, int64_t vocab_size, CompletionRequest *out, ApiError *error) {
  json_t *prompt = json_object_get(root, "prompt");
  if (json_is_array(prompt) && json_array_size(prompt) == 1 && json_is_string(json_array_get(prompt, 0))) {
    prompt = json_array_get(prompt, 0);
  }
  if (json_is_string(prompt) && json_string_length(prompt) > 0) {
    out->prompt_text = json_string_value(prompt);
    out->prompt_bytes = json_string_length(prompt);
    return true;
  }
  if (json_is_array(prompt) && json_array_size(prompt) > 0 && json_is_integer(json_array_get(prompt, 0))) {
    return parse_prompt_ids(prompt, vocab_size, out, error);
  }
  if (json_is_array(prompt) && json_array_size(prompt) > 1) {
    api_error_set(error, 400, "prompt", "unsupported_parameter", "'prompt' must be one prompt: batches of prompts are not supported");
    return false;
  }
  api_error_set(error, 400, "prompt", NULL, "'prompt' must be a non-empty string or a non-empty array of token ids");
  return false;
}

static bool refuse_unsupported(json_t *root, ApiError *error) {
  static const char *const refused[] = {"echo", "suffix"};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    json_t *field = json_object_get(root, refused[i]);
    if (field != NULL && !json_is_null(field) && !json_is_false(field)) {
      api_error_set(error, 400, refused[i], "unsupported_parameter", "'%s' is not supported by this server", refused[i]);
      return false;
    }
  }
  json_t *best_of = json_object_get(root, "best_of");
  if (best_of != NULL && !json_is_null(best_of) && !(json_is_integer(best_of) && json_integer_value(best_of) == 1)) {
    api_error_set(error, 400, "best_of", "unsupported_parameter", "'best_of' must be 1");
    return false;
  }
  return true;
}

bool completion_request_parse(const char *body, size_t body_bytes, int64_t vocab_size, CompletionRequest *out,
                              ApiError *error) {
  memset(out, 0, sizeof *out);
  json_t *root = api_parse_body(body, body_bytes, error);
  if (root == NULL) return false;
  out->json = root;
  const bool ok = refuse_unsupported(root, error) && api_parse_generation(root, &out->gen, error) &&
                  parse_prompt(root, vocab_size, out, error);
  if (ok && out->gen.max_tokens == 0) out->gen.max_tokens = COMPLETION_DEFAULT_MAX_TOKENS;
  if (!ok) completion_request_free(out);
  return ok;
}

void completion_request_free(CompletionRequest *request) {
  free(request->prompt_ids);
  json_decref(request->json);
  memset(request, 0, sizeof *request);
}
