/* test_crash.c — crash safety of checkpoints: the trainer is killed with
 * SIGKILL at random instants while it writes checkpoints (one every step),
 * at least 50 times; every time, the newest checkpoint that verifies is
 * found (half-written files are passed over, never loaded) and the next run
 * resumes from it. */
#define _GNU_SOURCE
#include <dirent.h>
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

#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "testutil.h"

#define KILLS 50

static pid_t start_trainer(const char *dir) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    char dirset[512];
    snprintf(dirset, sizeof dirset, "--set=run.dir=%s", dir);
    /* checkpoints of ~20 MB, one after every step: a kill lands inside a
     * write most of the time */
    execl(NW_TRAIN_BIN, NW_TRAIN_BIN, dirset, "--set=model.n_layer=4",
          "--set=model.n_embd=192", "--set=model.n_head=4",
          "--set=eval.every=0", "--set=checkpoint.every=1",
          "--set=checkpoint.keep_last=2", "--set=train.steps=100000",
          "--set=batch.micro=32", (char *)NULL);
    _exit(127);
  }
  return pid;
}

/* 1 while a temporary of writer `pid` exists: a write in progress. */
static int writing(const char *dir, pid_t pid) {
  char sub[600], suffix[32];
  snprintf(sub, sizeof sub, "%s/%s", dir, NW_CKPT_SUBDIR);
  snprintf(suffix, sizeof suffix, ".tmp.%d", (int)pid);
  DIR *d = opendir(sub);
  if (!d)
    return 0;
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, suffix))
      found = 1;
  closedir(d);
  return found;
}

/* Temporaries left by the killed writers (a later writer removes them). */
static int count_tmp(const char *dir) {
  char sub[600];
  snprintf(sub, sizeof sub, "%s/%s", dir, NW_CKPT_SUBDIR);
  DIR *d = opendir(sub);
  if (!d)
    return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp."))
      n++;
  closedir(d);
  return n;
}

static void test_sigkill_during_writes(void **state) {
  (void)state;
  char dir[256];
  nw_test_tmpdir(dir, sizeof dir, "crash");
  /* where each kill lands: printed, and NW_TEST_SEED replays the choices */
  srand(nw_test_seed("test_sigkill_during_writes"));
  long long last_step = -1;
  int tmp_seen = 0, advanced = 0;
  for (int k = 0; k < KILLS; k++) {
    pid_t pid = start_trainer(dir);
    /* let 0 to 3 writes complete, wait for the next one to begin (its
     * temporary appears), then kill at a random instant inside it */
    int let = rand() % 4;
    for (int w = 0; w <= let; w++) {
      for (int i = 0; i < 10000 && !writing(dir, pid); i++)
        usleep(300);
      if (w < let)
        for (int i = 0; i < 10000 && writing(dir, pid); i++)
          usleep(300);
    }
    usleep(rand() % 15000);
    kill(pid, SIGKILL);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    tmp_seen += count_tmp(dir) > 0;

    char path[1024], err[1024];
    int rc = nw_ckpt_find_latest(dir, 30.0, NULL, path, sizeof path, err,
                                 sizeof err);
    if (rc == NW_ENOTFOUND && last_step < 0)
      continue; /* killed before the first checkpoint */
    if (rc < 0)
      fail_msg("kill %d: no loadable checkpoint: %s", k, err);
    nw_ckpt_state ck;
    if (nw_ckpt_read(path, &ck, err, sizeof err) < 0)
      fail_msg("kill %d: %s verified but does not load: %s", k, path, err);
    /* never older than what was durable before: progress is kept */
    assert_true(ck.step >= last_step);
    advanced += ck.step > last_step;
    last_step = ck.step;
    nw_ckpt_free(&ck);
  }
  printf("%d kills: newest good checkpoint at step %lld, advanced %d times, "
         "a half-written temporary was present after %d kills\n",
         KILLS, last_step, advanced, tmp_seen);
  assert_true(last_step > 0);
  assert_true(advanced > KILLS / 4);
  assert_true(tmp_seen >= KILLS / 2); /* most kills hit a write */
  /* and the last one resumes: a short run from it finishes */
  char dirset[512], steps[64], out[1 << 14];
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", dir);
  snprintf(steps, sizeof steps, "--set=train.steps=%lld", last_step + 1);
  char *argv[] = {(char *)NW_TRAIN_BIN,
                  dirset,
                  "--set=model.n_layer=4",
                  "--set=model.n_embd=192",
                  "--set=model.n_head=4",
                  "--set=eval.every=0",
                  "--set=batch.micro=32",
                  steps,
                  NULL};
  int rc = nw_test_run_cmd(argv, out, sizeof out);
  if (rc != 0)
    fail_msg("resume after the last kill: exit %d\n%s", rc, out);
  assert_non_null(strstr(out, "resumed from"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sigkill_during_writes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
