#include "golden_mpi.h"

#include <stdlib.h>

#include "io/logits_file.h"

static Status read_reference(const char *path, GoldenReference *r) {
  int64_t dims[2] = {0, 0};
  Status st = h5_read_floats(path, "logits", &r->logits, dims);
  if (st == STATUS_OK) st = h5_read_ints(path, "tokens", &r->tokens, &r->n);
  if (st == STATUS_OK) st = h5_read_ints(path, "greedy", &r->greedy, &r->num_greedy);
  r->vocab = dims[1];
  return st;
}

int golden_mpi_main(int argc, char **argv, const EngineOptions *options, Engine *engine, GoldenReference *reference,
                    int (*run_tests)(void)) {
  RankInfo rank;
  if (dist_init(&argc, &argv, &rank) != STATUS_OK) return 1;
  if (argc != 3) {
    if (rank.rank == 0) status_error(STATUS_INVALID_ARGUMENT, "usage: %s MODEL_DIR REFERENCE.h5", argv[0]);
    dist_finalize();
    return 2;
  }
  int status = 1;
  if (engine_load(engine, rank, argv[1], options) == STATUS_OK) {
    if (rank.rank == 0) {
      const Status st = read_reference(argv[2], reference);
      status = st == STATUS_OK && reference->vocab == engine->config.vocab_size ? run_tests() : 1;
      engine_stop(engine, status == 0 ? 0 : 1);
    } else {
      status = engine_serve(engine);
    }
  }
  engine_free(engine);
  free(reference->logits);
  free(reference->tokens);
  free(reference->greedy);
  dist_finalize();
  return status == 0 ? 0 : 1;
}
