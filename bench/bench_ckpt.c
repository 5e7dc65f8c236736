/* bench_ckpt.c — checkpoint write rate against a plain write()+fsync of the
 * same bytes.
 *
 *   build/bench/bench_ckpt [DIR [REPS]]
 *
 * For the GPT-2-small shape (12 layers, 12 heads, width 768, vocabulary
 * 50257, 1024 positions: 124M parameters, 1.49 GB with both AdamW moments)
 * times nw_ckpt_write of the full state (temporary, flush, fsync, rename,
 * directory fsync, a CRC-32C per dataset) and a plain sequential write() +
 * fsync of the same number of bytes from the same buffers, into the same
 * directory (default: a fresh one under /tmp), REPS times each (default 5)
 * after one untimed warm-up write, alternating which goes first. Prints both
 * rates and their ratio (goal: checkpoint >= 0.8 of plain), and the rate of a
 * full verification. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "checkpoints/ckpt.h"
#include "device/backend.h"
#include "device/mem.h"
#include "trainer/model/model.h"

/* Seconds to write the arrays back to back into path and fsync it. */
static double plain_write(const char *path, float *const *arrays, int n,
                          size_t bytes_each) {
  double t0 = nw_clock_now();
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "%s: %s\n", path, strerror(errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    const char *p = (const char *)arrays[i];
    size_t left = bytes_each;
    while (left > 0) {
      ssize_t w = write(fd, p, left);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0) {
        fprintf(stderr, "%s: write: %s\n", path, strerror(errno));
        close(fd);
        return -1;
      }
      p += w;
      left -= (size_t)w;
    }
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    fprintf(stderr, "%s: fsync: %s\n", path, strerror(errno));
    return -1;
  }
  return nw_clock_now() - t0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The directory to write into: argv[1], else a fresh one under /tmp. */
static int bench_dir(int argc, char **argv, char *dir, size_t len) {
  if (argc > 1 && argv[1][0]) {
    snprintf(dir, len, "%s", argv[1]);
    char err[512];
    if (nw_mkdir_p(dir, err, sizeof err) < 0) {
      fprintf(stderr, "%s\n", err);
      return -1;
    }
    return 0;
  }
  snprintf(dir, len, "/tmp/nwbench-ckpt-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return -1;
  }
  return 0;
}

/* The GPT-2-small state to write: the model's parameters and two moments
 * of values that are not all alike. */
typedef struct {
  nw_mem *mem;
  nw_model *model;
  nw_tensor_info *tensors;
  float *m1, *m2;
  char *text;   /* the config as INI */
  size_t bytes; /* of each of the three arrays */
  nw_ckpt_state st;
} bench_state;

static int bench_setup(bench_state *b) {
  nw_model_config shape = {.n_layer = 12,
                           .n_head = 12,
                           .n_embd = 768,
                           .vocab_size = 50257,
                           .max_seq_len = 1024};
  if (nw_mem_create(&b->mem, 0) != 0 ||
      nw_model_create(&b->model, &shape, &nw_backend_cpu, b->mem, 1) != 0) {
    fprintf(stderr, "cannot build the GPT-2-small model\n");
    return -1;
  }
  size_t np = nw_model_num_params(b->model);
  int nt = nw_model_num_tensors(b->model);
  b->bytes = np * sizeof(float);
  b->tensors = malloc((size_t)nt * sizeof *b->tensors);
  b->m1 = malloc(b->bytes);
  b->m2 = malloc(b->bytes);
  b->text = malloc(65536);
  if (!b->tensors || !b->m1 || !b->m2 || !b->text) {
    fprintf(stderr, "out of memory\n");
    return -1;
  }
  for (int i = 0; i < nt; i++)
    b->tensors[i] = *nw_model_tensor(b->model, i);
  for (size_t i = 0; i < np; i++) { /* values that are not all alike */
    b->m1[i] = (float)(i % 1000) * 1e-6f;
    b->m2[i] = (float)(i % 777) * 1e-9f;
  }
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model = shape;
  nw_config_dump(&cfg, b->text, 65536);
  b->st = (nw_ckpt_state){.step = 1000,
                          .effective = 8,
                          .micro = 8,
                          .accum = 1,
                          .world = 1,
                          .max_seq_len = 1024,
                          .eval_batch = 8,
                          .last_eval_step = -1,
                          .shape = shape,
                          .config_text = b->text,
                          .n_tensors = nt,
                          .tensors = b->tensors,
                          .num_params = np,
                          .params = nw_model_params(b->model),
                          .exp_avg = b->m1,
                          .exp_avg_sq = b->m2};
  return 0;
}

