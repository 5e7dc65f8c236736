/* gpu_test.h — what the GPU tests share: skip without a GPU (exit 77, which
 * ctest's SKIP_RETURN_CODE counts as skipped), and a trainer config for
 * either device.
 * defines: nw_gpu_test_require, nw_gpu_test_config */
#ifndef NW_GPU_TEST_H
#define NW_GPU_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "base/config.h"
#include "cuda/nw_cuda.h"

#define NW_GPU_SKIP 77

/* Exits 77 with a line saying why when there is no usable GPU. */
static inline void nw_gpu_test_require(const char *test) {
  int n = 0;
  char err[256] = "";
  if (nw_cuda_device_count(&n, err, sizeof err) < 0 || n == 0) {
    printf("%s: SKIP: no CUDA GPU (%s)\n", test,
           err[0] ? err : "the runtime sees 0 devices");
    exit(NW_GPU_SKIP);
  }
}

/* The small default model on the built-in task, nothing written unless
 * asked, on `type` (cpu or cuda) with `precision`. */
static inline void nw_gpu_test_config(nw_config *c, const char *dir,
                                      const char *type, const char *precision,
                                      int steps) {
  nw_config_defaults(c);
  snprintf(c->run.dir, sizeof c->run.dir, "%s", dir);
  snprintf(c->device.type, sizeof c->device.type, "%s", type);
  snprintf(c->device.precision, sizeof c->device.precision, "%s", precision);
  c->train.steps = steps;
  c->eval.every = 0;
  c->checkpoint.every = 0;
  c->train.threads = 0;
}

#endif
