/* webhook.c — webhook delivery: one worker thread per hook, each with its
 * own bounded queue and libcurl handle, so that a hook that times out and
 * backs off for minutes never holds back the others' messages.
 *
 * One mutex (a->mu) guards every queue, the "gone" and "stopping" flags and
 * the outcome list; each worker sleeps on its hook's condvar (CLOCK_MONOTONIC)
 * with a deadline: a new message, stop, or the end of the drain time wakes
 * it. The network is touched only by the workers, without the mutex held.
 * An outcome is appended to a->outcomes and counted in an eventfd
 * (EFD_SEMAPHORE: readable exactly while outcomes wait). */
#define _GNU_SOURCE
#include "alerts/webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "alerts/alert_payload.h"
#include "alerts/hmac.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#ifndef NW_VERSION
#error "NW_VERSION is defined by CMakeLists.txt"
#endif

#define NW__SECRET_MAX 4096   /* bytes of a secret file */
#define NW__SCRUB_MAX 24      /* strings never to show: URL parts, the secret */
#define NW__SLACK_SPACING 1.0 /* Slack: about one message a second a hook */

typedef struct {
  json_t *entry; /* the hook's own deep copy */
  double queued; /* monotonic seconds */
} nw__msg;

typedef enum {
  NW__SENT,    /* 2xx */
  NW__RETRY,   /* connection error, timeout, 408, 429, 5xx */
  NW__REJECT,  /* another status: the receiver will not take it */
  NW__GONE,    /* a Discord 404/410: the webhook was deleted */
  NW__BROKEN,  /* a curl error no retry can fix (a malformed URL) */
  NW__ABORTED, /* the drain time ran out during the attempt */
} nw__result;

typedef struct nw__hook {
  struct nw_alerter *a;
  char name[NW_ALERT_NAME_MAX];
  char host[256]; /* the only part of the URL ever shown */
  char url[NW_ALERT_URL_MAX];
  int format;
  unsigned events;
  char *secret; /* NULL: unsigned; secret_len bytes, wiped at free */
  size_t secret_len;
  char *scrub[NW__SCRUB_MAX]; /* longest first */
  int n_scrub;
  atomic_int gone; /* a Discord 404: no more posts, nothing more sent */
  /* under a->mu */
  nw__msg *ring;
  int cap, head, n;
  int exited; /* the worker has returned */
  pthread_cond_t cond;
  /* the worker's own */
  pthread_t thread;
  int started;
  CURL *curl;
  double next_send; /* Slack spacing */
  uint64_t rng;
  char errbuf[CURL_ERROR_SIZE];
  char resp[200]; /* the start of the answer's body, for the error text */
  size_t resp_n;
} nw__hook;

struct nw_alerter {
  pthread_mutex_t mu;
  pthread_cond_t idle; /* a worker finished a message or exited */
  int stopping;        /* no more posts; workers exit with empty queues */
  atomic_int abandon;  /* drain time is up: transfers and waits end */
  int efd;             /* eventfd, one count per outcome waiting */
  json_t *outcomes;    /* array, oldest first */
  nw_alert_config cfg; /* delivery settings (hooks are copied below) */
  char run_id[128];
  char hostname[256];
  int n_hooks;
  nw__hook hooks[NW_ALERT_MAX_HOOKS];
};

/* --- curl, once per process ------------------------------------------ */

static pthread_once_t nw__curl_once = PTHREAD_ONCE_INIT;
static CURLcode nw__curl_init_rc;

static void nw__curl_init(void) {
  nw__curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (nw__curl_init_rc != CURLE_OK)
    return;
  /* Without the threaded resolver, libcurl with CURLOPT_NOSIGNAL resolves
   * names synchronously and no timeout bounds a hung DNS server. */
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  if (!(v->features & CURL_VERSION_ASYNCHDNS))
    nw_warn("webhooks: libcurl %s has no threaded resolver: "
            "alert.connect_timeout does not bound a DNS lookup",
            v->version);
}

