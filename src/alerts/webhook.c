/* webhook.c — the alerter: one worker thread per hook (webhook_worker.c),
 * each with its own bounded queue and libcurl handle (webhook_send.c), so
 * that a hook that times out and backs off for minutes never holds back the
 * others' messages. Here: starting and stopping them, the queues the
 * supervisor posts to, and the outcomes it takes back.
 *
 * One mutex (a->mu) guards every queue, the "gone" and "stopping" flags and
 * the outcome list (webhook_internal.h). An outcome is appended to
 * a->outcomes and counted in an eventfd (EFD_SEMAPHORE: readable exactly
 * while outcomes wait). */
#define _GNU_SOURCE
#include "alerts/webhook.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "alerts/webhook_internal.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

/* --- start ------------------------------------------------------------- */

static void nw__free(nw_alerter *a) {
  for (int i = 0; i < a->n_hooks; i++) {
    nw_webhook__hook *h = &a->hooks[i];
    for (int k = 0; k < h->n; k++)
      json_decref(h->ring[(h->head + k) % h->cap].entry);
    free(h->ring);
    if (h->curl)
      curl_easy_cleanup(h->curl);
    if (h->secret) {
      explicit_bzero(h->secret, h->secret_len);
      free(h->secret);
    }
    for (int k = 0; k < h->n_scrub; k++) {
      explicit_bzero(h->scrub[k], strlen(h->scrub[k]));
      free(h->scrub[k]);
    }
    pthread_cond_destroy(&h->cond);
  }
  explicit_bzero(a->hooks, sizeof a->hooks); /* the URLs */
  json_decref(a->outcomes);
  if (a->efd >= 0)
    close(a->efd);
  pthread_cond_destroy(&a->idle);
  pthread_mutex_destroy(&a->mu);
  free(a);
}

/* Ends the workers now: used when start fails half-way. */
static void nw__abort_workers(nw_alerter *a) {
  pthread_mutex_lock(&a->mu);
  a->stopping = 1;
  atomic_store(&a->abandon, 1);
  for (int i = 0; i < a->n_hooks; i++)
    pthread_cond_broadcast(&a->hooks[i].cond);
  pthread_mutex_unlock(&a->mu);
  for (int i = 0; i < a->n_hooks; i++)
    if (a->hooks[i].started)
      pthread_join(a->hooks[i].thread, NULL);
}

/* *out = a new alerter without hooks: the delivery settings, the run's
 * names, its mutex, condvar, outcome list and eventfd. 0, or NW_EHOSTMEM or
 * NW_ESYS with err set. */
static int nw__alerter_new(nw_alerter **out, const nw_alert_config *cfg,
                           const char *run_id, const pthread_condattr_t *ca,
                           char *err, size_t errlen) {
  nw_alerter *a = calloc(1, sizeof *a);
  if (!a) {
    snprintf(err, errlen, "webhooks: out of memory");
    return NW_EHOSTMEM;
  }
  a->efd = -1;
  a->cfg = *cfg;
  a->cfg.n_hooks = 0; /* the hooks live in a->hooks only */
  memset(a->cfg.hooks, 0, sizeof a->cfg.hooks);
  snprintf(a->run_id, sizeof a->run_id, "%s", run_id ? run_id : "");
  if (gethostname(a->hostname, sizeof a->hostname) < 0)
    snprintf(a->hostname, sizeof a->hostname, "unknown");
  a->hostname[sizeof a->hostname - 1] = 0;
  if (pthread_mutex_init(&a->mu, NULL) != 0) {
    free(a);
    snprintf(err, errlen, "webhooks: pthread_mutex_init failed");
    return NW_ESYS;
  }
  pthread_cond_init(&a->idle, ca);
  a->outcomes = json_array();
  a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
  if (!a->outcomes || a->efd < 0) {
    snprintf(err, errlen, "webhooks: eventfd: %s", strerror(errno));
    nw__free(a);
    return NW_ESYS;
  }
  *out = a;
  return 0;
}

/* Hook i of the alerter from the config's: its names, secret, queue,
 * redaction list and libcurl handle. 0, or an error with err set. */
