/* test_supervisor.c — `nightwatch run` with real processes: the real
 * nightwatch binary supervising the real nightwatch-train, a small model on
 * the CPU virtual device (one device name per test). Each test reads what
 * the supervisor did from its ledger (RUN_DIR/ledger.jsonl) and status.json
 * and checks the processes themselves (pids alive or gone). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/config.h"
#include "device/vdev.h"
#include "e2e/fixture.h"
#include "model/estimate.h"
#include "testutil.h"

/* The small model every test trains, as the test reasons about it. */
static void small_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->model.n_layer = 2;
  cfg->model.n_embd = 64;
  cfg->eval.every = 0;
  cfg->data.long_fraction = 0;
}

/* A case that trains the small model. */
static nw_case *small_case(const char *tag) {
  nw_case *c = nw_case_new(tag);
  nw_case_set(c, "model.n_layer=2");
  nw_case_set(c, "model.n_embd=64");
  nw_case_set(c, "eval.every=0");
  nw_case_set(c, "data.long_fraction=0");
  return c;
}

static json_t *find(json_t *a, const char *event, int nth) {
  return nw_test_ledger_find(a, event, nth);
}

static int count(json_t *a, const char *event) {
  return nw_test_ledger_count(a, event);
}

static void set_arg(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

/* (1) activation OOM: micro-batch 32 does not fit the device, 8 does. A
 * first run trains 5 steps at micro-batch 8; the second asks for 32 and
 * fails at step 5. The supervisor halves the micro-batch (accumulation
 * doubles) until it fits, resumes from the emergency checkpoint of step 5,
 * and the run finishes with the same effective batch and no step lost. */
static void expect_halvings(json_t *a) {
  json_t *oom = find(a, "oom", 0), *rec = find(a, "recovery", 0);
  assert_non_null(oom);
  assert_non_null(rec);
  assert_string_equal(nw_test_json_str(oom, "cause"), "activation");
  assert_int_equal(nw_test_json_int(oom, "exit_code"), 75);
  assert_int_equal(nw_test_json_int(oom, "failed_step"), 5);
  assert_true(json_is_true(json_object_get(oom, "emergency_checkpoint")));
  /* 32 -> 16 (-> 8 when 16 does not fit either), every one a halving */
  int n = count(a, "recovery");
  assert_true(n >= 1 && n <= 2);
  for (int i = 0; i < n; i++) {
    json_t *r = find(a, "recovery", i);
    json_t *before = json_object_get(r, "before");
    json_t *after = json_object_get(r, "after");
    assert_string_equal(nw_test_json_str(r, "cause"), "activation");
    assert_string_equal(nw_test_json_str(r, "action"), "halve-micro-batch");
    assert_int_equal(nw_test_json_int(after, "micro") * 2,
                     nw_test_json_int(before, "micro"));
    assert_int_equal(nw_test_json_int(after, "accum"),
                     32 / nw_test_json_int(after, "micro"));
    assert_int_equal(nw_test_json_int(before, "effective"), 32);
    assert_int_equal(nw_test_json_int(after, "effective"), 32);
  }
  assert_int_equal(nw_test_json_int(json_object_get(rec, "before"), "micro"),
                   32);
}

/* `nightwatch ledger` names the recovery; `nightwatch status` shows the
 * settings in force. */
static void expect_tools_show(const nw_case *c, int micro_final) {
  char out[1 << 15], want[64];
  char *argv[] = {(char *)NW_BIN, "ledger", (char *)c->dir, NULL};
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), 0);
  assert_non_null(strstr(out, "halve-micro-batch"));
  assert_non_null(strstr(out, "0 steps lost"));
  char *sargv[] = {(char *)NW_BIN, "status", (char *)c->dir, NULL};
  assert_int_equal(nw_test_run_cmd(sargv, out, sizeof out), 0);
  assert_non_null(strstr(out, "step       20 / 20"));
  set_arg(want, sizeof want, "micro %d accum %d (eff 32)", micro_final,
          32 / micro_final);
  if (!strstr(out, want))
    fail_msg("status lacks \"%s\":\n%s", want, out);
}

