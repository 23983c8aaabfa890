/* The subcommands of the gptoss program. Each takes the arguments after its name and returns
 * the process exit status. Commands that run the model are MPI programs (they call dist/);
 * the others run in one process. */
#ifndef GPTOSS_LAUNCH_COMMANDS_H
#define GPTOSS_LAUNCH_COMMANDS_H

int cmd_convert(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
