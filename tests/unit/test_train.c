/* test_train.c — the training loop: micro-batch equivalence, determinism,
 * learning, the program's exit codes and status lines. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/config.h"
#include "base/error.h"
#include "protocol/exit_codes.h"
#include "testutil.h"
#include "trainer/train.h"

/* A small model on the synthetic task with a long tail, so that the
 * micro-batches of one effective batch have different padded lengths. */
static void small_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->model.n_layer = 2;
  cfg->model.n_head = 2;
  cfg->model.n_embd = 32;
  cfg->model.max_seq_len = 48;
  cfg->data.long_fraction = 0.2;
  cfg->data.long_max_digits = 12;
  cfg->batch.effective = 8;
  cfg->batch.micro = 8;
  cfg->train.steps = 3;
  cfg->train.warmup_steps = 1;
  cfg->eval.every = 0;
}

static nw_trainer *make_trainer(const nw_config *cfg) {
  char err[512];
  assert_int_equal(nw_config_validate(cfg, err, sizeof err), 0);
  nw_trainer *t = NULL;
  int rc = nw_trainer_create(&t, cfg, err, sizeof err);
  if (rc < 0)
    fail_msg("trainer: %s", err);
  return t;
}

static float *copy_params(nw_trainer *t) {
  size_t n = nw_model_num_params(t->model);
  float *p = malloc(n * sizeof *p);
  assert_non_null(p);
  memcpy(p, nw_model_params(t->model), n * sizeof *p);
  return p;
}

/* (micro 8, accum 1), (2, 4) and (1, 8): one optimizer step each from the
 * same initial parameters must agree within 1e-5 relative. */
static void test_micro_batch_equivalence(void **state) {
  (void)state;
  static const int micros[] = {8, 2, 1};
  float *ref = NULL;
  size_t n = 0;
  int seqs_differ = 0;
  for (size_t i = 0; i < 3; i++) {
    nw_config cfg;
    small_config(&cfg);
    cfg.batch.micro = micros[i];
    nw_trainer *t = make_trainer(&cfg);
    nw_step_result r;
    assert_int_equal(nw_trainer_step(t, &r), 0);
    if (micros[i] == 1 && r.max_seq > 0) {
      /* the batch really has different lengths: some row is shorter */
      for (int b = 0; b < 8; b++) {
        nw_batch one = {0};
        assert_int_equal(
            nw_batch_build(&one, t->data, NW_SPLIT_TRAIN, (uint64_t)b, 1), 0);
        if (one.T != r.max_seq)
          seqs_differ = 1;
        nw_batch_free(&one);
      }
    }
    float *p = copy_params(t);
    if (!ref) {
      ref = p;
      n = nw_model_num_params(t->model);
    } else {
      double rel = nw_test_rel_diff(p, ref, n);
      printf("micro %d: max relative difference %.3g\n", micros[i], rel);
      assert_true(rel < 1e-5);
      free(p);
    }
    nw_trainer_destroy(t);
  }
  assert_true(seqs_differ);
  free(ref);
}

static void test_determinism(void **state) {
  (void)state;
  float *a = NULL;
  for (int run = 0; run < 2; run++) {
    nw_config cfg;
    small_config(&cfg);
    cfg.batch.micro = 4;
    nw_trainer *t = make_trainer(&cfg);
    for (int s = 0; s < 3; s++) {
      nw_step_result r;
      assert_int_equal(nw_trainer_step(t, &r), 0);
    }
    float *p = copy_params(t);
    size_t n = nw_model_num_params(t->model);
    if (run == 0) {
      a = p;
    } else {
      assert_memory_equal(a, p, n * sizeof *p);
      free(p);
    }
    nw_trainer_destroy(t);
  }
  free(a);
}

/* A short run of the default settings learns: the validation loss falls well
 * below its start. (The README's main command runs the full schedule.) */
