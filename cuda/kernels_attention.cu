/* kernels_attention.cu — causal multi-head attention, forward and backward,
 * and the one-position attention of generation over the kv-cache.
 *
 * Correctness first, as llm.c's first CUDA kernels: the products run in
 * cuBLAS, strided-batched over the NH heads of one sequence (the heads of a
 * sequence are hs floats apart inside a (T,3C) row; sequences are T*3C
 * apart, which one stride cannot express, hence one call per sequence), and
 * the causal softmax is a kernel over the rows of the (T,T) scores. The
 * whole (B,NH,T,T) score tensor exists, as the model expects (category
 * attention). qkv (B,T,3C): q, k, v of head h at columns h*hs, C+h*hs,
 * 2C+h*hs. */
#include <math.h> // defines: INFINITY

#include "cuda/cuda_internal.cuh" // defines: nw_cu, nw_cu_gemm_strided

/* Causal softmax in place, one warp per row of att (rows = B*NH*T, each
 * (T) long): row t keeps entries 0..t, the rest become 0. */
static __global__ void nw_causal_softmax_k(float *att, int T, size_t rows) {
  size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows)
    return;
  int t = (int)(row % T);
  float *x = att + row * T;
  float mx = -INFINITY;
  for (int i = lane; i <= t; i += 32)
    mx = fmaxf(mx, x[i]);
  mx = nw_warp_max(mx);
  float s = 0.0f;
  for (int i = lane; i <= t; i += 32) {
    float e = expf(x[i] - mx);
    x[i] = e;
    s += e;
  }
  float inv = 1.0f / nw_warp_sum(s);
  for (int i = lane; i < T; i += 32)
    x[i] = i <= t ? x[i] * inv : 0.0f;
}

/* Softmax backward in place: d = a * (d - <a, d>) over 0..t, 0 beyond. */
static __global__ void nw_softmax_bwd_k(float *datt, const float *att, int T,
                                        size_t rows) {
  size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= rows)
    return;
  int t = (int)(row % T);
  const float *a = att + row * T;
  float *d = datt + row * T;
  float dot = 0.0f;
  for (int i = lane; i <= t; i += 32)
    dot += a[i] * d[i];
  dot = nw_warp_sum(dot);
  for (int i = lane; i < T; i += 32)
    d[i] = i <= t ? a[i] * (d[i] - dot) : 0.0f;
}

void nw_cu_attention_forward(float *out, float *att, const float *qkv, int B,
                             int T, int C, int NH) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  long long TT = (long long)T * T;
  for (int b = 0; b < B; b++) {
    const float *q = qkv + (size_t)b * T * 3 * C;
    float *a = att + (size_t)b * NH * TT;
    /* att[b,h] (T,T) = scale Q K^T; the masked upper triangle is computed
     * and then zeroed by the softmax */
    nw_cu_gemm_strided(0, 1, T, T, hs, scale, q, 3 * C, hs, q + C, 3 * C, hs,
                       0.0f, a, T, TT, NH);
  }
  size_t rows = (size_t)B * NH * T;
  nw_causal_softmax_k<<<nw_cu_blocks(rows, 8), 256, 0, nw_cu.stream>>>(att, T,
                                                                       rows);
  NW_CU_LAUNCHED();
  for (int b = 0; b < B; b++) {
    const float *v = qkv + (size_t)b * T * 3 * C + 2 * C;
    /* out[b, :, h] (T,hs) = att[b,h] (T,T) V (T,hs) */
    nw_cu_gemm_strided(0, 0, T, hs, T, 1.0f, att + (size_t)b * NH * TT, T, TT,
                       v, 3 * C, hs, 0.0f, out + (size_t)b * T * C, C, hs, NH);
  }
}

void nw_cu_attention_backward(float *dqkv, float *datt, const float *dout,
                              const float *qkv, const float *att, int B, int T,
                              int C, int NH) {
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  long long TT = (long long)T * T;
  for (int b = 0; b < B; b++) {
    const float *v = qkv + (size_t)b * T * 3 * C + 2 * C;
    const float *d = dout + (size_t)b * T * C;
    const float *a = att + (size_t)b * NH * TT;
    float *da = datt + (size_t)b * NH * TT;
    float *dv = dqkv + (size_t)b * T * 3 * C + 2 * C;
    /* datt += dout V^T;  dV += att^T dout */
    nw_cu_gemm_strided(0, 1, T, T, hs, 1.0f, d, C, hs, v, 3 * C, hs, 1.0f, da,
                       T, TT, NH);
    nw_cu_gemm_strided(1, 0, T, hs, T, 1.0f, a, T, TT, d, C, hs, 1.0f, dv,
                       3 * C, hs, NH);
  }
  size_t rows = (size_t)B * NH * T;
  nw_softmax_bwd_k<<<nw_cu_blocks(rows, 8), 256, 0, nw_cu.stream>>>(datt, att,
                                                                    T, rows);
  NW_CU_LAUNCHED();
  for (int b = 0; b < B; b++) {
    const float *q = qkv + (size_t)b * T * 3 * C;
    const float *da = datt + (size_t)b * NH * TT;
    float *dq = dqkv + (size_t)b * T * 3 * C;
    /* dQ += scale dpre K;  dK += scale dpre^T Q */
    nw_cu_gemm_strided(0, 0, T, hs, T, scale, da, T, TT, q + C, 3 * C, hs, 1.0f,
                       dq, 3 * C, hs, NH);
    nw_cu_gemm_strided(1, 0, T, hs, T, scale, da, T, TT, q, 3 * C, hs, 1.0f,
                       dq + C, 3 * C, hs, NH);
  }
}

/* One warp per (b,h): an online softmax over cache positions 0..pos (a
 * running maximum and a rescaled sum), lane i owning dimensions i, i+32, ...
 * of the output, which it accumulates in place. */
static __global__ void nw_attention_decode_k(float *out, const float *q,
                                             const float *kcache,
                                             const float *vcache, int B, int C,
                                             int NH, int Tmax, int pos) {
  int bh = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (bh >= B * NH)
    return;
  int b = bh / NH, h = bh % NH, hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  const float *qh = q + (size_t)b * C + h * hs;
  const float *kh = kcache + (size_t)bh * Tmax * hs;
  const float *vh = vcache + (size_t)bh * Tmax * hs;
  float *oh = out + (size_t)b * C + h * hs;
  for (int i = lane; i < hs; i += 32)
    oh[i] = 0.0f;
  float mx = -INFINITY, sum = 0.0f;
  for (int t = 0; t <= pos; t++) {
    float s = 0.0f;
    for (int i = lane; i < hs; i += 32)
      s += qh[i] * kh[(size_t)t * hs + i];
    s = nw_warp_sum(s) * scale;
    float nmx = fmaxf(mx, s);
    float corr = expf(mx - nmx); /* 0 at the first position */
    float w = expf(s - nmx);
    sum = sum * corr + w;
    for (int i = lane; i < hs; i += 32)
      oh[i] = oh[i] * corr + w * vh[(size_t)t * hs + i];
    mx = nmx;
  }
  float inv = 1.0f / sum;
  for (int i = lane; i < hs; i += 32)
    oh[i] *= inv;
}

void nw_cu_attention_decode(float *out, const float *q, const float *kcache,
                            const float *vcache, int B, int C, int NH, int Tmax,
                            int pos) {
  nw_attention_decode_k<<<nw_cu_blocks((size_t)B * NH, 8), 256, 0,
                          nw_cu.stream>>>(out, q, kcache, vcache, B, C, NH,
                                          Tmax, pos);
  NW_CU_LAUNCHED();
}
