/* supervisor.c — the event loop and the state machine of `nightwatch run`.
 *
 * One ppoll over: the signalfd (SIGTERM, SIGINT, SIGHUP, SIGCHLD, all
 * blocked), the trainer's pidfd (its exit), its status pipe (the heartbeat),
 * a foreign trainer's stderr, and the pidfds of duplicates being killed. The
 * timeout is the earliest deadline, systemd's watchdog ping among them.
 * Every transition is a switch on nw_sup_state; sup_recover.c decides what
 * an exit means, sup_notify.c what systemd is told. */
#define _GNU_SOURCE
#include "supervisor.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "error.h"
#include "fsutil.h"
#include "log.h"
#include "run_id.h"
#include "runlock.h"
#include "supervisor_internal.h"

double nw_sup_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

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
      "supervisor_pid", (int)getpid(), "trainer_pid", (int)s->child.pid, "step",
      s->step, "steps", s->total_steps, "loss", s->loss, "seq_len", s->seq_len,
      "recoveries", s->recoveries, "starts", s->starts, "settings",
      nw_ledger_settings(&s->cfg), "hang_timeout_s",
      (int)s->cfg.supervisor.hang_timeout, "exit_code", s->exit_code);
  if (!o)
    return;
  json_object_set_new(o, "run_id", json_string(s->run_id));
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
  double now = nw_sup_now();
  nw_sup_write_status(s, now);
  nw_sup_notify_state(s, now);
}

/* ---- starting the trainer ---- */

static int nw_sup_argv(nw_sup *s, char **argv, int max, char (*buf)[96]) {
  const nw_sup_options *o = s->opt;
  int n = 0, b = 0;
  if (o->command) {
    for (int i = 0; o->command[i] && n < max - 1; i++)
      argv[n++] = o->command[i];
    argv[n] = NULL;
    return n;
  }
  argv[n++] = (char *)o->train_bin;
  if (o->config_path)
    argv[n++] = (char *)o->config_path;
  for (int i = 0; i < o->n_sets && n < max - 12; i++) {
    argv[n++] = "--set";
    argv[n++] = o->sets[i];
  }
  /* the settings recovery changes, after the user's: the last one wins */
  snprintf(buf[b], 96, "batch.micro=%d", s->cfg.batch.micro);
  snprintf(buf[b + 1], 96, "data.max_len=%d", s->cfg.data.max_len);
  snprintf(buf[b + 2], 96, "eval.batch=%d", s->cfg.eval.batch);
  snprintf(buf[b + 3], 96, "eval.release_cache=%s",
           s->cfg.eval.release_cache ? "true" : "false");
  for (int i = 0; i < 4; i++) {
    argv[n++] = "--set";
    argv[n++] = buf[b + i];
  }
  argv[n++] = "--resume";
  argv[n++] = "auto";
  argv[n] = NULL;
  return n;
}

/* The environment contract of docs/protocol.md ("Supervising a foreign
 * trainer"); the trainer never talks to systemd itself. */
