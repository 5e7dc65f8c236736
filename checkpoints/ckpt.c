/* ckpt.c — writing a checkpoint: every dataset straight from the caller's
 * buffers into "PATH.tmp.PID", flush, fsync, rename, fsync the directory.
 * Reading and verification are in ckpt_read.c, the run directory's files
 * (list, newest good, retention) in ckpt_dir.c. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_internal.h"
#include "checkpoints/crc32c.h"

#define NW_CKPT_MAX_COMPACT 65535 /* links or attributes per object header */

static int nw_ckpt_fault(const char *what) {
  const char *v = getenv("NIGHTWATCH_TEST_CKPT_FAIL");
  return v && strcmp(v, what) == 0;
}

/* The tensors' CRCs, computed by a helper thread running ahead of the
 * writes: job k is tensor k % n_tensors of params, exp_avg, exp_avg_sq
 * (k / n_tensors), the order in which they are written. The checksum then
 * costs no time on top of the write (it read every byte from memory a second
 * time otherwise). Without the thread, the writer computes them itself. */
typedef struct {
  const nw_ckpt_state *st;
  int jobs;
  uint32_t *crcs; /* (jobs) */
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done; /* jobs finished; under mu */
  int stop; /* under mu */
} nw_ckpt_crcq;

static const float *nw_ckpt_job_data(const nw_ckpt_state *st, int k,
                                     size_t *nbytes) {
  const nw_tensor_info *t = &st->tensors[k % st->n_tensors];
  int g = k / st->n_tensors;
  const float *flat = g == 0   ? st->params
                      : g == 1 ? st->exp_avg
                               : st->exp_avg_sq;
  *nbytes = t->numel * sizeof(float);
  return flat + t->offset;
}

static void *nw_ckpt_crc_main(void *arg) {
  nw_ckpt_crcq *q = arg;
  for (int k = 0; k < q->jobs; k++) {
    size_t nb;
    const float *p = nw_ckpt_job_data(q->st, k, &nb);
    uint32_t crc = nw_crc32c(0, p, nb);
    pthread_mutex_lock(&q->mu);
    q->crcs[k] = crc;
    q->done = k + 1;
    int stop = q->stop;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (stop)
      break;
  }
  return NULL;
}

static void nw_ckpt_crc_start(nw_ckpt_crcq *q, const nw_ckpt_state *st) {
  memset(q, 0, sizeof *q);
  q->st = st;
  q->jobs = st->n_tensors * (st->exp_avg ? 3 : 1);
  q->crcs = malloc((size_t)q->jobs * sizeof *q->crcs);
  if (!q->crcs)
    return;
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  q->started = pthread_create(&q->thread, NULL, nw_ckpt_crc_main, q) == 0;
}

static uint32_t nw_ckpt_crc_get(nw_ckpt_crcq *q, int k) {
  if (!q->started) {
    size_t nb;
    const float *p = nw_ckpt_job_data(q->st, k, &nb);
    return nw_crc32c(0, p, nb);
  }
  pthread_mutex_lock(&q->mu);
  while (q->done <= k)
    pthread_cond_wait(&q->cv, &q->mu);
  uint32_t crc = q->crcs[k];
  pthread_mutex_unlock(&q->mu);
  return crc;
}

static void nw_ckpt_crc_stop(nw_ckpt_crcq *q) {
  if (q->started) {
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
  }
  if (q->crcs) {
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
  }
  free(q->crcs);
  q->crcs = NULL;
  q->started = 0;
}

typedef struct {
  const char *path; /* final name */
  char tmp[NW_PATH_MAX + 32];
  hid_t dcpl; /* contiguous, never filled */
  hid_t gcpl; /* links kept in the object header */
  nw_ckpt_crcq crcq;
  char *err;
  size_t errlen;
} nw_ckpt_writer;

/* Records "PATH: STEP: reason" from HDF5's error stack. */
static int nw_ckpt_w_fail(nw_ckpt_writer *w, const char *step,
                          const char *what) {
  char why[256];
  int disk_full = 0;
  nw_ckpt__h5_reason(why, sizeof why, &disk_full);
  snprintf(w->err, w->errlen, "%s: %s%s%s: %s%s", w->path, step,
           what ? " " : "", what ? what : "", disk_full ? "disk full: " : "",
           why);
  return disk_full ? NW_ENOSPC : NW_EIO;
}

