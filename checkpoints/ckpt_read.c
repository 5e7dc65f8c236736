/* ckpt_read.c — reading and verifying a checkpoint. One walk over the file
 * serves both: nw_ckpt_read keeps the data, nw_ckpt_verify streams every
 * dataset through a scratch buffer. Every check names the file and the
 * dataset or attribute: format version, the "complete" marker, each
 * setting, the tensor table against the recorded shape, each dataset's type,
 * shape and CRC-32C. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_internal.h"
#include "checkpoints/crc32c.h"

#define NW_CKPT_VERIFY_CHUNK (4u << 20) /* floats per streamed read: 16 MB */

typedef struct {
  const char *base; /* file name for messages */
  hid_t file;
  char *err;
  size_t errlen;
  float *scratch; /* (NW_CKPT_VERIFY_CHUNK) when verifying only */
} nw_ckpt_reader;

/* NW_EDATA with "FILE: WHAT: reason", the reason from HDF5 when h5 is set. */
static int nw_ckpt_r_bad(nw_ckpt_reader *r, const char *what, int h5,
                         const char *fmt, ...) {
  char why[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  char h5why[256] = "";
  if (h5)
    nw_ckpt__h5_reason(h5why, sizeof h5why, NULL);
  snprintf(r->err, r->errlen, "%s: %s: %s%s%s", r->base, what, why,
           h5 ? ": " : "", h5why);
  return NW_EDATA;
}

/* An integer root attribute, converted to int64 or uint64 by HDF5. */
static int nw_ckpt_r_attr(nw_ckpt_reader *r, const char *name, int is_unsigned,
                          void *out) {
  if (H5Aexists(r->file, name) <= 0)
    return nw_ckpt_r_bad(r, name, 0, "attribute missing");
  hid_t a = H5Aopen(r->file, name, H5P_DEFAULT);
  hid_t t = a >= 0 ? H5Aget_type(a) : -1;
  hid_t s = a >= 0 ? H5Aget_space(a) : -1;
  int rc = 0;
  if (a < 0 || t < 0 || s < 0)
    rc = nw_ckpt_r_bad(r, name, 1, "unreadable attribute");
  else if (H5Tget_class(t) != H5T_INTEGER ||
           H5Sget_simple_extent_npoints(s) != 1)
    rc = nw_ckpt_r_bad(r, name, 0, "not an integer scalar");
  else if (H5Aread(a, is_unsigned ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64, out) <
           0)
    rc = nw_ckpt_r_bad(r, name, 1, "unreadable attribute");
  if (s >= 0)
    H5Sclose(s);
  if (t >= 0)
    H5Tclose(t);
  if (a >= 0)
    H5Aclose(a);
  return rc;
}

/* The settings into st; checks the format version and completeness first. */
static int nw_ckpt_r_settings(nw_ckpt_reader *r, nw_ckpt_state *st,
                              int *has_opt) {
  int64_t v;
  NW_TRY(nw_ckpt_r_attr(r, "format_version", 0, &v));
  if (v != NW_CKPT_FORMAT_VERSION)
    return nw_ckpt_r_bad(r, "format_version", 0,
                         "version %lld, this build reads %d", (long long)v,
                         NW_CKPT_FORMAT_VERSION);
  if (H5Aexists(r->file, "complete") <= 0)
    return nw_ckpt_r_bad(r, "complete", 0,
                         "marker missing: the file was never finished");
  NW_TRY(nw_ckpt_r_attr(r, "complete", 0, &v));
  if (v != 1)
    return nw_ckpt_r_bad(r, "complete", 0, "marker is %lld", (long long)v);
  NW_TRY(nw_ckpt_r_attr(r, "has_optimizer", 0, &v));
  if (v != 0 && v != 1)
    return nw_ckpt_r_bad(r, "has_optimizer", 0, "is %lld", (long long)v);
  *has_opt = (int)v;
  for (int i = 0; i < nw_ckpt__n_settings; i++) {
    const nw_ckpt_setting *s = &nw_ckpt__settings[i];
    char *p = (char *)st + s->offset;
    int64_t i64;
    uint64_t u64;
    switch (s->kind) {
    case NW_CKPT_I32:
      NW_TRY(nw_ckpt_r_attr(r, s->name, 0, &i64));
      if (i64 < INT32_MIN || i64 > INT32_MAX)
        return nw_ckpt_r_bad(r, s->name, 0, "%lld out of range",
                             (long long)i64);
      int32_t i32 = (int32_t)i64;
      memcpy(p, &i32, sizeof i32);
      break;
    case NW_CKPT_I64:
      NW_TRY(nw_ckpt_r_attr(r, s->name, 0, &i64));
      memcpy(p, &i64, sizeof i64);
      break;
    case NW_CKPT_U64:
      NW_TRY(nw_ckpt_r_attr(r, s->name, 1, &u64));
      if (s->offset == offsetof(nw_ckpt_state, num_params))
        st->num_params = (size_t)u64;
      else
        memcpy(p, &u64, sizeof u64);
      break;
    }
  }
  if (!nw_model_shape_ok(&st->shape))
    return nw_ckpt_r_bad(r, "n_layer", 0,
                         "invalid model shape %d layers, %d heads, width %d, "
                         "vocab %d, %d positions",
                         st->shape.n_layer, st->shape.n_head, st->shape.n_embd,
                         st->shape.vocab_size, st->shape.max_seq_len);
  size_t want = nw_model_param_count(&st->shape);
  if (st->num_params != want)
    return nw_ckpt_r_bad(r, "num_params", 0, "%zu, the shape has %zu",
                         st->num_params, want);
  return 0;
}

/* Reads a whole small dataset (a string) with its checksum checked; *out is
 * malloc'd with a NUL after the nbytes. */
static int nw_ckpt_r_small(nw_ckpt_reader *r, const char *name, char **out,
                           size_t *nbytes, hsize_t *npoints);

/* Checks the "crc32c" attribute of d against crc. */
static int nw_ckpt_r_crc(nw_ckpt_reader *r, hid_t d, const char *what,
                         uint32_t crc) {
  if (H5Aexists(d, NW_CKPT_CRC_ATTR) <= 0)
    return nw_ckpt_r_bad(r, what, 0, "crc32c attribute missing");
  hid_t a = H5Aopen(d, NW_CKPT_CRC_ATTR, H5P_DEFAULT);
  uint32_t stored = 0;
  int ok = a >= 0 && H5Aread(a, H5T_NATIVE_UINT32, &stored) >= 0;
  if (a >= 0)
    H5Aclose(a);
  if (!ok)
    return nw_ckpt_r_bad(r, what, 1, "crc32c attribute unreadable");
  if (stored != crc)
    return nw_ckpt_r_bad(r, what, 0,
                         "checksum mismatch (stored 0x%08x, computed 0x%08x)",
                         stored, crc);
  return 0;
}

static int nw_ckpt_r_small(nw_ckpt_reader *r, const char *name, char **out,
                           size_t *nbytes, hsize_t *npoints) {
  *out = NULL;
  hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT);
  if (d < 0)
    return nw_ckpt_r_bad(r, name, 1, "dataset missing");
  int rc = 0;
  char *buf = NULL;
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
  size_t tsize = t >= 0 ? H5Tget_size(t) : 0;
  if (t < 0 || s < 0 || np < 0) {
    rc = nw_ckpt_r_bad(r, name, 1, "unreadable dataset");
    goto out;
  }
  if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0 ||
      tsize == 0 || tsize > (64u << 20) || (hsize_t)np > (1u << 24)) {
    rc = nw_ckpt_r_bad(r, name, 0, "not a fixed-length string dataset");
    goto out;
  }
  size_t n = (size_t)np * tsize;
  buf = malloc(n + 1);
  if (!buf) {
    snprintf(r->err, r->errlen, "%s: %s: out of host memory", r->base, name);
    rc = NW_EHOSTMEM;
    goto out;
  }
  if (H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    rc = nw_ckpt_r_bad(r, name, 1, "read failed");
    goto out;
  }
  buf[n] = 0;
  rc = nw_ckpt_r_crc(r, d, name, nw_crc32c(0, buf, n));
  if (rc == 0) {
    *out = buf;
    buf = NULL;
    *nbytes = n;
    *npoints = (hsize_t)np;
  }
