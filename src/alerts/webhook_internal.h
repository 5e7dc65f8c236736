/* webhook_internal.h — what the webhook files share: the alerter, its hooks
 * and their queues (webhook.c), one attempt over libcurl (webhook_send.c),
 * the worker's delivery with retries (webhook_worker.c), and keeping URLs
 * and secrets out of every text (webhook_redact.c).
 * defines: nw_webhook__msg, nw_webhook__hook, nw_webhook__result,
 *          nw_webhook__curl_global, nw_webhook__curl_setup, nw_webhook__send,
 *          nw_webhook__worker, nw_webhook__outcome, nw_webhook__push_outcome,
 *          nw_webhook__read_secret, nw_webhook__redact_init,
 *          nw_webhook__redact
 *
 * One mutex (a->mu) guards every queue, the "gone" and "stopping" flags and
 * the outcome list; each worker sleeps on its hook's condvar
 * (CLOCK_MONOTONIC) with a deadline: a new message, stop, or the end of the
 * drain time wakes it. The network is touched only by the workers, without
 * the mutex held. */
#ifndef NW_WEBHOOK_INTERNAL_H
#define NW_WEBHOOK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "alerts/webhook.h"
#include "base/alert_config.h"

#define NW_WEBHOOK_SECRET_MAX 4096 /* bytes of a secret file */
#define NW_WEBHOOK_SCRUB_MAX 24    /* strings never shown: URL parts, secret */

typedef struct {
  json_t *entry; /* the hook's own deep copy */
  double queued; /* monotonic seconds */
} nw_webhook__msg;

typedef enum {
  NW_WEBHOOK_SENT,    /* 2xx */
  NW_WEBHOOK_RETRY,   /* connection error, timeout, 408, 429, 5xx */
  NW_WEBHOOK_REJECT,  /* another status: the receiver will not take it */
  NW_WEBHOOK_GONE,    /* a Discord 404/410: the webhook was deleted */
  NW_WEBHOOK_BROKEN,  /* a curl error no retry can fix (a malformed URL) */
  NW_WEBHOOK_ABORTED, /* the drain time ran out during the attempt */
} nw_webhook__result;

typedef struct nw_webhook__hook {
  struct nw_alerter *a;
  char name[NW_ALERT_NAME_MAX];
  char host[256]; /* the only part of the URL ever shown */
  char url[NW_ALERT_URL_MAX];
  int format;
  unsigned events;
  char *secret; /* NULL: unsigned; secret_len bytes, wiped at free */
  size_t secret_len;
  char *scrub[NW_WEBHOOK_SCRUB_MAX]; /* longest first */
  int n_scrub;
  atomic_int gone; /* a Discord 404: no more posts, nothing more sent */
  /* under a->mu */
  nw_webhook__msg *ring;
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
} nw_webhook__hook;

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
  nw_webhook__hook hooks[NW_ALERT_MAX_HOOKS];
};

/* --- webhook_send.c: libcurl --- */

/* curl_global_init, once per process. 0, or NW_EINTERNAL with err set. */
int nw_webhook__curl_global(char *err, size_t errlen);

/* h->curl for h->url with the config's timeouts; the drain time's end
 * aborts a transfer. 0, NW_EHOSTMEM or NW_EINTERNAL. */
int nw_webhook__curl_setup(nw_webhook__hook *h, const nw_alert_config *cfg);

/* One POST of body (signed when the hook has a secret). *status is the
 * HTTP status (0: no answer), *retry_after the Retry-After seconds of a
 * 408/429/5xx (0: none); err a redacted reason unless SENT. */
nw_webhook__result nw_webhook__send(nw_webhook__hook *h, const char *body,
                                    long *status, long *retry_after, char *err,
                                    size_t errlen);

/* --- webhook_worker.c: delivery --- */

/* The thread of one hook (arg): takes its queue's messages and delivers
 * each with retries until stopping with an empty queue, or abandoned. */
void *nw_webhook__worker(void *arg);

/* A "delivery" outcome of entry (webhook.h, nw_alerter_take); NULL when
 * out of memory. */
json_t *nw_webhook__outcome(const nw_webhook__hook *h, const json_t *entry,
                            const char *outcome, int attempts, long status,
                            double seconds, const char *error);

/* Under a->mu; steals o (NULL: out of memory, logged). */
void nw_webhook__push_outcome(struct nw_alerter *a, json_t *o);

/* --- webhook_redact.c: secrets and redaction --- */

/* h->secret from the file at path, its trailing newline cut. 0, or
 * NW_ECONFIG with err naming the hook and the file, or NW_EHOSTMEM. */
int nw_webhook__read_secret(nw_webhook__hook *h, const char *path, char *err,
                            size_t errlen);

/* The strings never to show, from h->url and h->secret. 0 or NW_EHOSTMEM. */
int nw_webhook__redact_init(nw_webhook__hook *h);

/* Replaces every such string in text (NUL-terminated, of size len) by
 * "[redacted]"; what no longer fits is cut off. */
void nw_webhook__redact(const nw_webhook__hook *h, char *text, size_t len);

#endif
