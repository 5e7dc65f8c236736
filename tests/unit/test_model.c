/* test_model.c — the GPT-2 model and the CPU backend: gradients against
 * finite differences, backend kernels against naive double loops, kv-cache
 * decoding against the full forward, determinism, and out-of-memory unwind.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/error.h"
#include "device/backend.h"
#include "device/mem.h"
#include "testutil.h"
#include "trainer/model/model.h"
#include "trainer/model/model_internal.h" // defines: nw_model__forward_logits, __decode_logits

/* ------------------------------------------------------------ helpers */

static uint64_t rng_state;

static double test_uniform(void) { /* [0, 1) */
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

static double test_normal(void) {
  double u1 = test_uniform() + 1e-12, u2 = test_uniform();
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void fill_normal(float *x, size_t n, double std) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(std * test_normal());
}

static float *falloc(size_t n) {
  float *p = calloc(n ? n : 1, sizeof(float));
  assert_non_null(p);
  return p;
}

/* Replaces the GPT-2 init with larger values so that every gradient is well
 * above float round-off (at std 0.02 attention is nearly uniform and the
 * query/key gradients vanish into the noise of a finite difference). */
static void randomize_params(nw_model *m, double std) {
  float *p = nw_model_params(m);
  for (int i = 0; i < nw_model_num_tensors(m); i++) {
    const nw_tensor_info *t = nw_model_tensor(m, i);
    int ln_weight = strstr(t->name, "ln_") && strstr(t->name, ".weight");
    for (size_t j = 0; j < t->numel; j++)
      p[t->offset + j] = (float)((ln_weight ? 1.0 : 0.0) + std * test_normal());
  }
}

/* B rows of T tokens; row b keeps loss targets for its first lens[b]
 * positions and -1 after (padding, with input token 0 there). */
static void make_batch(int *inputs, int *targets, int B, int T, int V,
                       const int *lens) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      int valid = t < lens[b];
      inputs[b * T + t] = valid ? (int)(test_uniform() * V) : 0;
      targets[b * T + t] = valid ? (int)(test_uniform() * V) : -1;
    }
}

typedef struct {
  nw_mem *mem;
  nw_model *model;
} fixture;

static void fixture_make(fixture *f, nw_model_config cfg, uint64_t cap,
                         uint64_t seed) {
  assert_int_equal(nw_mem_create(&f->mem, cap), 0);
  assert_int_equal(
      nw_model_create(&f->model, &cfg, &nw_backend_cpu, f->mem, seed), 0);
}

static void fixture_free(fixture *f) {
  nw_model_destroy(f->model);
  nw_mem_destroy(f->mem);
}

/* -------------------------------------------------- 1. gradient check */

