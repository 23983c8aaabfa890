/* Tokenizer speed: bench_tokenizer VOCAB [TEXT_FILE] encodes ~1 MiB of text (the file, or a
 * built-in mix of English prose, code, numbers and CJK repeated) and prints MB/s for encoding
 * and decoding. A measurement, not a test: it checks only that decoding gives the text back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/config_json.h"
#include "io/tokenizer.h"

static const char SAMPLE[] =
    "The quick brown fox jumps over the lazy dog. It's 2024, and we've shipped 1,234,567 tokens!\n"
    "def attention(q, k, v):\n    scores = q @ k.T / math.sqrt(q.shape[-1])\n    return softmax(scores) @ v\n\n"
    "Les modèles de langage prédisent le prochain jeton; naïve façon, résumé.  \t\n"
    "大型语言模型通过预测下一个词来生成文本。今日は良い天気ですね。\n"
    "{\"location\": \"Tokyo\", \"temp\": -3.5, \"ok\": true} https://example.com/path?q=1&r=two#frag\n";

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_tokenizer o200k_base.tiktoken [text-file]\n");
    return 2;
  }
  double t0 = seconds();
  Tokenizer *tok = NULL;
  if (tokenizer_load(&tok, argv[1]) != STATUS_OK) return 1;
  printf("load: %.3f s\n", seconds() - t0);

  char *text = NULL;
  size_t num_bytes = 0;
  if (argc > 2) {
    if (io_read_text_file(argv[2], 1u << 30, &text, &num_bytes) != STATUS_OK) return 1;
  } else {
    const size_t target = 1u << 20, num_sample = sizeof SAMPLE - 1;
    text = malloc(target + num_sample);
    while (text && num_bytes < target) {
      memcpy(text + num_bytes, SAMPLE, num_sample);
      num_bytes += num_sample;
    }
  }
  if (!text) return 1;

  int32_t *ids = NULL;
  size_t num_ids = 0;
  t0 = seconds();
  if (tokenizer_encode(tok, text, num_bytes, /*allow_special=*/false, &ids, &num_ids) != STATUS_OK) return 1;
  const double encode_s = seconds() - t0;
  char *decoded = NULL;
  size_t num_decoded = 0;
  t0 = seconds();
  if (tokenizer_decode(tok, ids, num_ids, &decoded, &num_decoded) != STATUS_OK) return 1;
  const double decode_s = seconds() - t0;
  const int same = num_decoded == num_bytes && !memcmp(decoded, text, num_bytes);
  printf("encode: %zu bytes -> %zu tokens in %.3f s = %.1f MB/s (%.2f M tokens/s)\n", num_bytes, num_ids, encode_s,
         (double)num_bytes / encode_s / 1e6, (double)num_ids / encode_s / 1e6);
  printf("decode: %.3f s = %.1f MB/s, round trip %s\n", decode_s, (double)num_bytes / decode_s / 1e6,
         same ? "exact" : "DIFFERS");
  free(decoded);
  free(ids);
  free(text);
  tokenizer_free(tok);
  return same ? 0 : 1;
}
