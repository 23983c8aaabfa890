/* Embeds the vocabulary file with the assembler's .incbin: no generated source, no copy at run
 * time. GPTOSS_VOCAB_FILE is the file's absolute path (set by io/CMakeLists.txt). */
#include "io/vocab_embedded.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        "gptoss_vocab_begin:\n"
        ".incbin \"" GPTOSS_VOCAB_FILE "\"\n"
        "gptoss_vocab_end:\n"
        ".previous\n");

extern const char gptoss_vocab_begin[] __asm__("gptoss_vocab_begin");
extern const char gptoss_vocab_end[] __asm__("gptoss_vocab_end");

void vocab_embedded(const void **data_out, size_t *num_bytes_out) {
  *data_out = gptoss_vocab_begin;
  *num_bytes_out = (size_t)(gptoss_vocab_end - gptoss_vocab_begin);
}
