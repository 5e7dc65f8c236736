/* sup_ledger.c — the supervisor's ledger entries and their way to the
 * ledger and the webhooks. */
#include "supervisor/sup_ledger.h"

#include <string.h>
#include <unistd.h>

#include "base/alert_config.h" // defines: nw_alert_event_bit, NW_ALERT_EV_*
#include "base/error.h"        // defines: nw_strerror
#include "base/log.h"          // defines: nw_error

/* ---- where entries go ---- */

void nw_sup_log_append(nw_sup_log *l, json_t *entry) {
  const char *event = NULL;
  unsigned bit = 0;
  if (entry) {
    json_object_set_new(entry, "run_id", json_string(l->run_id));
    event = json_string_value(json_object_get(entry, "event"));
    bit = nw_alert_event_bit(event);
    /* the run's first start: later starts belong to recoveries */
    if (bit == NW_ALERT_EV_START && l->starts++ > 0)
      bit = 0;
  }
  char where[512] = "";
  if (bit) {
    nw_alerter_describe(l->alerter, event, where, sizeof where);
    /* every recovery says where its alert went, even "ledger only" */
    if (bit == NW_ALERT_EV_RECOVERY || strncmp(where, "ledger only", 11))
      json_object_set_new(entry, "delivery", json_string(where));
    /* the alert carries the ledger line's time: a receiver can match them */
    char now[40];
    nw_ledger_now_iso(now, sizeof now);
    json_object_set_new(entry, "time", json_string(now));
  }
  json_incref(entry);
  int rc = nw_ledger_append(&l->ledger, entry);
  if (rc < 0)
    nw_error("ledger %s: %s", l->ledger.path, nw_strerror(rc));
  if (bit)
    nw_alerter_post(l->alerter, entry);
  json_decref(entry);
}

void nw_sup_log_outcomes(nw_sup_log *l) {
  json_t *o;
  while ((o = nw_alerter_take(l->alerter)))
    nw_sup_log_append(l, o);
}

static void nw_sup_log_outcome_at_exit(void *user, json_t *outcome) {
  json_incref(outcome); /* borrowed here; append steals */
  nw_sup_log_append(user, outcome);
}

void nw_sup_log_drain(nw_sup_log *l) {
  nw_alerter_stop(l->alerter, nw_sup_log_outcome_at_exit, l);
  l->alerter = NULL;
  nw_ledger_close(&l->ledger);
}

/* ---- the entries ---- */

json_t *nw_sup_json_pids(const int *pids, int n) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++)
    json_array_append_new(a, json_integer(pids[i]));
  return a;
}

json_t *nw_sup_entry_start(const int *pids, int n, int start,
                           const nw_config *cfg) {
  return json_pack("{s:s, s:i, s:o, s:i, s:o, s:i}", "event", "start", "pid",
                   n > 0 ? pids[0] : 0, "pids", nw_sup_json_pids(pids, n),
                   "start", start, "settings", nw_ledger_settings(cfg),
                   "supervisor_pid", (int)getpid());
}

json_t *nw_sup_entry_config_error(const char *evidence, int pid, int code) {
  if (pid <= 0)
    return json_pack("{s:s, s:s, s:s}", "event", "config-error", "evidence",
                     evidence, "action", "give up");
  return json_pack("{s:s, s:s, s:i, s:i, s:s}", "event", "config-error",
                   "evidence", evidence, "pid", pid, "exit_code", code,
                   "action", "give up");
}

json_t *nw_sup_entry_end(const char *event, const char *evidence, int pid,
                         int code, int step, int checkpoint) {
  json_t *e = json_pack("{s:s, s:s}", "event", event, "evidence", evidence);
  if (e && pid > 0) {
    json_object_set_new(e, "pid", json_integer(pid));
    json_object_set_new(e, "exit_code", json_integer(code));
  }
  if (e)
    json_object_set_new(e, "step", json_integer(step));
  if (e && checkpoint >= 0)
    json_object_set_new(e, "checkpoint", json_boolean(checkpoint));
  return e;
}

json_t *nw_sup_entry_hang(const char *evidence, int pid, int step) {
  return json_pack("{s:s, s:s, s:s, s:i, s:i}", "event", "hang", "cause",
                   "hang", "evidence", evidence, "pid", pid, "step", step);
}

