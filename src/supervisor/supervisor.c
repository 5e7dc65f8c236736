/* supervisor.c — the event loop of `nightwatch run`.
 *
 * One ppoll over: the signalfd (SIGTERM, SIGINT, SIGHUP, SIGCHLD, all
 * blocked), each rank's pidfd (its exit), its status pipe (the heartbeat),
 * a foreign trainer's stderr, the webhooks' outcome fd, and the pidfds of
 * duplicates being killed. The timeout is the earliest of the state's
 * deadline (nw_sup_deadline) and systemd's (the watchdog ping, a due
 * STATUS). What comes in becomes events for the state machine
 * (sup_machine.c); the loop itself decides nothing. */
#define _GNU_SOURCE
#include "supervisor/supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base/clock.h"          // defines: nw_clock_now, nw_clock_timespec
#include "base/error.h"          // defines: NW_E*
#include "base/fsutil.h"         // defines: nw_mkdir_p
#include "base/log.h"            // defines: nw_info, nw_error
#include "base/run_id.h"         // defines: nw_run_id
#include "base/runlock.h"        // defines: nw_runlock_acquire
#include "protocol/exit_codes.h" // defines: NW_EXIT_*
#include "supervisor/sup_internal.h"

const char *nw_sup_state_name(nw_sup_state s) {
  switch (s) {
  case NW_SUP_STARTING:
    return "starting";
  case NW_SUP_RUNNING:
    return "running";
  case NW_SUP_STOPPING:
    return "stopping";
  case NW_SUP_BACKOFF:
    return "backoff";
  case NW_SUP_WAITING_FOREIGN:
    return "waiting-foreign";
  case NW_SUP_FINISHED:
    return "finished";
  case NW_SUP_GAVE_UP:
    return "gave-up";
  }
  return "invalid";
}

/* ---- one turn of the loop ---- */

/* The descriptors of one ppoll, and where each rank's are (-1: none). */
typedef struct {
  struct pollfd fd[2 + 3 * NW_SUP_MAX_RANKS + NW_SUP_MAX_KILL];
  int n;
  int alert; /* the alerter's outcome fd */
  int pid[NW_SUP_MAX_RANKS], status[NW_SUP_MAX_RANKS], err[NW_SUP_MAX_RANKS];
  int kill, n_kill; /* the duplicates' pidfds */
} nw_sup_pollset;

static int nw_sup_poll_add(nw_sup_pollset *ps, int fd) {
  ps->fd[ps->n] = (struct pollfd){.fd = fd, .events = POLLIN};
  return ps->n++;
}

static void nw_sup_poll_build(const nw_sup *s, int sigfd, nw_sup_pollset *ps) {
  ps->n = 0;
  ps->alert = ps->kill = -1;
  nw_sup_poll_add(ps, sigfd);
  if (nw_alerter_fd(s->log.alerter) >= 0)
    ps->alert = nw_sup_poll_add(ps, nw_alerter_fd(s->log.alerter));
  for (int k = 0; k < s->ranks.n; k++) {
    const nw_child *c = &s->ranks.rank[k].child;
    ps->pid[k] = ps->status[k] = ps->err[k] = -1;
    if (c->pid > 0 && !c->reaped)
      ps->pid[k] = nw_sup_poll_add(ps, c->pidfd);
    if (c->status_fd >= 0)
      ps->status[k] = nw_sup_poll_add(ps, c->status_fd);
    if (c->stderr_fd >= 0)
      ps->err[k] = nw_sup_poll_add(ps, c->stderr_fd);
  }
  ps->n_kill = s->kills.n;
  for (int k = 0; k < s->kills.n; k++) {
    int i = nw_sup_poll_add(ps, s->kills.pidfd[k]);
    if (k == 0)
      ps->kill = i;
  }
}

static void nw_sup_on_signals(nw_sup *s, int sigfd, double now) {
  struct signalfd_siginfo si;
  while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    nw_sup_event e = {.now = now};
    switch (si.ssi_signo) {
    case SIGTERM:
    case SIGINT:
      e.kind = NW_SUP_EV_STOP;
      e.text = si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT";
      nw_sup_dispatch(s, &e);
      break;
    case SIGHUP:
      e.kind = NW_SUP_EV_RELOAD;
      nw_sup_dispatch(s, &e);
      break;
    default: /* SIGCHLD: the pidfd says which child and when */
      break;
    }
  }
}

/* Rank k's status lines, each an event; 1 when any bytes came. */
static int nw_sup_read_lines(nw_sup *s, int k, double now) {
  nw_sup_rank *rk = &s->ranks.rank[k];
  int got = 0;
  while (nw_sup_rank_fill(rk)) {
    const char *line;
    got = 1;
    while ((line = nw_sup_rank_line(rk))) {
      nw_sup_event e = {
          .kind = NW_SUP_EV_LINE, .now = now, .rank = k, .text = line};
      nw_sup_dispatch(s, &e);
    }
  }
  return got;
}

