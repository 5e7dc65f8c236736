/* sup_machine.c — the supervisor's state machine (docs/supervisor.md, "The
 * state machine"). Every transition is decided in nw_sup_dispatch and the
 * per-state functions it calls; every deadline is derived from the state in
 * nw_sup_deadline. The table, (state, event) -> what happens, next state:
 *
 *   starting   line: start or step      -                     running
 *   starting,  deadline (hang)          SIGTERM + SIGCONT     stopping/hang
 *   running    stop                     SIGTERM               stopping/req
 *              exited, the last rank    observe, classify,    finished |
 *                                       decide, act           gave-up |
 *                                                             backoff |
 *                                                             waiting-foreign
 *   stopping   deadline (grace over)    SIGKILL               stopping/KILL
 *              stop, a request's        SIGKILL now           stopping/KILL
 *              stop, a hang's           becomes a request     stopping/req
 *              exited, the last rank    as above (a request: finished)
 *   backoff,   deadline, kills TERM     SIGKILL duplicates    kills KILL
 *   waiting-   deadline, kills KILL     forget them           kills NONE
 *   foreign    dups-gone                -                     kills NONE
 *              stop                     stop entry            finished
 *   waiting-   deadline, foreign_until  device re-checked     backoff
 *   foreign
 *   backoff    deadline, restart_at     start the ranks       starting |
 *                                                             gave-up
 *   any        line                     heartbeat; a step: READY, resumed
 *   any        reload                   the policy file again
 *
 * A deadline that passes always changes the state or one of its
 * sub-states, and with it the deadline: the loop never wakes for nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/fsutil.h" // defines: nw_write_file_atomic
#include "base/log.h"    // defines: nw_debug, nw_warn
#include "supervisor/sup_internal.h"

/* ---- entering a state ---- */

static void nw_sup_enter(nw_sup *s, nw_sup_state st, double now) {
  if (st != s->state)
    nw_debug("state %s -> %s", nw_sup_state_name(s->state),
             nw_sup_state_name(st));
  s->state = st;
  nw_sup_status_due(s, now);
  nw_sup_summary v;
  nw_sup_summarize(s, &v);
  nw_sup_notify_state(&s->notify, &v, now);
}

static void nw_sup_enter_stopping(nw_sup *s, nw_sup_stop_reason why,
                                  double now) {
  s->stop.reason = why;
  s->stop.phase = NW_SUP_KILL_TERM;
  s->stop.kill_at = now + s->cfg.supervisor.kill_grace;
  nw_sup_enter(s, NW_SUP_STOPPING, now);
}

/* The world is gone: what its exit comes to, as the next state. */
static void nw_sup_world_exited(nw_sup *s, int stop_requested, int hang,
                                double now) {
  nw_sup_plan p = nw_sup_act_exit(s, stop_requested, hang, now);
  switch (p.outcome) {
  case NW_SUP_OUT_OVER:
    nw_sup_enter(s, NW_SUP_FINISHED, now);
    break;
  case NW_SUP_OUT_GIVE_UP:
    nw_sup_enter(s, NW_SUP_GAVE_UP, now);
    break;
  case NW_SUP_OUT_RESTART:
  case NW_SUP_OUT_WAIT:
    s->restart_at = p.restart_at;
    s->foreign_until = p.foreign_until;
    /* duplicates SIGTERMed by the decision: their grace runs now */
    s->kills.phase = s->kills.n ? NW_SUP_KILL_TERM : NW_SUP_KILL_NONE;
    s->kills.at = s->kills.n ? now + s->kills.grace : 0;
    nw_sup_enter(s,
                 p.outcome == NW_SUP_OUT_WAIT ? NW_SUP_WAITING_FOREIGN
                                              : NW_SUP_BACKOFF,
                 now);
    break;
  }
}

/* ---- the states ---- */

/* A rank was reaped: the first failure takes its peers down (no rank
 * may stay blocked in a collective), the last exit ends the world. */
static void nw_sup_rank_exited(nw_sup *s, const nw_sup_event *e,
                               int stop_requested, int hang) {
  switch (nw_sup_ranks_exited(&s->ranks, e->rank, e->wstatus)) {
  case NW_SUP_RANK_EXIT_QUIET:
    break;
  case NW_SUP_RANK_EXIT_FIRST:
    nw_sup_act_kill_peers(s, e->rank);
    break;
  case NW_SUP_RANK_EXIT_ALL:
    nw_sup_world_exited(s, stop_requested, hang, e->now);
    break;
  }
}

/* starting, running: a trainer is watched through its heartbeat. */
static void nw_sup_in_watched(nw_sup *s, const nw_sup_event *e,
                              nw_sup_line line) {
  switch (e->kind) {
  case NW_SUP_EV_LINE:
    /* "start", or a foreign trainer's first "step" without one */
    if (s->state == NW_SUP_STARTING &&
        (line == NW_SUP_LINE_START || line == NW_SUP_LINE_STEP))
      nw_sup_enter(s, NW_SUP_RUNNING, e->now);
    break;
  case NW_SUP_EV_DEADLINE:
    nw_sup_act_hang(s, e->now);
    nw_sup_enter_stopping(s, NW_SUP_STOP_HANG, e->now);
    break;
  case NW_SUP_EV_STOP:
    nw_sup_act_stop_trainer(s, e->text);
    nw_sup_enter_stopping(s, NW_SUP_STOP_REQUESTED, e->now);
    break;
  case NW_SUP_EV_EXITED:
    nw_sup_rank_exited(s, e, 0, 0);
    break;
  default:
    break;
  }
}

