/* test_blas.c — the OpenBLAS core decision and what the trainer reports. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "device/blas_setup.h"
#include "testutil.h"

static void test_choose_core(void **state) {
  (void)state;
  /* a slow core on an AVX-512 CPU is corrected */
  assert_string_equal(nw_blas_choose_core(1, "Prescott", NULL, 0), "SkylakeX");
  assert_string_equal(nw_blas_choose_core(1, "Haswell", "", 0), "SkylakeX");
  /* already fast, no AVX-512, the user's choice, or correction disabled */
  assert_null(nw_blas_choose_core(1, "SkylakeX", NULL, 0));
  assert_null(nw_blas_choose_core(1, "Cooperlake", NULL, 0));
  assert_null(nw_blas_choose_core(0, "Haswell", NULL, 0));
  assert_null(nw_blas_choose_core(1, "Prescott", "Haswell", 0));
  assert_null(nw_blas_choose_core(1, "Prescott", NULL, 1));
}

static int run_trainer(char *out, size_t len) {
  char *argv[] = {(char *)NW_TRAIN_BIN, "--set", "train.steps=0", "--set",
                  "eval.every=0",       NULL};
  return nw_test_run_cmd(argv, out, len);
}

/* The user's OPENBLAS_CORETYPE always stands, and the log says so. */
static void test_user_coretype_respected(void **state) {
  (void)state;
  char out[4096];
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  int rc = run_trainer(out, sizeof out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "OpenBLAS core Haswell"));
  assert_non_null(strstr(out, "set in the environment"));
}

/* Without one, an AVX-512 CPU runs an AVX-512 core, chosen by OpenBLAS or
 * corrected by the trainer, and the sgemm check passed (or it would have
 * exited non-zero). */
static void test_fast_core_without_user_choice(void **state) {
  (void)state;
  char out[4096];
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("NW_BLAS_DETECTED");
  int rc = run_trainer(out, sizeof out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "sgemm check rel err"));
  int fast = strstr(out, "core SkylakeX") || strstr(out, "core Cooperlake") ||
             strstr(out, "core SapphireRapids");
  /* on a CPU without AVX-512 any core is right; with it, a fast one */
  FILE *f = fopen("/proc/cpuinfo", "r");
  assert_non_null(f);
  char line[4096];
  int avx512 = 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "flags", 5) == 0 && strstr(line, " avx512f ") &&
        strstr(line, " avx512bw ") && strstr(line, " avx512vl ") &&
        strstr(line, " avx512dq ") && strstr(line, " avx512cd "))
      avx512 = 1;
  fclose(f);
  if (avx512)
    assert_true(fast);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_choose_core),
      cmocka_unit_test(test_user_coretype_respected),
      cmocka_unit_test(test_fast_core_without_user_choice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