/* --- never showing a URL's token or the secret ------------------------ */

static int nw__add_scrub(nw__hook *h, const char *s, size_t n, size_t min) {
  if (n < min || h->n_scrub == NW__SCRUB_MAX)
    return 0;
  char *c = strndup(s, n);
  if (!c)
    return NW_EHOSTMEM;
  /* longest first: the whole URL is replaced before its pieces */
  int i = h->n_scrub++;
  while (i > 0 && strlen(h->scrub[i - 1]) < n) {
    h->scrub[i] = h->scrub[i - 1];
    i--;
  }
  h->scrub[i] = c;
  return 0;
}

/* The whole URL, its user:password@, its path and query, and each piece
 * of those (Slack's and Discord's tokens are path segments; others put
 * them in the query), and the secret. */
static int nw__scrub_init(nw__hook *h) {
  const char *u = h->url;
  NW_TRY(nw__add_scrub(h, u, strlen(u), 1));
  const char *p = strstr(u, "://");
  p = p ? p + 3 : u;
  size_t auth = strcspn(p, "/?#");
  const char *at = NULL;
  for (size_t i = 0; i < auth; i++)
    if (p[i] == '@')
      at = p + i;
  if (at)
    NW_TRY(nw__add_scrub(h, p, (size_t)(at - p), 1));
  const char *path = p + auth;
  NW_TRY(nw__add_scrub(h, path, strlen(path), 2)); /* not a lone "/" */
  while (*path) {
    path += strspn(path, "/?#&=;");
    size_t n = strcspn(path, "/?#&=;");
    /* shorter pieces ("api", "hooks") are no token, and common words */
    NW_TRY(nw__add_scrub(h, path, n, 6));
    path += n;
  }
  if (h->secret && h->secret_len)
    NW_TRY(nw__add_scrub(h, h->secret, h->secret_len, 1));
  return 0;
}

/* Replaces every scrub string in text (NUL-terminated, of size len) by
 * "[redacted]"; what no longer fits is cut off. */
static void nw__scrub(const nw__hook *h, char *text, size_t len) {
  static const char mark[] = "[redacted]";
  if (len == 0)
    return;
  char *out = malloc(len);
  if (!out) { /* cannot prove the text clean: show none of it */
    snprintf(text, len, "%s", mark);
    return;
  }
  size_t n = 0;
  for (const char *p = text; *p && n + 1 < len;) {
    int hit = -1;
    for (int i = 0; i < h->n_scrub && hit < 0; i++)
      if (strncmp(p, h->scrub[i], strlen(h->scrub[i])) == 0)
        hit = i;
    if (hit < 0) {
      out[n++] = *p++;
      continue;
    }
    size_t k = sizeof mark - 1;
    if (n + k + 1 > len)
      k = len - 1 - n;
    memcpy(out + n, mark, k);
    n += k;
    p += strlen(h->scrub[hit]);
  }
  out[n] = 0;
  memcpy(text, out, n + 1);
  free(out);
}

/* --- outcomes ---------------------------------------------------------- */

