/* test_world_train.c — real nightwatch-train ranks started with the rank
 * environment contract (world.h), no supervisor: 2 and 4 ranks train the
 * parameters 1 rank does; a SIGTERM to one rank stops all at one step; an
 * OOM on one rank gives its report and emergency checkpoint (75) and stops
 * the others (76); a killed or hung rank stops the others (76); ranks that
 * resumed different steps refuse to train (1). Nothing is left running or
 * in /dev/shm. */
#define _GNU_SOURCE
#include <fcntl.h>
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

#include "base/config.h"
#include "checkpoints/ckpt.h"
#include "device/collective.h"
#include "device/vdev.h"
#include "model/estimate.h"
#include "protocol/exit_codes.h"
#include "protocol/oom_report.h"
#include "testutil.h"
#include "trainer/model/model.h"

#define MAX_RANKS 4

typedef struct {
  char dir[256];
  char comm[64];
  int world;
  pid_t pid[MAX_RANKS];
  int code[MAX_RANKS];   /* exit status, 128+signal */
  double end[MAX_RANKS]; /* when it was reaped */
} world_run;

static int run_counter;

/* The small model every case trains. */
static const char *const small[] = {
    "--set=model.n_layer=2",      "--set=model.n_embd=64",
    "--set=model.n_head=4",       "--set=batch.effective=16",
    "--set=batch.micro=4",        "--set=eval.every=0",
    "--set=checkpoint.every=0",   "--set=train.threads=1",
    "--set=train.warmup_steps=2", NULL};

static void world_init(world_run *w, const char *tag) {
  memset(w, 0, sizeof *w);
  nw_test_tmpdir(w->dir, sizeof w->dir, tag);
}

/* Starts `world` ranks in w->dir with a fresh communicator name: stdout and
 * stderr to rank<R>.log, status lines to status<R>.jsonl. extra_r, when
 * given, adds one argument to one rank only. */
static void world_start(world_run *w, int world, const char *const *a,
                        const char *const *b, int only_rank,
                        const char *only_arg) {
  w->world = world;
  snprintf(w->comm, sizeof w->comm, "twt-%d-%d", (int)getpid(), run_counter++);
  for (int r = 0; r < world; r++) {
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
      char path[512], v[32];
      snprintf(path, sizeof path, "%s/rank%d.log", w->dir, r);
      int log = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
      snprintf(path, sizeof path, "%s/status%d.jsonl", w->dir, r);
      int st = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log < 0 || st < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0 ||
          dup2(st, 3) != 3)
        _exit(127);
      snprintf(v, sizeof v, "%d", r);
      setenv("NIGHTWATCH_RANK", v, 1);
      snprintf(v, sizeof v, "%d", world);
      setenv("NIGHTWATCH_WORLD_SIZE", v, 1);
      setenv("NIGHTWATCH_COMM", w->comm, 1);
      setenv("NIGHTWATCH_STATUS_FD", "3", 1);
      setenv("OMP_NUM_THREADS", "1", 1);
      char *argv[64], dirset[320], ws[64];
      int n = 0;
      argv[n++] = (char *)NW_TRAIN_BIN;
      snprintf(dirset, sizeof dirset, "--set=run.dir=%s", w->dir);
      snprintf(ws, sizeof ws, "--set=world.size=%d", world);
      argv[n++] = dirset;
      argv[n++] = ws;
      for (int i = 0; a && a[i]; i++)
        argv[n++] = (char *)a[i];
      for (int i = 0; b && b[i]; i++)
        argv[n++] = (char *)b[i];
      if (r == only_rank)
        argv[n++] = (char *)only_arg;
      argv[n] = NULL;
      execv(NW_TRAIN_BIN, argv);
      _exit(127);
    }
    w->pid[r] = p;
  }
}

/* Reaps every rank; one still running after `limit` seconds is killed and
 * fails the test (a blocked rank is the bug this file looks for). */
