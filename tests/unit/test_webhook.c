/* test_webhook.c — the webhook worker (webhook.h) against a real HTTP
 * server on 127.0.0.1 (http_server.h): each format's body and headers,
 * retries (500, 429 with Retry-After), a refused connection, a receiver
 * that never answers, a deleted Discord webhook, a full queue, the drain
 * time at stop, a signature checked by the receiver's own code
 * (verify_signature.py), and that neither the URL's token nor the secret
 * reaches a log line or an outcome. Timeouts and backoffs are short; time
 * bounds are loose, one-sided, and only where the behaviour is the time. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "alerts/hmac.h"
#include "alerts/webhook.h"
#include "base/alert_config.h"
#include "base/error.h"
#include "base/log.h"
#include "http_server.h"
#include "testutil.h"

/* Delivery settings that keep each test to about a second. */
static nw_alert_config config(void) {
  nw_alert_config c;
  memset(&c, 0, sizeof c);
  c.connect_timeout = 1;
  c.timeout = 2;
  c.attempts = 3;
  c.max_backoff = 0.05;
  c.queue = 8;
  c.drain_timeout = 5;
  return c;
}

static nw_alert_hook *add_hook(nw_alert_config *c, const char *name, int port,
                               const char *path, int format) {
  nw_alert_hook *h = &c->hooks[c->n_hooks++];
  memset(h, 0, sizeof *h);
  snprintf(h->name, sizeof h->name, "%s", name);
  snprintf(h->url, sizeof h->url, "http://127.0.0.1:%d%s", port, path);
  h->format = format;
  h->events = NW_ALERT_EV_DEFAULT;
  return h;
}

/* A ledger entry like the supervisor's; n makes its time unique. */
static json_t *recovery(int n) {
  char t[40];
  snprintf(t, sizeof t, "2026-11-23T16:40:%02d.250Z", n);
  json_t *e = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:i, s:{s:i, s:i, s:i}, s:{s:i, s:i, s:i}, "
      "s:i, s:f, s:i, s:b, s:s}",
      "time", t, "event", "recovery", "cause", "activation", "action",
      "halve-micro-batch", "summary",
      "micro-batch 8 -> 4, accumulation 4 -> 8, effective 32 unchanged",
      "attempt", 1, "before", "micro", 8, "accum", 4, "effective", 32, "after",
      "micro", 4, "accum", 8, "effective", 32, "effective", 32, "backoff_s",
      1.0, "failed_step", 120 + n, "trim_after_eval", 0, "run_id", "run-x");
  assert_non_null(e);
  return e;
}

static nw_alerter *start(const nw_alert_config *c) {
  nw_alerter *a = NULL;
  char err[512];
  int rc = nw_alerter_start(&a, c, "run-x", err, sizeof err);
  if (rc != 0)
    fail_msg("nw_alerter_start: %s", err);
  assert_non_null(a);
  return a;
}

/* The next outcome, waiting on the eventfd up to timeout seconds. */
static json_t *next_outcome(nw_alerter *a, double timeout) {
  struct pollfd p = {nw_alerter_fd(a), POLLIN, 0};
  if (poll(&p, 1, (int)(timeout * 1000)) != 1)
    return NULL;
  json_t *o = nw_alerter_take(a);
  assert_non_null(o); /* readable means one waits */
  return o;
}

static const char *ostr(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}
static long long oint(const json_t *o, const char *k) {
  return json_integer_value(json_object_get(o, k));
}

static void post1(nw_alerter *a, json_t *e, int want) {
  assert_int_equal(nw_alerter_post(a, e), want);
  json_decref(e);
}

/* --- success, per format ----------------------------------------------- */

static const nw_test_http_request *by_path(nw_test_http *s, const char *p) {
  for (int i = 0; i < nw_test_http_count(s); i++)
    if (strcmp(nw_test_http_get(s, i)->path, p) == 0)
      return nw_test_http_get(s, i);
  fail_msg("no request to %s", p);
  return NULL;
}

/* Three outcomes of recovery(1), one per hook, each delivered at the first
 * attempt; then nothing waits. */
