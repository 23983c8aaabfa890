/* o200k_harmony tokenizer (see tokenizer.h): loading the rank file into a hash table, UTF-8
 * validation, the regex pre-split, the BPE merge, special tokens and (streaming) decoding.
 * Every rank runs it the same way on its own; it knows nothing of MPI or of chat formats
 * (harmony.c builds on it). */
#include "io/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config_json.h" /* io_read_text_file */
#include "io/utf8.h"

#define NUM_SPECIALS (TOKENIZER_VOCAB_SIZE - TOKENIZER_NUM_RANKS)
#define SPECIAL_NAME_BYTES 32 /* the longest, "<|reserved_201087|>", has 19 bytes */
#define NO_RANK UINT32_MAX
/* Pieces up to this long merge with tiktoken's quadratic loop (fastest for the usual few
 * bytes); longer ones with a heap, so a megabyte-long "word" stays O(n log n). */
#define LONG_PIECE_BYTES 128

/* tiktoken's `\s` is Unicode White_Space; PCRE2's would add U+180E, so the class is spelled out. */
#define WS \
  "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define CONTRACTION "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
const char TOKENIZER_O200K_PATTERN[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+" CONTRACTION "|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" CONTRACTION "|"
    "\\p{N}{1,3}|"
    " ?[^" WS "\\p{L}\\p{N}]+[\\r\\n/]*|"
    "[" WS "]*[\\r\\n]+|"
    "[" WS "]+(?![^" WS "])|"
    "[" WS "]+";

static const struct {
  int32_t id;
  const char *name;
} NAMED_SPECIALS[] = {
    {TOKEN_STARTOFTEXT, "<|startoftext|>"}, {TOKEN_ENDOFTEXT, "<|endoftext|>"}, {TOKEN_RETURN, "<|return|>"},
    {TOKEN_CONSTRAIN, "<|constrain|>"},     {TOKEN_CHANNEL, "<|channel|>"},     {TOKEN_START, "<|start|>"},
    {TOKEN_END, "<|end|>"},                 {TOKEN_MESSAGE, "<|message|>"},     {TOKEN_CALL, "<|call|>"},
    {TOKEN_ENDOFPROMPT, "<|endofprompt|>"},
};
#define NUM_NAMED_SPECIALS (sizeof NAMED_SPECIALS / sizeof NAMED_SPECIALS[0])

struct Tokenizer {
  uint8_t *token_bytes;     /* every ordinary token's bytes, back to back */
  uint32_t *token_offsets;  /* [TOKENIZER_NUM_RANKS] where rank r starts in token_bytes */
  uint32_t *token_lengths;  /* [TOKENIZER_NUM_RANKS] its length in bytes (never 0 once loaded) */
  uint32_t *slots;          /* open-addressing hash table bytes -> rank; NO_RANK = empty */
  size_t slot_mask;         /* number of slots - 1 (a power of two) */
  char special_names[NUM_SPECIALS][SPECIAL_NAME_BYTES]; /* id - TOKENIZER_NUM_RANKS */
  uint8_t special_lengths[NUM_SPECIALS];
  pcre2_code *regex;
  bool jit;                 /* the regex was JIT-compiled (otherwise the interpreter runs it) */
};

/* ---- token lists ---- */

static Status token_list_reserve(TokenList *list, size_t extra) {
  if (list->num_ids + extra <= list->capacity) return STATUS_OK;
  size_t capacity = list->capacity ? list->capacity : 64;
  while (capacity < list->num_ids + extra) capacity *= 2;
  int32_t *ids = realloc(list->ids, capacity * sizeof *ids);
  if (!ids) return status_error(STATUS_OUT_OF_MEMORY, "cannot grow a token list to %zu ids", capacity);
  list->ids = ids;
  list->capacity = capacity;
  return STATUS_OK;
}

Status token_list_push(TokenList *list, int32_t id) {
  Status status = token_list_reserve(list, 1);
  if (status != STATUS_OK) return status;
  list->ids[list->num_ids++] = id;
  return STATUS_OK;
}

void token_list_free(TokenList *list) {
  free(list->ids);
  *list = (TokenList){0};
}

/* ---- UTF-8 ---- */

/* How many trailing bytes are the unfinished start of a character that more bytes could
 * complete (0..3). */
static size_t utf8_incomplete_tail(const uint8_t *bytes, size_t num_bytes) {
  for (size_t k = 1; k <= 3 && k <= num_bytes; k++) {
    const uint8_t *start = bytes + num_bytes - k;
    if ((start[0] & 0xC0) == 0x80) continue;
    return utf8_sequence_length(start[0]) > k && utf8_prefix_ok(start, k) ? k : 0;
  }
  return 0;
}

/* ---- rank lookup ---- */

static uint64_t hash_bytes(const uint8_t *bytes, size_t num_bytes) {
  uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
  for (size_t i = 0; i < num_bytes; i++) h = (h ^ bytes[i]) * 0x100000001b3ull;
  return h ^ (h >> 29);
}

static bool rank_has_bytes(const Tokenizer *tok, uint32_t rank, const uint8_t *bytes, size_t num_bytes) {
  return tok->token_lengths[rank] == num_bytes && !memcmp(tok->token_bytes + tok->token_offsets[rank], bytes, num_bytes);
}

/* The slot that holds these bytes, or else the empty slot where they would go. */
static size_t find_slot(const Tokenizer *tok, const uint8_t *bytes, size_t num_bytes) {
  size_t slot = hash_bytes(bytes, num_bytes) & tok->slot_mask;
  while (tok->slots[slot] != NO_RANK && !rank_has_bytes(tok, tok->slots[slot], bytes, num_bytes)) {
    slot = (slot + 1) & tok->slot_mask;
  }
  return slot;
}

static uint32_t rank_of(const Tokenizer *tok, const uint8_t *bytes, size_t num_bytes) {
  return tok->slots[find_slot(tok, bytes, num_bytes)];
}

/* Inserts `rank` (whose bytes are already in place); returns the rank already holding the same
 * bytes, or NO_RANK. */
static uint32_t rank_insert(Tokenizer *tok, uint32_t rank) {
  const size_t slot = find_slot(tok, tok->token_bytes + tok->token_offsets[rank], tok->token_lengths[rank]);
  if (tok->slots[slot] != NO_RANK) return tok->slots[slot];
  tok->slots[slot] = rank;
  return NO_RANK;
}

/* ---- loading ---- */

static int base64_value(uint8_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/* Standard base64 with padding; returns the decoded length, or 0 if malformed or empty. */
static size_t base64_decode(const uint8_t *in, size_t num_in, uint8_t *out) {
  if (num_in == 0 || num_in % 4 != 0) return 0;
  const size_t num_pad = (in[num_in - 1] == '=') + (in[num_in - 2] == '=');
  size_t num_out = 0;
  for (size_t i = 0; i < num_in; i += 4) {
    uint32_t group = 0;
    for (size_t j = 0; j < 4; j++) {
      const bool pad = i + 4 == num_in && j >= 4 - num_pad;
      const int v = pad ? 0 : base64_value(in[i + j]);
      if (v < 0) return 0;
      group = group << 6 | (uint32_t)v;
    }
    const size_t num_group_bytes = i + 4 == num_in ? 3 - num_pad : 3;
    for (size_t j = 0; j < num_group_bytes; j++) out[num_out++] = (uint8_t)(group >> (16 - 8 * j));
  }
  return num_out;
}

/* One line `base64 rank`; decodes the bytes to tok->token_bytes + *pool_used. */
static Status parse_rank_line(Tokenizer *tok, const uint8_t *line, size_t num_line_bytes, size_t line_number,
                              const char *origin, size_t *pool_used) {
  const uint8_t *space = memchr(line, ' ', num_line_bytes);
  const size_t num_rank_digits = space ? num_line_bytes - (size_t)(space + 1 - line) : 0;
  bool is_number = num_rank_digits > 0 && num_rank_digits <= 9;
  uint64_t rank = 0;
  for (size_t i = 0; is_number && i < num_rank_digits; i++) {
    is_number = space[1 + i] >= '0' && space[1 + i] <= '9';
    rank = rank * 10 + (uint64_t)(space[1 + i] - '0');
  }
  if (!is_number) {
    return status_error(STATUS_BAD_FORMAT, "%s line %zu: expected `base64 rank` (is this o200k_base.tiktoken?)",
                        origin, line_number);
  }
  if (rank >= TOKENIZER_NUM_RANKS) {
    return status_error(STATUS_BAD_FORMAT, "%s line %zu: rank %llu is out of range; o200k has ranks 0..%d",
                        origin, line_number, (unsigned long long)rank, TOKENIZER_NUM_RANKS - 1);
  }
  if (tok->token_lengths[rank] != 0) {
    return status_error(STATUS_BAD_FORMAT, "%s line %zu: rank %llu appears twice", origin, line_number,
                        (unsigned long long)rank);
  }
  const size_t num_bytes = base64_decode(line, (size_t)(space - line), tok->token_bytes + *pool_used);
  if (num_bytes == 0) {
    return status_error(STATUS_BAD_FORMAT, "%s line %zu: the token is not valid (non-empty) base64", origin,
                        line_number);
  }
  tok->token_offsets[rank] = (uint32_t)*pool_used;
  tok->token_lengths[rank] = (uint32_t)num_bytes;
  *pool_used += num_bytes;
  const uint32_t other = rank_insert(tok, (uint32_t)rank);
  if (other != NO_RANK) {
    return status_error(STATUS_BAD_FORMAT, "%s line %zu: rank %llu has the same bytes as rank %u", origin,
                        line_number, (unsigned long long)rank, other);
  }
  return STATUS_OK;
}

static Status parse_rank_file(Tokenizer *tok, const uint8_t *data, size_t num_bytes, const char *origin) {
  size_t pool_used = 0, num_ranks = 0, line_number = 0;
  for (size_t pos = 0; pos < num_bytes;) {
    const uint8_t *newline = memchr(data + pos, '\n', num_bytes - pos);
    const size_t end = newline ? (size_t)(newline - data) : num_bytes;
    size_t line_end = end;
    while (line_end > pos && (data[line_end - 1] == '\r' || data[line_end - 1] == ' ')) line_end--;
    line_number++;
    if (line_end > pos) {
      Status status = parse_rank_line(tok, data + pos, line_end - pos, line_number, origin, &pool_used);
      if (status != STATUS_OK) return status;
      num_ranks++;
    }
    pos = end + 1;
  }
  if (num_ranks != TOKENIZER_NUM_RANKS) {
    return status_error(STATUS_BAD_FORMAT, "%s has %zu ranks; o200k_base.tiktoken has %d (wrong or truncated file?)",
                        origin, num_ranks, TOKENIZER_NUM_RANKS);
  }
  for (int byte = 0; byte < 256; byte++) {
    const uint8_t b = (uint8_t)byte;
    if (rank_of(tok, &b, 1) == NO_RANK) {
      return status_error(STATUS_BAD_FORMAT, "%s has no token for the single byte 0x%02x; BPE needs all 256",
                          origin, byte);
    }
  }
  return STATUS_OK;
}

static void fill_special_names(Tokenizer *tok) {
  for (int32_t i = 0; i < NUM_SPECIALS; i++) {
    const int32_t id = TOKENIZER_NUM_RANKS + i;
    const char *name = tokenizer_special_name(id);
    if (name) {
      snprintf(tok->special_names[i], SPECIAL_NAME_BYTES, "%s", name);
    } else {
      snprintf(tok->special_names[i], SPECIAL_NAME_BYTES, "<|reserved_%d|>", (int)id);
    }
    tok->special_lengths[i] = (uint8_t)strlen(tok->special_names[i]);
  }
}

static Status compile_regex(Tokenizer *tok) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  tok->regex = pcre2_compile((PCRE2_SPTR)TOKENIZER_O200K_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                             &error_code, &error_offset, NULL);
  if (!tok->regex) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    return status_error(STATUS_UNSUPPORTED, "PCRE2 cannot compile the o200k pattern at offset %zu: %s",
                        (size_t)error_offset, (const char *)message);
  }
  tok->jit = pcre2_jit_compile(tok->regex, PCRE2_JIT_COMPLETE) == 0;
  if (!tok->jit) status_note("PCRE2 has no JIT here; tokenizing with the (slower) interpreter");
  return STATUS_OK;
}