/* Status lines and a foreign trainer's output; 1 when any came. */
static int nw_sup_read_ranks(nw_sup *s, const nw_sup_pollset *ps, double now) {
  int beat = 0;
  for (int k = 0; k < s->ranks.n; k++) {
    const nw_child *c = &s->ranks.rank[k].child;
    if (ps->status[k] >= 0 && ps->fd[ps->status[k]].revents &&
        c->status_fd >= 0)
      beat |= nw_sup_read_lines(s, k, now);
    /* a foreign trainer's output counts as a heartbeat too */
    if (ps->err[k] >= 0 && ps->fd[ps->err[k]].revents && c->stderr_fd >= 0 &&
        nw_sup_rank_read_stderr(&s->ranks, k)) {
      nw_sup_event e = {.kind = NW_SUP_EV_OUTPUT, .now = now, .rank = k};
      nw_sup_dispatch(s, &e);
      beat = 1;
    }
  }
  return beat;
}

/* Ranks that exited: what each wrote before dying (the oom line, the last
 * step) first, then its exit. */
static int nw_sup_reap_ranks(nw_sup *s, const nw_sup_pollset *ps, double now) {
  for (int k = 0; k < s->ranks.n; k++) {
    nw_child *c = &s->ranks.rank[k].child;
    if (ps->pid[k] < 0 || !ps->fd[ps->pid[k]].revents || c->pid <= 0 ||
        c->reaped)
      continue;
    int wstatus = 0, rr = nw_child_reap(c, &wstatus);
    if (rr < 0) {
      nw_error("waitpid %d: %s", (int)c->pid, strerror(errno));
      return NW_ESYS;
    }
    if (rr == 0)
      continue;
    nw_sup_read_lines(s, k, now);
    while (c->stderr_fd >= 0 && nw_sup_rank_read_stderr(&s->ranks, k))
      ;
    nw_sup_event e = {
        .kind = NW_SUP_EV_EXITED, .now = now, .rank = k, .wstatus = wstatus};
    nw_sup_dispatch(s, &e);
  }
  return 0;
}

static int nw_sup_on_ready(nw_sup *s, int sigfd, const nw_sup_pollset *ps,
                           double now) {
  if (ps->fd[0].revents & POLLIN)
    nw_sup_on_signals(s, sigfd, now);
  if (ps->alert >= 0 && ps->fd[ps->alert].revents)
    nw_sup_log_outcomes(&s->log);
  if (nw_sup_read_ranks(s, ps, now))
    nw_sup_status_due(s, now); /* progress */
  int rc = nw_sup_reap_ranks(s, ps, now);
  if (rc < 0)
    return rc;
  int gone = 0;
  for (int k = 0; ps->kill >= 0 && k < ps->n_kill; k++)
    gone |= ps->fd[ps->kill + k].revents != 0;
  if (gone && s->kills.n > 0 && nw_sup_kills_reap(&s->kills) == 0) {
    nw_sup_event e = {.kind = NW_SUP_EV_DUPS_GONE, .now = now};
    nw_sup_dispatch(s, &e);
  }
  return 0;
}

/* The state's deadline, if it has passed. Its transition must change the
 * state (or a sub-state) or move the deadline: anything else would wake
 * the loop again at once, forever. */
static int nw_sup_on_deadline(nw_sup *s, double now) {
  double dl = nw_sup_deadline(s);
  if (dl <= 0 || now < dl)
    return 0;
  nw_sup_state st = s->state;
  nw_sup_kill_phase stop = s->stop.phase, kills = s->kills.phase;
  nw_sup_event e = {.kind = NW_SUP_EV_DEADLINE, .now = now};
  nw_sup_dispatch(s, &e);
  if (s->state == st && s->stop.phase == stop && s->kills.phase == kills &&
      nw_sup_deadline(s) == dl) {
    nw_error("internal error: the %s deadline passed and nothing changed",
             nw_sup_state_name(st));
    return NW_EINTERNAL;
  }
  return 0;
}

/* The earlier of two deadlines; 0 (none) counts as never. */
static double nw_sup_earliest(double a, double b) {
  if (a <= 0)
    return b;
  return b > 0 && b < a ? b : a;
}

static int nw_sup_loop(nw_sup *s, int sigfd) {
  while (s->state != NW_SUP_FINISHED && s->state != NW_SUP_GAVE_UP) {
    nw_sup_pollset ps;
    nw_sup_poll_build(s, sigfd, &ps);
    /* the state's deadline, and what is due to systemd (the watchdog ping,
     * a STATUS held back) and to status.json */
    double now = nw_clock_now();
    double dl =
        nw_sup_earliest(nw_sup_deadline(s), nw_sup_notify_deadline(&s->notify));
    dl = nw_sup_earliest(dl, nw_sup_status_deadline(s));
    struct timespec ts, *tp = NULL;
    if (dl > 0) {
      ts = nw_clock_timespec(dl > now ? dl - now : 0);
      tp = &ts;
    }
    int r = ppoll(ps.fd, (nfds_t)ps.n, tp, NULL);
    if (r < 0 && errno != EINTR) {
      nw_error("ppoll: %s", strerror(errno));
      return NW_ESYS;
    }
    now = nw_clock_now();
    int rc = r > 0 ? nw_sup_on_ready(s, sigfd, &ps, now) : 0;
    if (rc == 0)
      rc = nw_sup_on_deadline(s, now);
    if (rc < 0)
      return rc;
    nw_sup_status_flush(s, now);
    /* last: the watchdog ping says this iteration came round whole */
    nw_sup_summary v;
    nw_sup_summarize(s, &v);
    nw_sup_notify_tick(&s->notify, &v, nw_clock_now());
  }
  return 0;
}