static json_t *nw__outcome(const nw__hook *h, const json_t *entry,
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
static void nw__push_outcome(nw_alerter *a, json_t *o) {
  if (!o || json_array_append_new(a->outcomes, o) < 0) {
    nw_error("webhooks: out of memory recording a delivery outcome");
    return;
  }
  uint64_t one = 1;
  if (write(a->efd, &one, sizeof one) != (ssize_t)sizeof one)
    nw_error("webhooks: eventfd: %s", strerror(errno));
}

static void nw__log_outcome(const nw__hook *h, const json_t *o) {
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

/* --- one attempt ------------------------------------------------------- */

static size_t nw__on_body(char *p, size_t size, size_t n, void *user) {
  nw__hook *h = user;
  size_t len = size * n, room = sizeof h->resp - 1 - h->resp_n;
  size_t take = len < room ? len : room;
  memcpy(h->resp + h->resp_n, p, take);
  h->resp_n += take;
  h->resp[h->resp_n] = 0;
  return len; /* the rest is read and dropped: the connection stays usable */
}

/* Called by libcurl at least once a second during a transfer, DNS lookup
 * included: the end of the drain time aborts it. */
static int nw__on_progress(void *user, curl_off_t dt, curl_off_t dn,
                           curl_off_t ut, curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  nw__hook *h = user;
  return atomic_load(&h->a->abandon) ? 1 : 0;
}

/* The answer's body as one printable line, for an error text. */
static void nw__resp_line(nw__hook *h, char *out, size_t len) {
  size_t j = 0;
  for (size_t i = 0; i < h->resp_n && j + 1 < len; i++) {
    unsigned char c = (unsigned char)h->resp[i];
    out[j++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
  }
  while (j > 0 && out[j - 1] == ' ')
    j--;
  out[j] = 0;
}

static int nw__hdr(struct curl_slist **l, const char *line) {
  struct curl_slist *t = curl_slist_append(*l, line);
  if (t)
    *l = t;
  return t != NULL;
}

static nw__result nw__send(nw__hook *h, const char *body, long *status,
                           long *retry_after, char *err, size_t errlen) {
  *status = 0;
  *retry_after = 0;
  err[0] = 0;
  struct curl_slist *hdrs = NULL;
  /* no "Expect: 100-continue" round trip before a larger body */
  int ok = nw__hdr(&hdrs, "Content-Type: application/json") &&
           nw__hdr(&hdrs, "Expect:");
  if (ok && h->secret) {
    /* signed at each attempt: a retry after a long backoff still carries a
     * fresh timestamp that a receiver's replay window accepts */
    long long ts = (long long)time(NULL);
    char sig[NW_HMAC_SIG_LEN], line[160];
    if (nw_hmac_sign(h->secret, h->secret_len, ts, body, strlen(body), sig) <
        0) {
      curl_slist_free_all(hdrs);
      snprintf(err, errlen, "signing failed (libcrypto)");
      return NW__BROKEN;
    }
    snprintf(line, sizeof line, "%s: %lld", NW_HMAC_TS_HEADER, ts);
    ok = nw__hdr(&hdrs, line);
    snprintf(line, sizeof line, "%s: %s", NW_HMAC_SIG_HEADER, sig);
    ok = ok && nw__hdr(&hdrs, line);
  }
  if (!ok) {
    curl_slist_free_all(hdrs);
    snprintf(err, errlen, "out of memory");
    return NW__RETRY;
  }
  CURL *c = h->curl;
  CURLcode rc = curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  if (rc == CURLE_OK)
    rc = curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  if (rc == CURLE_OK)
    rc = curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  h->errbuf[0] = 0;
  h->resp_n = 0;
  h->resp[0] = 0;
  if (rc == CURLE_OK)
    rc = curl_easy_perform(c);
  /* the handle must not keep pointers to what is freed now */
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
  curl_slist_free_all(hdrs);
  if (rc == CURLE_ABORTED_BY_CALLBACK && atomic_load(&h->a->abandon)) {
    snprintf(err, errlen, "interrupted at exit");
    return NW__ABORTED;
  }
  if (rc != CURLE_OK) {
    /* the error buffer says more ("Failed to connect to HOST port 443
     * after 5000 ms") than the code's text, the fallback; it could name
     * the URL: scrubbed below, like every error text */
    snprintf(err, errlen, "%s",
             h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc));
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == '\n')
      err[--n] = 0;
    nw__scrub(h, err, errlen);
    return rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL
               ? NW__BROKEN
               : NW__RETRY;
  }
  if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status) != CURLE_OK)
    *status = 0;
  if (*status >= 200 && *status < 300)
    return NW__SENT;
  char resp[sizeof h->resp];
  nw__resp_line(h, resp, sizeof resp);
  snprintf(err, errlen, "HTTP %ld%s%s", *status, resp[0] ? ": " : "", resp);
  nw__scrub(h, err, errlen);
  if (*status == 408 || *status == 429 || *status >= 500) {
    curl_off_t ra = 0;
    if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
      *retry_after = (long)ra;
    return NW__RETRY;
  }
  if (h->format == NW_ALERT_DISCORD && (*status == 404 || *status == 410))
    return NW__GONE;
  return NW__REJECT;
}