Status tokenizer_load_from_memory(Tokenizer **out, const void *data, size_t num_bytes, const char *origin) {
  *out = NULL;
  if (num_bytes > TOKENIZER_FILE_MAX_BYTES) {
    return status_error(STATUS_BAD_FORMAT, "%s is %zu bytes; o200k_base.tiktoken is under %zu (wrong file?)", origin,
                        num_bytes, TOKENIZER_FILE_MAX_BYTES);
  }
  Status status = STATUS_OK;
  Tokenizer *tok = calloc(1, sizeof *tok);
  size_t num_slots = 1;
  while (num_slots < 2 * (size_t)TOKENIZER_NUM_RANKS) num_slots *= 2;
  if (tok) {
    tok->token_bytes = malloc(num_bytes ? num_bytes : 1); /* base64 only shrinks */
    tok->token_offsets = calloc(TOKENIZER_NUM_RANKS, sizeof *tok->token_offsets);
    tok->token_lengths = calloc(TOKENIZER_NUM_RANKS, sizeof *tok->token_lengths);
    tok->slots = malloc(num_slots * sizeof *tok->slots);
    tok->slot_mask = num_slots - 1;
  }
  if (!tok || !tok->token_bytes || !tok->token_offsets || !tok->token_lengths || !tok->slots) {
    status = status_error(STATUS_OUT_OF_MEMORY, "cannot allocate the tokenizer for %s", origin);
    goto cleanup;
  }
  memset(tok->slots, 0xFF, num_slots * sizeof *tok->slots); /* NO_RANK everywhere */
  status = parse_rank_file(tok, data, num_bytes, origin);
  if (status != STATUS_OK) goto cleanup;
  fill_special_names(tok);
  status = compile_regex(tok);
  if (status != STATUS_OK) goto cleanup;
  *out = tok;
  tok = NULL;
cleanup:
  tokenizer_free(tok);
  return status;
}