static void world_wait(world_run *w, double limit) {
  double t0 = nw_test_now();
  int left = 0, killed = 0;
  for (int r = 0; r < w->world; r++)
    left += w->pid[r] > 0;
  while (left > 0) {
    for (int r = 0; r < w->world; r++) {
      int st;
      if (w->pid[r] <= 0 || waitpid(w->pid[r], &st, WNOHANG) != w->pid[r])
        continue;
      w->code[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      w->end[r] = nw_test_now();
      w->pid[r] = 0;
      left--;
    }
    if (left && nw_test_now() - t0 > limit && !killed) {
      /* all of them, before failing: nothing may outlive the test */
      for (int r = 0; r < w->world; r++)
        if (w->pid[r] > 0)
          kill(w->pid[r], SIGKILL);
      killed = 1;
    }
    nw_test_sleep(0.01);
  }
  if (killed)
    fail_msg("ranks still running after %.0f s (see %s)", limit, w->dir);
  char name[300], path[320];
  assert_int_equal(nw_coll_shm_name(w->comm, name, sizeof name), 0);
  snprintf(path, sizeof path, "/dev/shm%s", name);
  assert_int_not_equal(access(path, F_OK), 0);
}

static void expect_codes(world_run *w, const int *want) {
  for (int r = 0; r < w->world; r++)
    if (w->code[r] != want[r])
      fail_msg("rank %d exited %d, expected %d (see %s/rank%d.log)", r,
               w->code[r], want[r], w->dir, r);
}

/* The status lines of rank r as an array (json_decref it). */
static json_t *status_lines(const world_run *w, int r) {
  char path[512];
  snprintf(path, sizeof path, "%s/status%d.jsonl", w->dir, r);
  json_t *a = json_array();
  FILE *f = fopen(path, "r");
  if (!f)
    return a;
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    json_t *o = json_loads(line, 0, NULL);
    if (o)
      json_array_append_new(a, o);
  }
  fclose(f);
  return a;
}

/* The first line with this event, borrowed from a; NULL if none. */
static json_t *find_event(json_t *a, const char *event) {
  size_t i;
  json_t *o;
  json_array_foreach(a, i, o) {
    const char *e = json_string_value(json_object_get(o, "event"));
    if (e && !strcmp(e, event))
      return o;
  }
  return NULL;
}

/* Waits until rank r has reported a step (training is under way). */
static void wait_for_step(world_run *w, int r, int step) {
  double t0 = nw_test_now();
  for (;;) {
    json_t *a = status_lines(w, r);
    size_t i;
    json_t *o;
    int seen = 0;
    json_array_foreach(a, i, o) {
      const char *e = json_string_value(json_object_get(o, "event"));
      if (e && !strcmp(e, "step") &&
          json_integer_value(json_object_get(o, "step")) >= step)
        seen = 1;
    }
    json_decref(a);
    if (seen)
      return;
    if (nw_test_now() - t0 > 60)
      fail_msg("rank %d never reached step %d (%s)", r, step, w->dir);
    nw_test_sleep(0.02);
  }
}

static int count_checkpoints(const char *dir) {
  char paths[16][NW_PATH_MAX], err[256];
  int n = 0;
  assert_int_equal(nw_ckpt_list(dir, paths, 16, &n, err, sizeof err), 0);
  return n;
}

static void read_ckpt(const char *dir, int step, nw_ckpt_state *st) {
  char path[NW_PATH_MAX], err[512];
  nw_ckpt_path(dir, step, path, sizeof path);
  if (nw_ckpt_read(path, st, err, sizeof err) < 0)
    fail_msg("%s", err);
}

/* 2 and 4 ranks with the same effective batch end where 1 rank does:
 * within 1e-5 relative (the sums are the same numbers in another order). */
