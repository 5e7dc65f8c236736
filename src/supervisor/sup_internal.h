/* sup_internal.h — the supervisor's state, split by concern, and the two
 * layers between its loop and its parts. Not a public API.
 * defines: nw_sup, nw_sup_stop_reason, nw_sup_stop, nw_sup_recovery,
 *          nw_sup_event_kind, nw_sup_event, nw_sup_outcome, nw_sup_plan,
 *          nw_sup_dispatch, nw_sup_deadline, nw_sup_summarize,
 *          nw_sup_status_due, nw_sup_status_deadline,
 *          nw_sup_status_flush, nw_sup_act_*
 *
 * Who calls whom, never back up:
 *   supervisor.c   the loop: turns fds and signals into events
 *   sup_machine.c  the state machine: (state, event) -> transition, and
 *                  the one place that derives the loop's deadline
 *   sup_act.c      what a transition does: start, stop, the exit's
 *                  observe -> classify -> decide -> act; reports facts
 *                  (an outcome, a failed start), never sets a state
 *   sup_ranks.c, sup_progress.c, sup_kill.c, sup_recover.c, sup_ledger.c,
 *   sup_notify.c   one concern each; they know nothing of the above */
#ifndef NW_SUP_INTERNAL_H
#define NW_SUP_INTERNAL_H

#include "base/config.h"             // defines: nw_config
#include "recovery/policy.h"         // defines: nw_policy, ..._history
#include "supervisor/sup_kill.h"     // defines: nw_sup_kills
#include "supervisor/sup_ledger.h"   // defines: nw_sup_log
#include "supervisor/sup_notify.h"   // defines: nw_sup_notify
#include "supervisor/sup_progress.h" // defines: nw_sup_progress
#include "supervisor/sup_ranks.h"    // defines: nw_sup_ranks
#include "supervisor/sup_recover.h"  // defines: nw_sup_exit
#include "supervisor/supervisor.h"   // defines: nw_sup_state

/* Why a trainer is being stopped. */
typedef enum {
  NW_SUP_STOP_REQUESTED, /* SIGTERM/SIGINT to the supervisor */
  NW_SUP_STOP_HANG,      /* no heartbeat for supervisor.hang_timeout */
} nw_sup_stop_reason;

/* STOPPING's sub-state. */
typedef struct {
  nw_sup_stop_reason reason;
  nw_sup_kill_phase phase; /* TERM: SIGTERM sent, SIGKILL at kill_at;
                              KILL: SIGKILL sent, the pidfd tells when the
                              trainer is gone (no deadline) */
  double kill_at;
} nw_sup_stop;

/* What recovery has done in this run, and the outage being recovered: from
 * its first failure to the first step of a new trainer (a chain of
 * failures before a step, micro 32 -> 16 -> 8, is one outage). */
typedef struct {
  nw_recovery_history hist; /* the policy's view of the past */
  int recoveries;           /* decided so far */
  int pending;              /* an outage waits for its first step */
  double fail_t;            /* when its first failure was seen */
  int failed_step;          /* steps the run had completed then */
} nw_sup_recovery;

typedef struct {
  const nw_sup_options *opt;
  nw_config cfg;    /* settings in force: recovery changes them */
  nw_policy policy; /* SIGHUP swaps it only when the new file is good */

  /* the state, and the parameters its deadline is derived from */
  nw_sup_state state;
  nw_sup_stop stop;     /* STOPPING */
  nw_sup_kills kills;   /* BACKOFF, WAITING_FOREIGN: duplicates going */
  double restart_at;    /* BACKOFF: the next start, no earlier */
  double foreign_until; /* WAITING_FOREIGN: the device is checked again */
  int exit_code;        /* FINISHED, GAVE_UP: the supervisor's */
  int stopped;          /* FINISHED by a stop, not by the last step:
                           status.json says "stopped" */

  nw_sup_ranks ranks;       /* the trainers */
  nw_sup_progress progress; /* what their status lines said */
  nw_sup_recovery rec;      /* recovery history, the outage */
  nw_sup_exit exit;         /* the last exit of the world, observed */
  nw_sup_log log;           /* the ledger and the webhooks */
  nw_sup_notify notify;     /* systemd */
  double status_t;          /* the last write of status.json */
  int status_dirty;         /* it shows less than is known */
} nw_sup;

/* ---- the state machine (sup_machine.c) ---- */

