/* backend_cpu.c — the CPU backend: OpenBLAS sgemm for every matrix product,
 * OpenMP loops for the rest. "Device memory" is host memory.
 *
 * Determinism: for a fixed thread count every result is bitwise repeatable.
 * Loops split work with static schedules, and no value is ever summed across
 * threads: a reduction over rows (bias and LayerNorm parameter gradients,
 * embedding gradients) is split over the *columns* instead, so each output
 * element is summed by one thread in row order. The sum of squares uses a
 * fixed number of blocks, independent of the thread count. */
#include "device/backend.h"

#include <cblas.h>  // defines: cblas_sgemm
#include <math.h>   // defines: sqrtf, logf
#include <omp.h>    // defines: omp_get_max_threads, omp_in_parallel
#include <stdint.h> // defines: int32_t, uint32_t
#include <string.h> // defines: memcpy, memset

/* Exported by OpenBLAS itself, not by every cblas.h. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

/* Columns per chunk when a row reduction is split over columns: wide enough
 * for vector loads, small enough to spread C=768 over a few threads. */
#define NW_COL_CHUNK 64

/* 1: split big products across the OpenMP threads (see nw_sgemm); 0: let
 * OpenBLAS thread them itself, kept for comparison builds. */
#ifndef NW_SGEMM_OMP
#define NW_SGEMM_OMP 1
#endif

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

/* exp(x) for x in [-87, 88] (clamped outside), ~2 ulp. glibc's expf and
 * tanhf are scalar calls; this form vectorises under `omp simd`, which
 * matters because softmax over the vocabulary and GELU evaluate it ~10^8
 * times per step at GPT-2 small size. x = n ln2 + r, |r| <= ln2/2. */
static inline float nw_exp(float x) {
  /* Clamp on the bit pattern: a float compare under GCC's default
   * -ftrapping-math keeps the loop from being if-converted and vectorised.
   * As unsigned, negative floats order by magnitude above all positives;
   * as signed, positives order normally and every negative is below. */
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  u = u > 0xc2ae0000u ? 0xc2ae0000u : u; /* x < -87 (or -NaN) -> -87 */
  int32_t si = (int32_t)u;
  si = si > 0x42b00000 ? 0x42b00000 : si; /* x > 88 (or +NaN) -> 88 */
  memcpy(&x, &si, sizeof x);
  /* round-to-nearest through the 1.5*2^23 shifter: no SSE4.1 needed */
  const float shifter = 12582912.0f;
  float t = x * 1.44269504088896341f + shifter;
  float n = t - shifter;
  float r = x - n * 0.693359375f; /* ln2 high part, exact in n*hi */
  r = r - n * -2.12194440e-4f;    /* ln2 low part */
  float p = 1.9875691500e-4f;     /* minimax for exp(r) on |r| <= ln2/2 */
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

/* ------------------------------------------------------------ encoder */

static void nw_encoder_forward(float *out, const int *inp, const float *wte,
                               const float *wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static)
  for (int bt = 0; bt < B * T; bt++) {
    float *o = out + (size_t)bt * C;
    const float *we = wte + (size_t)inp[bt] * C;
    const float *pe = wpe + (size_t)(bt % T) * C;
    for (int c = 0; c < C; c++)
      o[c] = we[c] + pe[c];
  }
}

/* Tokens repeat, so rows of dwte collide: split over channels instead and
 * let each thread walk all positions in order. */
static void nw_encoder_backward(float *dwte, float *dwpe, const float *dout,
                                const int *inp, int B, int T, int C) {
  int nchunk = (C + NW_COL_CHUNK - 1) / NW_COL_CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nchunk; ch++) {
    int c0 = ch * NW_COL_CHUNK;
    int c1 = c0 + NW_COL_CHUNK < C ? c0 + NW_COL_CHUNK : C;
    for (int bt = 0; bt < B * T; bt++) {
      const float *d = dout + (size_t)bt * C;
      float *we = dwte + (size_t)inp[bt] * C;
      float *pe = dwpe + (size_t)(bt % T) * C;
      for (int c = c0; c < c1; c++) {
        we[c] += d[c];
        pe[c] += d[c];
      }
    }
  }
}

/* ---------------------------------------------------------- layernorm */