Status tokenizer_load(Tokenizer **out, const char *tiktoken_path) {
  *out = NULL;
  char *data = NULL;
  size_t num_bytes = 0;
  Status status = io_read_text_file(tiktoken_path, TOKENIZER_FILE_MAX_BYTES, &data, &num_bytes);
  if (status == STATUS_OK) status = tokenizer_load_from_memory(out, data, num_bytes, tiktoken_path);
  free(data);
  return status;
}

void tokenizer_free(Tokenizer *tok) {
  if (!tok) return;
  pcre2_code_free(tok->regex);
  free(tok->token_bytes);
  free(tok->token_offsets);
  free(tok->token_lengths);
  free(tok->slots);
  free(tok);
}

/* ---- BPE merge of one piece ---- */

/* Working memory for merging a piece of n bytes, grown as pieces get longer. */
typedef struct {
  uint32_t *starts, *ranks; /* reference: part boundaries, and the rank of each adjacent pair */
  uint32_t *next, *prev;    /* heap version: the part starts as a linked list (n ends it) */
  uint64_t *heap;           /* heap version: candidate pairs keyed rank << 32 | start */
  size_t capacity;          /* pieces of up to this many bytes fit */
} MergeScratch;

static Status merge_scratch_reserve(MergeScratch *s, size_t num_bytes) {
  if (num_bytes <= s->capacity) return STATUS_OK;
  size_t capacity = s->capacity ? s->capacity : 256;
  while (capacity < num_bytes) capacity *= 2;
  uint32_t **arrays[] = {&s->starts, &s->ranks, &s->next, &s->prev};
  for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
    uint32_t *grown = realloc(*arrays[i], (capacity + 1) * sizeof **arrays[i]);
    if (!grown) goto out_of_memory;
    *arrays[i] = grown;
  }
  /* n - 1 initial pairs and at most two new ones per merge */
  uint64_t *heap = realloc(s->heap, 3 * (capacity + 1) * sizeof *heap);
  if (!heap) goto out_of_memory;
  s->heap = heap;
  s->capacity = capacity;
  return STATUS_OK;
