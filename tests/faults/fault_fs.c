/* fault_fs.c — a small file system to fill, and a state to write into it. */
#define _GNU_SOURCE
#include "fault_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "model/size.h"
#include "testutil.h"

void nw_fault_fs_mount(nw_fault_fs *fs, const char *tag, int size_kib) {
  memset(fs, 0, sizeof *fs);
  nw_test_tmpdir(fs->dir, sizeof fs->dir, tag);
  char opts[64];
  snprintf(opts, sizeof opts, "size=%dk,mode=0755", size_kib);
  if (geteuid() != 0) {
    snprintf(fs->skip, sizeof fs->skip,
             "needs root to mount a %d KiB tmpfs (running as uid %d)", size_kib,
             (int)geteuid());
  } else if (mount("tmpfs", fs->dir, "tmpfs", MS_NOSUID | MS_NODEV, opts) !=
             0) {
    snprintf(fs->skip, sizeof fs->skip, "mount tmpfs at %s: %s", fs->dir,
             strerror(errno));
  } else {
    fs->mounted = 1;
  }
  if (fs->skip[0])
    printf("skipped: %s\n", fs->skip);
}

void nw_fault_fs_unmount(nw_fault_fs *fs) {
  if (fs->mounted && umount2(fs->dir, MNT_DETACH) != 0)
    printf("umount %s: %s\n", fs->dir, strerror(errno));
  fs->mounted = 0;
  rmdir(fs->dir);
}

uint64_t nw_fault_fs_free_bytes(const nw_fault_fs *fs) {
  struct statvfs sv;
  if (statvfs(fs->dir, &sv) != 0)
    return 0;
  return (uint64_t)sv.f_bavail * sv.f_frsize;
}

void nw_fault_fs_fill(const nw_fault_fs *fs, uint64_t leave_bytes) {
  char path[600];
  snprintf(path, sizeof path, "%s/filler", fs->dir);
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    printf("filler %s: %s\n", path, strerror(errno));
    abort();
  }
  static const char block[4096];
  while (nw_fault_fs_free_bytes(fs) > leave_bytes) {
    uint64_t over = nw_fault_fs_free_bytes(fs) - leave_bytes;
    size_t n = over < sizeof block ? (size_t)over : sizeof block;
    if (write(fd, block, n) <= 0)
      break; /* full */
  }
  close(fd);
}

long nw_fault_rss_kib(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "re");
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
      resident = 0;
    fclose(f);
  }
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static const nw_model_config nw_fault_shape = {.n_layer = 2,
                                               .n_head = 4,
                                               .n_embd = 64,
                                               .vocab_size = 256,
                                               .max_seq_len = 96};

void nw_fault_state_init(nw_ckpt_state *st, int64_t step) {
  memset(st, 0, sizeof *st);
  st->shape = nw_fault_shape;
  st->n_tensors = nw_model_tensor_count(&st->shape);
  st->tensors = calloc((size_t)st->n_tensors, sizeof *st->tensors);
  st->num_params = nw_model_tensor_table(&st->shape, st->tensors);
  st->params = malloc(st->num_params * sizeof(float));
  st->exp_avg = malloc(st->num_params * sizeof(float));
  st->exp_avg_sq = malloc(st->num_params * sizeof(float));
  st->config_text = strdup("[train]\nsteps = 100\n");
  if (!st->tensors || !st->params || !st->exp_avg || !st->exp_avg_sq ||
      !st->config_text)
    abort();
  for (size_t i = 0; i < st->num_params; i++) {
    st->params[i] = (float)(i % 97) * 1e-3f;
    st->exp_avg[i] = (float)(i % 89) * 1e-5f;
    st->exp_avg_sq[i] = (float)(i % 83) * 1e-7f;
  }
  st->step = step;
  st->effective = 32;
  st->micro = 8;
  st->accum = 4;
  st->world = 1;
  st->max_seq_len = 96;
  st->eval_batch = 8;
  st->last_eval_step = -1;
  st->data_index = (uint64_t)step * 32;
}

void nw_fault_state_fini(nw_ckpt_state *st) {
  free(st->tensors);
  free(st->params);
  free(st->exp_avg);
  free(st->exp_avg_sq);
  free(st->config_text);
  memset(st, 0, sizeof *st);
}