static void nw_layernorm_forward(float *out, float *mean, float *rstd,
                                 const float *inp, const float *weight,
                                 const float *bias, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float *o = out + (size_t)n * C;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int c = 0; c < C; c++)
      s += x[c];
    float m = s / C;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int c = 0; c < C; c++)
      v += (x[c] - m) * (x[c] - m);
    float rs = 1.0f / sqrtf(v / C + 1e-5f);
#pragma omp simd
    for (int c = 0; c < C; c++)
      o[c] = (x[c] - m) * rs * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = rs;
  }
}

static void nw_layernorm_backward(float *dinp, float *dweight, float *dbias,
                                  const float *dout, const float *inp,
                                  const float *weight, const float *mean,
                                  const float *rstd, int N, int C) {
  /* dinp: rows are independent */
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    const float *d = dout + (size_t)n * C;
    float *di = dinp + (size_t)n * C;
    float m = mean[n], rs = rstd[n];
    float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
    for (int c = 0; c < C; c++) {
      float dnorm = weight[c] * d[c];
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * (x[c] - m) * rs;
    }
    dnorm_mean /= C;
    dnorm_norm_mean /= C;
#pragma omp simd
    for (int c = 0; c < C; c++) {
      float norm = (x[c] - m) * rs;
      float dnorm = weight[c] * d[c];
      di[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rs;
    }
  }
  /* dweight, dbias: sums over rows, split over channels */
  int nchunk = (C + NW_COL_CHUNK - 1) / NW_COL_CHUNK;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < nchunk; ch++) {
    int c0 = ch * NW_COL_CHUNK;
    int c1 = c0 + NW_COL_CHUNK < C ? c0 + NW_COL_CHUNK : C;
    for (int n = 0; n < N; n++) {
      const float *x = inp + (size_t)n * C;
      const float *d = dout + (size_t)n * C;
      float m = mean[n], rs = rstd[n];
#pragma omp simd
      for (int c = c0; c < c1; c++) {
        dbias[c] += d[c];
        dweight[c] += (x[c] - m) * rs * d[c];
      }
    }
  }
}

/* ------------------------------------------------------------- matmul */

/* One big sgemm, split across the OpenMP threads by output rows or columns
 * (whichever is larger), each part run single-threaded by OpenBLAS. Letting
 * OpenBLAS thread the product itself would put its pthreads pool next to the
 * OpenMP pool: on a small machine the idle pool's spin-waiting steals cores
 * from the busy one (measured at 2 cores: GPT-2 small steps 25-35% slower).
 * The split depends only on the shape and the thread count, so results are
 * repeatable. Parts are multiples of 16 rows/columns. */
static void nw_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N,
                     int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
  int nt = omp_get_max_threads();
  int split_n = N > M, D = split_n ? N : M;
  if (NW_SGEMM_OMP == 0 || nt < 2 || omp_in_parallel() || D < 32 ||
      (double)M * N * K < 1e6) {
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
    return;
  }
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
  {
    int n = omp_get_num_threads(), tid = omp_get_thread_num();
    int per = ((D + n - 1) / n + 15) & ~15;
    int d0 = tid * per, d1 = d0 + per < D ? d0 + per : D;
    if (d0 < d1) {
      if (split_n) {
        const float *b = tb == CblasNoTrans ? B + d0 : B + (size_t)d0 * ldb;
        cblas_sgemm(CblasRowMajor, ta, tb, M, d1 - d0, K, alpha, A, lda, b, ldb,
                    beta, C + d0, ldc);
      } else {
        const float *a = ta == CblasNoTrans ? A + (size_t)d0 * lda : A + d0;
        cblas_sgemm(CblasRowMajor, ta, tb, d1 - d0, N, K, alpha, a, lda, B, ldb,
                    beta, C + (size_t)d0 * ldc, ldc);
      }
    }
  }
  openblas_set_num_threads(blas_threads);
}

static void nw_matmul_forward(float *out, const float *inp, const float *weight,
                              const float *bias, int N, int C, int OC) {
  float beta = 0.0f;
  if (bias) {
    /* out starts as the bias rows; sgemm then adds inp @ W^T */
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
      memcpy(out + (size_t)n * OC, bias, (size_t)OC * sizeof(float));
    beta = 1.0f;
  }
  nw_sgemm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta,
           out, OC);
}

