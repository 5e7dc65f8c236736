/* test_gpu_bf16.c — the BF16 mode trains the built-in task to the accuracy
 * of FP32 products: the default run (the addition task, 2000 steps) on the
 * GPU in tf32 and in bf16, final exact-answer accuracy within 5 points and
 * validation loss within 5%, and the task learned (accuracy above 50%).
 * Minutes on a GPU: label slow. Exit 77 without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "base/error.h"
#include "gpu_test.h"
#include "testutil.h"
#include "trainer/train.h"

static void run(const char *precision, nw_eval_result *ev) {
  char dir[512], err[1024];
  nw_test_tmpdir(dir, sizeof dir, precision);
  nw_config c;
  nw_config_defaults(&c);
  snprintf(c.run.dir, sizeof c.run.dir, "%s", dir);
  snprintf(c.device.type, sizeof c.device.type, "cuda");
  snprintf(c.device.precision, sizeof c.device.precision, "%s", precision);
  c.eval.every = 0; /* one evaluation at the end */
  c.checkpoint.every = 0;
  c.train.log_every = 200;
  nw_trainer *t = NULL;
  if (nw_trainer_create(&t, &c, err, sizeof err) < 0)
    fail_msg("%s", err);
  while (t->step < c.train.steps) {
    nw_step_result r;
    int rc = nw_trainer_step(t, &r);
    if (rc < 0)
      fail_msg("%s step %d: %s", precision, t->step, nw_strerror(rc));
  }
  assert_int_equal(nw_trainer_eval(t, ev), 0);
  printf("%s: val_loss %.4f accuracy %d/%d\n", precision, ev->val_loss,
         ev->gen_correct, ev->gen_total);
  nw_trainer_destroy(t);
}

static void test_bf16_matches_tf32(void **state) {
  (void)state;
  nw_eval_result a, b;
  run("tf32", &a);
  run("bf16", &b);
  assert_true(a.gen_total > 0 && a.gen_total == b.gen_total);
  double acc_a = 100.0 * a.gen_correct / a.gen_total;
  double acc_b = 100.0 * b.gen_correct / b.gen_total;
  assert_true(acc_a > 50.0);
  if (fabs(acc_a - acc_b) > 5.0)
    fail_msg("accuracy tf32 %.1f%% vs bf16 %.1f%%", acc_a, acc_b);
  if (fabs(a.val_loss - b.val_loss) > 0.05 * a.val_loss)
    fail_msg("val_loss tf32 %.4f vs bf16 %.4f", a.val_loss, b.val_loss);
}

int main(void) {
  nw_gpu_test_require("test_gpu_bf16");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bf16_matches_tf32),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
