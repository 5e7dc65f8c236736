/* test_fault_storage.c — storage faults under the real supervisor and
 * trainer (issue 13): a run directory on a 3 MiB tmpfs, every checkpoint
 * damaged, a misnamed checkpoint and a FIFO, a second trainer on a
 * supervised run directory. Each asserts what the design guarantees: no
 * signal, no restart loop, nothing started over silently, nothing deleted,
 * the ledger whole. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/error.h"
#include "base/runlock.h"
#include "checkpoints/ckpt.h"
#include "fault_fs.h"
#include "fixture.h"
#include "http_server.h"
#include "protocol/exit_codes.h"
#include "protocol/ledger.h"
#include "testutil.h"

/* The small model of issue 13's reproduction: 1.5 MB checkpoints. */
static void small_model(nw_case *c, int steps, int every) {
  nw_case_set(c, "model.n_layer=2");
  nw_case_set(c, "model.n_embd=64");
  nw_case_set(c, "eval.every=0");
  nw_case_set(c, "train.steps=%d", steps);
  nw_case_set(c, "checkpoint.every=%d", every);
  nw_case_set(c, "supervisor.hang_timeout=60");
}

static void count_ledger_line(void *user, json_t *e) {
  (void)e;
  ++*(int *)user;
}

/* Lines of the ledger at dir: whole (parsed) and bad. */
static void ledger_lines(const char *dir, int *good, int *bad) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, NW_LEDGER_FILE);
  *good = 0;
  assert_int_equal(nw_ledger_read(path, count_ledger_line, good, bad), 0);
}

/* Occurrences of needle in the file at path. */
static int count_in_file(const char *path, const char *needle) {
  char *text = nw_test_slurp(path, NULL);
  int n = 0;
  for (const char *p = text; p && (p = strstr(p, needle)); p++)
    n++;
  free(text);
  return n;
}

/* A 3 MiB run directory and 1.5 MB checkpoints: the third cannot be
 * written. The trainer goes on through checkpoint.max_failures failed
 * writes, exits 74, and the supervisor gives up with the class storage:
 * no signal, no restart, one give-up (and its alert), one log line per
 * failed write, and a ledger that parses completely once space is freed. */
static void test_disk_full_under_supervisor(void **state) {
  (void)state;
  nw_fault_fs fs;
  nw_fault_fs_mount(&fs, "sfull", 3 * 1024);
  if (!fs.mounted)
    skip();
  nw_case *c = nw_case_new("sfull");
  snprintf(c->dir, sizeof c->dir, "%.290s", fs.dir);
  small_model(c, 200, 10);
  /* a webhook: the give-up is the one alert (the default events) */
  nw_test_http *srv = nw_test_http_start();
  char conf[256];
  snprintf(conf, sizeof conf, "[alert]\nurl = http://127.0.0.1:%d/hook\n",
           nw_test_http_port(srv));
  nw_case_config(c, conf);
  int rc = nw_case_run(c, NULL, 300);
  if (rc != NW_EXIT_FAILURE)
    nw_case_dump(c);
  assert_int_equal(rc, NW_EXIT_FAILURE);
  json_t *a = nw_case_ledger(c);
  json_t *st = nw_test_ledger_find(a, "storage", 0);
  assert_non_null(st);
  assert_int_equal(nw_test_json_int(st, "exit_code"), NW_EXIT_STORAGE);
  assert_int_equal(nw_test_json_int(st, "signal"), 0);
  json_t *gu = nw_test_ledger_find(a, "give-up", 0);
  assert_non_null(gu);
  assert_string_equal(nw_test_json_str(gu, "cause"), "storage");
  assert_non_null(strstr(nw_test_json_str(gu, "evidence"), "Free space"));
  printf("give-up: %s\n", nw_test_json_str(gu, "evidence"));
  assert_int_equal(nw_test_ledger_count(a, "start"), 1); /* no restart */
  assert_null(nw_test_ledger_find(a, "recovery", 0));
  int errors = nw_test_ledger_count(a, "checkpoint-error");
  assert_true(errors >= 3); /* checkpoint.max_failures, the default */
  /* one stderr line per failed write, and none of HDF5's stacks */
  int lines = count_in_file(c->log, "failed (");
  printf("%d failed writes, %d log lines about them\n", errors, lines);
  assert_int_equal(lines, errors);
  assert_int_equal(count_in_file(c->log, "HDF5"), 0);
  json_decref(a);
  /* the supervisor drains its alerts before it exits: all are in */
  assert_int_equal(nw_test_http_count(srv), 1);
  const nw_test_http_request *req = nw_test_http_get(srv, 0);
  assert_non_null(strstr(req->body, "\"give-up\""));
  assert_non_null(strstr(req->body, "Free space"));
  nw_test_http_stop(srv);
  /* space freed: the ledger parses whole, every line of it */
  char filler[700];
  snprintf(filler, sizeof filler, "%s/checkpoints/ckpt-0000000010.h5", fs.dir);
  unlink(filler);
  int good, bad;
  ledger_lines(fs.dir, &good, &bad);
  assert_int_equal(bad, 0);
  assert_true(good > 4);
  nw_case_free(c);
  nw_fault_fs_unmount(&fs);
}