out_of_memory:
  return status_error(STATUS_OUT_OF_MEMORY, "cannot allocate BPE scratch for a %zu-byte piece", num_bytes);
}

static void merge_scratch_free(MergeScratch *s) {
  free(s->starts);
  free(s->ranks);
  free(s->next);
  free(s->prev);
  free(s->heap);
  *s = (MergeScratch){0};
}

/* tiktoken's loop: merge the adjacent pair of lowest rank (leftmost on ties) until no pair is a
 * token. Part k is piece[starts[k] .. starts[k+1]); ranks[k] is the rank of parts k and k+1
 * joined, NO_RANK if that is not a token. */
static size_t merge_reference(const Tokenizer *tok, const uint8_t *piece, size_t n, MergeScratch *s,
                              int32_t *ids_out) {
  uint32_t *starts = s->starts, *ranks = s->ranks;
  size_t num_parts = n;
  for (size_t k = 0; k <= n; k++) starts[k] = (uint32_t)k;
  for (size_t k = 0; k + 1 < n; k++) ranks[k] = rank_of(tok, piece + k, 2);
  for (;;) {
    size_t best = 0;
    uint32_t best_rank = NO_RANK;
    for (size_t k = 0; k + 1 < num_parts; k++) {
      if (ranks[k] < best_rank) {
        best_rank = ranks[k];
        best = k;
      }
    }
    if (best_rank == NO_RANK) break;
    /* parts best and best+1 become one: drop boundary best+1 and the pair rank that began there */
    memmove(starts + best + 1, starts + best + 2, (num_parts - best - 1) * sizeof *starts);
    if (num_parts >= best + 3) memmove(ranks + best + 1, ranks + best + 2, (num_parts - best - 3) * sizeof *ranks);
    num_parts--;
    for (size_t k = best > 0 ? best - 1 : 0; k <= best && k + 1 < num_parts; k++) {
      ranks[k] = rank_of(tok, piece + starts[k], starts[k + 2] - starts[k]);
    }
  }
  for (size_t k = 0; k < num_parts; k++) {
    ids_out[k] = (int32_t)rank_of(tok, piece + starts[k], starts[k + 1] - starts[k]);
  }
  return num_parts;
}

