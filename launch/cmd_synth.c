/* gptoss synth: a random checkpoint in the Hugging Face layout (see io/synth.h). */
#include "io/synth.h"
#include "launch/args.h"
#include "launch/commands.h"

/* More files than tensors are merged away anyway (io/synth.c). */
#define SYNTH_MAX_FILES 100000

int cmd_synth(int argc, char **argv) {
  const char *preset = NULL, *config = NULL, *out = NULL;
  int64_t seed = 0, layers = 0, files = 0;
  bool help = false;
  const Option options[] = {
      {"--preset", OPT_STRING, &preset, "tiny | small | 20b | 120b", .choices = "tiny|small|20b|120b"},
      {"--config", OPT_STRING, &config, "take the shapes from this config.json instead of a preset"},
      {"--out", OPT_STRING, &out, "directory to write (config.json + safetensors)"},
      {"--seed", OPT_INT, &seed, "random seed, any whole number (default 0)"},
      {"--layers", OPT_INT, &layers, "override num_hidden_layers", OPT_RANGE(1, GPTOSS_MAX_LAYERS)},
      {"--files", OPT_INT, &files, "number of safetensors files (default: one per ~4 GB; >1 adds an index)",
       OPT_RANGE(1, SYNTH_MAX_FILES)},
  };
  const int n = (int)(sizeof options / sizeof options[0]);
  if (args_parse(argc, argv, options, n, &help) != STATUS_OK) return 2;
  if (help) {
    args_print_help(stdout, "gptoss synth (--preset NAME | --config FILE) --out DIR [--seed S] [--layers N]", options, n);
    return 0;
  }
  if (!out || (!preset) == (!config)) {
    status_error(STATUS_INVALID_ARGUMENT, "gptoss synth needs --out DIR and one of --preset NAME or --config FILE");
    return 2;
  }
  SynthOptions o = {preset, config, out, (uint64_t)seed, layers, (int)files};
  if (synth_checkpoint(&o) != STATUS_OK) return 1;
  status_note("wrote a random checkpoint to %s (noise weights: for shapes, speed and tests)", out);
  return 0;
}
