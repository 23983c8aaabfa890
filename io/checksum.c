/* checksum64: four independent lanes keep the multiplier pipelines busy (~several GB/s). */
#include "io/checksum.h"

#include <string.h>

static const uint64_t PRIME1 = 0x9E3779B185EBCA87ULL;
static const uint64_t PRIME2 = 0xC2B2AE3D27D4EB4FULL;
static const uint64_t PRIME3 = 0x165667B19E3779F9ULL;

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t round64(uint64_t acc, uint64_t input) {
  return rotl64(acc + input * PRIME2, 31) * PRIME1;
}
static inline uint64_t load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

uint64_t checksum64(const void *data, size_t num_bytes) {
  const unsigned char *p = data;
  uint64_t lanes[4] = {PRIME1 + PRIME2, PRIME2, 0, 0 - PRIME1};
  size_t i = 0;
  for (; i + 32 <= num_bytes; i += 32) {
    for (int l = 0; l < 4; l++) lanes[l] = round64(lanes[l], load64(p + i + 8 * l));
  }
  uint64_t h = rotl64(lanes[0], 1) + rotl64(lanes[1], 7) + rotl64(lanes[2], 12) + rotl64(lanes[3], 18);
  h += (uint64_t)num_bytes;
  for (; i + 8 <= num_bytes; i += 8) h = rotl64(h ^ round64(0, load64(p + i)), 27) * PRIME1 + PRIME3;
  for (; i < num_bytes; i++) h = rotl64(h ^ (p[i] * PRIME3), 11) * PRIME1;
  h ^= h >> 33;
  h *= PRIME2;
  h ^= h >> 29;
  h *= PRIME3;
  h ^= h >> 32;
  return h;
}
