/* test_resume.c — checkpoints end to end with the real trainer: exact
 * resume after SIGKILL, resume with a halved micro-batch after SIGTERM,
 * refusal of a checkpoint of another model, and zero completed steps lost
 * to an OOM (the emergency checkpoint). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

#include "checkpoints/ckpt.h"
#include "device/vdev.h"
#include "model/estimate.h"
#include "protocol/exit_codes.h"
#include "protocol/oom_report.h"
#include "testutil.h"

/* A small model and short runs: the properties, not the learning, count. */
static const char *const small_model[] = {
    "--set=model.n_layer=2",         "--set=model.n_embd=64",
    "--set=model.n_head=4",          "--set=eval.every=0",
    "--set=train.warmup_steps=5",    "--set=data.long_fraction=0.05",
    "--set=data.long_max_digits=10", NULL};

typedef struct {
  pid_t pid;
  int status_fd; /* read end of NIGHTWATCH_STATUS_FD */
  char buf[1 << 16];
  size_t used;
} trainer_proc;

/* Starts nightwatch-train with small_model, the run dir and extra args. */
static void trainer_start(trainer_proc *p, const char *dir,
                          const char *const *extra) {
  int pfd[2];
  assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
  p->used = 0;
  p->pid = fork();
  assert_true(p->pid >= 0);
  if (p->pid == 0) {
    int fd = dup(pfd[1]); /* without O_CLOEXEC: the trainer inherits it */
    char fdstr[16];
    snprintf(fdstr, sizeof fdstr, "%d", fd);
    setenv("NIGHTWATCH_STATUS_FD", fdstr, 1);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    char *argv[64];
    int n = 0;
    static char dirset[512];
    snprintf(dirset, sizeof dirset, "--set=run.dir=%s", dir);
    argv[n++] = (char *)NW_TRAIN_BIN;
    argv[n++] = dirset;
    for (int i = 0; small_model[i]; i++)
      argv[n++] = (char *)small_model[i];
    for (int i = 0; extra && extra[i]; i++)
      argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    execv(argv[0], argv);
    _exit(127);
  }
  close(pfd[1]);
  p->status_fd = pfd[0];
}

/* The next status line into line (NUL-terminated, truncated to len); 0
 * when the trainer closed the pipe. */
static int trainer_next_line(trainer_proc *p, char *line, size_t len) {
  for (;;) {
    char *nl = memchr(p->buf, '\n', p->used);
    if (nl) {
      *nl = 0;
      size_t n =
          (size_t)(nl - p->buf) < len - 1 ? (size_t)(nl - p->buf) : len - 1;
      memcpy(line, p->buf, n);
      line[n] = 0;
      size_t rest = p->buf + p->used - (nl + 1);
      memmove(p->buf, nl + 1, rest);
      p->used = rest;
      return 1;
    }
    if (p->used == sizeof p->buf - 1)
      p->used = 0; /* a line too long: not one of ours */
    ssize_t r =
        read(p->status_fd, p->buf + p->used, sizeof p->buf - 1 - p->used);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return 0;
    p->used += (size_t)r;
  }
}

/* 1 when line contains needle with "step":>=min_step (min_step < 0:
 * any). */
static int line_is(const char *line, const char *needle, int min_step) {
  if (!strstr(line, needle))
    return 0;
  const char *s = strstr(line, "\"step\":");
  int step = s ? atoi(s + 7) : -1;
  return min_step < 0 || step >= min_step;
}

/* Reads status lines until one contains `needle` with "step":>=min_step
 * (min_step < 0: any), or the trainer closes the pipe. 1 when found. */
static int trainer_wait_line(trainer_proc *p, const char *needle,
                             int min_step) {
  char line[4096];
  while (trainer_next_line(p, line, sizeof line))
    if (line_is(line, needle, min_step))
      return 1;
  return 0;
}