static int nw_ckpt_w_attr(nw_ckpt_writer *w, hid_t loc, const char *name,
                          hid_t ftype, hid_t mtype, const void *val) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t a = space < 0
                ? -1
                : H5Acreate2(loc, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
  int ok = a >= 0 && H5Awrite(a, mtype, val) >= 0;
  int rc = ok ? 0 : nw_ckpt_w_fail(w, "write attribute", name);
  if (a >= 0)
    H5Aclose(a);
  if (space >= 0)
    H5Sclose(space);
  return rc;
}

/* One dataset of `ndim` dims (0: scalar) with its "crc32c" attribute over
 * the nbytes of buf, which are the dataset's raw bytes as stored (job >= 0:
 * the CRC comes from w->crcq). */
static int nw_ckpt_w_dataset(nw_ckpt_writer *w, hid_t loc, const char *group,
                             const char *name, hid_t ftype, hid_t mtype,
                             int ndim, const hsize_t *dims, const void *buf,
                             size_t nbytes, int job) {
  char what[160];
  snprintf(what, sizeof what, "%s%s%s", group ? group : "", group ? "/" : "",
           name);
  int rc = 0;
  hid_t space =
      ndim > 0 ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t d = -1;
  if (space < 0) {
    rc = nw_ckpt_w_fail(w, "dataspace of", what);
    goto out;
  }
  d = H5Dcreate2(loc, name, ftype, space, H5P_DEFAULT, w->dcpl, H5P_DEFAULT);
  if (d < 0) {
    rc = nw_ckpt_w_fail(w, "create dataset", what);
    goto out;
  }
  if (H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    rc = nw_ckpt_w_fail(w, "write", what);
    goto out;
  }
  uint32_t crc =
      job >= 0 ? nw_ckpt_crc_get(&w->crcq, job) : nw_crc32c(0, buf, nbytes);
  rc = nw_ckpt_w_attr(w, d, NW_CKPT_CRC_ATTR, H5T_STD_U32LE, H5T_NATIVE_UINT32,
                      &crc);
out:
  if (d >= 0)
    H5Dclose(d);
  if (space >= 0)
    H5Sclose(space);
  return rc;
}

/* One group of tensors from a flat array (params or a moment). fault_after:
 * how many datasets before the test fault fires (-1: never). */
static int nw_ckpt_w_group(nw_ckpt_writer *w, hid_t file, const char *group,
                           const nw_ckpt_state *st, const float *flat,
                           int first_job, int fault_after) {
  hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
  if (g < 0)
    return nw_ckpt_w_fail(w, "create group", group);
  int rc = 0;
  for (int i = 0; i < st->n_tensors && rc == 0; i++) {
    if (i == fault_after) {
      snprintf(w->err, w->errlen,
               "%s: write %s/%s: test fault (NIGHTWATCH_TEST_CKPT_FAIL=write)",
               w->path, group, st->tensors[i].name);
      rc = NW_EIO;
      break;
    }
    const nw_tensor_info *t = &st->tensors[i];
    hsize_t dims[NW_MAX_TENSOR_DIMS] = {(hsize_t)t->shape[0],
                                        (hsize_t)t->shape[1]};
    rc = nw_ckpt_w_dataset(w, g, group, t->name, H5T_IEEE_F32LE,
                           H5T_NATIVE_FLOAT, t->ndim, dims, flat + t->offset,
                           t->numel * sizeof(float), first_job + i);
  }
  H5Gclose(g);
  return rc;
}

/* The tensor table must be the model's (names, shapes, contiguous offsets in
 * order): the reader rebuilds offsets from the order. */
