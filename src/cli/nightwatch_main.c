/* nightwatch_main.c — the supervisor and tools.
 *
 *   nightwatch run [CONFIG] [--policy FILE] [--run-dir DIR] [--set k=v] [--
 * CMD] nightwatch ledger RUN_DIR | status RUN_DIR [--json] [--metrics FILE]
 * nightwatch ckpt
 * ls|verify|inspect ...
 *
 * The supervisor never initialises CUDA: it must survive a sick driver. */
#include <stdio.h>
#include <string.h>

#include "cli/cli_ckpt.h"
#include "cli/cli_demo.h"
#include "cli/cli_ledger.h"
#include "cli/cli_policy.h"
#include "cli/cli_run.h"
#include "protocol/exit_codes.h"

static void nw_usage(FILE *f) {
  fputs(
      "usage: nightwatch COMMAND ...\n"
      "  run [CONFIG] [--policy FILE] [--run-dir DIR] [--set K=V] [-- CMD]\n"
      "                            supervise a trainer (docs/supervisor.md)\n"
      "  status RUN_DIR [--json] [--metrics FILE]\n"
      "                            latest step, settings and recoveries;\n"
      "                            FILE: Prometheus textfile, written "
      "atomically\n"
      "  ledger RUN_DIR            the recovery ledger as a table\n"
      "  ckpt ls RUN_DIR           list the checkpoints of a run\n"
      "  ckpt verify FILE|RUN_DIR  verify checksums (isolated, time-limited)\n"
      "  ckpt inspect FILE         step, settings and tensors of a "
      "checkpoint\n"
      "  policy check FILE         list every error of a recovery policy\n"
      "  demo [--quick] [--dir DIR]\n"
      "                            fault drill: the four OOM causes, "
      "recovered\n",
      f);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    nw_usage(stderr);
    return NW_EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
    nw_usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "run") == 0)
    return nw_cli_run(argc - 1, argv + 1);
  if (strcmp(argv[1], "ledger") == 0)
    return nw_cli_ledger(argc - 1, argv + 1);
  if (strcmp(argv[1], "status") == 0)
    return nw_cli_status(argc - 1, argv + 1);
  if (strcmp(argv[1], "ckpt") == 0)
    return nw_cli_ckpt(argc - 1, argv + 1);
  if (strcmp(argv[1], "demo") == 0)
    return nw_cli_demo(argc - 1, argv + 1);
  if (strcmp(argv[1], "policy") == 0)
    return nw_cli_policy(argc - 1, argv + 1);
  fprintf(stderr, "nightwatch: unknown command '%s'\n", argv[1]);
  nw_usage(stderr);
  return NW_EXIT_USAGE;
}
