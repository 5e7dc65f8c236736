/* supervisor_internal.h — the supervisor's state, shared by its files:
 * supervisor.c (loop, states, status lines), sup_recover.c (what a
 * trainer's exit means and what to do about it) and sup_notify.c (what
 * systemd is told). Not a public API.
 * defines: nw_sup, nw_sup_stop_reason, nw_sup_* internals */
#ifndef NW_SUPERVISOR_INTERNAL_H
#define NW_SUPERVISOR_INTERNAL_H

#include <stdint.h>

#include "alerts/webhook.h"
#include "protocol/ledger.h"
#include "recovery/classify.h"
#include "recovery/policy.h"
#include "supervisor/notify.h"
#include "supervisor/sup_child.h"
#include "supervisor/supervisor.h"

typedef enum {
  NW_SUP_STOP_NONE,
  NW_SUP_STOP_REQUESTED, /* SIGTERM/SIGINT to the supervisor */
  NW_SUP_STOP_HANG,      /* no heartbeat for hang_timeout */
} nw_sup_stop_reason;

#define NW_SUP_MAX_KILL NW_CLASSIFY_MAX_PIDS

/* One trainer process: rank r of the data-parallel world. */
typedef struct {
  nw_child child;   /* pid 0: none */
  char line[16384]; /* partial status line */
  size_t line_len;
  char err_tail[128]; /* end of a foreign trainer's stderr, for matches */
  int wstatus;        /* its wait status, once reaped */
} nw_sup_rank;

/* What systemd has been told (sup_notify.c, docs/operations.md). */
typedef struct {
  nw_notify n;
  int ready;           /* READY=1 sent: once per run, at the first step */
  int stopping;        /* STOPPING=1 sent */
  int shown_state;     /* nw_sup_state of the last STATUS; -1: none yet */
  int have_loss;       /* a step line gave a loss to show */
  int dirty;           /* progress newer than the last STATUS */
  double status_t;     /* when the last STATUS went */
  double extend_every; /* EXTEND_TIMEOUT_USEC period while stopping */
  double extend_at;    /* next EXTEND_TIMEOUT_USEC; 0: none */
} nw_sup_notify;

typedef struct {
  const nw_sup_options *opt;
  nw_config cfg;    /* settings in force: recovery changes them */
  nw_policy policy; /* SIGHUP swaps it only when the new file is good */
  nw_recovery_history hist;
  char run_id[NW_RUN_ID_MAX];
  nw_sup_state state;
  nw_sup_stop_reason stop_reason;
  int exit_code; /* for the terminal states */

  int sigfd;
  nw_ledger ledger;
  nw_alerter *alerter; /* NULL: no webhook configured */
  nw_sup_notify notify;

  /* the trainers: one per rank, started and ended together */
  nw_sup_rank rank[NW_SUP_MAX_RANKS];
  int n_ranks;          /* started by the last start */
  int n_live;           /* of those, not reaped yet */
  int fail_rank;        /* the first to fail since the start; -1: none */
  char comm[160];       /* NIGHTWATCH_COMM of the last start */
  char fail_device[96]; /* the failing rank's device (nw_world_device_name) */
  char fail_gpu[32];    /* its GPU as NVML names it; "": a CPU device */
  int starts;           /* starts of the ranks */
  double spawn_t;       /* monotonic time of the fork */
  double last_line_t;   /* of the last status line of any rank */
  double deadline;      /* of the current state; 0: none */
  int stderr_oom;       /* a foreign trainer printed an out-of-memory message */
  int seen_stop, seen_finish, seen_oom;
  uint64_t oom_kill_before; /* cgroup counter at the fork */
  int oom_kill_known;

  /* progress, from status lines */
  int step, start_step, total_steps;
  double loss;
  int micro, accum, seq_len;
  double last_status_write;
  int recoveries;

  /* the failure being recovered, until the first step of the new trainer */
  int pending_resume;
  double fail_t;          /* when the failure was seen */
  int failed_step;        /* steps completed when it failed */
  int resume_failed_step; /* that of the first failure of the outage */
  double start_line_t, resume_line_t;
  int resume_step; /* -1: no resume line */

  /* BACKOFF / WAITING_FOREIGN */
  double restart_at;
  int kill_pidfd[NW_SUP_MAX_KILL], kill_pid[NW_SUP_MAX_KILL], n_kill;
  double kill_deadline; /* SIGKILL what is left; 0: sent */
  double foreign_until;
  int foreign_pids[NW_CLASSIFY_MAX_PIDS], n_foreign;
} nw_sup;

void nw_sup_set_state(nw_sup *s, nw_sup_state st, double deadline);
/* Appends to the ledger (a failing ledger is logged, never fatal) and hands
 * the entry to the webhooks whose events include it; steals entry. */
void nw_sup_ledger(nw_sup *s, json_t *entry);

/* A status line of rank r (supervisor.c). */
void nw_sup_on_line(nw_sup *s, int r, const char *text, double now);

/* sup_ranks.c */
/* Starts every rank of the world (a failure to start is final). */
void nw_sup_start(nw_sup *s);
/* sig to the process group of every rank not reaped yet. */
void nw_sup_signal_ranks(nw_sup *s, int sig);
/* Reads rank r's status pipe (its stderr, for a foreign trainer); 1 when
 * lines (output) arrived. */
int nw_sup_read_status(nw_sup *s, int r, double now);
int nw_sup_read_stderr(nw_sup *s, int r);
/* Rank r was reaped: the first to fail has its peers killed; after the
 * last, nw_sup_on_exit decides about the world. */
void nw_sup_rank_exited(nw_sup *s, int r, int wstatus);
void nw_sup_ranks_close(nw_sup *s);

/* sup_recover.c */
/* Every rank is gone; rank r (the first that failed, else 0) exited with
 * wait status wstatus: the next state. */
void nw_sup_on_exit(nw_sup *s, int r, int wstatus);
/* A duplicate's pidfd became readable, or the kill deadline passed. */
void nw_sup_kill_poll(nw_sup *s, double now);
/* WAITING_FOREIGN's deadline: re-check the device, alert, go to BACKOFF. */
void nw_sup_foreign_recheck(nw_sup *s, double now);
/* cgroup memory oom_kill counter (v2 memory.events or v1 oom_control). */
int nw_sup_oom_kill_count(uint64_t *out);

/* sup_notify.c: the systemd notify protocol. Every message is sent by the
 * supervisor's loop thread; none of these ever blocks the loop for long (a
 * datagram) or fails the run. */
void nw_sup_notify_init(nw_sup *s, double now);
/* A step line arrived: READY=1 the first time, else a STATUS is due. */
void nw_sup_notify_step(nw_sup *s, double now);
/* The state changed (nw_sup_set_state): a STATUS now, STOPPING=1 when the
 * supervisor is about to exit. */
void nw_sup_notify_state(nw_sup *s, double now);
/* A stop request (SIGTERM/SIGINT), after its transition: STOPPING=1 and,
 * while a trainer writes its stop checkpoint, EXTEND_TIMEOUT_USEC. */
void nw_sup_notify_stop(nw_sup *s, double now);
/* Around a SIGHUP reload: RELOADING=1 (begin 1), READY=1 (begin 0). */
void nw_sup_notify_reload(nw_sup *s, int begin);
/* End of every loop iteration: state STATUS, due STATUS, extension, ping. */
void nw_sup_notify_tick(nw_sup *s, double now);
/* Earliest notify deadline (monotonic), 0 when none: part of the loop's
 * ppoll timeout. */
double nw_sup_notify_deadline(const nw_sup *s);

#endif