out:
  free(buf);
  if (s >= 0)
    H5Sclose(s);
  if (t >= 0)
    H5Tclose(t);
  H5Dclose(d);
  return rc;
}

/* Reads dataset d (file space fs, dims rows of cols floats) through
 * r->scratch, whole rows at a time, into *crc. */
static int nw_ckpt_r_stream(nw_ckpt_reader *r, hid_t d, hid_t fs,
                            const char *what, const hsize_t *dims, int nd,
                            uint32_t *crc) {
  hsize_t cols = nd == 2 ? dims[1] : 1;
  hsize_t rows_per = NW_CKPT_VERIFY_CHUNK / cols;
  if (rows_per == 0)
    rows_per = 1;
  float *buf = r->scratch;
  float *own = NULL;
  if (rows_per * cols > NW_CKPT_VERIFY_CHUNK) { /* one row > scratch */
    own = buf = malloc(cols * sizeof(float));
    if (!own) {
      snprintf(r->err, r->errlen, "%s: %s: out of host memory", r->base, what);
      return NW_EHOSTMEM;
    }
  }
  int rc = 0;
  for (hsize_t r0 = 0; r0 < dims[0] && rc == 0; r0 += rows_per) {
    hsize_t start[2] = {r0, 0};
    hsize_t count[2] = {dims[0] - r0 < rows_per ? dims[0] - r0 : rows_per,
                        cols};
    hsize_t n = count[0] * cols;
    hid_t ms = H5Screate_simple(1, &n, NULL);
    if (ms < 0 ||
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf) < 0)
      rc = nw_ckpt_r_bad(r, what, 1, "read failed at row %llu",
                         (unsigned long long)r0);
    else
      *crc = nw_crc32c(*crc, buf, (size_t)n * sizeof(float));
    if (ms >= 0)
      H5Sclose(ms);
  }
  free(own);
  return rc;
}