static void expect_three_delivered(nw_alerter *a, int port) {
  char want[256];
  int delivered = 0;
  for (int i = 0; i < 3; i++) {
    json_t *o = next_outcome(a, 10);
    assert_non_null(o);
    assert_string_equal(ostr(o, "event"), "delivery");
    assert_string_equal(ostr(o, "outcome"), "delivered");
    assert_string_equal(ostr(o, "of"), "recovery");
    assert_string_equal(ostr(o, "of_time"), "2026-11-23T16:40:01.250Z");
    assert_int_equal(oint(o, "attempts"), 1);
    assert_int_equal(oint(o, "http_status"), 200);
    assert_null(json_object_get(o, "error"));
    assert_true(json_is_number(json_object_get(o, "seconds")));
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    assert_string_equal(ostr(o, "host"), want);
    const char *hook = ostr(o, "hook"), *fmt = ostr(o, "format");
    assert_string_equal(fmt, !strcmp(hook, "chat")   ? "slack"
                             : !strcmp(hook, "disc") ? "discord"
                                                     : "json");
    delivered++;
    json_decref(o);
  }
  assert_int_equal(delivered, 3);
  assert_null(nw_alerter_take(a));
  struct pollfd p = {nw_alerter_fd(a), POLLIN, 0};
  assert_int_equal(poll(&p, 1, 0), 0); /* nothing waits: not readable */
}

/* What each format's receiver got for entry e. */
static void expect_bodies(nw_test_http *s, json_t *e) {
  char v[256];
  const nw_test_http_request *r = by_path(s, "/slack");
  assert_string_equal(r->method, "POST");
  assert_string_equal(nw_test_http_header(r, "Content-Type", v, sizeof v),
                      "application/json");
  assert_string_equal(nw_test_http_header(r, "User-Agent", v, sizeof v),
                      "nightwatch/" NW_VERSION);
  assert_null(nw_test_http_header(r, NW_HMAC_SIG_HEADER, v, sizeof v));
  json_t *b = json_loads(r->body, 0, NULL);
  assert_non_null(b);
  assert_non_null(strstr(ostr(b, "text"), "*run-x*"));
  assert_non_null(strstr(ostr(b, "text"), "recovery"));
  assert_non_null(strstr(ostr(b, "text"), "activation: halve-micro-batch"));
  assert_non_null(strstr(ostr(b, "text"), "failed at step 121"));
  json_decref(b);

  r = by_path(s, "/discord");
  b = json_loads(r->body, 0, NULL);
  assert_non_null(b);
  assert_non_null(strstr(ostr(b, "content"), "**run-x**"));
  assert_string_equal(ostr(b, "username"), "nightwatch");
  assert_int_equal(json_array_size(json_object_get(
                       json_object_get(b, "allowed_mentions"), "parse")),
                   0);
  json_decref(b);

  r = by_path(s, "/json?x=1");
  b = json_loads(r->body, 0, NULL);
  assert_non_null(b);
  const char *k;
  json_t *val;
  json_object_foreach(e, k, val) {
    assert_true(json_equal(val, json_object_get(b, k)));
  }
  assert_string_equal(ostr(b, "source"), "nightwatch");
  assert_int_equal(oint(b, "schema"), 1);
  char host[256];
  gethostname(host, sizeof host);
  assert_string_equal(ostr(b, "host"), host);
  json_decref(b);
}

static void test_formats(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  int port = nw_test_http_port(s);
  nw_alert_config c = config();
  add_hook(&c, "chat", port, "/slack", NW_ALERT_SLACK);
  add_hook(&c, "disc", port, "/discord", NW_ALERT_DISCORD);
  add_hook(&c, "pager", port, "/json?x=1", NW_ALERT_JSON);
  nw_alerter *a = start(&c);
  char d[256];
  nw_alerter_describe(a, "recovery", d, sizeof d);
  char want[256];
  snprintf(want, sizeof want,
           "queued for chat (127.0.0.1:%d), disc (127.0.0.1:%d), pager "
           "(127.0.0.1:%d)",
           port, port, port);
  assert_string_equal(d, want);
  json_t *e = recovery(1);
  assert_int_equal(nw_alerter_post(a, e), 3);
  expect_three_delivered(a, port);
  assert_int_equal(nw_test_http_count(s), 3);
  expect_bodies(s, e);
  json_decref(e);

  /* events: finish is not the default; a start entry never an alert */
  e = json_pack("{s:s}", "event", "finish");
  post1(a, e, 0);
  nw_alerter_describe(a, "finish", d, sizeof d);
  assert_string_equal(d, "ledger only (no hook takes finish)");
  e = json_pack("{s:s}", "event", "oom");
  post1(a, e, 0);
  nw_alerter_stop(a, NULL, NULL);
  assert_int_equal(nw_test_http_count(s), 3);
  nw_test_http_stop(s);
}

