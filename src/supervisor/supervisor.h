/* supervisor.h — `nightwatch run`: keep one trainer alive.
 * defines: nw_sup_options, nw_sup_state, nw_sup_state_name,
 *          nw_supervisor_run, NW_SUP_MAX_RANKS
 *
 * One event loop (signalfd, the trainer's pidfd, its status pipe, a ppoll
 * timeout at the earliest deadline) around an explicit state machine;
 * docs/supervisor.md describes both. Its exit codes are NW_EXIT_* of
 * protocol/exit_codes.h, the one list both programs share. */
#ifndef NW_SUPERVISOR_H
#define NW_SUPERVISOR_H

#include "base/config.h"         // defines: nw_config
#include "protocol/exit_codes.h" // defines: NW_EXIT_*, what run returns
#include "recovery/policy.h"     // defines: nw_policy

/* Ranks one supervisor runs (world.size): the GPUs of one node at most;
 * more means one supervisor per node (docs/multi-gpu.md). */
#define NW_SUP_MAX_RANKS 16

typedef enum {
  NW_SUP_STARTING,        /* forked; no status line yet */
  NW_SUP_RUNNING,         /* status lines arrive: the heartbeat */
  NW_SUP_STOPPING,        /* SIGTERM sent (stop request or hang), grace */
  NW_SUP_BACKOFF,         /* trainer gone; waiting to restart */
  NW_SUP_WAITING_FOREIGN, /* foreign processes hold the device: wait, alert */
  NW_SUP_FINISHED,        /* terminal: exit 0 */
  NW_SUP_GAVE_UP,         /* terminal: exit 1 (or 78 for a config error) */
} nw_sup_state;

const char *nw_sup_state_name(nw_sup_state s);

typedef struct {
  const char *config_path; /* NULL: embedded defaults */
  char *const *sets;       /* "section.key=value", n_sets of them */
  int n_sets;              /* passed on to nightwatch-train too */
  const char *policy_path; /* NULL: built-in default (SIGHUP: none) */
  char *const *command;    /* foreign trainer argv, NULL-terminated; */
                           /* NULL: nightwatch-train */
  const char *train_bin;   /* path of nightwatch-train */
  int resume_none;         /* --resume none: the first start begins at step
                              0 on purpose (the run's checkpoints are moved
                              to superseded-<time>/); later starts resume */
  nw_config cfg;           /* loaded, set and validated */
  nw_policy policy;        /* loaded */
} nw_sup_options;

/* Runs the supervisor to the end. Returns an NW_EXIT_* code
 * (protocol/exit_codes.h); err says why when it is not 0. */
int nw_supervisor_run(const nw_sup_options *o, char *err, size_t errlen);

#endif
