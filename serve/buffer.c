#include "serve/buffer.h"

#include <stdlib.h>
#include <string.h>

bool buffer_append(ByteBuffer *b, const char *bytes, size_t n) {
  if (b->length + n + 1 > b->capacity) {
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->length + n + 1) capacity *= 2;
    char *grown = realloc(b->data, capacity);
    if (grown == NULL) return false;
    b->data = grown;
    b->capacity = capacity;
  }
  if (n > 0) memcpy(b->data + b->length, bytes, n);
  b->length += n;
  b->data[b->length] = '\0';
  return true;
}

bool buffer_append_str(ByteBuffer *b, const char *text) { return buffer_append(b, text, strlen(text)); }

bool buffer_append_owned(ByteBuffer *b, char *text) {
  const bool ok = text != NULL && buffer_append_str(b, text);
  free(text);
  return ok;
}

void buffer_consume(ByteBuffer *b, size_t n) {
  if (n >= b->length) {
    b->length = 0;
  } else {
    memmove(b->data, b->data + n, b->length - n);
    b->length -= n;
  }
  if (b->data) b->data[b->length] = '\0';
}

void buffer_free(ByteBuffer *b) {
  free(b->data);
  *b = (ByteBuffer){0};
}
