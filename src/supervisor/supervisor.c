/* supervisor.c — the event loop and the state machine of `nightwatch run`.
 *
 * One ppoll over: the signalfd (SIGTERM, SIGINT, SIGHUP, SIGCHLD, all
 * blocked), the trainer's pidfd (its exit), its status pipe (the heartbeat),
 * a foreign trainer's stderr, and the pidfds of duplicates being killed. The
 * timeout is the earliest deadline, systemd's watchdog ping among them.
 * Every transition is a switch on nw_sup_state; sup_recover.c decides what
 * an exit means, sup_notify.c what systemd is told. */
#define _GNU_SOURCE
#include "supervisor/supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/run_id.h"
#include "base/runlock.h"
#include "checkpoints/ckpt.h"
#include "supervisor/supervisor_internal.h"

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

void nw_sup_ledger(nw_sup *s, json_t *entry) {
  const char *event = NULL;
  unsigned bit = 0;
  if (entry) {
    json_object_set_new(entry, "run_id", json_string(s->run_id));
    event = json_string_value(json_object_get(entry, "event"));
    bit = nw_alert_event_bit(event);
    /* the run's first start: later starts belong to recoveries */
    if (bit == NW_ALERT_EV_START && s->starts > 1)
      bit = 0;
  }
  char where[512] = "";
  if (bit) {
    nw_alerter_describe(s->alerter, event, where, sizeof where);
    /* every recovery says where its alert went, even "ledger only" */
    if (bit == NW_ALERT_EV_RECOVERY || strncmp(where, "ledger only", 11))
      json_object_set_new(entry, "delivery", json_string(where));
  }
  if (entry && bit) {
    /* the alert carries the ledger line's time: a receiver can match them */
    char now[40];
    nw_ledger_now_iso(now, sizeof now);
    json_object_set_new(entry, "time", json_string(now));
  }
  json_incref(entry);
  int rc = nw_ledger_append(&s->ledger, entry);
  if (rc < 0)
    nw_error("ledger %s: %s", s->ledger.path, nw_strerror(rc));
  if (bit)
    nw_alerter_post(s->alerter, entry);
  json_decref(entry);
}

/* Finished deliveries, into the ledger (never posted again: "delivery" is
 * not an event any hook takes). */
static void nw_sup_take_outcomes(nw_sup *s) {
  json_t *o;
  while ((o = nw_alerter_take(s->alerter)))
    nw_sup_ledger(s, o);
}

static void nw_sup_outcome_at_exit(void *user, json_t *outcome) {
  json_incref(outcome); /* borrowed here; nw_sup_ledger steals */
  nw_sup_ledger(user, outcome);
}

/* RUN_DIR/status.json, atomically: what `nightwatch status` shows. */
static void nw_sup_write_status(nw_sup *s, double now) {
  char now_iso[40], path[NW_PATH_MAX + 32], err[512];
  nw_ledger_now_iso(now_iso, sizeof now_iso);
  json_t *o = json_pack(
      "{s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:i, s:i, s:i, s:o, s:i, s:i}",
      "updated", now_iso, "state", nw_sup_state_name(s->state),
      "supervisor_pid", (int)getpid(), "trainer_pid", (int)s->rank[0].child.pid,
      "step", s->step, "steps", s->total_steps, "loss", s->loss, "seq_len",
      s->seq_len, "recoveries", s->recoveries, "starts", s->starts, "settings",
      nw_ledger_settings(&s->cfg), "hang_timeout_s",
      (int)s->cfg.supervisor.hang_timeout, "exit_code", s->exit_code);
  if (!o)
    return;
  json_object_set_new(o, "run_id", json_string(s->run_id));
  json_t *pids = json_array();
  for (int r = 0; r < s->n_ranks; r++)
    json_array_append_new(pids, json_integer(s->rank[r].child.pid));
  json_object_set_new(o, "trainer_pids", pids);
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!text)
    return;
  snprintf(path, sizeof path, "%s/status.json", s->cfg.run.dir);
  if (nw_write_file_atomic(path, text, strlen(text), err, sizeof err) < 0)
    nw_warn("status: %s", err);
  free(text);
  s->last_status_write = now;
}

void nw_sup_set_state(nw_sup *s, nw_sup_state st, double deadline) {
  if (st != s->state)
    nw_debug("state %s -> %s", nw_sup_state_name(s->state),
             nw_sup_state_name(st));
  s->state = st;
  s->deadline = deadline;
  double now = nw_clock_now();
  nw_sup_write_status(s, now);
  nw_sup_notify_state(s, now);
}