static int nw_ckpt_w_check(const char *path, const nw_ckpt_state *st, char *err,
                           size_t errlen) {
  if (!nw_model_shape_ok(&st->shape)) {
    snprintf(err, errlen, "%s: invalid model shape", path);
    return NW_EINTERNAL;
  }
  if (!st->params || !st->tensors || (!st->exp_avg != !st->exp_avg_sq)) {
    snprintf(err, errlen, "%s: state without parameters or with one moment",
             path);
    return NW_EINTERNAL;
  }
  if (st->n_tensors != nw_model_tensor_count(&st->shape)) {
    snprintf(err, errlen, "%s: %d tensors, the shape has %d", path,
             st->n_tensors, nw_model_tensor_count(&st->shape));
    return NW_EINTERNAL;
  }
  size_t off = 0;
  for (int i = 0; i < st->n_tensors; i++) {
    nw_tensor_info want;
    nw_model_tensor_at(&st->shape, i, &want);
    const nw_tensor_info *t = &st->tensors[i];
    if (strcmp(t->name, want.name) != 0 || t->ndim != want.ndim ||
        t->shape[0] != want.shape[0] ||
        (t->ndim == 2 && t->shape[1] != want.shape[1]) ||
        t->numel != want.numel || t->offset != off) {
      snprintf(err, errlen, "%s: tensor %d (%s) is not the model's %s", path, i,
               t->name, want.name);
      return NW_EINTERNAL;
    }
    off += t->numel;
  }
  if (off != st->num_params) {
    snprintf(err, errlen, "%s: tensors hold %zu values, num_params is %zu",
             path, off, st->num_params);
    return NW_EINTERNAL;
  }
  return 0;
}

/* The tensor order, as fixed-length names (zero padded: the bytes the
 * checksum covers are deterministic), and the settings as INI text: a
 * scalar string of strlen+1 bytes. */
static int nw_ckpt_w_names_config(nw_ckpt_writer *w, hid_t f,
                                  const nw_ckpt_state *st) {
  size_t nb = (size_t)st->n_tensors * NW_CKPT_NAME_LEN;
  char *names = calloc(nb, 1);
  if (!names) {
    snprintf(w->err, w->errlen, "%s: out of host memory", w->path);
    return NW_EHOSTMEM;
  }
  for (int i = 0; i < st->n_tensors; i++)
    memcpy(names + (size_t)i * NW_CKPT_NAME_LEN, st->tensors[i].name,
           strnlen(st->tensors[i].name, NW_CKPT_NAME_LEN - 1));
  hid_t nt = H5Tcopy(H5T_C_S1);
  H5Tset_size(nt, NW_CKPT_NAME_LEN);
  H5Tset_strpad(nt, H5T_STR_NULLTERM);
  hsize_t n = (hsize_t)st->n_tensors;
  int rc = nw_ckpt_w_dataset(w, f, NULL, NW_CKPT_NAMES, nt, nt, 1, &n, names,
                             nb, -1);
  H5Tclose(nt);
  free(names);
  if (rc < 0)
    return rc;

  const char *text = st->config_text ? st->config_text : "";
  size_t tl = strlen(text) + 1;
  hid_t ct = H5Tcopy(H5T_C_S1);
  H5Tset_size(ct, tl);
  H5Tset_strpad(ct, H5T_STR_NULLTERM);
  rc = nw_ckpt_w_dataset(w, f, NULL, NW_CKPT_CONFIG, ct, ct, 0, NULL, text, tl,
                         -1);
  H5Tclose(ct);
  return rc;
}

