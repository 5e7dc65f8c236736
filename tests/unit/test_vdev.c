/* test_vdev.c — the virtual device: capacity, two processes contending for
 * it, reclaim of killed processes (also while they hold the lock), refusal
 * of foreign and corrupt segments, names, listing without registering. */
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
#include <unistd.h>

#include <cmocka.h>

#include "base/error.h"
#include "device/vdev.h"
#include "testutil.h"

/* A device name unique to this test and process. */
static void dev_name(char *buf, size_t len, const char *tag) {
  snprintf(buf, len, "t-%s-%d", tag, (int)getpid());
}

static nw_vdev *open_ok(const char *name, uint64_t capacity,
                        const char *run_id) {
  char err[512] = "";
  nw_vdev *v = NULL;
  int rc = nw_vdev_open(&v, name, capacity, run_id, err, sizeof err);
  if (rc < 0)
    fail_msg("nw_vdev_open(%s): %s: %s", name, nw_strerror(rc), err);
  return v;
}

static uint64_t used_of(nw_vdev *v) {
  uint64_t used = 0, cap = 0;
  assert_int_equal(nw_vdev_usage(v, &used, &cap), 0);
  return used;
}

/* A helper process on the device: opens it as run_id, reserves bytes,
 * optionally takes the device lock and keeps it, reports 'r' on ready_fd
 * (or 'e' on an error) and waits until go_fd gives a byte or closes. It
 * never returns; its exit status is 0 when all went as planned. */
static void child_main(const char *name, const char *run_id, uint64_t bytes,
                       int hold_lock, int ready_fd, int go_fd) {
  char err[512];
  nw_vdev *v = NULL;
  int ok = nw_vdev_open(&v, name, 0, run_id, err, sizeof err) == 0 &&
           nw_vdev_reserve(v, bytes) == 0 &&
           (!hold_lock || nw__vdev_test_lock(v) == 0);
  char c = ok ? 'r' : 'e';
  if (write(ready_fd, &c, 1) != 1)
    _exit(2);
  if (!ok)
    _exit(1);
  ssize_t got;
  do
    got = read(go_fd, &c, 1);
  while (got < 0 && errno == EINTR);
  nw_vdev_close(v);
  _exit(0);
}

typedef struct {
  pid_t pid;
  int go_fd; /* write end: a byte (or closing it) lets the child finish */
} child;

static child spawn_child(const char *name, const char *run_id, uint64_t bytes,
                         int hold_lock) {
  int ready[2], go[2];
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(go), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(ready[0]);
    close(go[1]);
    child_main(name, run_id, bytes, hold_lock, ready[1], go[0]);
  }
  close(ready[1]);
  close(go[0]);
  char c = 0;
  assert_int_equal(read(ready[0], &c, 1), 1);
  close(ready[0]);
  assert_int_equal(c, 'r');
  return (child){pid, go[1]};
}

