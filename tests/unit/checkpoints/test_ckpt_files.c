/* test_ckpt_files.c — checkpoints as files: a write that fails (the fault
 * switch, a real file size limit) leaves no temporary and the older
 * checkpoint intact; the directory's listing takes only checkpoint names;
 * retention never deletes the newest good one before its successor is
 * durable, nor a live writer's temporary. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "base/config.h"
#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/crc32c.h"
#include "device/backend.h"
#include "device/mem.h"
#include "testutil.h"
#include "trainer/model/model.h"
#include "unit/checkpoints/ckpt_fixture.h"

static void test_fault_switch(void **state) {
  (void)state;
  char run[NW_PATH_MAX], old[NW_PATH_MAX], path[NW_PATH_MAX], err[512];
  nw_test_tmpdir(run, sizeof run, "ckpt-fault");
  nw_ckfx_write_step(run, 100, old, sizeof old);
  size_t size;
  char *orig = nw_ckfx_slurp(old, &size);
  nw_ckpt_state st;
  nw_ckfx_state(&st, 200, 1);
  nw_ckpt_path(run, 200, path, sizeof path);
  setenv("NIGHTWATCH_TEST_CKPT_FAIL", "write", 1);
  int rc = nw_ckpt_write(path, &st, err, sizeof err);
  int rc_over = nw_ckpt_write(old, &st, err, sizeof err); /* over the old */
  unsetenv("NIGHTWATCH_TEST_CKPT_FAIL");
  assert_int_equal(rc, NW_EIO);
  assert_int_equal(rc_over, NW_EIO);
  assert_non_null(strstr(err, old));
  assert_non_null(strstr(err, "test fault"));
  assert_false(nw_ckfx_exists(path));
  assert_int_equal(nw_ckfx_count_tmp(run), 0);
  size_t n;
  char *now = nw_ckfx_slurp(old, &n);
  assert_int_equal(n, size);
  assert_memory_equal(now, orig, size);
  free(now);
  assert_int_equal(nw_ckpt_verify(old, err, sizeof err), 0);
  /* Off again: the write goes through. */
  assert_int_equal(nw_ckpt_write(path, &st, err, sizeof err), 0);
  assert_int_equal(nw_ckpt_verify(path, err, sizeof err), 0);
  free(orig);
  nw_ckfx_rm_rf(run);
}

/* A real I/O failure midway: a file size limit (EFBIG) in a child. */
static void test_write_fails_for_real(void **state) {
  (void)state;
  char run[NW_PATH_MAX], old[NW_PATH_MAX], path[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-efbig");
  nw_ckfx_write_step(run, 100, old, sizeof old);
  nw_ckpt_path(run, 200, path, sizeof path);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {64 * 1024, 64 * 1024};
    setrlimit(RLIMIT_FSIZE, &rl);
    nw_ckpt_state st;
    nw_ckfx_state(&st, 200, 1);
    char err[512] = "";
    int rc = nw_ckpt_write(path, &st, err, sizeof err);
    dprintf(pfd[1], "%d %s", rc, err);
    _exit(0);
  }
  close(pfd[1]);
  char msg[1024] = "";
  ssize_t got = read(pfd[0], msg, sizeof msg - 1);
  close(pfd[0]);
  int status;
  waitpid(pid, &status, 0);
  assert_true(got > 0);
  msg[got] = 0;
  char want[32];
  snprintf(want, sizeof want, "%d ", NW_EIO);
  if (strncmp(msg, want, strlen(want)) != 0 || !strstr(msg, path) ||
      !strstr(msg, "File too large"))
    fail_msg("child: %s", msg);
  assert_false(nw_ckfx_exists(path));
  assert_int_equal(nw_ckfx_count_tmp(run), 0);
  char err[512];
  assert_int_equal(nw_ckpt_verify(old, err, sizeof err), 0);
  nw_ckfx_rm_rf(run);
}

