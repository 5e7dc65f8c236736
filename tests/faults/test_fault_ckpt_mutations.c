/* test_fault_ckpt_mutations.c — 2,000 mutated checkpoints (bit flips, byte
 * runs, truncations, zeroed blocks, spliced garbage) through the isolated
 * verifier that resume uses, and a sample of them through `nightwatch ckpt
 * verify` and `nightwatch-train --resume FILE`: each is good or refused,
 * and neither program ever crashes or hangs on one (issue 13). The seed is
 * printed; NW_TEST_SEED replays it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "fault_fs.h"
#include "testutil.h"

#define NW_MUTANTS 2000
#define NW_PROGRAM_SAMPLE 40 /* of them through both programs as well */

static uint64_t rng;
static uint64_t next(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

/* One mutation of the good file's bytes (in place; *len may shrink). */
static const char *mutate(unsigned char *b, size_t *len) {
  size_t n = *len;
  switch (next() % 5) {
  case 0:
    b[next() % n] ^= (unsigned char)(1u << (next() % 8));
    return "bit flip";
  case 1: {
    size_t at = next() % n, run = 1 + next() % 64;
    for (size_t i = at; i < at + run && i < n; i++)
      b[i] = (unsigned char)next();
    return "random bytes";
  }
  case 2:
    *len = next() % n;
    return "truncated";
  case 3: {
    size_t at = (next() % n) & ~(size_t)4095;
    memset(b + at, 0, at + 4096 <= n ? 4096 : n - at);
    return "zeroed block";
  }
  default: {
    /* an early header byte: superblock, object headers */
    b[next() % (n < 4096 ? n : 4096)] = (unsigned char)next();
    return "header byte";
  }
  }
}

static void spill(const char *path, const unsigned char *b, size_t len) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, b, len), (ssize_t)len);
  close(fd);
}

/* A program on a mutant: it must exit (0 or a failure code), never die of
 * a signal (nw_test_run_cmd gives 128+signal). */
static void program_survives(char *const argv[], const char *what) {
  char out[8192];
  int rc = nw_test_run_cmd(argv, out, sizeof out);
  if (rc < 0 || rc >= 128)
    fail_msg("%s: %s ended with %d:\n%s", what, argv[0], rc, out);
}

static void test_mutants(void **state) {
  (void)state;
  rng = nw_test_seed("checkpoint mutations") | 1;
  char dir[512], good[700], bad[700], err[1024];
  nw_test_tmpdir(dir, sizeof dir, "mut");
  snprintf(good, sizeof good, "%s/ckpt-0000000007.h5", dir);
  nw_ckpt_state st;
  nw_fault_state_init(&st, 7);
  assert_int_equal(nw_ckpt_write(good, &st, err, sizeof err), 0);
  nw_fault_state_fini(&st);
  size_t len = 0;
  unsigned char *orig = (unsigned char *)nw_test_slurp(good, &len);
  assert_non_null(orig);
  unsigned char *b = malloc(len);
  snprintf(bad, sizeof bad, "%s/mutant.h5", dir);
  int refused = 0, passed = 0;
  double t0 = nw_test_now();
  for (int i = 0; i < NW_MUTANTS; i++) {
    memcpy(b, orig, len);
    size_t n = len;
    const char *how = mutate(b, &n);
    spill(bad, b, n);
    int rc = nw_ckpt_verify_isolated(bad, 30, err, sizeof err);
    if (rc != 0 && rc != NW_EDATA)
      fail_msg("mutant %d (%s): rc %d: %s", i, how, rc, err);
    rc == 0 ? passed++ : refused++;
    if (i < NW_PROGRAM_SAMPLE) {
      char *verify[] = {(char *)NW_BIN, "ckpt", "verify", bad, NULL};
      program_survives(verify, how);
      char dirset[600], resume[720];
      snprintf(dirset, sizeof dirset, "--set=run.dir=%s/run", dir);
      snprintf(resume, sizeof resume, "--resume=%s", bad);
      char *train[] = {(char *)NW_TRAIN_BIN,
                       dirset,
                       "--set=model.n_layer=2",
                       "--set=model.n_embd=64",
                       "--set=train.steps=0",
                       resume,
                       NULL};
      program_survives(train, how);
    }
  }
  printf("%d mutants in %.1f s: %d refused, %d still verify (a flip in "
         "unused bytes: the content is identical)\n",
         NW_MUTANTS, nw_test_now() - t0, refused, passed);
  assert_true(refused > NW_MUTANTS * 9 / 10);
  free(b);
  free(orig);
  unlink(bad);
  unlink(good);
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mutants),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