static void test_gradcheck(void **state) {
  (void)state;
  rng_state = 1234;
  nw_model_config cfg = {.n_layer = 2,
                         .n_head = 2,
                         .n_embd = 8,
                         .vocab_size = 11,
                         .max_seq_len = 8};
  fixture f;
  fixture_make(&f, cfg, 0, 42);
  nw_model *m = f.model;
  randomize_params(m, 0.4);
  enum { B = 2, T = 8 };
  int inputs[B * T], targets[B * T], lens[B] = {8, 5};
  make_batch(inputs, targets, B, T, cfg.vocab_size, lens);

  size_t np = nw_model_num_params(m);
  float *p = nw_model_params(m);
  double loss = 0, loss_eval = 0;
  nw_model_zero_grad(m);
  assert_int_equal(
      nw_model_forward_backward(m, inputs, targets, B, T, 1.0f, &loss), 0);
  assert_int_equal(nw_model_forward_loss(m, inputs, targets, B, T, &loss_eval),
                   0);
  assert_true(fabs(loss - loss_eval) <= 1e-6 * fabs(loss));
  float *analytic = falloc(np);
  memcpy(analytic, nw_model_grads(m), np * sizeof(float));

  /* Central differences of the summed loss, every parameter. Richardson
   * (4-point) differences keep truncation error far below the tolerance
   * even with eps large enough to swamp float round-off. */
  const float eps = 1e-2f;
  float *numeric = falloc(np);
  for (size_t i = 0; i < np; i++) {
    float orig = p[i];
    double l[4];
    const float steps[4] = {eps, -eps, 2 * eps, -2 * eps};
    for (int s = 0; s < 4; s++) {
      p[i] = orig + steps[s];
      assert_int_equal(nw_model_forward_loss(m, inputs, targets, B, T, &l[s]),
                       0);
    }
    p[i] = orig;
    numeric[i] = (float)((8.0 * (l[0] - l[1]) - (l[2] - l[3])) / (12.0 * eps));
  }
  /* Per tensor: max abs error over max abs gradient. A wrong factor (2x,
   * sign, a missed term) gives errors of order 1; these pass at ~1e-4. */
  double worst = 0;
  for (int i = 0; i < nw_model_num_tensors(m); i++) {
    const nw_tensor_info *t = nw_model_tensor(m, i);
    double maxref = 0;
    for (size_t j = 0; j < t->numel; j++)
      maxref = fmax(maxref, fabs(numeric[t->offset + j]));
    double rel =
        nw_test_rel_diff(analytic + t->offset, numeric + t->offset, t->numel);
    if (rel > 1e-2 || maxref < 1e-3)
      print_error("%s: rel err %.3g, max |grad| %.3g\n", t->name, rel, maxref);
    assert_true(maxref > 1e-3); /* the check is not vacuous */
    assert_true(rel < 1e-2);
    worst = fmax(worst, rel);
  }
  print_message("gradcheck: worst per-tensor relative error %.3g\n", worst);

  /* Accumulation and loss_scale: a second call with scale 0.5 adds half. */
  assert_int_equal(
      nw_model_forward_backward(m, inputs, targets, B, T, 0.5f, &loss), 0);
  for (size_t i = 0; i < np; i++)
    analytic[i] *= 1.5f;
  assert_true(nw_test_rel_diff(nw_model_grads(m), analytic, np) < 1e-5);

  free(analytic);
  free(numeric);
  fixture_free(&f);
}

/* ------------------------------------------------- 2. backend kernels */

/* Sizes above ~1e6 multiply-adds take the split-across-threads path. */
static void check_matmul(int N, int C, int OC) {
  const nw_backend *be = &nw_backend_cpu;
  float *inp = falloc(N * C), *w = falloc(OC * C), *bias = falloc(OC);
  float *out = falloc(N * OC), *ref = falloc(N * OC), *dout = falloc(N * OC);
  fill_normal(inp, N * C, 1);
  fill_normal(w, OC * C, 1);
  fill_normal(bias, OC, 1);
  fill_normal(dout, N * OC, 1);
  for (int withbias = 0; withbias < 2; withbias++) {
    be->matmul_forward(out, inp, w, withbias ? bias : NULL, N, C, OC);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) {
        double s = withbias ? bias[o] : 0;
        for (int c = 0; c < C; c++)
          s += (double)inp[n * C + c] * w[o * C + c];
        ref[n * OC + o] = (float)s;
      }
    assert_true(nw_test_rel_diff(out, ref, N * OC) < 1e-5);
  }
  /* backward accumulates onto what is there */
  float *dinp = falloc(N * C), *dw = falloc(OC * C), *db = falloc(OC);
  fill_normal(dinp, N * C, 1);
  fill_normal(dw, OC * C, 1);
  fill_normal(db, OC, 1);
  double *rdinp = calloc(N * C, sizeof(double));
  double *rdw = calloc(OC * C, sizeof(double));
  double *rdb = calloc(OC, sizeof(double));
  assert_non_null(rdb);
  assert_non_null(rdinp);
  assert_non_null(rdw);
  for (int i = 0; i < N * C; i++)
    rdinp[i] = dinp[i];
  for (int i = 0; i < OC * C; i++)
    rdw[i] = dw[i];
  for (int o = 0; o < OC; o++)
    rdb[o] = db[o];
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      double d = dout[n * OC + o];
      rdb[o] += d;
      for (int c = 0; c < C; c++) {
        rdinp[n * C + c] += d * w[o * C + c];
        rdw[o * C + c] += d * inp[n * C + c];
      }
    }
  be->matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
  float *tmp = falloc((size_t)(N > OC ? N : OC) * C);
  for (int i = 0; i < N * C; i++)
    tmp[i] = (float)rdinp[i];
  assert_true(nw_test_rel_diff(dinp, tmp, N * C) < 1e-5);
  for (int i = 0; i < OC * C; i++)
    tmp[i] = (float)rdw[i];
  assert_true(nw_test_rel_diff(dw, tmp, OC * C) < 1e-5);
  for (int i = 0; i < OC; i++)
    tmp[i] = (float)rdb[i];
  assert_true(nw_test_rel_diff(db, tmp, OC) < 1e-5);
  free(inp), free(w), free(bias), free(out), free(ref), free(dout);
  free(dinp), free(dw), free(db), free(rdinp), free(rdw), free(rdb), free(tmp);
}

