/* bench_gpu.c — the CUDA backend at the GPT-2-small shape (12 layers, width
 * 768, 12 heads, vocabulary 50257, sequence 1024):
 *   1. the card's BF16 matrix rate, measured (a large BF16 x BF16 -> FP32
 *      product), the denominator of MFU;
 *   2. training throughput in tokens/s and MFU for tf32 and bf16 (model
 *      FLOPs per token 6N + 12 L C T, as llm.c and PaLM count them);
 *   3. seconds from an OOM to the first resumed GPU step: a trainer with
 *      micro-batch 32 under a cap that holds micro-batch 8 fails (exit 75),
 *      then the trainer restarts with micro-batch 8 (what halve-micro-batch
 *      chooses; the supervisor's backoff is left out) and the time to its
 *      first step line is taken, split at the restart.
 *
 *   build/bench/bench_gpu [NIGHTWATCH_TRAIN_BIN] [B]
 *
 * Needs a GPU; without one it says so and exits 77. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "model/estimate.h"
#include "trainer/model/model.h"
#include "trainer/optim.h"

#ifdef NW_HAVE_CUDA
#include "cuda/nw_cuda.h"

static void gpt2_small(nw_config *c) {
  nw_config_defaults(c);
  c->model.n_layer = 12;
  c->model.n_head = 12;
  c->model.n_embd = 768;
  c->model.vocab_size = 50257;
  c->model.max_seq_len = 1024;
}

/* tokens/s of forward+backward+AdamW steps at (B, T) in one precision */
static int throughput(nw_precision prec, int B, int T, double *tok_s,
                      size_t *nparams) {
  nw_config c;
  gpt2_small(&c);
  nw_mem *mem = NULL;
  nw_model *m = NULL;
  nw_optim *o = NULL;
  char err[512];
  int rc = nw_mem_create(&mem, 0);
  if (rc == 0)
    rc = nw_cuda_open(0, prec, mem, err, sizeof err);
  if (rc == 0)
    rc = nw_model_create(&m, &c.model, &nw_backend_cuda, mem, 42);
  if (rc == 0)
    rc = nw_optim_create(&o, m, &nw_backend_cuda, mem);
  int *inp = malloc((size_t)B * T * sizeof(int));
  int *tgt = malloc((size_t)B * T * sizeof(int));
  if (!inp || !tgt)
    rc = NW_EHOSTMEM;
  for (size_t i = 0; rc == 0 && i < (size_t)B * T; i++) {
    inp[i] = (int)((i * 2654435761u) % 50257);
    tgt[i] = (int)((i * 40503u + 7) % 50257);
  }
  double t0 = 0;
  int warm = 2, steps = 10;
  for (int s = 0; rc == 0 && s < warm + steps; s++) {
    if (s == warm)
      t0 = nw_clock_now();
    double loss;
    nw_model_zero_grad(m);
    rc = nw_model_forward_backward(m, inp, tgt, B, T, 1.0f / (float)(B * T),
                                   &loss);
    double norm;
    if (rc == 0)
      rc = nw_optim_step(o, &c.train, s, &norm); /* waits via sumsq */
  }
  if (rc == 0) {
    *tok_s = (double)B * T * steps / (nw_clock_now() - t0);
    *nparams = nw_model_num_params(m);
  }
  free(inp);
  free(tgt);
  nw_optim_destroy(o);
  nw_model_destroy(m);
  nw_cuda_close();
  nw_mem_destroy(mem);
  return rc;
}

/* Runs the trainer; returns its exit code. *t_mark is when a line with
 * `mark` appeared on its output (0 if never), *t_end when it exited. */
