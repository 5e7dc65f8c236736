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
#include "model/estimate.h"
#include "testutil.h"

typedef struct {
  char dir[256];   /* run directory */
  char log[320];   /* the supervisor's stdout+stderr */
  char device[64]; /* virtual device, unique per test */
  pid_t sup;       /* the supervisor, our child */
} sup_case;

/* The small model every test trains, as the test reasons about it. */
static void small_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->model.n_layer = 2;
  cfg->model.n_embd = 64;
  cfg->eval.every = 0;
  cfg->data.long_fraction = 0;
}

static const char *const small_sets[] = {"model.n_layer=2", "model.n_embd=64",
                                         "eval.every=0", "data.long_fraction=0",
                                         NULL};

static void case_init(sup_case *c, const char *tag) {
  nw_test_tmpdir(c->dir, sizeof c->dir, tag);
  snprintf(c->log, sizeof c->log, "%s.log", c->dir);
  snprintf(c->device, sizeof c->device, "nwsup-%d-%s", (int)getpid(), tag);
  c->sup = 0;
}

static void case_fini(sup_case *c) {
  if (c->sup > 0) {
    kill(c->sup, SIGKILL);
    waitpid(c->sup, NULL, 0);
  }
  nw_vdev_unlink(c->device);
}

/* The file's text; "" when it cannot be read (a log not yet written). */
static char *read_file(const char *path) {
  char *s = nw_test_slurp(path, NULL);
  return s ? s : strdup("");
}

static void dump_log(const sup_case *c) {
  char *s = read_file(c->log);
  fprintf(stderr, "---- supervisor log %s ----\n%s\n", c->log, s);
  free(s);
  char p[512];
  snprintf(p, sizeof p, "%s/ledger.jsonl", c->dir);
  s = read_file(p);
  fprintf(stderr, "---- ledger ----\n%s\n", s);
  free(s);
}

/* Starts `nightwatch run --run-dir DIR` with the small model, the case's
 * device and the extra arguments (NULL-terminated). */
static pid_t sup_start(sup_case *c, const char *const *extra) {
  char *argv[96];
  static char sets[16][256];
  int n = 0, k = 0;
  argv[n++] = (char *)NW_BIN;
  argv[n++] = "run";
  argv[n++] = "--run-dir";
  argv[n++] = c->dir;
  for (int i = 0; small_sets[i]; i++) {
    argv[n++] = "--set";
    argv[n++] = (char *)small_sets[i];
  }
  snprintf(sets[k], sizeof sets[k], "device.name=%s", c->device);
  argv[n++] = "--set";
  argv[n++] = sets[k++];
  for (int i = 0; extra && extra[i]; i++)
    argv[n++] = (char *)extra[i];
  argv[n] = NULL;
  return nw_test_spawn_logged(argv, c->log);
}

static int sup_wait(sup_case *c, double timeout) {
  int rc = nw_test_wait_exit(c->sup, timeout);
  if (rc >= 0)
    c->sup = 0;
  return rc;
}

/* The ledger as an array of objects (empty when there is none). */
static json_t *ledger(const sup_case *c) { return nw_test_ledger_load(c->dir); }

static json_t *find(json_t *a, const char *event, int nth) {
  return nw_test_ledger_find(a, event, nth);
}

static int count(json_t *a, const char *event) {
  return nw_test_ledger_count(a, event);
}

/* Waits until the ledger holds n entries of event; returns the ledger. */
static json_t *wait_event(sup_case *c, const char *event, int n,
                          double timeout) {
  double end = nw_test_now() + timeout;
  for (;;) {
    json_t *a = ledger(c);
    if (count(a, event) >= n)
      return a;
    json_decref(a);
    if (nw_test_now() > end) {
      dump_log(c);
      fail_msg("no %d '%s' entries in the ledger after %.0f s", n, event,
               timeout);
    }
    nw_test_sleep(0.05);
  }
}

/* status.json's step and trainer pid once the trainer has done min_step
 * steps. */
static int wait_step(sup_case *c, int min_step, double timeout, int *pid) {
  char p[512];
  snprintf(p, sizeof p, "%s/status.json", c->dir);
  double end = nw_test_now() + timeout;
  while (nw_test_now() < end) {
    json_t *s = json_load_file(p, 0, NULL);
    int step = s ? nw_test_json_int(s, "step") : -1;
    int tp = s ? nw_test_json_int(s, "trainer_pid") : 0;
    json_decref(s);
    if (step >= min_step && tp > 0) {
      *pid = tp;
      return step;
    }
    nw_test_sleep(0.05);
  }
  dump_log(c);
  fail_msg("the trainer did not reach step %d in %.0f s", min_step, timeout);
  return -1;
}