static void test_backend_matmul(void **state) {
  (void)state;
  rng_state = 99;
  check_matmul(37, 29, 23);
  check_matmul(150, 70, 131); /* split by rows */
  check_matmul(67, 90, 300);  /* split by columns */
}

/* Naive attention in double: out (B,T,C), att (B,NH,T,T). */
static void attention_ref(double *out, double *att, const float *qkv, int B,
                          int T, int C, int NH) {
  int hs = C / NH;
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
        double *a = att + (((size_t)b * NH + h) * T + t) * T;
        double mx = -1e300, sum = 0;
        for (int t2 = 0; t2 < T; t2++) {
          a[t2] = 0;
          if (t2 > t)
            continue;
          const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
          double s = 0;
          for (int i = 0; i < hs; i++)
            s += (double)q[i] * k[i];
          a[t2] = s / sqrt(hs);
          mx = fmax(mx, a[t2]);
        }
        for (int t2 = 0; t2 <= t; t2++)
          sum += (a[t2] = exp(a[t2] - mx));
        double *o = out + ((size_t)b * T + t) * C + h * hs;
        for (int i = 0; i < hs; i++)
          o[i] = 0;
        for (int t2 = 0; t2 <= t; t2++) {
          a[t2] /= sum;
          const float *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
          for (int i = 0; i < hs; i++)
            o[i] += a[t2] * v[i];
        }
      }
}

static void check_attention(int B, int T, int C, int NH) {
  const nw_backend *be = &nw_backend_cpu;
  size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C;
  size_t natt = (size_t)B * NH * T * T;
  float *qkv = falloc(nqkv), *out = falloc(nout), *att = falloc(natt);
  double *rout = calloc(nout, sizeof(double));
  double *ratt = calloc(natt, sizeof(double));
  assert_non_null(rout);
  assert_non_null(ratt);
  fill_normal(qkv, nqkv, 1);
  be->attention_forward(out, att, qkv, B, T, C, NH);
  attention_ref(rout, ratt, qkv, B, T, C, NH);
  float *tmp = falloc(natt > nout ? natt : nout);
  for (size_t i = 0; i < nout; i++)
    tmp[i] = (float)rout[i];
  assert_true(nw_test_rel_diff(out, tmp, nout) < 1e-5);
  for (size_t i = 0; i < natt; i++) {
    tmp[i] = (float)ratt[i];
    if (ratt[i] == 0)
      assert_true(att[i] == 0.0f); /* masked exactly */
  }
  assert_true(nw_test_rel_diff(att, tmp, natt) < 1e-5);

  /* backward against finite differences of f = sum(out * R) */
  float *R = falloc(nout), *dqkv = falloc(nqkv), *datt = falloc(natt);
  float *num = falloc(nqkv);
  fill_normal(R, nout, 1);
  be->attention_backward(dqkv, datt, R, qkv, att, B, T, C, NH);
  const float eps = 1e-2f;
  for (size_t i = 0; i < nqkv; i++) {
    float orig = qkv[i];
    double fpm[2];
    for (int s = 0; s < 2; s++) {
      qkv[i] = orig + (s ? -eps : eps);
      be->attention_forward(out, att, qkv, B, T, C, NH);
      double f = 0;
      for (size_t j = 0; j < nout; j++)
        f += (double)out[j] * R[j];
      fpm[s] = f;
    }
    qkv[i] = orig;
    num[i] = (float)((fpm[0] - fpm[1]) / (2 * eps));
  }
  assert_true(nw_test_rel_diff(dqkv, num, nqkv) < 1e-2);
  free(qkv), free(out), free(att), free(rout), free(ratt), free(tmp);
  free(R), free(dqkv), free(datt), free(num);
}

