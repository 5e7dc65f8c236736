/* fixture.c — one supervised run for every end-to-end test (fixture.h). */
#define _GNU_SOURCE
#include "e2e/fixture.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "device/vdev.h"
#include "testutil.h"

/* The cases of the running test that have not reached nw_case_free: what
 * nw_case_teardown cleans up after a failed assertion. */
#define NW_CASE_LIVE_MAX 16
static nw_case *nw__case_live[NW_CASE_LIVE_MAX];
static int nw__case_made; /* cases made by this process: device names */

static void nw__case_forget(nw_case *c) {
  for (int i = 0; i < NW_CASE_LIVE_MAX; i++)
    if (nw__case_live[i] == c)
      nw__case_live[i] = NULL;
}

nw_case *nw_case_new(const char *tag) {
  nw_case *c = calloc(1, sizeof *c);
  assert_non_null(c);
  nw_test_tmpdir(c->home, sizeof c->home, tag);
  snprintf(c->dir, sizeof c->dir, "%s/run", c->home);
  snprintf(c->log, sizeof c->log, "%s/sup.log", c->home);
  snprintf(c->device, sizeof c->device, "nwt-%d-%d-%s", (int)getpid(),
           nw__case_made++, tag);
  assert_int_equal(mkdir(c->dir, 0755), 0);
  c->out_fd = -1;
  int slot = 0;
  while (slot < NW_CASE_LIVE_MAX && nw__case_live[slot])
    slot++;
  assert_true(slot < NW_CASE_LIVE_MAX);
  nw__case_live[slot] = c;
  return c;
}

/* Kills and reaps pid (a child) when it still runs. */
static void nw__case_kill(pid_t *pid) {
  if (*pid > 0) {
    kill(*pid, SIGCONT); /* a stopped stale trainer */
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
  }
  *pid = 0;
}

/* Processes killed, devices removed, memory freed; HOME removed when
 * keep is 0. */
static void nw__case_release(nw_case *c, int keep) {
  nw__case_kill(&c->sup);
  nw__case_kill(&c->stale);
  if (c->world > 0) {
    char name[96];
    for (int r = 0; r < c->world; r++) {
      snprintf(name, sizeof name, "%s.%d", c->device, r);
      nw_vdev_unlink(name);
    }
  } else {
    nw_vdev_unlink(c->device);
  }
  if (keep) {
    fprintf(stderr, "kept %s (the run directory, logs and files)\n", c->home);
  } else {
    char *rm[] = {"/bin/rm", "-rf", c->home, NULL};
    char out[256];
    nw_test_run_cmd(rm, out, sizeof out);
  }
  for (int i = 0; i < c->n_sets; i++)
    free(c->sets[i]);
  for (int i = 0; i < c->n_args; i++)
    free(c->args[i]);
  for (int i = 0; i < c->n_env; i++) {
    free(c->env[i][0]);
    free(c->env[i][1]);
  }
  nw__case_forget(c);
  free(c);
}

void nw_case_free(nw_case *c) {
  if (c)
    nw__case_release(c, 0);
}

int nw_case_teardown(void **state) {
  (void)state;
  for (int i = 0; i < NW_CASE_LIVE_MAX; i++)
    if (nw__case_live[i])
      nw__case_release(nw__case_live[i], 1);
  return 0;
}

void nw_case_set(nw_case *c, const char *fmt, ...) {
  assert_true(c->n_sets < NW_CASE_MAX_ARGS);
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&c->sets[c->n_sets], fmt, ap);
  va_end(ap);
  assert_true(n >= 0);
  c->n_sets++;
}

void nw_case_arg(nw_case *c, const char *arg) {
  assert_true(c->n_args < NW_CASE_MAX_ARGS);
  c->args[c->n_args] = strdup(arg);
  assert_non_null(c->args[c->n_args]);
  c->n_args++;
}

void nw_case_world(nw_case *c, int n) { c->world = n; }

void nw_case_env(nw_case *c, const char *name, const char *value) {
  assert_true(c->n_env < NW_CASE_MAX_ENV);
  c->env[c->n_env][0] = strdup(name);
  c->env[c->n_env][1] = value ? strdup(value) : NULL;
  c->n_env++;
}

void nw_case_output(nw_case *c, int fd) { c->out_fd = fd; }

const char *nw_case_policy(nw_case *c, const char *text) {
  int first = !c->policy[0];
  nw_test_write_text(c->home, "policy.conf", text, c->policy, sizeof c->policy);
  if (first) {
    nw_case_arg(c, "--policy");
    nw_case_arg(c, c->policy);
  }
  return c->policy;
}

const char *nw_case_config(nw_case *c, const char *text) {
  nw_test_write_text(c->home, "run.conf", text, c->config, sizeof c->config);
  return c->config;
}