static int trainer_finish(trainer_proc *p) {
  close(p->status_fd);
  int st;
  assert_int_equal(waitpid(p->pid, &st, 0), p->pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void read_final(const char *dir, int step, nw_ckpt_state *st) {
  char path[1024], err[512];
  nw_ckpt_path(dir, step, path, sizeof path);
  if (nw_ckpt_read(path, st, err, sizeof err) < 0)
    fail_msg("%s", err);
}

/* 2N steps straight, and the same run killed with SIGKILL at a random step
 * and resumed: bitwise-identical parameters and optimizer state. */
static void test_exact_resume_after_sigkill(void **state) {
  (void)state;
  char a[256], b[256];
  nw_test_tmpdir(a, sizeof a, "straight");
  nw_test_tmpdir(b, sizeof b, "killed");
  const char *run[] = {"--set=train.steps=40", "--set=checkpoint.every=1",
                       NULL};
  trainer_proc p;
  trainer_start(&p, a, run);
  assert_true(trainer_wait_line(&p, "\"event\":\"finish\"", -1));
  assert_int_equal(trainer_finish(&p), 0);

  srand(nw_test_seed("test_exact_resume_after_sigkill"));
  int kill_at = 5 + rand() % 30;
  trainer_start(&p, b, run);
  /* checkpoints are written in the background: the kill comes once one is
   * durable (its status line), so that there is one to resume from */
  assert_true(trainer_wait_line(&p, "\"event\":\"checkpoint\"", 1));
  assert_true(trainer_wait_line(&p, "\"event\":\"step\"", kill_at));
  kill(p.pid, SIGKILL);
  assert_int_equal(trainer_finish(&p), 128 + SIGKILL);
  trainer_start(&p, b, run);
  assert_true(trainer_wait_line(&p, "\"event\":\"resume\"", 1));
  assert_true(trainer_wait_line(&p, "\"event\":\"finish\"", -1));
  assert_int_equal(trainer_finish(&p), 0);
  printf("killed at step %d or later, resumed, finished\n", kill_at);

  nw_ckpt_state x, y;
  read_final(a, 40, &x);
  read_final(b, 40, &y);
  assert_int_equal(x.num_params, y.num_params);
  assert_memory_equal(x.params, y.params, x.num_params * sizeof(float));
  assert_memory_equal(x.exp_avg, y.exp_avg, x.num_params * sizeof(float));
  assert_memory_equal(x.exp_avg_sq, y.exp_avg_sq, x.num_params * sizeof(float));
  assert_int_equal(x.tokens_seen, y.tokens_seen);
  nw_ckpt_free(&x);
  nw_ckpt_free(&y);
}

/* Stopped with SIGTERM (the trainer checkpoints and exits 0), resumed with
 * the micro-batch halved and accumulation doubled: within 1e-5 relative of
 * the straight run. */
static void test_resume_with_halved_micro_batch(void **state) {
  (void)state;
  char a[256], b[256];
  nw_test_tmpdir(a, sizeof a, "micro8");
  nw_test_tmpdir(b, sizeof b, "micro4");
  const char *run8[] = {"--set=train.steps=30", "--set=checkpoint.every=0",
                        "--set=batch.micro=8", NULL};
  const char *run4[] = {"--set=train.steps=30", "--set=checkpoint.every=0",
                        "--set=batch.micro=4", NULL};
  trainer_proc p;
  trainer_start(&p, a, run8);
  assert_true(trainer_wait_line(&p, "\"event\":\"finish\"", -1));
  assert_int_equal(trainer_finish(&p), 0);

  trainer_start(&p, b, run8);
  assert_true(trainer_wait_line(&p, "\"event\":\"step\"", 24));
  kill(p.pid, SIGTERM);
  assert_true(trainer_wait_line(&p, "\"event\":\"stop\"", -1));
  assert_int_equal(trainer_finish(&p), NW_EXIT_FINISHED);
  trainer_start(&p, b, run4);
  assert_true(trainer_wait_line(&p, "\"event\":\"resume\"", 24));
  assert_true(trainer_wait_line(&p, "\"event\":\"finish\"", -1));
  assert_int_equal(trainer_finish(&p), 0);

  nw_ckpt_state x, y;
  read_final(a, 30, &x);
  read_final(b, 30, &y);
  assert_int_equal(y.micro, 4);
  assert_int_equal(y.accum, 8);
  assert_int_equal(y.effective, x.effective);
  double rel = nw_test_rel_diff(y.params, x.params, x.num_params);
  printf("micro 8 -> 4 at a SIGTERM: max relative difference %.3g\n", rel);
  assert_true(rel < 1e-5);
  nw_ckpt_free(&x);
  nw_ckpt_free(&y);
}

/* A checkpoint of another model is refused, naming the setting. */
static void test_shape_mismatch_refused(void **state) {
  (void)state;
  char dir[256];
  nw_test_tmpdir(dir, sizeof dir, "shape");
  const char *run[] = {"--set=train.steps=2", NULL};
  trainer_proc p;
  trainer_start(&p, dir, run);
  assert_true(trainer_wait_line(&p, "\"event\":\"finish\"", -1));
  assert_int_equal(trainer_finish(&p), 0);
  char dirset[320], out[8192];
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", dir);
  char *argv[] = {(char *)NW_TRAIN_BIN,
                  dirset,
                  "--set=model.n_layer=2",
                  "--set=model.n_embd=96",
                  "--set=model.n_head=4",
                  "--set=train.steps=4",
                  NULL};
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "model.n_embd is 64 in the checkpoint"));
  char *argv2[] = {(char *)NW_TRAIN_BIN,    dirset,
                   "--set=model.n_layer=2", "--set=model.n_embd=64",
                   "--set=model.n_head=4",  "--set=batch.effective=16",
                   "--set=train.steps=4",   NULL};
  assert_int_equal(nw_test_run_cmd(argv2, out, sizeof out), NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "batch.effective is 32 in the checkpoint"));
  char *argv3[] = {(char *)NW_TRAIN_BIN, dirset, "--resume",
                   "/nonexistent/ckpt.h5", NULL};
  assert_int_equal(nw_test_run_cmd(argv3, out, sizeof out), NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "/nonexistent/ckpt.h5"));
}

