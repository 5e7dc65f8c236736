/* bench_recover.c — how long a recovery takes: from the trainer's
 * out-of-memory exit to the first step of the resumed trainer, split into
 * the supervisor's wait (backoff), process start plus checkpoint load (fork
 * to the "resume" status line), the rest of the start (to the "start"
 * line) and the first step (to the first "step" line).
 *
 *   build/bench/bench_recover [NIGHTWATCH_BIN [REPS]]
 *
 * The default model on the CPU virtual device. Per repetition: a first
 * `nightwatch run` trains 3 steps (checkpoint at step 3); then a process of
 * the same run id holds most of the device, and a second `nightwatch run`
 * resumes, fails with an OOM at step 3 (emergency checkpoint), kills the
 * duplicate (kill-duplicate), restarts and finishes step 4. The figures come
 * from the ledger's "resumed" entry; the policy's backoff is set to 0, so
 * the wait is the supervisor's one-second floor between two starts minus
 * the failed trainer's life. The checkpoint load alone is timed in-process
 * with nw_ckpt_read. Goal: the recovery beyond the checkpoint load and the
 * backoff under 1 s. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/config.h"
#include "checkpoints/ckpt.h"
#include "device/vdev.h"
#include "model/estimate.h"

/* Runs argv with its output appended to log; the exit code, or -1. */
static int run_quiet(char *const *argv, const char *log) {
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(argv[0], argv);
    _exit(127);
  }
  int st;
  if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
    return -1;
  return WEXITSTATUS(st);
}

/* A child holding bytes on the device under run_id until SIGTERM. */
static pid_t hold(const char *dev, uint64_t cap, const char *run_id,
                  uint64_t bytes) {
  int p[2];
  if (pipe(p) < 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    nw_vdev *v;
    char err[256], b = 0;
    if (nw_vdev_open(&v, dev, cap, run_id, err, sizeof err) < 0 ||
        nw_vdev_reserve(v, bytes) < 0)
      _exit(3);
    if (write(p[1], &b, 1) != 1)
      _exit(4);
    for (;;)
      pause();
  }
  char b;
  close(p[1]);
  if (pid < 0 || read(p[0], &b, 1) != 1) {
    close(p[0]);
    return -1;
  }
  close(p[0]);
  return pid;
}

static json_t *last_entry(const char *dir, const char *event) {
  char path[PATH_MAX + 32], line[1 << 14];
  snprintf(path, sizeof path, "%s/ledger.jsonl", dir);
  FILE *f = fopen(path, "r");
  json_t *found = NULL;
  while (f && fgets(line, sizeof line, f)) {
    json_t *e = json_loads(line, 0, NULL);
    const char *ev = json_string_value(json_object_get(e, "event"));
    if (ev && !strcmp(ev, event)) {
      json_decref(found);
      found = e;
    } else {
      json_decref(e);
    }
  }
  if (f)
    fclose(f);
  return found;
}

static double num(json_t *o, const char *k) {
  return json_number_value(json_object_get(o, k));
}

/* The names of one repetition: its run directory, device, run id, policy
 * file and log. */
typedef struct {
  char dir[PATH_MAX], dev[64], devset[96], runid[96], rid[64], mem[64];
  char pol[PATH_MAX + 16], log[PATH_MAX + 16];
} rep_names;

/* Names repetition r's files and writes its policy: kill the duplicate,
 * no backoff. */
static int rep_prepare(rep_names *n, int r, uint64_t cap) {
  snprintf(n->dir, sizeof n->dir, "/tmp/nw-bench-recover-XXXXXX");
  if (!mkdtemp(n->dir))
    return -1;
  snprintf(n->dev, sizeof n->dev, "nwbr-%d-%d", (int)getpid(), r);
  snprintf(n->devset, sizeof n->devset, "device.name=%s", n->dev);
  snprintf(n->rid, sizeof n->rid, "bench-recover-%d-%d", (int)getpid(), r);
  snprintf(n->runid, sizeof n->runid, "run.id=%s", n->rid);
  snprintf(n->mem, sizeof n->mem, "device.memory=%llu",
           (unsigned long long)cap);
  snprintf(n->pol, sizeof n->pol, "%s.policy", n->dir);
  snprintf(n->log, sizeof n->log, "%s.log", n->dir);
  FILE *pf = fopen(n->pol, "w");
  if (!pf)
    return -1;
  fputs("[duplicate-process]\nactions = kill-duplicate\ngrace_seconds = "
        "5\n[limits]\nbackoff_initial_seconds = 0\n"
        "min_start_interval_seconds = 0\n",
        pf);
  fclose(pf);
  return 0;
}