/* The root attributes of nw_ckpt__settings, each from its field of st. */
static int nw_ckpt_w_settings(nw_ckpt_writer *w, hid_t f,
                              const nw_ckpt_state *st) {
  for (int i = 0; i < nw_ckpt__n_settings; i++) {
    const nw_ckpt_setting *s = &nw_ckpt__settings[i];
    const char *p = (const char *)st + s->offset;
    int64_t i64;
    uint64_t u64;
    int32_t i32;
    int rc = 0;
    switch (s->kind) {
    case NW_CKPT_I32:
      memcpy(&i32, p, sizeof i32);
      rc = nw_ckpt_w_attr(w, f, s->name, H5T_STD_I32LE, H5T_NATIVE_INT32, &i32);
      break;
    case NW_CKPT_I64:
      memcpy(&i64, p, sizeof i64);
      rc = nw_ckpt_w_attr(w, f, s->name, H5T_STD_I64LE, H5T_NATIVE_INT64, &i64);
      break;
    case NW_CKPT_U64:
      if (s->offset == offsetof(nw_ckpt_state, num_params))
        u64 = st->num_params; /* a size_t */
      else
        memcpy(&u64, p, sizeof u64);
      rc =
          nw_ckpt_w_attr(w, f, s->name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &u64);
      break;
    }
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int nw_ckpt_w_contents(nw_ckpt_writer *w, hid_t f,
                              const nw_ckpt_state *st) {
  int fault = nw_ckpt_fault("write") ? st->n_tensors / 2 : -1;
  NW_TRY(nw_ckpt_w_names_config(w, f, st));
  int nten = st->n_tensors;
  NW_TRY(nw_ckpt_w_group(w, f, NW_CKPT_MODEL, st, st->params, 0, fault));
  int has_opt = st->exp_avg != NULL;
  if (has_opt) {
    hid_t g = H5Gcreate2(f, NW_CKPT_OPT, H5P_DEFAULT, w->gcpl, H5P_DEFAULT);
    if (g < 0)
      return nw_ckpt_w_fail(w, "create group", NW_CKPT_OPT);
    H5Gclose(g);
    NW_TRY(nw_ckpt_w_group(w, f, NW_CKPT_EXP_AVG, st, st->exp_avg, nten, -1));
    NW_TRY(nw_ckpt_w_group(w, f, NW_CKPT_EXP_AVG_SQ, st, st->exp_avg_sq,
                           2 * nten, -1));
  }

  int32_t version = NW_CKPT_FORMAT_VERSION;
  NW_TRY(nw_ckpt_w_attr(w, f, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32,
                        &version));
  NW_TRY(nw_ckpt_w_attr(w, f, "has_optimizer", H5T_STD_I32LE, H5T_NATIVE_INT32,
                        &has_opt));
  NW_TRY(nw_ckpt_w_settings(w, f, st));
  /* Last: a file without it was never finished. */
  int32_t complete = 1;
  return nw_ckpt_w_attr(w, f, "complete", H5T_STD_I32LE, H5T_NATIVE_INT32,
                        &complete);
}

/* fsync of a closed file through its own descriptor. */
static int nw_ckpt_fsync_path(const char *path, int *saved_errno) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *saved_errno = errno;
    return -1;
  }
  int rc = fsync(fd);
  *saved_errno = errno;
  close(fd);
  return rc;
}

/* The property lists of a new checkpoint file: *fcpl, w->dcpl, w->gcpl.
 * Links and attributes stay compact, i.e. messages in object headers, which
 * the v1.8 format checksums; dense storage would put them in fractal heap
 * blocks that carry no checksum. */
static int nw_ckpt_w_plists(nw_ckpt_writer *w, hid_t fapl, hid_t *fcpl) {
  *fcpl = H5Pcreate(H5P_FILE_CREATE);
  w->dcpl = H5Pcreate(H5P_DATASET_CREATE);
  w->gcpl = H5Pcreate(H5P_GROUP_CREATE);
  if (fapl < 0 || *fcpl < 0 || w->dcpl < 0 || w->gcpl < 0 ||
      H5Pset_layout(w->dcpl, H5D_CONTIGUOUS) < 0 ||
      H5Pset_fill_time(w->dcpl, H5D_FILL_TIME_NEVER) < 0 ||
      H5Pset_link_phase_change(w->gcpl, NW_CKPT_MAX_COMPACT,
                               NW_CKPT_MAX_COMPACT) < 0 ||
      H5Pset_attr_phase_change(*fcpl, NW_CKPT_MAX_COMPACT,
                               NW_CKPT_MAX_COMPACT) < 0)
    return nw_ckpt_w_fail(w, "HDF5 property lists", NULL);
  return 0;
}

/* Bytes the file will take: the tensors, the names and the config, plus
 * HDF5's object headers (a few hundred bytes per dataset) and slack. */