static int run_timed(char *const argv[], const char *mark, double *t_mark,
                     double *t_end) {
  int pfd[2];
  if (pipe(pfd) != 0)
    return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(pfd[1], 1);
    dup2(pfd[1], 2);
    close(pfd[0]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(pfd[1]);
  FILE *f = fdopen(pfd[0], "r");
  char line[4096];
  *t_mark = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (!*t_mark && strstr(line, mark)) {
      *t_mark = nw_clock_now();
      kill(pid, SIGTERM); /* one step is all that is timed */
    }
  }
  if (f)
    fclose(f);
  int st;
  waitpid(pid, &st, 0);
  *t_end = nw_clock_now();
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void resume_time(const char *train_bin) {
  nw_config c;
  gpt2_small(&c);
  snprintf(c.device.type, sizeof c.device.type, "cuda");
  nw_estimate fits, big;
  nw_estimate_train(&c, 8, 96, 0, &fits);
  nw_estimate_train(&c, 32, 5, 0, &big);
  char dir[] = "/tmp/nw-bench-gpu-XXXXXX";
  if (!mkdtemp(dir))
    return;
  char setdir[128], mem[64];
  snprintf(setdir, sizeof setdir, "run.dir=%s", dir);
  snprintf(mem, sizeof mem, "device.memory=%llu",
           (unsigned long long)((fits.total + big.total) / 2));
  char *a[] = {(char *)train_bin,
               "--set",
               "device.type=cuda",
               "--set",
               "model.n_layer=12",
               "--set",
               "model.n_head=12",
               "--set",
               "model.n_embd=768",
               "--set",
               "model.vocab_size=50257",
               "--set",
               "model.max_seq_len=1024",
               "--set",
               setdir,
               "--set",
               mem,
               "--set",
               "eval.every=0",
               "--set",
               "batch.effective=32",
               "--set",
               "batch.micro=32",
               NULL};
  double t_oom, t_exit, t_step, t_end;
  double t_start = nw_clock_now();
  int st = run_timed(a, "out of device memory", &t_oom, &t_exit);
  if (st != 75) {
    printf("resume: the first trainer exited %d, not 75 (OOM)\n", st);
    return;
  }
  a[sizeof a / sizeof a[0] - 2] = "batch.micro=8";
  double t_restart = nw_clock_now();
  st = run_timed(a, " step 1/", &t_step, &t_end);
  if (!t_step) {
    printf("resume: the second trainer exited %d before a step\n", st);
    return;
  }
  printf("resume: trainer start to OOM exit %.2f s (OOM line to exit %.2f "
         "s); restart to first step %.2f s; OOM exit to first resumed GPU "
         "step %.2f s (goal < 3 s)\n",
         t_exit - t_start, t_exit - t_oom, t_step - t_restart, t_step - t_exit);
}
#endif

int main(int argc, char **argv) {
#ifndef NW_HAVE_CUDA
  (void)argc;
  (void)argv;
  printf("bench_gpu: built without the CUDA backend\n");
  return 77;
#else
  int n = 0;
  char err[256] = "";
  if (nw_cuda_device_count(&n, err, sizeof err) < 0 || n == 0) {
    printf("bench_gpu: no CUDA GPU (%s)\n", err);
    return 77;
  }
  const char *train_bin = argc > 1 ? argv[1] : "build/nightwatch-train";
  int B = argc > 2 ? atoi(argv[2]) : 8, T = 1024;
  nw_mem *mem;
  double peak = 0;
  if (nw_mem_create(&mem, 0) < 0 ||
      nw_cuda_open(0, NW_PRECISION_BF16, mem, err, sizeof err) < 0 ||
      nw_cuda_gemm_rate(8192, 10, &peak) < 0) {
    printf("bench_gpu: cannot measure the BF16 rate: %s\n", err);
    return 1;
  }
  nw_cuda_close();
  nw_mem_destroy(mem);
  printf("measured BF16 matrix rate: %.1f TFLOP/s (8192^3, FP32 "
         "accumulation)\n",
         peak / 1e12);
  const struct {
    const char *name;
    nw_precision p;
  } modes[] = {{"tf32", NW_PRECISION_TF32}, {"bf16", NW_PRECISION_BF16}};
  for (int i = 0; i < 2; i++) {
    double tok_s = 0;
    size_t np = 0;
    int rc = throughput(modes[i].p, B, T, &tok_s, &np);
    if (rc < 0) {
      printf("%s: %s\n", modes[i].name, nw_strerror(rc));
      continue;
    }
    double flops_tok = 6.0 * (double)np + 12.0 * 12 * 768 * T;
    printf("GPT-2 small %s: B=%d T=%d %.0f tokens/s, %.1f TFLOP/s model, "
           "MFU %.1f%% of the measured BF16 rate (goal 40%% in bf16)\n",
           modes[i].name, B, T, tok_s, tok_s * flops_tok / 1e12,
           100.0 * tok_s * flops_tok / peak);
  }
  resume_time(train_bin);
  return 0;
#endif
}
