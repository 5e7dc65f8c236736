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
#include "device/vdev.h"
#include "http_server.h"
#include "testutil.h"

#define TOKEN "tok-SECRET123xyz"
#define TOKEN2 "tok-SECRET456abc"
#define SECRET "s3cr3t-VALUE-789"

typedef struct {
  char dir[256];   /* run directory */
  char log[320];   /* the supervisor's (and trainer's) stdout+stderr */
  char conf[320];  /* the run config */
  char device[64]; /* virtual device, unique per case */
} e2e_case;

static void case_init(e2e_case *c, const char *tag) {
  nw_test_tmpdir(c->dir, sizeof c->dir, tag);
  snprintf(c->log, sizeof c->log, "%s.log", c->dir);
  snprintf(c->device, sizeof c->device, "nwalert-%d-%s", (int)getpid(), tag);
  c->conf[0] = '\0';
}

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

static void dump_log(const e2e_case *c) {
  size_t n;
  char *s = nw_test_slurp(c->log, &n);
  fprintf(stderr, "---- log %s ----\n%s\n", c->log, s ? s : "");
  free(s);
  char p[512];
  snprintf(p, sizeof p, "%s/ledger.jsonl", c->dir);
  s = nw_test_slurp(p, &n);
  fprintf(stderr, "---- ledger ----\n%s\n", s ? s : "");
  free(s);
}

/* Runs `nightwatch run` to its end (the activation recovery, 12 steps) and
 * returns its exit code. */
