/* sup_notify.c — what `nightwatch run` tells systemd, and when
 * (docs/operations.md has the message table).
 *
 * READY=1 at the trainer's first step (once per run: restarts after a
 * recovery do not make the run "not ready" again); STATUS= on every state
 * change and at most once a second for progress; STOPPING=1 on a stop
 * request or before the supervisor exits; EXTEND_TIMEOUT_USEC= while a
 * stopping trainer writes its checkpoint; RELOADING=1 / READY=1 around a
 * SIGHUP reload; WATCHDOG=1 at half of WATCHDOG_USEC.
 *
 * The loop is "healthy", and pings, when it comes round: every ping is
 * sent at the end of a loop iteration, after that iteration's events (the
 * signalfd, the trainer's pidfd and status pipe, deadlines) were handled.
 * Anything that keeps the loop from coming round stops the pings: a write
 * blocked on a full stderr or a dead disk (ledger, status.json fsync), a
 * deadlock, a busy loop. A trainer that hangs is not an unhealthy
 * supervisor: the loop handles it (supervisor.hang_timeout) and goes on
 * pinging. */
#include <stdio.h>

#include "supervisor/sup_notify.h"

#define NW_SUP_STATUS_EVERY 1.0 /* seconds between progress STATUS lines */

static void nw_sup_status_text(const nw_sup_summary *v, char *buf, size_t len) {
  const char *st = v->hang ? "stopping (hang)" : nw_sup_state_name(v->state);
  char loss[40] = "";
  if (v->have_loss)
    snprintf(loss, sizeof loss, " loss %.4f", v->loss);
  snprintf(
      buf, len, "%s: step %d/%d%s micro %d x accum %d seq %d recoveries %d", st,
      v->step, v->total_steps, loss, v->micro, v->accum, v->seq, v->recoveries);
}

static int nw_sup_terminal(const nw_sup_summary *v) {
  return v->state == NW_SUP_FINISHED || v->state == NW_SUP_GAVE_UP;
}

/* STATUS=, with STOPPING=1 the first time the supervisor is on its way
 * out. */
static void nw_sup_status(nw_sup_notify *m, const nw_sup_summary *v,
                          double now) {
  char text[256];
  nw_sup_status_text(v, text, sizeof text);
  int stop = nw_sup_terminal(v) && !m->stopping;
  nw_notify_send(&m->n, "%sSTATUS=%s", stop ? "STOPPING=1\n" : "", text);
  m->stopping |= stop;
  m->shown_state = (int)v->state;
  m->status_t = now;
  m->dirty = 0;
}

void nw_sup_notify_init(nw_sup_notify *m, double kill_grace, double now) {
  nw_notify_init(&m->n, now);
  m->ready = m->stopping = m->dirty = 0;
  m->shown_state = -1;
  m->status_t = 0;
  m->extend_at = 0;
  /* four extensions within the grace at least, none more often than four
   * a second or rarer than every 5 s */
  double p = kill_grace / 4;
  m->extend_every = p < 0.25 ? 0.25 : p > 5 ? 5 : p;
}

void nw_sup_notify_step(nw_sup_notify *m, const nw_sup_summary *v, double now) {
  m->dirty = 1;
  if (m->ready)
    return;
  /* the first step: the run is up (the model built, the checkpoint loaded,
   * one optimizer step done), which is what Type=notify waits for */
  char text[256];
  nw_sup_status_text(v, text, sizeof text);
  nw_notify_send(&m->n, "READY=1\nSTATUS=%s", text);
  m->ready = 1;
  m->shown_state = (int)v->state;
  m->status_t = now;
  m->dirty = 0;
}

void nw_sup_notify_state(nw_sup_notify *m, const nw_sup_summary *v,
                         double now) {
  if ((int)v->state != m->shown_state)
    nw_sup_status(m, v, now);
}

/* EXTEND_TIMEOUT_USEC: what is left of the kill grace plus three periods,
 * so the extension lasts until the supervisor's own SIGKILL, and beyond it
 * only as long as the loop keeps re-sending (a stuck supervisor is left to
 * systemd's TimeoutStopSec). */
static void nw_sup_extend(nw_sup_notify *m, const nw_sup_summary *v,
                          double now) {
  double left = v->kill_at > now ? v->kill_at - now : 0;
  double ext = left + 3 * m->extend_every;
  nw_notify_send(&m->n, "EXTEND_TIMEOUT_USEC=%llu",
                 (unsigned long long)(ext * 1e6));
  m->extend_at = now + m->extend_every;
}

void nw_sup_notify_stop(nw_sup_notify *m, const nw_sup_summary *v, double now) {
  if (!m->stopping) {
    char text[256];
    nw_sup_status_text(v, text, sizeof text);
    nw_notify_send(&m->n, "STOPPING=1\nSTATUS=%s", text);
    m->stopping = 1;
    m->shown_state = (int)v->state;
    m->status_t = now;
  }
  if (m->n.on && v->stop_requested && m->extend_at == 0)
    nw_sup_extend(m, v, now);
}

void nw_sup_notify_reload(nw_sup_notify *m, const nw_sup_summary *v,
                          int begin) {
  /* before READY systemd is still starting the unit: a RELOADING there is
   * ignored and a READY would be premature, so a reload then says nothing */
  if (!m->ready || m->stopping)
    return;
  if (begin) {
    nw_notify_send(&m->n, "RELOADING=1\nMONOTONIC_USEC=%llu",
                   (unsigned long long)nw_notify_monotonic_usec());
    return;
  }
  char text[256];
  nw_sup_status_text(v, text, sizeof text);
  nw_notify_send(&m->n, "READY=1\nSTATUS=%s", text);
}

void nw_sup_notify_tick(nw_sup_notify *m, const nw_sup_summary *v, double now) {
  /* progress held back by the rate limit (every state change was sent by
   * nw_sup_notify_state already) */
  if ((int)v->state != m->shown_state ||
      (m->dirty && now - m->status_t >= NW_SUP_STATUS_EVERY))
    nw_sup_status(m, v, now);
  if (m->extend_at > 0) {
    if (!v->stop_requested)
      m->extend_at = 0; /* the trainer is gone: nothing left to wait for */
    else if (now >= m->extend_at)
      nw_sup_extend(m, v, now);
  }
  nw_notify_ping(&m->n, now);
}

double nw_sup_notify_deadline(const nw_sup_notify *m) {
  double d = nw_notify_next_ping(&m->n);
  if (m->dirty && m->n.on) {
    double t = m->status_t + NW_SUP_STATUS_EVERY;
    if (d == 0 || t < d)
      d = t;
  }
  if (m->extend_at > 0 && (d == 0 || m->extend_at < d))
    d = m->extend_at;
  return d;
}
