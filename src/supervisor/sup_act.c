/* sup_act.c — what the state machine's transitions do: start and stop the
 * trainers, and carry a trainer's exit through observe -> classify ->
 * decide (sup_recover.h) to the action: the ledger's entries for the
 * failure and the decision, the settings in force, the duplicates'
 * SIGTERM, the alert about processes not ours. Each function reports what
 * came of it; the state machine chooses the state. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"          // defines: NW_E*
#include "base/log.h"            // defines: nw_info, nw_warn, nw_log_event
#include "protocol/exit_codes.h" // defines: NW_EXIT_*
#include "supervisor/sup_internal.h"

#define NW_MIB (1024.0 * 1024.0)

/* ---- starting and stopping ---- */

int nw_sup_act_start(nw_sup *s, double now) {
  nw_sup_ranks *rk = &s->ranks;
  char err[1024];
  rk->oom_kill_known = nw_sup_oom_kill_count(&rk->oom_kill_before) == 0;
  int rc = nw_sup_ranks_start(rk, s->opt, &s->cfg, s->log.run_id, now, err,
                              sizeof err);
  if (rc < 0) {
    /* exec failed (config error, never retried) or no fork: both final */
    nw_error("cannot start the trainer%s: %s",
             s->cfg.batch.world > 1 ? " ranks" : "", err);
    s->exit_code = rc == NW_ECONFIG ? NW_EXIT_CONFIG : NW_EXIT_FAILURE;
    nw_sup_log_append(&s->log, nw_sup_entry_config_error(err, 0, 0));
    return rc;
  }
  nw_sup_progress_started(&s->progress, now);
  nw_recovery_history_started(&s->rec.hist, now);
  int pids[NW_SUP_MAX_RANKS], n = nw_sup_ranks_pids(rk, pids);
  nw_sup_log_append(&s->log, nw_sup_entry_start(pids, n, rk->starts, &s->cfg));
  return 0;
}

void nw_sup_act_stop_trainer(nw_sup *s, const char *why) {
  nw_info("%s: stopping the trainer (pid %d%s): SIGTERM, %.0f s grace", why,
          (int)s->ranks.rank[0].child.pid,
          s->ranks.n > 1 ? " and its peers" : "", s->cfg.supervisor.kill_grace);
  nw_sup_ranks_signal(&s->ranks, SIGTERM);
}

void nw_sup_act_kill_peers(nw_sup *s, int r) {
  /* its peers wait in a collective for it: SIGKILL, not SIGTERM (a stop
   * checkpoint would race the failing rank's emergency checkpoint, and
   * every rank's state at the step boundary is the one it saved) */
  int live = s->ranks.n_live;
  nw_warn("rank %d (pid %d) failed: killing the %d other rank%s", r,
          (int)s->ranks.rank[r].child.pid, live, live == 1 ? "" : "s");
  nw_sup_ranks_signal(&s->ranks, SIGKILL);
}

void nw_sup_act_kill_trainer(nw_sup *s, const char *why) {
  /* the newest good checkpoint stays what it was; a stop checkpoint being
   * written is a temporary file, never a damaged checkpoint */
  if (why)
    nw_warn("%s again while stopping: SIGKILL to the trainer now", why);
  else
    nw_warn("trainer %d still there after %.1f s: SIGKILL",
            (int)s->ranks.rank[0].child.pid, s->cfg.supervisor.kill_grace);
  nw_sup_ranks_signal(&s->ranks, SIGKILL);
}

void nw_sup_act_hang(nw_sup *s, double now) {
  int pid = (int)s->ranks.rank[0].child.pid;
  char ev[512];
  snprintf(ev, sizeof ev,
           "no status line for %.1f s (supervisor.hang_timeout %.1f s) "
           "after step %d; SIGTERM and SIGCONT to the process group, "
           "SIGKILL after %.1f s",
           now - s->progress.last_line_t, s->cfg.supervisor.hang_timeout,
           s->progress.step, s->cfg.supervisor.kill_grace);
  nw_warn("trainer %d hangs: %s", pid, ev);
  nw_sup_log_append(&s->log, nw_sup_entry_hang(ev, pid, s->progress.step));
  /* SIGCONT: a stopped trainer gets to checkpoint on the SIGTERM */
  nw_sup_ranks_signal(&s->ranks, SIGTERM);
  nw_sup_ranks_signal(&s->ranks, SIGCONT);
}