static void heap_push(uint64_t *heap, size_t *size, uint64_t key) {
  size_t i = (*size)++;
  for (; i > 0 && heap[(i - 1) / 2] > key; i = (i - 1) / 2) heap[i] = heap[(i - 1) / 2];
  heap[i] = key;
}

static uint64_t heap_pop(uint64_t *heap, size_t *size) {
  const uint64_t top = heap[0], last = heap[--*size];
  size_t i = 0;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= *size) break;
    if (child + 1 < *size && heap[child + 1] < heap[child]) child++;
    if (heap[child] >= last) break;
    heap[i] = heap[child];
    i = child;
  }
  heap[i] = last;
  return top;
}

/* Pushes the pair that starts at part `start` (with the part after it), if it is a token. */
static void push_pair(const Tokenizer *tok, const uint8_t *piece, size_t n, const uint32_t *next, uint32_t start,
                      uint64_t *heap, size_t *heap_size) {
  if (next[start] >= n) return;
  const uint32_t rank = rank_of(tok, piece + start, next[next[start]] - start);
  if (rank != NO_RANK) heap_push(heap, heap_size, (uint64_t)rank << 32 | start);
}

/* The same merges as merge_reference in O(n log n). Candidate pairs wait in a min-heap keyed
 * (rank, start), so the first one still current is the lowest rank, leftmost. Entries go stale
 * when a neighbour merges; an entry is current when its start is still a part start and the
 * pair starting there now has the entry's rank (an equal key is as good as the entry pushed
 * for it: it pops at the same moment). Every pair that forms is pushed when it forms. */