/* --- the worker -------------------------------------------------------- */

/* Sleeps until deadline (monotonic) unless the drain time runs out first:
 * 1 then. A new message or stop wakes the condvar; the loop sleeps on. */
static int nw__wait_until(nw__hook *h, double deadline) {
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
static double nw__backoff(nw__hook *h, int n) {
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
static json_t *nw__deliver(nw__hook *h, const nw__msg *m) {
  nw_alerter *a = h->a;
  const nw_alert_config *cfg = &a->cfg;
  char *body = nw_alert_payload(h->format, m->entry, a->hostname, a->run_id);
  if (!body)
    return nw__outcome(h, m->entry, "failed", 0, 0, nw_clock_now() - m->queued,
                       "out of memory formatting the message");
  const char *outcome = "failed";
  char err[512] = "", why[640];
  long status = 0, retry_after = 0;
  int tries = 0;
  nw__result r = NW__RETRY;
  while (tries < cfg->attempts) {
    if (h->format == NW_ALERT_SLACK && nw__wait_until(h, h->next_send)) {
      r = NW__ABORTED;
      break;
    }
    tries++;
    r = nw__send(h, body, &status, &retry_after, err, sizeof err);
    if (h->format == NW_ALERT_SLACK)
      h->next_send = nw_clock_now() + NW__SLACK_SPACING;
    if (r != NW__RETRY || tries == cfg->attempts)
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
      r = NW__ABORTED;
      break;
    }
  }
  free(body);
  switch (r) {
  case NW__SENT:
    outcome = "delivered";
    err[0] = 0;
    break;
  case NW__REJECT:
    outcome = "rejected";
    break;
  case NW__GONE:
    outcome = "gone";
    atomic_store(&h->gone, 1);
    break;
  case NW__ABORTED:
    outcome = "abandoned";
    snprintf(why, sizeof why,
             "the drain time at exit (alert.drain_timeout = %g s) ran out%s%s",
             cfg->drain_timeout, err[0] ? "; last: " : "", err);
    nw__copy(err, sizeof err, why);
    break;
  case NW__RETRY:
  case NW__BROKEN:
    outcome = "failed";
    break;
  }
  return nw__outcome(h, m->entry, outcome, tries, status,
                     nw_clock_now() - m->queued, err[0] ? err : NULL);
}

static void *nw__worker(void *arg) {
  nw__hook *h = arg;
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
    nw__msg m = h->ring[h->head];
    h->head = (h->head + 1) % h->cap;
    h->n--;
    json_t *o;
    if (atomic_load(&h->gone)) {
      o = nw__outcome(h, m.entry, "gone", 0, 0, nw_clock_now() - m.queued,
                      "not sent: the webhook is gone (an earlier HTTP 404)");
    } else {
      pthread_mutex_unlock(&a->mu);
      o = nw__deliver(h, &m);
      if (o)
        nw__log_outcome(h, o);
      pthread_mutex_lock(&a->mu);
    }
    json_decref(m.entry);
    nw__push_outcome(a, o);
    pthread_cond_broadcast(&a->idle);
  }
  h->exited = 1;
  pthread_cond_broadcast(&a->idle);
  pthread_mutex_unlock(&a->mu);
  return NULL;
}

/* --- start ------------------------------------------------------------- */

