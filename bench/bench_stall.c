/* bench_stall.c — what a background checkpoint costs the training loop.
 *
 *   build/bench/bench_stall [RUN_DIR]
 *
 * GPT-2-small shape (12 layers, 12 heads, width 768, vocabulary 50257,
 * sequence 256), micro-batch 4. Measured in one run: the time of a plain
 * training step; the stall, i.e. the time the loop waits when a checkpoint
 * starts (the snapshot of parameters and moments into the writer's host
 * buffers); the time of a step taken while the writer thread writes (on 2
 * cores the writer competes for a core); and the write itself. Printed as
 * ratios to one training step: the goal is a stall under 0.1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "checkpoints/ckpt_writer.h"
#include "device/blas_setup.h"
#include "trainer/train.h"

/* The trainer: GPT-2-small's shape at sequence 256, micro-batch 4, long
 * problems, no evaluation, checkpoints started by this bench only. */
static nw_trainer *stall_trainer(const char *run_dir) {
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model = (nw_model_config){12, 12, 768, 50257, 256};
  cfg.batch.effective = 4;
  cfg.batch.micro = 4;
  cfg.data.short_max_digits = 60; /* ~180-token problems: long sequences */
  cfg.data.long_max_digits = 60;
  cfg.data.long_fraction = 0;
  cfg.eval.every = 0;
  cfg.checkpoint.every = 0; /* this bench starts the checkpoints */
  snprintf(cfg.run.dir, sizeof cfg.run.dir, "%s", run_dir);
  char err[1024];
  nw_trainer *t;
  if (nw_config_validate(&cfg, err, sizeof err) < 0 ||
      nw_trainer_create(&t, &cfg, err, sizeof err) < 0) {
    fprintf(stderr, "%s\n", err);
    return NULL;
  }
  return t;
}

int main(int argc, char **argv) {
  nw_blas_info info;
  if (nw_blas_setup(argv, 0, &info) < 0)
    return 1;
  char desc[256];
  nw_blas_describe(&info, desc, sizeof desc);
  printf("%s\n", desc);

  nw_trainer *t =
      stall_trainer(argc > 1 ? argv[1] : "/tmp/nightwatch-bench-stall");
  if (!t)
    return 1;
  nw_step_result r;
  for (int i = 0; i < 2; i++) /* optimizer state and allocator cache */
    if (nw_trainer_step(t, &r) < 0)
      return 1;
  double plain = 0;
  const int n = 3;
  for (int i = 0; i < n; i++) {
    double t0 = nw_clock_now();
    if (nw_trainer_step(t, &r) < 0)
      return 1;
    plain += (nw_clock_now() - t0) / n;
  }
  /* A first checkpoint allocates and first-touches the writer's 1.5 GB of
   * host buffers (a one-time cost, printed apart); the stall of every later
   * checkpoint is the snapshot alone. */
  t->cfg.checkpoint.every = 1;
  double t0 = nw_clock_now();
  nw_trainer_checkpoint_tick(t);
  double first = nw_clock_now() - t0;
  nw_ckpt_result res;
  nw_ckpt_writer_wait(t->writer, &res);
  if (nw_trainer_step(t, &r) < 0)
    return 1;
  t0 = nw_clock_now();
  nw_trainer_checkpoint_tick(t);
  double stall = nw_clock_now() - t0;
  t->cfg.checkpoint.every = 0;
  double during = 0;
  int steps_during = 0;
  while (nw_ckpt_writer_busy(t->writer)) {
    double s0 = nw_clock_now();
    if (nw_trainer_step(t, &r) < 0)
      return 1;
    during += nw_clock_now() - s0;
    steps_during++;
  }
  if (!nw_ckpt_writer_wait(t->writer, &res) || res.rc < 0) {
    fprintf(stderr, "checkpoint failed: %s\n", res.err);
    return 1;
  }
  double bytes = 3.0 * nw_model_num_params(t->model) * sizeof(float);
  printf("training step                %8.3f s (%.0f tok/s)\n", plain,
         r.tokens / plain);
  printf("first checkpoint (buffers)   %8.3f s (one time)\n", first);
  printf("stall (snapshot, %.2f GB)    %8.3f s = %.3f of a step (goal < 0.1)\n",
         bytes / 1e9, stall, stall / plain);
  printf("background write             %8.3f s (%.0f MB/s)\n", res.seconds,
         bytes / res.seconds / 1e6);
  if (steps_during)
    printf("step while writing           %8.3f s = %.2f of a plain step "
           "(%d steps)\n",
           during / steps_during, during / steps_during / plain, steps_during);
  nw_trainer_destroy(t);
  return 0;
}
