/* test_gpu_ops.c — every operation of nw_backend_cuda against
 * nw_backend_cpu on small odd shapes, forward and backward, from the same
 * inputs. Backward gradients start from random values on both sides, so
 * that accumulation (+=), not assignment, is what is compared. FP32 mode
 * (no tensor cores) for tight tolerances; one TF32 and one BF16 product
 * check the other modes' error bounds. Exit 77 without a GPU. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/error.h"
#include "device/backend.h"
#include "device/mem.h"
#include "gpu_test.h"
#include "testutil.h"

static const nw_backend *cpu = &nw_backend_cpu, *gpu = &nw_backend_cuda;
static nw_mem *mem;

/* a host array of n floats, uniform in [-1, 1), seeded */
static float *rnd(size_t n, unsigned seed) {
  float *x = malloc(n * sizeof *x);
  assert_non_null(x);
  uint64_t s = 0x9e3779b97f4a7c15ull * (seed + 1);
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    x[i] = (float)((s >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
  }
  return x;
}

/* a device copy of a host array */
static void *up(const void *host, size_t bytes) {
  void *d = NULL;
  assert_int_equal(nw_mem_alloc(mem, NW_MEM_WORKSPACE, bytes, &d), 0);
  if (host)
    gpu->to_device(d, host, bytes);
  return d;
}

/* the device array equals the host one within tol (relative to its max) */
static void same(const char *what, const float *want, const float *dev,
                 size_t n, double tol) {
  float *got = malloc(n * sizeof *got);
  assert_non_null(got);
  gpu->to_host(got, dev, n * sizeof *got);
  assert_int_equal(gpu->status(), 0);
  double e = nw_test_rel_diff(got, want, n);
  if (!(e <= tol))
    fail_msg("%s: relative difference %.3g > %.3g", what, e, tol);
  free(got);
  nw_mem_free(mem, (void *)dev);
}

static int *tokens(size_t n, int V) {
  int *t = malloc(n * sizeof *t);
  assert_non_null(t);
  for (size_t i = 0; i < n; i++)
    t[i] = (int)((i * 7 + 3) % (size_t)V); /* repeats: rows of dwte collide */
  return t;
}

static void test_encoder(void **state) {
  (void)state;
  int B = 3, T = 5, C = 37, V = 11, N = B * T;
  int *inp = tokens((size_t)N, V);
  float *wte = rnd((size_t)V * C, 1), *wpe = rnd((size_t)T * C, 2);
  float *out = rnd((size_t)N * C, 3), *dout = rnd((size_t)N * C, 4);
  float *dwte = rnd((size_t)V * C, 5), *dwpe = rnd((size_t)T * C, 6);
  int *d_inp = up(inp, N * sizeof(int));
  float *d_wte = up(wte, V * C * 4), *d_wpe = up(wpe, T * C * 4);
  float *d_out = up(NULL, N * C * 4), *d_dout = up(dout, N * C * 4);
  float *d_dwte = up(dwte, V * C * 4), *d_dwpe = up(dwpe, T * C * 4);
  cpu->encoder_forward(out, inp, wte, wpe, B, T, C);
  gpu->encoder_forward(d_out, d_inp, d_wte, d_wpe, B, T, C);
  same("encoder_forward", out, d_out, (size_t)N * C, 1e-6);
  cpu->encoder_backward(dwte, dwpe, dout, inp, B, T, C);
  gpu->encoder_backward(d_dwte, d_dwpe, d_dout, d_inp, B, T, C);
  same("encoder_backward dwte", dwte, d_dwte, (size_t)V * C, 1e-6);
  same("encoder_backward dwpe", dwpe, d_dwpe, (size_t)T * C, 1e-6);
  nw_mem_free(mem, d_inp), nw_mem_free(mem, d_wte), nw_mem_free(mem, d_wpe);
  nw_mem_free(mem, d_dout);
  free(inp), free(wte), free(wpe), free(out), free(dout), free(dwte),
      free(dwpe);
}

static void test_layernorm(void **state) {
  (void)state;
  int N = 9, C = 77;
  float *x = rnd((size_t)N * C, 1), *w = rnd(C, 2), *b = rnd(C, 3);
  float *out = rnd((size_t)N * C, 4), *mean = rnd(N, 5), *rstd = rnd(N, 6);
  float *dout = rnd((size_t)N * C, 7), *dx = rnd((size_t)N * C, 8);
  float *dw = rnd(C, 9), *db = rnd(C, 10);
  float *d_x = up(x, N * C * 4), *d_w = up(w, C * 4), *d_b = up(b, C * 4);
  float *d_out = up(NULL, N * C * 4), *d_mean = up(NULL, N * 4);
  float *d_rstd = up(NULL, N * 4), *d_dout = up(dout, N * C * 4);
  float *d_dx = up(dx, N * C * 4), *d_dw = up(dw, C * 4), *d_db = up(db, C * 4);
  cpu->layernorm_forward(out, mean, rstd, x, w, b, N, C);
  gpu->layernorm_forward(d_out, d_mean, d_rstd, d_x, d_w, d_b, N, C);
  cpu->layernorm_backward(dx, dw, db, dout, x, w, mean, rstd, N, C);
  gpu->layernorm_backward(d_dx, d_dw, d_db, d_dout, d_x, d_w, d_mean, d_rstd, N,
                          C);
  same("layernorm_forward out", out, d_out, (size_t)N * C, 1e-5);
  same("layernorm_forward mean", mean, d_mean, N, 1e-5);
  same("layernorm_forward rstd", rstd, d_rstd, N, 1e-5);
  same("layernorm_backward dinp", dx, d_dx, (size_t)N * C, 1e-5);
  same("layernorm_backward dweight", dw, d_dw, C, 1e-5);
  same("layernorm_backward dbias", db, d_db, C, 1e-5);
  nw_mem_free(mem, d_x), nw_mem_free(mem, d_w), nw_mem_free(mem, d_b);
  nw_mem_free(mem, d_dout);
  free(x), free(w), free(b), free(out), free(mean), free(rstd), free(dout),
      free(dx), free(dw), free(db);
}

/* One product forward and backward, with and without a bias and dinp. */
static void matmul_case(int N, int C, int OC, int bias, int dinp, double tol) {
  float *x = rnd((size_t)N * C, 1), *w = rnd((size_t)OC * C, 2);
  float *b = rnd(OC, 3), *out = rnd((size_t)N * OC, 4);
  float *dout = rnd((size_t)N * OC, 5), *dx = rnd((size_t)N * C, 6);
  float *dw = rnd((size_t)OC * C, 7), *db = rnd(OC, 8);
  float *d_x = up(x, N * C * 4), *d_w = up(w, OC * C * 4);
  float *d_b = up(b, OC * 4), *d_out = up(NULL, N * OC * 4);
  float *d_dout = up(dout, N * OC * 4), *d_dx = up(dx, N * C * 4);
  float *d_dw = up(dw, OC * C * 4), *d_db = up(db, OC * 4);
  cpu->matmul_forward(out, x, w, bias ? b : NULL, N, C, OC);
  gpu->matmul_forward(d_out, d_x, d_w, bias ? d_b : NULL, N, C, OC);
  cpu->matmul_backward(dinp ? dx : NULL, dw, bias ? db : NULL, dout, x, w, N, C,
                       OC);
  gpu->matmul_backward(dinp ? d_dx : NULL, d_dw, bias ? d_db : NULL, d_dout,
                       d_x, d_w, N, C, OC);
  same("matmul_forward", out, d_out, (size_t)N * OC, tol);
  same("matmul_backward dinp", dx, d_dx, (size_t)N * C, tol);
  same("matmul_backward dweight", dw, d_dw, (size_t)OC * C, tol);
  same("matmul_backward dbias", db, d_db, OC, tol);
  nw_mem_free(mem, d_x), nw_mem_free(mem, d_w), nw_mem_free(mem, d_b);
  nw_mem_free(mem, d_dout);
  free(x), free(w), free(b), free(out), free(dout), free(dx), free(dw),
      free(db);
}

static void test_matmul_fp32(void **state) {
  (void)state;
  matmul_case(9, 13, 17, 1, 1, 1e-5);
  matmul_case(33, 64, 3 * 64, 0, 0, 1e-5);
  matmul_case(1, 16, 4, 1, 1, 1e-5); /* decode's one-row products */
}

/* The tensor-core modes round the product inputs: TF32 keeps 10 mantissa
 * bits, BF16 7 (relative error ~2^-11 and ~2^-8 per input). */
static void test_matmul_tf32_bf16(void **state) {
  (void)state;
  nw_cuda_close();
  char err[256];
  assert_int_equal(nw_cuda_open(0, NW_PRECISION_TF32, mem, err, sizeof err), 0);
  matmul_case(64, 96, 80, 1, 1, 3e-3);
  nw_cuda_close();
  assert_int_equal(nw_cuda_open(0, NW_PRECISION_BF16, mem, err, sizeof err), 0);
  matmul_case(64, 96, 80, 1, 1, 2e-2);
  nw_cuda_close();
  assert_int_equal(nw_cuda_open(0, NW_PRECISION_FP32, mem, err, sizeof err), 0);
}

static void test_attention(void **state) {
  (void)state;
  int B = 2, T = 7, C = 24, NH = 3, N = B * T;
  size_t att = (size_t)B * NH * T * T;
  float *qkv = rnd((size_t)N * 3 * C, 1), *out = rnd((size_t)N * C, 2);
  float *a = rnd(att, 3), *dout = rnd((size_t)N * C, 4);
  float *dqkv = rnd((size_t)N * 3 * C, 5), *datt = calloc(att, 4);
  float *d_qkv = up(qkv, N * 3 * C * 4), *d_out = up(NULL, N * C * 4);
  float *d_a = up(NULL, att * 4), *d_dout = up(dout, N * C * 4);
  float *d_dqkv = up(dqkv, N * 3 * C * 4), *d_datt = up(NULL, att * 4);
  cpu->attention_forward(out, a, qkv, B, T, C, NH);
  gpu->attention_forward(d_out, d_a, d_qkv, B, T, C, NH);
  cpu->attention_backward(dqkv, datt, dout, qkv, a, B, T, C, NH);
  gpu->attention_backward(d_dqkv, d_datt, d_dout, d_qkv, d_a, B, T, C, NH);
  same("attention_forward out", out, d_out, (size_t)N * C, 1e-5);
  same("attention_forward att", a, d_a, att, 1e-5);
  same("attention_backward dqkv", dqkv, d_dqkv, (size_t)N * 3 * C, 1e-5);
  same("attention_backward datt", datt, d_datt, att, 1e-5);
  nw_mem_free(mem, d_qkv), nw_mem_free(mem, d_dout);
  free(qkv), free(out), free(a), free(dout), free(dqkv), free(datt);
}

static void test_gelu_residual(void **state) {
  (void)state;
  size_t n = 1001;
  float *x = rnd(n, 1), *y = rnd(n, 2), *out = rnd(n, 3), *dout = rnd(n, 4);
  float *d1 = rnd(n, 5), *d2 = rnd(n, 6);
  for (size_t i = 0; i < n; i++)
    x[i] *= 6.0f; /* both tails of GELU */
  float *d_x = up(x, n * 4), *d_y = up(y, n * 4), *d_out = up(NULL, n * 4);
  float *d_dout = up(dout, n * 4), *d_d1 = up(d1, n * 4), *d_d2 = up(d2, n * 4);
  cpu->gelu_forward(out, x, n);
  gpu->gelu_forward(d_out, d_x, n);
  same("gelu_forward", out, d_out, n, 1e-5);
  cpu->gelu_backward(d1, x, dout, n);
  gpu->gelu_backward(d_d1, d_x, d_dout, n);
  same("gelu_backward", d1, d_d1, n, 1e-5);
  d_out = up(NULL, n * 4);
  d_d1 = up(d1, n * 4);
  cpu->residual_forward(out, x, y, n);
  gpu->residual_forward(d_out, d_x, d_y, n);
  same("residual_forward", out, d_out, n, 1e-6);
  cpu->residual_backward(d1, d2, dout, n);
  gpu->residual_backward(d_d1, d_d2, d_dout, n);
  same("residual_backward 1", d1, d_d1, n, 1e-6);
  same("residual_backward 2", d2, d_d2, n, 1e-6);
  nw_mem_free(mem, d_x), nw_mem_free(mem, d_y), nw_mem_free(mem, d_dout);
  free(x), free(y), free(out), free(dout), free(d1), free(d2);
}

static void test_crossentropy(void **state) {
  (void)state;
  int N = 6, V = 50257; /* GPT-2's vocabulary: many loop turns per row */
  float *logits = rnd((size_t)N * V, 1), *losses = rnd(N, 2);
  int targets[6] = {0, 50256, -1, 17, 17, 40000};
  for (size_t i = 0; i < (size_t)N * V; i++)
    logits[i] *= 8.0f;
  for (int grad = 0; grad <= 1; grad++) {
    float *l = malloc((size_t)N * V * 4);
    memcpy(l, logits, (size_t)N * V * 4);
    float *d_l = up(l, (size_t)N * V * 4), *d_loss = up(NULL, N * 4);
    int *d_t = up(targets, sizeof targets);
    cpu->crossentropy(losses, l, targets, N, V, 0.125f, grad);
    gpu->crossentropy(d_loss, d_l, d_t, N, V, 0.125f, grad);
    same("crossentropy losses", losses, d_loss, N, 1e-5);
    same(grad ? "crossentropy dlogits" : "crossentropy logits kept", l, d_l,
         (size_t)N * V, 1e-5);
    nw_mem_free(mem, d_t);
    free(l);
  }
  free(logits), free(losses);
}

static void test_decode_argmax(void **state) {
  (void)state;
  int B = 3, C = 24, NH = 4, Tmax = 9, pos = 5, hs = C / NH;
  size_t cache = (size_t)B * NH * Tmax * hs;
  float *q = rnd((size_t)B * C, 1), *k = rnd(cache, 2), *v = rnd(cache, 3);
  float *out = rnd((size_t)B * C, 4);
  float *d_q = up(q, B * C * 4), *d_k = up(k, cache * 4);
  float *d_v = up(v, cache * 4), *d_out = up(NULL, B * C * 4);
  cpu->attention_decode(out, q, k, v, B, C, NH, Tmax, pos);
  gpu->attention_decode(d_out, d_q, d_k, d_v, B, C, NH, Tmax, pos);
  same("attention_decode", out, d_out, (size_t)B * C, 1e-5);
  /* argmax, with a tie that the lower index must win */
  int V = 1000, next[3], gnext[3];
  float *lg = rnd((size_t)B * V, 5);
  lg[1 * V + 10] = 5.0f, lg[1 * V + 900] = 5.0f;
  lg[2 * V + 999] = 7.0f;
  float *d_lg = up(lg, (size_t)B * V * 4);
  int *d_next = up(NULL, sizeof next);
  cpu->argmax(next, lg, B, V);
  gpu->argmax(d_next, d_lg, B, V);
  gpu->to_host(gnext, d_next, sizeof gnext);
  assert_memory_equal(next, gnext, sizeof next);
  assert_int_equal(gnext[1], 10);
  assert_int_equal(gnext[2], 999);
  nw_mem_free(mem, d_q), nw_mem_free(mem, d_k), nw_mem_free(mem, d_v);
  nw_mem_free(mem, d_lg), nw_mem_free(mem, d_next);
  free(q), free(k), free(v), free(out), free(lg);
}

static void test_adamw_sumsq_copies(void **state) {
  (void)state;
  size_t n = 100003;
  float *p = rnd(n, 1), *g = rnd(n, 2), *m = rnd(n, 3), *v = rnd(n, 4);
  for (size_t i = 0; i < n; i++)
    v[i] = v[i] * v[i]; /* a second moment is not negative */
  float *d_p = up(p, n * 4), *d_g = up(g, n * 4), *d_m = up(m, n * 4),
        *d_v = up(v, n * 4);
  cpu->adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.19f, 0.0975f,
             0.5f);
  gpu->adamw(d_p, d_g, d_m, d_v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.19f,
             0.0975f, 0.5f);
  double want = cpu->sumsq(g, n), got = gpu->sumsq(d_g, n);
  assert_true(fabs(got - want) <= 1e-12 * want);
  assert_true(gpu->sumsq(d_g, n) == got); /* repeatable to the bit */
  same("adamw p", p, d_p, n, 1e-6);
  same("adamw m", m, d_m, n, 1e-6);
  same("adamw v", v, d_v, n, 1e-6);
  /* memset0 and the copies */
  gpu->memset0(d_g, n * 4);
  memset(g, 0, n * 4);
  same("memset0", g, d_g, n, 0);
  assert_int_equal(gpu->status(), 0);
  free(p), free(g), free(m), free(v);
}

int main(void) {
  nw_gpu_test_require("test_gpu_ops");
  char err[256];
  if (nw_mem_create(&mem, 0) < 0 ||
      nw_cuda_open(0, NW_PRECISION_FP32, mem, err, sizeof err) < 0) {
    fprintf(stderr, "cannot open the GPU: %s\n", err);
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encoder),
      cmocka_unit_test(test_layernorm),
      cmocka_unit_test(test_matmul_fp32),
      cmocka_unit_test(test_matmul_tf32_bf16),
      cmocka_unit_test(test_attention),
      cmocka_unit_test(test_gelu_residual),
      cmocka_unit_test(test_crossentropy),
      cmocka_unit_test(test_decode_argmax),
      cmocka_unit_test(test_adamw_sumsq_copies),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  nw_cuda_close();
  nw_mem_destroy(mem);
  return rc;
}