static void test_activation_recovery(void **state) {
  (void)state;
  nw_case *c = small_case("act");
  nw_config cfg;
  small_config(&cfg);
  nw_estimate fits, big;
  nw_estimate_train(&cfg, 8, 10, 0, &fits); /* the longest short problem */
  nw_estimate_train(&cfg, 32, 5, 0, &big);  /* the shortest possible */
  assert_true(fits.total < big.total);
  nw_case_set(c, "device.memory=%llu",
              (unsigned long long)((fits.total + big.total) / 2));
  const char *first[] = {"train.steps=5", NULL};
  nw_case_run_ok(c, first, 30);
  const char *second[] = {"batch.micro=32", "train.steps=20", NULL};
  nw_case_run_ok(c, second, 30);
  json_t *a = nw_case_ledger(c);
  expect_halvings(a);
  /* one outage, one "resumed": measured from the first failure */
  assert_int_equal(count(a, "resumed"), 1);
  json_t *res = find(a, "resumed", 0), *fin = find(a, "finish", 1);
  assert_non_null(res);
  assert_non_null(fin);
  assert_int_equal(nw_test_json_int(res, "steps_lost"), 0);
  assert_int_equal(nw_test_json_int(res, "resumed_from"), 5);
  assert_true(json_number_value(json_object_get(res, "seconds_to_recover")) >
              0);
  assert_int_equal(nw_test_json_int(fin, "step"), 20);
  assert_int_equal(count(a, "give-up"), 0);
  int n = count(a, "recovery");
  int micro_final = nw_test_json_int(
      json_object_get(find(a, "recovery", n - 1), "after"), "micro");
  json_decref(a);
  expect_tools_show(c, micro_final);
  nw_case_free(c);
}

/* A run long enough to be interrupted. */
static const char *const long_run[] = {"train.steps=1000000", NULL};

/* (2) a second supervisor of the same run refuses, naming the first. And
 * (5) SIGTERM to the supervisor: the trainer checkpoints, exit 0. */
static void test_lock_and_sigterm(void **state) {
  (void)state;
  nw_case *c = small_case("lock");
  nw_case_start(c, long_run);
  int tpid;
  int step = nw_case_wait_step(c, 3, 20, &tpid);
  assert_true(step >= 3);
  char second_log[400];
  snprintf(second_log, sizeof second_log, "%s/second.log", c->home);
  pid_t second = nw_case_spawn(c, long_run, second_log);
  int rc = nw_test_wait_or_kill(second, 10);
  assert_int_equal(rc, 1);
  char needle[64];
  snprintf(needle, sizeof needle, "held by pid %d", (int)c->sup);
  char *text = nw_test_slurp(second_log, NULL);
  if (!text || !strstr(text, needle))
    fail_msg("the second supervisor does not name pid %d:\n%s", (int)c->sup,
             text ? text : "");
  free(text);
  assert_true(nw_case_alive(tpid)); /* the refusal touched nothing */

  kill(c->sup, SIGTERM);
  rc = nw_case_wait(c, 20);
  if (rc != 0)
    nw_case_dump(c);
  assert_int_equal(rc, 0);
  json_t *a = nw_case_ledger(c);
  json_t *stop = find(a, "stop", 0);
  assert_non_null(stop);
  assert_true(json_is_true(json_object_get(stop, "checkpoint")));
  assert_int_equal(nw_test_json_int(stop, "exit_code"), 0);
  assert_int_equal(count(a, "start"), 1);
  json_decref(a);
  assert_false(nw_case_alive(tpid));
  char ck[512];
  snprintf(ck, sizeof ck, "%s/checkpoints", c->dir);
  struct stat sb;
  assert_int_equal(stat(ck, &sb), 0);
  nw_case_free(c);
}

/* Ctrl-C twice: a trainer that does not stop (here: SIGSTOPped, so its
 * SIGTERM waits) is killed at the second request, long before the grace. */