/* Trains `steps` steps with a checkpoint every `every`, unsupervised. */
static void train_bare(nw_case *c, int steps, int every, const char *resume,
                       int want) {
  char dirset[400], stepset[64], everyset[64], devset[128];
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", c->dir);
  snprintf(devset, sizeof devset, "--set=device.name=%s", c->device);
  snprintf(stepset, sizeof stepset, "--set=train.steps=%d", steps);
  snprintf(everyset, sizeof everyset, "--set=checkpoint.every=%d", every);
  char *argv[] = {(char *)NW_TRAIN_BIN,
                  dirset,
                  devset,
                  "--set=model.n_layer=2",
                  "--set=model.n_embd=64",
                  "--set=eval.every=0",
                  stepset,
                  everyset,
                  "--resume",
                  (char *)resume,
                  NULL};
  int rc = nw_case_exec(c, argv, 300);
  if (rc != want)
    nw_case_dump(c);
  assert_int_equal(rc, want);
}

static int exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

/* Every checkpoint truncated: the trainer refuses (65) and lists them, the
 * supervisor records every file and gives up with the class storage, the
 * files are moved aside, nothing is written from step 0; `--resume none`
 * then starts over on purpose. */
static void test_all_damaged(void **state) {
  (void)state;
  nw_case *c = nw_case_new("dmg");
  train_bare(c, 30, 10, "auto", 0);
  char p[3][700];
  for (int i = 0; i < 3; i++) {
    nw_ckpt_path(c->dir, 10 * (i + 1), p[i], sizeof p[i]);
    assert_int_equal(truncate(p[i], 4096), 0);
  }
  small_model(c, 40, 10);
  assert_int_equal(nw_case_run(c, NULL, 300), NW_EXIT_FAILURE);
  json_t *a = nw_case_ledger(c);
  assert_int_equal(nw_test_ledger_count(a, "checkpoint-skipped"), 3);
  for (int i = 0; i < 3; i++) {
    json_t *e = nw_test_ledger_find(a, "checkpoint-skipped", i);
    assert_non_null(strstr(nw_test_json_str(e, "moved_to"), "/damaged/"));
    assert_true(exists(nw_test_json_str(e, "moved_to")));
    assert_false(exists(p[i]));
  }
  json_t *st = nw_test_ledger_find(a, "storage", 0);
  assert_non_null(st);
  assert_int_equal(nw_test_json_int(st, "exit_code"), NW_EXIT_DAMAGED);
  assert_string_equal(
      nw_test_json_str(nw_test_ledger_find(a, "give-up", 0), "cause"),
      "storage");
  assert_int_equal(nw_test_ledger_count(a, "start"), 1);
  json_decref(a);
  char paths[4][NW_PATH_MAX], err[256];
  int n = -1;
  assert_int_equal(nw_ckpt_list(c->dir, paths, 4, &n, err, sizeof err), 0);
  assert_int_equal(n, 0); /* nothing written from step 0 */

  /* on purpose: a fresh start, the damaged files still where they went */
  train_bare(c, 10, 10, "none", 0);
  assert_int_equal(nw_ckpt_list(c->dir, paths, 4, &n, err, sizeof err), 0);
  assert_int_equal(n, 1);
  char moved[800];
  snprintf(moved, sizeof moved, "%s/checkpoints/damaged/%s", c->dir,
           strrchr(p[0], '/') + 1);
  assert_true(exists(moved));
  nw_case_free(c);
}

/* A copy of an old checkpoint under a far newer name, and a FIFO named as
 * newer still: resume takes the real newest at once (the FIFO is never
 * opened, the copy fails the name check), both are moved aside, and
 * retention afterwards keeps the real checkpoints. */
static void test_misnamed_and_fifo(void **state) {
  (void)state;
  nw_case *c = nw_case_new("misn");
  train_bare(c, 30, 10, "auto", 0);
  char old[700], fake[700], fifo[700], newest[700];
  nw_ckpt_path(c->dir, 10, old, sizeof old);
  nw_ckpt_path(c->dir, 9999999999LL, fake, sizeof fake);
  nw_ckpt_path(c->dir, 8888888888LL, fifo, sizeof fifo);
  nw_ckpt_path(c->dir, 30, newest, sizeof newest);
  char *copy[] = {"/bin/cp", old, fake, NULL}, out[512];
  assert_int_equal(nw_test_run_cmd(copy, out, sizeof out), 0);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  char found[NW_PATH_MAX], err[1024];
  double t0 = nw_test_now();
  assert_int_equal(nw_ckpt_find_latest(c->dir, 60, NULL, found, sizeof found,
                                       err, sizeof err),
                   0);
  double dt = nw_test_now() - t0;
  printf("resume found %s in %.3f s\n", found, dt);
  assert_string_equal(found, newest);
  assert_true(dt < 1.0);
  assert_false(exists(fake));
  assert_false(exists(fifo));
  /* trained on from 30 with keep_last 3: 40, 50 and 60 written, the real
   * newest ones kept */
  train_bare(c, 60, 10, "auto", 0);
  for (int s = 40; s <= 60; s += 10) {
    nw_ckpt_path(c->dir, s, found, sizeof found);
    assert_true(exists(found));
  }
  nw_case_free(c);
}