/* Alive and not a zombie (a process that is not our child). */
static int alive(int pid) {
  char p[64], buf[512];
  snprintf(p, sizeof p, "/proc/%d/stat", pid);
  FILE *f = fopen(p, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

static int log_has(const sup_case *c, const char *needle) {
  char *s = read_file(c->log);
  int has = strstr(s, needle) != NULL;
  free(s);
  return has;
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
static void test_activation_recovery(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "act");
  nw_config cfg;
  small_config(&cfg);
  nw_estimate fits, big;
  nw_estimate_train(&cfg, 8, 10, 0, &fits); /* the longest short problem */
  nw_estimate_train(&cfg, 32, 5, 0, &big);  /* the shortest possible */
  assert_true(fits.total < big.total);
  char mem[64];
  set_arg(mem, sizeof mem, "device.memory=%llu",
          (unsigned long long)((fits.total + big.total) / 2));
  const char *first[] = {"--set", mem, "--set", "train.steps=5", NULL};
  c.sup = sup_start(&c, first);
  assert_int_equal(sup_wait(&c, 30), 0);
  const char *extra[] = {
      "--set", mem, "--set", "batch.micro=32", "--set", "train.steps=20", NULL};
  c.sup = sup_start(&c, extra);
  int rc = sup_wait(&c, 30);
  if (rc != 0)
    dump_log(&c);
  assert_int_equal(rc, 0);
  json_t *a = ledger(&c);
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
  int micro_final = nw_test_json_int(
      json_object_get(find(a, "recovery", n - 1), "after"), "micro");
  json_decref(a);
  /* the ledger as a table names the recovery; status shows the settings */
  char out[1 << 15], want[64];
  char *argv[] = {(char *)NW_BIN, "ledger", c.dir, NULL};
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), 0);
  assert_non_null(strstr(out, "halve-micro-batch"));
  assert_non_null(strstr(out, "0 steps lost"));
  char *sargv[] = {(char *)NW_BIN, "status", c.dir, NULL};
  assert_int_equal(nw_test_run_cmd(sargv, out, sizeof out), 0);
  assert_non_null(strstr(out, "step       20 / 20"));
  set_arg(want, sizeof want, "micro %d accum %d (eff 32)", micro_final,
          32 / micro_final);
  if (!strstr(out, want))
    fail_msg("status lacks \"%s\":\n%s", want, out);
  case_fini(&c);
}

/* A run long enough to be interrupted. */
static const char *const long_run[] = {"--set", "train.steps=1000000", NULL};

/* (2) a second supervisor of the same run refuses, naming the first. And
 * (5) SIGTERM to the supervisor: the trainer checkpoints, exit 0. */
static void test_lock_and_sigterm(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "lock");
  c.sup = sup_start(&c, long_run);
  int tpid;
  int step = wait_step(&c, 3, 20, &tpid);
  assert_true(step >= 3);
  sup_case second = c;
  snprintf(second.log, sizeof second.log, "%s.second.log", c.dir);
  second.sup = sup_start(&second, long_run);
  int rc = sup_wait(&second, 10);
  assert_int_equal(rc, 1);
  char needle[64];
  snprintf(needle, sizeof needle, "held by pid %d", (int)c.sup);
  if (!log_has(&second, needle)) {
    dump_log(&second);
    fail_msg("the second supervisor does not name pid %d", (int)c.sup);
  }
  assert_true(alive(tpid)); /* the refusal touched nothing */

  kill(c.sup, SIGTERM);
  rc = sup_wait(&c, 20);
  if (rc != 0)
    dump_log(&c);
  assert_int_equal(rc, 0);
  json_t *a = ledger(&c);
  json_t *stop = find(a, "stop", 0);
  assert_non_null(stop);
  assert_true(json_is_true(json_object_get(stop, "checkpoint")));
  assert_int_equal(nw_test_json_int(stop, "exit_code"), 0);
  assert_int_equal(count(a, "start"), 1);
  json_decref(a);
  assert_false(alive(tpid));
  char ck[512];
  snprintf(ck, sizeof ck, "%s/checkpoints", c.dir);
  struct stat sb;
  assert_int_equal(stat(ck, &sb), 0);
  case_fini(&c);
}

/* (3) SIGKILL of the supervisor leaves no trainer (PR_SET_PDEATHSIG). */
/* Ctrl-C twice: a trainer that does not stop (here: SIGSTOPped, so its
 * SIGTERM waits) is killed at the second request, long before the grace. */
