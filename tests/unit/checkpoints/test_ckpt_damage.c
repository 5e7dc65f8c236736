/* test_ckpt_damage.c — damaged checkpoints are caught by verification and
 * skipped for the previous good one, never loaded: truncated at every kind
 * of place, bit-flipped in data and metadata, edited consistently with
 * HDF5 itself (only the semantic checks can see it), and a FIFO named like
 * a checkpoint that blocks HDF5's open for real (the time limit of isolated
 * verification). */
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

static void test_truncated(void **state) {
  (void)state;
  char run[NW_PATH_MAX], good[NW_PATH_MAX], bad[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-trunc");
  nw_ckfx_write_step(run, 100, good, sizeof good);
  nw_ckfx_write_step(run, 200, bad, sizeof bad);
  size_t size;
  char *orig = nw_ckfx_slurp(bad, &size);
  haddr_t data, header, root_data, root_header;
  nw_ckfx_locate(bad, "model/transformer.h.1.mlp.c_fc.weight", &data, &header);
  nw_ckfx_locate(bad, "tensor_names", &root_data, &root_header);
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
    nw_ckfx_spill(bad, orig, cuts[k]);
    nw_ckfx_assert_rejected(run, bad, good, NULL);
  }
  free(orig);
  nw_ckfx_rm_rf(run);
}

static void test_bitflip(void **state) {
  (void)state;
  char run[NW_PATH_MAX], good[NW_PATH_MAX], bad[NW_PATH_MAX];
  nw_test_tmpdir(run, sizeof run, "ckpt-nw_ckfx_flip");
  nw_ckfx_write_step(run, 119, good, sizeof good);
  nw_ckfx_write_step(run, 120, bad, sizeof bad);
  size_t size;
  char *orig = nw_ckfx_slurp(bad, &size);
  haddr_t data, header;

  /* Raw data: only our checksum can see it. */
  nw_ckfx_locate(bad, "model/transformer.h.1.mlp.c_fc.weight", &data, &header);
  nw_ckfx_flip(bad, (size_t)data + 4 * 100 + 2);
  nw_ckfx_assert_rejected(
      run, bad, good,
      "ckpt-0000000120.h5: model/transformer.h.1.mlp.c_fc.weight: "
      "checksum mismatch (stored 0x");
  nw_ckfx_spill(bad, orig, size);
  nw_ckfx_locate(bad, "optimizer/exp_avg_sq/transformer.ln_f.bias", &data,
                 &header);
  nw_ckfx_flip(bad, (size_t)data + 4 * 31);
  nw_ckfx_assert_rejected(
      run, bad, good, "optimizer/exp_avg_sq/transformer.ln_f.bias: checksum");
  nw_ckfx_spill(bad, orig, size);
  nw_ckfx_locate(bad, "tensor_names", &data, &header);
  nw_ckfx_flip(bad, (size_t)data + 70);
  nw_ckfx_assert_rejected(run, bad, good, "tensor_names: checksum mismatch");
  nw_ckfx_spill(bad, orig, size);
  nw_ckfx_locate(bad, "config", &data, &header);
  nw_ckfx_flip(bad, (size_t)data + 3);
  nw_ckfx_assert_rejected(run, bad, good, "config: checksum mismatch");

  /* Metadata: the superblock, a dataset's object header, the root group's
   * object header (the settings): HDF5's own checksums, or ours. */
  nw_ckfx_spill(bad, orig, size);
  nw_ckfx_flip(bad, 20);
  nw_ckfx_assert_rejected(run, bad, good, NULL);
  nw_ckfx_spill(bad, orig, size);
  nw_ckfx_locate(bad, "model/transformer.wpe.weight", &data, &header);
  nw_ckfx_flip(bad, (size_t)header + 20);
  nw_ckfx_assert_rejected(run, bad, good, NULL);
  nw_ckfx_spill(bad, orig, size);
  nw_ckfx_locate(bad, "/", &data, &header);
  nw_ckfx_flip(bad, (size_t)header + 40);
  nw_ckfx_assert_rejected(run, bad, good, NULL);
  nw_ckfx_spill(bad, orig, size);
  nw_ckfx_locate(bad, "model", &data, &header); /* its links */
  nw_ckfx_flip(bad, (size_t)header + 200);
  nw_ckfx_assert_rejected(run, bad, good, NULL);

  /* Restored, it is the newest good one again. */
  nw_ckfx_spill(bad, orig, size);
  char err[512], found[NW_PATH_MAX];
  assert_int_equal(
      nw_ckpt_find_latest(run, 10, NULL, found, sizeof found, err, sizeof err),
      0);
  assert_string_equal(found, bad);
  free(orig);
  nw_ckfx_rm_rf(run);
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
  nw_ckfx_write_step(run, 1, good, sizeof good);
  nw_ckfx_write_step(run, 2, bad, sizeof bad);
  size_t size;
  char *orig = nw_ckfx_slurp(bad, &size);
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
    nw_ckfx_spill(bad, orig, size);
    edit_attr(bad, cases[k].attr, cases[k].value);
    if (!strcmp(cases[k].attr, "n_layer")) { /* consistent num_params */
      nw_model_config s = nw_ckfx_shape;
      s.n_layer = 3;
      edit_attr(bad, "num_params", (int64_t)nw_model_param_count(&s));
    }
    nw_ckfx_assert_rejected(run, bad, good, cases[k].expect);
  }
  /* A dataset gone, a checksum replaced. */
  nw_ckfx_spill(bad, orig, size);
  hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
  assert_true(H5Ldelete(f, "model/transformer.ln_f.bias", H5P_DEFAULT) >= 0);
  H5Fclose(f);
  nw_ckfx_assert_rejected(run, bad, good, "model: 27 entries, expected 28");
  nw_ckfx_spill(bad, orig, size);
  f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d =
      H5Dopen2(f, "optimizer/exp_avg/transformer.wpe.weight", H5P_DEFAULT);
  hid_t a = H5Aopen(d, "crc32c", H5P_DEFAULT);
  uint32_t c = 0x12345678;
  assert_true(H5Awrite(a, H5T_NATIVE_UINT32, &c) >= 0);
  H5Aclose(a);
  H5Dclose(d);
  H5Fclose(f);
  nw_ckfx_assert_rejected(
      run, bad, good,
      "optimizer/exp_avg/transformer.wpe.weight: checksum mismatch "
      "(stored 0x12345678");
  /* Not HDF5 at all. */
  nw_ckfx_spill(bad, "hello\n", 6);
  nw_ckfx_assert_rejected(run, bad, good, "not a readable HDF5 file");
  (void)err;
  free(orig);
  nw_ckfx_rm_rf(run);
}