void nw_sup_act_stop_idle(nw_sup *s, const char *why) {
  nw_info("%s: no trainer running; stopping", why);
  s->stopped = 1;
  nw_sup_log_append(&s->log,
                    nw_sup_entry_end("stop", why, 0, 0, s->progress.step, -1));
  s->exit_code = NW_EXIT_FINISHED;
}

void nw_sup_act_storage_line(nw_sup *s, nw_sup_line line) {
  const nw_sup_progress *p = &s->progress;
  int pid = (int)s->ranks.rank[0].child.pid;
  if (line == NW_SUP_LINE_CKPT_ERROR)
    nw_sup_log_append(&s->log, nw_sup_entry_checkpoint_error(
                                   pid, p->ckpt_error_step, p->ckpt_error));
  else if (line == NW_SUP_LINE_CKPT_SKIPPED)
    nw_sup_log_append(&s->log, nw_sup_entry_checkpoint_skipped(
                                   pid, p->skipped_path, p->skipped_reason,
                                   p->skipped_moved_to));
}

void nw_sup_act_step(nw_sup *s, double now) {
  nw_sup_recovery *rec = &s->rec;
  if (!rec->pending)
    return;
  rec->pending = 0;
  const nw_sup_progress *p = &s->progress;
  nw_info("resumed: step %d, %d steps lost, %.2f s from the failure", p->step,
          rec->failed_step - p->start_step, now - rec->fail_t);
  nw_sup_log_append(&s->log,
                    nw_sup_entry_resumed((int)s->ranks.rank[0].child.pid, p,
                                         rec->failed_step, rec->fail_t,
                                         s->ranks.spawn_t, now));
}

/* ---- acting on a decision ---- */

/* The processes on the failing device that are not provably ours: the
 * classifier's foreign ones, each either SIGTERMed (kill-same-user, our
 * own user's) or waited for (into waited). */
static void nw_sup_act_foreign(nw_sup *s, const nw_decision *d,
                               const nw_classification *cls,
                               const nw_device_ref *dev, json_t *killed,
                               json_t *waited) {
  const nw_sup_exit *x = &s->exit;
  for (int i = 0; i < cls->n_foreign; i++) {
    int pid = cls->foreign_pids[i], same_user = 0;
    for (int j = 0; x->have_report && j < x->report.n_procs; j++)
      if (x->report.procs[j].pid == pid &&
          x->report.procs[j].uid == (unsigned)getuid())
        same_user = 1;
    if (d->foreign == NW_FOREIGN_KILL_SAME_USER && same_user) {
      if (nw_sup_kills_term(&s->kills, dev, pid, NULL, d->grace_seconds))
        json_array_append_new(killed, json_integer(pid));
      continue;
    }
    json_array_append_new(waited, json_integer(pid));
  }
}

/* kill-duplicate: SIGTERM to the provable duplicates, and an alert and a
 * wait when processes not ours hold the device. */
static void nw_sup_act_kill_duplicate(nw_sup *s, const nw_decision *d,
                                      const nw_classification *cls,
                                      nw_sup_plan *plan, double now) {
  nw_device_ref dev = nw_sup_exit_device(&s->exit);
  json_t *killed = json_array(), *waited = json_array();
  const nw_sup_exit *x = &s->exit;
  for (int i = 0; i < cls->n_duplicates; i++) {
    int pid = cls->duplicate_pids[i];
    /* a holder of the trainer lock is proven by the lock, wherever it
     * holds memory; the classifier's duplicates by the device */
    int signalled =
        x->lock_ours && pid == x->lock.pid
            ? nw_sup_kills_term_lock_holder(&s->kills, x->run_dir, pid,
                                            s->log.run_id, d->grace_seconds)
            : nw_sup_kills_term(&s->kills, &dev, pid, s->log.run_id,
                                d->grace_seconds);
    if (signalled)
      json_array_append_new(killed, json_integer(pid));
  }
  nw_sup_act_foreign(s, d, cls, &dev, killed, waited);
  if (json_array_size(killed))
    nw_sup_log_append(&s->log, nw_sup_entry_kill(killed, d->grace_seconds));
  else
    json_decref(killed);
  int n_wait = (int)json_array_size(waited);
  if (!n_wait) {
    json_decref(waited);
    return;
  }
  char ev[512];
  snprintf(ev, sizeof ev,
           "%d process%s not of this run hold%s %.1f MiB of the device: never "
           "killed; waiting %.0f s, then the device is checked again",
           n_wait, n_wait == 1 ? "" : "es", n_wait == 1 ? "s" : "",
           cls->foreign_bytes / NW_MIB, d->foreign_wait_seconds);
  nw_warn("%s", ev);
  nw_sup_log_append(
      &s->log, nw_sup_entry_alert(ev, "pids", waited, d->foreign_wait_seconds));
  plan->outcome = NW_SUP_OUT_WAIT;
  plan->foreign_until = now + d->foreign_wait_seconds;
}

