/* Replays fuzz inputs without libFuzzer: every file named on the command line, or found in a
 * directory named there, goes through LLVMFuzzerTestOneInput once. The normal build runs the
 * seed corpora and every input a fuzzer once crashed on this way (tests/fuzz/regressions), so a
 * fixed bug stays fixed under gcc and the sanitizer build too. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_util.h"

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return fprintf(stderr, "replay: cannot open %s\n", path), 1;
  fseek(f, 0, SEEK_END);
  const long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = malloc(size > 0 ? (size_t)size : 1);
  const int ok = data && fread(data, 1, (size_t)size, f) == (size_t)size;
  fclose(f);
  if (ok) LLVMFuzzerTestOneInput(data, (size_t)size);
  free(data);
  return ok ? 0 : (fprintf(stderr, "replay: cannot read %s\n", path), 1);
}

static int replay_path(const char *path, int *count) {
  struct stat sb;
  if (stat(path, &sb) != 0) return 0; /* an empty regressions folder is not kept by git */
  if (!S_ISDIR(sb.st_mode)) return ++*count, replay_file(path);
  DIR *dir = opendir(path);
  if (!dir) return fprintf(stderr, "replay: cannot open %s\n", path), 1;
  int failed = 0;
  for (struct dirent *e; (e = readdir(dir));) {
    if (e->d_name[0] == '.') continue;
    char child[4096];
    snprintf(child, sizeof child, "%s/%s", path, e->d_name);
    failed |= replay_path(child, count);
  }
  closedir(dir);
  return failed;
}

int main(int argc, char **argv) {
  int failed = 0, count = 0;
  for (int i = 1; i < argc; i++) failed |= replay_path(argv[i], &count);
  printf("replayed %d input(s)\n", count);
  if (count == 0) return fprintf(stderr, "replay: no inputs found\n"), 1;
  return failed;
}
