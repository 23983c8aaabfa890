/* A fast 64-bit checksum of tensor bytes (XXH64's round function over four lanes), stored
 * beside every dataset by the converter and checked by the loader, so a damaged shard is
 * reported with its file and tensor instead of producing wrong numbers. Not cryptographic. */
#ifndef GPTOSS_IO_CHECKSUM_H
#define GPTOSS_IO_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

uint64_t checksum64(const void *data, size_t num_bytes);

#endif
