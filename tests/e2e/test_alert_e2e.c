/* test_alert_e2e.c — webhooks from a real `nightwatch run`: a real trainer
 * runs out of (virtual device) memory, the supervisor recovers it, and a
 * real HTTP server on 127.0.0.1 receives the alerts. Checks what arrives
 * (every ledger field, the signature the receiver verifies), what the ledger
 * says about each delivery, that a receiver that never answers does not
 * delay the recovery, and that neither the URL's token nor the secret
 * appears in the logs, the ledger or a checkpoint. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/config.h"
#include "cli/fault_recipe.h"
#include "e2e/fixture.h"
#include "http_server.h"
#include "testutil.h"

#define TOKEN "tok-SECRET123xyz"
#define TOKEN2 "tok-SECRET456abc"
#define SECRET "s3cr3t-VALUE-789"

/* A device that holds micro 8 but not micro 32 of the small model: the
 * first trainer (micro 32) runs out of memory at its first step and the
 * policy halves the micro-batch (activation). */
static unsigned long long activation_cap(void) {
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model.n_layer = 2;
  cfg.model.n_embd = 64;
  cfg.eval.every = 0;
  cfg.data.long_fraction = 0;
  return nw_recipe_activation(&cfg);
}

/* A case of the activation recovery, 12 steps. */
static nw_case *activation_case(const char *tag) {
  nw_case *c = nw_case_new(tag);
  static const char *const sets[] = {
      "model.n_layer=2",    "model.n_embd=64",
      "eval.every=0",       "data.long_fraction=0",
      "batch.micro=32",     "train.steps=12",
      "checkpoint.every=4", NULL};
  for (int i = 0; sets[i]; i++)
    nw_case_set(c, "%s", sets[i]);
  nw_case_set(c, "device.memory=%llu", activation_cap());
  return c;
}

/* Runs `nightwatch run` to its end and returns its exit code. */
static int run_supervisor(nw_case *c) {
  int rc = nw_case_run(c, NULL, 120);
  if (rc != 0)
    nw_case_dump(c);
  return rc;
}

/* The request whose JSON body has this "event" (nth of them), or NULL. A
 * retry repeats its body (the signature headers change): counted once. */
static json_t *find_body(nw_test_http *srv, const char *path_prefix,
                         const char *event, int nth,
                         const nw_test_http_request **req) {
  const char *prev = NULL;
  for (int i = 0; i < nw_test_http_count(srv); i++) {
    const nw_test_http_request *r = nw_test_http_get(srv, i);
    if (strncmp(r->path, path_prefix, strlen(path_prefix)))
      continue;
    if (prev && !strcmp(prev, r->body))
      continue;
    prev = r->body;
    json_t *b = json_loads(r->body, 0, NULL);
    if (b && !strcmp(nw_test_json_str(b, "event"), event) && nth-- == 0) {
      if (req)
        *req = r;
      return b;
    }
    json_decref(b);
  }
  return NULL;
}

/* Every file the run left (logs, ledger, status, checkpoints, reports)
 * searched as bytes for the token and the secret. */
static void assert_no_secrets(const nw_case *c) {
  const char *const needles[] = {TOKEN, TOKEN2, SECRET, NULL};
  char pat[512];
  glob_t g;
  snprintf(pat, sizeof pat, "%s/*", c->dir);
  assert_int_equal(glob(pat, 0, NULL, &g), 0);
  snprintf(pat, sizeof pat, "%s/checkpoints/*", c->dir);
  assert_int_equal(glob(pat, GLOB_APPEND, NULL, &g), 0);
  int files = 0, h5 = 0;
  for (size_t i = 0; i <= g.gl_pathc; i++) {
    const char *path = i < g.gl_pathc ? g.gl_pathv[i] : c->log;
    struct stat st;
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
      continue; /* directories */
    size_t n;
    char *buf = nw_test_slurp(path, &n);
    if (!buf)
      fail_msg("cannot read %s", path);
    files++;
    h5 += strstr(path, ".h5") != NULL;
    for (int k = 0; needles[k]; k++)
      if (memmem(buf, n, needles[k], strlen(needles[k])))
        fail_msg("%s contains \"%s\"", path, needles[k]);
    free(buf);
  }
  globfree(&g);
  assert_true(h5 >= 1); /* the checkpoints (their config dump) were read */
  assert_true(files >= 4);
}

/* ---- a recovery reaches two hooks, signed, with every ledger field ---- */

/* The json hook got start, every recovery and finish; each with every field
 * of its ledger entry. Returns the finish request (signed). */
