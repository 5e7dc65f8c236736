/* test_estimate.c — the memory estimator against measured peaks over a grid
 * of model sizes, micro-batches and sequence lengths. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/config.h"
#include "base/error.h"
#include "device/mem.h"
#include "model/estimate.h"
#include "trainer/model/model.h"
#include "trainer/optim.h"

/* Every category within 5% of the measured peak (both zero counts too). */
static void assert_close(const char *what, const uint64_t *est,
                         const uint64_t *meas) {
  for (int c = 0; c < NW_MEM_NCAT; c++) {
    double e = (double)est[c], m = (double)meas[c];
    double rel = m > 0 ? fabs(e - m) / m : (e > 0 ? 1.0 : 0.0);
    if (rel > 0.05)
      fail_msg("%s: %s estimated %.0f bytes, measured peak %.0f (%.1f%%)", what,
               nw_mem_category_name((nw_mem_category)c), e, m, 100 * rel);
  }
}

static void fill_tokens(int *x, size_t n, int V) {
  for (size_t i = 0; i < n; i++)
    x[i] = (int)((i * 2654435761u) % (unsigned)V);
}

static void test_train_grid(void **state) {
  (void)state;
  static const nw_model_config shapes[] = {
      {1, 2, 32, 256, 64}, {2, 4, 64, 256, 128}, {3, 4, 96, 300, 96}};
  static const int micros[] = {1, 4, 8};
  static const int lens[] = {5, 24, 64};
  int points = 0;
  for (size_t s = 0; s < 3; s++)
    for (size_t b = 0; b < 3; b++)
      for (size_t l = 0; l < 3; l++) {
        nw_config cfg;
        nw_config_defaults(&cfg);
        cfg.model = shapes[s];
        int B = micros[b], T = lens[l];
        nw_mem *mem;
        nw_model *model;
        nw_optim *opt;
        assert_int_equal(nw_mem_create(&mem, 0), 0);
        assert_int_equal(
            nw_model_create(&model, &cfg.model, &nw_backend_cpu, mem, 1), 0);
        assert_int_equal(nw_optim_create(&opt, model, &nw_backend_cpu, mem), 0);
        assert_int_equal(nw_optim_alloc_state(opt), 0);
        size_t n = (size_t)B * T;
        int *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        assert_non_null(x);
        assert_non_null(y);
        fill_tokens(x, n, cfg.model.vocab_size);
        fill_tokens(y, n, cfg.model.vocab_size);
        double loss;
        assert_int_equal(
            nw_model_forward_backward(model, x, y, B, T, 1.0f / n, &loss), 0);
        nw_mem_stats st;
        nw_mem_stats_get(mem, &st);
        nw_estimate e;
        nw_estimate_train(&cfg, B, T, 0, &e);
        char what[128];
        snprintf(what, sizeof what, "L%d C%d B%d T%d", shapes[s].n_layer,
                 shapes[s].n_embd, B, T);
        assert_close(what, e.bytes, st.peak);
        assert_true(fabs((double)e.total - (double)st.peak_total) <=
                    0.05 * (double)st.peak_total);
        points++;
        free(x);
        free(y);
        nw_optim_destroy(opt);
        nw_model_destroy(model);
        nw_mem_destroy(mem);
      }
  assert_int_equal(points, 27);
}

/* An evaluation: validation forward, then generation with the cache. */
static void test_eval(void **state) {
  (void)state;
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.eval.batch = 6;
  int T = 40;
  nw_mem *mem;
  nw_model *model;
  nw_optim *opt;
  assert_int_equal(nw_mem_create(&mem, 0), 0);
  assert_int_equal(nw_model_create(&model, &cfg.model, &nw_backend_cpu, mem, 1),
                   0);
  assert_int_equal(nw_optim_create(&opt, model, &nw_backend_cpu, mem), 0);
  assert_int_equal(nw_optim_alloc_state(opt), 0);
  size_t n = (size_t)cfg.eval.batch * T;
  int *x = calloc(n, sizeof *x), *y = calloc(n, sizeof *y);
  assert_non_null(x);
  assert_non_null(y);
  double loss;
  assert_int_equal(nw_model_forward_loss(model, x, y, cfg.eval.batch, T, &loss),
                   0);
  assert_int_equal(
      nw_model_kv_alloc(model, cfg.eval.batch, cfg.model.max_seq_len), 0);
  int next[6];
  assert_int_equal(nw_model_decode_step(model, x, 0, next), 0);
  nw_mem_stats st;
  nw_mem_stats_get(mem, &st);
  nw_estimate e;
  nw_estimate_eval(&cfg, T, &e);
  assert_close("eval", e.bytes, st.peak);
  assert_int_equal(nw_model_kv_bytes(model), nw_estimate_kept_kv(&cfg));
  free(x);
  free(y);
  nw_optim_destroy(opt);
  nw_model_destroy(model);
  nw_mem_destroy(mem);
}

static void test_capacity_check(void **state) {
  (void)state;
  nw_config cfg;
  nw_config_defaults(&cfg);
  char err[512];
  cfg.device.memory = 4u << 20;
  assert_int_equal(nw_estimate_check_capacity(&cfg, err, sizeof err),
                   NW_ECONFIG);
  assert_non_null(strstr(err, "device.memory"));
  assert_non_null(strstr(err, "parameters"));
  cfg.device.memory = 64u << 20;
  assert_int_equal(nw_estimate_check_capacity(&cfg, err, sizeof err), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_grid),
      cmocka_unit_test(test_eval),
      cmocka_unit_test(test_capacity_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