static char **nw_sup_env(nw_sup *s) {
  static const char *const unset[] = {"NOTIFY_SOCKET",
                                      "WATCHDOG_USEC",
                                      "WATCHDOG_PID",
                                      "NIGHTWATCH_RUN_ID",
                                      "NIGHTWATCH_MICRO_BATCH",
                                      "NIGHTWATCH_ACCUMULATION",
                                      "NIGHTWATCH_EFFECTIVE_BATCH",
                                      "NIGHTWATCH_MAX_SEQ_LEN",
                                      "NIGHTWATCH_EVAL_BATCH",
                                      "NIGHTWATCH_RELEASE_CACHE",
                                      "NIGHTWATCH_RESUME",
                                      "NIGHTWATCH_RUN_DIR",
                                      NULL};
  static char v[10][NW_PATH_MAX + 64];
  const nw_config *c = &s->cfg;
  int n = 0;
  snprintf(v[n++], sizeof v[0], "NIGHTWATCH_RUN_ID=%s", s->run_id);
  if (s->opt->command) {
    char resume[NW_PATH_MAX] = "", err[512];
    if (nw_ckpt_find_latest(c->run.dir, c->checkpoint.verify_timeout, resume,
                            sizeof resume, NULL, NULL, err, sizeof err) < 0)
      resume[0] = '\0';
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_MICRO_BATCH=%d", c->batch.micro);
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_ACCUMULATION=%d",
             nw_config_accum(&c->batch));
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_EFFECTIVE_BATCH=%d",
             c->batch.effective);
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_MAX_SEQ_LEN=%d",
             nw_config_max_len(c));
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_EVAL_BATCH=%d", c->eval.batch);
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_RELEASE_CACHE=%d",
             c->eval.release_cache);
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_RESUME=%s", resume);
    snprintf(v[n++], sizeof v[0], "NIGHTWATCH_RUN_DIR=%s", c->run.dir);
  }
  const char *set[11];
  for (int i = 0; i < n; i++)
    set[i] = v[i];
  set[n] = NULL;
  return nw_child_env_build(unset, set);
}

static void nw_sup_start(nw_sup *s) {
  char *argv[512], buf[4][96], err[1024];
  nw_sup_argv(s, argv, 512, buf);
  char **env = nw_sup_env(s);
  if (!env) {
    s->exit_code = NW_SUP_EXIT_FAILURE;
    nw_sup_set_state(s, NW_SUP_GAVE_UP, 0);
    return;
  }
  s->oom_kill_known = nw_sup_oom_kill_count(&s->oom_kill_before) == 0;
  nw_child_spec spec = {argv, env, s->opt->command != NULL};
  double now = nw_sup_now();
  int rc = nw_child_spawn(&spec, &s->child, err, sizeof err);
  nw_child_env_free(env);
  if (rc < 0) {
    /* exec failed (config error, never retried) or no fork: both final */
    nw_error("cannot start the trainer: %s", err);
    s->exit_code = rc == NW_ECONFIG ? NW_SUP_EXIT_CONFIG : NW_SUP_EXIT_FAILURE;
    nw_sup_ledger(s, json_pack("{s:s, s:s, s:s}", "event", "config-error",
                               "evidence", err, "action", "give up"));
    nw_sup_set_state(s, NW_SUP_GAVE_UP, 0);
    return;
  }
  s->starts++;
  s->spawn_t = s->last_line_t = now;
  s->line_len = 0;
  s->err_tail[0] = '\0';
  s->stderr_oom = s->seen_stop = s->seen_finish = s->seen_oom = 0;
  s->start_line_t = s->resume_line_t = 0;
  s->resume_step = -1;
  nw_recovery_history_started(&s->hist, now);
  nw_info("trainer started: pid %d (start %d), micro %d accum %d max_len %d",
          (int)s->child.pid, s->starts, s->cfg.batch.micro,
          nw_config_accum(&s->cfg.batch), nw_config_max_len(&s->cfg));
  nw_sup_ledger(s, json_pack("{s:s, s:i, s:i, s:o, s:i}", "event", "start",
                             "pid", (int)s->child.pid, "start", s->starts,
                             "settings", nw_ledger_settings(&s->cfg),
                             "supervisor_pid", (int)getpid()));
  nw_sup_set_state(s, NW_SUP_STARTING, now + s->cfg.supervisor.hang_timeout);
}

/* ---- status lines ---- */