static void nw_matmul_backward(float *dinp, float *dweight, float *dbias,
                               const float *dout, const float *inp,
                               const float *weight, int N, int C, int OC) {
  /* dinp (N,C) += dout (N,OC) @ W (OC,C) */
  if (dinp)
    nw_sgemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
             1.0f, dinp, C);
  /* dW (OC,C) += dout^T (OC,N) @ inp (N,C) */
  nw_sgemm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
           dweight, C);
  if (dbias) {
    int nchunk = (OC + NW_COL_CHUNK - 1) / NW_COL_CHUNK;
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
      int o0 = ch * NW_COL_CHUNK;
      int o1 = o0 + NW_COL_CHUNK < OC ? o0 + NW_COL_CHUNK : OC;
      for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * OC;
#pragma omp simd
        for (int o = o0; o < o1; o++)
          dbias[o] += d[o];
      }
    }
  }
}

/* ---------------------------------------------------------- attention */

/* Per (b,h) products are small (T x T x hs). With at least as many (b,h)
 * pairs as threads it is faster to give each thread whole heads and run
 * sgemm single-threaded inside (Debian's OpenBLAS is the pthreads build,
 * which does not notice an enclosing OpenMP region by itself, so its thread
 * count is set to 1 for the region and restored after). */
static int nw_attention_heads_parallel(int BH) {
  return BH >= 2 && omp_get_max_threads() > 1 && !omp_in_parallel();
}

/* Causal softmax of row t of preatt in place: entries t2 > t become 0. */
static void nw_causal_softmax_row(float *row, int t, int T) {
  float mx = row[0];
  for (int t2 = 1; t2 <= t; t2++)
    mx = row[t2] > mx ? row[t2] : mx;
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int t2 = 0; t2 <= t; t2++) {
    float e = nw_exp(row[t2] - mx);
    row[t2] = e;
    s += e;
  }
  float inv = 1.0f / s;
#pragma omp simd
  for (int t2 = 0; t2 <= t; t2++)
    row[t2] *= inv;
  for (int t2 = t + 1; t2 < T; t2++)
    row[t2] = 0.0f;
}

/* One head: q, k, v are (T,hs) views with row stride 3C into qkv; out is a
 * (T,hs) view with row stride C; att (T,T). */
static void nw_attention_head_forward(float *out, float *att, const float *q,
                                      const float *k, const float *v, int T,
                                      int C, int hs) {
  float scale = 1.0f / sqrtf((float)hs);
  /* att = scale * Q K^T; the upper triangle is computed and then masked:
   * cheaper than T small products at these sizes */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q,
              3 * C, k, 3 * C, 0.0f, att, T);
  for (int t = 0; t < T; t++)
    nw_causal_softmax_row(att + (size_t)t * T, t, T);
  /* out = att V (masked entries are 0) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, att, T,
              v, 3 * C, 0.0f, out, C);
}

static void nw_attention_forward(float *out, float *att, const float *qkv,
                                 int B, int T, int C, int NH) {
  int hs = C / NH, BH = B * NH;
  if (nw_attention_heads_parallel(BH)) {
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < BH; bh++) {
      int b = bh / NH, h = bh % NH;
      const float *q = qkv + (size_t)b * T * 3 * C + h * hs;
      nw_attention_head_forward(out + (size_t)b * T * C + h * hs,
                                att + (size_t)bh * T * T, q, q + C, q + 2 * C,
                                T, C, hs);
    }
    openblas_set_num_threads(blas_threads);
  } else {
    for (int bh = 0; bh < BH; bh++) {
      int b = bh / NH, h = bh % NH;
      const float *q = qkv + (size_t)b * T * 3 * C + h * hs;
      nw_attention_head_forward(out + (size_t)b * T * C + h * hs,
                                att + (size_t)bh * T * T, q, q + C, q + 2 * C,
                                T, C, hs);
    }
  }
}

/* One head backward; dq, dk, dv are (T,hs) views with stride 3C into dqkv,
 * dout a (T,hs) view with stride C, att and datt (T,T). datt ends up holding
 * the gradient of the pre-softmax scores (it is the caller's scratch). */
static void nw_attention_head_backward(float *dq, float *dk, float *dv,
                                       float *datt, const float *dout,
                                       const float *q, const float *k,
                                       const float *v, const float *att, int T,
                                       int C, int hs) {
  float scale = 1.0f / sqrtf((float)hs);
  /* datt += dout V^T;  dV += att^T dout */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dout, C,
              v, 3 * C, 1.0f, datt, T);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, att, T,
              dout, C, 1.0f, dv, 3 * C);
  /* softmax backward in place: dpre = att * (datt - <att, datt>_row);
   * masked entries have att = 0 and so get 0 */
  for (int t = 0; t < T; t++) {
    const float *a = att + (size_t)t * T;
    float *d = datt + (size_t)t * T;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int t2 = 0; t2 <= t; t2++)
      dot += a[t2] * d[t2];