static void test_backend_attention(void **state) {
  (void)state;
  rng_state = 7;
  check_attention(2, 19, 24, 3); /* heads in parallel */
  check_attention(1, 13, 8, 1);  /* one head: sgemm threads itself */
}

static void test_backend_crossentropy(void **state) {
  (void)state;
  rng_state = 5;
  const nw_backend *be = &nw_backend_cpu;
  enum { N = 5, V = 13 };
  int targets[N] = {3, -1, 0, 12, -1};
  float logits[N * V], orig[N * V], losses[N];
  fill_normal(orig, N * V, 3);
  orig[2 * V + 1] = 80.0f; /* large logit: stable only if max is removed */
  memcpy(logits, orig, sizeof logits);
  be->crossentropy(losses, logits, targets, N, V, 1.0f, 0);
  assert_memory_equal(logits, orig, sizeof logits);
  const float scale = 0.25f;
  be->crossentropy(losses, logits, targets, N, V, scale, 1);
  for (int n = 0; n < N; n++) {
    const float *x = orig + n * V;
    if (targets[n] < 0) {
      assert_true(losses[n] == 0.0f);
      for (int i = 0; i < V; i++)
        assert_true(logits[n * V + i] == 0.0f);
      continue;
    }
    double mx = -1e300, s = 0;
    for (int i = 0; i < V; i++)
      mx = fmax(mx, x[i]);
    for (int i = 0; i < V; i++)
      s += exp(x[i] - mx);
    double ref = log(s) - (x[targets[n]] - mx);
    assert_true(fabs(losses[n] - ref) <= 1e-5 * fmax(1.0, ref));
    for (int i = 0; i < V; i++) {
      double g = scale * (exp(x[i] - mx) / s - (i == targets[n]));
      assert_true(fabs(logits[n * V + i] - g) < 1e-6);
    }
  }
}