/* A failure: its ledger entry, the policy's decision, and what it says. */
static nw_sup_plan nw_sup_act_failure(nw_sup *s, const nw_sup_verdict *v,
                                      double now) {
  const nw_sup_exit *x = &s->exit;
  nw_sup_plan plan = {.outcome = NW_SUP_OUT_GIVE_UP};
  nw_log_event(NW_LOG_WARN, v->cause_name, NULL, "%s: cause %s: %s", v->event,
               v->cause_name, v->evidence);
  nw_sup_log_append(&s->log, nw_sup_entry_failure(x, v));
  nw_decision d;
  char reason[1200];
  if (nw_sup_decide(&s->policy, &s->cfg, &s->rec.hist, v, now, &d, reason,
                    sizeof reason)) {
    nw_log_event(NW_LOG_ERROR, v->cause_name, "give-up", "giving up: %s",
                 reason);
    s->exit_code = NW_EXIT_FAILURE;
    nw_sup_log_append(&s->log,
                      nw_sup_entry_give_up(v->cause_name, reason, &s->cfg,
                                           s->rec.recoveries));
    return plan;
  }
  json_t *before = nw_ledger_settings(&s->cfg);
  s->cfg = d.after;
  s->rec.recoveries++;
  if (!s->rec.pending) { /* the first failure of an outage */
    s->rec.pending = 1;
    s->rec.fail_t = now;
    s->rec.failed_step = x->failed_step;
  }
  nw_log_event(NW_LOG_INFO, v->cause_name, nw_action_name(d.action),
               "recovery %d: %s %s (%s); restart in %.1f s", s->rec.recoveries,
               v->cause_name, nw_action_name(d.action), d.summary,
               d.backoff_seconds);
  nw_sup_log_append(
      &s->log, nw_sup_entry_recovery(v, &d, before, &s->cfg, x->failed_step));
  plan.outcome = NW_SUP_OUT_RESTART;
  plan.restart_at = now + d.backoff_seconds;
  if (plan.restart_at < s->ranks.spawn_t + 1.0) /* never two starts in 1 s */
    plan.restart_at = s->ranks.spawn_t + 1.0;
  if (d.action == NW_ACTION_KILL_DUPLICATE)
    nw_sup_act_kill_duplicate(s, &d, &v->cls, &plan, now);
  return plan;
}

/* Storage that cannot hold the run's work, or a run directory another
 * run's trainer holds: restarting would repeat lost work or fight over the
 * directory. The failure and the give-up (which alerts, saying what to
 * do) go to the ledger; systemd's restart logic takes over. */
static void nw_sup_act_never_retried(nw_sup *s, const nw_sup_verdict *v) {
  const nw_sup_exit *x = &s->exit;
  nw_log_event(NW_LOG_ERROR, v->cause_name, "give-up", "%s: %s", v->event,
               v->evidence);
  s->exit_code = NW_EXIT_FAILURE;
  if (v->end == NW_SUP_END_LOCKED) {
    nw_sup_log_append(&s->log,
                      nw_sup_entry_config_error(v->evidence, x->pid, x->code));
    return;
  }
  nw_sup_log_append(&s->log, nw_sup_entry_failure(x, v));
  nw_sup_log_append(&s->log, nw_sup_entry_give_up(v->cause_name, v->evidence,
                                                  &s->cfg, s->rec.recoveries));
}