static void test_no_hooks(void **state) {
  (void)state;
  nw_alert_config c = config();
  nw_alerter *a = (nw_alerter *)1;
  char err[64];
  assert_int_equal(nw_alerter_start(&a, &c, "r", err, sizeof err), 0);
  assert_null(a);
  json_t *e = recovery(0);
  assert_int_equal(nw_alerter_post(NULL, e), 0);
  json_decref(e);
  assert_int_equal(nw_alerter_fd(NULL), -1);
  assert_null(nw_alerter_take(NULL));
  char d[128];
  nw_alerter_describe(NULL, "recovery", d, sizeof d);
  assert_string_equal(d, "ledger only (no webhook configured)");
  nw_alerter_stop(NULL, NULL, NULL);
}

/* --- retries ------------------------------------------------------------ */

static void test_500_then_success(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  nw_test_http_reply script[] = {{.status = 500, .body = "busy"},
                                 {.status = 200}};
  nw_test_http_script(s, script, 2);
  nw_alert_config c = config();
  c.attempts = 2;
  add_hook(&c, "default", nw_test_http_port(s), "/h", NW_ALERT_JSON);
  nw_alerter *a = start(&c);
  post1(a, recovery(2), 1);
  json_t *o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "delivered");
  assert_int_equal(oint(o, "attempts"), 2);
  assert_int_equal(oint(o, "http_status"), 200);
  json_decref(o);
  assert_int_equal(nw_test_http_count(s), 2);
  /* the same body both times */
  assert_string_equal(nw_test_http_get(s, 0)->body,
                      nw_test_http_get(s, 1)->body);
  nw_alerter_stop(a, NULL, NULL);

  /* 500 every time: failed after every attempt, the status kept */
  nw_test_http_reply always[] = {{.status = 503, .body = "down"}};
  nw_test_http_script(s, always, 1);
  a = start(&c);
  post1(a, recovery(3), 1);
  o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "failed");
  assert_int_equal(oint(o, "attempts"), 2);
  assert_int_equal(oint(o, "http_status"), 503);
  assert_string_equal(ostr(o, "error"), "HTTP 503: down");
  json_decref(o);
  nw_alerter_stop(a, NULL, NULL);
  assert_int_equal(nw_test_http_count(s), 4);

  /* a connection closed without an answer is retried too */
  nw_test_http_reply hangup[] = {{.mode = NW_TEST_HTTP_CLOSE}, {.status = 200}};
  nw_test_http_script(s, hangup, 2);
  a = start(&c);
  post1(a, recovery(4), 1);
  o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "delivered");
  assert_int_equal(oint(o, "attempts"), 2);
  json_decref(o);
  nw_alerter_stop(a, NULL, NULL);
  assert_int_equal(nw_test_http_count(s), 6);
  nw_test_http_stop(s);
}

static void test_429_retry_after(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  nw_test_http_reply script[] = {
      {.status = 429, .headers = "Retry-After: 1\r\n", .body = "slow down"},
      {.status = 200}};
  nw_test_http_script(s, script, 2);
  nw_alert_config c = config();
  c.max_backoff = 2; /* >= the Retry-After asked for */
  add_hook(&c, "default", nw_test_http_port(s), "/h", NW_ALERT_JSON);
  nw_alerter *a = start(&c);
  post1(a, recovery(4), 1);
  json_t *o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "delivered");
  assert_int_equal(oint(o, "attempts"), 2);
  json_decref(o);
  assert_int_equal(nw_test_http_count(s), 2);
  double gap = nw_test_http_get(s, 1)->t - nw_test_http_get(s, 0)->t;
  printf("429 Retry-After 1: second attempt %.3f s after the first\n", gap);
  assert_true(gap >= 0.9);
  nw_alerter_stop(a, NULL, NULL);

  /* a Retry-After beyond alert.max_backoff: no early retry, no long wait */
  nw_test_http_reply far[] = {
      {.status = 429, .headers = "Retry-After: 30\r\n", .body = "later"}};
  nw_test_http_script(s, far, 1);
  c.max_backoff = 0.5;
  a = start(&c);
  double t0 = nw_test_now();
  post1(a, recovery(5), 1);
  o = next_outcome(a, 10);
  assert_non_null(o);
  assert_true(nw_test_now() - t0 < 10);
  assert_string_equal(ostr(o, "outcome"), "failed");
  assert_int_equal(oint(o, "attempts"), 1);
  assert_int_equal(oint(o, "http_status"), 429);
  assert_non_null(strstr(ostr(o, "error"), "Retry-After 30 s"));
  json_decref(o);
  nw_alerter_stop(a, NULL, NULL);
  nw_test_http_stop(s);
}

