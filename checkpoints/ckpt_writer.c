/* ckpt_writer.c — one writer thread per checkpoint, joined when collected. */
#define _GNU_SOURCE
#include "checkpoints/ckpt_writer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"
#include "device/host_alloc.h"

struct nw_ckpt_writer {
  nw_ckpt_state st; /* filled by the trainer, read by the thread */
  float *buf;       /* (3, num_params): params, exp_avg, exp_avg_sq */
  size_t num_params;
  pthread_t thread;
  int running;               /* a thread was started and not joined */
  atomic_int done;           /* the thread finished its write */
  char run_dir[NW_PATH_MAX]; /* retention after the write */
  int keep;
  nw_ckpt_result res;
};

int nw_ckpt_writer_create(nw_ckpt_writer **out, size_t num_params) {
  *out = NULL;
  nw_ckpt_writer *w = calloc(1, sizeof *w);
  if (!w)
    return NW_EHOSTMEM;
  w->buf = nw_host_alloc(3 * num_params * sizeof(float));
  if (!w->buf) {
    free(w);
    return NW_EHOSTMEM;
  }
  w->num_params = num_params;
  *out = w;
  return 0;
}

static void *nw_ckpt_writer_main(void *arg) {
  nw_ckpt_writer *w = arg;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  w->res.rc = nw_ckpt_write(w->res.path, &w->st, w->res.err, sizeof w->res.err);
  if (w->res.rc == 0 && w->keep > 0)
    nw_ckpt_retain(w->run_dir, w->keep, w->res.path);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  w->res.seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
  atomic_store(&w->done, 1);
  return NULL;
}

void *nw_ckpt_writer_buffer(nw_ckpt_writer *w, size_t *bytes) {
  *bytes = 3 * w->num_params * sizeof(float);
  return w->buf;
}

int nw_ckpt_writer_busy(nw_ckpt_writer *w) {
  return w->running && !atomic_load(&w->done);
}

nw_ckpt_state *nw_ckpt_writer_state(nw_ckpt_writer *w) {
  if (w->running)
    return NULL;
  free(w->st.config_text);
  memset(&w->st, 0, sizeof w->st);
  w->st.num_params = w->num_params;
  w->st.params = w->buf;
  w->st.exp_avg = w->buf + w->num_params;
  w->st.exp_avg_sq = w->buf + 2 * w->num_params;
  return &w->st;
}

int nw_ckpt_writer_start(nw_ckpt_writer *w, const char *path,
                         const char *run_dir, int keep) {
  if (w->running)
    return NW_EBUSY;
  snprintf(w->run_dir, sizeof w->run_dir, "%s", run_dir);
  w->keep = keep;
  memset(&w->res, 0, sizeof w->res);
  snprintf(w->res.path, sizeof w->res.path, "%s", path);
  w->res.step = w->st.step;
  atomic_store(&w->done, 0);
  if (pthread_create(&w->thread, NULL, nw_ckpt_writer_main, w) != 0)
    return NW_ESYS;
  w->running = 1;
  return 0;
}

static int nw_ckpt_writer_join(nw_ckpt_writer *w, nw_ckpt_result *res) {
  pthread_join(w->thread, NULL);
  w->running = 0;
  *res = w->res;
  return 1;
}

int nw_ckpt_writer_poll(nw_ckpt_writer *w, nw_ckpt_result *res) {
  if (!w->running || !atomic_load(&w->done))
    return 0;
  return nw_ckpt_writer_join(w, res);
}

int nw_ckpt_writer_wait(nw_ckpt_writer *w, nw_ckpt_result *res) {
  if (!w->running)
    return 0;
  return nw_ckpt_writer_join(w, res);
}

void nw_ckpt_writer_destroy(nw_ckpt_writer *w) {
  if (!w)
    return;
  nw_ckpt_result res;
  nw_ckpt_writer_wait(w, &res);
  free(w->st.config_text);
  free(w->buf);
  free(w);
}