static void test_backend_elementwise(void **state) {
  (void)state;
  rng_state = 11;
  const nw_backend *be = &nw_backend_cpu;
  enum { N = 1000 };
  float x[N], y[N], d[N], dx[N];
  fill_normal(x, N, 3);
  x[0] = -30.0f, x[1] = 30.0f, x[2] = 0.0f;
  fill_normal(d, N, 1);
  memset(dx, 0, sizeof dx);
  be->gelu_forward(y, x, N);
  be->gelu_backward(dx, x, d, N);
  const double s2pi = sqrt(2.0 / M_PI);
  for (int i = 0; i < N; i++) {
    double xi = x[i], z = s2pi * (xi + 0.044715 * xi * xi * xi);
    double th = tanh(z);
    double ref = 0.5 * xi * (1 + th);
    double dref = 0.5 * (1 + th) + 0.5 * xi * (1 - th * th) * s2pi *
                                       (1 + 3 * 0.044715 * xi * xi);
    assert_true(fabs(y[i] - ref) <= 1e-6 * fmax(1.0, fabs(ref)));
    assert_true(fabs(dx[i] - dref * d[i]) <= 1e-5 * fmax(1.0, fabs(dref)));
  }
  /* layernorm forward */
  enum { R = 6, C = 50 };
  float in[R * C], w[C], bb[C], out[R * C], mean[R], rstd[R];
  fill_normal(in, R * C, 2);
  fill_normal(w, C, 1);
  fill_normal(bb, C, 1);
  be->layernorm_forward(out, mean, rstd, in, w, bb, R, C);
  for (int r = 0; r < R; r++) {
    double mu = 0, var = 0;
    for (int c = 0; c < C; c++)
      mu += in[r * C + c] / (double)C;
    for (int c = 0; c < C; c++)
      var += (in[r * C + c] - mu) * (in[r * C + c] - mu) / C;
    for (int c = 0; c < C; c++) {
      double ref = (in[r * C + c] - mu) / sqrt(var + 1e-5) * w[c] + bb[c];
      assert_true(fabs(out[r * C + c] - ref) < 1e-5 * fmax(1.0, fabs(ref)));
    }
  }
  /* sum of squares */
  double ss = 0;
  for (int i = 0; i < N; i++)
    ss += (double)x[i] * x[i];
  assert_true(fabs(be->sumsq(x, N) - ss) <= 1e-12 * ss);
  assert_true(be->sumsq(x, 0) == 0.0);
}

/* ------------------------------------------------ 3. decode consistency */

static int argmax_row(const float *x, int V) {
  int best = 0;
  for (int i = 1; i < V; i++)
    if (x[i] > x[best])
      best = i;
  return best;
}

static void test_decode_matches_forward(void **state) {
  (void)state;
  rng_state = 77;
  nw_model_config cfg = {.n_layer = 2,
                         .n_head = 2,
                         .n_embd = 16,
                         .vocab_size = 23,
                         .max_seq_len = 12};
  fixture f;
  fixture_make(&f, cfg, 0, 3);
  nw_model *m = f.model;
  randomize_params(m, 0.3);
  enum { B = 2, P = 5, TMAX = 12 };
  const int V = cfg.vocab_size;
  int seq[B][TMAX];
  for (int b = 0; b < B; b++)
    for (int t = 0; t < P; t++)
      seq[b][t] = (int)(test_uniform() * V);

  assert_int_equal(nw_model_kv_bytes(m), 0);
  assert_int_equal(nw_model_kv_alloc(m, B, TMAX), 0);
  assert_int_equal(nw_model_kv_bytes(m),
                   (size_t)cfg.n_layer * 2 * B * TMAX * cfg.n_embd * 4);
  float dec[B * 23], *full = falloc((size_t)B * TMAX * V);
  int tok[B], next[B];
  /* prompt positions, then greedy continuation to the end of the cache */
  for (int pos = 0; pos < TMAX - 1; pos++) {
    for (int b = 0; b < B; b++)
      tok[b] = seq[b][pos];
    assert_int_equal(nw_model__decode_logits(m, tok, pos, next, dec), 0);
    for (int b = 0; b < B; b++) {
      assert_int_equal(next[b], argmax_row(dec + b * V, V));
      if (pos + 1 >= P)
        seq[b][pos + 1] = next[b];
    }
  }
  /* the full forward over the final sequences agrees at every position */
  int flat[B * (TMAX - 1)];
  const int T = TMAX - 1;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      flat[b * T + t] = seq[b][t];
  assert_int_equal(nw_model__forward_logits(m, flat, B, T, full), 0);
  for (int b = 0; b < B; b++)
    for (int t = P - 1; t < T - 1; t++)
      assert_int_equal(argmax_row(full + ((size_t)b * T + t) * V, V),
                       seq[b][t + 1]);
  /* and the logits of the last position match the cached decode's */
  for (int b = 0; b < B; b++)
    assert_true(nw_test_rel_diff(dec + b * V,
                                 full + ((size_t)b * T + T - 1) * V, V) < 1e-4);
  /* decode_step gives the same tokens */
  for (int b = 0; b < B; b++)
    tok[b] = seq[b][T - 1];
  int next2[B];
  assert_int_equal(nw_model_decode_step(m, tok, T - 1, next2), 0);
  assert_memory_equal(next, next2, sizeof next);
  assert_int_equal(nw_model_decode_step(m, tok, TMAX, next2), NW_ESHAPE);

  nw_model_kv_free(m);
  assert_int_equal(nw_model_kv_bytes(m), 0);
  assert_int_equal(nw_model_decode_step(m, tok, 0, next2), NW_ESHAPE);
  nw_mem_stats st;
  nw_mem_stats_get(f.mem, &st);
  assert_int_equal(st.live[NW_MEM_KV_CACHE], 0);
  assert_int_equal(st.live[NW_MEM_ACTIVATIONS], 0);
  free(full);
  fixture_free(&f);
}