static void test_second_sigterm_kills(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "twice");
  const char *extra[] = {"--set", "train.steps=1000000", "--set",
                         "supervisor.kill_grace=120", NULL};
  c.sup = sup_start(&c, extra);
  int tpid;
  assert_true(wait_step(&c, 2, 20, &tpid) >= 2);
  assert_int_equal(kill(tpid, SIGSTOP), 0);
  assert_int_equal(kill(c.sup, SIGTERM), 0);
  nw_test_sleep(0.5);
  assert_true(alive(tpid)); /* still in its grace */
  double t0 = nw_test_now();
  assert_int_equal(kill(c.sup, SIGINT), 0);
  int rc = sup_wait(&c, 20);
  double took = nw_test_now() - t0;
  if (rc != 1)
    dump_log(&c);
  assert_int_equal(rc, 1); /* the trainer did not stop cleanly */
  assert_true(took < 20);  /* not the 120 s grace */
  assert_false(alive(tpid));
  assert_true(log_has(&c, "SIGINT again while stopping: SIGKILL"));
  json_t *a = ledger(&c);
  json_t *stop = find(a, "stop", 0);
  assert_non_null(stop);
  assert_false(json_is_true(json_object_get(stop, "checkpoint")));
  json_decref(a);
  case_fini(&c);
}

static void test_sigkill_leaves_no_trainer(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "kill");
  c.sup = sup_start(&c, long_run);
  int tpid;
  wait_step(&c, 1, 20, &tpid);
  assert_true(alive(tpid));
  kill(c.sup, SIGKILL);
  assert_int_equal(sup_wait(&c, 5), 128 + SIGKILL);
  double end = nw_test_now() + 1.0;
  while (alive(tpid) && nw_test_now() < end)
    nw_test_sleep(0.01);
  assert_false(alive(tpid));
  case_fini(&c);
}

/* (4) a trainer stopped with SIGSTOP sends no heartbeat: after
 * hang_timeout it is stopped (SIGTERM+SIGCONT, SIGKILL after the grace)
 * and a new one resumes from the last checkpoint. */
static void test_hang(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "hang");
  const char *extra[] = {
      "--set", "train.steps=1000000",     "--set", "supervisor.hang_timeout=2",
      "--set", "supervisor.kill_grace=1", NULL};
  c.sup = sup_start(&c, extra);
  int tpid;
  wait_step(&c, 2, 20, &tpid);
  double t0 = nw_test_now();
  assert_int_equal(kill(tpid, SIGSTOP), 0);
  json_t *a = wait_event(&c, "resumed", 1, 20);
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
  assert_false(alive(tpid));
  kill(c.sup, SIGTERM);
  assert_int_equal(sup_wait(&c, 20), 0);
  case_fini(&c);
}

/* (6) a malformed policy is refused at start with every FILE:LINE. */
static void test_bad_policy(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "pol");
  char pol[512];
  nw_test_write_text(c.dir, "bad.conf",
                     "[activation]\n"
                     "actions = halve-micro-batch, fly-away\n"
                     "[limits]\n"
                     "backoff_factor = -3\n",
                     pol, sizeof pol);
  const char *extra[] = {"--policy", pol, NULL};
  c.sup = sup_start(&c, extra);
  assert_int_equal(sup_wait(&c, 10), 78);
  char l2[600], l4[600];
  snprintf(l2, sizeof l2, "%s:2:", pol);
  snprintf(l4, sizeof l4, "%s:4:", pol);
  if (!log_has(&c, l2) || !log_has(&c, l4)) {
    dump_log(&c);
    fail_msg("expected both errors with FILE:LINE");
  }
  char p[600];
  snprintf(p, sizeof p, "%s/ledger.jsonl", c.dir);
  assert_int_not_equal(access(p, F_OK), 0); /* no trainer ever started */
  case_fini(&c);
}

/* (7) a device too small even for micro-batch 1: the supervisor walks the
 * micro-batch down (4 -> 2 -> 1), then shortens the sequences (32 -> 16,
 * the floor), then gives up with a ledger entry and exit 1. */