/* A FIFO named like the newest checkpoint (HDF5's open would block on it
 * for good): refused unopened, at once, and passed over by the search. A
 * verifier that never answers (the test switch, as HDF5 on some damaged
 * files) is killed at the limit; the caller never hangs. */
static void test_isolated_timeout(void **state) {
  (void)state;
  char run[NW_PATH_MAX], good[NW_PATH_MAX], fifo[NW_PATH_MAX], err[512];
  nw_test_tmpdir(run, sizeof run, "ckpt-hang");
  nw_ckfx_write_step(run, 100, good, sizeof good);
  nw_ckpt_path(run, 300, fifo, sizeof fifo);
  assert_int_equal(mkfifo(fifo, 0644), 0);
  assert_int_equal(nw_ckpt_verify_isolated(fifo, 60.0, err, sizeof err),
                   NW_EDATA);
  assert_non_null(strstr(err, "ckpt-0000000300.h5: not a regular file"));

  setenv("NIGHTWATCH_TEST_CKPT_FAIL", "verify-hang", 1);
  double t0 = nw_test_now();
  int rc = nw_ckpt_verify_isolated(good, 1.0, err, sizeof err);
  double dt = nw_test_now() - t0;
  unsetenv("NIGHTWATCH_TEST_CKPT_FAIL");
  assert_int_equal(rc, NW_EDATA);
  assert_non_null(strstr(err, "ckpt-0000000100.h5: verification timed out "
                              "after 1 s"));
  assert_true(dt >= 0.9);
  assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* reaped */
  assert_int_equal(errno, ECHILD);

  nw_ckfx_skips s = {0};
  char found[NW_PATH_MAX];
  assert_int_equal(
      nw_ckpt_find_latest(run, 60, &(nw_ckpt_search){nw_ckfx_on_skip, NULL, &s},
                          found, sizeof found, err, sizeof err),
      0);
  assert_string_equal(found, good);
  assert_int_equal(s.n, 1);
  assert_string_equal(s.path[0], fifo);
  assert_non_null(strstr(s.why[0], "not a regular file"));
  /* Moved aside (a FIFO renames like any file); another one in its place:
   * retention does not wait on it either: not a regular file, not good; it
   * is the newest, so it is kept (newer than the newest good one). */
  assert_false(nw_ckfx_exists(fifo));
  assert_int_equal(mkfifo(fifo, 0644), 0);
  assert_int_equal(nw_ckpt_retain(run, 1, good), 0);
  assert_true(nw_ckfx_exists(fifo));
  unlink(fifo);
  nw_ckfx_rm_rf(run);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_bitflip),
      cmocka_unit_test(test_semantic_checks),
      cmocka_unit_test(test_isolated_timeout),
  };
  return cmocka_run_group_tests(tests, nw_ckfx_setup, nw_ckfx_teardown);
}