static int run_supervisor(e2e_case *c) {
  char mem[64], dev[128];
  snprintf(mem, sizeof mem, "device.memory=%llu", activation_cap());
  snprintf(dev, sizeof dev, "device.name=%s", c->device);
  char *argv[40];
  int n = 0;
  argv[n++] = (char *)NW_BIN;
  argv[n++] = "run";
  if (c->conf[0])
    argv[n++] = c->conf;
  argv[n++] = "--run-dir";
  argv[n++] = c->dir;
  static const char *const sets[] = {
      "model.n_layer=2",    "model.n_embd=64",
      "eval.every=0",       "data.long_fraction=0",
      "batch.micro=32",     "train.steps=12",
      "checkpoint.every=4", NULL};
  for (int i = 0; sets[i]; i++) {
    argv[n++] = "--set";
    argv[n++] = (char *)sets[i];
  }
  argv[n++] = "--set";
  argv[n++] = mem;
  argv[n++] = "--set";
  argv[n++] = dev;
  argv[n] = NULL;
  pid_t pid = nw_test_spawn_logged(argv, c->log);
  int rc = nw_test_wait_or_kill(pid, 120);
  nw_vdev_unlink(c->device);
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
static void assert_no_secrets(const e2e_case *c) {
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
    if (strstr(path, "/secret") || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
      continue; /* the secret file itself; directories */
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

static void test_recovery_alerts_delivered(void **state) {
  (void)state;
  nw_test_http *srv = nw_test_http_start();
  e2e_case c;
  case_init(&c, "deliver");
  char secret_path[512], text[2048];
  nw_test_write_text(c.dir, "secret", SECRET "\n", secret_path,
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
  char conf_dir[256];
  nw_test_tmpdir(conf_dir, sizeof conf_dir, "deliver-conf");
  nw_test_write_text(conf_dir, "run.conf", text, c.conf, sizeof c.conf);
  /* the first delivery fails once: the ledger shows the retry */
  nw_test_http_reply replies[] = {{.status = 503}, {.status = 200}};
  nw_test_http_script(srv, replies, 2);

  int rc = run_supervisor(&c);
  if (rc != 0)
    dump_log(&c);
  assert_int_equal(rc, 0);
  json_t *a = nw_test_ledger_load(c.dir);
  int n_rec = nw_test_ledger_count(a, "recovery");
  assert_true(n_rec >= 1);
  json_t *rec = nw_test_ledger_find(a, "recovery", 0);
  assert_string_equal(nw_test_json_str(rec, "cause"), "activation");
  if (!strstr(nw_test_json_str(rec, "delivery"),
              "queued for default (127.0.0.1:"))
    fail_msg("recovery delivery: %s", nw_test_json_str(rec, "delivery"));
  assert_non_null(
      strstr(nw_test_json_str(rec, "delivery"), "chat (127.0.0.1:"));

  /* json hook: start, every recovery, finish; each with every field of its
   * ledger entry, and a signature the receiver's code accepts */
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
  char ts[64], sig[128], body_path[512];
  assert_non_null(
      nw_test_http_header(req, "X-Nightwatch-Timestamp", ts, sizeof ts));
  assert_non_null(
      nw_test_http_header(req, "X-Nightwatch-Signature", sig, sizeof sig));
  nw_test_write_text(conf_dir, "body.json", req->body, body_path,
                     sizeof body_path);
  char *vargv[] = {"/usr/bin/python3",
                   NW_SOURCE_DIR "/tests/verify_signature.py",
                   secret_path,
                   body_path,
                   ts,
                   sig,
                   NULL};
  char out[4096];
  int vrc = nw_test_run_cmd(vargv, out, sizeof out);
  if (vrc != 0)
    fail_msg("the receiver rejected the signature (%d): %s", vrc, out);

  /* slack hook: recoveries only (its default events: recovery, give-up) */
  int slack = 0;
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

  /* the ledger records each delivery's outcome; the one 503 was retried */
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
  json_decref(a);

  assert_no_secrets(&c);
  nw_test_http_stop(srv);
}

/* ---- a receiver that never answers does not delay the recovery ---- */

static double seconds_to_recover(const e2e_case *c) {
  json_t *a = nw_test_ledger_load(c->dir);
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

  e2e_case none, hung;
  case_init(&none, "nohook");
  int rc = run_supervisor(&none);
  if (rc != 0)
    dump_log(&none);
  assert_int_equal(rc, 0);
  json_t *a = nw_test_ledger_load(none.dir);
  assert_string_equal(
      nw_test_json_str(nw_test_ledger_find(a, "recovery", 0), "delivery"),
      "ledger only (no webhook configured)");
  json_decref(a);

  case_init(&hung, "hung");
  char text[1024], conf_dir[256];
  /* attempts that would each hold the recovery for 20 s if delivery were
   * not on its own thread */
  snprintf(text, sizeof text,
           "[alert]\n"
           "url = http://127.0.0.1:%d/hook/" TOKEN "\n"
           "timeout = 20\n"
           "attempts = 2\n"
           "drain_timeout = 1\n",
           nw_test_http_port(srv));
  nw_test_tmpdir(conf_dir, sizeof conf_dir, "hung-conf");
  nw_test_write_text(conf_dir, "run.conf", text, hung.conf, sizeof hung.conf);
  double t0 = nw_test_now();
  rc = run_supervisor(&hung);
  double wall = nw_test_now() - t0;
  if (rc != 0)
    dump_log(&hung);
  assert_int_equal(rc, 0);
  assert_true(nw_test_http_count(srv) >= 1); /* it did try */

  double base = seconds_to_recover(&none), with = seconds_to_recover(&hung);
  printf("time to resume: no webhook %.3f s, webhook that never answers "
         "%.3f s (difference %+.3f s; one attempt's timeout is 20 s); "
         "the whole run with it took %.1f s\n",
         base, with, with - base, wall);
  /* Noise on these machines is a fraction of a second; a delivery on the
   * supervisor's thread would add 20 s. */
  assert_true(with < base + 3.0);
  /* the queued alert was abandoned at exit after drain_timeout (1 s), and
   * the ledger says so */
  a = nw_test_ledger_load(hung.dir);
  json_t *d = nw_test_ledger_find(a, "delivery", 0);
  assert_non_null(d);
  const char *outcome = nw_test_json_str(d, "outcome");
  if (strcmp(outcome, "abandoned") && strcmp(outcome, "failed"))
    fail_msg("outcome %s", outcome);
  json_decref(a);
  assert_true(wall < 60);
  nw_test_http_stop(srv);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recovery_alerts_delivered),
      cmocka_unit_test(test_unreachable_webhook_does_not_delay),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