/* ---------------------------------------------------- 4. determinism */

static const nw_model_config mid_cfg = {.n_layer = 2,
                                        .n_head = 4,
                                        .n_embd = 64,
                                        .vocab_size = 301,
                                        .max_seq_len = 32};

static void test_determinism(void **state) {
  (void)state;
  rng_state = 31;
  enum { B = 3, T = 32 };
  int inputs[B * T], targets[B * T], lens[B] = {32, 17, 25};
  make_batch(inputs, targets, B, T, mid_cfg.vocab_size, lens);
  fixture f[2];
  float *g[2];
  double loss[2];
  for (int r = 0; r < 2; r++) {
    fixture_make(&f[r], mid_cfg, 0, 2024);
    assert_int_equal(nw_model_forward_backward(f[r].model, inputs, targets, B,
                                               T, 1.0f / 74, &loss[r]),
                     0);
    g[r] = nw_model_grads(f[r].model);
  }
  size_t np = nw_model_num_params(f[0].model);
  assert_memory_equal(nw_model_params(f[0].model), nw_model_params(f[1].model),
                      np * sizeof(float));
  assert_memory_equal(g[0], g[1], np * sizeof(float));
  assert_memory_equal(&loss[0], &loss[1], sizeof(double));
  /* loss at init is near log(V) per counted token */
  assert_true(fabs(loss[0] / 74 - log(mid_cfg.vocab_size)) < 0.1);
  /* the same model again after zero_grad: bitwise the same */
  nw_model_zero_grad(f[1].model);
  assert_int_equal(nw_model_forward_backward(f[1].model, inputs, targets, B, T,
                                             1.0f / 74, &loss[1]),
                   0);
  assert_memory_equal(g[0], g[1], np * sizeof(float));
  fixture_free(&f[0]);
  fixture_free(&f[1]);
}

