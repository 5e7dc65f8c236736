/* test_sup_idle.c — the supervisor idles while it waits. A duplicate of
 * the run (same uid, same run id) holds the CPU virtual device and ignores
 * SIGTERM, so the supervisor's recovery waits out the whole kill grace
 * (8 s), sends SIGKILL, waits for the duplicate to go and for the backoff,
 * and restarts the trainer. Over that span (from the duplicate's SIGTERM
 * to the resumed trainer's first step) the supervisor has nothing to do but
 * wait in ppoll: its CPU time (utime + stime, /proc/PID/stat) must stay
 * under 0.1 s. A loop that wakes on a deadline it does not act on (the
 * backoff's restart time, passed while a kill is pending) spins for the
 * whole grace and burns seconds of CPU. docs/supervisor.md, "The state
 * machine". */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/config.h"
#include "device/vdev.h"
#include "model/estimate.h"
#include "testutil.h"

#define GRACE_S 8
#define CPU_LIMIT_S 0.1

/* The duplicate's SIGTERM goes to the test through this pipe (the write
 * end, in the duplicate). */
static int term_w = -1;

static void on_term(int sig) {
  (void)sig;
  char b = 'T';
  ssize_t n = write(term_w, &b, 1); /* async-signal-safe; nothing else */
  (void)n;
}

/* A process of this run holding bytes on the device that takes SIGTERM and
 * goes on holding them: only SIGKILL ends it. Returns its pid once the
 * bytes are held; *term_r becomes readable when it got SIGTERM. */
static pid_t stubborn_duplicate(const char *device, uint64_t cap,
                                const char *run_id, uint64_t bytes,
                                int *term_r) {
  int ready[2], term[2];
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(term), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    close(term[0]);
    term_w = term[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    nw_vdev *v = NULL;
    char err[256], b = 0;
    if (nw_vdev_open(&v, device, cap, run_id, err, sizeof err) < 0 ||
        nw_vdev_reserve(v, bytes) < 0)
      _exit(3);
    if (write(ready[1], &b, 1) != 1)
      _exit(4);
    for (;;)
      pause();
  }
  close(ready[1]);
  close(term[1]);
  char b;
  assert_int_equal(read(ready[0], &b, 1), 1);
  close(ready[0]);
  *term_r = term[0];
  return pid;
}

/* utime + stime of pid in seconds; -1 when it cannot be read. */
static double cpu_seconds(int pid) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/stat", pid);
  char *s = nw_test_slurp(p, NULL);
  if (!s)
    return -1;
  /* fields after the command name (which may hold spaces): 3 is the
   * state, 14 utime, 15 stime */
  char *rp = strrchr(s, ')');
  unsigned long long ut = 0, st = 0;
  int ok = rp && sscanf(rp + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                        "%llu %llu",
                        &ut, &st) == 2;
  free(s);
  return ok ? (double)(ut + st) / (double)sysconf(_SC_CLK_TCK) : -1;
}

static void dump(const char *dir, const char *log) {
  char p[512];
  char *s = nw_test_slurp(log, NULL);
  fprintf(stderr, "---- supervisor log %s ----\n%s\n", log, s ? s : "");
  free(s);
  snprintf(p, sizeof p, "%s/ledger.jsonl", dir);
  s = nw_test_slurp(p, NULL);
  fprintf(stderr, "---- ledger ----\n%s\n", s ? s : "");
  free(s);
}

/* Waits until the run's ledger holds an entry of event; returns the
 * ledger, or NULL after timeout. */
static json_t *wait_event(const char *dir, const char *event, double timeout) {
  double end = nw_test_now() + timeout;
  for (;;) {
    json_t *a = nw_test_ledger_load(dir);
    if (nw_test_ledger_count(a, event) > 0)
      return a;
    json_decref(a);
    if (nw_test_now() > end)
      return NULL;
    nw_test_sleep(0.05);
  }
}

