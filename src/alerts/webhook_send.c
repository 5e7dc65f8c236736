/* webhook_send.c — one POST to one hook over libcurl: its handle's setup
 * (timeouts, no signals, the threaded resolver for DNS, a progress callback
 * that the end of the drain time aborts), the signature headers, and the
 * answer read into a result: sent, retry, rejected, gone or broken. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alerts/hmac.h"
#include "alerts/webhook_internal.h"
#include "base/error.h"
#include "base/log.h"

#ifndef NW_VERSION
#error "NW_VERSION is defined by CMakeLists.txt"
#endif

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

int nw_webhook__curl_global(char *err, size_t errlen) {
  pthread_once(&nw__curl_once, nw__curl_init);
  if (nw__curl_init_rc != CURLE_OK) {
    snprintf(err, errlen, "webhooks: curl_global_init: %s",
             curl_easy_strerror(nw__curl_init_rc));
    return NW_EINTERNAL;
  }
  return 0;
}

/* --- one attempt ------------------------------------------------------- */

static size_t nw__on_body(char *p, size_t size, size_t n, void *user) {
  nw_webhook__hook *h = user;
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
  nw_webhook__hook *h = user;
  return atomic_load(&h->a->abandon) ? 1 : 0;
}

/* The answer's body as one printable line, for an error text. */
static void nw__resp_line(nw_webhook__hook *h, char *out, size_t len) {
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

nw_webhook__result nw_webhook__send(nw_webhook__hook *h, const char *body,
                                    long *status, long *retry_after, char *err,
                                    size_t errlen) {
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
      return NW_WEBHOOK_BROKEN;
    }
    snprintf(line, sizeof line, "%s: %lld", NW_HMAC_TS_HEADER, ts);
    ok = nw__hdr(&hdrs, line);
    snprintf(line, sizeof line, "%s: %s", NW_HMAC_SIG_HEADER, sig);
    ok = ok && nw__hdr(&hdrs, line);
  }
  if (!ok) {
    curl_slist_free_all(hdrs);
    snprintf(err, errlen, "out of memory");
    return NW_WEBHOOK_RETRY;
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
    return NW_WEBHOOK_ABORTED;
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
    nw_webhook__redact(h, err, errlen);
    return rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL
               ? NW_WEBHOOK_BROKEN
               : NW_WEBHOOK_RETRY;
  }
  if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status) != CURLE_OK)
    *status = 0;
  if (*status >= 200 && *status < 300)
    return NW_WEBHOOK_SENT;
  char resp[sizeof h->resp];
  nw__resp_line(h, resp, sizeof resp);
  snprintf(err, errlen, "HTTP %ld%s%s", *status, resp[0] ? ": " : "", resp);
  nw_webhook__redact(h, err, errlen);
  if (*status == 408 || *status == 429 || *status >= 500) {
    curl_off_t ra = 0;
    if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
      *retry_after = (long)ra;
    return NW_WEBHOOK_RETRY;
  }
  if (h->format == NW_ALERT_DISCORD && (*status == 404 || *status == 410))
    return NW_WEBHOOK_GONE;
  return NW_WEBHOOK_REJECT;
}

/* --- the handle ------------------------------------------------------- */

int nw_webhook__curl_setup(nw_webhook__hook *h, const nw_alert_config *cfg) {
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