static void test_parity(void **state) {
  (void)state;
  const char *steps[] = {"--set=train.steps=6", NULL};
  world_run w[3];
  const int worlds[3] = {1, 2, 4};
  const int ok[MAX_RANKS] = {0, 0, 0, 0};
  for (int i = 0; i < 3; i++) {
    world_init(&w[i], "nwwt-par");
    world_start(&w[i], worlds[i], small, steps, -1, NULL);
    world_wait(&w[i], 300);
    expect_codes(&w[i], ok);
    assert_int_equal(count_checkpoints(w[i].dir), 1); /* rank 0's only */
  }
  nw_ckpt_state one;
  read_ckpt(w[0].dir, 6, &one);
  for (int i = 1; i < 3; i++) {
    nw_ckpt_state st;
    read_ckpt(w[i].dir, 6, &st);
    assert_int_equal(st.num_params, one.num_params);
    assert_int_equal(st.tokens_seen, one.tokens_seen); /* global counts */
    assert_int_equal(st.world, worlds[i]);
    double d = nw_test_rel_diff(st.params, one.params, one.num_params);
    double dm = nw_test_rel_diff(st.exp_avg, one.exp_avg, one.num_params);
    printf("world %d vs 1 after 6 steps: parameters %.2e, first moments "
           "%.2e max relative difference\n",
           worlds[i], d, dm);
    if (d > 1e-5 || dm > 1e-4)
      fail_msg("world %d: parameters differ by %g relative, first moments "
               "by %g",
               worlds[i], d, dm);
    nw_ckpt_free(&st);
    /* every rank stepped through the same losses */
    json_t *a0 = status_lines(&w[i], 0);
    json_t *start = find_event(a0, "start");
    assert_non_null(start);
    assert_int_equal(json_integer_value(json_object_get(start, "world")),
                     worlds[i]);
    for (int r = 1; r < worlds[i]; r++) {
      json_t *ar = status_lines(&w[i], r);
      json_t *f = find_event(ar, "finish");
      assert_non_null(f);
      assert_int_equal(json_integer_value(json_object_get(f, "rank")), r);
      json_decref(ar);
    }
    json_decref(a0);
  }
  nw_ckpt_free(&one);
}

/* SIGTERM to rank 1 only: every rank stops at the same step boundary, rank
 * 0 writes the one stop checkpoint, all exit 0. */
static void test_sigterm_one_rank(void **state) {
  (void)state;
  world_run w;
  world_init(&w, "nwwt-term");
  const char *steps[] = {"--set=train.steps=100000", NULL};
  world_start(&w, 2, small, steps, -1, NULL);
  wait_for_step(&w, 1, 2);
  kill(w.pid[1], SIGTERM);
  world_wait(&w, 60);
  const int ok[MAX_RANKS] = {0, 0};
  expect_codes(&w, ok);
  int stop_step[2];
  for (int r = 0; r < 2; r++) {
    json_t *a = status_lines(&w, r);
    json_t *stop = find_event(a, "stop");
    assert_non_null(stop);
    stop_step[r] = (int)json_integer_value(json_object_get(stop, "step"));
    assert_true(json_is_true(json_object_get(stop, "checkpoint")));
    json_decref(a);
  }
  assert_int_equal(stop_step[0], stop_step[1]);
  assert_int_equal(count_checkpoints(w.dir), 1);
  nw_ckpt_state st;
  read_ckpt(w.dir, stop_step[0], &st);
  assert_int_equal(st.step, stop_step[0]);
  nw_ckpt_free(&st);
}

static uint64_t sum_bytes(const uint64_t *b) {
  uint64_t t = 0;
  for (int i = 0; i < NW_MEM_NCAT; i++)
    t += b[i];
  return t;
}

/* A device that fits training of the 1-layer model and not a validation
 * batch of 128 (the arithmetic of test_oom's eval-forward case). */
static double eval_oom_cap(void) {
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.data.long_fraction = 0;
  cfg.model.n_layer = 1;
  const int B = 8, Tlo = 5, Thi = 6;
  nw_estimate est;
  nw_estimate_static(&cfg, &est);
  uint64_t pg = est.bytes[NW_MEM_PARAMS] + est.bytes[NW_MEM_GRADS];
  uint64_t opt = est.bytes[NW_MEM_OPTIMIZER];
  uint64_t all_hi[NW_MEM_NCAT], eval_lo[NW_MEM_NCAT];
  nw_model_call_bytes(&cfg.model, B, Thi, NW_CALL_TRAIN, all_hi);
  nw_model_call_bytes(&cfg.model, 128, Tlo, NW_CALL_EVAL, eval_lo);
  double train_peak = (double)(pg + opt + sum_bytes(all_hi));
  double cap = (train_peak + pg + opt + sum_bytes(eval_lo)) / 2.0;
  assert_true(train_peak < cap);
  return cap;
}

