/* test_world_e2e.c — `nightwatch run` with several ranks on CPU virtual
 * devices (one per rank, "NAME.r"): each of the four causes arises on one
 * rank from settings a user could write, the supervisor classifies it from
 * that rank's report, applies the policy to every rank, and restarts them
 * together from the same checkpoint with zero completed steps lost. After
 * every run no trainer of it is left, and no shared-memory segment. */
#define _GNU_SOURCE
#include <dirent.h>
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
#include <jansson.h>

#include "base/config.h"
#include "cli/fault_recipe.h"
#include "device/vdev.h"
#include "testutil.h"

typedef struct {
  char dir[256];
  char log[320];
  char device[64]; /* base name: ranks use device.0, device.1, ... */
  int world;
  char sets[24][160];
  int n_sets;
} wcase;

static void wcase_init(wcase *c, const char *tag, int world) {
  memset(c, 0, sizeof *c);
  nw_test_tmpdir(c->dir, sizeof c->dir, tag);
  snprintf(c->log, sizeof c->log, "%s.log", c->dir);
  snprintf(c->device, sizeof c->device, "nwworld-%d-%s", (int)getpid(), tag);
  c->world = world;
}

static void wset(wcase *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->sets[c->n_sets++], sizeof c->sets[0], fmt, ap);
  va_end(ap);
}

static void wcase_fini(wcase *c) {
  char name[96];
  for (int r = 0; r < c->world; r++) {
    snprintf(name, sizeof name, "%s.%d", c->device, r);
    nw_vdev_unlink(name);
  }
}

/* The model every case trains, as the estimator sees it. */
static void small_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->model.n_layer = 2;
  cfg->model.n_embd = 64;
  cfg->eval.every = 0;
  cfg->data.long_fraction = 0;
}

static void dump(const wcase *c) {
  char cmd[700];
  snprintf(cmd, sizeof cmd, "tail -n 60 %s; cat %s/ledger.jsonl", c->log,
           c->dir);
  if (system(cmd) < 0)
    fprintf(stderr, "cannot show %s\n", c->log);
}

/* Starts the supervisor; its pid. */
static pid_t wstart(wcase *c) {
  char *argv[80];
  char dev[96], world[32];
  int n = 0;
  snprintf(dev, sizeof dev, "device.name=%s", c->device);
  snprintf(world, sizeof world, "world.size=%d", c->world);
  argv[n++] = (char *)NW_BIN;
  argv[n++] = "run";
  argv[n++] = "--run-dir";
  argv[n++] = c->dir;
  static const char *const base[] = {"model.n_layer=2", "model.n_embd=64",
                                     "checkpoint.every=5", NULL};
  for (int i = 0; base[i]; i++) {
    argv[n++] = "--set";
    argv[n++] = (char *)base[i];
  }
  argv[n++] = "--set";
  argv[n++] = dev;
  argv[n++] = "--set";
  argv[n++] = world;
  for (int i = 0; i < c->n_sets; i++) {
    argv[n++] = "--set";
    argv[n++] = c->sets[i];
  }
  argv[n] = NULL;
  return nw_test_spawn_logged(argv, c->log);
}

/* Waits for the supervisor; its exit code (128+signal, -1 on time out). */
static int wwait(pid_t pid, double timeout) {
  return nw_test_wait_or_kill(pid, timeout);
}

/* Runs the supervisor to its end. */
static int wrun(wcase *c, double timeout) { return wwait(wstart(c), timeout); }

/* A pid of ours that still runs a trainer (not a recycled pid). */
static int trainer_alive(int pid) {
  char path[64], cmd[256] = "";
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return 0;
  size_t n = fread(cmd, 1, sizeof cmd - 1, f);
  fclose(f);
  cmd[n] = '\0';
  return strstr(cmd, "nightwatch-train") != NULL;
}

/* Nothing of the run is left: every rank of every start is gone, and no
 * shared-memory segment names the run. */
static void assert_nothing_left(const wcase *c, json_t *a) {
  for (int i = 0; i < nw_test_ledger_count(a, "start"); i++) {
    json_t *pids = json_object_get(nw_test_ledger_find(a, "start", i), "pids");
    assert_int_equal(json_array_size(pids), (size_t)c->world);
    for (size_t k = 0; k < json_array_size(pids); k++) {
      int pid = (int)json_integer_value(json_array_get(pids, k));
      if (trainer_alive(pid))
        fail_msg("rank %zu of start %d (pid %d) is still running", k, i + 1,
                 pid);
    }
  }
  const char *id = nw_test_json_str(json_array_get(a, 0), "run_id");
  assert_true(strlen(id) > 4);
  DIR *d = opendir("/dev/shm");
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, id))
      fail_msg("/dev/shm/%s is left behind", e->d_name);
  closedir(d);
}