/* The child's side of a start: output, environment, exec. */
static void nw__case_exec_child(const nw_case *c, char *const argv[],
                                const char *log, int out_fd) {
  int fd =
      out_fd >= 0 ? out_fd : open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, 1);
    dup2(fd, 2);
  }
  for (int i = 0; i < c->n_env; i++) {
    if (c->env[i][1])
      setenv(c->env[i][0], c->env[i][1], 1);
    else
      unsetenv(c->env[i][0]);
  }
  /* tests run beside each other on few cores */
  setenv("OMP_NUM_THREADS", "1", 1);
  /* a supervisor left by a test binary that died dies with it (its
   * trainers follow through their own parent-death signal) */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  execv(argv[0], argv);
  _exit(127);
}

pid_t nw_case_spawn(nw_case *c, const char *const *extra, const char *log) {
  char *argv[3 * NW_CASE_MAX_ARGS + 16];
  char dev[96], world[32];
  int n = 0;
  snprintf(dev, sizeof dev, "device.name=%s", c->device);
  snprintf(world, sizeof world, "world.size=%d", c->world);
  argv[n++] = (char *)NW_BIN;
  argv[n++] = "run";
  if (c->config[0])
    argv[n++] = c->config;
  argv[n++] = "--run-dir";
  argv[n++] = c->dir;
  argv[n++] = "--set";
  argv[n++] = dev;
  if (c->world > 0) {
    argv[n++] = "--set";
    argv[n++] = world;
  }
  for (int i = 0; i < c->n_sets; i++) {
    argv[n++] = "--set";
    argv[n++] = c->sets[i];
  }
  for (int i = 0; extra && extra[i]; i++) {
    assert_true(i < NW_CASE_MAX_ARGS);
    argv[n++] = "--set";
    argv[n++] = (char *)extra[i];
  }
  for (int i = 0; i < c->n_args; i++)
    argv[n++] = c->args[i];
  argv[n] = NULL;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    nw__case_exec_child(c, argv, log, c->out_fd);
  return pid;
}

pid_t nw_case_start(nw_case *c, const char *const *extra) {
  assert_int_equal(c->sup, 0); /* one supervisor of a case at a time */
  c->sup = nw_case_spawn(c, extra, c->log);
  return c->sup;
}

int nw_case_wait(nw_case *c, double timeout) {
  int rc = nw_test_wait_exit(c->sup, timeout);
  if (rc >= 0)
    c->sup = 0;
  return rc;
}

int nw_case_run(nw_case *c, const char *const *extra, double timeout) {
  nw_case_start(c, extra);
  int rc = nw_test_wait_or_kill(c->sup, timeout);
  c->sup = 0;
  return rc;
}

void nw_case_run_ok(nw_case *c, const char *const *extra, double timeout) {
  int rc = nw_case_run(c, extra, timeout);
  if (rc != 0) {
    nw_case_dump(c);
    fail_msg("nightwatch run in %s: exit %d", c->dir, rc);
  }
}

int nw_case_exec(nw_case *c, char *const argv[], double timeout) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    nw__case_exec_child(c, argv, c->log, -1);
  return nw_test_wait_or_kill(pid, timeout);
}

json_t *nw_case_ledger(const nw_case *c) { return nw_test_ledger_load(c->dir); }

json_t *nw_case_wait_event(nw_case *c, const char *event, int n,
                           double timeout) {
  double end = nw_test_now() + timeout;
  for (;;) {
    json_t *a = nw_case_ledger(c);
    if (nw_test_ledger_count(a, event) >= n)
      return a;
    json_decref(a);
    if (nw_test_now() > end) {
      nw_case_dump(c);
      fail_msg("no %d '%s' entries in the ledger after %.0f s", n, event,
               timeout);
    }
    nw_test_sleep(0.05);
  }
}

/* status.json's step when it is running at step >= step with a trainer
 * per rank (their pids into pids), else -1. */
static int nw__case_status_at(const nw_case *c, int step, int *pids) {
  char path[400];
  snprintf(path, sizeof path, "%s/status.json", c->dir);
  json_t *st = json_load_file(path, 0, NULL);
  json_t *p = json_object_get(st, "trainer_pids");
  size_t ranks = c->world > 0 ? (size_t)c->world : 1;
  int at = st ? nw_test_json_int(st, "step") : -1;
  int ok = st && at >= step &&
           !strcmp(nw_test_json_str(st, "state"), "running") &&
           json_array_size(p) == ranks;
  for (size_t r = 0; ok && r < ranks; r++) {
    int pid = (int)json_integer_value(json_array_get(p, r));
    ok = pid > 0;
    if (pids)
      pids[r] = pid;
  }
  json_decref(st);
  return ok ? at : -1;
}

int nw_case_wait_step(nw_case *c, int step, double timeout, int *pids) {
  double end = nw_test_now() + timeout;
  for (;;) {
    int at = nw__case_status_at(c, step, pids);
    if (at >= 0)
      return at;
    if (nw_test_now() > end) {
      nw_case_dump(c);
      fail_msg("the trainer did not reach step %d in %.0f s", step, timeout);
    }
    nw_test_sleep(0.05);
  }
}

