/* bench_train.c — training throughput against this machine's best sgemm.
 *
 *   build/bench/bench_train [--quick]
 *
 * Measures, in one run: the best cblas_sgemm rate over a few shapes (the
 * ceiling), then tokens per second and achieved model FLOP rate of one
 * optimizer step (forward, backward, AdamW) for the default model and for the
 * GPT-2-small shape (12 layers, 12 heads, width 768, vocabulary 50257,
 * sequence 256). Model FLOPs per token follow the PaLM paper's count:
 * 6 * N (parameters used in matrix products, the tied LM head included,
 * position embeddings not) + 12 * L * C * T for attention. The figure of
 * merit is the ratio of the model's rate to the sgemm ceiling. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "device/blas_setup.h"
#include "device/mem.h"
#include "trainer/model/model.h"
#include "trainer/optim.h"

/* GFLOP/s of C(M,N) = A(M,K) B(K,N)^T, best of `reps`. */
static double sgemm_rate(int M, int N, int K, int reps) {
  float *a = malloc(sizeof(float) * (size_t)M * K);
  float *b = malloc(sizeof(float) * (size_t)N * K);
  float *c = malloc(sizeof(float) * (size_t)M * N);
  if (!a || !b || !c) {
    free(a), free(b), free(c);
    return 0;
  }
  for (size_t i = 0; i < (size_t)M * K; i++)
    a[i] = (float)(i % 7) * 0.01f;
  for (size_t i = 0; i < (size_t)N * K; i++)
    b[i] = (float)(i % 5) * 0.01f;
  double best = 0;
  for (int r = 0; r < reps + 1; r++) {
    double t0 = nw_clock_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b,
                K, 0.0f, c, N);
    double dt = nw_clock_now() - t0;
    double rate = 2.0 * M * N * K / dt / 1e9;
    if (r > 0 && rate > best) /* the first call warms up */
      best = rate;
  }
  free(a), free(b), free(c);
  return best;
}

typedef struct {
  const char *name;
  nw_model_config shape;
  int B, T, iters;
} bench_case;

static int bench_model(const bench_case *bc, double ceiling) {
  nw_mem *mem = NULL;
  nw_model *model = NULL;
  nw_optim *opt = NULL;
  int *inp = NULL, *tgt = NULL;
  int rc = nw_mem_create(&mem, 0);
  if (rc < 0)
    goto out;
  rc = nw_model_create(&model, &bc->shape, &nw_backend_cpu, mem, 1);
  if (rc < 0)
    goto out;
  rc = nw_optim_create(&opt, model, &nw_backend_cpu, mem);
  if (rc < 0)
    goto out;
  size_t bt = (size_t)bc->B * bc->T;
  inp = malloc(bt * sizeof *inp);
  tgt = malloc(bt * sizeof *tgt);
  if (!inp || !tgt) {
    rc = NW_EHOSTMEM;
    goto out;
  }
  for (size_t i = 0; i < bt; i++) {
    inp[i] = (int)((i * 2654435761u) % (unsigned)bc->shape.vocab_size);
    tgt[i] = (int)((i * 40503u + 7) % (unsigned)bc->shape.vocab_size);
  }
  nw_train_config tc = {.steps = 1000,
                        .lr = 1e-4,
                        .min_lr = 1e-5,
                        .warmup_steps = 0,
                        .weight_decay = 0.1,
                        .beta1 = 0.9,
                        .beta2 = 0.95,
                        .eps = 1e-8,
                        .grad_clip = 1.0};
  double total = 0;
  /* Two warm-up steps: the first allocates the optimizer state, the second
   * settles the allocator's cache into the steady state. */
  for (int it = 0; it < bc->iters + 2; it++) {
    double t0 = nw_clock_now(), loss = 0, norm = 0;
    nw_model_zero_grad(model);
    rc = nw_model_forward_backward(model, inp, tgt, bc->B, bc->T,
                                   1.0f / (float)bt, &loss);
    if (rc < 0)
      goto out;
    rc = nw_optim_step(opt, &tc, it, &norm);
    if (rc < 0)
      goto out;
    if (it >= 2)
      total += nw_clock_now() - t0;
  }
  const nw_model_config *s = &bc->shape;
  double n_mm =
      (double)nw_model_num_params(model) - (double)s->max_seq_len * s->n_embd;
  double flops_tok = 6.0 * n_mm + 12.0 * s->n_layer * s->n_embd * bc->T;
  double sec = total / bc->iters;
  double tps = bt / sec;
  double gflops = flops_tok * tps / 1e9;
  printf("%-12s %6.1fM params  B=%d T=%-4d  %9.0f tok/s  %7.1f GFLOP/s  "
         "%5.1f%% of sgemm\n",
         bc->name, nw_model_num_params(model) / 1e6, bc->B, bc->T, tps, gflops,
         100.0 * gflops / ceiling);
out:
  if (rc < 0)
    fprintf(stderr, "%s: %s\n", bc->name, nw_strerror(rc));
  free(inp);
  free(tgt);
  nw_optim_destroy(opt);
  nw_model_destroy(model);
  nw_mem_destroy(mem);
  return rc;
}

int main(int argc, char **argv) {
  (void)argc;
  nw_blas_info info;
  if (nw_blas_setup(argv, 0, &info) < 0) {
    fprintf(stderr, "sgemm check failed\n");
    return 1;
  }
  int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
  char desc[256];
  nw_blas_describe(&info, desc, sizeof desc);
  printf("%s\n", desc);

  /* The ceiling: the best rate over square and model-shaped products. */
  static const int shapes[][3] = {
      {1024, 1024, 1024}, {2048, 2048, 2048}, {1024, 3072, 768},
      {1024, 768, 3072},  {1024, 8192, 768},
  };
  double ceiling = 0;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    double r = sgemm_rate(shapes[i][0], shapes[i][1], shapes[i][2], 3);
    printf("sgemm %5d x %5d x %5d  %7.1f GFLOP/s\n", shapes[i][0], shapes[i][1],
           shapes[i][2], r);
    if (r > ceiling)
      ceiling = r;
  }
  printf("sgemm ceiling %.1f GFLOP/s\n", ceiling);

  nw_config def;
  nw_config_defaults(&def);
  bench_case cases[] = {
      {"default", def.model, def.batch.micro, 24, 20},
      {"gpt2-small", {12, 12, 768, 50257, 256}, 4, 256, quick ? 1 : 3},
  };
  int rc = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (bench_model(&cases[i], ceiling) < 0)
      rc = 1;
  return rc;
}
