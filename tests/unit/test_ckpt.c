/* test_ckpt.c — HDF5 checkpoints: bitwise round trip of a real model's
 * state, h5dump and the documented h5py example reading it, truncated and
 * bit-flipped files caught by verification and skipped for the previous
 * good one, the write's cleanup on failure (fault switch, file size limit),
 * retention, and the time limit of isolated verification (a FIFO named like
 * a checkpoint blocks HDF5's open for real). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "base/config.h"
#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_internal.h" // defines: nw_ckpt__ internals
#include "checkpoints/crc32c.h"
#include "device/backend.h"
#include "device/mem.h"
#include "testutil.h"
#include "trainer/model/model.h"

/* ------------------------------------------------------------ fixture */

/* A small real model: 2 layers, width 32, vocab 64, 16 positions (28032
 * parameters, a 340 KB checkpoint with both moments). */
static const nw_model_config test_shape = {.n_layer = 2,
                                           .n_head = 2,
                                           .n_embd = 32,
                                           .vocab_size = 64,
                                           .max_seq_len = 16};

typedef struct {
  nw_mem *mem;
  nw_model *model;
  nw_tensor_info *tensors; /* (n) copy of the model's table */
  int n;
  size_t num_params;
  float *exp_avg, *exp_avg_sq; /* (num_params) fake but deterministic */
  char config_text[16384];
} fixture;

static fixture fx;

static uint64_t rng = 1;
static double uniform01(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng >> 11) / 9007199254740992.0;
}

static int group_setup(void **state) {
  (void)state;
  if (nw_mem_create(&fx.mem, 0) != 0 ||
      nw_model_create(&fx.model, &test_shape, &nw_backend_cpu, fx.mem, 42) != 0)
    return -1;
  fx.n = nw_model_num_tensors(fx.model);
  fx.num_params = nw_model_num_params(fx.model);
  fx.tensors = calloc((size_t)fx.n, sizeof *fx.tensors);
  fx.exp_avg = malloc(fx.num_params * sizeof(float));
  fx.exp_avg_sq = malloc(fx.num_params * sizeof(float));
  if (!fx.tensors || !fx.exp_avg || !fx.exp_avg_sq)
    return -1;
  for (int i = 0; i < fx.n; i++)
    fx.tensors[i] = *nw_model_tensor(fx.model, i);
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model = test_shape;
  cfg.batch.effective = 24;
  cfg.batch.micro = 4;
  cfg.batch.world = 2;
  cfg.train.seed = 7;
  cfg.data.seed = 11;
  snprintf(cfg.run.dir, sizeof cfg.run.dir, "/tmp/some run");
  size_t n = nw_config_dump(&cfg, fx.config_text, sizeof fx.config_text);
  return n < sizeof fx.config_text ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  nw_model_destroy(fx.model);
  nw_mem_destroy(fx.mem);
  free(fx.tensors);
  free(fx.exp_avg);
  free(fx.exp_avg_sq);
  return 0;
}

/* The state of "step": parameters from the model, moments that differ by
 * step, and distinctive values in every setting (big seeds, a step past
 * 2^32, last_eval_step -1). */
static void make_state(nw_ckpt_state *st, int64_t step, int with_opt) {
  memset(st, 0, sizeof *st);
  rng = (uint64_t)step * 2654435761u + 1;
  for (size_t i = 0; i < fx.num_params; i++) {
    fx.exp_avg[i] = (float)(uniform01() - 0.5) * 1e-3f;
    fx.exp_avg_sq[i] = (float)uniform01() * 1e-6f;
  }
  st->step = step;
  st->tokens_seen = step * 24 * 16 + 5000000000ll;
  st->data_index = (uint64_t)step * 24 + 3;
  st->data_seed = 0xfedcba9876543210ull;
  st->init_seed = 0x8000000000000001ull;
  st->effective = 24;
  st->micro = 4;
  st->accum = 3;
  st->world = 2;
  st->max_seq_len = 16;
  st->eval_batch = 8;
  st->eval_release_cache = 1;
  st->last_eval_step = -1;
  st->shape = test_shape;
  st->config_text = fx.config_text;
  st->n_tensors = fx.n;
  st->tensors = fx.tensors;
  st->num_params = fx.num_params;
  st->params = nw_model_params(fx.model);
  st->exp_avg = with_opt ? fx.exp_avg : NULL;
  st->exp_avg_sq = with_opt ? fx.exp_avg_sq : NULL;
}

static void write_step(const char *run, int64_t step, char *path, size_t len) {
  nw_ckpt_state st;
  make_state(&st, step, 1);
  char err[512] = "";
  nw_ckpt_path(run, step, path, len);
  int rc = nw_ckpt_write(path, &st, err, sizeof err);
  if (rc != 0)
    fail_msg("write %s: %s", path, err);
}

static void *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return buf;
}

