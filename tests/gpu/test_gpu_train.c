/* test_gpu_train.c — whole training runs on the GPU against the CPU, in
 * process: 20 steps from the same initialisation and batches agree in loss
 * within 1e-3 relative at every step (TF32), and a checkpoint written on
 * one device resumes on the other (GPU -> CPU and CPU -> GPU) and goes on
 * as the uninterrupted CPU run does. Exit 77 without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/error.h"
#include "gpu_test.h"
#include "testutil.h"
#include "trainer/train.h"

#define STEPS 20

/* Losses of steps [from, to) of a trainer on `type`, resuming from the run
 * directory's newest checkpoint when there is one; ends with a checkpoint
 * of the last step. */
static void train(const char *dir, const char *type, const char *precision,
                  int from, int to, double *loss) {
  nw_config c;
  nw_gpu_test_config(&c, dir, type, precision, STEPS);
  nw_trainer *t = NULL;
  char err[1024];
  int rc = nw_trainer_create(&t, &c, err, sizeof err);
  if (rc < 0)
    fail_msg("%s trainer: %s", type, err);
  if (nw_trainer_resume(t, "auto", err, sizeof err) < 0)
    fail_msg("%s resume: %s", type, err);
  assert_int_equal(t->step, from);
  assert_int_equal(t->device, strcmp(type, "cuda") ? 0 : 1);
  for (int s = from; s < to; s++) {
    nw_step_result r;
    rc = nw_trainer_step(t, &r);
    if (rc < 0)
      fail_msg("%s step %d: %s", type, s, nw_strerror(rc));
    loss[s] = r.loss;
  }
  assert_int_equal(nw_trainer_checkpoint_now(t, "test"), 0);
  nw_trainer_destroy(t);
}

static void expect_close(const char *what, const double *got,
                         const double *want, int from, int to, double tol) {
  for (int s = from; s < to; s++) {
    double e = fabs(got[s] - want[s]) / fabs(want[s]);
    printf("%s step %2d: %.6f vs %.6f (rel %.2e)\n", what, s + 1, got[s],
           want[s], e);
    if (!(e <= tol))
      fail_msg("%s: step %d loss %.6f vs CPU %.6f: relative %.3g > %.3g", what,
               s + 1, got[s], want[s], e, tol);
  }
}

static double cpu_loss[STEPS];

static void test_cpu_reference(void **state) {
  (void)state;
  char dir[512];
  nw_test_tmpdir(dir, sizeof dir, "gpu-ref");
  train(dir, "cpu", "tf32", 0, STEPS, cpu_loss);
}

static void test_tf32_parity_20_steps(void **state) {
  (void)state;
  char dir[512];
  double loss[STEPS];
  nw_test_tmpdir(dir, sizeof dir, "gpu-tf32");
  train(dir, "cuda", "tf32", 0, STEPS, loss);
  expect_close("tf32", loss, cpu_loss, 0, STEPS, 1e-3);
}

static void test_fp32_parity_20_steps(void **state) {
  (void)state;
  char dir[512];
  double loss[STEPS];
  nw_test_tmpdir(dir, sizeof dir, "gpu-fp32");
  train(dir, "cuda", "fp32", 0, STEPS, loss);
  expect_close("fp32", loss, cpu_loss, 0, STEPS, 1e-4);
}

/* GPU checkpoint at step 10 -> CPU to 20; CPU checkpoint at 10 -> GPU. */
static void test_resume_across_devices(void **state) {
  (void)state;
  char d1[512], d2[512];
  double loss[STEPS];
  nw_test_tmpdir(d1, sizeof d1, "gpu-to-cpu");
  train(d1, "cuda", "tf32", 0, STEPS / 2, loss);
  train(d1, "cpu", "tf32", STEPS / 2, STEPS, loss);
  expect_close("gpu->cpu", loss, cpu_loss, 0, STEPS, 1e-3);
  nw_test_tmpdir(d2, sizeof d2, "cpu-to-gpu");
  train(d2, "cpu", "tf32", 0, STEPS / 2, loss);
  train(d2, "cuda", "tf32", STEPS / 2, STEPS, loss);
  expect_close("cpu->gpu", loss, cpu_loss, 0, STEPS, 1e-3);
}

int main(void) {
  nw_gpu_test_require("test_gpu_train");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cpu_reference),
      cmocka_unit_test(test_tf32_parity_20_steps),
      cmocka_unit_test(test_fp32_parity_20_steps),
      cmocka_unit_test(test_resume_across_devices),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