typedef enum {
  NW_SUP_EV_LINE,      /* a status line of rank .rank: .text */
  NW_SUP_EV_OUTPUT,    /* a foreign trainer wrote to stderr: a heartbeat */
  NW_SUP_EV_EXITED,    /* rank .rank was reaped with .wstatus */
  NW_SUP_EV_DEADLINE,  /* nw_sup_deadline has passed */
  NW_SUP_EV_STOP,      /* SIGTERM or SIGINT (.text names it); twice while
                          stopping: SIGKILL now */
  NW_SUP_EV_DUPS_GONE, /* every duplicate being killed is gone */
  NW_SUP_EV_RELOAD,    /* SIGHUP: the policy file again */
} nw_sup_event_kind;

typedef struct {
  nw_sup_event_kind kind;
  double now;       /* monotonic */
  int rank;         /* LINE, EXITED */
  int wstatus;      /* EXITED */
  const char *text; /* LINE: the line; STOP: "SIGTERM" or "SIGINT" */
} nw_sup_event;

/* The transition function: every change of state happens here. */
void nw_sup_dispatch(nw_sup *s, const nw_sup_event *e);
/* The state's deadline (monotonic), 0 when it has none. When it passes,
 * NW_SUP_EV_DEADLINE always changes the state or moves this deadline
 * later: the loop never wakes for nothing. */
double nw_sup_deadline(const nw_sup *s);
/* What systemd's STATUS and the stop extension are made of. */
void nw_sup_summarize(const nw_sup *s, nw_sup_summary *v);
/* RUN_DIR/status.json, what `nightwatch status` shows, is due: a state
 * change or progress. Written atomically (and fsynced) at most four times a
 * second, and within a quarter of a second of being due: at once when the
 * last write is older, else at nw_sup_status_deadline; at once in a
 * terminal state (the supervisor is about to exit). */
void nw_sup_status_due(nw_sup *s, double now);
/* When a held-back write is due (monotonic); 0 when none is. */
double nw_sup_status_deadline(const nw_sup *s);
/* Writes what was held back, once its deadline has passed. */
void nw_sup_status_flush(nw_sup *s, double now);

/* ---- what transitions do (sup_act.c) ---- */

/* What the exit of a world comes to. */
typedef enum {
  NW_SUP_OUT_OVER,    /* the run is over (finished, stopped): exit_code */
  NW_SUP_OUT_GIVE_UP, /* never retried, or the policy gave up: exit_code */
  NW_SUP_OUT_RESTART, /* recovered: restart at restart_at */
  NW_SUP_OUT_WAIT,    /* recovered, but processes not ours hold the device:
                         wait until foreign_until first */
} nw_sup_outcome;

typedef struct {
  nw_sup_outcome outcome;
  double restart_at;    /* RESTART, WAIT: no start before this */
  double foreign_until; /* WAIT: the device is checked again then */
} nw_sup_plan;

/* Starts the world; 0, or a negative NW_E* (logged, in the ledger,
 * exit_code set): never retried. */
int nw_sup_act_start(nw_sup *s, double now);
/* SIGTERM to the trainer on a stop request (why: the signal's name). */
void nw_sup_act_stop_trainer(nw_sup *s, const char *why);
/* Rank r is the first of the world to fail: SIGKILL to its peers. */
void nw_sup_act_kill_peers(nw_sup *s, int r);
/* SIGKILL to the trainer now (second stop request, or the grace ran out;
 * why says which). */
void nw_sup_act_kill_trainer(nw_sup *s, const char *why);
/* No heartbeat: the hang entry, SIGTERM and SIGCONT to the trainer. */
void nw_sup_act_hang(nw_sup *s, double now);
/* A stop request with no trainer running: the stop entry, exit 0. */
void nw_sup_act_stop_idle(nw_sup *s, const char *why);
/* A checkpoint_error or checkpoint_skipped line: its ledger entry. */
void nw_sup_act_storage_line(nw_sup *s, nw_sup_line line);
/* The first step of a trainer: the resumed entry after an outage. */
void nw_sup_act_step(nw_sup *s, double now);
/* The last rank is gone: observe, classify, decide, act (the ledger, the
 * settings, the duplicates' SIGTERM, the alert). */
nw_sup_plan nw_sup_act_exit(nw_sup *s, int stop_requested, int hang,
                            double now);
/* WAITING_FOREIGN is over: the device again, an alert. */
void nw_sup_act_recheck(nw_sup *s, double now);
/* SIGHUP: a new policy replaces the old one only when it is good. */
void nw_sup_act_reload(nw_sup *s);

#endif