/* ---- status lines ---- */

static int nw_sup_int(json_t *o, const char *k, int def) {
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

void nw_sup_on_line(nw_sup *s, int r, const char *text, double now) {
  json_t *o = json_loads(text, 0, NULL);
  const char *ev = json_string_value(json_object_get(o, "event"));
  if (!ev) {
    json_decref(o);
    return; /* not ours: ignored, as unknown fields are */
  }
  /* every rank's line is a heartbeat; progress is rank 0's (all ranks take
   * the same steps), an oom line is news from any rank */
  if (r != 0) {
    if (!strcmp(ev, "oom"))
      s->seen_oom = 1;
    json_decref(o);
    return;
  }
  if (!strcmp(ev, "start")) {
    s->step = s->start_step = nw_sup_int(o, "step", 0);
    s->total_steps = nw_sup_int(o, "steps", s->total_steps);
    s->start_line_t = now;
    if (s->state == NW_SUP_STARTING)
      s->state = NW_SUP_RUNNING;
  } else if (!strcmp(ev, "resume")) {
    s->resume_step = nw_sup_int(o, "step", -1);
    s->resume_line_t = now;
  } else if (!strcmp(ev, "step")) {
    if (s->state == NW_SUP_STARTING) /* a foreign trainer without "start" */
      s->state = NW_SUP_RUNNING;
    s->step = nw_sup_int(o, "step", s->step);
    nw_log_set_step(s->step);
    s->loss = json_number_value(json_object_get(o, "loss"));
    s->seq_len = nw_sup_int(o, "seq_len", 0);
    if (s->pending_resume) {
      s->pending_resume = 0;
      int from = s->start_step;
      json_t *e = json_pack(
          "{s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f}", "event",
          "resumed", "pid", (int)s->rank[0].child.pid, "step", s->step,
          "resumed_from", from, "failed_step", s->resume_failed_step,
          "steps_lost", s->resume_failed_step - from, "seconds_to_recover",
          now - s->fail_t, "backoff_s", s->spawn_t - s->fail_t,
          "process_start_s",
          s->start_line_t > 0 ? s->start_line_t - s->spawn_t : -1.0,
          "first_step_s", now - s->spawn_t);
      if (e && s->resume_line_t > 0)
        json_object_set_new(e, "checkpoint_load_s",
                            json_real(s->resume_line_t - s->spawn_t));
      nw_info("resumed: step %d, %d steps lost, %.2f s from the failure",
              s->step, s->resume_failed_step - from, now - s->fail_t);
      nw_sup_ledger(s, e);
    }
    nw_sup_notify_step(s, now);
  } else if (!strcmp(ev, "stop")) {
    s->seen_stop = 1;
  } else if (!strcmp(ev, "finish")) {
    s->seen_finish = 1;
  } else if (!strcmp(ev, "oom")) {
    s->seen_oom = 1;
  }
  json_decref(o);
}

static void nw_sup_heartbeat(nw_sup *s, double now) {
  s->last_line_t = now;
  if (s->state == NW_SUP_STARTING || s->state == NW_SUP_RUNNING)
    s->deadline = now + s->cfg.supervisor.hang_timeout;
}

/* ---- signals, deadlines ---- */

static void nw_sup_stop(nw_sup *s, double now, const char *why) {
  switch (s->state) {
  case NW_SUP_STARTING:
  case NW_SUP_RUNNING:
    nw_info("%s: stopping the trainer (pid %d%s): SIGTERM, %.0f s grace", why,
            (int)s->rank[0].child.pid, s->n_ranks > 1 ? " and its peers" : "",
            s->cfg.supervisor.kill_grace);
    nw_sup_signal_ranks(s, SIGTERM);
    s->stop_reason = NW_SUP_STOP_REQUESTED;
    nw_sup_set_state(s, NW_SUP_STOPPING, now + s->cfg.supervisor.kill_grace);
    break;
  case NW_SUP_STOPPING:
    if (s->stop_reason == NW_SUP_STOP_REQUESTED) {
      /* asked twice (Ctrl-C twice): the person means now; the newest good
       * checkpoint stays what it was, a half-written one is a temporary */
      nw_warn("%s again while stopping: SIGKILL to the trainer now", why);
      nw_sup_signal_ranks(s, SIGKILL);
      s->deadline = 0; /* the pidfd tells when it is gone */
      break;
    }
    s->stop_reason = NW_SUP_STOP_REQUESTED; /* a hang stop becomes final */
    break;
  case NW_SUP_BACKOFF:
  case NW_SUP_WAITING_FOREIGN:
    nw_info("%s: no trainer running; stopping", why);
    nw_sup_ledger(s, json_pack("{s:s, s:s, s:i}", "event", "stop", "evidence",
                               why, "step", s->step));
    s->exit_code = NW_SUP_EXIT_FINISHED;
    nw_sup_set_state(s, NW_SUP_FINISHED, 0);
    break;
  case NW_SUP_FINISHED:
  case NW_SUP_GAVE_UP:
    break;
  }
  nw_sup_notify_stop(s, now);
}

static void nw_sup_policy_error(void *user, const char *name, int line,
                                const char *msg) {
  int *n = user;
  (*n)++;
  nw_error("%s:%d: %s", name, line, msg);
}

/* SIGHUP: a new policy replaces the old one only when it is good. */
static void nw_sup_reload(nw_sup *s) {
  const char *path = s->opt->policy_path;
  if (!path) {
    nw_info("SIGHUP: no policy file (built-in default); nothing to reload");
    return;
  }
  nw_policy p;
  int nerr = 0;
  char err[4096] = "";
  int rc =
      nw_policy_load_cb(path, &p, nw_sup_policy_error, &nerr, err, sizeof err);
  if (rc < 0) {
    nw_error("SIGHUP: %s refused (%d error%s); the previous policy stays", path,
             nerr, nerr == 1 ? "" : "s");
    nw_sup_ledger(s, json_pack("{s:s, s:s, s:b, s:s}", "event", "reload",
                               "policy", path, "ok", 0, "evidence", err));
    return;
  }
  s->policy = p;
  nw_info("SIGHUP: policy %s reloaded", path);
  nw_sup_ledger(s, json_pack("{s:s, s:s, s:b}", "event", "reload", "policy",
                             path, "ok", 1));
}

static void nw_sup_on_signals(nw_sup *s, double now) {
  struct signalfd_siginfo si;
  while (read(s->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
    switch (si.ssi_signo) {
    case SIGTERM:
    case SIGINT:
      nw_sup_stop(s, now, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
      break;
    case SIGHUP:
      nw_sup_notify_reload(s, 1);
      nw_sup_reload(s);
      nw_sup_notify_reload(s, 0);
      break;
    default: /* SIGCHLD: the pidfd says which child and when */
      break;
    }
  }
}

static void nw_sup_on_deadline(nw_sup *s, double now) {
  switch (s->state) {
  case NW_SUP_STARTING:
  case NW_SUP_RUNNING: {
    char ev[512];
    snprintf(ev, sizeof ev,
             "no status line for %.1f s (supervisor.hang_timeout %.1f s) "
             "after step %d; SIGTERM and SIGCONT to the process group, "
             "SIGKILL after %.1f s",
             now - s->last_line_t, s->cfg.supervisor.hang_timeout, s->step,
             s->cfg.supervisor.kill_grace);
    nw_warn("trainer %d hangs: %s", (int)s->rank[0].child.pid, ev);
    nw_sup_ledger(s, json_pack("{s:s, s:s, s:s, s:i, s:i}", "event", "hang",
                               "cause", "hang", "evidence", ev, "pid",
                               (int)s->rank[0].child.pid, "step", s->step));
    /* SIGCONT: a stopped trainer gets to checkpoint on the SIGTERM */
    nw_sup_signal_ranks(s, SIGTERM);
    nw_sup_signal_ranks(s, SIGCONT);
    s->stop_reason = NW_SUP_STOP_HANG;
    nw_sup_set_state(s, NW_SUP_STOPPING, now + s->cfg.supervisor.kill_grace);
    break;
  }
  case NW_SUP_STOPPING:
    nw_warn("trainer %d still there after %.1f s: SIGKILL",
            (int)s->rank[0].child.pid, s->cfg.supervisor.kill_grace);
    nw_sup_signal_ranks(s, SIGKILL);
    s->deadline = 0; /* the pidfd tells when it is gone */
    break;
  case NW_SUP_BACKOFF:
    if (s->n_kill == 0 && now >= s->restart_at)
      nw_sup_start(s);
    break;
  case NW_SUP_WAITING_FOREIGN:
    nw_sup_foreign_recheck(s, now);
    break;
  case NW_SUP_FINISHED:
  case NW_SUP_GAVE_UP:
    break;
  }
}

/* ---- the loop ---- */

static double nw_sup_next_deadline(const nw_sup *s) {
  double d = s->deadline;
  if (s->state == NW_SUP_BACKOFF)
    d = s->restart_at;
  if (s->n_kill && s->kill_deadline > 0 && (d == 0 || s->kill_deadline < d))
    d = s->kill_deadline;
  return d;
}

static int nw_sup_loop(nw_sup *s) {
  while (s->state != NW_SUP_FINISHED && s->state != NW_SUP_GAVE_UP) {
    struct pollfd pfd[2 + 3 * NW_SUP_MAX_RANKS + NW_SUP_MAX_KILL];
    int i_pid[NW_SUP_MAX_RANKS], i_st[NW_SUP_MAX_RANKS],
        i_err[NW_SUP_MAX_RANKS];
    int n = 0, i_kill = -1, i_alert = -1;
    pfd[n++] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
    if (nw_alerter_fd(s->alerter) >= 0) {
      i_alert = n;
      pfd[n++] =
          (struct pollfd){.fd = nw_alerter_fd(s->alerter), .events = POLLIN};
    }
    for (int k = 0; k < s->n_ranks; k++) {
      const nw_child *c = &s->rank[k].child;
      i_pid[k] = i_st[k] = i_err[k] = -1;
      if (c->pid > 0 && !c->reaped) {
        i_pid[k] = n;
        pfd[n++] = (struct pollfd){.fd = c->pidfd, .events = POLLIN};
      }
      if (c->status_fd >= 0) {
        i_st[k] = n;
        pfd[n++] = (struct pollfd){.fd = c->status_fd, .events = POLLIN};
      }
      if (c->stderr_fd >= 0) {
        i_err[k] = n;
        pfd[n++] = (struct pollfd){.fd = c->stderr_fd, .events = POLLIN};
      }
    }
    if (s->n_kill) {
      i_kill = n;
      for (int k = 0; k < s->n_kill; k++)
        pfd[n++] = (struct pollfd){.fd = s->kill_pidfd[k], .events = POLLIN};
    }
    double dl = nw_sup_next_deadline(s), now = nw_clock_now();
    /* the watchdog ping and notify messages that are due wake us too */
    double nd = nw_sup_notify_deadline(s);
    if (nd > 0 && (dl == 0 || nd < dl))
      dl = nd;
    struct timespec ts, *tp = NULL;
    if (dl > 0) {
      ts = nw_clock_timespec(dl > now ? dl - now : 0);
      tp = &ts;
    }
    int r = ppoll(pfd, (nfds_t)n, tp, NULL);
    if (r < 0 && errno != EINTR) {
      nw_error("ppoll: %s", strerror(errno));
      return NW_ESYS;
    }
    now = nw_clock_now();
    if (r > 0 && (pfd[0].revents & POLLIN))
      nw_sup_on_signals(s, now);
    if (i_alert >= 0 && pfd[i_alert].revents)
      nw_sup_take_outcomes(s);
    int beat = 0;
    for (int k = 0; k < s->n_ranks; k++) {
      const nw_child *c = &s->rank[k].child;
      if (i_st[k] >= 0 && pfd[i_st[k]].revents && c->status_fd >= 0)
        beat |= nw_sup_read_status(s, k, now);
      /* a foreign trainer's output counts as a heartbeat too */
      if (i_err[k] >= 0 && pfd[i_err[k]].revents && c->stderr_fd >= 0)
        beat |= nw_sup_read_stderr(s, k);
    }
    if (beat) {
      nw_sup_heartbeat(s, now);
      if (now - s->last_status_write >= 0.25)
        nw_sup_write_status(s, now);
    }
    /* n_ranks is read each time: the last exit may start a new world */
    int n_ranks = s->n_ranks;
    for (int k = 0; k < n_ranks && k < s->n_ranks; k++) {
      nw_child *c = &s->rank[k].child;
      if (i_pid[k] < 0 || !pfd[i_pid[k]].revents || c->pid <= 0 || c->reaped)
        continue;
      int wstatus = 0;
      int rr = nw_child_reap(c, &wstatus);
      if (rr == 1) {
        /* what it wrote before dying: the oom line, the last step */
        while (c->status_fd >= 0 && nw_sup_read_status(s, k, now))
          ;
        while (c->stderr_fd >= 0 && nw_sup_read_stderr(s, k))
          ;
        nw_sup_rank_exited(s, k, wstatus);
      } else if (rr < 0) {
        nw_error("waitpid %d: %s", (int)c->pid, strerror(errno));
        return NW_ESYS;
      }
    }
    if (i_kill >= 0 ||
        (s->n_kill && s->kill_deadline > 0 && now >= s->kill_deadline))
      nw_sup_kill_poll(s, now);
    dl = nw_sup_next_deadline(s);
    if (dl > 0 && now >= dl)
      nw_sup_on_deadline(s, now);
    /* last: the watchdog ping says this iteration came round whole */
    nw_sup_notify_tick(s, nw_clock_now());
  }
  return 0;
}

int nw_supervisor_run(const nw_sup_options *o, char *err, size_t errlen) {
  static nw_sup sup; /* one per process; large (line buffer) */
  nw_sup *s = &sup;
  memset(s, 0, sizeof *s);
  s->opt = o;
  s->cfg = o->cfg;
  s->policy = o->policy;
  s->sigfd = -1;
  s->ledger.fd = -1;
  s->fail_rank = -1;
  s->resume_step = -1;
  nw_recovery_history_init(&s->hist);
  int lockfd = -1, holder = 0, rc;
  sigset_t mask, old;

  if (nw_mkdir_p(s->cfg.run.dir, err, errlen) < 0)
    return NW_SUP_EXIT_CONFIG;
  lockfd = nw_runlock_acquire(s->cfg.run.dir, &holder, err, errlen);
  if (lockfd < 0)
    return NW_SUP_EXIT_FAILURE;
  if ((rc = nw_run_id(&s->cfg, s->run_id, sizeof s->run_id, err, errlen)) < 0) {
    nw_runlock_release(lockfd);
    return rc == NW_ECONFIG ? NW_SUP_EXIT_CONFIG : NW_SUP_EXIT_FAILURE;
  }
  if (nw_ledger_open(&s->ledger, s->cfg.run.dir, err, errlen) < 0) {
    nw_runlock_release(lockfd);
    return NW_SUP_EXIT_FAILURE;
  }
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, &old);
  signal(SIGPIPE, SIG_IGN); /* a reader of our stderr that went away */
  s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (s->sigfd < 0) {
    snprintf(err, errlen, "signalfd: %s", strerror(errno));
    rc = NW_SUP_EXIT_FAILURE;
    goto out;
  }
  /* after the mask: the worker thread inherits it and never takes them */
  if (nw_alerter_start(&s->alerter, &s->cfg.alert, s->run_id, err, errlen) <
      0) {
    nw_sup_ledger(s, json_pack("{s:s, s:s, s:s}", "event", "config-error",
                               "evidence", err, "action", "give up"));
    rc = NW_SUP_EXIT_CONFIG;
    goto out;
  }
  nw_log_set_run(s->run_id);
  nw_info("supervising run %s in %s (pid %d)", s->run_id, s->cfg.run.dir,
          (int)getpid());
  s->state = NW_SUP_BACKOFF;
  s->restart_at = nw_clock_now();
  nw_sup_notify_init(s, s->restart_at);
  nw_sup_start(s);
  if (nw_sup_loop(s) < 0) {
    snprintf(err, errlen, "event loop failed");
    s->exit_code = NW_SUP_EXIT_FAILURE;
  }
  rc = s->exit_code;
  if (rc != 0 && !err[0])
    snprintf(err, errlen, "%s",
             s->state == NW_SUP_GAVE_UP ? "gave up (see the ledger)"
                                        : "failed");
out:
  for (int k = 0; k < s->n_ranks; k++) {
    nw_child *c = &s->rank[k].child;
    if (c->pid > 0 && !c->reaped) {
      /* leaving with a trainer alive (loop failure): take it down */
      nw_child_signal_group(c, SIGKILL);
      int st;
      while (nw_child_reap(c, &st) == 0)
        usleep(10000);
    }
  }
  nw_sup_ranks_close(s);
  for (int k = 0; k < s->n_kill; k++)
    close(s->kill_pidfd[k]);
  if (s->sigfd >= 0)
    close(s->sigfd);
  /* the last alerts (give-up, finish) get drain_timeout to go out; every
   * outcome is in the ledger before it closes */
  nw_alerter_stop(s->alerter, nw_sup_outcome_at_exit, s);
  s->alerter = NULL;
  sigprocmask(SIG_SETMASK, &old, NULL);
  nw_ledger_close(&s->ledger);
  nw_runlock_release(lockfd);
  return rc;
}