static int nw__read_secret(nw__hook *h, const char *path, char *err,
                           size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, errlen, "alert hook %s: secret_file %s: %s", h->name, path,
             strerror(errno));
    return NW_ECONFIG;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "alert hook %s: secret_file %s: not a regular file",
             h->name, path);
    close(fd);
    return NW_ECONFIG;
  }
  if (st.st_mode & (S_IRGRP | S_IROTH))
    nw_warn("alert hook %s: secret_file %s can be read by group or others "
            "(mode %04o): chmod 600 it",
            h->name, path, (unsigned)(st.st_mode & 07777));
  char buf[NW__SECRET_MAX + 1];
  size_t n = 0;
  ssize_t r = 0;
  while (n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) != 0) {
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      break;
    n += (size_t)r;
  }
  int rerr = r < 0 ? errno : 0;
  close(fd);
  int rc = 0;
  if (rerr) {
    snprintf(err, errlen, "alert hook %s: secret_file %s: %s", h->name, path,
             strerror(rerr));
    rc = NW_ECONFIG;
  } else if (n > NW__SECRET_MAX) {
    snprintf(err, errlen,
             "alert hook %s: secret_file %s is longer than %d bytes", h->name,
             path, NW__SECRET_MAX);
    rc = NW_ECONFIG;
  }
  /* "echo secret > file" leaves a newline the receiver's copy lacks */
  while (rc == 0 && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  if (rc == 0 && n == 0) {
    snprintf(err, errlen, "alert hook %s: secret_file %s is empty", h->name,
             path);
    rc = NW_ECONFIG;
  }
  if (rc == 0 && memchr(buf, 0, n)) {
    snprintf(err, errlen, "alert hook %s: secret_file %s holds a NUL byte",
             h->name, path);
    rc = NW_ECONFIG;
  }
  if (rc == 0 && !(h->secret = malloc(n + 1)))
    rc = NW_EHOSTMEM;
  if (rc == 0) {
    memcpy(h->secret, buf, n);
    h->secret[n] = 0;
    h->secret_len = n;
  }
  explicit_bzero(buf, sizeof buf);
  return rc;
}

static int nw__curl_setup(nw__hook *h, const nw_alert_config *cfg) {
  CURL *c = h->curl = curl_easy_init();
  if (!c)
    return NW_EHOSTMEM;
  CURLcode rc = CURLE_OK;
#define NW__OPT(opt, val)                                                      \
  if (rc == CURLE_OK)                                                          \
  rc = curl_easy_setopt(c, opt, val)
  NW__OPT(CURLOPT_URL, h->url);
  NW__OPT(CURLOPT_NOSIGNAL, 1L); /* no SIGALRM for DNS timeouts */
  NW__OPT(CURLOPT_PROTOCOLS_STR, "http,https");
  NW__OPT(CURLOPT_CONNECTTIMEOUT_MS, (long)(cfg->connect_timeout * 1000));
  NW__OPT(CURLOPT_TIMEOUT_MS, (long)(cfg->timeout * 1000));
  NW__OPT(CURLOPT_USERAGENT, "nightwatch/" NW_VERSION);
  NW__OPT(CURLOPT_POST, 1L);
  NW__OPT(CURLOPT_ERRORBUFFER, h->errbuf);
  NW__OPT(CURLOPT_WRITEFUNCTION, nw__on_body);
  NW__OPT(CURLOPT_WRITEDATA, h);
  NW__OPT(CURLOPT_NOPROGRESS, 0L);
  NW__OPT(CURLOPT_XFERINFOFUNCTION, nw__on_progress);
  NW__OPT(CURLOPT_XFERINFODATA, h);
#undef NW__OPT
  return rc == CURLE_OK ? 0 : NW_EINTERNAL;
}

