/* The shape every MPI test on the golden model shares: load the engine on every rank, read the
 * reference on rank 0, run the cmocka tests there while the others serve, and agree on the exit
 * status (it travels to the workers in the stop command). */
#ifndef GPTOSS_TESTS_GOLDEN_MPI_H
#define GPTOSS_TESTS_GOLDEN_MPI_H

#include <stdint.h>

#include "dist/engine.h"

typedef struct {
  float *logits;            /* [n, vocab]: the reference's logits */
  int32_t *tokens, *greedy; /* the prompt, and its greedy continuation */
  int64_t n, num_greedy, vocab;
} GoldenReference;

/* usage: PROGRAM MODEL_DIR REFERENCE.h5. run_tests is called on rank 0 once the engine is loaded
 * and the reference read; it returns the number of failures. Returns the process exit status. */
int golden_mpi_main(int argc, char **argv, const EngineOptions *options, Engine *engine, GoldenReference *reference,
                    int (*run_tests)(void));

#endif
