/* `gptoss synth`: random checkpoints in the Hugging Face layout (config.json + safetensors,
 * one file or several with an index), with the real models' shapes or small ones. Values are
 * deterministic from the seed and the tensor name, whatever the file split. The weights are
 * noise: they exercise shapes, speed and memory, not language. */
#ifndef GPTOSS_IO_SYNTH_H
#define GPTOSS_IO_SYNTH_H

#include <stdint.h>

#include "model/config.h"

typedef struct {
  const char *preset;       /* "tiny", "small", "20b", "120b"; or NULL with config_path */
  const char *config_path;  /* a config.json to take the shapes from */
  const char *out_dir;
  uint64_t seed;
  int64_t layers;           /* > 0 overrides num_hidden_layers */
  int num_files;            /* 0: one file per ~4 GB */
} SynthOptions;

Status synth_preset_config(const char *preset, GptOssConfig *out);
Status synth_checkpoint(const SynthOptions *options);

/* config.json text for a config (HF key names), malloc'd. */
char *synth_config_json(const GptOssConfig *config);

#endif