static int nw_sup_int(json_t *o, const char *k, int def) {
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static void nw_sup_on_line(nw_sup *s, const char *text, double now) {
  json_t *o = json_loads(text, 0, NULL);
  const char *ev = json_string_value(json_object_get(o, "event"));
  if (!ev) {
    json_decref(o);
    return; /* not ours: ignored, as unknown fields are */
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
          "resumed", "pid", (int)s->child.pid, "step", s->step, "resumed_from",
          from, "failed_step", s->resume_failed_step, "steps_lost",
          s->resume_failed_step - from, "seconds_to_recover", now - s->fail_t,
          "backoff_s", s->spawn_t - s->fail_t, "process_start_s",
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

/* Reads what the pipe holds; returns 1 when lines (or, for a foreign
 * trainer's stderr, any output) arrived. */
static int nw_sup_read_status(nw_sup *s, double now) {
  int got = 0;
  for (;;) {
    if (s->line_len == sizeof s->line - 1) /* a line too long: drop it */
      s->line_len = 0;
    ssize_t n = read(s->child.status_fd, s->line + s->line_len,
                     sizeof s->line - 1 - s->line_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) {
        close(s->child.status_fd);
        s->child.status_fd = -1;
      }
      break;
    }
    s->line_len += (size_t)n;
    s->line[s->line_len] = '\0';
    char *p = s->line, *nl;
    while ((nl = strchr(p, '\n'))) {
      *nl = '\0';
      nw_sup_on_line(s, p, now);
      got = 1;
      p = nl + 1;
    }
    s->line_len -= (size_t)(p - s->line);
    memmove(s->line, p, s->line_len);
  }
  return got;
}

static const char *const nw_sup_oom_words[] = {"CUDA out of memory",
                                               "CUBLAS_STATUS_ALLOC_FAILED",
                                               "OutOfMemoryError", NULL};

/* A foreign trainer's stderr: copied to ours, scanned for OOM messages
 * (across read boundaries through err_tail). */
static int nw_sup_read_stderr(nw_sup *s) {
  int got = 0;
  char buf[4096 + sizeof s->err_tail];
  for (;;) {
    size_t tail = strlen(s->err_tail);
    memcpy(buf, s->err_tail, tail);
    ssize_t n = read(s->child.stderr_fd, buf + tail, 4096);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) {
        close(s->child.stderr_fd);
        s->child.stderr_fd = -1;
      }
      break;
    }
    got = 1;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(2, buf + tail + off, (size_t)(n - off));
      if (w <= 0 && errno != EINTR)
        break;
      off += w > 0 ? w : 0;
    }
    size_t len = tail + (size_t)n;
    buf[len] = '\0';
    for (int i = 0; nw_sup_oom_words[i]; i++)
      if (memmem(buf, len, nw_sup_oom_words[i], strlen(nw_sup_oom_words[i])))
        s->stderr_oom = 1;
    size_t keep = len < 63 ? len : 63; /* longer than the longest word */
    memcpy(s->err_tail, buf + len - keep, keep);
    s->err_tail[keep] = '\0';
  }
  return got;
}

/* ---- signals, deadlines ---- */