static void test_second_sigterm_kills(void **state) {
  (void)state;
  nw_case *c = small_case("twice");
  const char *extra[] = {"train.steps=1000000", "supervisor.kill_grace=120",
                         NULL};
  nw_case_start(c, extra);
  int tpid;
  assert_true(nw_case_wait_step(c, 2, 20, &tpid) >= 2);
  assert_int_equal(kill(tpid, SIGSTOP), 0);
  assert_int_equal(kill(c->sup, SIGTERM), 0);
  /* the supervisor took the first request: it is in its grace, and the
   * stopped trainer cannot have ended */
  nw_case_wait_state(c, "stopping", 20);
  assert_true(nw_case_alive(tpid));
  double t0 = nw_test_now();
  assert_int_equal(kill(c->sup, SIGINT), 0);
  int rc = nw_case_wait(c, 20);
  double took = nw_test_now() - t0;
  if (rc != 1)
    nw_case_dump(c);
  assert_int_equal(rc, 1); /* the trainer did not stop cleanly */
  assert_true(took < 20);  /* not the 120 s grace */
  assert_false(nw_case_alive(tpid));
  assert_true(nw_case_log_has(c, "SIGINT again while stopping: SIGKILL"));
  json_t *a = nw_case_ledger(c);
  json_t *stop = find(a, "stop", 0);
  assert_non_null(stop);
  assert_false(json_is_true(json_object_get(stop, "checkpoint")));
  json_decref(a);
  nw_case_free(c);
}

/* (3) SIGKILL of the supervisor leaves no trainer (PR_SET_PDEATHSIG). */
static void test_sigkill_leaves_no_trainer(void **state) {
  (void)state;
  nw_case *c = small_case("kill");
  nw_case_start(c, long_run);
  int tpid;
  nw_case_wait_step(c, 1, 20, &tpid);
  assert_true(nw_case_alive(tpid));
  kill(c->sup, SIGKILL);
  assert_int_equal(nw_case_wait(c, 5), 128 + SIGKILL);
  /* the parent-death signal is sent at once; the end of the process is
   * waited for (its exit takes a moment on a loaded machine) */
  double end = nw_test_now() + 10.0;
  while (nw_case_alive(tpid) && nw_test_now() < end)
    nw_test_sleep(0.01);
  assert_false(nw_case_alive(tpid));
  nw_case_free(c);
}

/* (4) a trainer stopped with SIGSTOP sends no heartbeat: after
 * hang_timeout it is stopped (SIGTERM+SIGCONT, SIGKILL after the grace)
 * and a new one resumes from the last checkpoint. */
static void test_hang(void **state) {
  (void)state;
  nw_case *c = small_case("hang");
  const char *extra[] = {"train.steps=1000000", "supervisor.hang_timeout=2",
                         "supervisor.kill_grace=1", NULL};
  nw_case_start(c, extra);
  int tpid;
  nw_case_wait_step(c, 2, 20, &tpid);
  double t0 = nw_test_now();
  assert_int_equal(kill(tpid, SIGSTOP), 0);
  json_t *a = nw_case_wait_event(c, "resumed", 1, 20);
  double took = nw_test_now() - t0;
  json_t *hang = find(a, "hang", 0), *rec = find(a, "recovery", 0);
  assert_non_null(hang);
  assert_non_null(rec);
  assert_int_equal(nw_test_json_int(hang, "pid"), tpid);
  assert_string_equal(nw_test_json_str(rec, "cause"), "hang");
  assert_string_equal(nw_test_json_str(rec, "action"), "restart");
  json_t *res = find(a, "resumed", 0);
  assert_true(nw_test_json_int(res, "pid") != tpid);
  assert_true(nw_test_json_int(res, "steps_lost") >= 0);
  assert_true(took >= 2.0); /* not before the timeout */
  json_decref(a);
  assert_false(nw_case_alive(tpid));
  kill(c->sup, SIGTERM);
  assert_int_equal(nw_case_wait(c, 20), 0);
  nw_case_free(c);
}

/* (6) a malformed policy is refused at start with every FILE:LINE. */
static void test_bad_policy(void **state) {
  (void)state;
  nw_case *c = small_case("pol");
  const char *pol = nw_case_policy(c, "[activation]\n"
                                      "actions = halve-micro-batch, fly-away\n"
                                      "[limits]\n"
                                      "backoff_factor = -3\n");
  assert_int_equal(nw_case_run(c, NULL, 10), 78);
  char l2[600], l4[600];
  snprintf(l2, sizeof l2, "%s:2:", pol);
  snprintf(l4, sizeof l4, "%s:4:", pol);
  if (!nw_case_log_has(c, l2) || !nw_case_log_has(c, l4)) {
    nw_case_dump(c);
    fail_msg("expected both errors with FILE:LINE");
  }
  char p[600];
  snprintf(p, sizeof p, "%s/ledger.jsonl", c->dir);
  assert_int_not_equal(access(p, F_OK), 0); /* no trainer ever started */
  nw_case_free(c);
}

