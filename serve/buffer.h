/* A growable byte buffer: what a reply has ready for its client. */
#ifndef GPTOSS_SERVE_BUFFER_H
#define GPTOSS_SERVE_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  char *data;
  size_t length;
  size_t capacity;
} ByteBuffer;

/* Appends `n` bytes (and keeps a NUL after them); false when out of memory (nothing appended). */
bool buffer_append(ByteBuffer *b, const char *bytes, size_t n);
bool buffer_append_str(ByteBuffer *b, const char *text);
/* Appends `text` and frees it; false when `text` is NULL (an allocation upstream failed). */
bool buffer_append_owned(ByteBuffer *b, char *text);
/* Drops the first `n` bytes. */
void buffer_consume(ByteBuffer *b, size_t n);
void buffer_free(ByteBuffer *b);

#endif