/* A bare trainer on a supervised run directory is refused at start (73,
 * naming the holder); a second supervisor still is. */
static void test_second_trainer_refused(void **state) {
  (void)state;
  nw_case *c = nw_case_new("lock");
  small_model(c, 100000, 0);
  nw_case_start(c, NULL);
  nw_case_wait_step(c, 2, 120, NULL);
  char dirset[400], devset[128];
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", c->dir);
  snprintf(devset, sizeof devset, "--set=device.name=%s", c->device);
  char out[1 << 14];
  char *bare[] = {
      (char *)NW_TRAIN_BIN,    dirset, devset, "--set=model.n_layer=2",
      "--set=model.n_embd=64", NULL};
  int rc = nw_test_run_cmd(bare, out, sizeof out);
  printf("bare trainer: exit %d: %.300s\n", rc, strstr(out, "trainer.lock"));
  assert_int_equal(rc, NW_EXIT_LOCKED);
  assert_non_null(strstr(out, "trainer.lock is held by pid"));
  char *second[] = {(char *)NW_BIN, "run", "--run-dir", c->dir, NULL};
  rc = nw_test_run_cmd(second, out, sizeof out);
  assert_int_equal(rc, NW_EXIT_FAILURE);
  assert_non_null(strstr(out, "another supervisor runs this run"));
  kill(c->sup, SIGTERM);
  assert_int_equal(nw_case_wait(c, 120), 0);
  /* status.json tells a stop from a finished run */
  nw_case_wait_state(c, "stopped", 10);
  nw_case_free(c);
}

/* A trainer started by hand on a supervised run directory, with this
 * run's id, holds trainer.lock when the supervisor starts: its trainer is
 * refused (73), the lock proves the holder a duplicate (our uid, our run
 * id in it), the duplicate chain kills it, and the run goes on. */
static void test_lock_holder_of_this_run_killed(void **state) {
  (void)state;
  nw_case *c = nw_case_new("lockdup");
  nw_case_policy(
      c, "[duplicate-process]\nactions = kill-duplicate\n"
         "grace_seconds = 2\n[limits]\nbackoff_initial_seconds = 0.1\n");
  small_model(c, 100000, 0);
  nw_case_set(c, "run.id=lockdup-%d", (int)getpid());
  char dirset[400], idset[128], devset[128];
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", c->dir);
  snprintf(idset, sizeof idset, "--set=run.id=lockdup-%d", (int)getpid());
  snprintf(devset, sizeof devset, "--set=device.name=%s-stale", c->device);
  char stale_log[400];
  snprintf(stale_log, sizeof stale_log, "%s/stale.log", c->home);
  char *stale_argv[] = {(char *)NW_TRAIN_BIN,
                        dirset,
                        idset,
                        devset,
                        "--set=model.n_layer=2",
                        "--set=model.n_embd=64",
                        "--set=train.steps=100000",
                        "--set=eval.every=0",
                        NULL};
  pid_t stale = nw_test_spawn_logged(stale_argv, stale_log);
  /* it holds the lock once its pid is in the file and the lock is taken */
  nw_runlock_holder_info h = {0};
  for (int i = 0; i < 2000 && h.pid != stale; i++) {
    nw_runlock_who(c->dir, NW_TRAINLOCK_FILE, &h);
    if (h.pid != stale)
      nw_test_sleep(0.01); /* polling a file another process writes */
  }
  assert_int_equal(h.pid, stale);
  nw_case_start(c, NULL);
  json_t *ledger = nw_case_wait_event(c, "kill", 1, 120);
  json_t *kill_e = nw_test_ledger_find(ledger, "kill", 0);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(kill_e, "pids"), 0)),
      stale);
  json_decref(ledger);
  assert_true(nw_test_wait_exit(stale, 60) >= 0); /* SIGTERM, or SIGKILL */
  json_t *a = nw_case_wait_event(c, "resumed", 1, 120);
  json_t *dup = nw_test_ledger_find(a, "duplicate", 0);
  assert_non_null(dup);
  assert_int_equal(nw_test_json_int(dup, "exit_code"), NW_EXIT_LOCKED);
  assert_string_equal(nw_test_json_str(dup, "cause"), "duplicate-process");
  printf("evidence: %s\n", nw_test_json_str(dup, "evidence"));
  json_decref(a);
  kill(c->sup, SIGTERM);
  assert_int_equal(nw_case_wait(c, 120), 0);
  nw_case_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_disk_full_under_supervisor,
                                nw_case_teardown),
      cmocka_unit_test_teardown(test_all_damaged, nw_case_teardown),
      cmocka_unit_test_teardown(test_misnamed_and_fifo, nw_case_teardown),
      cmocka_unit_test_teardown(test_second_trainer_refused, nw_case_teardown),
      cmocka_unit_test_teardown(test_lock_holder_of_this_run_killed,
                                nw_case_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