/* (7) a device too small even for micro-batch 1: the supervisor walks the
 * micro-batch down (4 -> 2 -> 1), then shortens the sequences (32 -> 16,
 * the floor), then gives up with a ledger entry and exit 1. */
static void test_give_up(void **state) {
  (void)state;
  nw_case *c = small_case("giveup");
  nw_config cfg;
  small_config(&cfg);
  cfg.model.max_seq_len = 32;
  cfg.batch.effective = 4;
  cfg.batch.micro = 1;
  nw_estimate st, one;
  nw_estimate_static(&cfg, &st);
  nw_estimate_train(&cfg, 1, 5, 0, &one);
  assert_true(st.total < one.total);
  nw_case_policy(c, "[activation]\n"
                    "actions = halve-micro-batch, shorten-sequences\n"
                    "factor = 0.5\n"
                    "floor = 16\n"
                    "[limits]\n"
                    "max_recoveries = 20\n"
                    "backoff_initial_seconds = 0.1\n"
                    "min_start_interval_seconds = 0\n");
  nw_case_set(c, "device.memory=%llu",
              (unsigned long long)((st.total + one.total) / 2));
  const char *extra[] = {"model.max_seq_len=32", "batch.effective=4",
                         "batch.micro=4", "train.steps=10", NULL};
  int rc = nw_case_run(c, extra, 40);
  if (rc != 1)
    nw_case_dump(c);
  assert_int_equal(rc, 1);
  json_t *a = nw_case_ledger(c);
  assert_int_equal(count(a, "recovery"), 3);
  assert_int_equal(count(a, "start"), 4);
  static const char *const actions[] = {
      "halve-micro-batch", "halve-micro-batch", "shorten-sequences"};
  static const int micro_after[] = {2, 1, 1}, len_after[] = {32, 32, 16};
  for (int i = 0; i < 3; i++) {
    json_t *r = find(a, "recovery", i);
    assert_string_equal(nw_test_json_str(r, "cause"), "activation");
    assert_string_equal(nw_test_json_str(r, "action"), actions[i]);
    json_t *after = json_object_get(r, "after");
    assert_int_equal(nw_test_json_int(after, "micro"), micro_after[i]);
    assert_int_equal(nw_test_json_int(after, "max_len"), len_after[i]);
    assert_int_equal(nw_test_json_int(after, "effective"), 4);
  }
  json_t *g = find(a, "give-up", 0);
  assert_non_null(g);
  assert_string_equal(nw_test_json_str(g, "cause"), "activation");
  assert_int_equal(count(a, "oom"), 4);
  assert_int_equal(count(a, "resumed"), 0);
  json_decref(a);
  nw_case_free(c);
}

/* A child of the test that holds bytes on the device under run_id until
 * a byte arrives on *go (then it exits 0 by itself). Returns its pid once
 * the bytes are held. */
static pid_t hold_device(const char *device, uint64_t cap, const char *run_id,
                         uint64_t bytes, int *go_w) {
  int ready[2], go[2];
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(go), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    nw_vdev *v = NULL;
    char err[256], b = 0;
    close(go[1]);
    if (nw_vdev_open(&v, device, cap, run_id, err, sizeof err) < 0 ||
        nw_vdev_reserve(v, bytes) < 0)
      _exit(3);
    if (write(ready[1], &b, 1) != 1 || read(go[0], &b, 1) != 1)
      _exit(4);
    nw_vdev_close(v);
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  char b;
  assert_int_equal(read(ready[0], &b, 1), 1);
  close(ready[0]);
  *go_w = go[1];
  return pid;
}

/* (8a) a duplicate of this run (same uid, same run id) holding the device
 * is stopped: SIGTERM (SIGKILL after the grace), then the run goes on. */
