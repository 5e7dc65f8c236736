/* cli_demo.c — `nightwatch demo`: the four out-of-memory causes met for real.
 *
 * Each run is the real supervisor (this binary's `run`, spawned through
 * /proc/self/exe) supervising the real nightwatch-train in its own run
 * directory under the demo directory, on its own CPU virtual device whose
 * size comes from the memory estimator through src/fault_recipe.h (the
 * multi-rank tests use the same recipes). The table at the end is read back
 * from the runs' ledgers and status files, not from anything the demo
 * remembers. */
#define _GNU_SOURCE
#include "cli/cli_demo.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "cli/fault_recipe.h"
#include "device/vdev.h"
#include "protocol/exit_codes.h"
#include "protocol/ledger.h"
#include "supervisor/supervisor.h"

#define NW_DEMO_MAX_SETS 24

typedef struct {
  const char *name;   /* run directory under the demo directory */
  const char *cause;  /* expected cause; NULL for the fault-free run */
  const char *story;  /* what the user wrote, in words */
  char device[64];    /* device.name */
  char dir[PATH_MAX]; /* the run directory */
  char log[PATH_MAX]; /* the supervisor's output */
  char sets[NW_DEMO_MAX_SETS][128];
  int n_sets;
  int exit_code; /* the supervisor's; -1 not run */
  double seconds;
} nw_demo_run;

/* What one run's ledger says about its expected cause. */
typedef struct {
  const char *cause;
  int n_oom, n_recovery, finished, resumed, steps_lost, failed_step;
  double seconds_to_recover;
  char evidence[512];
  char actions[160];
  char last_action[64];
  int action_repeat;
  json_t *before, *after; /* settings around the chain of recoveries */
} nw_demo_summary;