static void nw__free(nw_alerter *a) {
  for (int i = 0; i < a->n_hooks; i++) {
    nw__hook *h = &a->hooks[i];
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
  pthread_once(&nw__curl_once, nw__curl_init);
  if (nw__curl_init_rc != CURLE_OK) {
    snprintf(err, errlen, "webhooks: curl_global_init: %s",
             curl_easy_strerror(nw__curl_init_rc));
    return NW_EINTERNAL;
  }
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

  pthread_condattr_t ca;
  int rc = NW_ESYS;
  if (pthread_mutex_init(&a->mu, NULL) != 0) {
    free(a);
    snprintf(err, errlen, "webhooks: pthread_mutex_init failed");
    return NW_ESYS;
  }
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&a->idle, &ca);
  a->outcomes = json_array();
  a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
  if (!a->outcomes || a->efd < 0) {
    snprintf(err, errlen, "webhooks: eventfd: %s", strerror(errno));
    goto fail;
  }
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed)
    seed = (uint64_t)time(NULL) * 6364136223846793005ULL ^ (uint64_t)getpid();
  for (int i = 0; i < cfg->n_hooks; i++) {
    const nw_alert_hook *src = &cfg->hooks[i];
    nw__hook *h = &a->hooks[i];
    a->n_hooks = i + 1; /* nw__free sees the hooks set up so far */
    pthread_cond_init(&h->cond, &ca);
    h->a = a;
    memcpy(h->name, src->name, sizeof h->name);
    h->name[sizeof h->name - 1] = 0;
    memcpy(h->url, src->url, sizeof h->url);
    h->url[sizeof h->url - 1] = 0;
    h->format = src->format;
    h->events = src->events | NW_ALERT_EV_RECOVERY;
    nw_alert_url_host(h->url, h->host, sizeof h->host);
    h->rng = (seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1)) | 1;
    if (src->secret_file[0] &&
        (rc = nw__read_secret(h, src->secret_file, err, errlen)) < 0)
      goto fail;
    rc = NW_EHOSTMEM;
    h->cap = cfg->queue;
    if (!(h->ring = calloc((size_t)h->cap, sizeof *h->ring)) ||
        nw__scrub_init(h) < 0) {
      snprintf(err, errlen, "webhooks: out of memory");
      goto fail;
    }
    if ((rc = nw__curl_setup(h, cfg)) < 0) {
      snprintf(err, errlen, "alert hook %s: cannot set up libcurl", h->name);
      goto fail;
    }
  }
  /* Every signal blocked while the workers are created: they start with
   * that mask and never take the supervisor's signals, not even before
   * their first instruction. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  for (int i = 0; i < a->n_hooks; i++) {
    int e = pthread_create(&a->hooks[i].thread, NULL, nw__worker, &a->hooks[i]);
    if (e != 0) {
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      snprintf(err, errlen, "webhooks: pthread_create: %s", strerror(e));
      rc = NW_ESYS;
      goto fail;
    }
    a->hooks[i].started = 1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_condattr_destroy(&ca);
  *out = a;
  return 0;
fail:
  pthread_condattr_destroy(&ca);
  nw__abort_workers(a);
  nw__free(a);
  return rc;
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
    nw__hook *h = &a->hooks[i];
    if (!(h->events & bit) || atomic_load(&h->gone))
      continue;
    json_t *copy = json_deep_copy(entry);
    if (!copy)
      continue;
    if (h->n == h->cap) {
      /* the newest news matters most: the oldest waiting message goes */
      nw__msg old = h->ring[h->head];
      h->head = (h->head + 1) % h->cap;
      h->n--;
      char why[128];
      snprintf(why, sizeof why,
               "not sent: the queue was full (alert.queue = %d)", h->cap);
      nw__push_outcome(
          a, nw__outcome(h, old.entry, "dropped", 0, 0, now - old.queued, why));
      json_decref(old.entry);
      dropped++;
    }
    h->ring[(h->head + h->n) % h->cap] = (nw__msg){copy, now};
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
    const nw__hook *h = &a->hooks[i];
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
    nw__hook *h = &a->hooks[i];
    while (h->n > 0) {
      nw__msg m = h->ring[h->head];
      h->head = (h->head + 1) % h->cap;
      h->n--;
      nw__push_outcome(a, nw__outcome(h, m.entry, "abandoned", 0, 0,
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