static void test_tensor_table(void **state) {
  (void)state;
  fixture f;
  fixture_make(&f, mid_cfg, 0, 9);
  nw_model *m = f.model;
  int C = mid_cfg.n_embd, L = mid_cfg.n_layer;
  assert_int_equal(nw_model_num_tensors(m), 4 + 12 * L);
  size_t off = 0;
  for (int i = 0; i < nw_model_num_tensors(m); i++) {
    const nw_tensor_info *t = nw_model_tensor(m, i);
    assert_int_equal(t->offset, off);
    off += t->numel;
  }
  assert_int_equal(off, nw_model_num_params(m));
  assert_null(nw_model_tensor(m, nw_model_num_tensors(m)));
  const nw_tensor_info *t = nw_model_tensor(m, 2 + 12 + 2);
  assert_string_equal(t->name, "transformer.h.1.attn.c_attn.weight");
  assert_int_equal(t->shape[0], 3 * C);
  assert_int_equal(t->shape[1], C);
  t = nw_model_tensor(m, 2 + 10);
  assert_string_equal(t->name, "transformer.h.0.mlp.c_proj.weight");
  assert_int_equal(t->shape[0], C);
  assert_int_equal(t->shape[1], 4 * C);
  /* init: std of c_fc ~0.02, of c_proj ~0.02/sqrt(2L); LN weight 1 */
  const float *p = nw_model_params(m);
  double s1 = 0, s2 = 0;
  const nw_tensor_info *fc = nw_model_tensor(m, 2 + 8);
  for (size_t j = 0; j < fc->numel; j++)
    s1 += (double)p[fc->offset + j] * p[fc->offset + j];
  for (size_t j = 0; j < t->numel; j++)
    s2 += (double)p[t->offset + j] * p[t->offset + j];
  assert_true(fabs(sqrt(s1 / fc->numel) - 0.02) < 0.002);
  assert_true(fabs(sqrt(s2 / t->numel) - 0.02 / sqrt(2.0 * L)) < 0.001);
  const nw_tensor_info *lnw = nw_model_tensor(m, nw_model_num_tensors(m) - 2);
  assert_string_equal(lnw->name, "transformer.ln_f.weight");
  assert_true(p[lnw->offset] == 1.0f && p[lnw->offset + lnw->numel + 1] == 0);
  fixture_free(&f);
}

/* ------------------------------------------------------ 5. NW_ENOMEM */

/* After a refused allocation: every transient category empty, only the
 * parameters and gradients live (base bytes), the parameters as they were
 * and the gradients zero. */
static void expect_unwound(fixture *f, uint64_t base, const float *params,
                           const float *zeros, size_t np) {
  nw_mem_stats st;
  nw_mem_stats_get(f->mem, &st);
  assert_int_equal(st.live[NW_MEM_ACTIVATIONS], 0);
  assert_int_equal(st.live[NW_MEM_ATTENTION], 0);
  assert_int_equal(st.live[NW_MEM_WORKSPACE], 0);
  assert_int_equal(st.live[NW_MEM_DATA], 0);
  assert_int_equal(st.live_total, base);
  assert_true(st.failed_request > 0);
  assert_memory_equal(nw_model_params(f->model), params, np * sizeof(float));
  assert_memory_equal(nw_model_grads(f->model), zeros, np * sizeof(float));
}

/* At the smallest cap (k 0) a kv-cache that does not fit is refused
 * cleanly; at the largest (k 15) a larger cache that does not fit keeps the
 * one that is there. */
static void expect_kv_refused(fixture *f, int k) {
  if (k == 0) {
    assert_int_equal(nw_model_kv_alloc(f->model, 64, mid_cfg.max_seq_len),
                     NW_ENOMEM);
    assert_int_equal(nw_model_kv_bytes(f->model), 0);
  }
  if (k == 15) {
    assert_int_equal(nw_model_kv_alloc(f->model, 1, 4), 0);
    size_t kvb = nw_model_kv_bytes(f->model);
    assert_int_equal(nw_model_kv_alloc(f->model, 64, mid_cfg.max_seq_len),
                     NW_ENOMEM);
    assert_int_equal(nw_model_kv_bytes(f->model), kvb);
    nw_model_kv_free(f->model);
  }
}

/* Parameters that do not fit (half of base): create fails and leaks
 * nothing. */
static void expect_create_refused(uint64_t base) {
  nw_mem *mem;
  nw_mem_stats st;
  static char sentinel; /* any non-NULL value: create must reset it */
  nw_model *m = (nw_model *)(void *)&sentinel;
  assert_int_equal(nw_mem_create(&mem, base / 2), 0);
  assert_int_equal(nw_model_create(&m, &mid_cfg, &nw_backend_cpu, mem, 1),
                   NW_ENOMEM);
  assert_null(m);
  nw_mem_stats_get(mem, &st);
  assert_int_equal(st.live_total, 0);
  nw_mem_destroy(mem);
}

