/* cli_ledger.h — `nightwatch ledger RUN_DIR` (the recovery ledger as a
 * table) and `nightwatch status RUN_DIR [--json] [--metrics FILE]` (latest
 * step, loss, settings and recoveries; FILE: Prometheus metrics).
 * defines: nw_cli_ledger, nw_cli_status */
#ifndef NW_CLI_LEDGER_H
#define NW_CLI_LEDGER_H

/* argv[0] is "ledger" / "status". Exit codes: 0 ok, 1 nothing to show
 * (no ledger / no status), 64 usage. */
int nw_cli_ledger(int argc, char **argv);
int nw_cli_status(int argc, char **argv);

#endif