static void nw_demo_sleep(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

static void nw_demo_usage(FILE *f) {
  fputs("usage: nightwatch demo [--quick] [--dir DIR]\n"
        "  a fault drill: the supervisor meets each out-of-memory cause\n"
        "  (activation, sequence-length, eval-cache, duplicate-process) on\n"
        "  the default model, one run each beside a fault-free run\n"
        "  --quick    fewer steps (about a minute on 2 cores)\n"
        "  --dir DIR  where the runs go (default runs/demo); the demo's own\n"
        "             run directories there are replaced\n"
        "exit codes: 0 every cause met and recovered from, 1 not, 64 usage\n",
        f);
}

/* snprintf for paths and messages that a long --dir may truncate (the
 * demo's own names are short; a truncated one fails visibly later). */
static void nw_demo_fmt(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void nw_demo_fmt(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

static void nw_demo_set(nw_demo_run *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void nw_demo_set(nw_demo_run *r, const char *fmt, ...) {
  if (r->n_sets >= NW_DEMO_MAX_SETS)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->sets[r->n_sets++], sizeof r->sets[0], fmt, ap);
  va_end(ap);
}

static int nw_demo_rm_one(const char *path, const struct stat *sb, int flag,
                          struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Removes path (a file or a whole tree) if it is there. */
static int nw_demo_remove(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0)
    return errno == ENOENT ? 0 : NW_EIO;
  if (!S_ISDIR(st.st_mode))
    return unlink(path) < 0 ? NW_EIO : 0;
  return nftw(path, nw_demo_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 ? NW_EIO : 0;
}

/* Forks argv[0] with stdout and stderr appended to log. */
static int nw_demo_spawn(char *const *argv, const char *log, pid_t *pid) {
  fflush(stdout);
  fflush(stderr);
  pid_t p = fork();
  if (p < 0)
    return NW_ESYS;
  if (p == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  *pid = p;
  return 0;
}

/* The exit code (128+signal when killed) of a child that waitpid reported. */
static int nw_demo_code(int st) {
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs `nightwatch run` for r until it exits, reaping `also` (another child,
 * 0 if none) whenever it exits meanwhile, so that a process the supervisor
 * kills does not linger as our zombie. */
static int nw_demo_supervise(const char *exe, nw_demo_run *r, pid_t *also) {
  char *argv[8 + 2 * NW_DEMO_MAX_SETS];
  int n = 0;
  argv[n++] = (char *)exe;
  argv[n++] = "run";
  argv[n++] = "--run-dir";
  argv[n++] = r->dir;
  for (int i = 0; i < r->n_sets; i++) {
    argv[n++] = "--set";
    argv[n++] = r->sets[i];
  }
  argv[n] = NULL;
  double t0 = nw_clock_now();
  pid_t sup;
  int rc = nw_demo_spawn(argv, r->log, &sup);
  if (rc < 0)
    return rc;
  for (;;) {
    int st;
    if (also && *also > 0 && waitpid(*also, &st, WNOHANG) == *also)
      *also = 0;
    pid_t w = waitpid(sup, &st, WNOHANG);
    if (w == sup) {
      r->exit_code = nw_demo_code(st);
      break;
    }
    if (w < 0 && errno != EINTR)
      return NW_ESYS;
    nw_demo_sleep(0.05);
  }
  r->seconds = nw_clock_now() - t0;
  return 0;
}

/* ---- the ledger ---- */

static const char *nw_demo_str(json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : "";
}

static void nw_demo_entry(void *user, json_t *e) {
  nw_demo_summary *s = user;
  const char *ev = nw_demo_str(e, "event");
  int ours = s->cause && !strcmp(nw_demo_str(e, "cause"), s->cause);
  if (!strcmp(ev, "oom") && ours) {
    if (s->n_oom++ == 0) {
      snprintf(s->evidence, sizeof s->evidence, "%s",
               nw_demo_str(e, "evidence"));
      s->failed_step =
          (int)json_integer_value(json_object_get(e, "failed_step"));
    }
  } else if (!strcmp(ev, "recovery") && ours) {
    s->n_recovery++;
    if (!s->before)
      s->before = json_incref(json_object_get(e, "before"));
    json_decref(s->after);
    s->after = json_incref(json_object_get(e, "after"));
    const char *a = nw_demo_str(e, "action");
    if (!strcmp(a, s->last_action)) {
      s->action_repeat++;
    } else {
      if (s->action_repeat > 1) {
        size_t l = strlen(s->actions);
        snprintf(s->actions + l, sizeof s->actions - l, " x%d",
                 s->action_repeat);
      }
      size_t l = strlen(s->actions);
      snprintf(s->actions + l, sizeof s->actions - l, "%s%s", l ? ", " : "", a);
      snprintf(s->last_action, sizeof s->last_action, "%s", a);
      s->action_repeat = 1;
    }
  } else if (!strcmp(ev, "resumed") && s->n_recovery && !s->resumed) {
    s->resumed = 1;
    s->steps_lost = (int)json_integer_value(json_object_get(e, "steps_lost"));
    s->seconds_to_recover =
        json_number_value(json_object_get(e, "seconds_to_recover"));
  } else if (!strcmp(ev, "finish")) {
    s->finished = 1;
  }
}

static int nw_demo_read(const nw_demo_run *r, nw_demo_summary *s) {
  memset(s, 0, sizeof *s);
  s->cause = r->cause;
  char path[PATH_MAX + 32];
  nw_demo_fmt(path, sizeof path, "%s/%s", r->dir, NW_LEDGER_FILE);
  int rc = nw_ledger_read(path, nw_demo_entry, s, NULL);
  if (s->action_repeat > 1) {
    size_t l = strlen(s->actions);
    snprintf(s->actions + l, sizeof s->actions - l, " x%d", s->action_repeat);
  }
  return rc;
}

static void nw_demo_free(nw_demo_summary *s) {
  json_decref(s->before);
  json_decref(s->after);
  s->before = s->after = NULL;
}

/* "micro 32 accum 1 -> micro 8 accum 4": the settings the recoveries
 * changed, or "unchanged". */
static void nw_demo_change(const nw_demo_summary *s, char *buf, size_t len) {
  static const char *const keys[] = {"micro",      "accum",         "max_len",
                                     "eval_batch", "release_cache", NULL};
  char a[160] = "", b[160] = "";
  for (int i = 0; keys[i]; i++) {
    json_t *x = json_object_get(s->before, keys[i]);
    json_t *y = json_object_get(s->after, keys[i]);
    if (!x || !y || json_equal(x, y))
      continue;
    char vx[32], vy[32];
    if (json_is_boolean(x)) {
      snprintf(vx, sizeof vx, "%s", json_is_true(x) ? "true" : "false");
      snprintf(vy, sizeof vy, "%s", json_is_true(y) ? "true" : "false");
    } else {
      snprintf(vx, sizeof vx, "%lld", (long long)json_integer_value(x));
      snprintf(vy, sizeof vy, "%lld", (long long)json_integer_value(y));
    }
    size_t la = strlen(a), lb = strlen(b);
    snprintf(a + la, sizeof a - la, "%s%s %s", la ? " " : "", keys[i], vx);
    snprintf(b + lb, sizeof b - lb, "%s%s %s", lb ? " " : "", keys[i], vy);
  }
  if (!a[0])
    snprintf(buf, len, "unchanged");
  else
    snprintf(buf, len, "%s -> %s", a, b);
}

/* The trainer's last loss (status.json), NAN-free: -1 when unknown. */
static double nw_demo_loss(const nw_demo_run *r) {
  char path[PATH_MAX + 32];
  nw_demo_fmt(path, sizeof path, "%s/status.json", r->dir);
  json_t *st = json_load_file(path, 0, NULL);
  double loss = st && json_is_number(json_object_get(st, "loss"))
                    ? json_number_value(json_object_get(st, "loss"))
                    : -1.0;
  json_decref(st);
  return loss;
}

/* The evidence, shortened to at most max characters: where it failed
 * ("train-backward, step 1") and its last sentence, which says why. */
static void nw_demo_short(const char *in, char *out, size_t len, size_t max) {
  char where[96] = "", why[512];
  const char *p = strstr(in, "Out of memory in ");
  const char *colon = strchr(in, ':');
  if (p == in && colon) {
    const char *phase = in + strlen("Out of memory in ");
    const char *after = strstr(phase, " after step ");
    if (after && after < colon)
      nw_demo_fmt(where, sizeof where,
                  "%.*s, step %.*s: ", (int)(after - phase), phase,
                  (int)(colon - after - strlen(" after step ")),
                  after + strlen(" after step "));
  }
  /* the last sentence: after the last ". " that is not the end */
  const char *last = in;
  for (const char *q = strstr(in, ". "); q; q = strstr(q + 2, ". "))
    if (q[2])
      last = q + 2;
  nw_demo_fmt(why, sizeof why, "%s%s", where, last);
  if (strlen(why) <= max || max < 4)
    nw_demo_fmt(out, len, "%s", why);
  else
    nw_demo_fmt(out, len, "%.*s...", (int)(max - 3), why);
}

/* ---- the runs ---- */

enum {
  NW_DEMO_BASE,
  NW_DEMO_ACT,
  NW_DEMO_SEQ,
  NW_DEMO_KV,
  NW_DEMO_DUP,
  NW_DEMO_N
};

/* The configuration the estimator reasons about: the embedded defaults
 * (with the data's rare long tail off unless the case needs it). */
static void nw_demo_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->data.long_fraction = 0;
  cfg->eval.every = 0;
}

static void nw_demo_memory(nw_demo_run *r, double bytes) {
  nw_demo_set(r, "device.memory=%llu", (unsigned long long)bytes);
}

/* Fills in every run's settings. dup_mem gets the duplicate case's device
 * size and one_total what one trainer holds when it trains. */
static void nw_demo_plan(nw_demo_run *runs, const char *dir, int steps,
                         double *dup_mem, double *one_total) {
  static const char *const names[NW_DEMO_N] = {"fault-free", "activation",
                                               "sequence-length", "eval-cache",
                                               "duplicate-process"};
  static const char *const stories[NW_DEMO_N] = {
      "the embedded defaults",
      "batch.micro=32 on a device sized for micro-batch 8",
      ("data.long_fraction=0.02, data.long_max_digits=48: a rare long "
       "problem on a device sized for typical ones"),
      "evaluations that keep their kv-cache (eval.release_cache=false)",
      "a stale nightwatch-train of the same run id left on the device"};
  for (int i = 0; i < NW_DEMO_N; i++) {
    nw_demo_run *r = &runs[i];
    memset(r, 0, sizeof *r);
    r->name = names[i];
    r->cause = i == NW_DEMO_BASE ? NULL : names[i];
    r->story = stories[i];
    r->exit_code = -1;
    nw_demo_fmt(r->dir, sizeof r->dir, "%s/%s", dir, names[i]);
    nw_demo_fmt(r->log, sizeof r->log, "%s/%s.log", dir, names[i]);
    snprintf(r->device, sizeof r->device, "nwdemo-%d-%d", (int)getpid(), i);
    nw_demo_set(r, "device.name=%s", r->device);
    nw_demo_set(r, "train.steps=%d", steps);
    if (i != NW_DEMO_BASE && i != NW_DEMO_KV)
      nw_demo_set(r, "eval.every=0");
    if (i != NW_DEMO_BASE && i != NW_DEMO_SEQ)
      nw_demo_set(r, "data.long_fraction=0");
  }
  nw_config cfg;
  nw_demo_config(&cfg);

  /* the four device sizes: fault_recipe.h says why each one fails */
  nw_demo_memory(&runs[NW_DEMO_ACT], (double)nw_recipe_activation(&cfg));
  nw_demo_set(&runs[NW_DEMO_ACT], "batch.micro=32");

  nw_demo_memory(&runs[NW_DEMO_SEQ], (double)nw_recipe_sequence_length(&cfg));
  nw_demo_set(&runs[NW_DEMO_SEQ], "data.long_fraction=0.02");
  nw_demo_set(&runs[NW_DEMO_SEQ], "data.long_max_digits=48");

  nw_demo_run *k = &runs[NW_DEMO_KV];
  nw_demo_memory(k, (double)nw_recipe_eval_cache(&cfg));
  nw_demo_set(k, "eval.every=%d",
              steps / 8 > NW_RECIPE_EVAL_EVERY ? steps / 8
                                               : NW_RECIPE_EVAL_EVERY);
  nw_demo_set(k, "eval.batch=%d", NW_RECIPE_EVAL_BATCH);
  nw_demo_set(k, "eval.batches=1");
  nw_demo_set(k, "eval.generate=16");
  nw_demo_set(k, "eval.release_cache=false");

  uint64_t one = 0;
  *dup_mem = (double)nw_recipe_duplicate(&cfg, &one);
  *one_total = (double)one;
  nw_demo_memory(&runs[NW_DEMO_DUP], *dup_mem);
  nw_demo_set(&runs[NW_DEMO_DUP], "run.id=nwdemo-dup-%d", (int)getpid());
}

/* The stale trainer: nightwatch-train of the same run id on the same
 * device, left running (its own run directory, as if from an old launch).
 * Returns once it holds what one trainer holds. */
static int nw_demo_stale(const char *exe, const nw_demo_run *r, const char *dir,
                         double mem, double one_total, pid_t *pid, char *err,
                         size_t errlen) {
  char train[PATH_MAX], exe_copy[PATH_MAX], sdir[PATH_MAX + 32],
      log[PATH_MAX + 32];
  nw_demo_fmt(exe_copy, sizeof exe_copy, "%s", exe);
  nw_demo_fmt(train, sizeof train, "%s/nightwatch-train", dirname(exe_copy));
  nw_demo_fmt(sdir, sizeof sdir, "%s/duplicate-stale", dir);
  nw_demo_fmt(log, sizeof log, "%s/duplicate-stale.log", dir);
  nw_demo_remove(sdir);
  nw_demo_remove(log);
  char a[6][PATH_MAX + 48];
  nw_demo_fmt(a[0], sizeof a[0], "--set=run.dir=%s", sdir);
  nw_demo_fmt(a[1], sizeof a[1], "--set=device.name=%s", r->device);
  nw_demo_fmt(a[2], sizeof a[2], "--set=device.memory=%llu",
              (unsigned long long)mem);
  nw_demo_fmt(a[3], sizeof a[3], "--set=run.id=nwdemo-dup-%d", (int)getpid());
  char *argv[] = {train,
                  a[0],
                  a[1],
                  a[2],
                  a[3],
                  "--set=data.long_fraction=0",
                  "--set=eval.every=0",
                  "--set=train.steps=1000000",
                  "--set=checkpoint.every=0",
                  NULL};
  int rc = nw_demo_spawn(argv, log, pid);
  if (rc < 0) {
    nw_demo_fmt(err, errlen, "cannot start %s", train);
    return rc;
  }
  /* holding its memory: listed on the device with a training step's bytes */
  for (int i = 0; i < 1200; i++) {
    nw_vdev_proc procs[8];
    int n = 0, st;
    char verr[256];
    if (nw_vdev_list_by_name(r->device, procs, 8, &n, NULL, verr,
                             sizeof verr) == 0 &&
        n == 1 && procs[0].pid == *pid &&
        procs[0].bytes >= (uint64_t)(one_total * 0.9))
      return 0;
    if (waitpid(*pid, &st, WNOHANG) == *pid) {
      nw_demo_fmt(err, errlen, "the stale trainer exited (%d) first; see %s",
                  nw_demo_code(st), log);
      *pid = 0;
      return NW_EINTERNAL;
    }
    nw_demo_sleep(0.025);
  }
  nw_demo_fmt(err, errlen, "the stale trainer did not take its memory in 30 s");
  return NW_EBUSY;
}

static void nw_demo_rule(void) {
  for (int i = 0; i < 160; i++)
    putchar('-');
  putchar('\n');
}

/* Reads demo's arguments into dir and quick. Returns 0 to run the demo,
 * else 1 with *code the exit code (--help, or a usage error). */
static int nw_demo_args(int argc, char **argv, const char **dir, int *quick,
                        int *code) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) {
      *quick = 1;
    } else if (!strcmp(argv[i], "--dir") && i + 1 < argc && argv[i + 1][0]) {
      *dir = argv[++i];
    } else if (!strncmp(argv[i], "--dir=", 6) && argv[i][6]) {
      *dir = argv[i] + 6;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      nw_demo_usage(stdout);
      *code = 0;
      return 1;
    } else {
      fprintf(stderr, "nightwatch demo: unknown argument %s\n", argv[i]);
      nw_demo_usage(stderr);
      *code = NW_EXIT_USAGE;
      return 1;
    }
  }
  return 0;
}

/* Kills and reaps the stale trainer if it is still ours to reap. */
static void nw_demo_reap(pid_t *stale) {
  if (*stale > 0) {
    kill(*stale, SIGKILL);
    waitpid(*stale, NULL, 0);
    *stale = 0;
  }
}

/* Runs runs[i] (with its stale duplicate for the duplicate case) and says
 * how it went. Returns 1 when it ran, 0 when it could not, NW_EIO when its
 * old run directory cannot be cleared (the demo stops). */
static int nw_demo_one(const char *exe, const char *dir, nw_demo_run *runs,
                       int i, double dup_mem, double one_total) {
  nw_demo_run *r = &runs[i];
  char err[512];
  if (nw_demo_remove(r->dir) < 0 || nw_demo_remove(r->log) < 0) {
    fprintf(stderr, "nightwatch demo: cannot clear %s\n", r->dir);
    return NW_EIO;
  }
  printf("[%d/%d] %-17s %s ...\n", i + 1, NW_DEMO_N, r->name, r->story);
  fflush(stdout);
  pid_t stale = 0;
  if (i == NW_DEMO_DUP) {
    int rc =
        nw_demo_stale(exe, r, dir, dup_mem, one_total, &stale, err, sizeof err);
    if (rc < 0) {
      printf("      cannot set up the fault: %s (%s)\n", err, nw_strerror(rc));
      nw_demo_reap(&stale);
      nw_vdev_unlink(r->device);
      return 0;
    }
    printf("      stale trainer pid %d holds its memory on %s\n", (int)stale,
           r->device);
  }
  int rc = nw_demo_supervise(exe, r, &stale);
  nw_demo_reap(&stale); /* the supervisor should have stopped it */
  nw_vdev_unlink(r->device);
  if (rc < 0) {
    printf("      cannot run the supervisor: %s\n", nw_strerror(rc));
    return 0;
  }
  printf("      supervisor exit %d after %.1f s (log %s)\n", r->exit_code,
         r->seconds, r->log);
  return 1;
}

/* One cause's row of the table, from its ledger. Returns 1 when the cause
 * was met and recovered from and the run finished. */
static int nw_demo_row(const nw_demo_run *r) {
  nw_demo_summary s;
  int lrc = nw_demo_read(r, &s);
  char ev[96], change[200], lost[16] = "-", secs[16] = "-", verdict[64];
  nw_demo_short(lrc < 0   ? "(no ledger)"
                : s.n_oom ? s.evidence
                          : "(not met)",
                ev, sizeof ev, 60);
  nw_demo_change(&s, change, sizeof change);
  if (s.resumed) {
    snprintf(lost, sizeof lost, "%d", s.steps_lost);
    snprintf(secs, sizeof secs, "%.2f s", s.seconds_to_recover);
  }
  int good = r->exit_code == 0 && s.n_oom && s.n_recovery && s.finished;
  double loss = nw_demo_loss(r);
  if (loss >= 0)
    snprintf(verdict, sizeof verdict, "%.4f%s", loss, good ? "" : " FAILED");
  else
    snprintf(verdict, sizeof verdict, "-%s", good ? "" : " FAILED");
  printf("%-17s %-60s %-22s %-30s %4s %8s %s\n", r->name, ev,
         s.n_recovery ? s.actions : "-", s.n_recovery ? change : "-", lost,
         secs, verdict);
  nw_demo_free(&s);
  return good;
}

/* The table, read back from the ledgers. Returns 1 when the fault-free run
 * finished and every cause was met and recovered from. */
static int nw_demo_table(const nw_demo_run *runs, const char *dir) {
  int ok = 1;
  double base_loss = nw_demo_loss(&runs[NW_DEMO_BASE]);
  nw_demo_summary base;
  nw_demo_read(&runs[NW_DEMO_BASE], &base);
  if (runs[NW_DEMO_BASE].exit_code != 0 || !base.finished)
    ok = 0;
  nw_demo_free(&base);
  printf("\n%-17s %-60s %-22s %-30s %4s %8s %s\n", "CAUSE", "EVIDENCE",
         "ACTION", "SETTINGS BEFORE -> AFTER", "LOST", "RECOVER", "FINAL LOSS");
  nw_demo_rule();
  for (int i = NW_DEMO_ACT; i < NW_DEMO_N; i++)
    if (!nw_demo_row(&runs[i]))
      ok = 0;
  nw_demo_rule();
  if (base_loss >= 0)
    printf("%-17s %-60s %-22s %-30s %4s %8s %.4f\n", "(none)",
           "fault-free run, the same steps", "-", "-", "-", "-", base_loss);
  printf("\n%s. Each run's ledger: nightwatch ledger %s/CAUSE\n",
         ok ? "All four causes met and recovered from"
            : "NOT every cause was met and recovered from",
         dir);
  return ok;
}

int nw_cli_demo(int argc, char **argv) {
  const char *dir = "runs/demo";
  int quick = 0, code = 0;
  if (nw_demo_args(argc, argv, &dir, &quick, &code))
    return code;
  char exe[PATH_MAX], err[512];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    fprintf(stderr, "nightwatch demo: /proc/self/exe: %s\n", strerror(errno));
    return NW_EXIT_FAILURE;
  }
  exe[n] = '\0';
  if (nw_mkdir_p(dir, err, sizeof err) < 0) {
    fprintf(stderr, "nightwatch demo: %s\n", err);
    return NW_EXIT_FAILURE;
  }
  int steps = quick ? 120 : 600;
  nw_demo_run runs[NW_DEMO_N]; /* about 60 KiB; nw_demo_plan fills them */
  double dup_mem, one_total;
  nw_demo_plan(runs, dir, steps, &dup_mem, &one_total);
  printf("nightwatch demo: the default model on the built-in task, %d steps "
         "a run, five runs under %s\n",
         steps, dir);
  int ok = 1;
  for (int i = 0; i < NW_DEMO_N; i++) {
    int rc = nw_demo_one(exe, dir, runs, i, dup_mem, one_total);
    if (rc < 0)
      return NW_EXIT_FAILURE;
    if (rc == 0)
      ok = 0;
  }
  if (!nw_demo_table(runs, dir))
    ok = 0;
  return ok ? 0 : NW_EXIT_FAILURE;
}