/* Zero lost steps: a naturally produced OOM after some completed steps
 * leaves an emergency checkpoint of the last completed step, and the
 * resumed run starts at the step that failed. */
static void oom_then_resume(const char *tag, const char *const *sets,
                            const char *const *resume_sets) {
  char dir[256], dev[64];
  nw_test_tmpdir(dir, sizeof dir, tag);
  snprintf(dev, sizeof dev, "nwr-%d-%s", (int)getpid(), tag);
  char devset[128];
  snprintf(devset, sizeof devset, "--set=device.name=%s", dev);
  const char *args[32];
  int n = 0;
  args[n++] = devset;
  args[n++] = "--set=checkpoint.every=0"; /* only the emergency one */
  for (int i = 0; sets[i]; i++)
    args[n++] = sets[i];
  args[n] = NULL;
  trainer_proc p;
  trainer_start(&p, dir, args);
  assert_true(trainer_wait_line(&p, "\"event\":\"oom\"", -1));
  assert_int_equal(trainer_finish(&p), NW_EXIT_OOM);
  char path[512], err[512];
  snprintf(path, sizeof path, "%s/%s", dir, NW_OOM_REPORT_FILE);
  nw_oom_report rep;
  if (nw_oom_report_read(path, &rep, err, sizeof err) < 0)
    fail_msg("%s", err);
  assert_true(rep.step > 0);
  assert_true(rep.emergency_checkpoint);
  char want[1024];
  nw_ckpt_path(dir, rep.step, want, sizeof want);
  assert_string_equal(rep.checkpoint, want);
  /* the resumed run (with the setting a policy would change) starts there */
  n = 2;
  for (int i = 0; resume_sets[i]; i++)
    args[n++] = resume_sets[i];
  args[n] = NULL;
  trainer_start(&p, dir, args);
  assert_true(trainer_wait_line(&p, "\"event\":\"resume\"", rep.step));
  assert_true(trainer_wait_line(&p, "\"event\":\"start\"", rep.step));
  assert_true(trainer_wait_line(&p, "\"event\":\"step\"", rep.step + 1));
  kill(p.pid, SIGKILL);
  trainer_finish(&p);
  printf("%s: OOM after %d completed steps; resumed at step %d\n", tag,
         rep.step, rep.step);
  nw_vdev_unlink(dev);
}