/* The common end: one recovery of `cause` (or more of it), every rank
 * restarted together, zero steps lost, the run finished. */
static void check_recovered(wcase *c, int rc, const char *cause, int steps) {
  if (rc != 0)
    dump(c);
  assert_int_equal(rc, 0);
  json_t *a = nw_test_ledger_load(c->dir);
  json_t *fail = nw_test_ledger_find(a, "oom", 0);
  if (!fail || strcmp(nw_test_json_str(fail, "cause"), cause)) {
    dump(c);
    fail_msg("expected an oom of cause %s", cause);
  }
  assert_int_equal(nw_test_json_int(fail, "world"), c->world);
  int rank = nw_test_json_int(fail, "rank");
  assert_true(rank >= 0 && rank < c->world);
  char dev[96];
  snprintf(dev, sizeof dev, "%s.%d", c->device, rank);
  assert_string_equal(nw_test_json_str(fail, "device"), dev);
  json_t *rec = nw_test_ledger_find(a, "recovery", 0);
  assert_non_null(rec);
  assert_string_equal(nw_test_json_str(rec, "cause"), cause);
  assert_int_equal(nw_test_json_int(json_object_get(rec, "after"), "world"),
                   c->world);
  assert_int_equal(
      nw_test_json_int(json_object_get(rec, "after"), "effective"),
      nw_test_json_int(json_object_get(rec, "before"), "effective"));
  json_t *res = nw_test_ledger_find(a, "resumed", 0);
  assert_non_null(res);
  assert_int_equal(nw_test_json_int(res, "steps_lost"), 0);
  json_t *fin = nw_test_ledger_find(a, "finish", 0);
  if (!fin) {
    dump(c);
    fail_msg("the run did not finish");
  }
  assert_int_equal(nw_test_json_int(fin, "step"), steps);
  assert_true(nw_test_ledger_count(a, "start") >= 2);
  printf("%s on rank %d of %d: %s; resumed at step %d, %d steps lost, "
         "%.2f s to recover\n",
         cause, rank, c->world, nw_test_json_str(rec, "summary"),
         nw_test_json_int(res, "step"), nw_test_json_int(res, "steps_lost"),
         json_number_value(json_object_get(res, "seconds_to_recover")));
  assert_nothing_left(c, a);
  json_decref(a);
}

static void test_activation_two_ranks(void **state) {
  (void)state;
  wcase c;
  wcase_init(&c, "wact", 2);
  nw_config cfg;
  small_config(&cfg);
  wset(&c, "device.memory=%llu",
       (unsigned long long)nw_recipe_activation(&cfg));
  wset(&c, "batch.effective=64");
  wset(&c, "batch.micro=32");
  wset(&c, "eval.every=0");
  wset(&c, "data.long_fraction=0");
  wset(&c, "train.steps=12");
  check_recovered(&c, wrun(&c, 120), "activation", 12);
  wcase_fini(&c);
}

static void test_sequence_length_one_rank(void **state) {
  (void)state;
  wcase c;
  wcase_init(&c, "wseq", 2);
  nw_config cfg;
  small_config(&cfg);
  wset(&c, "device.memory=%llu",
       (unsigned long long)nw_recipe_sequence_length(&cfg));
  wset(&c, "batch.effective=32");
  wset(&c, "eval.every=0");
  wset(&c, "data.long_fraction=0.02");
  wset(&c, "data.long_max_digits=48");
  wset(&c, "train.steps=30");
  check_recovered(&c, wrun(&c, 180), "sequence-length", 30);
  wcase_fini(&c);
}

static void test_eval_cache_rank0(void **state) {
  (void)state;
  wcase c;
  wcase_init(&c, "wkv", 2);
  nw_config cfg;
  small_config(&cfg);
  wset(&c, "device.memory=%llu",
       (unsigned long long)nw_recipe_eval_cache(&cfg));
  wset(&c, "data.long_fraction=0");
  wset(&c, "eval.every=%d", NW_RECIPE_EVAL_EVERY);
  wset(&c, "eval.batch=%d", NW_RECIPE_EVAL_BATCH);
  wset(&c, "eval.batches=1");
  wset(&c, "eval.generate=16");
  wset(&c, "eval.release_cache=false");
  wset(&c, "train.steps=12");
  check_recovered(&c, wrun(&c, 180), "eval-cache", 12);
  wcase_fini(&c);
}

/* A stale nightwatch-train of the same run id holds the device of the last
 * rank: only that rank fails (at init), the stale process is killed, and
 * every rank restarts. */
