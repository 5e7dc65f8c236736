/* webhook_worker.c — a hook's worker thread: takes the messages of its
 * queue one at a time and delivers each with retries (exponential backoff
 * with full jitter, Retry-After honoured up to alert.max_backoff, Slack's
 * one message a second), then records the outcome for the supervisor (an
 * eventfd counts them: EFD_SEMAPHORE, readable exactly while outcomes
 * wait). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alerts/alert_payload.h"
#include "alerts/webhook_internal.h"
#include "base/clock.h"
#include "base/log.h"

#define NW__SLACK_SPACING 1.0 /* Slack: about one message a second a hook */

/* --- outcomes ---------------------------------------------------------- */

json_t *nw_webhook__outcome(const nw_webhook__hook *h, const json_t *entry,
                            const char *outcome, int attempts, long status,
                            double seconds, const char *error) {
  const char *of = json_string_value(json_object_get(entry, "event"));
  json_t *o =
      json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:f}", "event",
                "delivery", "hook", h->name, "host", h->host, "format",
                nw_alert_format_name(h->format), "of", of ? of : "?", "outcome",
                outcome, "attempts", attempts, "http_status", (int)status,
                "seconds", (double)(long)(seconds * 1000) / 1000);
  if (!o)
    return NULL;
  const char *t = json_string_value(json_object_get(entry, "time"));
  if (t)
    json_object_set_new(o, "of_time", json_string(t));
  if (error)
    json_object_set_new(o, "error", json_string(error));
  return o;
}

/* Under a->mu; steals o. */
void nw_webhook__push_outcome(nw_alerter *a, json_t *o) {
  if (!o || json_array_append_new(a->outcomes, o) < 0) {
    nw_error("webhooks: out of memory recording a delivery outcome");
    return;
  }
  uint64_t one = 1;
  if (write(a->efd, &one, sizeof one) != (ssize_t)sizeof one)
    nw_error("webhooks: eventfd: %s", strerror(errno));
}

static void nw__log_outcome(const nw_webhook__hook *h, const json_t *o) {
  const char *outcome = json_string_value(json_object_get(o, "outcome"));
  const char *of = json_string_value(json_object_get(o, "of"));
  int attempts = (int)json_integer_value(json_object_get(o, "attempts"));
  double secs = json_real_value(json_object_get(o, "seconds"));
  if (strcmp(outcome, "delivered") == 0) {
    nw_info("webhook %s (%s): %s delivered (HTTP %d, %d attempt%s, %.2f s)",
            h->name, h->host, of,
            (int)json_integer_value(json_object_get(o, "http_status")),
            attempts, attempts == 1 ? "" : "s", secs);
    return;
  }
  if (strcmp(outcome, "gone") == 0) {
    nw_warn("webhook %s (%s): %s: the Discord webhook was deleted; this hook "
            "is disabled for the rest of the run",
            h->name, h->host, json_string_value(json_object_get(o, "error")));
    return;
  }
  nw_warn("webhook %s (%s): %s %s after %d attempt%s (%.2f s): %s", h->name,
          h->host, of, outcome, attempts, attempts == 1 ? "" : "s", secs,
          json_string_value(json_object_get(o, "error")));
}

/* --- the worker -------------------------------------------------------- */

/* Sleeps until deadline (monotonic) unless the drain time runs out first:
 * 1 then. A new message or stop wakes the condvar; the loop sleeps on. */
static int nw__wait_until(nw_webhook__hook *h, double deadline) {
  nw_alerter *a = h->a;
  pthread_mutex_lock(&a->mu);
  while (!atomic_load(&a->abandon) && nw_clock_now() < deadline) {
    struct timespec ts = nw_clock_timespec(deadline);
    pthread_cond_timedwait(&h->cond, &a->mu, &ts);
  }
  int abandoned = atomic_load(&a->abandon);
  pthread_mutex_unlock(&a->mu);
  return abandoned;
}

/* Full jitter (uniform in [0, min(cap, base * 2^(n-1))]): workers that
 * failed together do not retry together. */
static double nw__backoff(nw_webhook__hook *h, int n) {
  double cap = h->a->cfg.max_backoff, d = 1.0;
  for (int i = 1; i < n && d < cap; i++)
    d *= 2;
  if (d > cap)
    d = cap;
  h->rng ^= h->rng << 13; /* xorshift64 */
  h->rng ^= h->rng >> 7;
  h->rng ^= h->rng << 17;
  return d * (double)(h->rng >> 11) / (double)(1ULL << 53);
}

/* dst = src, cut to fit */
static void nw__copy(char *dst, size_t len, const char *src) {
  size_t n = strlen(src);
  if (n >= len)
    n = len - 1;
  memmove(dst, src, n);
  dst[n] = 0;
}