static size_t merge_heap(const Tokenizer *tok, const uint8_t *piece, size_t n, MergeScratch *s, int32_t *ids_out) {
  uint32_t *next = s->next, *prev = s->prev; /* prev[i] == NO_RANK: i was merged away */
  uint64_t *heap = s->heap;
  size_t heap_size = 0;
  for (size_t i = 0; i <= n; i++) {
    next[i] = (uint32_t)(i + 1);
    prev[i] = i == 0 ? 0 : (uint32_t)(i - 1);
  }
  for (uint32_t i = 0; i + 1 < n; i++) push_pair(tok, piece, n, next, i, heap, &heap_size);
  while (heap_size > 0) {
    const uint64_t key = heap_pop(heap, &heap_size);
    const uint32_t start = (uint32_t)key;
    if (prev[start] == NO_RANK || next[start] >= n) continue;
    if ((uint32_t)(key >> 32) != rank_of(tok, piece + start, next[next[start]] - start)) continue;
    const uint32_t removed = next[start];
    next[start] = next[removed];
    prev[next[removed]] = start;
    prev[removed] = NO_RANK;
    push_pair(tok, piece, n, next, start, heap, &heap_size);
    if (start > 0) push_pair(tok, piece, n, next, prev[start], heap, &heap_size);
  }
  size_t num_ids = 0;
  for (uint32_t i = 0; i < n; i = next[i]) ids_out[num_ids++] = (int32_t)rank_of(tok, piece + i, next[i] - i);
  return num_ids;
}

size_t tokenizer_merge_piece(const Tokenizer *tok, const uint8_t *piece, size_t piece_bytes, bool reference,
                             int32_t *ids_out) {
  MergeScratch scratch = {0};
  size_t num_ids = 0;
  if (piece_bytes > 0 && merge_scratch_reserve(&scratch, piece_bytes) == STATUS_OK) {
    num_ids = reference ? merge_reference(tok, piece, piece_bytes, &scratch, ids_out)
                        : merge_heap(tok, piece, piece_bytes, &scratch, ids_out);
  }
  merge_scratch_free(&scratch);
  return num_ids;
}

static Status encode_piece(const Tokenizer *tok, const uint8_t *piece, size_t n, MergeScratch *s, TokenList *ids) {
  const uint32_t whole = rank_of(tok, piece, n);
  if (whole != NO_RANK) return token_list_push(ids, (int32_t)whole);
  Status status = token_list_reserve(ids, n);
  if (status == STATUS_OK) status = merge_scratch_reserve(s, n);
  if (status != STATUS_OK) return status;
  int32_t *out = ids->ids + ids->num_ids;
  ids->num_ids += n <= LONG_PIECE_BYTES ? merge_reference(tok, piece, n, s, out) : merge_heap(tok, piece, n, s, out);
  return STATUS_OK;
}

/* ---- encoding ---- */

/* Regex pieces of text[0..n) (already valid UTF-8, with no special tokens cut out), each merged. */
static Status encode_ordinary(const Tokenizer *tok, const uint8_t *text, size_t n, pcre2_match_data *match,
                              MergeScratch *s, TokenList *ids) {
  for (size_t pos = 0; pos < n;) {
    const int rc = tok->jit ? pcre2_jit_match(tok->regex, text, n, pos, 0, match, NULL)
                            : pcre2_match(tok->regex, text, n, pos, PCRE2_NO_UTF_CHECK, match, NULL);
    const PCRE2_SIZE *span = pcre2_get_ovector_pointer(match);
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      return status_error(STATUS_UNSUPPORTED, "PCRE2 failed at byte %zu while tokenizing: %s", pos,
                          (const char *)message);
    }
    /* the seven alternatives cover every character, so a gap would be a bug, not input */
    if (rc == PCRE2_ERROR_NOMATCH || span[0] != pos || span[1] <= pos) {
      return status_error(STATUS_UNSUPPORTED, "the o200k pattern left the text at byte %zu unmatched", pos);
    }
    Status status = encode_piece(tok, text + pos, span[1] - pos, s, ids);
    if (status != STATUS_OK) return status;
    pos = span[1];
  }
  return STATUS_OK;
}