/* Rank 0's report of an eval-forward OOM at step 3 with its emergency
 * checkpoint, and nothing from rank 1. */
static void expect_rank0_report(const world_run *w, const char *dev) {
  char path[512], err[512];
  nw_oom_report rep;
  nw_oom_report_path(w->dir, 0, 2, path, sizeof path);
  if (nw_oom_report_read(path, &rep, err, sizeof err) < 0)
    fail_msg("%s", err);
  assert_int_equal(rep.phase, NW_PHASE_EVAL_FORWARD);
  assert_int_equal(rep.step, 3);
  assert_int_equal(rep.set.world, 2);
  assert_int_equal(rep.emergency_checkpoint, 1);
  char want_dev[128];
  snprintf(want_dev, sizeof want_dev, "cpu:%s.0", dev);
  assert_string_equal(rep.device, want_dev);
  nw_oom_report_path(w->dir, 1, 2, path, sizeof path);
  assert_int_not_equal(access(path, F_OK), 0); /* the peer wrote none */
  nw_ckpt_state st;
  read_ckpt(w->dir, 3, &st); /* the emergency checkpoint loads */
  assert_int_equal(st.step, 3);
  nw_ckpt_free(&st);
  assert_int_equal(count_checkpoints(w->dir), 2); /* step 2, step 3 */
}

/* An evaluation-forward OOM, which only rank 0 can have (it alone
 * evaluates): rank 0 writes its report and the emergency checkpoint and
 * exits 75; rank 1, waiting at the evaluation's barrier, exits 76 at once,
 * with neither. */
static void test_oom_on_one_rank(void **state) {
  (void)state;
  double cap = eval_oom_cap();
  world_run w;
  world_init(&w, "nwwt-oom");
  char dev[96], devset[128], mem[64];
  snprintf(dev, sizeof dev, "nwwt-%d-oom", (int)getpid());
  snprintf(devset, sizeof devset, "--set=device.name=%s", dev);
  snprintf(mem, sizeof mem, "--set=device.memory=%llu",
           (unsigned long long)cap);
  /* two steps without evaluation, then resume with it: the OOM comes
   * after a completed step, so there is one to save */
  const char *first[] = {devset,
                         "--set=data.long_fraction=0",
                         "--set=model.n_layer=1",
                         "--set=data.short_max_digits=1",
                         "--set=eval.every=0",
                         "--set=checkpoint.every=0",
                         "--set=train.threads=1",
                         "--set=train.steps=2",
                         NULL};
  world_start(&w, 2, first, NULL, -1, NULL);
  world_wait(&w, 300);
  const int ok[MAX_RANKS] = {0, 0};
  expect_codes(&w, ok);
  const char *second[] = {devset,
                          mem,
                          "--set=data.long_fraction=0",
                          "--set=model.n_layer=1",
                          "--set=data.short_max_digits=1",
                          "--set=checkpoint.every=0",
                          "--set=train.threads=1",
                          "--set=train.steps=4",
                          "--set=eval.every=1",
                          "--set=eval.batch=128",
                          "--set=eval.batches=1",
                          "--set=eval.generate=0",
                          "--set=supervisor.hang_timeout=60",
                          NULL};
  world_start(&w, 2, second, NULL, -1, NULL);
  world_wait(&w, 300);
  const int codes[MAX_RANKS] = {NW_EXIT_OOM, NW_EXIT_PEER};
  expect_codes(&w, codes);
  /* woken by the abort, not by its 60 s deadline */
  assert_true(w.end[1] - w.end[0] < 10);
  expect_rank0_report(&w, dev);
  for (int r = 0; r < 2; r++) {
    char name[128];
    snprintf(name, sizeof name, "%s.%d", dev, r);
    nw_vdev_unlink(name);
  }
}

/* A rank SIGKILLed mid-training: its peer sees it die and exits 76 long
 * before its deadline, with no checkpoint and no report. */