#pragma omp simd
    for (int t2 = 0; t2 <= t; t2++)
      d[t2] = a[t2] * (d[t2] - dot);
    for (int t2 = t + 1; t2 < T; t2++)
      d[t2] = 0.0f;
  }
  /* dQ += scale dpre K;  dK += scale dpre^T Q */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, datt,
              T, k, 3 * C, 1.0f, dq, 3 * C);
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, datt, T,
              q, 3 * C, 1.0f, dk, 3 * C);
}

static void nw_attention_backward(float *dqkv, float *datt, const float *dout,
                                  const float *qkv, const float *att, int B,
                                  int T, int C, int NH) {
  int hs = C / NH, BH = B * NH;
  int par = nw_attention_heads_parallel(BH);
  int blas_threads = 0;
  if (par) {
    blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
  }
#pragma omp parallel for schedule(static) if (par)
  for (int bh = 0; bh < BH; bh++) {
    int b = bh / NH, h = bh % NH;
    size_t off = (size_t)b * T * 3 * C + h * hs;
    const float *q = qkv + off;
    float *dq = dqkv + off;
    nw_attention_head_backward(dq, dq + C, dq + 2 * C,
                               datt + (size_t)bh * T * T,
                               dout + (size_t)b * T * C + h * hs, q, q + C,
                               q + 2 * C, att + (size_t)bh * T * T, T, C, hs);
  }
  if (par)
    openblas_set_num_threads(blas_threads);
}

/* ---------------------------------------------------------------- gelu */

/* GPT-2's tanh approximation, written with 0.5 (1 + tanh z) = sigmoid(2z)
 * so that one exp serves both value and derivative. */
static void nw_gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float z = GELU_SCALE * (x + 0.044715f * x * x * x);
    out[i] = x / (1.0f + nw_exp(-2.0f * z));
  }
}

static void nw_gelu_backward(float *dinp, const float *inp, const float *dout,
                             size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float z = GELU_SCALE * (x + 0.044715f * x * x * x);
    float sg = 1.0f / (1.0f + nw_exp(-2.0f * z)); /* 0.5 (1 + tanh z) */
    float dz = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
    /* d/dx [x sg] with d tanh = 1 - tanh^2 = 4 sg (1 - sg) */
    float grad = sg + 2.0f * x * sg * (1.0f - sg) * dz;
    dinp[i] += grad * dout[i];
  }
}

/* ------------------------------------------------------------ residual */

static void nw_residual_forward(float *out, const float *a, const float *b,
                                size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++)
    out[i] = a[i] + b[i];
}

static void nw_residual_backward(float *dinp1, float *dinp2, const float *dout,
                                 size_t n) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    dinp1[i] += dout[i];
    dinp2[i] += dout[i];
  }
}

/* -------------------------------------------------------- crossentropy */

static void nw_crossentropy(float *losses, float *logits, const int *targets,
                            int N, int V, float scale, int grad) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    float *x = logits + (size_t)n * V;
    int tgt = targets[n];
    if (tgt < 0) {
      losses[n] = 0.0f;
      if (grad)
        memset(x, 0, (size_t)V * sizeof(float));
      continue;
    }
    float mx = x[0];
#pragma omp simd reduction(max : mx)
    for (int i = 0; i < V; i++)
      mx = x[i] > mx ? x[i] : mx;
    float s = 0.0f;
    float xt = x[tgt];
    if (grad) {
      /* keep exp(x - max) in place for the gradient pass */
#pragma omp simd reduction(+ : s)
      for (int i = 0; i < V; i++) {
        float e = nw_exp(x[i] - mx);
        x[i] = e;
        s += e;
      }
    } else {
#pragma omp simd reduction(+ : s)
      for (int i = 0; i < V; i++)
        s += nw_exp(x[i] - mx);
    }
    /* -log p[t] = log sum exp(x - max) - (x[t] - max) */
    losses[n] = logf(s) - (xt - mx);
    if (grad) {
      float k = scale / s;
#pragma omp simd
      for (int i = 0; i < V; i++)
        x[i] *= k;
      x[tgt] -= scale;
    }
  }
}

/* ---------------------------------------------------------- generation */