/* One tensor dataset: float32 little-endian of exactly t's shape; read into
 * dst (or streamed through r->scratch when dst is NULL) and checksummed. */
static int nw_ckpt_r_tensor(nw_ckpt_reader *r, hid_t g, const char *group,
                            const nw_tensor_info *t, float *dst) {
  char what[160];
  snprintf(what, sizeof what, "%s/%s", group, t->name);
  hid_t d = H5Dopen2(g, t->name, H5P_DEFAULT);
  if (d < 0)
    return nw_ckpt_r_bad(r, what, 1, "dataset missing");
  int rc = 0;
  hid_t ft = H5Dget_type(d), fs = H5Dget_space(d);
  hsize_t dims[NW_MAX_TENSOR_DIMS] = {0, 0};
  int nd = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
  if (ft < 0 || fs < 0 || nd < 0) {
    rc = nw_ckpt_r_bad(r, what, 1, "unreadable dataset");
    goto out;
  }
  if (H5Tequal(ft, H5T_IEEE_F32LE) <= 0) {
    rc = nw_ckpt_r_bad(r, what, 0, "not float32 little-endian");
    goto out;
  }
  if (nd != t->ndim) {
    rc = nw_ckpt_r_bad(r, what, 0, "%d dimensions, expected %d", nd, t->ndim);
    goto out;
  }
  H5Sget_simple_extent_dims(fs, dims, NULL);
  if (dims[0] != (hsize_t)t->shape[0] ||
      (nd == 2 && dims[1] != (hsize_t)t->shape[1])) {
    rc = nw_ckpt_r_bad(r, what, 0, "shape (%llu, %llu), expected (%d, %d)",
                       (unsigned long long)dims[0],
                       (unsigned long long)(nd == 2 ? dims[1] : 0), t->shape[0],
                       nd == 2 ? t->shape[1] : 0);
    goto out;
  }
  uint32_t crc = 0;
  if (dst) {
    if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
      rc = nw_ckpt_r_bad(r, what, 1, "read failed");
      goto out;
    }
    crc = nw_crc32c(0, dst, t->numel * sizeof(float));
  } else if ((rc = nw_ckpt_r_stream(r, d, fs, what, dims, nd, &crc)) < 0) {
    goto out;
  }
  rc = nw_ckpt_r_crc(r, d, what, crc);