static void test_connection_refused(void **state) {
  (void)state;
  nw_alert_config c = config();
  add_hook(&c, "default", nw_test_closed_port(), "/hooks/tok-PATHSECRET",
           NW_ALERT_JSON);
  nw_alerter *a = start(&c);
  post1(a, recovery(6), 1);
  json_t *o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "failed");
  assert_int_equal(oint(o, "attempts"), 3);
  assert_int_equal(oint(o, "http_status"), 0);
  const char *err = ostr(o, "error");
  assert_non_null(err);
  printf("connection refused: %s\n", err);
  assert_true(strlen(err) > 5);
  assert_null(strstr(err, "tok-PATHSECRET"));
  assert_null(strstr(err, "/hooks"));
  json_decref(o);
  nw_alerter_stop(a, NULL, NULL);
}

/* The receiver takes the request and never answers: the post returns at
 * once (it cannot wait for an answer that never comes), the attempt ends
 * at alert.timeout. */
static void test_never_answers(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  nw_test_http_reply script[] = {{.mode = NW_TEST_HTTP_NEVER}};
  nw_test_http_script(s, script, 1);
  nw_alert_config c = config();
  c.attempts = 1;
  c.timeout = 1;
  add_hook(&c, "default", nw_test_http_port(s), "/h", NW_ALERT_JSON);
  nw_alerter *a = start(&c);
  double t0 = nw_test_now();
  post1(a, recovery(7), 1);
  double posted = nw_test_now() - t0;
  /* the request did reach the server, which holds it */
  assert_int_equal(nw_test_http_wait(s, 1, 10), 1);
  assert_null(nw_alerter_take(a)); /* no answer yet, no outcome yet */
  json_t *o = next_outcome(a, 10);
  double done = nw_test_now() - t0;
  printf("never answers: post %.6f s, timed out after %.2f s\n", posted, done);
  assert_non_null(o);
  assert_true(posted < done);
  assert_string_equal(ostr(o, "outcome"), "failed");
  assert_int_equal(oint(o, "http_status"), 0);
  assert_non_null(strstr(ostr(o, "error"), "timed out"));
  assert_true(done >= 0.9);
  json_decref(o);
  nw_alerter_stop(a, NULL, NULL);
  nw_test_http_stop(s);
}

/* --- a deleted Discord webhook ---------------------------------------- */

static void test_discord_gone(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  nw_test_http_reply script[] = {
      {.status = 404,
       .body = "{\"message\": \"Unknown Webhook\", \"code\": 10015}"}};
  nw_test_http_script(s, script, 1);
  nw_alert_config c = config();
  add_hook(&c, "disc", nw_test_http_port(s), "/api/webhooks/1/tok",
           NW_ALERT_DISCORD);
  nw_alerter *a = start(&c);
  post1(a, recovery(8), 1);
  json_t *o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "gone");
  assert_int_equal(oint(o, "attempts"), 1); /* no retry of a 404 */
  assert_int_equal(oint(o, "http_status"), 404);
  assert_non_null(strstr(ostr(o, "error"), "Unknown Webhook"));
  json_decref(o);
  /* the next post is not queued, nothing more is sent */
  post1(a, recovery(9), 0);
  char d[128];
  nw_alerter_describe(a, "recovery", d, sizeof d);
  assert_string_equal(d, "ledger only (webhook disc is gone)");
  nw_alerter_stop(a, NULL, NULL);
  assert_int_equal(nw_test_http_count(s), 1);

  /* a json hook's 404 is a rejection: the hook stays */
  c.hooks[0].format = NW_ALERT_JSON;
  a = start(&c);
  post1(a, recovery(10), 1);
  o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "rejected");
  assert_int_equal(oint(o, "attempts"), 1);
  json_decref(o);
  post1(a, recovery(11), 1);
  o = next_outcome(a, 10);
  assert_non_null(o);
  json_decref(o);
  nw_alerter_stop(a, NULL, NULL);
  assert_int_equal(nw_test_http_count(s), 3);
  nw_test_http_stop(s);
}