static void dup_case(int world) {
  wcase c;
  char tag[16];
  snprintf(tag, sizeof tag, "wdup%d", world);
  wcase_init(&c, tag, world);
  nw_config cfg;
  small_config(&cfg);
  uint64_t one_total = 0;
  unsigned long long mem = nw_recipe_duplicate(&cfg, &one_total);
  char run_id[64], stale_dir[300], a[5][400];
  snprintf(run_id, sizeof run_id, "wdup-%d-%d", (int)getpid(), world);
  snprintf(stale_dir, sizeof stale_dir, "%s-stale", c.dir);
  snprintf(a[0], sizeof a[0], "--set=run.dir=%s", stale_dir);
  snprintf(a[1], sizeof a[1], "--set=device.name=%s.%d", c.device, world - 1);
  snprintf(a[2], sizeof a[2], "--set=device.memory=%llu", mem);
  snprintf(a[3], sizeof a[3], "--set=run.id=%s", run_id);
  char *argv[] = {(char *)NW_TRAIN_BIN,
                  a[0],
                  a[1],
                  a[2],
                  a[3],
                  "--set=model.n_layer=2",
                  "--set=model.n_embd=64",
                  "--set=data.long_fraction=0",
                  "--set=eval.every=0",
                  "--set=train.steps=1000000",
                  "--set=checkpoint.every=0",
                  "--set=world.size=1",
                  NULL};
  pid_t stale = fork();
  assert_true(stale >= 0);
  if (stale == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    setenv("OMP_NUM_THREADS", "1", 1);
    unsetenv("NIGHTWATCH_STATUS_FD");
    execv(argv[0], argv);
    _exit(127);
  }
  /* holding a training step's memory on that device */
  char devname[96];
  snprintf(devname, sizeof devname, "%s.%d", c.device, world - 1);
  int held = 0;
  for (int i = 0; i < 1200 && !held; i++) {
    nw_vdev_proc procs[8];
    int n = 0;
    char err[256];
    held = nw_vdev_list_by_name(devname, procs, 8, &n, NULL, err, sizeof err) ==
               0 &&
           n == 1 && procs[0].pid == stale &&
           procs[0].bytes >= one_total * 9 / 10;
    if (!held)
      nw_test_sleep(0.025);
  }
  assert_true(held);
  /* stopped, as a hung stale trainer is: its memory holds still (a running
   * one re-reserves activation blocks as lengths vary and can lose the race
   * for memory to the ranks under test); the supervisor's SIGKILL after the
   * grace ends it */
  assert_int_equal(kill(stale, SIGSTOP), 0);
  wset(&c, "device.memory=%llu", mem);
  wset(&c, "run.id=%s", run_id);
  wset(&c, "batch.effective=%d", 8 * world);
  wset(&c, "eval.every=0");
  wset(&c, "data.long_fraction=0");
  wset(&c, "train.steps=10");
  int rc = wrun(&c, 120);
  int st_stale;
  pid_t w = waitpid(stale, &st_stale, WNOHANG);
  if (w != stale) {
    kill(stale, SIGKILL);
    waitpid(stale, &st_stale, 0);
    dump(&c);
    fail_msg("the stale trainer %d was not stopped", (int)stale);
  }
  check_recovered(&c, rc, "duplicate-process", 10);
  json_t *ledger = nw_test_ledger_load(c.dir);
  json_t *oom = nw_test_ledger_find(ledger, "oom", 0);
  assert_int_equal(nw_test_json_int(oom, "rank"), world - 1);
  json_t *kill_e = nw_test_ledger_find(ledger, "kill", 0);
  assert_non_null(kill_e);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(kill_e, "pids"), 0)),
      stale);
  json_decref(ledger);
  wcase_fini(&c);
}

static void test_duplicate_last_rank_of_two(void **state) {
  (void)state;
  dup_case(2);
}

static void test_duplicate_last_rank_of_four(void **state) {
  (void)state;
  dup_case(4);
}

/* Waits until the run's rank 0 reports step >= step; fills the pids of the
 * ranks of the last start. 0, or -1 after timeout seconds. */
static int wait_step(const wcase *c, int step, int *pids, double timeout) {
  char path[400];
  snprintf(path, sizeof path, "%s/status.json", c->dir);
  for (double end = nw_test_now() + timeout; nw_test_now() < end;
       nw_test_sleep(0.05)) {
    json_t *st = json_load_file(path, 0, NULL);
    json_t *p = json_object_get(st, "trainer_pids");
    int ok = st && nw_test_json_int(st, "step") >= step &&
             json_array_size(p) == (size_t)c->world &&
             !strcmp(nw_test_json_str(st, "state"), "running");
    for (int r = 0; ok && r < c->world; r++)
      pids[r] = (int)json_integer_value(json_array_get(p, (size_t)r));
    json_decref(st);
    if (ok)
      return 0;
  }
  return -1;
}

static void long_run_sets(wcase *c, int steps) {
  wset(c, "eval.every=0");
  wset(c, "data.long_fraction=0");
  wset(c, "train.steps=%d", steps);
}