/* Lets the child close its handle and exit; returns its exit status. */
static int finish_child(child ch) {
  char c = 'g';
  assert_int_equal(write(ch.go_fd, &c, 1), 1);
  close(ch.go_fd);
  int status;
  assert_int_equal(waitpid(ch.pid, &status, 0), ch.pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Kills the child and waits until it is a zombie, without reaping it, so
 * that the device has to tell a zombie from a live process. */
static void kill_child_leave_zombie(child ch) {
  assert_int_equal(kill(ch.pid, SIGKILL), 0);
  siginfo_t info;
  memset(&info, 0, sizeof info);
  assert_int_equal(waitid(P_PID, ch.pid, &info, WEXITED | WNOWAIT), 0);
  assert_int_equal(info.si_code, CLD_KILLED);
}

static void reap_child(child ch) {
  close(ch.go_fd);
  assert_int_equal(waitpid(ch.pid, NULL, 0), ch.pid);
}

static void test_reserve_within_capacity(void **state) {
  (void)state;
  char name[64];
  dev_name(name, sizeof name, "cap");
  nw_vdev *v = open_ok(name, 1000, "run-a");
  assert_int_equal(nw_vdev_reserve(v, 600), 0);
  assert_int_equal(used_of(v), 600);
  assert_int_equal(nw_vdev_reserve(v, 401), NW_ENOMEM);
  assert_int_equal(used_of(v), 600);
  assert_int_equal(nw_vdev_reserve(v, UINT64_MAX), NW_ENOMEM);
  assert_int_equal(used_of(v), 600);
  assert_int_equal(nw_vdev_reserve(v, 400), 0);
  assert_int_equal(used_of(v), 1000);
  assert_int_equal(nw_vdev_reserve(v, 1), NW_ENOMEM);
  nw_vdev_release(v, 700);
  assert_int_equal(used_of(v), 300);
  nw_vdev_release(v, 5000); /* clamps at what the slot holds */
  assert_int_equal(used_of(v), 0);
  uint64_t used, cap;
  assert_int_equal(nw_vdev_usage(v, &used, &cap), 0);
  assert_int_equal(cap, 1000);
  nw_vdev_close(v);
  assert_int_equal(nw_vdev_unlink(name), 0);
}

static void test_two_processes(void **state) {
  (void)state;
  char name[64];
  dev_name(name, sizeof name, "two");
  nw_vdev *v = open_ok(name, 1000, "run-parent");
  assert_int_equal(nw_vdev_reserve(v, 300), 0);
  child ch = spawn_child(name, "run-child", 600, 0);

  assert_int_equal(used_of(v), 900);
  assert_int_equal(nw_vdev_reserve(v, 200), NW_ENOMEM);
  assert_int_equal(used_of(v), 900);
  assert_int_equal(nw_vdev_reserve(v, 100), 0);

  nw_vdev_proc procs[8];
  int n = 0;
  assert_int_equal(nw_vdev_list(v, procs, 8, &n), 0);
  assert_int_equal(n, 2);
  int seen_parent = 0, seen_child = 0;
  for (int i = 0; i < n; i++) {
    assert_true(procs[i].start_time > 0);
    assert_int_equal(procs[i].uid, getuid());
    if (procs[i].pid == getpid()) {
      seen_parent = 1;
      assert_string_equal(procs[i].run_id, "run-parent");
      assert_int_equal(procs[i].bytes, 400);
      assert_int_equal(procs[i].self, 1);
    } else {
      seen_child = 1;
      assert_int_equal(procs[i].pid, ch.pid);
      assert_string_equal(procs[i].run_id, "run-child");
      assert_int_equal(procs[i].bytes, 600);
      assert_int_equal(procs[i].self, 0);
    }
  }
  assert_true(seen_parent && seen_child);

  /* A list with too little room still counts every process. */
  assert_int_equal(nw_vdev_list(v, procs, 1, &n), 0);
  assert_int_equal(n, 2);

  /* A supervisor's view, without registering. */
  char err[512];
  uint64_t cap = 0;
  assert_int_equal(
      nw_vdev_list_by_name(name, procs, 8, &n, &cap, err, sizeof err), 0);
  assert_int_equal(n, 2);
  assert_int_equal(cap, 1000);

  /* The child closes: its bytes come back. */
  assert_int_equal(finish_child(ch), 0);
  assert_int_equal(used_of(v), 400);
  assert_int_equal(nw_vdev_reserve(v, 600), 0);
  assert_int_equal(nw_vdev_list(v, procs, 8, &n), 0);
  assert_int_equal(n, 1);
  nw_vdev_close(v);
  assert_int_equal(
      nw_vdev_list_by_name(name, procs, 8, &n, &cap, err, sizeof err), 0);
  assert_int_equal(n, 0); /* the device stays, empty */
  assert_int_equal(nw_vdev_unlink(name), 0);
}

static void test_killed_child_reclaimed(void **state) {
  (void)state;
  char name[64];
  dev_name(name, sizeof name, "kill");
  nw_vdev *v = open_ok(name, 1000, "run-parent");
  child ch = spawn_child(name, "run-doomed", 700, 0);
  assert_int_equal(used_of(v), 700);
  assert_int_equal(nw_vdev_reserve(v, 400), NW_ENOMEM);
  kill_child_leave_zombie(ch);
  assert_int_equal(used_of(v), 0); /* a zombie holds no memory */
  reap_child(ch);
  assert_int_equal(nw_vdev_reserve(v, 1000), 0);
  nw_vdev_proc procs[8];
  int n = 0;
  assert_int_equal(nw_vdev_list(v, procs, 8, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(procs[0].pid, getpid());
  nw_vdev_close(v);
  assert_int_equal(nw_vdev_unlink(name), 0);
}

static void test_killed_while_holding_lock(void **state) {
  (void)state;
  char name[64];
  dev_name(name, sizeof name, "lock");
  nw_vdev *v = open_ok(name, 1000, "run-parent");
  child ch = spawn_child(name, "run-locked", 500, 1);
  kill_child_leave_zombie(ch);
  reap_child(ch);
  /* The robust mutex hands the lock on (EOWNERDEAD) instead of hanging;
   * a hang here is cut short by the alarm. */
  alarm(20);
  assert_int_equal(nw_vdev_reserve(v, 1000), 0);
  alarm(0);
  assert_int_equal(used_of(v), 1000);
  nw_vdev_proc procs[8];
  int n = 0;
  assert_int_equal(nw_vdev_list(v, procs, 8, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(procs[0].pid, getpid());
  nw_vdev_close(v);

  /* The device stays usable by a new process. */
  ch = spawn_child(name, "run-after", 1000, 0);
  assert_int_equal(finish_child(ch), 0);
  assert_int_equal(nw_vdev_unlink(name), 0);
}

static void test_forked_handle(void **state) {
  (void)state;
  char name[64];
  dev_name(name, sizeof name, "fork");
  nw_vdev *v = open_ok(name, 1000, "run-parent");
  assert_int_equal(nw_vdev_reserve(v, 100), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The registration belongs to the parent's pid. */
    uint64_t used;
    int n;
    int ok = nw_vdev_reserve(v, 1) == NW_EINTERNAL &&
             nw_vdev_usage(v, &used, NULL) == NW_EINTERNAL &&
             nw_vdev_list(v, NULL, 0, &n) == NW_EINTERNAL;
    nw_vdev_release(v, 100); /* does nothing */
    nw_vdev_close(v);        /* only unmaps */
    _exit(ok ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(used_of(v), 100);
  nw_vdev_proc procs[8];
  int n = 0;
  assert_int_equal(nw_vdev_list(v, procs, 8, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(procs[0].pid, getpid());
  nw_vdev_close(v);
  assert_int_equal(nw_vdev_unlink(name), 0);
}

static void write_shm_file(const char *path, const void *bytes, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, bytes, len), (ssize_t)len);
  close(fd);
}

static void expect_refused(const char *name, const char *path,
                           const char *why) {
  char err[512] = "";
  nw_vdev *v = NULL;
  assert_int_equal(nw_vdev_open(&v, name, 1000, "run-x", err, sizeof err),
                   NW_EDATA);
  assert_null(v);
  if (!strstr(err, path) || !strstr(err, why) || !strstr(err, "rm "))
    fail_msg("message '%s' should name %s, say '%s' and how to remove it", err,
             path, why);
  nw_vdev_proc procs[4];
  int n;
  err[0] = '\0';
  assert_int_equal(
      nw_vdev_list_by_name(name, procs, 4, &n, NULL, err, sizeof err),
      NW_EDATA);
  assert_non_null(strstr(err, path));
}

static void test_foreign_segment(void **state) {
  (void)state;
  char name[64], path[128];
  dev_name(name, sizeof name, "foreign");
  snprintf(path, sizeof path, "/dev/shm/nightwatch-vdev-%s", name);
  unsigned char junk[4096];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (unsigned char)(0xa5 ^ (i * 131));
  write_shm_file(path, junk, sizeof junk);
  expect_refused(name, path, "bad magic");
  write_shm_file(path, junk, 3);
  expect_refused(name, path, "too small");
  /* Empty: a creator that died before its ftruncate. Waits ~2 s. */
  write_shm_file(path, junk, 0);
  expect_refused(name, path, "never initialised");
  assert_int_equal(nw_vdev_unlink(name), 0);
}

/* Overwrites one header field of a real device; offsets as in
 * docs/virtual-device.md. */
static void poke(const char *path, off_t off, const void *val, size_t len) {
  int fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, val, len, off), (ssize_t)len);
  close(fd);
}

static void test_corrupt_header(void **state) {
  (void)state;
  char name[64], path[128];
  dev_name(name, sizeof name, "corrupt");
  snprintf(path, sizeof path, "/dev/shm/nightwatch-vdev-%s", name);
  struct {
    off_t off;
    uint64_t val;
    size_t len;
    const char *why;
  } cases[] = {
      {8, 99, 4, "layout version 99"},
      {12, 100000, 4, "100000 slots"},
      {16, 12, 8, "header says 12"},
      {24, 0, 8, "capacity 0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    nw_vdev *v = open_ok(name, 1000, "run-x");
    nw_vdev_close(v);
    poke(path, cases[i].off, &cases[i].val, cases[i].len);
    expect_refused(name, path, cases[i].why);
    assert_int_equal(nw_vdev_unlink(name), 0);
  }
  /* A segment of another size (as another build's layout would be). */
  nw_vdev *v = open_ok(name, 1000, "run-x");
  nw_vdev_close(v);
  assert_int_equal(truncate(path, 100000), 0);
  expect_refused(name, path, "size 100000 bytes");
  assert_int_equal(nw_vdev_unlink(name), 0);
}

static void test_capacity_mismatch(void **state) {
  (void)state;
  char name[64], err[512] = "";
  dev_name(name, sizeof name, "mismatch");
  nw_vdev *v = open_ok(name, 1000, "run-a");
  nw_vdev *w = NULL;
  assert_int_equal(nw_vdev_open(&w, name, 2000, "run-b", err, sizeof err),
                   NW_ECONFIG);
  assert_null(w);
  if (!strstr(err, "1000") || !strstr(err, "2000") || !strstr(err, name))
    fail_msg("message '%s' should name the device and both capacities", err);
  /* capacity 0 accepts the existing one */
  w = open_ok(name, 0, "run-b");
  uint64_t used, cap;
  assert_int_equal(nw_vdev_usage(w, &used, &cap), 0);
  assert_int_equal(cap, 1000);
  nw_vdev_close(w);
  nw_vdev_close(v);
  assert_int_equal(nw_vdev_unlink(name), 0);

  /* ... but cannot create a device. */
  assert_int_equal(nw_vdev_open(&w, name, 0, "run-b", err, sizeof err),
                   NW_ECONFIG);
  assert_non_null(strstr(err, name));
  assert_int_equal(nw_vdev_unlink(name), NW_ENOTFOUND);
}

static void test_bad_names(void **state) {
  (void)state;
  char long_name[NW_VDEV_NAME_MAX + 2];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  const char *bad[] = {"", "a/b", "../x", "sp ace", "t\xc3\xa9", long_name};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[512] = "";
    nw_vdev *v = NULL;
    assert_int_equal(nw_vdev_open(&v, bad[i], 1000, "r", err, sizeof err),
                     NW_ECONFIG);
    assert_null(v);
    assert_non_null(strstr(err, "virtual device name"));
    if (bad[i][0] && strlen(bad[i]) < 40)
      assert_non_null(strstr(err, bad[i]));
    int n;
    assert_int_equal(
        nw_vdev_list_by_name(bad[i], NULL, 0, &n, NULL, err, sizeof err),
        NW_ECONFIG);
    assert_int_equal(nw_vdev_unlink(bad[i]), NW_ECONFIG);
  }
  /* 64 characters is the longest name. */
  char name[NW_VDEV_NAME_MAX + 1];
  snprintf(name, sizeof name, "t-max-%d-", (int)getpid());
  memset(name + strlen(name), 'x', NW_VDEV_NAME_MAX - strlen(name));
  name[NW_VDEV_NAME_MAX] = '\0';
  nw_vdev *v = open_ok(name, 1000, "r");
  nw_vdev_close(v);
  assert_int_equal(nw_vdev_unlink(name), 0);

  char err[512], run_id[NW_VDEV_RUN_ID_MAX + 2];
  memset(run_id, 'r', sizeof run_id - 1);
  run_id[sizeof run_id - 1] = '\0';
  dev_name(name, sizeof name, "runid");
  assert_int_equal(nw_vdev_open(&v, name, 1000, run_id, err, sizeof err),
                   NW_ECONFIG);
  assert_int_equal(nw_vdev_unlink(name), NW_ENOTFOUND);
}

static void test_missing_device(void **state) {
  (void)state;
  char name[64], err[512] = "";
  dev_name(name, sizeof name, "missing");
  nw_vdev_proc procs[4];
  int n = -1;
  assert_int_equal(
      nw_vdev_list_by_name(name, procs, 4, &n, NULL, err, sizeof err),
      NW_ENOTFOUND);
  assert_non_null(strstr(err, name));
  assert_int_equal(nw_vdev_print(stdout, name, err, sizeof err), NW_ENOTFOUND);
  assert_int_equal(nw_vdev_unlink(name), NW_ENOTFOUND);
}

static void test_slots_full(void **state) {
  (void)state;
  char name[64], err[512] = "";
  dev_name(name, sizeof name, "full");
  nw_vdev *v[NW_VDEV_SLOTS];
  for (int i = 0; i < NW_VDEV_SLOTS; i++)
    v[i] = open_ok(name, 1000, "r");
  nw_vdev *extra = NULL;
  assert_int_equal(nw_vdev_open(&extra, name, 1000, "r", err, sizeof err),
                   NW_EBUSY);
  assert_null(extra);
  nw_vdev_close(v[7]);
  extra = open_ok(name, 1000, "r");
  v[7] = extra;
  for (int i = 0; i < NW_VDEV_SLOTS; i++)
    nw_vdev_close(v[i]);
  assert_int_equal(nw_vdev_unlink(name), 0);
}

/* Processes reserving and releasing at once never push usage past the
 * capacity. */
static void test_contention(void **state) {
  (void)state;
  char name[64];
  dev_name(name, sizeof name, "contend");
  nw_vdev *v = open_ok(name, 250, "run-parent");
  enum { NCHILD = 4, ROUNDS = 2000 };
  pid_t pids[NCHILD];
  for (int c = 0; c < NCHILD; c++) {
    pids[c] = fork();
    assert_true(pids[c] >= 0);
    if (pids[c] == 0) {
      char err[512];
      nw_vdev *w = NULL;
      if (nw_vdev_open(&w, name, 0, "run-child", err, sizeof err) != 0)
        _exit(1);
      int granted = 0;
      for (int r = 0; r < ROUNDS; r++) {
        int rc = nw_vdev_reserve(w, 100);
        if (rc != 0 && rc != NW_ENOMEM)
          _exit(2);
        uint64_t used, cap;
        if (nw_vdev_usage(w, &used, &cap) != 0 || used > cap)
          _exit(3);
        if (rc == 0) {
          granted++;
          nw_vdev_release(w, 100);
        }
      }
      nw_vdev_close(w);
      _exit(granted > 0 ? 0 : 4);
    }
  }
  for (int c = 0; c < NCHILD; c++) {
    int status;
    assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  assert_int_equal(used_of(v), 0);
  nw_vdev_close(v);
  assert_int_equal(nw_vdev_unlink(name), 0);
}

static void test_print(void **state) {
  (void)state;
  char name[64], err[512] = "";
  dev_name(name, sizeof name, "print");
  nw_vdev *v = open_ok(name, 64ull << 20, "run-printed");
  assert_int_equal(nw_vdev_reserve(v, 3ull << 20), 0);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  assert_int_equal(nw_vdev_print(f, name, err, sizeof err), 0);
  fclose(f);
  char pid[32];
  snprintf(pid, sizeof pid, " %d ", (int)getpid());
  assert_non_null(strstr(buf, name));
  assert_non_null(strstr(buf, pid));
  assert_non_null(strstr(buf, "run-printed"));
  assert_non_null(strstr(buf, "3.0 MiB"));
  assert_non_null(strstr(buf, "64.0 MiB"));
  free(buf);
  nw_vdev_close(v);
  assert_int_equal(nw_vdev_unlink(name), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reserve_within_capacity),
      cmocka_unit_test(test_two_processes),
      cmocka_unit_test(test_killed_child_reclaimed),
      cmocka_unit_test(test_killed_while_holding_lock),
      cmocka_unit_test(test_forked_handle),
      cmocka_unit_test(test_foreign_segment),
      cmocka_unit_test(test_corrupt_header),
      cmocka_unit_test(test_capacity_mismatch),
      cmocka_unit_test(test_bad_names),
      cmocka_unit_test(test_missing_device),
      cmocka_unit_test(test_slots_full),
      cmocka_unit_test(test_contention),
      cmocka_unit_test(test_print),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