/* stopping: SIGTERM sent; SIGKILL when the grace is over. */
static void nw_sup_in_stopping(nw_sup *s, const nw_sup_event *e) {
  nw_sup_stop *st = &s->stop;
  switch (e->kind) {
  case NW_SUP_EV_DEADLINE: /* only TERM has one: the grace is over */
    nw_sup_act_kill_trainer(s, NULL);
    st->phase = NW_SUP_KILL_KILL; /* its pidfd tells when it is gone */
    break;
  case NW_SUP_EV_STOP:
    if (st->reason == NW_SUP_STOP_REQUESTED) {
      /* asked twice (Ctrl-C twice): the person means now */
      nw_sup_act_kill_trainer(s, e->text);
      st->phase = NW_SUP_KILL_KILL;
    } else {
      st->reason = NW_SUP_STOP_REQUESTED; /* a hang stop becomes final */
    }
    break;
  case NW_SUP_EV_EXITED:
    nw_sup_rank_exited(s, e, st->reason == NW_SUP_STOP_REQUESTED,
                       st->reason == NW_SUP_STOP_HANG);
    break;
  default:
    break;
  }
}

/* The deadline of backoff and waiting-foreign: the duplicates' phase
 * first (a restart waits for them), then the state's own time. */
static void nw_sup_waiting_deadline(nw_sup *s, double now) {
  nw_sup_kills *k = &s->kills;
  if (k->phase == NW_SUP_KILL_TERM && now >= k->at) {
    nw_sup_kills_sigkill(k);
    k->phase = NW_SUP_KILL_KILL;
    k->at = now + NW_SUP_KILL_WAIT;
  } else if (k->phase == NW_SUP_KILL_KILL && now >= k->at) {
    nw_sup_kills_forget(k, 1);
    k->phase = NW_SUP_KILL_NONE;
  } else if (s->state == NW_SUP_WAITING_FOREIGN && now >= s->foreign_until) {
    nw_sup_act_recheck(s, now);
    if (s->restart_at < now)
      s->restart_at = now;
    nw_sup_enter(s, NW_SUP_BACKOFF, now);
  } else if (s->state == NW_SUP_BACKOFF && k->phase == NW_SUP_KILL_NONE &&
             now >= s->restart_at) {
    int rc = nw_sup_act_start(s, now);
    nw_sup_enter(s, rc < 0 ? NW_SUP_GAVE_UP : NW_SUP_STARTING, now);
  }
}

/* backoff, waiting-foreign: no trainer; duplicates may be going. */
static void nw_sup_in_waiting(nw_sup *s, const nw_sup_event *e) {
  switch (e->kind) {
  case NW_SUP_EV_DEADLINE:
    nw_sup_waiting_deadline(s, e->now);
    break;
  case NW_SUP_EV_DUPS_GONE:
    s->kills.phase = NW_SUP_KILL_NONE;
    break;
  case NW_SUP_EV_STOP:
    nw_sup_act_stop_idle(s, e->text);
    nw_sup_enter(s, NW_SUP_FINISHED, e->now);
    break;
  default:
    break;
  }
}

void nw_sup_dispatch(nw_sup *s, const nw_sup_event *e) {
  nw_sup_line line = NW_SUP_LINE_OTHER;
  nw_sup_summary v;
  if (e->kind == NW_SUP_EV_LINE) /* every line is a heartbeat too */
    line = nw_sup_progress_line(&s->progress, e->rank, e->text, e->now);
  else if (e->kind == NW_SUP_EV_OUTPUT)
    s->progress.last_line_t = e->now;
  if (e->kind == NW_SUP_EV_RELOAD) { /* the same in every state */
    nw_sup_summarize(s, &v);
    nw_sup_notify_reload(&s->notify, &v, 1);
    nw_sup_act_reload(s);
    nw_sup_notify_reload(&s->notify, &v, 0);
    return;
  }
  switch (s->state) {
  case NW_SUP_STARTING:
  case NW_SUP_RUNNING:
    nw_sup_in_watched(s, e, line);
    break;
  case NW_SUP_STOPPING:
    nw_sup_in_stopping(s, e);
    break;
  case NW_SUP_BACKOFF:
  case NW_SUP_WAITING_FOREIGN:
    nw_sup_in_waiting(s, e);
    break;
  case NW_SUP_FINISHED:
  case NW_SUP_GAVE_UP:
    break;
  }
  if (line == NW_SUP_LINE_CKPT_ERROR || line == NW_SUP_LINE_CKPT_SKIPPED)
    nw_sup_act_storage_line(s, line);
  /* after the transition: READY=1 and STOPPING=1 show the new state */
  if (line == NW_SUP_LINE_STEP) {
    nw_sup_act_step(s, e->now);
    nw_sup_summarize(s, &v);
    nw_sup_notify_step(&s->notify, &v, e->now);
  }
  if (e->kind == NW_SUP_EV_STOP) {
    nw_sup_summarize(s, &v);
    nw_sup_notify_stop(&s->notify, &v, e->now);
  }
}