static uint64_t nw_ckpt_w_expected_bytes(const nw_ckpt_state *st) {
  uint64_t groups = st->exp_avg ? 3 : 1;
  uint64_t data = groups * st->num_params * sizeof(float);
  uint64_t meta = (uint64_t)st->n_tensors * (groups * 512 + NW_CKPT_NAME_LEN);
  uint64_t text = st->config_text ? strlen(st->config_text) : 0;
  return data + meta + text + (64u << 10) + data / 64;
}

/* A write that cannot fit is not started: statvfs of the directory against
 * the expected size (cheap, and a failed write costs a whole checkpoint's
 * I/O first). Another writer can still fill the disk meanwhile; the write
 * path handles that too. */
static int nw_ckpt_w_space(const char *dir, const nw_ckpt_state *st,
                           const char *path, char *err, size_t errlen) {
  struct statvfs fs;
  /* the fault suite drives the write itself into a full disk */
  if (nw_ckpt_fault("skip-space-check") || statvfs(dir, &fs) != 0)
    return 0; /* unknown: let the write find out */
  uint64_t avail = (uint64_t)fs.f_bavail * (uint64_t)fs.f_frsize;
  uint64_t need = nw_ckpt_w_expected_bytes(st);
  if (avail >= need)
    return 0;
  snprintf(err, errlen,
           "%s: disk full: the checkpoint needs about %.1f MiB, %.1f MiB are "
           "free in %s; not started",
           path, need / 1048576.0, avail / 1048576.0, dir);
  return NW_ENOSPC;
}

/* Reserves the file's blocks before HDF5 writes into it: a disk that fills
 * up then fails here, before HDF5 holds any unwritten metadata (see
 * nw_ckpt_w_abandon), instead of in the close. The file grows to the
 * expected size; nw_ckpt_w_trim cuts it back to what HDF5 used. A file
 * system without fallocate is not reserved (the statvfs check stands). */
