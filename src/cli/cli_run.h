/* cli_run.h — `nightwatch run`: load the config and the policy, then
 * supervise (supervisor.h).
 * defines: nw_cli_run */
#ifndef NW_CLI_RUN_H
#define NW_CLI_RUN_H

/* argv[0] is "run". Returns the exit code (docs/supervisor.md): 0 finished
 * or stopped, 1 gave up / failure / run locked, 64 usage, 78 config. */
int nw_cli_run(int argc, char **argv);

#endif
