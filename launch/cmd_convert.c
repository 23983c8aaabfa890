/* gptoss convert / gptoss synth: single-process commands (no MPI). */
#include <stdlib.h>

#include "io/convert.h"
#include "io/synth.h"
#include "launch/args.h"
#include "launch/commands.h"

int cmd_convert(int argc, char **argv) {
  const char *checkpoint = NULL, *out = NULL;
  bool force = false, quiet = false, help = false;
  const Option options[] = {
      {"--checkpoint", OPT_STRING, &checkpoint, "Hugging Face model directory (config.json + safetensors)"},
      {"--out", OPT_STRING, &out, "model directory to create"},
      {"--force", OPT_FLAG, &force, "replace OUT if it exists (only once the new one is complete)"},
      {"--quiet", OPT_FLAG, &quiet, "no progress display"},
  };
  const int n = (int)(sizeof options / sizeof options[0]);
  if (args_parse(argc, argv, options, n, &help) != STATUS_OK) return 2;
  if (help) {
    args_print_help(stdout, "gptoss convert --checkpoint DIR --out MODEL [--force] [--quiet]", options, n);
    return 0;
  }
  if (!checkpoint || !out) {
    status_error(STATUS_INVALID_ARGUMENT, "gptoss convert needs --checkpoint DIR and --out MODEL");
    return 2;
  }
  status_set_quiet(quiet);
  ConvertOptions o = {checkpoint, out, force, !quiet};
  if (convert_checkpoint(&o) != STATUS_OK) return 1;
  status_note("wrote %s", out);
  return 0;
}
