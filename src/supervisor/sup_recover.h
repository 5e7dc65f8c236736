/* sup_recover.h — what a trainer's exit means and what to do about it, in
 * three steps the state machine (sup_machine.c) runs one after another:
 *
 *   observe   I/O    the exit status, the OOM report (if it is this
 *                    trainer's), the cgroup's OOM-killer counter and the
 *                    failing rank's device            -> nw_sup_exit
 *   classify  pure   recovery/classify.h, and the supervisor's own words
 *                    about hangs and kills            -> nw_sup_verdict
 *   decide    pure   recovery/policy.h, the new settings validated
 *                                                     -> nw_decision
 *
 * Acting on the decision (kills, the wait for foreign processes, the
 * backoff, giving up) is the state machine's; the ledger entries are
 * sup_ledger.c's.
 * defines: nw_sup_exit, nw_sup_exit_device, nw_sup_end, nw_sup_verdict,
 *          nw_sup_observe, nw_sup_classify, nw_sup_decide,
 *          nw_sup_oom_kill_count */
#ifndef NW_SUP_RECOVER_H
#define NW_SUP_RECOVER_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"             // defines: nw_config, NW_PATH_MAX
#include "base/runlock.h"            // defines: nw_runlock_holder_info
#include "device/procs.h"            // defines: nw_device_ref
#include "protocol/oom_report.h"     // defines: nw_oom_report
#include "recovery/classify.h"       // defines: nw_observations, nw_classify
#include "recovery/policy.h"         // defines: nw_policy, nw_decision
#include "supervisor/sup_progress.h" // defines: nw_sup_progress
#include "supervisor/sup_ranks.h"    // defines: nw_sup_ranks

/* What the supervisor saw of one exit of the world (its primary rank). */
typedef struct {
  int rank, world, pid; /* the rank the recovery is about, of how many */
  int code;             /* its exit code; -1 when a signal ended it */
  int sig;              /* that signal; 0 when it exited */
  char how[128];        /* "exit code 75", "killed by signal 9 (Killed)" */
  int stop_requested;   /* the supervisor had asked it to stop */
  int hang;             /* the supervisor had stopped it for a hang */
  int step;             /* its last step line */
  int seen_finish, seen_stop; /* its finish and stop lines */
  int failed_step;            /* steps the run had completed at the failure */
  int have_report;            /* report is this trainer's */
  char report_path[NW_PATH_MAX + 32];
  nw_oom_report report;
  char device[96];     /* the failing rank's device (nw_world_device_name) */
  char gpu[32];        /* its GPU as NVML names it; "": a CPU device, or a
                          GPU that cannot be named (no process on it is
                          then ever killed) */
  int oom_kill_known;  /* the cgroup's counter could be read */
  nw_observations obs; /* for the classifier */
  /* storage (exit 74 or 65): what the status lines said */
  char ckpt_error[1024]; /* the last failed write, "" when none */
  int ckpt_errors;       /* failed writes of this start */
  int skipped;           /* checkpoints skipped at its resume */
  char run_dir[NW_PATH_MAX];
  /* exit 73: who holds RUN_DIR/trainer.lock, and whether that proves a
   * duplicate of this run (our uid, our run id in the file) */
  nw_runlock_holder_info lock;
  long lock_uid;
  int lock_ours;
} nw_sup_exit;

/* The device whose holders the recovery asks about. */
nw_device_ref nw_sup_exit_device(const nw_sup_exit *x);

typedef enum {
  NW_SUP_END_STOPPED,  /* stopped on our request: the run is over */
  NW_SUP_END_FINISHED, /* exit 0: ran to its end, or stopped from elsewhere */
  NW_SUP_END_REFUSED,  /* exit 64 or 78: refused its settings; never retried */
  NW_SUP_END_STORAGE,  /* exit 74 or 65: checkpoints cannot be written, or
                          none verifies: never retried (class storage) */
  NW_SUP_END_LOCKED,   /* exit 73 and the trainer lock's holder is not
                          provably ours: never killed, never retried */
  NW_SUP_END_FAILED,   /* a failure: decided by the policy */
} nw_sup_end;

typedef struct {
  nw_sup_end end;
  const char *event;      /* the ledger's: stop, finish, config-error, oom,
                             crash, hang */
  nw_cause cause;         /* what the policy decides on (unknown: a hang) */
  const char *cause_name; /* the ledger's ("hang" for a hang) */
  char evidence[1400];    /* sentences a person can check */
  nw_classification cls;  /* the classifier's, for a failure */
} nw_sup_verdict;

/* Observes the exit of the world whose last rank was just reaped. */
void nw_sup_observe(nw_sup_exit *x, const nw_sup_ranks *rk,
                    const nw_sup_progress *p, const nw_config *cfg,
                    const char *run_id, int stop_requested, int hang);

/* What the exit was, and for a failure its cause with the evidence. cfg:
 * the settings in force (for the estimator). Pure. */
void nw_sup_classify(const nw_config *cfg, const nw_sup_exit *x,
                     nw_sup_verdict *v);

/* The policy's decision about a failure, its new settings validated. 0:
 * recover as *d says; 1: give up, reason saying why. Updates h as
 * nw_policy_decide does. Pure. */
int nw_sup_decide(const nw_policy *p, const nw_config *cfg,
                  nw_recovery_history *h, const nw_sup_verdict *v, double now,
                  nw_decision *d, char *reason, size_t reasonlen);

/* The cgroup's memory oom_kill counter (v2 memory.events or v1
 * memory.oom_control): 0, or NW_ENOTFOUND. */
int nw_sup_oom_kill_count(uint64_t *out);

#endif