void nw_case_wait_state(nw_case *c, const char *state, double timeout) {
  char path[400];
  snprintf(path, sizeof path, "%s/status.json", c->dir);
  double end = nw_test_now() + timeout;
  for (;;) {
    json_t *st = json_load_file(path, 0, NULL);
    int at = !strcmp(nw_test_json_str(st, "state"), state);
    json_decref(st);
    if (at)
      return;
    if (nw_test_now() > end) {
      nw_case_dump(c);
      fail_msg("status.json never said \"%s\" in %.0f s", state, timeout);
    }
    nw_test_sleep(0.02);
  }
}

void nw_case_dump(const nw_case *c) {
  char p[400];
  char *s = nw_test_slurp(c->log, NULL);
  fprintf(stderr, "---- supervisor log %s ----\n%s\n", c->log, s ? s : "");
  free(s);
  snprintf(p, sizeof p, "%s/ledger.jsonl", c->dir);
  s = nw_test_slurp(p, NULL);
  fprintf(stderr, "---- ledger %s ----\n%s\n", p, s ? s : "");
  free(s);
}

int nw_case_log_has(const nw_case *c, const char *needle) {
  char *s = nw_test_slurp(c->log, NULL);
  int has = s && strstr(s, needle) != NULL;
  free(s);
  return has;
}

int nw_case_alive(int pid) {
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

/* A pid that still runs a trainer (not a recycled pid). */
static int nw__case_trainer_alive(int pid) {
  char path[64], cmd[256] = "";
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return 0;
  size_t n = fread(cmd, 1, sizeof cmd - 1, f);
  fclose(f);
  cmd[n] = '\0';
  return strstr(cmd, "nightwatch-train") != NULL && nw_case_alive(pid);
}

void nw_case_assert_nothing_left(const nw_case *c, json_t *a) {
  size_t ranks = c->world > 0 ? (size_t)c->world : 1;
  for (int i = 0; i < nw_test_ledger_count(a, "start"); i++) {
    json_t *pids = json_object_get(nw_test_ledger_find(a, "start", i), "pids");
    assert_int_equal(json_array_size(pids), ranks);
    for (size_t k = 0; k < json_array_size(pids); k++) {
      int pid = (int)json_integer_value(json_array_get(pids, k));
      if (nw__case_trainer_alive(pid))
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

/* The stale trainer's child side: its run directory, its status lines on
 * fd, its log. */
static void nw__case_stale_child(const nw_case *c, const char *device,
                                 const char *const *sets, int fd) {
  char dir[400], dev[160], log[400], fdv[16];
  char *argv[2 * NW_CASE_MAX_ARGS + 8];
  int n = 0;
  snprintf(dir, sizeof dir, "--set=run.dir=%s/stale", c->home);
  snprintf(dev, sizeof dev, "--set=device.name=%s", device);
  snprintf(log, sizeof log, "%s/stale.log", c->home);
  snprintf(fdv, sizeof fdv, "%d", fd);
  argv[n++] = (char *)NW_TRAIN_BIN;
  argv[n++] = dir;
  argv[n++] = dev;
  for (int i = 0; sets[i] && n < 2 * NW_CASE_MAX_ARGS; i++)
    if (asprintf(&argv[n++], "--set=%s", sets[i]) < 0)
      _exit(126);
  argv[n] = NULL;
  int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (lfd >= 0) {
    dup2(lfd, 1);
    dup2(lfd, 2);
  }
  setenv("NIGHTWATCH_STATUS_FD", fdv, 1);
  setenv("OMP_NUM_THREADS", "1", 1);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  execv(argv[0], argv);
  _exit(127);
}

/* 1 when the stale trainer is the one process on device, holding bytes. */
static int nw__case_stale_holds(const nw_case *c, const char *device,
                                uint64_t bytes) {
  nw_vdev_proc procs[8];
  int n = 0;
  char err[256];
  return nw_vdev_list_by_name(device, procs, 8, &n, NULL, err, sizeof err) ==
             0 &&
         n == 1 && procs[0].pid == c->stale && procs[0].bytes >= bytes;
}

pid_t nw_case_stale_trainer(nw_case *c, const char *device,
                            const char *const *sets, uint64_t bytes) {
  assert_int_equal(c->stale, 0);
  int status_pipe[2];
  assert_int_equal(pipe(status_pipe), 0);
  c->stale = fork();
  assert_true(c->stale >= 0);
  if (c->stale == 0) {
    close(status_pipe[0]);
    nw__case_stale_child(c, device, sets, status_pipe[1]);
  }
  close(status_pipe[1]);
  int stepped = nw_test_wait_step_line(status_pipe[0], 2, 60);
  close(status_pipe[0]);
  double end = nw_test_now() + 60;
  int held = 0;
  while (stepped == 0 && !(held = nw__case_stale_holds(c, device, bytes)) &&
         nw_test_now() < end)
    nw_test_sleep(0.025);
  if (!held)
    fail_msg("the stale trainer %d never held %llu bytes on %s (its log: "
             "%s/stale.log)",
             (int)c->stale, (unsigned long long)bytes, device, c->home);
  assert_int_equal(kill(c->stale, SIGSTOP), 0);
  return c->stale;
}

int nw_case_stale_exit(nw_case *c, double timeout) {
  int rc = nw_test_wait_or_kill(c->stale, timeout);
  c->stale = 0;
  return rc;
}
