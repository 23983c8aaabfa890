/* `gptoss convert`: Hugging Face checkpoint -> model directory (io/model_dir.h).
 *
 * Checks every tensor's name, dtype and shape against config.json before writing anything,
 * then streams tensor slice by tensor slice (memory bounded by the largest slice, not the
 * checkpoint) into a sibling directory OUT.partial-XXXXXX, and renames it to OUT only when
 * every file and the manifest are written. An existing OUT is never touched unless `force`,
 * and then replaced only after the new directory is complete. */
#ifndef GPTOSS_IO_CONVERT_H
#define GPTOSS_IO_CONVERT_H

#include <stdbool.h>

#include "io/safetensors.h"
#include "model/config.h"

typedef struct {
  const char *checkpoint_dir;
  const char *out_dir;
  bool force;     /* replace an existing OUT (atomically, once the new one is complete) */
  bool progress;  /* show progress on stderr when it is a terminal */
} ConvertOptions;

Status convert_checkpoint(const ConvertOptions *options);

/* Every tensor the config implies is present with the right dtype and shape. */
Status convert_check_checkpoint(const Checkpoint *ckpt, const GptOssConfig *config);

#endif