static void test_give_up(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "giveup");
  nw_config cfg;
  small_config(&cfg);
  cfg.model.max_seq_len = 32;
  cfg.batch.effective = 4;
  cfg.batch.micro = 1;
  nw_estimate st, one;
  nw_estimate_static(&cfg, &st);
  nw_estimate_train(&cfg, 1, 5, 0, &one);
  assert_true(st.total < one.total);
  char mem[64], pol[512];
  set_arg(mem, sizeof mem, "device.memory=%llu",
          (unsigned long long)((st.total + one.total) / 2));
  nw_test_write_text(c.dir, "giveup.conf",
                     "[activation]\n"
                     "actions = halve-micro-batch, shorten-sequences\n"
                     "factor = 0.5\n"
                     "floor = 16\n"
                     "[limits]\n"
                     "max_recoveries = 20\n"
                     "backoff_initial_seconds = 0.1\n"
                     "min_start_interval_seconds = 0\n",
                     pol, sizeof pol);
  const char *extra[] = {"--policy", pol,
                         "--set",    mem,
                         "--set",    "model.max_seq_len=32",
                         "--set",    "batch.effective=4",
                         "--set",    "batch.micro=4",
                         "--set",    "train.steps=10",
                         NULL};
  c.sup = sup_start(&c, extra);
  int rc = sup_wait(&c, 40);
  if (rc != 1)
    dump_log(&c);
  assert_int_equal(rc, 1);
  json_t *a = ledger(&c);
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
  case_fini(&c);
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
  sup_case c;
  case_init(&c, "dup");
  nw_config cfg;
  small_config(&cfg);
  nw_estimate fits;
  nw_estimate_train(&cfg, 8, 12, 0, &fits);
  uint64_t cap = fits.total * 3 / 2;
  char mem[64], rid[80], run_id[64];
  set_arg(mem, sizeof mem, "device.memory=%llu", (unsigned long long)cap);
  set_arg(run_id, sizeof run_id, "dup-%d", (int)getpid());
  set_arg(rid, sizeof rid, "run.id=%s", run_id);
  int go;
  pid_t dup = hold_device(c.device, cap, run_id, fits.total * 4 / 5, &go);
  const char *extra[] = {"--set",          mem, "--set", rid, "--set",
                         "train.steps=20", NULL};
  c.sup = sup_start(&c, extra);
  int drc = nw_test_wait_exit(dup, 30);
  if (drc != 128 + SIGTERM)
    dump_log(&c);
  assert_int_equal(drc, 128 + SIGTERM); /* the supervisor stopped it */
  int rc = sup_wait(&c, 30);
  if (rc != 0)
    dump_log(&c);
  assert_int_equal(rc, 0);
  json_t *a = ledger(&c);
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
  case_fini(&c);
}

/* (8b) a process of another run holding the device is never killed: the
 * supervisor alerts and waits; when it lets go, the run goes on. */
static void test_foreign_waited_for(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "foreign");
  nw_config cfg;
  small_config(&cfg);
  nw_estimate fits;
  nw_estimate_train(&cfg, 8, 12, 0, &fits);
  uint64_t cap = fits.total * 3 / 2, hold = fits.total * 4 / 5;
  int go;
  pid_t other = hold_device(c.device, cap, "another-run", hold, &go);
  char mem[64], pol[512];
  set_arg(mem, sizeof mem, "device.memory=%llu", (unsigned long long)cap);
  nw_test_write_text(c.dir, "wait.conf",
                     "[duplicate-process]\n"
                     "actions = kill-duplicate\n"
                     "wait_initial_seconds = 1.5\n"
                     "wait_max_seconds = 5\n",
                     pol, sizeof pol);
  const char *extra[] = {"--policy",       pol, "--set", mem, "--set",
                         "train.steps=20", NULL};
  c.sup = sup_start(&c, extra);
  json_t *a = wait_event(&c, "alert", 1, 20);
  json_t *oom = find(a, "oom", 0);
  assert_string_equal(nw_test_json_str(oom, "cause"), "duplicate-process");
  assert_int_equal(json_integer_value(
                       json_array_get(json_object_get(oom, "foreign_pids"), 0)),
                   other);
  json_decref(a);
  nw_test_sleep(0.5);
  assert_int_equal(waitpid(other, NULL, WNOHANG), 0); /* alive */
  assert_true(alive(other));
  char b = 0;
  assert_int_equal(write(go, &b, 1), 1);            /* now it lets go */
  assert_int_equal(nw_test_wait_exit(other, 5), 0); /* exited by itself */
  int rc = sup_wait(&c, 40);
  if (rc != 0)
    dump_log(&c);
  assert_int_equal(rc, 0);
  a = ledger(&c);
  assert_int_equal(count(a, "kill"), 0);
  assert_non_null(find(a, "finish", 0));
  json_decref(a);
  close(go);
  case_fini(&c);
}

/* SIGHUP reloads the policy: a malformed file is reported with FILE:LINE
 * and the old policy stays; a good one replaces it. */
