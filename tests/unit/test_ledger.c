/* test_ledger.c — the supervisor's building blocks in-process: the ledger
 * (one fsynced JSON line per entry, read back in order, bad lines skipped),
 * the run lock (a second open file description is refused and told the
 * holder's pid; released on close), the child's environment and spawn (exec
 * failure through the CLOEXEC pipe, the status pipe across exec). */
#define _GNU_SOURCE
#include <setjmp.h>
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

#include "base/error.h"
#include "base/runlock.h"
#include "protocol/ledger.h"
#include "supervisor/sup_child.h"
#include "testutil.h"

typedef struct {
  int n;
  char events[8][32];
} seen;

static void collect(void *user, json_t *e) {
  seen *s = user;
  if (s->n < 8)
    snprintf(s->events[s->n++], 32, "%s",
             json_string_value(json_object_get(e, "event")));
}

static void test_ledger_append_read(void **state) {
  (void)state;
  char dir[256], err[512];
  nw_test_tmpdir(dir, sizeof dir, "ledger");
  nw_ledger l;
  assert_int_equal(nw_ledger_open(&l, dir, err, sizeof err), 0);
  nw_config cfg;
  nw_config_defaults(&cfg);
  assert_int_equal(
      nw_ledger_append(&l, json_pack("{s:s, s:o}", "event", "start", "settings",
                                     nw_ledger_settings(&cfg))),
      0);
  assert_int_equal(
      nw_ledger_append(&l, json_pack("{s:s, s:s}", "event", "oom", "evidence",
                                     "line\nbreak \"quoted\"")),
      0);
  assert_int_equal(nw_ledger_append(&l, NULL), NW_EHOSTMEM);
  nw_ledger_close(&l);
  /* a torn line (no supervisor writes one, a disk might) is skipped */
  FILE *f = fopen(l.path, "a");
  fputs("{\"event\":\"tor", f);
  fclose(f);
  assert_int_equal(nw_ledger_open(&l, dir, err, sizeof err), 0);
  assert_int_equal(nw_ledger_append(&l, json_pack("{s:s}", "event", "x")), 0);
  nw_ledger_close(&l);
  seen s = {0};
  int bad = 0;
  assert_int_equal(nw_ledger_read(l.path, collect, &s, &bad), 0);
  /* the torn line is lost alone: "x" starts on a line of its own (issue
   * 13: an append never glues onto a torn tail) */
  assert_int_equal(s.n, 3);
  assert_string_equal(s.events[0], "start");
  assert_string_equal(s.events[1], "oom");
  assert_string_equal(s.events[2], "x");
  assert_int_equal(bad, 1);
  /* every line starts with the time */
  char *text = NULL;
  size_t cap = 0;
  f = fopen(l.path, "r");
  assert_true(getline(&text, &cap, f) > 0);
  assert_memory_equal(text, "{\"time\":\"20", 11);
  assert_non_null(strstr(text, "\"micro\":8,\"accum\":4,\"effective\":32"));
  free(text);
  fclose(f);
  char missing[300];
  snprintf(missing, sizeof missing, "%s/nope.jsonl", dir);
  assert_int_equal(nw_ledger_read(missing, collect, &s, NULL), NW_ENOTFOUND);
  nw_test_rmdir_flat(dir);
}

static void test_runlock(void **state) {
  (void)state;
  char dir[256], err[512];
  nw_test_tmpdir(dir, sizeof dir, "lock");
  int holder = -1;
  assert_int_equal(nw_runlock_holder(dir), 0);
  int fd = nw_runlock_acquire(dir, &holder, err, sizeof err);
  assert_true(fd >= 0);
  assert_int_equal(nw_runlock_holder(dir), getpid());
  /* OFD locks conflict between descriptions even in one process */
  assert_int_equal(nw_runlock_acquire(dir, &holder, err, sizeof err), NW_EBUSY);
  assert_int_equal(holder, getpid());
  char want[64];
  snprintf(want, sizeof want, "held by pid %d", (int)getpid());
  assert_non_null(strstr(err, want));
  nw_runlock_release(fd);
  assert_int_equal(nw_runlock_holder(dir), 0);
  fd = nw_runlock_acquire(dir, &holder, err, sizeof err);
  assert_true(fd >= 0);
  nw_runlock_release(fd);
  nw_test_rmdir_flat(dir);
}

static void test_child_env(void **state) {
  (void)state;
  setenv("NOTIFY_SOCKET", "/x", 1);
  setenv("NW_TEST_KEEP", "yes", 1);
  const char *unset[] = {"NOTIFY_SOCKET", NULL};
  const char *set[] = {"NIGHTWATCH_RUN_ID=r1", NULL};
  char **env = nw_child_env_build(unset, set);
  assert_non_null(env);
  int keep = 0, notify = 0, rid = 0;
  for (int i = 0; env[i]; i++) {
    keep += !strcmp(env[i], "NW_TEST_KEEP=yes");
    notify += !strncmp(env[i], "NOTIFY_SOCKET=", 14);
    rid += !strcmp(env[i], "NIGHTWATCH_RUN_ID=r1");
  }
  assert_int_equal(keep, 1);
  assert_int_equal(notify, 0);
  assert_int_equal(rid, 1);
  nw_child_env_free(env);
  unsetenv("NOTIFY_SOCKET");
}

static void test_child_spawn(void **state) {
  (void)state;
  extern char **environ;
  char err[512];
  /* the status pipe survives exec; the child is its own group leader */
  char *argv[] = {"/bin/sh", "-c",
                  "echo \"{\\\"pgid\\\":$(ps -o pgid= $$)}\" >&$NIGHTWATCH_"
                  "STATUS_FD",
                  NULL};
  nw_child_spec spec = {argv, environ, 0};
  nw_child c;
  assert_int_equal(nw_child_spawn(&spec, &c, err, sizeof err), 0);
  assert_true(c.pid > 0 && c.pidfd >= 0 && c.status_fd >= 0);
  int st = 0, r;
  while ((r = nw_child_reap(&c, &st)) == 0)
    usleep(1000);
  assert_int_equal(r, 1);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char buf[128] = "";
  ssize_t n = read(c.status_fd, buf, sizeof buf - 1);
  assert_true(n > 0);
  buf[n] = '\0';
  json_t *o = json_loads(buf, 0, NULL);
  assert_int_equal(json_integer_value(json_object_get(o, "pgid")), c.pid);
  json_decref(o);
  assert_int_equal(nw_child_signal(&c, SIGTERM), NW_ENOTFOUND); /* reaped */
  nw_child_close(&c);

  char *bad[] = {"/nonexistent/program", NULL};
  nw_child_spec bspec = {bad, environ, 0};
  assert_int_equal(nw_child_spawn(&bspec, &c, err, sizeof err), NW_ECONFIG);
  assert_non_null(strstr(err, "/nonexistent/program"));
  assert_non_null(strstr(err, "No such file"));
  char path[512];
  assert_int_equal(nw_which("sh", path, sizeof path), 0);
  assert_int_equal(access(path, X_OK), 0);
  assert_int_equal(nw_which("no-such-program-nw", path, sizeof path),
                   NW_ENOTFOUND);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ledger_append_read),
      cmocka_unit_test(test_runlock),
      cmocka_unit_test(test_child_env),
      cmocka_unit_test(test_child_spawn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