/* Delivers one message with retries; returns its outcome. */
static json_t *nw__deliver(nw_webhook__hook *h, const nw_webhook__msg *m) {
  nw_alerter *a = h->a;
  const nw_alert_config *cfg = &a->cfg;
  char *body = nw_alert_payload(h->format, m->entry, a->hostname, a->run_id);
  if (!body)
    return nw_webhook__outcome(h, m->entry, "failed", 0, 0,
                               nw_clock_now() - m->queued,
                               "out of memory formatting the message");
  const char *outcome = "failed";
  char err[512] = "", why[640];
  long status = 0, retry_after = 0;
  int tries = 0;
  nw_webhook__result r = NW_WEBHOOK_RETRY;
  while (tries < cfg->attempts) {
    if (h->format == NW_ALERT_SLACK && nw__wait_until(h, h->next_send)) {
      r = NW_WEBHOOK_ABORTED;
      break;
    }
    tries++;
    r = nw_webhook__send(h, body, &status, &retry_after, err, sizeof err);
    if (h->format == NW_ALERT_SLACK)
      h->next_send = nw_clock_now() + NW__SLACK_SPACING;
    if (r != NW_WEBHOOK_RETRY || tries == cfg->attempts)
      break;
    double wait = nw__backoff(h, tries);
    if (retry_after > 0) {
      if ((double)retry_after > cfg->max_backoff) {
        /* retrying sooner would only be refused again; waiting longer
         * would hold the hook's queue beyond what the config allows */
        size_t n = strlen(err);
        snprintf(err + n, sizeof err - n,
                 "; Retry-After %ld s is beyond alert.max_backoff (%g s)",
                 retry_after, cfg->max_backoff);
        break;
      }
      wait = (double)retry_after;
    }
    nw_debug("webhook %s (%s): attempt %d of %d: %s; next in %.1f s", h->name,
             h->host, tries, cfg->attempts, err, wait);
    if (nw__wait_until(h, nw_clock_now() + wait)) {
      r = NW_WEBHOOK_ABORTED;
      break;
    }
  }
  free(body);
  switch (r) {
  case NW_WEBHOOK_SENT:
    outcome = "delivered";
    err[0] = 0;
    break;
  case NW_WEBHOOK_REJECT:
    outcome = "rejected";
    break;
  case NW_WEBHOOK_GONE:
    outcome = "gone";
    atomic_store(&h->gone, 1);
    break;
  case NW_WEBHOOK_ABORTED:
    outcome = "abandoned";
    snprintf(why, sizeof why,
             "the drain time at exit (alert.drain_timeout = %g s) ran out%s%s",
             cfg->drain_timeout, err[0] ? "; last: " : "", err);
    nw__copy(err, sizeof err, why);
    break;
  case NW_WEBHOOK_RETRY:
  case NW_WEBHOOK_BROKEN:
    outcome = "failed";
    break;
  }
  return nw_webhook__outcome(h, m->entry, outcome, tries, status,
                             nw_clock_now() - m->queued, err[0] ? err : NULL);
}

void *nw_webhook__worker(void *arg) {
  nw_webhook__hook *h = arg;
  nw_alerter *a = h->a;
  /* Started with every signal blocked (nw_alerter_start); the supervisor's
   * own are named again so that no change there can ever route SIGTERM or
   * SIGCHLD here (its signalfd reads them). SIGPIPE from a TLS write to a
   * closed socket stays pending on this thread and is harmless. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  pthread_mutex_lock(&a->mu);
  for (;;) {
    while (h->n == 0 && !a->stopping && !atomic_load(&a->abandon))
      pthread_cond_wait(&h->cond, &a->mu);
    if (atomic_load(&a->abandon) || h->n == 0)
      break; /* abandoned, or stopping with nothing left */
    nw_webhook__msg m = h->ring[h->head];
    h->head = (h->head + 1) % h->cap;
    h->n--;
    json_t *o;
    if (atomic_load(&h->gone)) {
      o = nw_webhook__outcome(
          h, m.entry, "gone", 0, 0, nw_clock_now() - m.queued,
          "not sent: the webhook is gone (an earlier HTTP 404)");
    } else {
      pthread_mutex_unlock(&a->mu);
      o = nw__deliver(h, &m);
      if (o)
        nw__log_outcome(h, o);
      pthread_mutex_lock(&a->mu);
    }
    json_decref(m.entry);
    nw_webhook__push_outcome(a, o);
    pthread_cond_broadcast(&a->idle);
  }
  h->exited = 1;
  pthread_cond_broadcast(&a->idle);
  pthread_mutex_unlock(&a->mu);
  return NULL;
}