static int nw__hook_init(nw_alerter *a, int i, const nw_alert_hook *src,
                         uint64_t seed, const pthread_condattr_t *ca, char *err,
                         size_t errlen) {
  nw_webhook__hook *h = &a->hooks[i];
  a->n_hooks = i + 1; /* nw__free sees the hooks set up so far */
  pthread_cond_init(&h->cond, ca);
  h->a = a;
  memcpy(h->name, src->name, sizeof h->name);
  h->name[sizeof h->name - 1] = 0;
  memcpy(h->url, src->url, sizeof h->url);
  h->url[sizeof h->url - 1] = 0;
  h->format = src->format;
  h->events = src->events | NW_ALERT_EV_RECOVERY;
  nw_alert_url_host(h->url, h->host, sizeof h->host);
  h->rng = (seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)) | 1;
  int rc;
  if (src->secret_file[0] &&
      (rc = nw_webhook__read_secret(h, src->secret_file, err, errlen)) < 0)
    return rc;
  h->cap = a->cfg.queue;
  if (!(h->ring = calloc((size_t)h->cap, sizeof *h->ring)) ||
      nw_webhook__redact_init(h) < 0) {
    snprintf(err, errlen, "webhooks: out of memory");
    return NW_EHOSTMEM;
  }
  if ((rc = nw_webhook__curl_setup(h, &a->cfg)) < 0) {
    snprintf(err, errlen, "alert hook %s: cannot set up libcurl", h->name);
    return rc;
  }
  return 0;
}

/* Starts every hook's worker with every signal blocked: they start with
 * that mask and never take the supervisor's signals, not even before
 * their first instruction. 0, or NW_ESYS with err set. */
static int nw__start_workers(nw_alerter *a, char *err, size_t errlen) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (int i = 0; i < a->n_hooks; i++) {
    int e = pthread_create(&a->hooks[i].thread, NULL, nw_webhook__worker,
                           &a->hooks[i]);
    if (e != 0) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      snprintf(err, errlen, "webhooks: pthread_create: %s", strerror(e));
      return NW_ESYS;
    }
    a->hooks[i].started = 1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return 0;
}

int nw_alerter_start(nw_alerter **out, const nw_alert_config *cfg,
                     const char *run_id, char *err, size_t errlen) {
  *out = NULL;
  if (errlen)
    err[0] = 0;
  if (!cfg || cfg->n_hooks <= 0)
    return 0;
  if (cfg->n_hooks > NW_ALERT_MAX_HOOKS || cfg->attempts < 1 ||
      cfg->queue < 1 || !(cfg->connect_timeout > 0) || !(cfg->timeout > 0) ||
      !(cfg->max_backoff >= 0) || !(cfg->drain_timeout >= 0)) {
    snprintf(err, errlen,
             "alert: attempts and queue must be >= 1, the timeouts > 0");
    return NW_ECONFIG;
  }
  NW_TRY(nw_webhook__curl_global(err, errlen));
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  nw_alerter *a = NULL;
  int rc = nw__alerter_new(&a, cfg, run_id, &ca, err, errlen);
  if (rc < 0) {
    pthread_condattr_destroy(&ca);
    return rc;
  }
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
    seed = (uint64_t)time(NULL) * 6364136223846793005ULL ^ (uint64_t)getpid();
  for (int i = 0; i < cfg->n_hooks && rc == 0; i++)
    rc = nw__hook_init(a, i, &cfg->hooks[i], seed, &ca, err, errlen);
  if (rc == 0)
    rc = nw__start_workers(a, err, errlen);
  pthread_condattr_destroy(&ca);
  if (rc < 0) {
    nw__abort_workers(a);
    nw__free(a);
    return rc;
  }
  *out = a;
  return 0;
}

/* --- the supervisor's side --------------------------------------------- */

int nw_alerter_post(nw_alerter *a, const json_t *entry) {
  if (!a || !json_is_object(entry))
    return 0;
  unsigned bit =
      nw_alert_event_bit(json_string_value(json_object_get(entry, "event")));
  if (!bit)
    return 0;
  int queued = 0, dropped = 0;
  double now = nw_clock_now();
  pthread_mutex_lock(&a->mu);
  for (int i = 0; i < a->n_hooks && !a->stopping; i++) {
    nw_webhook__hook *h = &a->hooks[i];
    if (!(h->events & bit) || atomic_load(&h->gone))
      continue;
    json_t *copy = json_deep_copy(entry);
    if (!copy)
      continue;
    if (h->n == h->cap) {
      /* the newest news matters most: the oldest waiting message goes */
      nw_webhook__msg old = h->ring[h->head];
      h->head = (h->head + 1) % h->cap;
      h->n--;
      char why[128];
      snprintf(why, sizeof why,
               "not sent: the queue was full (alert.queue = %d)", h->cap);
      nw_webhook__push_outcome(a,
                               nw_webhook__outcome(h, old.entry, "dropped", 0,
                                                   0, now - old.queued, why));
      json_decref(old.entry);
      dropped++;
    }
    h->ring[(h->head + h->n) % h->cap] = (nw_webhook__msg){copy, now};
    h->n++;
    queued++;
    pthread_cond_signal(&h->cond);
  }
  pthread_mutex_unlock(&a->mu);
  if (dropped)
    nw_warn("webhooks: %d queued message%s dropped: the queue is full "
            "(alert.queue = %d)",
            dropped, dropped == 1 ? "" : "s", a->cfg.queue);
  return queued;
}

