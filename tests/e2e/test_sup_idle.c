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
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/config.h"
#include "device/vdev.h"
#include "e2e/fixture.h"
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
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
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

/* A case of that model on that device under run id run_id, its policy
 * waiting GRACE_S for a duplicate to stop, to 4 steps. */
static nw_case *idle_case(uint64_t cap, const char *run_id) {
  nw_case *c = nw_case_new("idle");
  char grace[128];
  /* the default limits: a 1 s backoff, long over when the grace ends */
  set_arg(grace, sizeof grace,
          "[duplicate-process]\nactions = kill-duplicate\n"
          "grace_seconds = %d\n",
          GRACE_S);
  nw_case_policy(c, grace);
  nw_case_set(c, "model.n_layer=2");
  nw_case_set(c, "model.n_embd=64");
  nw_case_set(c, "eval.every=0");
  nw_case_set(c, "data.long_fraction=0");
  nw_case_set(c, "device.memory=%llu", (unsigned long long)cap);
  nw_case_set(c, "run.id=%s", run_id);
  nw_case_set(c, "train.steps=4");
  return c;
}

static void test_idle_through_kill_grace(void **state) {
  (void)state;
  char run_id[64];
  set_arg(run_id, sizeof run_id, "idle-%d", (int)getpid());
  uint64_t dup_bytes, cap = device_for_one(&dup_bytes);
  nw_case *c = idle_case(cap, run_id);
  int term_r;
  pid_t dup = stubborn_duplicate(c->device, cap, run_id, dup_bytes, &term_r);
  int sup = nw_case_start(c, NULL);

  /* the grace begins with the duplicate's SIGTERM */
  struct pollfd p = {.fd = term_r, .events = POLLIN};
  int got = poll(&p, 1, 60000);
  double cpu0 = cpu_seconds(sup), t0 = nw_test_now();
  if (got != 1) {
    kill(dup, SIGKILL);
    waitpid(dup, NULL, 0);
    nw_case_dump(c);
    fail_msg("the duplicate never got its SIGTERM");
  }
  /* and the backoff ends with the resumed trainer's first step */
  json_t *a = nw_case_wait_event(c, "resumed", 1, 60);
  double cpu1 = cpu_seconds(sup), t1 = nw_test_now();
  int drc = nw_test_wait_or_kill(dup, 5);
  int rc = nw_case_wait(c, 60);
  printf("supervisor CPU from the duplicate's SIGTERM to the resumed "
         "step: %.3f s over %.1f s (limit %.1f s)\n",
         cpu1 - cpu0, t1 - t0, CPU_LIMIT_S);
  if (rc != 0 || drc != 128 + SIGKILL)
    nw_case_dump(c);
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
  nw_case_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_idle_through_kill_grace, nw_case_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