static int nw_ckpt_w_reserve(nw_ckpt_writer *w, const nw_ckpt_state *st) {
  int fd = open(w->tmp, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return 0; /* HDF5 has it open: its own writes will say what is wrong */
  uint64_t need = nw_ckpt_w_expected_bytes(st);
  int rc = fallocate(fd, 0, 0, (off_t)need) == 0 ? 0 : errno;
  close(fd);
  if (rc == 0 || rc == EOPNOTSUPP || rc == ENOSYS)
    return 0;
  snprintf(w->err, w->errlen, "%s: reserve %.1f MiB for %s: %s%s", w->path,
           need / 1048576.0, w->tmp, rc == ENOSPC ? "disk full: " : "",
           strerror(rc));
  return rc == ENOSPC ? NW_ENOSPC : NW_EIO;
}

/* After the close: the reserved blocks past the end HDF5 recorded (its
 * end-of-allocation address, read back from the superblock) go. */
static int nw_ckpt_w_trim(nw_ckpt_writer *w) {
  hid_t fapl = nw_ckpt__fapl();
  hid_t f = fapl < 0 ? -1 : H5Fopen(w->tmp, H5F_ACC_RDONLY, fapl);
  haddr_t eoa = 0;
  int ok = f >= 0 && H5Fget_eoa(f, &eoa) >= 0 && eoa > 0;
  if (f >= 0)
    H5Fclose(f);
  if (fapl >= 0)
    H5Pclose(fapl);
  if (!ok)
    return nw_ckpt_w_fail(w, "read back the end of", w->tmp);
  if (truncate(w->tmp, (off_t)eoa) != 0) {
    snprintf(w->err, w->errlen, "%s: truncate %s: %s", w->path, w->tmp,
             strerror(errno));
    return NW_EIO;
  }
  return 0;
}

/* A write that failed: the file id and the temporary both go. HDF5 writes
 * its metadata when the id is closed; on a full disk that write fails too,
 * and a file whose metadata write failed can never be closed (HDF5 1.10
 * leaves its cache half-flushed: the id stays open, a second close crashes;
 * nw_ckpt__h5_init keeps the library from trying again at exit). So the
 * temporary is truncated first: its own blocks are most of what filled the
 * disk, and the metadata then fits. */
static void nw_ckpt_w_abandon(nw_ckpt_writer *w, hid_t f) {
  if (truncate(w->tmp, 0) != 0) {
    /* not there: nothing to free */
  }
  if (f >= 0) {
    /* never twice: after a failed metadata write HDF5 1.10's cache is
     * left half-flushed, and a second close crashes inside the library */
    if (H5Fclose(f) < 0)
      snprintf(w->err + strlen(w->err), w->errlen - strlen(w->err),
               "; HDF5 could not close it either (its memory stays with "
               "this process)");
  }
  unlink(w->tmp);
}

/* The written temporary made durable under the checkpoint's name: close
 * (*f = -1 after, closed or not), trim, fsync, rename. No H5Fflush first:
 * the close flushes, and a flush that fails would leave the file
 * impossible to close (nw_ckpt_w_abandon). */
static int nw_ckpt_w_commit(nw_ckpt_writer *w, hid_t *f) {
  int e = 0;
  herr_t closed = H5Fclose(*f);
  *f = -1; /* closed, or never closable again */
  if (closed < 0)
    return nw_ckpt_w_fail(w, "close", w->tmp);
  NW_TRY(nw_ckpt_w_trim(w));
  if (nw_ckpt_fsync_path(w->tmp, &e) != 0) {
    snprintf(w->err, w->errlen, "%s: fsync %s: %s%s", w->path, w->tmp,
             e == ENOSPC ? "disk full: " : "", strerror(e));
    return NW_EIO;
  }
  if (rename(w->tmp, w->path) != 0) {
    e = errno;
    snprintf(w->err, w->errlen, "%s: rename %s: %s%s", w->path, w->tmp,
             e == ENOSPC ? "disk full: " : "", strerror(e));
    return NW_EIO;
  }
  return 0;
}

int nw_ckpt_write(const char *path, const nw_ckpt_state *st, char *err,
                  size_t errlen) {
  NW_TRY(nw_ckpt_w_check(path, st, err, errlen));
  nw_ckpt_writer w = {
      .path = path, .dcpl = -1, .gcpl = -1, .err = err, .errlen = errlen};
  if (strlen(path) >= NW_PATH_MAX) {
    snprintf(err, errlen, "%s: path too long", path);
    return NW_ECONFIG;
  }
  snprintf(w.tmp, sizeof w.tmp, "%s.tmp.%d", path, (int)getpid());
  char dir[NW_PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = 0;
    NW_TRY(nw_mkdir_p(dir, err, errlen));
  } else {
    snprintf(dir, sizeof dir, slash ? "/" : ".");
  }
  NW_TRY(nw_ckpt_w_space(dir, st, path, err, errlen));

  nw_ckpt__h5_init();
  hid_t fapl = nw_ckpt__fapl(), fcpl = -1, f = -1;
  int rc = nw_ckpt_w_plists(&w, fapl, &fcpl);
  if (rc < 0)
    goto fail;
  f = H5Fcreate(w.tmp, H5F_ACC_TRUNC, fcpl, fapl);
  if (f < 0) {
    rc = nw_ckpt_w_fail(&w, "create", w.tmp);
    goto fail;
  }
  if ((rc = nw_ckpt_w_reserve(&w, st)) < 0)
    goto fail;
  nw_ckpt_crc_start(&w.crcq, st);
  rc = nw_ckpt_w_contents(&w, f, st);
  nw_ckpt_crc_stop(&w.crcq);
  if (rc < 0 || (rc = nw_ckpt_w_commit(&w, &f)) < 0)
    goto fail;
  H5Pclose(w.gcpl);
  H5Pclose(w.dcpl);
  H5Pclose(fcpl);
  H5Pclose(fapl);
  if (nw_fsync_parent_dir(path) < 0) {
    /* In place and complete; only the rename's durability is unsure. */
    snprintf(err, errlen, "%s: fsync of its directory failed", path);
    return NW_EIO;
  }
  return 0;
fail:
  nw_ckpt_w_abandon(&w, f);
  if (w.gcpl >= 0)
    H5Pclose(w.gcpl);
  if (w.dcpl >= 0)
    H5Pclose(w.dcpl);
  if (fcpl >= 0)
    H5Pclose(fcpl);
  if (fapl >= 0)
    H5Pclose(fapl);
  return rc;
}