static void test_zero_lost_steps(void **state) {
  (void)state;
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model.n_layer = 2;
  cfg.model.n_embd = 64;
  nw_estimate typical, longest;
  nw_estimate_train(&cfg, 8, 14, 0, &typical);
  nw_estimate_train(&cfg, 8, 24, 0, &longest);
  char mem[64];
  snprintf(mem, sizeof mem, "--set=device.memory=%llu",
           (unsigned long long)((typical.total + longest.total) / 2));
  /* sequence-length: a rare long problem; the policy would shorten */
  const char *seq[] = {mem, "--set=train.steps=400", NULL};
  const char *seq_resume[] = {mem, "--set=train.steps=400",
                              "--set=data.max_len=14", NULL};
  oom_then_resume("seq", seq, seq_resume);

  /* eval-cache: the kept cache of the evaluation at step 5 */
  nw_config ec = cfg;
  ec.eval.batch = 32;
  ec.eval.every = 5;
  uint64_t kv = nw_estimate_kept_kv(&ec);
  nw_estimate train, with_kv, first_eval;
  nw_estimate_train(&ec, 8, 8, 0, &train);
  nw_estimate_train(&ec, 8, 5, kv, &with_kv);
  ec.eval.release_cache = 1;
  nw_estimate_eval(&ec, 8, &first_eval);
  double need = train.total > first_eval.total ? train.total : first_eval.total;
  assert_true(need < with_kv.total);
  snprintf(mem, sizeof mem, "--set=device.memory=%llu",
           (unsigned long long)((need + with_kv.total) / 2));
  const char *kvs[] = {mem,
                       "--set=data.long_fraction=0",
                       "--set=eval.every=5",
                       "--set=eval.batch=32",
                       "--set=eval.batches=1",
                       "--set=eval.generate=32",
                       "--set=train.steps=50",
                       NULL};
  const char *kv_resume[] = {mem,
                             "--set=data.long_fraction=0",
                             "--set=eval.every=5",
                             "--set=eval.batch=32",
                             "--set=eval.batches=1",
                             "--set=eval.generate=32",
                             "--set=train.steps=50",
                             "--set=eval.release_cache=true",
                             NULL};
  oom_then_resume("kv", kvs, kv_resume);
}

/* nightwatch ckpt ls|verify|inspect on a real run directory, and on a
 * checkpoint with one flipped byte in its data. */
static void test_ckpt_cli(void **state) {
  (void)state;
  char dir[256], out[1 << 15];
  nw_test_tmpdir(dir, sizeof dir, "cli");
  const char *run[] = {"--set=train.steps=3", "--set=checkpoint.every=1", NULL};
  trainer_proc p;
  trainer_start(&p, dir, run);
  assert_true(trainer_wait_line(&p, "\"event\":\"finish\"", -1));
  assert_int_equal(trainer_finish(&p), 0);
  char *ls[] = {(char *)NW_BIN, "ckpt", "ls", dir, NULL};
  assert_int_equal(nw_test_run_cmd(ls, out, sizeof out), 0);
  assert_non_null(strstr(out, "ckpt-0000000003.h5"));
  char *verify[] = {(char *)NW_BIN, "ckpt", "verify", dir, NULL};
  assert_int_equal(nw_test_run_cmd(verify, out, sizeof out), 0);
  char path[1024];
  nw_ckpt_path(dir, 3, path, sizeof path);
  char *inspect[] = {(char *)NW_BIN, "ckpt", "inspect", path, NULL};
  assert_int_equal(nw_test_run_cmd(inspect, out, sizeof out), 0);
  assert_non_null(strstr(out, "step            3"));
  assert_non_null(strstr(out, "transformer.h.1.mlp.c_fc.weight"));
  /* flip a byte in the middle of the file: inside the parameters */
  FILE *f = fopen(path, "r+b");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size / 2, SEEK_SET);
  int c = fgetc(f);
  fseek(f, size / 2, SEEK_SET);
  fputc(c ^ 0x40, f);
  fclose(f);
  char *verify1[] = {(char *)NW_BIN, "ckpt", "verify", path, NULL};
  assert_int_equal(nw_test_run_cmd(verify1, out, sizeof out), 1);
  assert_non_null(strstr(out, "DAMAGED"));
  assert_int_equal(nw_test_run_cmd(verify, out, sizeof out), 1);
  /* the trainer resumes from the previous good one */
  char dirset[320];
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", dir);
  char *resume[] = {(char *)NW_TRAIN_BIN,
                    dirset,
                    "--set=model.n_layer=2",
                    "--set=model.n_embd=64",
                    "--set=model.n_head=4",
                    "--set=eval.every=0",
                    "--set=train.steps=4",
                    "--set=data.long_fraction=0.05",
                    "--set=data.long_max_digits=10",
                    "--set=train.warmup_steps=5",
                    NULL};
  assert_int_equal(nw_test_run_cmd(resume, out, sizeof out), 0);
  assert_non_null(strstr(out, "damaged, skipped"));
  /* from an older one (writes are skipped while one is in flight, so which
   * older one depends on timing), never the damaged one */
  assert_non_null(strstr(out, "resumed from"));
  assert_null(strstr(out, "ckpt-0000000003.h5 at step 3"));
}

/* A checkpoint that cannot be written (the documented test-only switch
 * makes every write fail midway, as a full disk does) is reported in the
 * status lines and leaves nothing behind, and training goes on; the run's
 * end, which has no checkpoint to show for it, is a failure. */