static const nw_test_http_request *expect_json_hook(nw_test_http *srv,
                                                    json_t *a, int n_rec) {
  const nw_test_http_request *req = NULL;
  for (int i = 0; i < n_rec; i++) {
    json_t *want = nw_test_ledger_find(a, "recovery", i);
    json_t *got = find_body(srv, "/json/", "recovery", i, &req);
    if (!got)
      fail_msg("recovery %d was not delivered to the json hook", i);
    const char *k;
    json_t *v;
    json_object_foreach(want, k, v) {
      if (!json_equal(json_object_get(got, k), v))
        fail_msg("json payload field %s differs from the ledger", k);
    }
    assert_string_equal(nw_test_json_str(got, "source"), "nightwatch");
    json_decref(got);
  }
  json_t *start = find_body(srv, "/json/", "start", 0, NULL);
  json_t *fin = find_body(srv, "/json/", "finish", 0, &req);
  assert_non_null(start);
  assert_non_null(fin);
  assert_null(find_body(srv, "/json/", "start", 1, NULL)); /* first only */
  json_decref(start);
  json_decref(fin);
  return req;
}

/* The receiver's code (tests/verify_signature.py) accepts req's
 * signature. */
static void expect_signed(nw_case *c, const nw_test_http_request *req,
                          const char *secret_path) {
  char ts[64], sig[128], body_path[512];
  assert_non_null(
      nw_test_http_header(req, "X-Nightwatch-Timestamp", ts, sizeof ts));
  assert_non_null(
      nw_test_http_header(req, "X-Nightwatch-Signature", sig, sizeof sig));
  nw_test_write_text(c->home, "body.json", req->body, body_path,
                     sizeof body_path);
  char *vargv[] = {"/usr/bin/python3",
                   NW_SOURCE_DIR "/tests/verify_signature.py",
                   (char *)secret_path,
                   body_path,
                   ts,
                   sig,
                   NULL};
  char out[4096];
  int vrc = nw_test_run_cmd(vargv, out, sizeof out);
  if (vrc != 0)
    fail_msg("the receiver rejected the signature (%d): %s", vrc, out);
}

/* The slack hook got the recoveries only (its default events: recovery,
 * give-up), unsigned (it has no secret). */
static void expect_slack_hook(nw_test_http *srv, int n_rec) {
  int slack = 0;
  char sig[128];
  for (int i = 0; i < nw_test_http_count(srv); i++) {
    const nw_test_http_request *r = nw_test_http_get(srv, i);
    if (strncmp(r->path, "/slack/", 7))
      continue;
    json_t *b = json_loads(r->body, 0, NULL);
    assert_non_null(b);
    const char *t = nw_test_json_str(b, "text");
    if (!strstr(t, "activation"))
      fail_msg("slack text lacks the cause: %s", t);
    assert_null(nw_test_http_header(r, "X-Nightwatch-Signature", sig,
                                    sizeof sig)); /* no secret, no sig */
    slack++;
    json_decref(b);
  }
  assert_int_equal(slack, n_rec);
}

/* The ledger records each delivery's outcome; the one 503 was retried. */
static void expect_deliveries(json_t *a, int n_rec) {
  int delivered = 0, retried = 0;
  for (int i = 0; i < nw_test_ledger_count(a, "delivery"); i++) {
    json_t *d = nw_test_ledger_find(a, "delivery", i);
    assert_string_equal(nw_test_json_str(d, "outcome"), "delivered");
    assert_non_null(strstr(nw_test_json_str(d, "host"), "127.0.0.1:"));
    delivered++;
    retried += json_integer_value(json_object_get(d, "attempts")) == 2;
  }
  assert_int_equal(delivered, 2 + 2 * n_rec); /* start, finish, recoveries */
  assert_int_equal(retried, 1);
}