out:
  if (fs >= 0)
    H5Sclose(fs);
  if (ft >= 0)
    H5Tclose(ft);
  H5Dclose(d);
  return rc;
}

/* A group of st->n_tensors tensors, nothing else in it. */
static int nw_ckpt_r_group(nw_ckpt_reader *r, const char *group,
                           const nw_ckpt_state *st, float *flat) {
  hid_t g = H5Gopen2(r->file, group, H5P_DEFAULT);
  if (g < 0)
    return nw_ckpt_r_bad(r, group, 1, "group missing");
  H5G_info_t info;
  int rc = 0;
  if (H5Gget_info(g, &info) < 0)
    rc = nw_ckpt_r_bad(r, group, 1, "unreadable group");
  else if (info.nlinks != (hsize_t)st->n_tensors)
    rc = nw_ckpt_r_bad(r, group, 0, "%llu entries, expected %d",
                       (unsigned long long)info.nlinks, st->n_tensors);
  for (int i = 0; i < st->n_tensors && rc == 0; i++)
    rc = nw_ckpt_r_tensor(r, g, group, &st->tensors[i],
                          flat ? flat + st->tensors[i].offset : NULL);
  H5Gclose(g);
  return rc;
}

/* The tensor table: tensor_names must list the model's table for the shape,
 * in its order; offsets follow from the order. */
static int nw_ckpt_r_table(nw_ckpt_reader *r, nw_ckpt_state *st) {
  char *names = NULL;
  size_t nb = 0;
  hsize_t np = 0;
  NW_TRY(nw_ckpt_r_small(r, NW_CKPT_NAMES, &names, &nb, &np));
  int rc = 0;
  int n = nw_model_tensor_count(&st->shape);
  size_t each = np ? nb / np : 0;
  if (np != (hsize_t)n || each == 0 || each > NW_CKPT_NAME_LEN) {
    rc = nw_ckpt_r_bad(r, NW_CKPT_NAMES, 0,
                       "%llu names of %zu bytes, the shape has %d tensors",
                       (unsigned long long)np, each, n);
    goto out;
  }
  st->tensors = calloc((size_t)n, sizeof *st->tensors);
  if (!st->tensors) {
    snprintf(r->err, r->errlen, "%s: out of host memory", r->base);
    rc = NW_EHOSTMEM;
    goto out;
  }
  st->n_tensors = n;
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    nw_tensor_info *t = &st->tensors[i];
    nw_model_tensor_at(&st->shape, i, t);
    const char *got = names + (size_t)i * each;
    if (strnlen(got, each) != strlen(t->name) ||
        memcmp(got, t->name, strlen(t->name)) != 0) {
      rc = nw_ckpt_r_bad(r, NW_CKPT_NAMES, 0,
                         "entry %d is \"%.*s\", the model's is %s", i,
                         (int)strnlen(got, each), got, t->name);
      goto out;
    }
    t->offset = off;
    off += t->numel;
  }
out:
  free(names);
  return rc;
}

