/* test_ckpt.c — the HDF5 checkpoint format: CRC-32C, the tensor table
 * against the model's, a bitwise round trip of a real model's state, and
 * the documented readers (h5dump, the h5py example) seeing what was
 * written. Damage: test_ckpt_damage.c; writes that fail, the directory
 * and retention: test_ckpt_files.c. */
#define _GNU_SOURCE
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
#include <unistd.h>

#include <cmocka.h>
#include <hdf5.h>

#include "base/config.h"
#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/crc32c.h"
#include "device/backend.h"
#include "device/mem.h"
#include "testutil.h"
#include "trainer/model/model.h"
#include "unit/checkpoints/ckpt_fixture.h"

static void test_crc32c(void **state) {
  (void)state;
  assert_int_equal(nw_crc32c(0, "123456789", 9), 0xE3069283u);
  assert_int_equal(nw_crc32c_sw(0, "123456789", 9), 0xE3069283u);
  unsigned char zeros[32] = {0};
  assert_int_equal(nw_crc32c(0, zeros, 32), 0x8A9136AAu); /* RFC 3720 */
  /* Both paths, any alignment, short and long (the hardware path splits
   * buffers of 12 KB and more into three streams and joins them). */
  static unsigned char buf[200000];
  nw_ckfx_rng = 5;
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (unsigned char)(nw_ckfx_uniform() * 256);
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
 * other than the nw_ckfx_fixture's too. */
static void test_table_matches_model(void **state) {
  (void)state;
  nw_model_config shapes[] = {
      nw_ckfx_shape, {3, 4, 16, 50, 9}, {1, 1, 8, 7, 3}};
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
    nw_ckfx_state(&in, step, with_opt);
    nw_ckpt_path(run, step, path, sizeof path);
    int rc = nw_ckpt_write(path, &in, err, sizeof err);
    if (rc != 0)
      fail_msg("write: %s", err);
    assert_int_equal(nw_ckfx_count_tmp(run), 0);
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
    nw_ckfx_spill(ini, out.config_text, strlen(out.config_text));
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
  nw_ckfx_rm_rf(run);
}

static void test_write_refuses_foreign_table(void **state) {
  (void)state;
  char run[NW_PATH_MAX], path[NW_PATH_MAX], err[512] = "";
  nw_test_tmpdir(run, sizeof run, "ckpt-table");
  nw_ckpt_state st;
  nw_ckfx_state(&st, 1, 1);
  nw_tensor_info *t = malloc((size_t)nw_ckfx.n * sizeof *t);
  memcpy(t, nw_ckfx.tensors, (size_t)nw_ckfx.n * sizeof *t);
  t[3].offset += 1;
  st.tensors = t;
  nw_ckpt_path(run, 1, path, sizeof path);
  assert_int_equal(nw_ckpt_write(path, &st, err, sizeof err), NW_EINTERNAL);
  assert_non_null(strstr(err, t[3].name));
  memcpy(t, nw_ckfx.tensors, (size_t)nw_ckfx.n * sizeof *t);
  snprintf(t[5].name, sizeof t[5].name, "transformer.h.0.attn.bias");
  assert_int_equal(nw_ckpt_write(path, &st, err, sizeof err), NW_EINTERNAL);
  assert_false(nw_ckfx_exists(path));
  assert_int_equal(nw_ckfx_count_tmp(run), 0);
  free(t);
  nw_ckfx_rm_rf(run);
}

static void test_h5dump(void **state) {
  (void)state;
  char run[NW_PATH_MAX], path[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-dump");
  nw_ckfx_write_step(run, 3, path, sizeof path);
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
  nw_ckfx_rm_rf(run);
}

/* The documented example (the doc shows this very file) loads the
 * checkpoint; its values are the trainer's, bit for bit. */
static void test_python_example(void **state) {
  (void)state;
  size_t n;
  char *script = nw_ckfx_slurp(NW_SOURCE_DIR "/tests/ckpt_example.py", &n);
  char *doc = nw_ckfx_slurp(NW_SOURCE_DIR "/docs/checkpoint-format.md", &n);
  if (!strstr(doc, script))
    fail_msg("docs/checkpoint-format.md does not show tests/ckpt_example.py");
  free(script);
  free(doc);

  char run[NW_PATH_MAX], path[NW_PATH_MAX], dump[NW_PATH_MAX + 16];
  nw_test_tmpdir(run, sizeof run, "ckpt-py");
  nw_ckfx_write_step(run, 1234, path, sizeof path);
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
  snprintf(want, sizeof want, "num_params %zu\n", nw_ckfx.num_params);
  assert_non_null(strstr(out, want));
  snprintf(want, sizeof want, "config_bytes %zu\n",
           strlen(nw_ckfx.config_text));
  assert_non_null(strstr(out, want));
  /* One line per tensor: name, dtype, shape, first, last, float64 sum. */
  const float *p = nw_model_params(nw_ckfx.model);
  for (int i = 0; i < nw_ckfx.n; i++) {
    const nw_tensor_info *t = &nw_ckfx.tensors[i];
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
  char *flat = nw_ckfx_slurp(dump, &n);
  size_t bytes = nw_ckfx.num_params * sizeof(float);
  assert_int_equal(n, 3 * bytes);
  nw_ckpt_state st;
  nw_ckfx_state(&st, 1234, 1);
  assert_memory_equal(flat, st.params, bytes);
  assert_memory_equal(flat + bytes, st.exp_avg, bytes);
  assert_memory_equal(flat + 2 * bytes, st.exp_avg_sq, bytes);
  free(flat);
  nw_ckfx_rm_rf(run);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c),
      cmocka_unit_test(test_table_matches_model),
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_write_refuses_foreign_table),
      cmocka_unit_test(test_h5dump),
      cmocka_unit_test(test_python_example),
  };
  return cmocka_run_group_tests(tests, nw_ckfx_setup, nw_ckfx_teardown);
}