static void test_recovery_alerts_delivered(void **state) {
  (void)state;
  nw_test_http *srv = nw_test_http_start();
  nw_case *c = activation_case("deliver");
  /* the secret and the config (the URLs' tokens) live beside the run
   * directory, not in it: everything in it is searched for them */
  char secret_path[512], text[2048];
  nw_test_write_text(c->home, "secret", SECRET "\n", secret_path,
                     sizeof secret_path);
  assert_int_equal(chmod(secret_path, 0600), 0);
  snprintf(text, sizeof text,
           "[alert]\n"
           "url = http://127.0.0.1:%d/json/" TOKEN "\n"
           "format = json\n"
           "events = start, finish\n"
           "secret_file = %s\n"
           "attempts = 3\n"
           "max_backoff = 0.2\n"
           "[alert.chat]\n"
           "url = http://127.0.0.1:%d/slack/services/" TOKEN2 "\n"
           "format = slack\n",
           nw_test_http_port(srv), secret_path, nw_test_http_port(srv));
  nw_case_config(c, text);
  /* the first delivery fails once: the ledger shows the retry */
  nw_test_http_reply replies[] = {{.status = 503}, {.status = 200}};
  nw_test_http_script(srv, replies, 2);

  assert_int_equal(run_supervisor(c), 0);
  json_t *a = nw_case_ledger(c);
  int n_rec = nw_test_ledger_count(a, "recovery");
  assert_true(n_rec >= 1);
  json_t *rec = nw_test_ledger_find(a, "recovery", 0);
  assert_string_equal(nw_test_json_str(rec, "cause"), "activation");
  if (!strstr(nw_test_json_str(rec, "delivery"),
              "queued for default (127.0.0.1:"))
    fail_msg("recovery delivery: %s", nw_test_json_str(rec, "delivery"));
  assert_non_null(
      strstr(nw_test_json_str(rec, "delivery"), "chat (127.0.0.1:"));
  expect_signed(c, expect_json_hook(srv, a, n_rec), secret_path);
  expect_slack_hook(srv, n_rec);
  expect_deliveries(a, n_rec);
  json_decref(a);

  assert_no_secrets(c);
  nw_test_http_stop(srv);
  nw_case_free(c);
}

/* ---- a receiver that never answers does not delay the recovery ---- */

static double seconds_to_recover(const nw_case *c) {
  json_t *a = nw_case_ledger(c);
  json_t *res = nw_test_ledger_find(a, "resumed", 0);
  assert_non_null(res);
  double s = json_number_value(json_object_get(res, "seconds_to_recover"));
  json_decref(a);
  return s;
}

static void test_unreachable_webhook_does_not_delay(void **state) {
  (void)state;
  nw_test_http *srv = nw_test_http_start();
  nw_test_http_reply never[] = {{.mode = NW_TEST_HTTP_NEVER}};
  nw_test_http_script(srv, never, 1);

  nw_case *none = activation_case("nohook");
  assert_int_equal(run_supervisor(none), 0);
  json_t *a = nw_case_ledger(none);
  assert_string_equal(
      nw_test_json_str(nw_test_ledger_find(a, "recovery", 0), "delivery"),
      "ledger only (no webhook configured)");
  json_decref(a);

  nw_case *hung = activation_case("hung");
  char text[1024];
  /* attempts that would each hold the recovery for 20 s if delivery were
   * not on its own thread */
  snprintf(text, sizeof text,
           "[alert]\n"
           "url = http://127.0.0.1:%d/hook/" TOKEN "\n"
           "timeout = 20\n"
           "attempts = 2\n"
           "drain_timeout = 1\n",
           nw_test_http_port(srv));
  nw_case_config(hung, text);
  double t0 = nw_test_now();
  int rc = run_supervisor(hung);
  double wall = nw_test_now() - t0;
  assert_int_equal(rc, 0);
  assert_true(nw_test_http_count(srv) >= 1); /* it did try */

  double base = seconds_to_recover(none), with = seconds_to_recover(hung);
  printf("time to resume: no webhook %.3f s, webhook that never answers "
         "%.3f s (difference %+.3f s; one attempt's timeout is 20 s); "
         "the whole run with it took %.1f s\n",
         base, with, with - base, wall);
  /* A delivery on the supervisor's thread would add a whole attempt's
   * timeout (20 s) to the recovery; half of it is far beyond the noise of
   * two runs on a loaded machine. */
  assert_true(with < base + 10.0);
  /* the queued alert was abandoned at exit after drain_timeout (1 s), and
   * the ledger says so */
  a = nw_case_ledger(hung);
  json_t *d = nw_test_ledger_find(a, "delivery", 0);
  assert_non_null(d);
  const char *outcome = nw_test_json_str(d, "outcome");
  if (strcmp(outcome, "abandoned") && strcmp(outcome, "failed"))
    fail_msg("outcome %s", outcome);
  json_decref(a);
  assert_true(wall < 60);
  nw_test_http_stop(srv);
  nw_case_free(none);
  nw_case_free(hung);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_recovery_alerts_delivered,
                                nw_case_teardown),
      cmocka_unit_test_teardown(test_unreachable_webhook_does_not_delay,
                                nw_case_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