/* Two passes over the cache (max, then exp-weighted sum of v) so that no
 * scratch of length pos+1 is needed; the dot products are recomputed. */
static void nw_attention_decode(float *out, const float *q, const float *kcache,
                                const float *vcache, int B, int C, int NH,
                                int Tmax, int pos) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static)
  for (int bh = 0; bh < B * NH; bh++) {
    int b = bh / NH, h = bh % NH;
    const float *qh = q + (size_t)b * C + h * hs;
    const float *kh = kcache + (size_t)bh * Tmax * hs;
    const float *vh = vcache + (size_t)bh * Tmax * hs;
    float *oh = out + (size_t)b * C + h * hs;
    float mx = -INFINITY;
    for (int t = 0; t <= pos; t++) {
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int i = 0; i < hs; i++)
        s += qh[i] * kh[(size_t)t * hs + i];
      mx = s * scale > mx ? s * scale : mx;
    }
    for (int i = 0; i < hs; i++)
      oh[i] = 0.0f;
    float sum = 0.0f;
    for (int t = 0; t <= pos; t++) {
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int i = 0; i < hs; i++)
        s += qh[i] * kh[(size_t)t * hs + i];
      float w = nw_exp(s * scale - mx);
      sum += w;
#pragma omp simd
      for (int i = 0; i < hs; i++)
        oh[i] += w * vh[(size_t)t * hs + i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < hs; i++)
      oh[i] *= inv;
  }
}

static void nw_argmax(int *next, const float *logits, int B, int V) {
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    const float *x = logits + (size_t)b * V;
    int best = 0;
    for (int i = 1; i < V; i++)
      if (x[i] > x[best])
        best = i;
    next[b] = best;
  }
}

/* ----------------------------------------------------------- optimizer */

static void nw_adamw(float *p, const float *g, float *m, float *v, size_t n,
                     float lr, float b1, float b2, float eps, float wd,
                     float bc1, float bc2, float gs) {
#pragma omp parallel for simd schedule(static)
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] * gs;
    float mi = b1 * m[i] + (1.0f - b1) * gi;
    float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
  }
}

/* A fixed block count, not one per thread, keeps the summation order (and
 * so the bits of the gradient norm) independent of OMP_NUM_THREADS. */
#define NW_SUMSQ_BLOCKS 64

static double nw_sumsq(const float *x, size_t n) {
  double part[NW_SUMSQ_BLOCKS];
  size_t per = (n + NW_SUMSQ_BLOCKS - 1) / NW_SUMSQ_BLOCKS;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < NW_SUMSQ_BLOCKS; blk++) {
    size_t i0 = (size_t)blk * per;
    size_t i1 = i0 + per < n ? i0 + per : n;
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t i = i0; i < i1; i++)
      s += (double)x[i] * (double)x[i];
    part[blk] = s;
  }
  double total = 0.0;
  for (int blk = 0; blk < NW_SUMSQ_BLOCKS; blk++)
    total += part[blk];
  return total;
}

/* ------------------------------------------------------------- copies */

static void nw_copy(void *dst, const void *src, size_t bytes) {
  if (bytes)
    memcpy(dst, src, bytes);
}

static void nw_memset0(void *dst, size_t bytes) {
  if (bytes)
    memset(dst, 0, bytes);
}

/* Nothing on the CPU fails after the caller's allocations succeeded. */
static int nw_cpu_status(void) { return 0; }

const nw_backend nw_backend_cpu = {
    .name = "cpu",
    .encoder_forward = nw_encoder_forward,
    .encoder_backward = nw_encoder_backward,
    .layernorm_forward = nw_layernorm_forward,
    .layernorm_backward = nw_layernorm_backward,
    .matmul_forward = nw_matmul_forward,
    .matmul_backward = nw_matmul_backward,
    .attention_forward = nw_attention_forward,
    .attention_backward = nw_attention_backward,
    .gelu_forward = nw_gelu_forward,
    .gelu_backward = nw_gelu_backward,
    .residual_forward = nw_residual_forward,
    .residual_backward = nw_residual_backward,
    .crossentropy = nw_crossentropy,
    .attention_decode = nw_attention_decode,
    .argmax = nw_argmax,
    .adamw = nw_adamw,
    .sumsq = nw_sumsq,
    .to_device = nw_copy,
    .to_host = nw_copy,
    .memset0 = nw_memset0,
    .status = nw_cpu_status,
    .host_pin = NULL,
    .host_unpin = NULL,
};