/* ---- deadlines ---- */

static double nw_sup_earliest(double a, double b) {
  if (a <= 0)
    return b;
  return b > 0 && b < a ? b : a;
}

double nw_sup_deadline(const nw_sup *s) {
  double kills = s->kills.phase != NW_SUP_KILL_NONE ? s->kills.at : 0;
  switch (s->state) {
  case NW_SUP_STARTING:
  case NW_SUP_RUNNING: /* the heartbeat: the first line counts from the fork */
    return s->progress.last_line_t + s->cfg.supervisor.hang_timeout;
  case NW_SUP_STOPPING: /* after SIGKILL the trainer's pidfd tells */
    return s->stop.phase == NW_SUP_KILL_TERM ? s->stop.kill_at : 0;
  case NW_SUP_BACKOFF: /* no restart while duplicates are going */
    return kills > 0 ? kills : s->restart_at;
  case NW_SUP_WAITING_FOREIGN:
    return nw_sup_earliest(s->foreign_until, kills);
  case NW_SUP_FINISHED:
  case NW_SUP_GAVE_UP:
    break;
  }
  return 0;
}

/* ---- what others see ---- */

void nw_sup_summarize(const nw_sup *s, nw_sup_summary *v) {
  int stopping = s->state == NW_SUP_STOPPING;
  memset(v, 0, sizeof *v);
  v->state = s->state;
  v->hang = stopping && s->stop.reason == NW_SUP_STOP_HANG;
  v->stop_requested = stopping && s->stop.reason == NW_SUP_STOP_REQUESTED;
  v->kill_at =
      stopping && s->stop.phase == NW_SUP_KILL_TERM ? s->stop.kill_at : 0;
  v->step = s->progress.step;
  v->total_steps = s->progress.total_steps > 0 ? s->progress.total_steps
                                               : s->cfg.train.steps;
  v->have_loss = s->progress.have_loss;
  v->loss = s->progress.loss;
  v->micro = s->cfg.batch.micro;
  v->accum = nw_config_accum(&s->cfg.batch);
  v->seq = nw_config_max_len(&s->cfg);
  v->recoveries = s->rec.recoveries;
}

#define NW_SUP_STATUS_EVERY 0.25 /* seconds between writes of status.json */

static void nw_sup_write_status(nw_sup *s, double now) {
  char now_iso[40], path[NW_PATH_MAX + 32], err[512];
  const nw_sup_progress *p = &s->progress;
  s->status_t = now; /* a failed write is not retried until more is due */
  s->status_dirty = 0;
  nw_ledger_now_iso(now_iso, sizeof now_iso);
  json_t *o = json_pack(
      "{s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:i, s:i, s:i, s:o, s:i, s:i}",
      "updated", now_iso, "state",
      s->state == NW_SUP_FINISHED && s->stopped ? "stopped"
                                                : nw_sup_state_name(s->state),
      "supervisor_pid", (int)getpid(), "trainer_pid",
      (int)s->ranks.rank[0].child.pid, "step", p->step, "steps", p->total_steps,
      "loss", p->loss, "seq_len", p->seq_len, "recoveries", s->rec.recoveries,
      "starts", s->ranks.starts, "settings", nw_ledger_settings(&s->cfg),
      "hang_timeout_s", (int)s->cfg.supervisor.hang_timeout, "exit_code",
      s->exit_code);
  if (!o)
    return;
  json_object_set_new(o, "run_id", json_string(s->log.run_id));
  int pids[NW_SUP_MAX_RANKS], n = nw_sup_ranks_pids(&s->ranks, pids);
  json_object_set_new(o, "trainer_pids", nw_sup_json_pids(pids, n));
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!text)
    return;
  snprintf(path, sizeof path, "%s/status.json", s->cfg.run.dir);
  if (nw_write_file_atomic(path, text, strlen(text), err, sizeof err) < 0)
    nw_warn("status: %s", err);
  free(text);
}

void nw_sup_status_due(nw_sup *s, double now) {
  s->status_dirty = 1;
  if (s->state == NW_SUP_FINISHED || s->state == NW_SUP_GAVE_UP ||
      now - s->status_t >= NW_SUP_STATUS_EVERY)
    nw_sup_write_status(s, now);
}

double nw_sup_status_deadline(const nw_sup *s) {
  return s->status_dirty ? s->status_t + NW_SUP_STATUS_EVERY : 0;
}

void nw_sup_status_flush(nw_sup *s, double now) {
  if (s->status_dirty && now >= s->status_t + NW_SUP_STATUS_EVERY)
    nw_sup_write_status(s, now);
}
