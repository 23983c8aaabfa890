/* Small HDF5 array files: the /logits output of `gptoss score`, and reading the datasets of
 * reference files (tests and tools). */
#ifndef GPTOSS_IO_LOGITS_FILE_H
#define GPTOSS_IO_LOGITS_FILE_H

#include <stdint.h>

#include "model/status.h"

/* Writes dataset /logits float32 [rows, cols] to path (via path.partial, then rename). */
Status logits_file_write(const char *path, const float *logits, int64_t rows, int64_t cols);

/* Reads a whole dataset as float or int32; dims_out gets up to 2 dims (missing ones = 1). */
Status h5_read_floats(const char *path, const char *dataset, float **data_out, int64_t dims_out[2]);
Status h5_read_ints(const char *path, const char *dataset, int32_t **data_out, int64_t *count_out);

#endif