static void spill(const char *path, const void *buf, size_t len) {
  unlink(path); /* a fresh inode: a FIFO or a read-only file goes too */
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

/* Files in RUN/checkpoints whose names contain ".tmp.". */
static int count_tmp(const char *run) {
  char dir[NW_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/checkpoints", run);
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    n += strstr(de->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

static int exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

static void rm_rf(const char *dir) {
  char *argv[] = {"/bin/rm", "-rf", (char *)dir, NULL};
  char out[256];
  nw_test_run_cmd(argv, out, sizeof out);
}

/* The raw-data offset of a dataset (HADDR_UNDEF for a group), and the
 * object header's address. */
static void locate(const char *path, const char *name, haddr_t *data,
                   haddr_t *header) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  assert_true(f >= 0);
  hid_t o = H5Oopen(f, name, H5P_DEFAULT);
  assert_true(o >= 0);
  *data = HADDR_UNDEF;
  if (H5Iget_type(o) == H5I_DATASET) {
    *data = H5Dget_offset(o);
    assert_true(*data != HADDR_UNDEF);
  }
  H5O_info_t oi;
  assert_true(H5Oget_info2(o, &oi, H5O_INFO_BASIC) >= 0);
  *header = oi.addr;
  H5Oclose(o);
  H5Fclose(f);
}

typedef struct {
  int n;
  char path[4][NW_PATH_MAX];
  char why[4][512];
} skips;

static void on_skip(void *user, const char *path, const char *why) {
  skips *s = user;
  if (s->n < 4) {
    snprintf(s->path[s->n], NW_PATH_MAX, "%s", path);
    snprintf(s->why[s->n], 512, "%s", why);
  }
  s->n++;
}

/* The damaged file at `bad` fails both verifications with NW_EDATA (the
 * message containing `expect` when not NULL), and the newest good one is
 * `good`. */
static void assert_rejected(const char *run, const char *bad, const char *good,
                            const char *expect) {
  char err[1024] = "";
  int rc = nw_ckpt_verify(bad, err, sizeof err);
  if (rc != NW_EDATA)
    fail_msg("verify %s: rc %d (%s)", bad, rc, err);
  if (expect && !strstr(err, expect))
    fail_msg("verify: \"%s\" lacks \"%s\"", err, expect);
  assert_non_null(strstr(err, strrchr(bad, '/') + 1));
  nw_ckpt_state st;
  assert_int_equal(nw_ckpt_read(bad, &st, err, sizeof err), NW_EDATA);
  assert_null(st.params);
  rc = nw_ckpt_verify_isolated(bad, 10.0, err, sizeof err);
  if (rc != NW_EDATA)
    fail_msg("verify_isolated %s: rc %d (%s)", bad, rc, err);
  if (expect && !strstr(err, expect))
    fail_msg("verify_isolated: \"%s\" lacks \"%s\"", err, expect);
  skips s = {0};
  char found[NW_PATH_MAX];
  assert_int_equal(nw_ckpt_find_latest(run, 10.0, found, sizeof found, on_skip,
                                       &s, err, sizeof err),
                   0);
  assert_string_equal(found, good);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.path[0], bad);
}

/* -------------------------------------------------------------- tests */

static void test_crc32c(void **state) {
  (void)state;
  assert_int_equal(nw_crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(nw_crc32c_sw(0, "123456789", 9), 0xE3069283u);
  unsigned char zeros[32] = {0};
  assert_int_equal(nw_crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720 */
  /* Both paths, any alignment, short and long (the hardware path splits
   * buffers of 12 KB and more into three streams and joins them). */
  static unsigned char buf[200000];
  rng = 5;
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)(uniform01() * 256);
  size_t lens[] = {0,   1,     7,     8,     9,          63,
                   300, 12287, 12288, 12289, 65536 + 13, 199990};
  for (size_t off = 0; off < 9; off++)
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
      size_t len = lens[k];
      uint32_t whole = nw_crc32c(0, buf + off, len);
      assert_int_equal(whole, nw_crc32c_sw(0, buf + off, len));
      uint32_t part = nw_crc32c(nw_crc32c(0, buf + off, len / 3),
                                buf + off + len / 3, len - len / 3);
      assert_int_equal(whole, part);
    }
}

/* The checkpoint's idea of the tensor table is the model's, for shapes
 * other than the fixture's too. */
static void test_table_matches_model(void **state) {
  (void)state;
  nw_model_config shapes[] = {test_shape, {3, 4, 16, 50, 9}, {1, 1, 8, 7, 3}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    nw_mem *mem;
    nw_model *m;
    assert_int_equal(nw_mem_create(&mem, 0), 0);
    assert_int_equal(nw_model_create(&m, &shapes[k], &nw_backend_cpu, mem, 1),
                     0);
    assert_int_equal(nw_model_tensor_count(&shapes[k]),
                     nw_model_num_tensors(m));
    size_t off = 0;
    for (int i = 0; i < nw_model_num_tensors(m); i++) {
      const nw_tensor_info *t = nw_model_tensor(m, i);
      nw_tensor_info e;
      nw_model_tensor_at(&shapes[k], i, &e);
      assert_string_equal(e.name, t->name);
      assert_int_equal(e.ndim, t->ndim);
      assert_int_equal(e.shape[0], t->shape[0]);
      assert_int_equal(e.shape[1], t->shape[1]);
      assert_int_equal(e.numel, t->numel);
      assert_int_equal(off, t->offset);
      off += t->numel;
    }
    assert_int_equal(off, nw_model_num_params(m));
    nw_model_destroy(m);
    nw_mem_destroy(mem);
  }
}

static void test_roundtrip(void **state) {
  (void)state;
  char run[NW_PATH_MAX], path[NW_PATH_MAX], err[512] = "";
  nw_test_tmpdir(run, sizeof run, "ckpt-rt");
  for (int with_opt = 1; with_opt >= 0; with_opt--) {
    int64_t step = with_opt ? 5000000123ll : 0;
    nw_ckpt_state in, out;
    make_state(&in, step, with_opt);
    nw_ckpt_path(run, step, path, sizeof path);
    int rc = nw_ckpt_write(path, &in, err, sizeof err);
    if (rc != 0)
      fail_msg("write: %s", err);
    assert_int_equal(count_tmp(run), 0);
    rc = nw_ckpt_read(path, &out, err, sizeof err);
    if (rc != 0)
      fail_msg("read: %s", err);
    assert_true(out.step == in.step);
    assert_true(out.tokens_seen == in.tokens_seen);
    assert_true(out.data_index == in.data_index);
    assert_true(out.data_seed == in.data_seed);
    assert_true(out.init_seed == in.init_seed);
    assert_int_equal(out.effective, in.effective);
    assert_int_equal(out.micro, in.micro);
    assert_int_equal(out.accum, in.accum);
    assert_int_equal(out.world, in.world);
    assert_int_equal(out.max_seq_len, in.max_seq_len);
    assert_int_equal(out.eval_batch, in.eval_batch);
    assert_int_equal(out.eval_release_cache, in.eval_release_cache);
    assert_true(out.last_eval_step == -1);
    assert_memory_equal(&out.shape, &in.shape, sizeof in.shape);
    assert_string_equal(out.config_text, in.config_text);
    assert_int_equal(out.n_tensors, in.n_tensors);
    for (int i = 0; i < in.n_tensors; i++) {
      assert_string_equal(out.tensors[i].name, in.tensors[i].name);
      assert_int_equal(out.tensors[i].offset, in.tensors[i].offset);
      assert_int_equal(out.tensors[i].numel, in.tensors[i].numel);
      assert_int_equal(out.tensors[i].ndim, in.tensors[i].ndim);
      assert_memory_equal(out.tensors[i].shape, in.tensors[i].shape,
                          sizeof in.tensors[i].shape);
    }
    assert_int_equal(out.num_params, in.num_params);
    size_t bytes = in.num_params * sizeof(float);
    assert_memory_equal(out.params, in.params, bytes);
    if (with_opt) {
      assert_non_null(out.exp_avg);
      assert_memory_equal(out.exp_avg, in.exp_avg, bytes);
      assert_memory_equal(out.exp_avg_sq, in.exp_avg_sq, bytes);
    } else {
      assert_null(out.exp_avg);
      assert_null(out.exp_avg_sq);
    }

    /* The config text is a loadable config equal to the one dumped. */
    char ini[NW_PATH_MAX + 16];
    snprintf(ini, sizeof ini, "%s/back.ini", run);
    spill(ini, out.config_text, strlen(out.config_text));
    nw_config cfg;
    nw_config_defaults(&cfg);
    rc = nw_config_load(&cfg, ini, err, sizeof err);
    if (rc != 0)
      fail_msg("config load: %s", err);
    static char again[16384];
    nw_config_dump(&cfg, again, sizeof again);
    assert_string_equal(again, in.config_text);
    assert_int_equal(cfg.batch.micro, 4);
    assert_int_equal(cfg.model.n_embd, 32);

    assert_int_equal(nw_ckpt_verify(path, err, sizeof err), 0);
    assert_int_equal(nw_ckpt_verify_isolated(path, 30, err, sizeof err), 0);
    nw_ckpt_free(&out);
    assert_null(out.params);
  }
  /* A missing file is not found, not damage. */
  nw_ckpt_path(run, 77, path, sizeof path);
  assert_int_equal(nw_ckpt_verify(path, err, sizeof err), NW_ENOTFOUND);
  rm_rf(run);
}

static void test_write_refuses_foreign_table(void **state) {
  (void)state;
  char run[NW_PATH_MAX], path[NW_PATH_MAX], err[512] = "";
  nw_test_tmpdir(run, sizeof run, "ckpt-table");
  nw_ckpt_state st;
  make_state(&st, 1, 1);
  nw_tensor_info *t = malloc((size_t)fx.n * sizeof *t);
  memcpy(t, fx.tensors, (size_t)fx.n * sizeof *t);
  t[3].offset += 1;
  st.tensors = t;
  nw_ckpt_path(run, 1, path, sizeof path);
  assert_int_equal(nw_ckpt_write(path, &st, err, sizeof err), NW_EINTERNAL);
  assert_non_null(strstr(err, t[3].name));
  memcpy(t, fx.tensors, (size_t)fx.n * sizeof *t);
  snprintf(t[5].name, sizeof t[5].name, "transformer.h.0.attn.bias");
  assert_int_equal(nw_ckpt_write(path, &st, err, sizeof err), NW_EINTERNAL);
  assert_false(exists(path));
  assert_int_equal(count_tmp(run), 0);
  free(t);
  rm_rf(run);
}

static void test_h5dump(void **state) {
  (void)state;
  char run[NW_PATH_MAX], path[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-dump");
  write_step(run, 3, path, sizeof path);
  static char out[1 << 20];
  char *hdr[] = {"/usr/bin/h5dump", "-H", path, NULL};
  assert_int_equal(nw_test_run_cmd(hdr, out, sizeof out), 0);
  assert_non_null(strstr(out, "GROUP \"model\""));
  assert_non_null(strstr(out, "DATASET \"transformer.wte.weight\""));
  assert_non_null(strstr(out, "ATTRIBUTE \"crc32c\""));
  assert_non_null(strstr(out, "ATTRIBUTE \"complete\""));
  char *data[] = {"/usr/bin/h5dump", "-d", "/model/transformer.wte.weight",
                  path, NULL};
  assert_int_equal(nw_test_run_cmd(data, out, sizeof out), 0);
  assert_non_null(strstr(out, "DATASPACE  SIMPLE { ( 64, 32 ) / ( 64, 32 ) }"));
  rm_rf(run);
}

/* The documented example (the doc shows this very file) loads the
 * checkpoint; its values are the trainer's, bit for bit. */
static void test_python_example(void **state) {
  (void)state;
  size_t n;
  char *script = slurp(NW_SOURCE_DIR "/tests/ckpt_example.py", &n);
  char *doc = slurp(NW_SOURCE_DIR "/docs/checkpoint-format.md", &n);
  if (!strstr(doc, script))
    fail_msg("docs/checkpoint-format.md does not show tests/ckpt_example.py");
  free(script);
  free(doc);

  char run[NW_PATH_MAX], path[NW_PATH_MAX], dump[NW_PATH_MAX + 16];
  nw_test_tmpdir(run, sizeof run, "ckpt-py");
  write_step(run, 1234, path, sizeof path);
  snprintf(dump, sizeof dump, "%s/flat.bin", run);
  static char out[1 << 20];
  char *argv[] = {"/usr/bin/python3",
                  NW_SOURCE_DIR "/tests/ckpt_example.py",
                  path,
                  "--dump",
                  dump,
                  NULL};
  int rc = nw_test_run_cmd(argv, out, sizeof out);
  if (rc != 0)
    fail_msg("python example exited %d:\n%s", rc, out);
  assert_non_null(strstr(out, "step 1234\n"));
  char want[256];
  snprintf(want, sizeof want, "data_index %llu\n",
           (unsigned long long)(1234 * 24 + 3));
  assert_non_null(strstr(out, want));
  snprintf(want, sizeof want, "num_params %zu\n", fx.num_params);
  assert_non_null(strstr(out, want));
  snprintf(want, sizeof want, "config_bytes %zu\n", strlen(fx.config_text));
  assert_non_null(strstr(out, want));
  /* One line per tensor: name, dtype, shape, first, last, float64 sum. */
  const float *p = nw_model_params(fx.model);
  for (int i = 0; i < fx.n; i++) {
    const nw_tensor_info *t = &fx.tensors[i];
    char head[128];
    if (t->ndim == 2)
      snprintf(head, sizeof head, "\n%s float32 %dx%d ", t->name, t->shape[0],
               t->shape[1]);
    else
      snprintf(head, sizeof head, "\n%s float32 %d ", t->name, t->shape[0]);
    char *line = strstr(out, head);
    if (!line)
      fail_msg("no line \"%s\" in:\n%s", head + 1, out);
    char *q = line + strlen(head);
    double first = strtod(q, &q), last = strtod(q, &q), sum = strtod(q, &q);
    assert_true(first == (double)p[t->offset]);
    assert_true(last == (double)p[t->offset + t->numel - 1]);
    double s = 0, sabs = 0;
    for (size_t j = 0; j < t->numel; j++) {
      s += p[t->offset + j];
      sabs += fabsf(p[t->offset + j]);
    }
    if (!(fabs(sum - s) <= 1e-12 * sabs + 1e-300))
      fail_msg("%s: python sum %.17g, C sum %.17g", t->name, sum, s);
  }
  /* Every value, in file order: parameters, exp_avg, exp_avg_sq. */
  char *flat = slurp(dump, &n);
  size_t bytes = fx.num_params * sizeof(float);
  assert_int_equal(n, 3 * bytes);
  nw_ckpt_state st;
  make_state(&st, 1234, 1);
  assert_memory_equal(flat, st.params, bytes);
  assert_memory_equal(flat + bytes, st.exp_avg, bytes);
  assert_memory_equal(flat + 2 * bytes, st.exp_avg_sq, bytes);
  free(flat);
  rm_rf(run);
}

static void test_truncated(void **state) {
  (void)state;
  char run[NW_PATH_MAX], good[NW_PATH_MAX], bad[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-trunc");
  write_step(run, 100, good, sizeof good);
  write_step(run, 200, bad, sizeof bad);
  size_t size;
  char *orig = slurp(bad, &size);
  haddr_t data, header, root_data, root_header;
  locate(bad, "model/transformer.h.1.mlp.c_fc.weight", &data, &header);
  locate(bad, "tensor_names", &root_data, &root_header);
  size_t cuts[] = {0,
                   8,                   /* inside the signature */
                   40,                  /* inside the superblock */
                   (size_t)data + 1000, /* mid-dataset */
                   (size_t)header + 12, /* mid object header */
                   (size_t)root_header + 12,
                   size / 2,
                   size - 4096,
                   size - 1};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
    assert_true(cuts[k] < size);
    spill(bad, orig, cuts[k]);
    assert_rejected(run, bad, good, NULL);
  }
  free(orig);
  rm_rf(run);
}

static void flip(const char *path, size_t at) {
  size_t n;
  unsigned char *b = slurp(path, &n);
  assert_true(at < n);
  b[at] ^= 0x10;
  spill(path, b, n);
  free(b);
}

static void test_bitflip(void **state) {
  (void)state;
  char run[NW_PATH_MAX], good[NW_PATH_MAX], bad[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-flip");
  write_step(run, 119, good, sizeof good);
  write_step(run, 120, bad, sizeof bad);
  size_t size;
  char *orig = slurp(bad, &size);
  haddr_t data, header;

  /* Raw data: only our checksum can see it. */
  locate(bad, "model/transformer.h.1.mlp.c_fc.weight", &data, &header);
  flip(bad, (size_t)data + 4 * 100 + 2);
  assert_rejected(run, bad, good,
                  "ckpt-0000000120.h5: model/transformer.h.1.mlp.c_fc.weight: "
                  "checksum mismatch (stored 0x");
  spill(bad, orig, size);
  locate(bad, "optimizer/exp_avg_sq/transformer.ln_f.bias", &data, &header);
  flip(bad, (size_t)data + 4 * 31);
  assert_rejected(run, bad, good,
                  "optimizer/exp_avg_sq/transformer.ln_f.bias: checksum");
  spill(bad, orig, size);
  locate(bad, "tensor_names", &data, &header);
  flip(bad, (size_t)data + 70);
  assert_rejected(run, bad, good, "tensor_names: checksum mismatch");
  spill(bad, orig, size);
  locate(bad, "config", &data, &header);
  flip(bad, (size_t)data + 3);
  assert_rejected(run, bad, good, "config: checksum mismatch");

  /* Metadata: the superblock, a dataset's object header, the root group's
   * object header (the settings): HDF5's own checksums, or ours. */
  spill(bad, orig, size);
  flip(bad, 20);
  assert_rejected(run, bad, good, NULL);
  spill(bad, orig, size);
  locate(bad, "model/transformer.wpe.weight", &data, &header);
  flip(bad, (size_t)header + 20);
  assert_rejected(run, bad, good, NULL);
  spill(bad, orig, size);
  locate(bad, "/", &data, &header);
  flip(bad, (size_t)header + 40);
  assert_rejected(run, bad, good, NULL);
  spill(bad, orig, size);
  locate(bad, "model", &data, &header); /* its links */
  flip(bad, (size_t)header + 200);
  assert_rejected(run, bad, good, NULL);

  /* Restored, it is the newest good one again. */
  spill(bad, orig, size);
  char err[512], found[NW_PATH_MAX];
  assert_int_equal(nw_ckpt_find_latest(run, 10, found, sizeof found, NULL, NULL,
                                       err, sizeof err),
                   0);
  assert_string_equal(found, bad);
  free(orig);
  rm_rf(run);
}

/* Edits a copy with HDF5 itself, so that checksums still match: the other
 * checks must catch it. */
static void edit_attr(const char *path, const char *name, int64_t v) {
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(f >= 0);
  if (v == INT64_MIN) {
    assert_true(H5Adelete(f, name) >= 0);
  } else {
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    assert_true(a >= 0);
    assert_true(H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
  }
  assert_true(H5Fclose(f) >= 0);
}

static void test_semantic_checks(void **state) {
  (void)state;
  char run[NW_PATH_MAX], good[NW_PATH_MAX], bad[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-sem");
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  write_step(run, 1, good, sizeof good);
  write_step(run, 2, bad, sizeof bad);
  size_t size;
  char *orig = slurp(bad, &size);
  struct {
    const char *attr;
    int64_t value;
    const char *expect;
  } cases[] = {
      {"format_version", 2, "format_version: version 2"},
      {"complete", INT64_MIN, "complete: marker missing"},
      {"complete", 0, "complete: marker is 0"},
      {"num_params", 28033, "num_params: 28033, the shape has 28032"},
      {"n_layer", 3, "tensor_names: 28 names"},
      {"n_embd", 0, "invalid model shape"},
      {"has_optimizer", 0, "optimizer: group present"},
      {"step", INT64_MIN, "step: attribute missing"},
  };
  char err[512];
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    spill(bad, orig, size);
    edit_attr(bad, cases[k].attr, cases[k].value);
    if (!strcmp(cases[k].attr, "n_layer")) { /* consistent num_params */
      nw_model_config s = test_shape;
      s.n_layer = 3;
      edit_attr(bad, "num_params", (int64_t)nw_model_param_count(&s));
    }
    assert_rejected(run, bad, good, cases[k].expect);
  }
  /* A dataset gone, a checksum replaced. */
  spill(bad, orig, size);
  hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(H5Ldelete(f, "model/transformer.ln_f.bias", H5P_DEFAULT) >= 0);
  H5Fclose(f);
  assert_rejected(run, bad, good, "model: 27 entries, expected 28");
  spill(bad, orig, size);
  f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d =
      H5Dopen2(f, "optimizer/exp_avg/transformer.wpe.weight", H5P_DEFAULT);
  hid_t a = H5Aopen(d, "crc32c", H5P_DEFAULT);
  uint32_t c = 0x12345678;
  assert_true(H5Awrite(a, H5T_NATIVE_UINT32, &c) >= 0);
  H5Aclose(a);
  H5Dclose(d);
  H5Fclose(f);
  assert_rejected(run, bad, good,
                  "optimizer/exp_avg/transformer.wpe.weight: checksum mismatch "
                  "(stored 0x12345678");
  /* Not HDF5 at all. */
  spill(bad, "hello\n", 6);
  assert_rejected(run, bad, good, "not a readable HDF5 file");
  (void)err;
  free(orig);
  rm_rf(run);
}

static void test_fault_switch(void **state) {
  (void)state;
  char run[NW_PATH_MAX], old[NW_PATH_MAX], path[NW_PATH_MAX], err[512];
  nw_test_tmpdir(run, sizeof run, "ckpt-fault");
  write_step(run, 100, old, sizeof old);
  size_t size;
  char *orig = slurp(old, &size);
  nw_ckpt_state st;
  make_state(&st, 200, 1);
  nw_ckpt_path(run, 200, path, sizeof path);
  setenv("NIGHTWATCH_TEST_CKPT_FAIL", "write", 1);
  int rc = nw_ckpt_write(path, &st, err, sizeof err);
  int rc_over = nw_ckpt_write(old, &st, err, sizeof err); /* over the old */
  unsetenv("NIGHTWATCH_TEST_CKPT_FAIL");
  assert_int_equal(rc, NW_EIO);
  assert_int_equal(rc_over, NW_EIO);
  assert_non_null(strstr(err, old));
  assert_non_null(strstr(err, "test fault"));
  assert_false(exists(path));
  assert_int_equal(count_tmp(run), 0);
  size_t n;
  char *now = slurp(old, &n);
  assert_int_equal(n, size);
  assert_memory_equal(now, orig, size);
  free(now);
  assert_int_equal(nw_ckpt_verify(old, err, sizeof err), 0);
  /* Off again: the write goes through. */
  assert_int_equal(nw_ckpt_write(path, &st, err, sizeof err), 0);
  assert_int_equal(nw_ckpt_verify(path, err, sizeof err), 0);
  free(orig);
  rm_rf(run);
}

/* A real I/O failure midway: a file size limit (EFBIG) in a child. */
static void test_write_fails_for_real(void **state) {
  (void)state;
  char run[NW_PATH_MAX], old[NW_PATH_MAX], path[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-efbig");
  write_step(run, 100, old, sizeof old);
  nw_ckpt_path(run, 200, path, sizeof path);
  int pfd[2];
  assert_int_equal(pipe(pfd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {64 * 1024, 64 * 1024};
    setrlimit(RLIMIT_FSIZE, &rl);
    nw_ckpt_state st;
    make_state(&st, 200, 1);
    char err[512] = "";
    int rc = nw_ckpt_write(path, &st, err, sizeof err);
    dprintf(pfd[1], "%d %s", rc, err);
    _exit(0);
  }
  close(pfd[1]);
  char msg[1024] = "";
  ssize_t got = read(pfd[0], msg, sizeof msg - 1);
  close(pfd[0]);
  int status;
  waitpid(pid, &status, 0);
  assert_true(got > 0);
  msg[got] = 0;
  char want[32];
  snprintf(want, sizeof want, "%d ", NW_EIO);
  if (strncmp(msg, want, strlen(want)) != 0 || !strstr(msg, path) ||
      !strstr(msg, "File too large"))
    fail_msg("child: %s", msg);
  assert_false(exists(path));
  assert_int_equal(count_tmp(run), 0);
  char err[512];
  assert_int_equal(nw_ckpt_verify(old, err, sizeof err), 0);
  rm_rf(run);
}

static void test_list(void **state) {
  (void)state;
  char run[NW_PATH_MAX], dir[NW_PATH_MAX + 16], p[2 * NW_PATH_MAX];
  char err[512];
  nw_test_tmpdir(run, sizeof run, "ckpt-list");
  static char paths[8][NW_PATH_MAX];
  int n = -1;
  assert_int_equal(nw_ckpt_list(run, paths, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 0);
  char found[NW_PATH_MAX];
  assert_int_equal(nw_ckpt_find_latest(run, 5, found, sizeof found, NULL, NULL,
                                       err, sizeof err),
                   NW_ENOTFOUND);
  snprintf(dir, sizeof dir, "%s/checkpoints", run);
  assert_int_equal(mkdir(dir, 0755), 0);
  const char *names[] = {"ckpt-0000000010.h5",  "ckpt-0000000002.h5",
                         "ckpt-0000000100.h5",  "ckpt-123.h5",
                         "ckpt-00000000010.h5", "ckpt-0000000010.h5.tmp.5",
                         "ckpt-000000001a.h5",  "xckpt-0000000010.h5",
                         "ckpt-0000000010.h5x", "ckpt-0000000010.H5"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    spill(p, "x", 1);
  }
  assert_int_equal(nw_ckpt_list(run, paths, 8, &n, err, sizeof err), 0);
  assert_int_equal(n, 3);
  int64_t steps[] = {100, 10, 2};
  for (int i = 0; i < 3; i++) {
    nw_ckpt_path(run, steps[i], p, sizeof p);
    assert_string_equal(paths[i], p);
  }
  assert_int_equal(nw_ckpt_list(run, paths, 2, &n, err, sizeof err), 0);
  assert_int_equal(n, 2);
  nw_ckpt_path(run, 10, p, sizeof p);
  assert_string_equal(paths[1], p);
  /* None of them is a checkpoint. */
  skips s = {0};
  assert_int_equal(nw_ckpt_find_latest(run, 5, found, sizeof found, on_skip, &s,
                                       err, sizeof err),
                   NW_ENOTFOUND);
  assert_int_equal(s.n, 3);
  assert_non_null(strstr(err, "none of 3"));
  nw_ckpt_path(run, 7, p, sizeof p);
  assert_string_equal(p + strlen(run), "/checkpoints/ckpt-0000000007.h5");
  rm_rf(run);
}

static void test_retain(void **state) {
  (void)state;
  char run[NW_PATH_MAX], p[NW_PATH_MAX], err[512];
  static char paths[16][NW_PATH_MAX];
  int n;
  nw_test_tmpdir(run, sizeof run, "ckpt-keep");
  for (int s = 10; s <= 50; s += 10)
    write_step(run, s, p, sizeof p);
  /* Keep N >= count: nothing goes. */
  assert_int_equal(nw_ckpt_retain(run, 5, p), 0);
  assert_int_equal(nw_ckpt_retain(run, 2, p), 3);
  assert_int_equal(nw_ckpt_list(run, paths, 16, &n, err, sizeof err), 0);
  assert_int_equal(n, 2);
  nw_ckpt_path(run, 50, p, sizeof p);
  assert_string_equal(paths[0], p);
  nw_ckpt_path(run, 40, p, sizeof p);
  assert_string_equal(paths[1], p);

  /* Two damaged successors: the newest good one (50) survives keep=1, and
   * so does everything newer than it; 40 goes. */
  char c60[NW_PATH_MAX], c70[NW_PATH_MAX];
  haddr_t data, header;
  write_step(run, 60, c60, sizeof c60);
  write_step(run, 70, c70, sizeof c70);
  locate(c60, "model/transformer.wte.weight", &data, &header);
  flip(c60, (size_t)data + 8);
  size_t size;
  char *b = slurp(c70, &size);
  spill(c70, b, size / 2);
  free(b);
  assert_int_equal(nw_ckpt_retain(run, 1, c70), 1);
  assert_int_equal(nw_ckpt_list(run, paths, 16, &n, err, sizeof err), 0);
  assert_int_equal(n, 3);
  nw_ckpt_path(run, 50, p, sizeof p);
  assert_string_equal(paths[2], p);
  assert_int_equal(nw_ckpt_retain(run, 1, c70), 0);

  /* Its successor durable and good: now 50 may go, the damaged ones too. */
  write_step(run, 80, p, sizeof p);
  assert_int_equal(nw_ckpt_retain(run, 1, p), 3);
  assert_int_equal(nw_ckpt_list(run, paths, 16, &n, err, sizeof err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(paths[0], p);

  /* durable_newest is never deleted, even where keep-N would. */
  char c90[NW_PATH_MAX];
  write_step(run, 90, c90, sizeof c90);
  assert_int_equal(nw_ckpt_retain(run, 1, p), 0); /* 80 named durable */
  assert_true(exists(p));

  /* Temporaries: a dead writer's go, a live one's (ours, pid 1) stay. */
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  waitpid(dead, NULL, 0);
  char tdead[NW_PATH_MAX + 32], tlive[NW_PATH_MAX + 32],
      tinit[NW_PATH_MAX + 32];
  snprintf(tdead, sizeof tdead, "%s.tmp.%d", c90, (int)dead);
  snprintf(tlive, sizeof tlive, "%s.tmp.%d", c90, (int)getpid());
  snprintf(tinit, sizeof tinit, "%s.tmp.1", c90);
  spill(tdead, "x", 1);
  spill(tlive, "x", 1);
  spill(tinit, "x", 1);
  assert_int_equal(nw_ckpt_retain(run, 1, c90), 2); /* 80 and the dead tmp */
  assert_false(exists(tdead));
  assert_true(exists(tlive));
  assert_true(exists(tinit));
  assert_true(exists(c90));
  unlink(tlive);
  unlink(tinit);
  rm_rf(run);
}

/* A FIFO named like the newest checkpoint: HDF5's open blocks on it for
 * real. The child is killed at the limit, the caller never hangs. */
static void test_isolated_timeout(void **state) {
  (void)state;
  char run[NW_PATH_MAX], good[NW_PATH_MAX], fifo[NW_PATH_MAX], err[512];
  nw_test_tmpdir(run, sizeof run, "ckpt-hang");
  write_step(run, 100, good, sizeof good);
  nw_ckpt_path(run, 300, fifo, sizeof fifo);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  double t0 = nw_test_now();
  int rc = nw_ckpt_verify_isolated(fifo, 1.0, err, sizeof err);
  double dt = nw_test_now() - t0;
  assert_int_equal(rc, NW_EDATA);
  assert_non_null(strstr(err, "ckpt-0000000300.h5: verification timed out "
                              "after 1 s"));
  assert_true(dt >= 0.9 && dt < 5.0);
  assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* reaped */
  assert_int_equal(errno, ECHILD);

  skips s = {0};
  char found[NW_PATH_MAX];
  assert_int_equal(nw_ckpt_find_latest(run, 0.5, found, sizeof found, on_skip,
                                       &s, err, sizeof err),
                   0);
  assert_string_equal(found, good);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.path[0], fifo);
  assert_non_null(strstr(s.why[0], "timed out after 0.5 s"));
  /* Retention does not wait on it: not a regular file, not good; it is the
   * newest, so it is kept (newer than the newest good one). */
  assert_int_equal(nw_ckpt_retain(run, 1, good), 0);
  assert_true(exists(fifo));
  unlink(fifo);
  rm_rf(run);
}

/* LeakSanitizer (the NW_SANITIZE build): HDF5 1.10 leaks the object header
 * it was deserializing when that header fails its checksum (a bit-flipped
 * file, test_bitflip; seen with H5set_free_list_limits all 0 and a slow
 * unwinder: H5Dopen2/H5Aexists -> H5O_protect -> H5C_protect). A library
 * bug on damaged input; in production such files are verified in a child
 * process. The fast unwinder stops inside libhdf5 (no frame pointers), so
 * the suppression names the library. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:libhdf5_serial.so\n";
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test(test_table_matches_model),
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_write_refuses_foreign_table),
      cmocka_unit_test(test_h5dump),
      cmocka_unit_test(test_python_example),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_bitflip),
      cmocka_unit_test(test_semantic_checks),
      cmocka_unit_test(test_fault_switch),
      cmocka_unit_test(test_write_fails_for_real),
      cmocka_unit_test(test_list),
      cmocka_unit_test(test_retain),
      cmocka_unit_test(test_isolated_timeout),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