static void bench_free(bench_state *b) {
  free(b->tensors);
  free(b->m1);
  free(b->m2);
  free(b->text);
  nw_model_destroy(b->model);
  nw_mem_destroy(b->mem);
}

/* One checkpoint write and its verification, timed into *tc and *tv. */
static int bench_ckpt_once(const char *path, const nw_ckpt_state *st,
                           double *tc, double *tv) {
  char err[512];
  double t0 = nw_clock_now();
  int rc = nw_ckpt_write(path, st, err, sizeof err);
  *tc = nw_clock_now() - t0;
  if (rc != 0) {
    fprintf(stderr, "nw_ckpt_write: %s\n", err);
    return -1;
  }
  t0 = nw_clock_now();
  rc = nw_ckpt_verify(path, err, sizeof err);
  *tv = nw_clock_now() - t0;
  if (rc != 0) {
    fprintf(stderr, "nw_ckpt_verify: %s\n", err);
    return -1;
  }
  unlink(path);
  return 0;
}

/* Rep r: a plain write and a checkpoint, alternating which goes first. */
static int bench_rep(int r, const char *plain, const char *path,
                     const bench_state *b, double *tp, double *tc, double *tv) {
  float *arrays[3] = {b->st.params, b->m1, b->m2};
  for (int k = 0; k < 2; k++) {
    /* Each timing starts from a quiet disk: the previous file's unlink
     * and writeback are finished. */
    sync();
    sleep(1);
    if ((k == 0) == (r % 2 == 0)) {
      *tp = plain_write(plain, arrays, 3, b->bytes);
      unlink(plain);
      if (*tp < 0)
        return -1;
    } else if (bench_ckpt_once(path, &b->st, tc, tv) < 0) {
      return -1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  char dir[NW_PATH_MAX];
  if (bench_dir(argc, argv, dir, sizeof dir) < 0)
    return 1;
  int reps = argc > 2 ? atoi(argv[2]) : 5;
  if (reps < 1 || reps > 50)
    reps = 5;
  bench_state b = {0};
  if (bench_setup(&b) < 0)
    return 1;
  double total = 3.0 * (double)b.bytes;
  printf("GPT-2 small: %zu parameters, %d tensors, %.3f GB per checkpoint, "
         "directory %s\n",
         b.st.num_params, b.st.n_tensors, total / 1e9, dir);

  char plain[NW_PATH_MAX + 32], path[NW_PATH_MAX];
  snprintf(plain, sizeof plain, "%s/plain.bin", dir);
  nw_ckpt_path(dir, 1000, path, sizeof path);
  double tp[50], tc[50], tv[50];
  /* Untimed: the first 1.5 GB written by a process runs at a fraction of
   * the rate of the next (page cache growth), whichever writer goes first. */
  float *arrays[3] = {b.st.params, b.m1, b.m2};
  if (plain_write(plain, arrays, 3, b.bytes) < 0)
    return 1;
  unlink(plain);
  for (int r = 0; r < reps; r++) {
    if (bench_rep(r, plain, path, &b, &tp[r], &tc[r], &tv[r]) < 0)
      return 1;
    printf("rep %d: plain %.3f s (%.0f MB/s), checkpoint %.3f s (%.0f MB/s), "
           "verify %.3f s (%.0f MB/s)\n",
           r, tp[r], total / tp[r] / 1e6, tc[r], total / tc[r] / 1e6, tv[r],
           total / tv[r] / 1e6);
  }
  qsort(tp, (size_t)reps, sizeof tp[0], cmp_double);
  qsort(tc, (size_t)reps, sizeof tc[0], cmp_double);
  double mp = tp[reps / 2], mc = tc[reps / 2];
  printf("median: plain write+fsync %.0f MB/s, nw_ckpt_write %.0f MB/s, "
         "ratio %.2f (goal >= 0.80)\n",
         total / mp / 1e6, total / mc / 1e6, mp / mc);
  printf("best:   plain write+fsync %.0f MB/s, nw_ckpt_write %.0f MB/s, "
         "ratio %.2f\n",
         total / tp[0] / 1e6, total / tc[0] / 1e6, tp[0] / tc[0]);
  char ckdir[NW_PATH_MAX + 16];
  snprintf(ckdir, sizeof ckdir, "%s/checkpoints", dir);
  rmdir(ckdir);
  if (argc <= 1 || !argv[1][0])
    rmdir(dir);
  bench_free(&b);
  return 0;
}