static void test_killed_rank(void **state) {
  (void)state;
  world_run w;
  world_init(&w, "nwwt-kill");
  const char *steps[] = {"--set=train.steps=100000",
                         "--set=supervisor.hang_timeout=60", NULL};
  world_start(&w, 2, small, steps, -1, NULL);
  wait_for_step(&w, 0, 2);
  double t0 = nw_test_now();
  kill(w.pid[1], SIGKILL);
  world_wait(&w, 60);
  const int codes[MAX_RANKS] = {NW_EXIT_PEER, 128 + SIGKILL};
  expect_codes(&w, codes);
  assert_true(w.end[0] - t0 < 10);
  assert_int_equal(count_checkpoints(w.dir), 0);
  char path[512];
  nw_oom_report_path(w.dir, 0, 2, path, sizeof path);
  assert_int_not_equal(access(path, F_OK), 0);
}

/* A rank that hangs (stopped): the others give up at hang_timeout and exit
 * 76, before the supervisor's own hang detection would kill them. */
static void test_hung_rank(void **state) {
  (void)state;
  world_run w;
  world_init(&w, "nwwt-hang");
  const char *steps[] = {"--set=train.steps=100000",
                         "--set=supervisor.hang_timeout=2", NULL};
  world_start(&w, 4, small, steps, -1, NULL);
  wait_for_step(&w, 0, 2);
  double t0 = nw_test_now();
  kill(w.pid[2], SIGSTOP);
  pid_t stopped = w.pid[2];
  w.pid[2] = 0; /* reaped below, after the others */
  double limit = 60;
  int left = 3;
  while (left > 0 && nw_test_now() - t0 < limit) {
    for (int r = 0; r < 4; r++) {
      int st;
      if (w.pid[r] > 0 && waitpid(w.pid[r], &st, WNOHANG) == w.pid[r]) {
        w.code[r] = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        w.end[r] = nw_test_now();
        w.pid[r] = 0;
        left--;
      }
    }
    nw_test_sleep(0.01);
  }
  kill(stopped, SIGKILL);
  waitpid(stopped, NULL, 0);
  w.code[2] = 128 + SIGKILL;
  int running = -1;
  for (int r = 0; r < 4; r++)
    if (w.pid[r] > 0) {
      kill(w.pid[r], SIGKILL);
      waitpid(w.pid[r], NULL, 0);
      w.pid[r] = 0;
      running = r;
    }
  if (running >= 0)
    fail_msg("rank %d still running after %.0f s", running, limit);
  const int codes[MAX_RANKS] = {NW_EXIT_PEER, NW_EXIT_PEER, 128 + SIGKILL,
                                NW_EXIT_PEER};
  expect_codes(&w, codes);
  for (int r = 0; r < 4; r++)
    if (r != 2)
      assert_true(w.end[r] - t0 < 15);
  world_wait(&w, 1); /* nothing left to reap: checks /dev/shm */
}

/* Ranks that resumed different steps: the first collective says so, and
 * every rank exits 1 rather than mixing batches. */
static void test_resume_mismatch(void **state) {
  (void)state;
  world_run w;
  world_init(&w, "nwwt-mis");
  const char *two[] = {"--set=train.steps=2", NULL};
  world_start(&w, 2, small, two, -1, NULL);
  world_wait(&w, 300);
  const int ok[MAX_RANKS] = {0, 0};
  expect_codes(&w, ok);
  const char *four[] = {"--set=train.steps=4", NULL};
  world_start(&w, 2, small, four, 1, "--resume=none");
  world_wait(&w, 120);
  const int bad[MAX_RANKS] = {NW_EXIT_FAILURE, NW_EXIT_FAILURE};
  expect_codes(&w, bad);
  assert_int_equal(count_checkpoints(w.dir), 1); /* step 2, untouched */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parity),
      cmocka_unit_test(test_sigterm_one_rank),
      cmocka_unit_test(test_oom_on_one_rank),
      cmocka_unit_test(test_killed_rank),
      cmocka_unit_test(test_hung_rank),
      cmocka_unit_test(test_resume_mismatch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