static void test_duplicate_killed(void **state) {
  (void)state;
  nw_case *c = small_case("dup");
  nw_config cfg;
  small_config(&cfg);
  nw_estimate fits;
  nw_estimate_train(&cfg, 8, 12, 0, &fits);
  uint64_t cap = fits.total * 3 / 2;
  char run_id[64];
  set_arg(run_id, sizeof run_id, "dup-%d", (int)getpid());
  int go;
  pid_t dup = hold_device(c->device, cap, run_id, fits.total * 4 / 5, &go);
  nw_case_set(c, "device.memory=%llu", (unsigned long long)cap);
  nw_case_set(c, "run.id=%s", run_id);
  const char *extra[] = {"train.steps=20", NULL};
  nw_case_start(c, extra);
  int drc = nw_test_wait_or_kill(dup, 30);
  if (drc != 128 + SIGTERM)
    nw_case_dump(c);
  assert_int_equal(drc, 128 + SIGTERM); /* the supervisor stopped it */
  int rc = nw_case_wait(c, 30);
  if (rc != 0)
    nw_case_dump(c);
  assert_int_equal(rc, 0);
  json_t *a = nw_case_ledger(c);
  json_t *oom = find(a, "oom", 0), *kill_e = find(a, "kill", 0);
  assert_non_null(oom);
  assert_string_equal(nw_test_json_str(oom, "cause"), "duplicate-process");
  assert_non_null(kill_e);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(kill_e, "pids"), 0)),
      dup);
  assert_non_null(find(a, "finish", 0));
  json_decref(a);
  close(go);
  nw_case_free(c);
}

/* (8b) a process of another run holding the device is never killed: the
 * supervisor alerts and waits; when it lets go, the run goes on. */
static void test_foreign_waited_for(void **state) {
  (void)state;
  nw_case *c = small_case("foreign");
  nw_config cfg;
  small_config(&cfg);
  nw_estimate fits;
  nw_estimate_train(&cfg, 8, 12, 0, &fits);
  uint64_t cap = fits.total * 3 / 2, hold = fits.total * 4 / 5;
  int go;
  pid_t other = hold_device(c->device, cap, "another-run", hold, &go);
  nw_case_policy(c, "[duplicate-process]\n"
                    "actions = kill-duplicate\n"
                    "wait_initial_seconds = 1.5\n"
                    "wait_max_seconds = 5\n");
  nw_case_set(c, "device.memory=%llu", (unsigned long long)cap);
  const char *extra[] = {"train.steps=20", NULL};
  nw_case_start(c, extra);
  json_t *a = nw_case_wait_event(c, "alert", 1, 20);
  json_t *oom = find(a, "oom", 0);
  assert_string_equal(nw_test_json_str(oom, "cause"), "duplicate-process");
  assert_int_equal(json_integer_value(
                       json_array_get(json_object_get(oom, "foreign_pids"), 0)),
                   other);
  json_decref(a);
  /* the second alert ends the wait (the device checked again): the whole
   * wait went by, and the other run's process is still there */
  a = nw_case_wait_event(c, "alert", 2, 20);
  assert_int_equal(count(a, "kill"), 0);
  json_decref(a);
  assert_int_equal(waitpid(other, NULL, WNOHANG), 0); /* alive */
  assert_true(nw_case_alive(other));
  char b = 0;
  assert_int_equal(write(go, &b, 1), 1);            /* now it lets go */
  assert_int_equal(nw_test_wait_exit(other, 5), 0); /* exited by itself */
  int rc = nw_case_wait(c, 40);
  if (rc != 0)
    nw_case_dump(c);
  assert_int_equal(rc, 0);
  a = nw_case_ledger(c);
  assert_int_equal(count(a, "kill"), 0);
  assert_non_null(find(a, "finish", 0));
  json_decref(a);
  close(go);
  nw_case_free(c);
}

/* SIGHUP reloads the policy: a malformed file is reported with FILE:LINE
 * and the old policy stays; a good one replaces it. */
static void test_sighup_reload(void **state) {
  (void)state;
  nw_case *c = small_case("hup");
  const char *pol = nw_case_policy(c, "[unknown]\nactions = restart\n");
  nw_case_start(c, long_run);
  int tpid;
  nw_case_wait_step(c, 1, 20, &tpid);
  nw_case_policy(c, "[unknown]\nactions = dance\n");
  kill(c->sup, SIGHUP);
  json_t *a = nw_case_wait_event(c, "reload", 1, 10);
  assert_false(json_is_true(json_object_get(find(a, "reload", 0), "ok")));
  json_decref(a);
  char l2[600];
  snprintf(l2, sizeof l2, "%s:2:", pol);
  assert_true(nw_case_log_has(c, l2));
  nw_case_policy(c, "[unknown]\nactions = give-up\n");
  kill(c->sup, SIGHUP);
  a = nw_case_wait_event(c, "reload", 2, 10);
  assert_true(json_is_true(json_object_get(find(a, "reload", 1), "ok")));
  json_decref(a);
  /* the new policy is in force: a crash now gives up at once */
  assert_int_equal(kill(tpid, SIGKILL), 0);
  assert_int_equal(nw_case_wait(c, 20), 1);
  a = nw_case_ledger(c);
  json_t *crash = find(a, "crash", 0);
  assert_non_null(crash);
  assert_int_equal(nw_test_json_int(crash, "signal"), SIGKILL);
  assert_non_null(strstr(nw_test_json_str(crash, "evidence"), "signal"));
  assert_non_null(find(a, "give-up", 0));
  json_decref(a);
  nw_case_free(c);
}