static void set_arg(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

/* The small model of the end-to-end tests on a device that holds one
 * trainer but not one beside the duplicate: its capacity, and what the
 * duplicate holds. */
static uint64_t device_for_one(uint64_t *dup_bytes) {
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model.n_layer = 2;
  cfg.model.n_embd = 64;
  cfg.eval.every = 0;
  cfg.data.long_fraction = 0;
  nw_estimate fits;
  nw_estimate_train(&cfg, 8, 12, 0, &fits);
  *dup_bytes = fits.total * 4 / 5;
  return fits.total * 3 / 2;
}

/* `nightwatch run` of that model on device with run id run_id and the
 * policy file pol, to 4 steps; its pid. */
static int start_run(const char *dir, const char *log, const char *device,
                     uint64_t cap, const char *run_id, const char *pol) {
  char mem[64], rid[80], dev[128];
  set_arg(mem, sizeof mem, "device.memory=%llu", (unsigned long long)cap);
  set_arg(rid, sizeof rid, "run.id=%s", run_id);
  set_arg(dev, sizeof dev, "device.name=%s", device);
  char *argv[] = {(char *)NW_BIN,
                  "run",
                  "--run-dir",
                  (char *)dir,
                  "--policy",
                  (char *)pol,
                  "--set",
                  "model.n_layer=2",
                  "--set",
                  "model.n_embd=64",
                  "--set",
                  "eval.every=0",
                  "--set",
                  "data.long_fraction=0",
                  "--set",
                  mem,
                  "--set",
                  rid,
                  "--set",
                  "train.steps=4",
                  "--set",
                  dev,
                  NULL};
  return nw_test_spawn_logged(argv, log);
}

static void test_idle_through_kill_grace(void **state) {
  (void)state;
  char dir[256], log[320], device[64], pol[512], run_id[64], grace[128];
  nw_test_tmpdir(dir, sizeof dir, "idle");
  snprintf(log, sizeof log, "%s.log", dir);
  snprintf(device, sizeof device, "nwidle-%d", (int)getpid());
  set_arg(run_id, sizeof run_id, "idle-%d", (int)getpid());
  /* the default limits: a 1 s backoff, long over when the grace ends */
  set_arg(grace, sizeof grace,
          "[duplicate-process]\nactions = kill-duplicate\n"
          "grace_seconds = %d\n",
          GRACE_S);
  nw_test_write_text(dir, "policy.conf", grace, pol, sizeof pol);
  uint64_t dup_bytes, cap = device_for_one(&dup_bytes);
  int term_r;
  pid_t dup = stubborn_duplicate(device, cap, run_id, dup_bytes, &term_r);
  int sup = start_run(dir, log, device, cap, run_id, pol);

  /* the grace begins with the duplicate's SIGTERM */
  struct pollfd p = {.fd = term_r, .events = POLLIN};
  int got = poll(&p, 1, 60000);
  double cpu0 = cpu_seconds(sup), t0 = nw_test_now();
  if (got != 1) {
    kill(dup, SIGKILL);
    nw_test_wait_or_kill(sup, 0);
    dump(dir, log);
    fail_msg("the duplicate never got its SIGTERM");
  }
  /* and the backoff ends with the resumed trainer's first step */
  json_t *a = wait_event(dir, "resumed", 60);
  double cpu1 = cpu_seconds(sup), t1 = nw_test_now();
  int drc = nw_test_wait_or_kill(dup, 5);
  if (!a) {
    nw_test_wait_or_kill(sup, 0);
    dump(dir, log);
    fail_msg("no resumed trainer");
  }
  int rc = nw_test_wait_or_kill(sup, 60);
  printf("supervisor CPU from the duplicate's SIGTERM to the resumed "
         "step: %.3f s over %.1f s (limit %.1f s)\n",
         cpu1 - cpu0, t1 - t0, CPU_LIMIT_S);
  if (rc != 0 || drc != 128 + SIGKILL)
    dump(dir, log);
  assert_true(cpu0 >= 0 && cpu1 >= 0);
  assert_true(cpu1 - cpu0 < CPU_LIMIT_S);
  assert_int_equal(drc, 128 + SIGKILL); /* it sat out the whole grace */
  assert_int_equal(rc, 0);
  json_t *k = nw_test_ledger_find(a, "kill", 0);
  assert_non_null(k);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(k, "pids"), 0)), dup);
  assert_true(json_number_value(json_object_get(k, "grace_s")) == GRACE_S);
  json_decref(a);
  close(term_r);
  nw_vdev_unlink(device);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_idle_through_kill_grace),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