const char *tokenizer_special_name(int32_t id) {
  for (size_t k = 0; k < NUM_NAMED_SPECIALS; k++) {
    if (NAMED_SPECIALS[k].id == id) return NAMED_SPECIALS[k].name;
  }
  return NULL;
}

int32_t tokenizer_special_id(const char *name, size_t name_bytes) {
  for (size_t k = 0; k < NUM_NAMED_SPECIALS; k++) {
    if (strlen(NAMED_SPECIALS[k].name) == name_bytes && !memcmp(NAMED_SPECIALS[k].name, name, name_bytes)) {
      return NAMED_SPECIALS[k].id;
    }
  }
  static const char PREFIX[] = "<|reserved_";
  const size_t num_prefix = sizeof PREFIX - 1;
  if (name_bytes != num_prefix + 6 + 2 || memcmp(name, PREFIX, num_prefix) || memcmp(name + name_bytes - 2, "|>", 2)) {
    return -1;
  }
  int32_t id = 0;
  for (size_t i = num_prefix; i < num_prefix + 6; i++) {
    if (name[i] < '0' || name[i] > '9') return -1;
    id = id * 10 + (name[i] - '0');
  }
  if (id < 200000 || id >= TOKENIZER_VOCAB_SIZE || tokenizer_special_name(id)) return -1;
  return id;
}

/* Where the next special-token string in text[from..n) starts (n if none); its id and length. */
static size_t find_special(const uint8_t *text, size_t from, size_t n, int32_t *id_out, size_t *length_out) {
  for (size_t pos = from; pos + 1 < n; pos++) {
    const uint8_t *open = memchr(text + pos, '<', n - pos - 1);
    if (!open) break;
    pos = (size_t)(open - text);
    if (text[pos + 1] != '|') continue;
    /* special names hold no '|', so the first "|>" after "<|" is the only possible end */
    for (size_t end = pos + 2; end + 1 < n && end - pos < SPECIAL_NAME_BYTES; end++) {
      if (text[end] == '|' && text[end + 1] == '>') {
        *id_out = tokenizer_special_id((const char *)text + pos, end + 2 - pos);
        *length_out = end + 2 - pos;
        if (*id_out >= 0) return pos;
        break;
      }
    }
  }
  return n;
}

Status tokenizer_encode_append(const Tokenizer *tok, const char *text, size_t text_bytes, bool allow_special,
                               TokenList *ids) {
  const uint8_t *bytes = (const uint8_t *)text;
  if (text_bytes >= UINT32_MAX) {
    return status_error(STATUS_INVALID_ARGUMENT, "cannot encode %zu bytes at once; split the text below 4 GiB",
                        text_bytes);
  }
  size_t bad = 0;
  if (!utf8_validate(bytes, text_bytes, &bad)) {
    return status_error(STATUS_INVALID_ARGUMENT,
                        "text is not valid UTF-8: bad byte 0x%02x at offset %zu of %zu (convert it to UTF-8 first)",
                        bytes[bad], bad, text_bytes);
  }
  MergeScratch scratch = {0};
  pcre2_match_data *match = pcre2_match_data_create_from_pattern(tok->regex, NULL);
  Status status = match ? STATUS_OK : status_error(STATUS_OUT_OF_MEMORY, "cannot allocate PCRE2 match data");
  for (size_t pos = 0; status == STATUS_OK && pos < text_bytes;) {
    int32_t special = -1;
    size_t special_bytes = 0;
    const size_t end = allow_special ? find_special(bytes, pos, text_bytes, &special, &special_bytes) : text_bytes;
    status = encode_ordinary(tok, bytes + pos, end - pos, match, &scratch, ids);
    if (status == STATUS_OK && end < text_bytes) status = token_list_push(ids, special);
    pos = end + special_bytes;
  }
  pcre2_match_data_free(match);
  merge_scratch_free(&scratch);
  return status;
}