/* A foreign command: the environment contract, an OOM message on its
 * stderr (no report: cause unknown), the [unknown] chain, give-up. */
static void test_foreign_command(void **state) {
  (void)state;
  nw_case *c = small_case("cmd");
  nw_case_policy(c, "[unknown]\nactions = restart\n[limits]\n"
                    "max_recoveries = 1\nbackoff_initial_seconds = 0\n"
                    "min_start_interval_seconds = 0\n");
  nw_case_arg(c, "--");
  nw_case_arg(c, "/bin/sh");
  nw_case_arg(c, "-c");
  nw_case_arg(c, "echo \"$NIGHTWATCH_MICRO_BATCH $NIGHTWATCH_ACCUMULATION "
                 "${NOTIFY_SOCKET:-none} $NIGHTWATCH_RUN_ID\" >> "
                 "\"$NIGHTWATCH_RUN_DIR/env.txt\"; "
                 "echo 'RuntimeError: CUDA out of memory. Tried to allocate 2 "
                 "GiB' >&2; exit 1");
  /* the supervisor's own NOTIFY_SOCKET never reaches the trainer */
  nw_case_env(c, "NOTIFY_SOCKET", "/run/should-not-pass");
  int rc = nw_case_run(c, NULL, 20);
  if (rc != 1)
    nw_case_dump(c);
  assert_int_equal(rc, 1);
  json_t *a = nw_case_ledger(c);
  assert_int_equal(count(a, "oom"), 2);
  assert_string_equal(nw_test_json_str(find(a, "oom", 0), "cause"), "unknown");
  assert_int_equal(count(a, "recovery"), 1);
  assert_non_null(find(a, "give-up", 0));
  const char *rid = nw_test_json_str(find(a, "start", 0), "run_id");
  char want[160], p[512];
  snprintf(want, sizeof want, "8 4 none %s\n8 4 none %s\n", rid, rid);
  snprintf(p, sizeof p, "%s/env.txt", c->dir);
  char *env = nw_test_slurp(p, NULL);
  assert_non_null(env);
  assert_string_equal(env, want);
  free(env);
  json_decref(a);
  assert_true(nw_case_log_has(c, "CUDA out of memory")); /* teed to stderr */
  nw_case_free(c);
}

/* A command that cannot be executed is a config error. */
static void test_foreign_command_missing(void **state) {
  (void)state;
  nw_case *c = small_case("nocmd");
  nw_case_arg(c, "--");
  nw_case_arg(c, "/nonexistent/trainer");
  assert_int_equal(nw_case_run(c, NULL, 10), 78);
  json_t *a = nw_case_ledger(c);
  assert_non_null(find(a, "config-error", 0));
  json_decref(a);
  nw_case_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_activation_recovery, nw_case_teardown),
      cmocka_unit_test_teardown(test_lock_and_sigterm, nw_case_teardown),
      cmocka_unit_test_teardown(test_second_sigterm_kills, nw_case_teardown),
      cmocka_unit_test_teardown(test_sigkill_leaves_no_trainer,
                                nw_case_teardown),
      cmocka_unit_test_teardown(test_hang, nw_case_teardown),
      cmocka_unit_test_teardown(test_bad_policy, nw_case_teardown),
      cmocka_unit_test_teardown(test_give_up, nw_case_teardown),
      cmocka_unit_test_teardown(test_duplicate_killed, nw_case_teardown),
      cmocka_unit_test_teardown(test_foreign_waited_for, nw_case_teardown),
      cmocka_unit_test_teardown(test_sighup_reload, nw_case_teardown),
      cmocka_unit_test_teardown(test_foreign_command, nw_case_teardown),
      cmocka_unit_test_teardown(test_foreign_command_missing, nw_case_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