/* A rank killed from outside (the kernel's OOM killer, a crash): every rank
 * stops and the world restarts from the newest checkpoint. */
static void test_crash_one_rank(void **state) {
  (void)state;
  wcase c;
  wcase_init(&c, "wcrash", 2);
  long_run_sets(&c, 40);
  pid_t sup = wstart(&c);
  int pids[4];
  if (wait_step(&c, 7, pids, 60) < 0) {
    kill(sup, SIGKILL);
    dump(&c);
    fail_msg("no progress");
  }
  assert_int_equal(kill(pids[1], SIGKILL), 0);
  int rc = wwait(sup, 120);
  if (rc != 0)
    dump(&c);
  assert_int_equal(rc, 0);
  json_t *a = nw_test_ledger_load(c.dir);
  json_t *crash = nw_test_ledger_find(a, "crash", 0);
  assert_non_null(crash);
  assert_int_equal(nw_test_json_int(crash, "rank"), 1);
  assert_int_equal(nw_test_json_int(crash, "signal"), SIGKILL);
  assert_non_null(nw_test_ledger_find(a, "recovery", 0));
  json_t *res = nw_test_ledger_find(a, "resumed", 0);
  assert_non_null(res);
  /* from the newest checkpoint (every 5 steps): at most 5 steps again */
  assert_true(nw_test_json_int(res, "steps_lost") <= 5);
  assert_int_equal(
      nw_test_json_int(nw_test_ledger_find(a, "finish", 0), "step"), 40);
  assert_nothing_left(&c, a);
  json_decref(a);
  wcase_fini(&c);
}

/* A rank that stops answering (SIGSTOP): no rank stays blocked; the hang is
 * seen, every rank is stopped and the world restarts. */
static void test_hang_one_rank(void **state) {
  (void)state;
  wcase c;
  wcase_init(&c, "whang", 2);
  long_run_sets(&c, 30);
  wset(&c, "supervisor.hang_timeout=3");
  wset(&c, "supervisor.kill_grace=3");
  pid_t sup = wstart(&c);
  int pids[4];
  if (wait_step(&c, 5, pids, 60) < 0) {
    kill(sup, SIGKILL);
    dump(&c);
    fail_msg("no progress");
  }
  assert_int_equal(kill(pids[1], SIGSTOP), 0);
  int rc = wwait(sup, 120);
  if (rc != 0)
    dump(&c);
  assert_int_equal(rc, 0);
  json_t *a = nw_test_ledger_load(c.dir);
  assert_non_null(nw_test_ledger_find(a, "hang", 0));
  json_t *rec = nw_test_ledger_find(a, "recovery", 0);
  assert_non_null(rec);
  assert_string_equal(nw_test_json_str(rec, "cause"), "hang");
  assert_int_equal(
      nw_test_json_int(nw_test_ledger_find(a, "finish", 0), "step"), 30);
  assert_nothing_left(&c, a);
  json_decref(a);
  wcase_fini(&c);
}

/* SIGTERM to the supervisor: every rank stops at the same step boundary,
 * one stop checkpoint (rank 0's), exit 0, nothing left. */
static void test_stop_all_ranks(void **state) {
  (void)state;
  wcase c;
  wcase_init(&c, "wstop", 2);
  long_run_sets(&c, 1000000);
  pid_t sup = wstart(&c);
  int pids[4];
  if (wait_step(&c, 3, pids, 60) < 0) {
    kill(sup, SIGKILL);
    dump(&c);
    fail_msg("no progress");
  }
  assert_int_equal(kill(sup, SIGTERM), 0);
  int rc = wwait(sup, 60);
  if (rc != 0)
    dump(&c);
  assert_int_equal(rc, 0);
  json_t *a = nw_test_ledger_load(c.dir);
  json_t *stop = nw_test_ledger_find(a, "stop", 0);
  assert_non_null(stop);
  assert_true(json_is_true(json_object_get(stop, "checkpoint")));
  char ck[400];
  snprintf(ck, sizeof ck, "%s/checkpoints/ckpt-%010d.h5", c.dir,
           nw_test_json_int(stop, "step"));
  if (access(ck, F_OK) != 0)
    fail_msg("no stop checkpoint %s", ck);
  assert_nothing_left(&c, a);
  json_decref(a);
  wcase_fini(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation_two_ranks),
      cmocka_unit_test(test_sequence_length_one_rank),
      cmocka_unit_test(test_eval_cache_rank0),
      cmocka_unit_test(test_duplicate_last_rank_of_two),
      cmocka_unit_test(test_duplicate_last_rank_of_four),
      cmocka_unit_test(test_crash_one_rank),
      cmocka_unit_test(test_hang_one_rank),
      cmocka_unit_test(test_stop_all_ranks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