static void test_learning(void **state) {
  (void)state;
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.train.steps = 120;
  cfg.eval.generate = 0;
  nw_trainer *t = make_trainer(&cfg);
  nw_eval_result e0, e1;
  assert_int_equal(nw_trainer_eval(t, &e0), 0);
  for (int s = 0; s < cfg.train.steps; s++) {
    nw_step_result r;
    assert_int_equal(nw_trainer_step(t, &r), 0);
  }
  assert_int_equal(nw_trainer_eval(t, &e1), 0);
  printf("val loss %.3f -> %.3f\n", e0.val_loss, e1.val_loss);
  assert_true(e1.val_loss < 0.5 * e0.val_loss);
  nw_trainer_destroy(t);
}

/* Runs the trainer in a fresh run directory of its own (a run directory
 * with checkpoints would be resumed) with up to three arguments. */
static int run_train(char *out, size_t len, const char *a1, const char *a2,
                     const char *a3) {
  char dir[256], dirset[300];
  nw_test_tmpdir(dir, sizeof dir, "train");
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", dir);
  char *argv[] = {(char *)NW_TRAIN_BIN, dirset,     (char *)a1,
                  (char *)a2,           (char *)a3, NULL};
  return nw_test_run_cmd(argv, out, len);
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Bad input: a message naming the file, line or key, and the config-error
 * exit code. */
static void test_bad_input(void **state) {
  (void)state;
  char dir[256], path[512], out[8192];
  nw_test_tmpdir(dir, sizeof dir, "badcfg");

  snprintf(path, sizeof path, "%s/missing.conf", dir);
  assert_int_equal(run_train(out, sizeof out, path, NULL, NULL),
                   NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "missing.conf"));

  snprintf(path, sizeof path, "%s/unknown.conf", dir);
  write_file(path, "[model]\nn_layer = 2\nn_layers = 3\n");
  assert_int_equal(run_train(out, sizeof out, path, NULL, NULL),
                   NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "unknown.conf:3"));
  assert_non_null(strstr(out, "n_layers"));

  snprintf(path, sizeof path, "%s/range.conf", dir);
  write_file(path, "[batch]\nmicro = -4\n");
  assert_int_equal(run_train(out, sizeof out, path, NULL, NULL),
                   NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "range.conf:2"));

  assert_int_equal(run_train(out, sizeof out, "--set", "batch.micro=7", NULL),
                   NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "batch.effective"));

  assert_int_equal(
      run_train(out, sizeof out, "--set", "data.source=text", NULL),
      NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "data.path"));

  snprintf(path, sizeof path, "--set=data.path=%s/none.txt", dir);
  assert_int_equal(
      run_train(out, sizeof out, "--set=data.source=text", path, NULL),
      NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "none.txt"));

  assert_int_equal(run_train(out, sizeof out, "--bogus", NULL, NULL),
                   NW_EXIT_USAGE);
}

/* The program end to end: status lines on NIGHTWATCH_STATUS_FD, one per
 * step, and the finished exit code. */
static void test_status_lines(void **state) {
  (void)state;
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  char fdstr[16];
  snprintf(fdstr, sizeof fdstr, "%d", pfd[1]);
  setenv("NIGHTWATCH_STATUS_FD", fdstr, 1);
  char out[1 << 16];
  int rc = run_train(out, sizeof out, "--set", "train.steps=5",
                     "--set=eval.every=5");
  unsetenv("NIGHTWATCH_STATUS_FD");
  close(pfd[1]);
  assert_int_equal(rc, NW_EXIT_FINISHED);
  static char lines[1 << 16];
  ssize_t got = read(pfd[0], lines, sizeof lines - 1);
  close(pfd[0]);
  assert_true(got > 0);
  lines[got] = 0;
  int steps = 0;
  for (char *p = lines; (p = strstr(p, "\"event\":\"step\"")); p++)
    steps++;
  assert_int_equal(steps, 5);
  assert_non_null(strstr(lines, "\"event\":\"start\""));
  assert_non_null(strstr(lines, "\"event\":\"eval\""));
  assert_non_null(strstr(lines, "\"event\":\"finish\""));
  assert_non_null(strstr(out, "OpenBLAS core"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_micro_batch_equivalence),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_learning),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_status_lines),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
