/* test_gpu_oom.c — the four OOM causes arising on a GPU from settings a
 * user could write, each met by the real nightwatch-train on device.type =
 * cuda: exit 75, an OOM report with the phase, category and domain
 * snapshot, and the recovery classifier naming the cause. Three use a cap
 * (device.memory) for speed, sized by the estimator as the CPU end-to-end
 * test sizes them; the duplicate case is two real processes on the card
 * with no cap at all: a second process of the same run id (this binary,
 * re-executed as a helper) holds all but 1.5 GiB of the card, and the
 * trainer's own cudaMalloc is refused. Exit 77 without a GPU. */
#define _GNU_SOURCE
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

#include "base/error.h"
#include "gpu_test.h"
#include "model/estimate.h"
#include "protocol/exit_codes.h"
#include "protocol/oom_report.h"
#include "recovery/classify.h"
#include "testutil.h"

#define MAX_SETS 24

/* The small run of the CPU end-to-end test, on the GPU. */
static const char *const base_sets[] = {"device.type=cuda",   "train.steps=30",
                                        "checkpoint.every=0", "data.seed=1337",
                                        "train.seed=42",      NULL};

static void config_of(nw_config *c, const char *const *sets) {
  char err[512];
  nw_config_defaults(c);
  for (int i = 0; base_sets[i]; i++)
    assert_int_equal(nw_config_set(c, base_sets[i], err, sizeof err), 0);
  for (int i = 0; sets[i]; i++)
    if (nw_config_set(c, sets[i], err, sizeof err) < 0)
      fail_msg("%s", err);
}

/* Runs the trainer with base_sets + sets in a fresh run directory; the
 * exit code, the report (when 75) and its classification. */
static int run_trainer(const char *tag, const char *const *sets,
                       nw_oom_report *rep, nw_classification *cls) {
  static char dir[512], setdir[600], out[1 << 16];
  nw_test_tmpdir(dir, sizeof dir, tag);
  snprintf(setdir, sizeof setdir, "run.dir=%s", dir);
  char *argv[2 * MAX_SETS + 4];
  int n = 0;
  argv[n++] = NW_TRAIN_BIN;
  argv[n++] = "--set";
  argv[n++] = setdir;
  for (int i = 0; base_sets[i]; i++) {
    argv[n++] = "--set";
    argv[n++] = (char *)base_sets[i];
  }
  for (int i = 0; sets[i]; i++) {
    argv[n++] = "--set";
    argv[n++] = (char *)sets[i];
  }
  argv[n] = NULL;
  int st = nw_test_run_cmd(argv, out, sizeof out);
  printf("--- %s: exit %d\n%s\n", tag, st, out);
  if (st != NW_EXIT_OOM)
    return st;
  char path[700], err[1024];
  snprintf(path, sizeof path, "%s/%s", dir, NW_OOM_REPORT_FILE);
  if (nw_oom_report_read(path, rep, err, sizeof err) < 0)
    fail_msg("%s", err);
  assert_non_null(strstr(rep->device, "cuda:"));
  nw_config cfg;
  config_of(&cfg, sets);
  nw_observations obs;
  memset(&obs, 0, sizeof obs);
  obs.exit_code = st;
  obs.self_uid = (unsigned)getuid();
  nw_classify(&cfg, rep, &obs, cls);
  printf("%s: cause %s: %s\n", tag, nw_cause_name(cls->cause), cls->evidence);
  return st;
}

static const char *fmt(char *buf, size_t len, const char *f,
                       unsigned long long v) {
  snprintf(buf, len, f, v);
  return buf;
}

static void test_activation(void **state) {
  (void)state;
  const char *sets[] = {"eval.every=0",
                        "data.long_fraction=0",
                        "batch.effective=32",
                        "batch.micro=32",
                        NULL,
                        NULL};
  nw_config cfg;
  config_of(&cfg, sets);
  nw_estimate fits, big;
  nw_estimate_train(&cfg, 8, 10, 0, &fits);
  nw_estimate_train(&cfg, 32, 5, 0, &big);
  char mem[64];
  sets[4] = fmt(mem, sizeof mem, "device.memory=%llu",
                (unsigned long long)((fits.total + big.total) / 2));
  nw_oom_report rep;
  nw_classification cls;
  assert_int_equal(run_trainer("gpu-act", sets, &rep, &cls), NW_EXIT_OOM);
  assert_true(rep.phase == NW_PHASE_TRAIN_FORWARD ||
              rep.phase == NW_PHASE_TRAIN_BACKWARD);
  assert_int_equal(rep.cap_bytes, (fits.total + big.total) / 2);
  assert_int_equal(cls.cause, NW_CAUSE_ACTIVATION);
}

static void test_sequence_length(void **state) {
  (void)state;
  const char *sets[] = {"eval.every=0",
                        "data.long_fraction=0.02",
                        "data.long_max_digits=40",
                        "batch.effective=32",
                        "batch.micro=8",
                        NULL,
                        NULL};
  nw_config cfg;
  config_of(&cfg, sets);
  nw_estimate at72, at96;
  nw_estimate_train(&cfg, 8, 72, 0, &at72);
  nw_estimate_train(&cfg, 8, 96, 0, &at96);
  char mem[64];
  sets[5] = fmt(mem, sizeof mem, "device.memory=%llu",
                (unsigned long long)((at72.total + at96.total) / 2));
  nw_oom_report rep;
  nw_classification cls;
  assert_int_equal(run_trainer("gpu-seq", sets, &rep, &cls), NW_EXIT_OOM);
  assert_true(rep.step > 0); /* after completed steps: none may be lost */
  assert_int_equal(rep.emergency_checkpoint, 1);
  assert_int_equal(rep.seq_len, 96);
  assert_int_equal(cls.cause, NW_CAUSE_SEQUENCE_LENGTH);
}