static void test_sighup_reload(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "hup");
  char pol[512];
  nw_test_write_text(c.dir, "p.conf", "[unknown]\nactions = restart\n", pol,
                     sizeof pol);
  const char *extra[] = {"--policy", pol, "--set", "train.steps=1000000", NULL};
  c.sup = sup_start(&c, extra);
  int tpid;
  wait_step(&c, 1, 20, &tpid);
  nw_test_write_text(c.dir, "p.conf", "[unknown]\nactions = dance\n", pol,
                     sizeof pol);
  kill(c.sup, SIGHUP);
  json_t *a = wait_event(&c, "reload", 1, 10);
  assert_false(json_is_true(json_object_get(find(a, "reload", 0), "ok")));
  json_decref(a);
  char l2[600];
  snprintf(l2, sizeof l2, "%s:2:", pol);
  assert_true(log_has(&c, l2));
  nw_test_write_text(c.dir, "p.conf", "[unknown]\nactions = give-up\n", pol,
                     sizeof pol);
  kill(c.sup, SIGHUP);
  a = wait_event(&c, "reload", 2, 10);
  assert_true(json_is_true(json_object_get(find(a, "reload", 1), "ok")));
  json_decref(a);
  /* the new policy is in force: a crash now gives up at once */
  assert_int_equal(kill(tpid, SIGKILL), 0);
  assert_int_equal(sup_wait(&c, 20), 1);
  a = ledger(&c);
  json_t *crash = find(a, "crash", 0);
  assert_non_null(crash);
  assert_int_equal(nw_test_json_int(crash, "signal"), SIGKILL);
  assert_non_null(strstr(nw_test_json_str(crash, "evidence"), "signal"));
  assert_non_null(find(a, "give-up", 0));
  json_decref(a);
  case_fini(&c);
}

/* A foreign command: the environment contract, an OOM message on its
 * stderr (no report: cause unknown), the [unknown] chain, give-up; and a
 * command that cannot be executed is a config error. */
static void test_foreign_command(void **state) {
  (void)state;
  sup_case c;
  case_init(&c, "cmd");
  char pol[512];
  nw_test_write_text(c.dir, "p.conf",
                     "[unknown]\nactions = restart\n[limits]\n"
                     "max_recoveries = 1\nbackoff_initial_seconds = 0\n"
                     "min_start_interval_seconds = 0\n",
                     pol, sizeof pol);
  const char *extra[] = {
      "--policy",
      pol,
      "--",
      "/bin/sh",
      "-c",
      "echo \"$NIGHTWATCH_MICRO_BATCH $NIGHTWATCH_ACCUMULATION "
      "${NOTIFY_SOCKET:-none} $NIGHTWATCH_RUN_ID\" >> "
      "\"$NIGHTWATCH_RUN_DIR/env.txt\"; "
      "echo 'RuntimeError: CUDA out of memory. Tried to allocate 2 GiB' >&2; "
      "exit 1",
      NULL};
  setenv("NOTIFY_SOCKET", "/run/should-not-pass", 1);
  c.sup = sup_start(&c, extra);
  unsetenv("NOTIFY_SOCKET");
  int rc = sup_wait(&c, 20);
  if (rc != 1)
    dump_log(&c);
  assert_int_equal(rc, 1);
  json_t *a = ledger(&c);
  assert_int_equal(count(a, "oom"), 2);
  assert_string_equal(nw_test_json_str(find(a, "oom", 0), "cause"), "unknown");
  assert_int_equal(count(a, "recovery"), 1);
  assert_non_null(find(a, "give-up", 0));
  const char *rid = nw_test_json_str(find(a, "start", 0), "run_id");
  char want[160], p[512];
  snprintf(want, sizeof want, "8 4 none %s\n8 4 none %s\n", rid, rid);
  snprintf(p, sizeof p, "%s/env.txt", c.dir);
  char *env = read_file(p);
  assert_string_equal(env, want);
  free(env);
  json_decref(a);
  assert_true(log_has(&c, "CUDA out of memory")); /* teed to our stderr */

  const char *bad[] = {"--", "/nonexistent/trainer", NULL};
  c.sup = sup_start(&c, bad);
  assert_int_equal(sup_wait(&c, 10), 78);
  a = ledger(&c);
  assert_non_null(find(a, "config-error", 0));
  json_decref(a);
  case_fini(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation_recovery),
      cmocka_unit_test(test_lock_and_sigterm),
      cmocka_unit_test(test_second_sigterm_kills),
      cmocka_unit_test(test_sigkill_leaves_no_trainer),
      cmocka_unit_test(test_hang),
      cmocka_unit_test(test_bad_policy),
      cmocka_unit_test(test_give_up),
      cmocka_unit_test(test_duplicate_killed),
      cmocka_unit_test(test_foreign_waited_for),
      cmocka_unit_test(test_sighup_reload),
      cmocka_unit_test(test_foreign_command),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