json_t *nw_sup_entry_failure(const nw_sup_exit *x, const nw_sup_verdict *v) {
  json_t *e = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:b}", "event",
                        v->event, "cause", v->cause_name, "evidence",
                        v->evidence, "pid", x->pid, "exit_code", x->code,
                        "signal", x->sig, "failed_step", x->failed_step,
                        "oom_killed_by_kernel", x->obs.oom_killed_by_kernel);
  if (e && x->world > 1) {
    /* which rank failed first; its peers were killed, not failed */
    json_object_set_new(e, "rank", json_integer(x->rank));
    json_object_set_new(e, "world", json_integer(x->world));
    json_object_set_new(e, "device", json_string(x->device));
  }
  if (e && x->have_report) {
    json_object_set_new(e, "report", json_string(x->report_path));
    json_object_set_new(e, "phase",
                        json_string(nw_phase_name(x->report.phase)));
    json_object_set_new(e, "emergency_checkpoint",
                        json_boolean(x->report.emergency_checkpoint));
  }
  const nw_classification *c = &v->cls;
  if (e && (c->n_duplicates || c->n_foreign)) {
    json_object_set_new(e, "duplicate_pids",
                        nw_sup_json_pids(c->duplicate_pids, c->n_duplicates));
    json_object_set_new(e, "foreign_pids",
                        nw_sup_json_pids(c->foreign_pids, c->n_foreign));
  }
  return e;
}

json_t *nw_sup_entry_recovery(const nw_sup_verdict *v, const nw_decision *d,
                              json_t *before, const nw_config *after,
                              int failed_step) {
  return json_pack(
      "{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:i, s:f, s:i, s:b}", "event",
      "recovery", "cause", v->cause_name, "action", nw_action_name(d->action),
      "summary", d->summary, "attempt", d->attempt, "before", before, "after",
      nw_ledger_settings(after), "effective", after->batch.effective,
      "backoff_s", d->backoff_seconds, "failed_step", failed_step,
      "trim_after_eval", d->trim_after_eval);
}

json_t *nw_sup_entry_give_up(const char *cause_name, const char *reason,
                             const nw_config *cfg, int recoveries) {
  return json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:i}", "event", "give-up",
                   "cause", cause_name, "action", "give-up", "evidence", reason,
                   "settings", nw_ledger_settings(cfg), "effective",
                   cfg->batch.effective, "recoveries", recoveries);
}

json_t *nw_sup_entry_checkpoint_error(int pid, int step, const char *error) {
  return json_pack("{s:s, s:s, s:i, s:i, s:s}", "event", "checkpoint-error",
                   "cause", "storage", "pid", pid, "step", step, "evidence",
                   error);
}

json_t *nw_sup_entry_checkpoint_skipped(int pid, const char *path,
                                        const char *reason,
                                        const char *moved_to) {
  return json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "event",
                   "checkpoint-skipped", "cause", "storage", "pid", pid, "path",
                   path, "evidence", reason, "moved_to", moved_to);
}

json_t *nw_sup_entry_kill(json_t *pids, double grace) {
  return json_pack("{s:s, s:s, s:o, s:f}", "event", "kill", "cause",
                   "duplicate-process", "pids", pids, "grace_s", grace);
}

json_t *nw_sup_entry_alert(const char *evidence, const char *key, json_t *what,
                           double wait_s) {
  json_t *e = json_pack("{s:s, s:s, s:s, s:o}", "event", "alert", "cause",
                        "duplicate-process", "evidence", evidence, key, what);
  if (e && wait_s >= 0)
    json_object_set_new(e, "wait_s", json_real(wait_s));
  return e;
}

json_t *nw_sup_entry_resumed(int pid, const nw_sup_progress *p, int failed_step,
                             double fail_t, double spawn_t, double now) {
  int from = p->start_step;
  json_t *e = json_pack(
      "{s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f}", "event", "resumed",
      "pid", pid, "step", p->step, "resumed_from", from, "failed_step",
      failed_step, "steps_lost", failed_step - from, "seconds_to_recover",
      now - fail_t, "backoff_s", spawn_t - fail_t, "process_start_s",
      p->start_line_t > 0 ? p->start_line_t - spawn_t : -1.0, "first_step_s",
      now - spawn_t);
  if (e && p->resume_line_t > 0)
    json_object_set_new(e, "checkpoint_load_s",
                        json_real(p->resume_line_t - spawn_t));
  return e;
}

json_t *nw_sup_entry_reload(const char *path, int ok, const char *evidence) {
  if (ok)
    return json_pack("{s:s, s:s, s:b}", "event", "reload", "policy", path, "ok",
                     1);
  return json_pack("{s:s, s:s, s:b, s:s}", "event", "reload", "policy", path,
                   "ok", 0, "evidence", evidence);
}