int nw_alerter_fd(const nw_alerter *a) { return a ? a->efd : -1; }

/* Under a->mu. */
static json_t *nw__take_locked(nw_alerter *a) {
  if (json_array_size(a->outcomes) == 0)
    return NULL;
  json_t *o = json_incref(json_array_get(a->outcomes, 0));
  json_array_remove(a->outcomes, 0);
  uint64_t one;
  if (read(a->efd, &one, sizeof one) != (ssize_t)sizeof one)
    nw_error("webhooks: eventfd: %s", strerror(errno));
  return o;
}

json_t *nw_alerter_take(nw_alerter *a) {
  if (!a)
    return NULL;
  pthread_mutex_lock(&a->mu);
  json_t *o = nw__take_locked(a);
  pthread_mutex_unlock(&a->mu);
  return o;
}

void nw_alerter_describe(const nw_alerter *a, const char *event, char *buf,
                         size_t len) {
  if (!len)
    return;
  if (!a) {
    snprintf(buf, len, "ledger only (no webhook configured)");
    return;
  }
  unsigned bit = nw_alert_event_bit(event);
  size_t n = 0;
  const char *gone = NULL;
  buf[0] = 0;
  for (int i = 0; i < a->n_hooks; i++) {
    const nw_webhook__hook *h = &a->hooks[i];
    if (!bit || !(h->events & bit))
      continue;
    if (atomic_load(&h->gone)) {
      gone = h->name;
      continue;
    }
    int w = snprintf(buf + n, len - n, "%s%s (%s)", n ? ", " : "queued for ",
                     h->name, h->host);
    if (w < 0 || (size_t)w >= len - n)
      return; /* truncated, still terminated */
    n += (size_t)w;
  }
  if (n)
    return;
  if (gone)
    snprintf(buf, len, "ledger only (webhook %s is gone)", gone);
  else
    snprintf(buf, len, "ledger only (no hook takes %s)", event ? event : "?");
}

void nw_alerter_stop(nw_alerter *a, void (*fn)(void *user, json_t *outcome),
                     void *user) {
  if (!a)
    return;
  pthread_mutex_lock(&a->mu);
  a->stopping = 1;
  for (int i = 0; i < a->n_hooks; i++)
    pthread_cond_broadcast(&a->hooks[i].cond);
  double deadline = nw_clock_now() + a->cfg.drain_timeout;
  for (;;) {
    int running = 0;
    for (int i = 0; i < a->n_hooks; i++)
      running += !a->hooks[i].exited;
    if (!running)
      break;
    struct timespec ts = nw_clock_timespec(deadline);
    if (pthread_cond_timedwait(&a->idle, &a->mu, &ts) == ETIMEDOUT) {
      /* what is left is abandoned: the transfer in flight ends at its
       * next progress callback, backoff waits at once */
      atomic_store(&a->abandon, 1);
      for (int i = 0; i < a->n_hooks; i++)
        pthread_cond_broadcast(&a->hooks[i].cond);
      break;
    }
  }
  pthread_mutex_unlock(&a->mu);
  for (int i = 0; i < a->n_hooks; i++)
    if (a->hooks[i].started)
      pthread_join(a->hooks[i].thread, NULL);
  /* only this thread now */
  int abandoned = 0;
  char why[160];
  snprintf(why, sizeof why,
           "not sent: the drain time at exit (alert.drain_timeout = %g s) "
           "ran out",
           a->cfg.drain_timeout);
  for (int i = 0; i < a->n_hooks; i++) {
    nw_webhook__hook *h = &a->hooks[i];
    while (h->n > 0) {
      nw_webhook__msg m = h->ring[h->head];
      h->head = (h->head + 1) % h->cap;
      h->n--;
      nw_webhook__push_outcome(
          a, nw_webhook__outcome(h, m.entry, "abandoned", 0, 0,
                                 nw_clock_now() - m.queued, why));
      json_decref(m.entry);
      abandoned++;
    }
  }
  if (abandoned)
    nw_warn("webhooks: %d message%s abandoned at exit (alert.drain_timeout "
            "= %g s)",
            abandoned, abandoned == 1 ? "" : "s", a->cfg.drain_timeout);
  json_t *o;
  while ((o = nw__take_locked(a)) != NULL) {
    if (fn)
      fn(user, o);
    json_decref(o);
  }
  nw__free(a);
}
