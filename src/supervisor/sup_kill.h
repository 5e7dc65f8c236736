/* sup_kill.h — stopping provable duplicates of this run: SIGTERM, a grace,
 * SIGKILL, a last wait, each through a pidfd so that a recycled pid is never
 * hit. docs/supervisor.md, "What an exit means".
 * defines: nw_sup_kill_phase, nw_sup_kills, NW_SUP_MAX_KILL,
 *          NW_SUP_KILL_WAIT, nw_sup_kills_init, nw_sup_kills_term,
 *          nw_sup_kills_term_lock_holder, nw_sup_pid_uid,
 *          nw_sup_kills_reap, nw_sup_kills_sigkill, nw_sup_kills_forget
 *
 * The phase is a sub-state of the recovery wait (backoff, waiting-foreign)
 * and of stopping the trainer: only the state machine (sup_machine.c)
 * moves it and derives its deadline from it. These functions only signal,
 * watch and forget processes. */
#ifndef NW_SUP_KILL_H
#define NW_SUP_KILL_H

#include "device/procs.h" // defines: nw_device_ref

#define NW_SUP_MAX_KILL 16   /* the classifier lists at most this many */
#define NW_SUP_KILL_WAIT 5.0 /* seconds to wait for them after SIGKILL */

typedef enum {
  NW_SUP_KILL_NONE, /* no duplicate is being killed */
  NW_SUP_KILL_TERM, /* SIGTERM sent; SIGKILL at `at` */
  NW_SUP_KILL_KILL, /* SIGKILL sent; waiting for them to go until `at` */
} nw_sup_kill_phase;

typedef struct {
  nw_sup_kill_phase phase;    /* the state machine's */
  double at;                  /* the phase's deadline (monotonic) */
  double grace;               /* SIGTERM to SIGKILL, as decided */
  int n;                      /* duplicates not gone yet */
  int pid[NW_SUP_MAX_KILL];   /* for messages only */
  int pidfd[NW_SUP_MAX_KILL]; /* pins each one: signals go through it */
} nw_sup_kills;

void nw_sup_kills_init(nw_sup_kills *k);

/* SIGTERM to pid, once a pidfd pins it and the proof holds again: it is on
 * dev now with our uid and (run_id non-NULL) this run id. 1 when signalled
 * (it is then tracked, and grace noted), 0 when not (gone, unproven, or no
 * room). */
int nw_sup_kills_term(nw_sup_kills *k, const nw_device_ref *dev, int pid,
                      const char *run_id, double grace);

/* The same for the holder of RUN_DIR/trainer.lock: it must still hold it,
 * with our uid and this run id written in it (a trainer started by hand on
 * a supervised run directory, or a stale one of an earlier supervisor). */
int nw_sup_kills_term_lock_holder(nw_sup_kills *k, const char *run_dir, int pid,
                                  const char *run_id, double grace);

/* The owner of /proc/PID, -1 when it is gone. */
long nw_sup_pid_uid(int pid);

/* Forgets the duplicates that are gone (their pidfd is readable); how many
 * are left. */
int nw_sup_kills_reap(nw_sup_kills *k);

/* SIGKILL to every duplicate left (the grace is over). */
void nw_sup_kills_sigkill(nw_sup_kills *k);

/* Forgets every duplicate left, closing its pidfd; after SIGKILL and the
 * last wait, each is logged as surviving it (a process in the kernel's
 * uninterruptible sleep). */
void nw_sup_kills_forget(nw_sup_kills *k, int survived);

#endif