static int nw_ckpt_r_file(nw_ckpt_reader *r, nw_ckpt_state *st, int keep) {
  int has_opt = 0;
  NW_TRY(nw_ckpt_r_settings(r, st, &has_opt));
  NW_TRY(nw_ckpt_r_table(r, st));
  size_t nb = 0;
  hsize_t np = 0;
  NW_TRY(nw_ckpt_r_small(r, NW_CKPT_CONFIG, &st->config_text, &nb, &np));
  if (np != 1 || strlen(st->config_text) + 1 != nb)
    return nw_ckpt_r_bad(r, NW_CKPT_CONFIG, 0, "not one NUL-terminated text");
  if (keep) {
    size_t bytes = st->num_params * sizeof(float);
    st->params = malloc(bytes);
    if (has_opt) {
      st->exp_avg = malloc(bytes);
      st->exp_avg_sq = malloc(bytes);
    }
    if (!st->params || (has_opt && (!st->exp_avg || !st->exp_avg_sq))) {
      snprintf(r->err, r->errlen, "%s: out of host memory for %zu values",
               r->base, st->num_params);
      return NW_EHOSTMEM;
    }
  }
  NW_TRY(nw_ckpt_r_group(r, NW_CKPT_MODEL, st, st->params));
  int opt_there = H5Lexists(r->file, NW_CKPT_OPT, H5P_DEFAULT) > 0;
  if (opt_there != has_opt)
    return nw_ckpt_r_bad(r, NW_CKPT_OPT, 0, "group %s but has_optimizer is %d",
                         opt_there ? "present" : "missing", has_opt);
  if (has_opt) {
    NW_TRY(nw_ckpt_r_group(r, NW_CKPT_EXP_AVG, st, st->exp_avg));
    NW_TRY(nw_ckpt_r_group(r, NW_CKPT_EXP_AVG_SQ, st, st->exp_avg_sq));
  }
  return 0;
}

static int nw_ckpt_load(const char *path, nw_ckpt_state *out, char *err,
                        size_t errlen) {
  nw_ckpt_reader r = {
      .base = nw_ckpt__base(path), .file = -1, .err = err, .errlen = errlen};
  struct stat sb;
  if (stat(path, &sb) != 0) {
    int e = errno;
    snprintf(err, errlen, "%s: %s", r.base, strerror(e));
    return e == ENOENT ? NW_ENOTFOUND : NW_EIO;
  }
  nw_ckpt__h5_init();
  nw_ckpt_state st;
  memset(&st, 0, sizeof st);
  int rc = 0;
  hid_t fapl = nw_ckpt__fapl();
  if (fapl < 0) {
    snprintf(err, errlen, "%s: HDF5 property list failed", r.base);
    return NW_EINTERNAL;
  }
  if (!out) {
    r.scratch = malloc(NW_CKPT_VERIFY_CHUNK * sizeof(float));
    if (!r.scratch) {
      snprintf(err, errlen, "%s: out of host memory", r.base);
      rc = NW_EHOSTMEM;
      goto out;
    }
  }
  r.file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (r.file < 0) {
    nw_ckpt_r_bad(&r, "open", 1, "not a readable HDF5 file");
    rc = NW_EDATA;
    goto out;
  }
  rc = nw_ckpt_r_file(&r, &st, out != NULL);
  if (rc == 0 && nw_ckpt_name_step(path) >= 0 &&
      nw_ckpt_name_step(path) != st.step) {
    /* a copy under another step's name would make resume skip or repeat
     * steps, and retention delete the wrong files: damage */
    snprintf(err, errlen, "%s: named step %lld but holds step %lld", r.base,
             (long long)nw_ckpt_name_step(path), (long long)st.step);
    rc = NW_EDATA;
  }
out:
  if (r.file >= 0)
    H5Fclose(r.file);
  H5Pclose(fapl);
  free(r.scratch);
  if (rc == 0 && out)
    *out = st;
  else
    nw_ckpt_free(&st);
  return rc;
}

int nw_ckpt_read(const char *path, nw_ckpt_state *st, char *err,
                 size_t errlen) {
  memset(st, 0, sizeof *st);
  return nw_ckpt_load(path, st, err, errlen);
}

int nw_ckpt_verify(const char *path, char *err, size_t errlen) {
  return nw_ckpt_load(path, NULL, err, errlen);
}

void nw_ckpt_free(nw_ckpt_state *st) {
  if (!st)
    return;
  free(st->config_text);
  free(st->tensors);
  free(st->params);
  free(st->exp_avg);
  free(st->exp_avg_sq);
  memset(st, 0, sizeof *st);
}
