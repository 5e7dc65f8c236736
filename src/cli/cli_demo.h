/* cli_demo.h — `nightwatch demo [--quick] [--dir DIR]`: a fault drill. The
 * real supervisor runs the default model on the built-in task five times,
 * each on its own CPU virtual device: once fault-free, and once into each of
 * the four out-of-memory causes (activation, sequence-length, eval-cache,
 * duplicate-process), each from settings a user could write. A table read
 * from the runs' ledgers shows what it did about each.
 * defines: nw_cli_demo */
#ifndef NW_CLI_DEMO_H
#define NW_CLI_DEMO_H

/* argv[0] is "demo". Exit codes: 0 every fault run recorded its cause and
 * finished, 1 one did not (or a run could not start), 64 usage. */
int nw_cli_demo(int argc, char **argv);

#endif
