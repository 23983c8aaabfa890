/* config.json -> GptOssConfig, through Jansson (line and column on a syntax error). */
#ifndef GPTOSS_IO_CONFIG_JSON_H
#define GPTOSS_IO_CONFIG_JSON_H

#include <stddef.h>

#include "model/config.h"

/* A config.json larger than this is not one (the released ones are under 2 KB). */
#define CONFIG_JSON_MAX_BYTES ((size_t)1 << 20)

/* `origin` names the text in messages (a path, or "manifest of MODEL"). Validates the result. */
Status config_parse_json(const char *text, size_t length, const char *origin, GptOssConfig *out);
Status config_load_json(const char *path, GptOssConfig *out);

/* Reads a whole (small) file into a NUL-terminated buffer the caller frees. */
Status io_read_text_file(const char *path, size_t max_bytes, char **text_out, size_t *length_out);

#endif