Status tokenizer_encode(const Tokenizer *tok, const char *text, size_t text_bytes, bool allow_special,
                        int32_t **ids_out, size_t *num_ids_out) {
  TokenList ids = {0};
  Status status = tokenizer_encode_append(tok, text, text_bytes, allow_special, &ids);
  if (status != STATUS_OK) token_list_free(&ids);
  *ids_out = ids.ids;
  *num_ids_out = ids.num_ids;
  return status;
}

/* ---- decoding ---- */

Status tokenizer_token_bytes(const Tokenizer *tok, int32_t id, const char **bytes_out, size_t *num_bytes_out) {
  if (id < 0 || id >= TOKENIZER_VOCAB_SIZE) {
    return status_error(STATUS_INVALID_ARGUMENT, "token id %d is outside the vocabulary [0, %d)", (int)id,
                        TOKENIZER_VOCAB_SIZE);
  }
  if (id >= TOKENIZER_NUM_RANKS) {
    *bytes_out = tok->special_names[id - TOKENIZER_NUM_RANKS];
    *num_bytes_out = tok->special_lengths[id - TOKENIZER_NUM_RANKS];
  } else {
    *bytes_out = (const char *)tok->token_bytes + tok->token_offsets[id];
    *num_bytes_out = tok->token_lengths[id];
  }
  return STATUS_OK;
}

Status tokenizer_decode(const Tokenizer *tok, const int32_t *ids, size_t num_ids, char **text_out,
                        size_t *text_bytes_out) {
  *text_out = NULL;
  *text_bytes_out = 0;
  size_t total = 0;
  const char *bytes = NULL;
  size_t num_bytes = 0;
  for (size_t i = 0; i < num_ids; i++) {
    Status status = tokenizer_token_bytes(tok, ids[i], &bytes, &num_bytes);
    if (status != STATUS_OK) return status_error(status, "cannot decode token %zu of %zu", i, num_ids);
    total += num_bytes;
  }
  char *text = malloc(total + 1);
  if (!text) return status_error(STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes of decoded text", total + 1);
  size_t used = 0;
  for (size_t i = 0; i < num_ids; i++) {
    tokenizer_token_bytes(tok, ids[i], &bytes, &num_bytes);
    memcpy(text + used, bytes, num_bytes);
    used += num_bytes;
  }
  text[used] = '\0';
  *text_out = text;
  *text_bytes_out = used;
  return STATUS_OK;
}

Status tokenizer_stream_push(const Tokenizer *tok, TokenizerStream *stream, int32_t id, const char **text_out,
                             size_t *text_bytes_out) {
  *text_out = "";
  *text_bytes_out = 0;
  const char *bytes = NULL;
  size_t num_bytes = 0;
  Status status = tokenizer_token_bytes(tok, id, &bytes, &num_bytes);
  if (status != STATUS_OK) return status;
  const size_t total = stream->num_held + num_bytes;
  if (total > stream->out_capacity) {
    const size_t capacity = total < 256 ? 256 : 2 * total;
    char *out = realloc(stream->out, capacity);
    if (!out) return status_error(STATUS_OUT_OF_MEMORY, "cannot grow the streaming decoder to %zu bytes", capacity);
    stream->out = out;
    stream->out_capacity = capacity;
  }
  memcpy(stream->out, stream->held, stream->num_held);
  memcpy(stream->out + stream->num_held, bytes, num_bytes);
  const size_t hold = utf8_incomplete_tail((const uint8_t *)stream->out, total);
  memcpy(stream->held, stream->out + total - hold, hold);
  stream->num_held = hold;
  *text_out = stream->out;
  *text_bytes_out = total - hold;
  return STATUS_OK;
}

void tokenizer_stream_flush(TokenizerStream *stream, const char **text_out, size_t *text_bytes_out) {
  *text_out = "";
  *text_bytes_out = stream->num_held;
  if (stream->num_held > 0) { /* a byte was held, so a push has sized `out` */
    memcpy(stream->out, stream->held, stream->num_held);
    *text_out = stream->out;
  }
  stream->num_held = 0;
}

void tokenizer_stream_free(TokenizerStream *stream) {
  free(stream->out);
  *stream = (TokenizerStream){0};
}
