/* cli_ckpt.h — `nightwatch ckpt ls|verify|inspect`: checkpoints for people.
 * defines: nw_cli_ckpt */
#ifndef NW_CLI_CKPT_H
#define NW_CLI_CKPT_H

/* argv[0] is "ckpt". Returns the exit code: 0 ok, 1 a file failed
 * verification or none was found, 64 usage. */
int nw_cli_ckpt(int argc, char **argv);

#endif