static void test_list(void **state) {
  (void)state;
  char run[NW_PATH_MAX], dir[NW_PATH_MAX + 16], p[2 * NW_PATH_MAX];
  char err[512];
  nw_test_tmpdir(run, sizeof run, "ckpt-list");
  static char paths[8][NW_PATH_MAX];
  int n = -1;
  assert_int_equal(nw_ckpt_list(run, paths, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 0);
  char found[NW_PATH_MAX];
  assert_int_equal(
      nw_ckpt_find_latest(run, 5, NULL, found, sizeof found, err, sizeof err),
      NW_ENOTFOUND);
  snprintf(dir, sizeof dir, "%s/checkpoints", run);
  assert_int_equal(mkdir(dir, 0755), 0);
  const char *names[] = {"ckpt-0000000010.h5",  "ckpt-0000000002.h5",
                         "ckpt-0000000100.h5",  "ckpt-123.h5",
                         "ckpt-00000000010.h5", "ckpt-0000000010.h5.tmp.5",
                         "ckpt-000000001a.h5",  "xckpt-0000000010.h5",
                         "ckpt-0000000010.h5x", "ckpt-0000000010.H5"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    nw_ckfx_spill(p, "x", 1);
  }
  assert_int_equal(nw_ckpt_list(run, paths, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 3);
  int64_t steps[] = {100, 10, 2};
  for (int i = 0; i < 3; i++) {
    nw_ckpt_path(run, steps[i], p, sizeof p);
    assert_string_equal(paths[i], p);
  }
  assert_int_equal(nw_ckpt_list(run, paths, 2, &n, err, sizeof err), 0);
  assert_int_equal(n, 2);
  nw_ckpt_path(run, 10, p, sizeof p);
  assert_string_equal(paths[1], p);
  /* None of them is a checkpoint: all three are moved aside, none is
   * deleted, and the search says so (not "no checkpoints"). */
  nw_ckfx_skips s = {0};
  assert_int_equal(
      nw_ckpt_find_latest(run, 5, &(nw_ckpt_search){nw_ckfx_on_skip, NULL, &s},
                          found, sizeof found, err, sizeof err),
      NW_EDAMAGED);
  assert_int_equal(s.n, 3);
  assert_non_null(strstr(err, "none of 3"));
  assert_int_equal(nw_ckpt_list(run, paths, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 0);
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s/damaged/%s", dir, strrchr(s.path[i], '/') + 1);
    assert_true(nw_ckfx_exists(p));
  }
  nw_ckpt_path(run, 7, p, sizeof p);
  assert_string_equal(p + strlen(run), "/checkpoints/ckpt-0000000007.h5");
  nw_ckfx_rm_rf(run);
}

static void test_retain(void **state) {
  (void)state;
  char run[NW_PATH_MAX], p[NW_PATH_MAX], err[512];
  static char paths[16][NW_PATH_MAX];
  int n;
  nw_test_tmpdir(run, sizeof run, "ckpt-keep");
  for (int s = 10; s <= 50; s += 10)
    nw_ckfx_write_step(run, s, p, sizeof p);
  /* Keep N >= count: nothing goes. */
  assert_int_equal(nw_ckpt_retain(run, 5, p), 0);
  assert_int_equal(nw_ckpt_retain(run, 2, p), 3);
  assert_int_equal(nw_ckpt_list(run, paths, 16, &n, err, sizeof err), 0);
  assert_int_equal(n, 2);
  nw_ckpt_path(run, 50, p, sizeof p);
  assert_string_equal(paths[0], p);
  nw_ckpt_path(run, 40, p, sizeof p);
  assert_string_equal(paths[1], p);

  /* Two damaged successors: the newest good one (50) survives keep=1, and
   * so does everything newer than it; 40 goes. */
  char c60[NW_PATH_MAX], c70[NW_PATH_MAX];
  haddr_t data, header;
  nw_ckfx_write_step(run, 60, c60, sizeof c60);
  nw_ckfx_write_step(run, 70, c70, sizeof c70);
  nw_ckfx_locate(c60, "model/transformer.wte.weight", &data, &header);
  nw_ckfx_flip(c60, (size_t)data + 8);
  size_t size;
  char *b = nw_ckfx_slurp(c70, &size);
  nw_ckfx_spill(c70, b, size / 2);
  free(b);
  assert_int_equal(nw_ckpt_retain(run, 1, c70), 1);
  assert_int_equal(nw_ckpt_list(run, paths, 16, &n, err, sizeof err), 0);
  assert_int_equal(n, 3);
  nw_ckpt_path(run, 50, p, sizeof p);
  assert_string_equal(paths[2], p);
  assert_int_equal(nw_ckpt_retain(run, 1, c70), 0);

  /* Its successor durable and good: now 50 may go, the damaged ones too. */
  nw_ckfx_write_step(run, 80, p, sizeof p);
  assert_int_equal(nw_ckpt_retain(run, 1, p), 3);
  assert_int_equal(nw_ckpt_list(run, paths, 16, &n, err, sizeof err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(paths[0], p);

  /* durable_newest is never deleted, even where keep-N would. */
  char c90[NW_PATH_MAX];
  nw_ckfx_write_step(run, 90, c90, sizeof c90);
  assert_int_equal(nw_ckpt_retain(run, 1, p), 0); /* 80 named durable */
  assert_true(nw_ckfx_exists(p));

  /* Temporaries: a dead writer's go, a live one's (ours, pid 1) stay. */
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  waitpid(dead, NULL, 0);
  char tdead[NW_PATH_MAX + 32], tlive[NW_PATH_MAX + 32],
      tinit[NW_PATH_MAX + 32];
  snprintf(tdead, sizeof tdead, "%s.tmp.%d", c90, (int)dead);
  snprintf(tlive, sizeof tlive, "%s.tmp.%d", c90, (int)getpid());
  snprintf(tinit, sizeof tinit, "%s.tmp.1", c90);
  nw_ckfx_spill(tdead, "x", 1);
  nw_ckfx_spill(tlive, "x", 1);
  nw_ckfx_spill(tinit, "x", 1);
  assert_int_equal(nw_ckpt_retain(run, 1, c90), 2); /* 80 and the dead tmp */
  assert_false(nw_ckfx_exists(tdead));
  assert_true(nw_ckfx_exists(tlive));
  assert_true(nw_ckfx_exists(tinit));
  assert_true(nw_ckfx_exists(c90));
  unlink(tlive);
  unlink(tinit);
  nw_ckfx_rm_rf(run);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fault_switch),
      cmocka_unit_test(test_write_fails_for_real),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_retain),
  };
  return cmocka_run_group_tests(tests, nw_ckfx_setup, nw_ckfx_teardown);
}