static void nw_sup_stop(nw_sup *s, double now, const char *why) {
  switch (s->state) {
  case NW_SUP_STARTING:
  case NW_SUP_RUNNING:
    nw_info("%s: stopping the trainer (pid %d): SIGTERM, %.0f s grace", why,
            (int)s->child.pid, s->cfg.supervisor.kill_grace);
    nw_child_signal_group(&s->child, SIGTERM);
    s->stop_reason = NW_SUP_STOP_REQUESTED;
    nw_sup_set_state(s, NW_SUP_STOPPING, now + s->cfg.supervisor.kill_grace);
    break;
  case NW_SUP_STOPPING:
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
    nw_warn("trainer %d hangs: %s", (int)s->child.pid, ev);
    nw_sup_ledger(s, json_pack("{s:s, s:s, s:s, s:i, s:i}", "event", "hang",
                               "cause", "hang", "evidence", ev, "pid",
                               (int)s->child.pid, "step", s->step));
    /* SIGCONT: a stopped trainer gets to checkpoint on the SIGTERM */
    nw_child_signal_group(&s->child, SIGTERM);
    nw_child_signal_group(&s->child, SIGCONT);
    s->stop_reason = NW_SUP_STOP_HANG;
    nw_sup_set_state(s, NW_SUP_STOPPING, now + s->cfg.supervisor.kill_grace);
    break;
  }
  case NW_SUP_STOPPING:
    nw_warn("trainer %d still there after %.1f s: SIGKILL", (int)s->child.pid,
            s->cfg.supervisor.kill_grace);
    nw_child_signal_group(&s->child, SIGKILL);
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
    struct pollfd pfd[6 + NW_SUP_MAX_KILL];
    int n = 0, i_pid = -1, i_st = -1, i_err = -1, i_kill = -1, i_alert = -1;
    pfd[n++] = (struct pollfd){.fd = s->sigfd, .events = POLLIN};
    if (nw_alerter_fd(s->alerter) >= 0) {
      i_alert = n;
      pfd[n++] =
          (struct pollfd){.fd = nw_alerter_fd(s->alerter), .events = POLLIN};
    }
    if (s->child.pid > 0) {
      i_pid = n;
      pfd[n++] = (struct pollfd){.fd = s->child.pidfd, .events = POLLIN};
    }
    if (s->child.status_fd >= 0) {
      i_st = n;
      pfd[n++] = (struct pollfd){.fd = s->child.status_fd, .events = POLLIN};
    }
    if (s->child.stderr_fd >= 0) {
      i_err = n;
      pfd[n++] = (struct pollfd){.fd = s->child.stderr_fd, .events = POLLIN};
    }
    if (s->n_kill) {
      i_kill = n;
      for (int k = 0; k < s->n_kill; k++)
        pfd[n++] = (struct pollfd){.fd = s->kill_pidfd[k], .events = POLLIN};
    }
    double dl = nw_sup_next_deadline(s), now = nw_sup_now();
    /* the watchdog ping and notify messages that are due wake us too */
    double nd = nw_sup_notify_deadline(s);
    if (nd > 0 && (dl == 0 || nd < dl))
      dl = nd;
    struct timespec ts, *tp = NULL;
    if (dl > 0) {
      double wait = dl > now ? dl - now : 0;
      ts.tv_sec = (time_t)wait;
      ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
      tp = &ts;
    }
    int r = ppoll(pfd, (nfds_t)n, tp, NULL);
    if (r < 0 && errno != EINTR) {
      nw_error("ppoll: %s", strerror(errno));
      return NW_ESYS;
    }
    now = nw_sup_now();
    if (r > 0 && (pfd[0].revents & POLLIN))
      nw_sup_on_signals(s, now);
    if (i_alert >= 0 && pfd[i_alert].revents)
      nw_sup_take_outcomes(s);
    int beat = 0;
    if (i_st >= 0 && pfd[i_st].revents && s->child.status_fd >= 0)
      beat |= nw_sup_read_status(s, now);
    /* a foreign trainer's output counts as a heartbeat too */
    if (i_err >= 0 && pfd[i_err].revents && s->child.stderr_fd >= 0)
      beat |= nw_sup_read_stderr(s);
    if (beat) {
      nw_sup_heartbeat(s, now);
      if (now - s->last_status_write >= 0.25)
        nw_sup_write_status(s, now);
    }
    if (i_pid >= 0 && pfd[i_pid].revents && s->child.pid > 0) {
      int wstatus = 0;
      int rr = nw_child_reap(&s->child, &wstatus);
      if (rr == 1) {
        /* what it wrote before dying: the oom line, the last step */
        while (s->child.status_fd >= 0 && nw_sup_read_status(s, now))
          ;
        while (s->child.stderr_fd >= 0 && nw_sup_read_stderr(s))
          ;
        nw_sup_on_exit(s, wstatus);
      } else if (rr < 0) {
        nw_error("waitpid %d: %s", (int)s->child.pid, strerror(errno));
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
    nw_sup_notify_tick(s, nw_sup_now());
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
  s->child.pidfd = s->child.status_fd = s->child.stderr_fd = -1;
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
  s->restart_at = nw_sup_now();
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
  if (s->child.pid > 0 && !s->child.reaped) {
    /* leaving with a trainer alive (loop failure): take it down */
    nw_child_signal_group(&s->child, SIGKILL);
    int st;
    while (nw_child_reap(&s->child, &st) == 0)
      usleep(10000);
  }
  nw_child_close(&s->child);
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