/* --- the queue ----------------------------------------------------------- */

static void test_queue_drops_oldest(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  nw_test_http_reply script[] = {{.delay = 0.5}, {.status = 200}};
  nw_test_http_script(s, script, 2);
  nw_alert_config c = config();
  c.queue = 2;
  add_hook(&c, "default", nw_test_http_port(s), "/h", NW_ALERT_JSON);
  nw_alerter *a = start(&c);
  post1(a, recovery(21), 1);
  /* 21 is in flight (the server holds its answer): the queue is empty */
  assert_int_equal(nw_test_http_wait(s, 1, 10), 1);
  post1(a, recovery(22), 1);
  post1(a, recovery(23), 1);
  post1(a, recovery(24), 1);      /* full: 22 goes */
  json_t *o = nw_alerter_take(a); /* the drop is known at once */
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "dropped");
  assert_string_equal(ostr(o, "of_time"), "2026-11-23T16:40:22.250Z");
  assert_int_equal(oint(o, "attempts"), 0);
  assert_non_null(strstr(ostr(o, "error"), "alert.queue = 2"));
  json_decref(o);
  const char *want[] = {"2026-11-23T16:40:21.250Z", "2026-11-23T16:40:23.250Z",
                        "2026-11-23T16:40:24.250Z"};
  for (int i = 0; i < 3; i++) {
    o = next_outcome(a, 10);
    assert_non_null(o);
    assert_string_equal(ostr(o, "outcome"), "delivered");
    assert_string_equal(ostr(o, "of_time"), want[i]);
    json_decref(o);
  }
  assert_int_equal(nw_test_http_count(s), 3);
  for (int i = 0; i < 3; i++) {
    json_t *b = json_loads(nw_test_http_get(s, i)->body, 0, NULL);
    assert_string_equal(ostr(b, "time"), want[i]);
    json_decref(b);
  }
  nw_alerter_stop(a, NULL, NULL);
  nw_test_http_stop(s);
}

static void collect(void *user, json_t *o) { json_array_append(user, o); }

/* stop gives the queue drain_timeout, then abandons the rest, the
 * transfer in flight included. */
static void test_stop_abandons(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  nw_test_http_reply script[] = {{.mode = NW_TEST_HTTP_NEVER}};
  nw_test_http_script(s, script, 1);
  nw_alert_config c = config();
  c.timeout = 30;
  c.drain_timeout = 0.3;
  add_hook(&c, "default", nw_test_http_port(s), "/h", NW_ALERT_JSON);
  nw_alerter *a = start(&c);
  post1(a, recovery(31), 1);
  post1(a, recovery(32), 1);
  assert_int_equal(nw_test_http_wait(s, 1, 10), 1);
  json_t *got = json_array();
  double t0 = nw_test_now();
  nw_alerter_stop(a, collect, got);
  double took = nw_test_now() - t0;
  printf("stop with a hung receiver: %.2f s (drain_timeout 0.3 s)\n", took);
  assert_true(took < 10); /* far below alert.timeout (30 s) */
  assert_int_equal(json_array_size(got), 2);
  int in_flight = 0, queued = 0;
  for (size_t i = 0; i < 2; i++) {
    json_t *o = json_array_get(got, i);
    assert_string_equal(ostr(o, "outcome"), "abandoned");
    assert_non_null(strstr(ostr(o, "error"), "alert.drain_timeout"));
    if (oint(o, "attempts") == 1)
      in_flight++;
    else if (oint(o, "attempts") == 0)
      queued++;
  }
  assert_int_equal(in_flight, 1);
  assert_int_equal(queued, 1);
  json_decref(got);
  nw_test_http_stop(s);
}