/* ---- the run ---- */

/* The signals the loop reads from its signalfd (blocked, *old: the mask
 * before), and the fd; -1 with err on failure. */
static int nw_sup_signals(sigset_t *old, char *err, size_t errlen) {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, old);
  signal(SIGPIPE, SIG_IGN); /* a reader of our stderr that went away */
  int fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0)
    snprintf(err, errlen, "signalfd: %s", strerror(errno));
  return fd;
}

/* From the first start to a terminal state, with the run locked and the
 * ledger open; the supervisor's exit code. */
static int nw_sup_supervise(nw_sup *s, char *err, size_t errlen) {
  sigset_t old;
  int sigfd = nw_sup_signals(&old, err, errlen), rc = NW_EXIT_FAILURE;
  if (sigfd < 0)
    goto out;
  /* after the mask: the worker threads inherit it and never take them */
  if (nw_alerter_start(&s->log.alerter, &s->cfg.alert, s->log.run_id, err,
                       errlen) < 0) {
    nw_sup_log_append(&s->log, nw_sup_entry_config_error(err, 0, 0));
    rc = NW_EXIT_CONFIG;
    goto out;
  }
  nw_log_set_run(s->log.run_id);
  nw_info("supervising run %s in %s (pid %d)", s->log.run_id, s->cfg.run.dir,
          (int)getpid());
  double now = nw_clock_now();
  nw_sup_notify_init(&s->notify, s->cfg.supervisor.kill_grace, now);
  /* the first start is a backoff that ends at once */
  s->state = NW_SUP_BACKOFF;
  s->restart_at = now;
  nw_sup_event first = {.kind = NW_SUP_EV_DEADLINE, .now = now};
  nw_sup_dispatch(s, &first);
  if (nw_sup_loop(s, sigfd) < 0) {
    snprintf(err, errlen, "event loop failed");
    s->exit_code = NW_EXIT_FAILURE;
  }
  rc = s->exit_code;
  if (rc != 0 && !err[0])
    snprintf(err, errlen, "%s",
             s->state == NW_SUP_GAVE_UP ? "gave up (see the ledger)"
                                        : "failed");
out:
  /* leaving with a trainer alive (the loop failed): take it down */
  nw_sup_ranks_kill_all(&s->ranks);
  nw_sup_ranks_close(&s->ranks);
  nw_sup_kills_forget(&s->kills, 0);
  if (sigfd >= 0)
    close(sigfd);
  /* the last alerts (give-up, finish) get drain_timeout to go out; every
   * outcome is in the ledger before it closes */
  nw_sup_log_drain(&s->log);
  sigprocmask(SIG_SETMASK, &old, NULL);
  return rc;
}

static int nw_sup_run(nw_sup *s, const nw_sup_options *o, char *err,
                      size_t errlen) {
  s->opt = o;
  s->cfg = o->cfg;
  s->policy = o->policy;
  s->log.ledger.fd = -1;
  nw_sup_kills_init(&s->kills);
  nw_sup_progress_init(&s->progress);
  nw_recovery_history_init(&s->rec.hist);
  int holder = 0, rc;
  if (nw_mkdir_p(s->cfg.run.dir, err, errlen) < 0)
    return NW_EXIT_CONFIG;
  int lockfd = nw_runlock_acquire(s->cfg.run.dir, &holder, err, errlen);
  if (lockfd < 0)
    return NW_EXIT_FAILURE;
  rc = nw_run_id(&s->cfg, s->log.run_id, sizeof s->log.run_id, err, errlen);
  if (rc < 0)
    rc = rc == NW_ECONFIG ? NW_EXIT_CONFIG : NW_EXIT_FAILURE;
  else if (nw_ledger_open(&s->log.ledger, s->cfg.run.dir, err, errlen) < 0)
    rc = NW_EXIT_FAILURE;
  else
    rc = nw_sup_supervise(s, err, errlen);
  nw_runlock_release(lockfd);
  return rc;
}

int nw_supervisor_run(const nw_sup_options *o, char *err, size_t errlen) {
  /* one allocation for the whole state: a 16 KiB line buffer per rank is
   * too much for the stack */
  nw_sup *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of host memory");
    return NW_EXIT_FAILURE;
  }
  int rc = nw_sup_run(s, o, err, errlen);
  free(s);
  return rc;
}
