/* The o200k_base vocabulary compiled into the program (io/data/o200k_base.tiktoken). */
#ifndef GPTOSS_IO_VOCAB_EMBEDDED_H
#define GPTOSS_IO_VOCAB_EMBEDDED_H

#include <stddef.h>

#define O200K_HARMONY_VOCAB_SIZE 201088

void vocab_embedded(const void **data_out, size_t *num_bytes_out);

#endif