/* Slack: at most one message a second a hook. */
static void test_slack_spacing(void **state) {
  (void)state;
  nw_test_http *s = nw_test_http_start();
  nw_alert_config c = config();
  add_hook(&c, "chat", nw_test_http_port(s), "/services/T/B/X", NW_ALERT_SLACK);
  nw_alerter *a = start(&c);
  post1(a, recovery(41), 1);
  post1(a, recovery(42), 1);
  for (int i = 0; i < 2; i++) {
    json_t *o = next_outcome(a, 10);
    assert_non_null(o);
    assert_string_equal(ostr(o, "outcome"), "delivered");
    json_decref(o);
  }
  double gap = nw_test_http_get(s, 1)->t - nw_test_http_get(s, 0)->t;
  printf("slack: second message %.3f s after the first\n", gap);
  assert_true(gap >= 0.9);
  nw_alerter_stop(a, NULL, NULL);
  nw_test_http_stop(s);
}

/* --- signatures ---------------------------------------------------------- */

static void test_signature_verified(void **state) {
  (void)state;
  char dir[256], secret[512], bodyf[512], out[4096], err[512];
  nw_test_tmpdir(dir, sizeof dir, "webhook-sig");
  nw_test_write_text(dir, "secret", "whsec-0123456789\n", secret,
                     sizeof secret);
  chmod(secret, 0600);
  nw_test_http *s = nw_test_http_start();
  nw_alert_config c = config();
  nw_alert_hook *h =
      add_hook(&c, "signed", nw_test_http_port(s), "/in", NW_ALERT_JSON);
  snprintf(h->secret_file, sizeof h->secret_file, "%s", secret);
  nw_alerter *a = start(&c);
  post1(a, recovery(51), 1);
  json_t *o = next_outcome(a, 10);
  assert_non_null(o);
  assert_string_equal(ostr(o, "outcome"), "delivered");
  json_decref(o);
  nw_alerter_stop(a, NULL, NULL);

  const nw_test_http_request *r = nw_test_http_get(s, 0);
  char ts[64], sig[128];
  assert_non_null(nw_test_http_header(r, NW_HMAC_TS_HEADER, ts, sizeof ts));
  assert_non_null(nw_test_http_header(r, NW_HMAC_SIG_HEADER, sig, sizeof sig));
  assert_memory_equal(sig, "sha256=", 7);
  /* the receiver's documented code, on the bytes it received */
  nw_test_write_text(dir, "body", r->body, bodyf, sizeof bodyf);
  char *argv[] = {"/usr/bin/python3",
                  NW_SOURCE_DIR "/tests/verify_signature.py",
                  secret,
                  bodyf,
                  ts,
                  sig,
                  NULL};
  int rc = nw_test_run_cmd(argv, out, sizeof out);
  if (rc != 0)
    fail_msg("verify_signature.py: exit %d: %s", rc, out);
  /* and it refuses a body changed by one byte, and another timestamp */
  char *bad = strdup(r->body);
  bad[strlen(bad) - 2] ^= 1;
  nw_test_write_text(dir, "body", bad, bodyf, sizeof bodyf);
  free(bad);
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), 1);
  nw_test_write_text(dir, "body", r->body, bodyf, sizeof bodyf);
  char ts2[64];
  snprintf(ts2, sizeof ts2, "%lld", atoll(ts) - 1);
  argv[4] = ts2;
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), 1);

  /* an unreadable or empty secret file is a config error naming it */
  nw_test_write_text(dir, "empty", "\n", h->secret_file, sizeof h->secret_file);
  nw_alerter *none = NULL;
  assert_int_equal(nw_alerter_start(&none, &c, "r", err, sizeof err),
                   NW_ECONFIG);
  assert_null(none);
  assert_non_null(strstr(err, h->secret_file));
  assert_non_null(strstr(err, "signed"));
  assert_non_null(strstr(err, "empty"));
  snprintf(h->secret_file, sizeof h->secret_file, "%s/missing", dir);
  assert_int_equal(nw_alerter_start(&none, &c, "r", err, sizeof err),
                   NW_ECONFIG);
  assert_non_null(strstr(err, h->secret_file));
  nw_test_http_stop(s);
  nw_test_rmdir_flat(dir);
}

/* --- secrecy -------------------------------------------------------------- */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