/* The row of repetition r from its "resumed" entry, with the checkpoint
 * load timed in-process; *beyond = the recovery beyond both. */
static void rep_report(int r, const char *dir, json_t *res, double *beyond) {
  char ck[PATH_MAX], err[512];
  nw_ckpt_path(dir, 3, ck, sizeof ck);
  nw_ckpt_state st;
  double t0 = nw_clock_now();
  int lrc = nw_ckpt_read(ck, &st, err, sizeof err);
  double load = nw_clock_now() - t0;
  if (lrc == 0)
    nw_ckpt_free(&st);
  else
    load = 0;
  double backoff = num(res, "backoff_s"),
         total = num(res, "seconds_to_recover");
  *beyond = total - backoff - load;
  printf("%4d %8.3fs %8.3fs %10.3fs %8.3fs %8.3fs %9.3fs %8.3fs\n", r, backoff,
         num(res, "checkpoint_load_s"), load, num(res, "process_start_s"),
         num(res, "first_step_s"), total, *beyond);
}

/* Repetition r: 1 measured (*beyond set), 0 when the recovery did not
 * happen (said), -1 when the bench cannot go on. */
static int rep_run(char *bin, int r, uint64_t cap, uint64_t held,
                   double *beyond) {
  rep_names n;
  if (rep_prepare(&n, r, cap) < 0)
    return -1;
  char *first[] = {bin,     "run",           "--run-dir", n.dir,
                   "--set", n.devset,        "--set",     n.mem,
                   "--set", n.runid,         "--set",     "eval.every=0",
                   "--set", "train.steps=3", NULL};
  if (run_quiet(first, n.log) != 0) {
    fprintf(stderr, "first run failed\n");
    return -1;
  }
  pid_t dup = hold(n.dev, cap, n.rid, held);
  char *second[] = {bin,        "run",          "--run-dir", n.dir,
                    "--policy", n.pol,          "--set",     n.devset,
                    "--set",    n.mem,          "--set",     n.runid,
                    "--set",    "eval.every=0", "--set",     "train.steps=4",
                    NULL};
  int rc = run_quiet(second, n.log);
  if (dup > 0) {
    kill(dup, SIGKILL);
    waitpid(dup, NULL, 0);
  }
  json_t *res = last_entry(n.dir, "resumed");
  int measured = rc == 0 && res;
  if (measured)
    rep_report(r, n.dir, res, beyond);
  else
    fprintf(stderr,
            "rep %d: exit %d, %s resumed entry (ledger in %s, log %s)\n", r, rc,
            res ? "a" : "no", n.dir, n.log);
  json_decref(res);
  nw_vdev_unlink(n.dev);
  return measured;
}

int main(int argc, char **argv) {
  char bin[PATH_MAX], exe[PATH_MAX];
  if (argc > 1) {
    snprintf(bin, sizeof bin, "%s", argv[1]);
  } else {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    snprintf(bin, sizeof bin, "%s/../nightwatch", dirname(exe));
  }
  int reps = argc > 2 ? atoi(argv[2]) : 3;
  nw_config cfg;
  nw_config_defaults(&cfg);
  nw_estimate fits, stat;
  nw_estimate_train(&cfg, cfg.batch.micro, 12, 0, &fits);
  nw_estimate_static(&cfg, &stat);
  /* the duplicate leaves room for the model and its optimizer state (the
   * checkpoint loads) but not for a training step */
  uint64_t cap = fits.total * 3 / 2;
  uint64_t held = cap - (stat.total + (fits.total - stat.total) / 4);
  printf("bench_recover: default model (%d layers, width %d), micro %d; "
         "device %.1f MiB, a duplicate holds %.1f MiB\n",
         cfg.model.n_layer, cfg.model.n_embd, cfg.batch.micro, cap / 1048576.0,
         held / 1048576.0);
  printf("%4s %9s %9s %11s %9s %9s %10s %9s\n", "rep", "backoff", "to-resume",
         "ckpt-load", "to-start", "to-step", "recover", "beyond");
  double sum_beyond = 0;
  int ok = 0;
  for (int r = 0; r < reps; r++) {
    double beyond = 0;
    int rc = rep_run(bin, r, cap, held, &beyond);
    if (rc < 0)
      return 1;
    if (rc > 0) {
      sum_beyond += beyond;
      ok++;
    }
  }
  if (!ok)
    return 1;
  printf("mean recovery beyond backoff and checkpoint load: %.3f s (goal < 1 "
         "s)\n",
         sum_beyond / ok);
  printf("columns: backoff = failure seen -> fork; to-resume/to-start/to-step "
         "= fork -> the trainer's resume/start/first step line; ckpt-load = "
         "nw_ckpt_read in-process; recover = failure -> first step\n");
  return 0;
}