static void test_enomem_unwinds(void **state) {
  (void)state;
  rng_state = 55;
  enum { B = 2, T = 32 };
  int inputs[B * T], targets[B * T], lens[B] = {32, 20};
  make_batch(inputs, targets, B, T, mid_cfg.vocab_size, lens);
  /* measure params+grads and the peak of one call, unlimited */
  fixture f;
  fixture_make(&f, mid_cfg, 0, 1);
  nw_mem_stats st;
  nw_mem_stats_get(f.mem, &st);
  uint64_t base = st.live_total;
  assert_int_equal(base, st.live[NW_MEM_PARAMS] + st.live[NW_MEM_GRADS]);
  double loss;
  assert_int_equal(
      nw_model_forward_backward(f.model, inputs, targets, B, T, 1.0f, &loss),
      0);
  nw_mem_stats_get(f.mem, &st);
  uint64_t peak = st.peak_total;
  assert_int_equal(st.live_total, base); /* everything freed on success */
  size_t np = nw_model_num_params(f.model);
  float *params = falloc(np), *zeros = falloc(np);
  memcpy(params, nw_model_params(f.model), np * sizeof(float));
  fixture_free(&f);

  /* every cap below the peak fails, at a different allocation each time,
   * and leaves the model exactly as it was */
  int fails = 0;
  for (int k = 0; k < 16; k++) {
    uint64_t cap = base + (peak - base) * k / 16;
    fixture_make(&f, mid_cfg, cap, 1);
    for (int call = 0; call < 2; call++) {
      int rc = call == 0 ? nw_model_forward_backward(f.model, inputs, targets,
                                                     B, T, 1.0f, &loss)
                         : nw_model_forward_loss(f.model, inputs, targets, B, T,
                                                 &loss);
      if (call == 1 && rc == 0)
        continue; /* evaluation needs less; it may fit */
      assert_int_equal(rc, NW_ENOMEM);
      fails++;
      expect_unwound(&f, base, params, zeros, np);
    }
    expect_kv_refused(&f, k);
    fixture_free(&f);
  }
  assert_true(fails >= 16);
  /* at the measured peak it fits */
  fixture_make(&f, mid_cfg, peak, 1);
  assert_int_equal(
      nw_model_forward_backward(f.model, inputs, targets, B, T, 1.0f, &loss),
      0);
  fixture_free(&f);
  expect_create_refused(base);
  free(params);
  free(zeros);
}

static void test_bad_input(void **state) {
  (void)state;
  fixture f;
  fixture_make(&f, mid_cfg, 0, 1);
  int inputs[4] = {1, 2, 301, 3}, targets[4] = {1, 2, 3, 4};
  double loss;
  assert_int_equal(
      nw_model_forward_backward(f.model, inputs, targets, 1, 4, 1.0f, &loss),
      NW_EDATA);
  inputs[2] = 0;
  targets[3] = -2;
  assert_int_equal(nw_model_forward_loss(f.model, inputs, targets, 1, 4, &loss),
                   NW_EDATA);
  assert_int_equal(
      nw_model_forward_loss(f.model, inputs, targets, 1, 33, &loss), NW_ESHAPE);
  nw_model_config bad = mid_cfg;
  bad.n_head = 5;
  nw_model *m;
  assert_int_equal(nw_model_create(&m, &bad, &nw_backend_cpu, f.mem, 1),
                   NW_ECONFIG);
  fixture_free(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradcheck),
      cmocka_unit_test(test_backend_matmul),
      cmocka_unit_test(test_backend_attention),
      cmocka_unit_test(test_backend_crossentropy),
      cmocka_unit_test(test_backend_elementwise),
      cmocka_unit_test(test_decode_matches_forward),
      cmocka_unit_test(test_determinism),
      cmocka_unit_test(test_tensor_table),
      cmocka_unit_test(test_enomem_unwinds),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