static void test_failed_writes_do_not_stop_training(void **state) {
  (void)state;
  char dir[256];
  nw_test_tmpdir(dir, sizeof dir, "diskfull");
  const char *run[] = {"--set=train.steps=6", "--set=checkpoint.every=2",
                       "--set=checkpoint.max_failures=100", NULL};
  setenv("NIGHTWATCH_TEST_CKPT_FAIL", "write", 1);
  trainer_proc p;
  trainer_start(&p, dir, run);
  unsetenv("NIGHTWATCH_TEST_CKPT_FAIL");
  /* a write's error comes from the background writer, in any order with
   * the step lines: both are looked for to the end of the run */
  char line[4096];
  int errors = 0, last_step = 0;
  while (trainer_next_line(&p, line, sizeof line)) {
    errors += line_is(line, "\"event\":\"checkpoint_error\"", 2);
    if (line_is(line, "\"event\":\"step\"", 6))
      last_step = 6;
  }
  assert_true(errors >= 1);
  assert_int_equal(last_step, 6); /* training went on */
  assert_int_equal(trainer_finish(&p), NW_EXIT_FAILURE);
  char sub[320];
  snprintf(sub, sizeof sub, "%s/%s", dir, NW_CKPT_SUBDIR);
  char paths[4][NW_PATH_MAX];
  int n = -1;
  char err[256];
  assert_int_equal(nw_ckpt_list(dir, paths, 4, &n, err, sizeof err), 0);
  assert_int_equal(n, 0);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", sub);
  assert_int_not_equal(system(cmd), 0); /* no temporary left */
}

/* Loading a checkpoint's optimizer state onto a device another process has
 * filled is an OOM at init (exit 75 and a report), not a config error: the
 * supervisor must be able to recover it. */
static void test_oom_while_loading(void **state) {
  (void)state;
  char dir[256], dev[64], devset[128], memset_[64], out[1 << 15];
  nw_test_tmpdir(dir, sizeof dir, "loadoom");
  snprintf(dev, sizeof dev, "nwr-%d-load", (int)getpid());
  snprintf(devset, sizeof devset, "--set=device.name=%s", dev);
  const char *run[] = {"--set=train.steps=2", NULL};
  trainer_proc p;
  trainer_start(&p, dir, run);
  assert_true(trainer_wait_line(&p, "\"event\":\"finish\"", -1));
  assert_int_equal(trainer_finish(&p), 0);

  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model.n_layer = 2;
  cfg.model.n_embd = 64;
  nw_estimate st;
  nw_estimate_static(&cfg, &st);
  uint64_t cap = st.total * 2;
  snprintf(memset_, sizeof memset_, "--set=device.memory=%llu",
           (unsigned long long)cap);
  /* another run holds all but the parameters, gradients and half the
   * moments */
  nw_vdev *other;
  char err[256];
  assert_int_equal(nw_vdev_open(&other, dev, cap, "other-run", err, sizeof err),
                   0);
  uint64_t hold = cap - st.bytes[NW_MEM_PARAMS] - st.bytes[NW_MEM_GRADS] -
                  st.bytes[NW_MEM_OPTIMIZER] / 2;
  assert_int_equal(nw_vdev_reserve(other, hold), 0);
  char dirset[320];
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", dir);
  char *argv[] = {(char *)NW_TRAIN_BIN,
                  dirset,
                  devset,
                  memset_,
                  "--set=model.n_layer=2",
                  "--set=model.n_embd=64",
                  "--set=model.n_head=4",
                  "--set=eval.every=0",
                  "--set=train.steps=4",
                  "--set=data.long_fraction=0.05",
                  "--set=data.long_max_digits=10",
                  "--set=train.warmup_steps=5",
                  NULL};
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), NW_EXIT_OOM);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, NW_OOM_REPORT_FILE);
  nw_oom_report rep;
  if (nw_oom_report_read(path, &rep, err, sizeof err) < 0)
    fail_msg("%s", err);
  assert_int_equal(rep.phase, NW_PHASE_INIT);
  assert_int_equal(rep.requested_category, NW_MEM_OPTIMIZER);
  assert_int_equal(rep.n_procs, 1);
  nw_vdev_close(other);
  nw_vdev_unlink(dev);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_resume_after_sigkill),
      cmocka_unit_test(test_resume_with_halved_micro_batch),
      cmocka_unit_test(test_shape_mismatch_refused),
      cmocka_unit_test(test_zero_lost_steps),
      cmocka_unit_test(test_ckpt_cli),
      cmocka_unit_test(test_failed_writes_do_not_stop_training),
      cmocka_unit_test(test_oom_while_loading),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