static void test_eval_cache(void **state) {
  (void)state;
  const char *sets[] = {"eval.every=5",
                        "eval.batch=16",
                        "eval.generate=16",
                        "eval.batches=1",
                        "data.long_fraction=0",
                        "batch.micro=8",
                        NULL,
                        NULL};
  nw_config cfg;
  config_of(&cfg, sets);
  uint64_t kv = nw_estimate_kept_kv(&cfg);
  nw_estimate train, with_kv, ev;
  nw_estimate_train(&cfg, 8, 10, 0, &train);
  nw_estimate_train(&cfg, 8, 5, kv, &with_kv);
  nw_config released = cfg;
  released.eval.release_cache = 1;
  nw_estimate_eval(&released, 10, &ev);
  double need = train.total > ev.total ? (double)train.total : (double)ev.total;
  assert_true(need < with_kv.total);
  char mem[64];
  sets[6] = fmt(mem, sizeof mem, "device.memory=%llu",
                (unsigned long long)((need + with_kv.total) / 2));
  nw_oom_report rep;
  nw_classification cls;
  assert_int_equal(run_trainer("gpu-kv", sets, &rep, &cls), NW_EXIT_OOM);
  assert_true(rep.kv_cache_bytes > 0 || rep.phase == NW_PHASE_EVAL_GENERATE ||
              rep.phase == NW_PHASE_EVAL_FORWARD);
  assert_int_equal(cls.cause, NW_CAUSE_EVAL_CACHE);
}

/* ---- the duplicate: a second real process of this run on the card ---- */

#define DUP_RUN_ID "gpu-oom-dup"
#define DUP_LEAVE (3ull << 29) /* 1.5 GiB left free by the hog */

/* The helper: holds all but DUP_LEAVE of the card through the memory
 * domain, says "ready" on stdout and waits to be killed. */
static int hog_main(void) {
  nw_mem *mem;
  char err[256];
  if (nw_mem_create(&mem, 0) < 0 ||
      nw_cuda_open(0, NW_PRECISION_TF32, mem, err, sizeof err) < 0)
    return 1;
  uint64_t free_b = 0, total = 0;
  if (nw_cuda_mem_info(&free_b, &total) < 0 || free_b <= DUP_LEAVE)
    return 1;
  void *p;
  if (nw_mem_alloc(mem, NW_MEM_DATA, free_b - DUP_LEAVE, &p) < 0)
    return 1;
  printf("ready %llu\n", (unsigned long long)(free_b - DUP_LEAVE));
  fflush(stdout);
  pause();
  return 0;
}

static void test_duplicate_uncapped(void **state) {
  (void)state;
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t hog = fork();
  assert_true(hog >= 0);
  if (hog == 0) {
    dup2(pfd[1], 1);
    close(pfd[0]);
    setenv("NIGHTWATCH_RUN_ID", DUP_RUN_ID, 1);
    execl("/proc/self/exe", "test_gpu_oom", "--hog", (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  char line[128] = "";
  ssize_t got = read(pfd[0], line, sizeof line - 1);
  close(pfd[0]);
  if (got <= 0 || strncmp(line, "ready", 5) != 0) {
    kill(hog, SIGKILL);
    waitpid(hog, NULL, 0);
    fail_msg("the helper could not fill the card");
  }
  /* a micro-batch whose step needs more than the 1.5 GiB left */
  const char *sets[] = {"eval.every=0",         "data.long_fraction=0",
                        "batch.effective=1024", "batch.micro=1024",
                        "run.id=" DUP_RUN_ID,   NULL};
  nw_config cfg;
  config_of(&cfg, sets);
  nw_estimate e;
  nw_estimate_train(&cfg, 1024, 5, 0, &e);
  assert_true(e.total > 2 * DUP_LEAVE);
  nw_oom_report rep;
  nw_classification cls;
  int st = run_trainer("gpu-dup", sets, &rep, &cls);
  kill(hog, SIGKILL);
  waitpid(hog, NULL, 0);
  assert_int_equal(st, NW_EXIT_OOM);
  assert_int_equal(rep.cap_bytes, 0); /* the card refused, no cap did */
  if (rep.device_note[0])
    fail_msg("no process list on this machine: %s", rep.device_note);
  int listed = 0;
  for (int i = 0; i < rep.n_procs; i++)
    if (rep.procs[i].pid == hog) {
      listed = 1;
      assert_string_equal(rep.procs[i].run_id, DUP_RUN_ID);
      assert_true(rep.procs[i].bytes > DUP_LEAVE);
    }
  assert_true(listed);
  assert_int_equal(cls.cause, NW_CAUSE_DUPLICATE);
  assert_int_equal(cls.n_duplicates, 1);
  assert_int_equal(cls.duplicate_pids[0], hog);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--hog") == 0)
    return hog_main();
  nw_gpu_test_require("test_gpu_oom");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation),
      cmocka_unit_test(test_sequence_length),
      cmocka_unit_test(test_eval_cache),
      cmocka_unit_test(test_duplicate_uncapped),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