static void test_scrub(void **state) {
  (void)state;
  static const char token[] = "tok-SECRET123";
  static const char key[] = "s3cret-SIGNING-key";
  char dir[256], secret[512], logf[512];
  nw_test_tmpdir(dir, sizeof dir, "webhook-scrub");
  nw_test_write_text(dir, "secret", key, secret, sizeof secret);
  chmod(secret, 0644); /* readable by others: warned about, never shown */
  nw_test_http *s = nw_test_http_start();
  /* the receiver echoes the token back in its error text, as some do */
  nw_test_http_reply script[] = {
      {.status = 500, .body = "internal error at /hooks/tok-SECRET123"},
      {.status = 403, .body = "invalid token tok-SECRET123"}};
  nw_test_http_script(s, script, 2);
  nw_alert_config c = config();
  c.attempts = 2;
  nw_alert_hook *h =
      add_hook(&c, "pager", nw_test_http_port(s),
               "/hooks/tok-SECRET123?token=tok-SECRET123", NW_ALERT_JSON);
  snprintf(h->secret_file, sizeof h->secret_file, "%s", secret);
  add_hook(&c, "disc", nw_test_closed_port(), "/api/webhooks/123/tok-SECRET123",
           NW_ALERT_DISCORD);

  /* stderr into a file, every level on */
  snprintf(logf, sizeof logf, "%s/stderr.log", dir);
  fflush(stderr);
  int saved = dup(2);
  int fd = open(logf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(saved >= 0 && fd >= 0);
  dup2(fd, 2);
  close(fd);
  nw_log_set_level(NW_LOG_DEBUG);

  nw_alerter *a = start(&c);
  post1(a, recovery(61), 2);
  json_t *got = json_array();
  for (int i = 0; i < 2; i++) {
    json_t *o = next_outcome(a, 10);
    if (!o)
      break;
    json_array_append_new(got, o);
  }
  char d[256];
  nw_alerter_describe(a, "recovery", d, sizeof d);
  nw_alerter_stop(a, collect, got);

  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  nw_log_set_level(NW_LOG_INFO);

  char *outs = json_dumps(got, JSON_COMPACT);
  const char *log = slurp(logf);
  fprintf(stderr, "--- captured log:\n%s--- outcomes: %s\n", log, outs);
  assert_int_equal(json_array_size(got), 2);
  /* it did log and record, by hook name and host */
  assert_non_null(strstr(log, "webhook pager (127.0.0.1:"));
  assert_non_null(strstr(log, "webhook disc (127.0.0.1:"));
  assert_non_null(strstr(log, "can be read by group or others"));
  assert_non_null(strstr(outs, "\"rejected\""));
  assert_non_null(strstr(outs, "\"failed\""));
  assert_non_null(strstr(outs, "invalid token [redacted]"));
  /* and never the token or the secret */
  assert_null(strstr(log, token));
  assert_null(strstr(log, key));
  assert_null(strstr(outs, token));
  assert_null(strstr(outs, key));
  assert_null(strstr(d, token));
  /* the signature went out (so the secret was in use) */
  char v[128];
  assert_non_null(nw_test_http_header(nw_test_http_get(s, 0),
                                      NW_HMAC_SIG_HEADER, v, sizeof v));
  free(outs);
  json_decref(got);
  nw_test_http_stop(s);
  nw_test_rmdir_flat(dir);
}

int main(void) {
  /* logs to stderr (not a journal), no proxy between us and 127.0.0.1 */
  unsetenv("JOURNAL_STREAM");
  const char *proxies[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                           "HTTPS_PROXY", "ALL_PROXY",  "all_proxy"};
  for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++)
    unsetenv(proxies[i]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_formats),
      cmocka_unit_test(test_no_hooks),
      cmocka_unit_test(test_500_then_success),
      cmocka_unit_test(test_429_retry_after),
      cmocka_unit_test(test_connection_refused),
      cmocka_unit_test(test_never_answers),
      cmocka_unit_test(test_discord_gone),
      cmocka_unit_test(test_queue_drops_oldest),
      cmocka_unit_test(test_stop_abandons),
      cmocka_unit_test(test_slack_spacing),
      cmocka_unit_test(test_signature_verified),
      cmocka_unit_test(test_scrub),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