nw_sup_plan nw_sup_act_exit(nw_sup *s, int stop_requested, int hang,
                            double now) {
  nw_sup_exit *x = &s->exit;
  nw_sup_observe(x, &s->ranks, &s->progress, &s->cfg, s->log.run_id,
                 stop_requested, hang);
  nw_sup_ranks_close(&s->ranks);
  nw_sup_verdict v;
  nw_sup_classify(&s->cfg, x, &v);
  nw_sup_plan plan = {.outcome = NW_SUP_OUT_OVER};
  switch (v.end) {
  case NW_SUP_END_STOPPED:
    s->stopped = 1;
    s->exit_code = x->code == 0 ? NW_EXIT_FINISHED : NW_EXIT_FAILURE;
    nw_sup_log_append(&s->log,
                      nw_sup_entry_end(v.event, v.evidence, x->pid, x->code,
                                       x->step, x->seen_stop));
    break;
  case NW_SUP_END_FINISHED:
    s->stopped = !x->seen_finish; /* stopped from elsewhere */
    s->exit_code = NW_EXIT_FINISHED;
    nw_sup_log_append(
        &s->log, nw_sup_entry_end(v.event, v.evidence, x->pid, 0, x->step, -1));
    break;
  case NW_SUP_END_REFUSED:
    nw_error("the trainer refused its settings (%s): never retried", x->how);
    s->exit_code = NW_EXIT_CONFIG;
    nw_sup_log_append(&s->log,
                      nw_sup_entry_config_error(x->how, x->pid, x->code));
    plan.outcome = NW_SUP_OUT_GIVE_UP;
    break;
  case NW_SUP_END_STORAGE:
  case NW_SUP_END_LOCKED:
    nw_sup_act_never_retried(s, &v);
    plan.outcome = NW_SUP_OUT_GIVE_UP;
    break;
  case NW_SUP_END_FAILED:
    plan = nw_sup_act_failure(s, &v, now);
    break;
  }
  return plan;
}

/* ---- waiting for processes not ours ---- */

/* The processes holding memory on the failing device now, as JSON; their
 * bytes into *bytes. */
static json_t *nw_sup_holders_json(const nw_sup_exit *x, uint64_t *bytes) {
  json_t *a = json_array();
  *bytes = 0;
  nw_device_ref dev = nw_sup_exit_device(x);
  nw_holders hs;
  if (nw_holders_list(&dev, &hs) < 0) {
    char where[160];
    nw_holders_describe(&dev, where, sizeof where);
    nw_warn("%s: %s", where, hs.note);
    return a;
  }
  for (int i = 0; i < hs.n; i++) {
    const nw_holder *h = &hs.h[i];
    if (!h->bytes && !h->bytes_unknown)
      continue;
    *bytes += h->bytes;
    json_array_append_new(a, json_pack("{s:i, s:i, s:s, s:I}", "pid", h->pid,
                                       "uid", h->uid, "run_id", h->run_id,
                                       "bytes", (json_int_t)h->bytes));
  }
  return a;
}

void nw_sup_act_recheck(nw_sup *s, double now) {
  uint64_t bytes;
  json_t *others = nw_sup_holders_json(&s->exit, &bytes);
  size_t left = json_array_size(others);
  char ev[512];
  snprintf(ev, sizeof ev,
           "after waiting %.1f s, %zu other process%s hold%s %.1f MiB of "
           "device %s; restarting %s",
           now - s->rec.fail_t, left, left == 1 ? "" : "es",
           left == 1 ? "s" : "", bytes / NW_MIB, s->exit.device,
           left ? "anyway (the policy decides again if it fails)" : "now");
  nw_warn("%s", ev);
  nw_sup_log_append(&s->log, nw_sup_entry_alert(ev, "processes", others, -1));
}

/* ---- SIGHUP ---- */

static void nw_sup_policy_error(void *user, const char *name, int line,
                                const char *msg) {
  int *n = user;
  (*n)++;
  nw_error("%s:%d: %s", name, line, msg);
}

void nw_sup_act_reload(nw_sup *s) {
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
    nw_sup_log_append(&s->log, nw_sup_entry_reload(path, 0, err));
    return;
  }
  s->policy = p;
  nw_info("SIGHUP: policy %s reloaded", path);
  nw_sup_log_append(&s->log, nw_sup_entry_reload(path, 1, NULL));
}
