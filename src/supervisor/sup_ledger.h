/* sup_ledger.h — the supervisor's ledger entries, built in one place per
 * kind (docs/supervisor.md, "The ledger", lists their fields), and where
 * each goes: RUN_DIR/ledger.jsonl, and the webhooks whose events take it.
 * defines: nw_sup_log, nw_sup_log_append, nw_sup_log_outcomes,
 *          nw_sup_log_drain, nw_sup_json_pids, nw_sup_entry_start,
 * nw_sup_entry_config_error, nw_sup_entry_end, nw_sup_entry_hang,
 * nw_sup_entry_failure, nw_sup_entry_recovery, nw_sup_entry_give_up,
 * nw_sup_entry_kill, nw_sup_entry_alert, nw_sup_entry_resumed,
 * nw_sup_entry_checkpoint_error, nw_sup_entry_checkpoint_skipped,
 * nw_sup_entry_reload
 *
 * Every builder returns a new reference (NULL when out of memory, which
 * append takes as a failed entry); append steals it. */
#ifndef NW_SUP_LEDGER_H
#define NW_SUP_LEDGER_H

#include <jansson.h>

#include "alerts/webhook.h"          // defines: nw_alerter
#include "base/config.h"             // defines: nw_config
#include "protocol/ledger.h"         // defines: nw_ledger
#include "protocol/oom_report.h"     // defines: NW_RUN_ID_MAX
#include "recovery/policy.h"         // defines: nw_decision
#include "supervisor/sup_progress.h" // defines: nw_sup_progress
#include "supervisor/sup_recover.h"  // defines: nw_sup_exit, nw_sup_verdict

typedef struct {
  nw_ledger ledger;
  nw_alerter *alerter; /* NULL: no webhook configured */
  char run_id[NW_RUN_ID_MAX];
  int starts; /* start entries so far: only the run's first one alerts */
} nw_sup_log;

/* Appends entry with the run id (a failing ledger is logged, never fatal)
 * and hands it to the webhooks whose events include it; steals entry. */
void nw_sup_log_append(nw_sup_log *l, json_t *entry);
/* Finished deliveries, into the ledger (never posted again: "delivery" is
 * not an event any hook takes). */
void nw_sup_log_outcomes(nw_sup_log *l);
/* At exit: the last alerts get drain_timeout to go out, every outcome goes
 * into the ledger, and the ledger closes. */
void nw_sup_log_drain(nw_sup_log *l);

/* [pid, ...] */
json_t *nw_sup_json_pids(const int *pids, int n);
/* start: every rank's pid, the start's number, the settings. */
json_t *nw_sup_entry_start(const int *pids, int n, int start,
                           const nw_config *cfg);
/* config-error: a trainer that cannot run. pid <= 0: none started. */
json_t *nw_sup_entry_config_error(const char *evidence, int pid, int code);
/* stop or finish. pid <= 0: no trainer was running; checkpoint < 0: not
 * known (else whether its stop checkpoint is durable). */
json_t *nw_sup_entry_end(const char *event, const char *evidence, int pid,
                         int code, int step, int checkpoint);
/* hang: no heartbeat; what the supervisor does about it. */
json_t *nw_sup_entry_hang(const char *evidence, int pid, int step);
/* oom, crash or hang: the exit and its verdict. */
json_t *nw_sup_entry_failure(const nw_sup_exit *x, const nw_sup_verdict *v);
/* recovery: the decision, the settings before (stolen) and after. */
json_t *nw_sup_entry_recovery(const nw_sup_verdict *v, const nw_decision *d,
                              json_t *before, const nw_config *after,
                              int failed_step);
/* give-up: why, with the settings in force. */
json_t *nw_sup_entry_give_up(const char *cause_name, const char *reason,
                             const nw_config *cfg, int recoveries);
/* kill: the duplicates SIGTERMed (stolen), the grace. */
json_t *nw_sup_entry_kill(json_t *pids, double grace);
/* "checkpoint-error": a write of the trainer's failed (it goes on, up to
 * checkpoint.max_failures in a row); "checkpoint-skipped": at resume, a
 * checkpoint failed verification and was moved aside. */
json_t *nw_sup_entry_checkpoint_error(int pid, int step, const char *error);
json_t *nw_sup_entry_checkpoint_skipped(int pid, const char *path,
                                        const char *reason,
                                        const char *moved_to);
/* alert about processes on the device that are not ours: key "pids" or
 * "processes" (what, stolen); wait_s < 0: none. */
json_t *nw_sup_entry_alert(const char *evidence, const char *key, json_t *what,
                           double wait_s);
/* resumed: the first step of the trainer after an outage that began at
 * fail_t with failed_step completed; p: the new trainer's progress. */
json_t *nw_sup_entry_resumed(int pid, const nw_sup_progress *p, int failed_step,
                             double fail_t, double spawn_t, double now);
/* reload: a policy file taken (ok) or refused with its errors. */
json_t *nw_sup_entry_reload(const char *path, int ok, const char *evidence);

#endif
