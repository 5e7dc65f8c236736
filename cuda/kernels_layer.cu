/* kernels_layer.cu — embedding, LayerNorm, GELU, residual adds and the
 * deterministic column sums, forward and backward, with the semantics of
 * backend_cpu.c (backward accumulates).
 *
 * No atomics anywhere: a sum over rows (bias and LayerNorm parameter
 * gradients, embedding gradients) is summed in a fixed order, so a run is
 * repeatable bit for bit on one card. */
#include "cuda/cuda_internal.cuh" // defines: nw_cu, NW_CU_LAUNCHED, nw_warp_sum

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

/* ------------------------------------------------------------ encoder */

/* out (B,T,C) = wte[inp] + wpe[t] */
static __global__ void nw_encoder_fwd_k(float *out, const int *inp,
                                        const float *wte, const float *wpe,
                                        int T, int C, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  size_t bt = i / C;
  int c = (int)(i % C), t = (int)(bt % T);
  out[i] = wte[(size_t)inp[bt] * C + c] + wpe[(size_t)t * C + c];
}

void nw_cu_encoder_forward(float *out, const int *inp, const float *wte,
                           const float *wpe, int B, int T, int C) {
  size_t n = (size_t)B * T * C;
  nw_encoder_fwd_k<<<nw_cu_blocks(n, 256), 256, 0, nw_cu.stream>>>(
      out, inp, wte, wpe, T, C, n);
  NW_CU_LAUNCHED();
}

/* dwpe (T,C) += sum over b of dout[b,t]: one thread per (t,c). */
static __global__ void nw_encoder_bwd_wpe_k(float *dwpe, const float *dout,
                                            int B, int T, int C) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (size_t)T * C)
    return;
  float s = 0.0f;
  for (int b = 0; b < B; b++)
    s += dout[(size_t)b * T * C + i];
  dwpe[i] += s;
}

/* Tokens repeat, so rows of dwte collide. Thread (c, g) owns channel c of
 * every token id congruent to g modulo gridDim.y and walks all positions in
 * order: no two threads touch one element, and the order is fixed. */
static __global__ void nw_encoder_bwd_wte_k(float *dwte, const float *dout,
                                            const int *inp, int N, int C) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  int g = blockIdx.y, G = gridDim.y;
  if (c >= C)
    return;
  for (int bt = 0; bt < N; bt++) {
    int tok = inp[bt];
    if (tok % G == g)
      dwte[(size_t)tok * C + c] += dout[(size_t)bt * C + c];
  }
}

void nw_cu_encoder_backward(float *dwte, float *dwpe, const float *dout,
                            const int *inp, int B, int T, int C) {
  size_t tc = (size_t)T * C;
  nw_encoder_bwd_wpe_k<<<nw_cu_blocks(tc, 256), 256, 0, nw_cu.stream>>>(
      dwpe, dout, B, T, C);
  NW_CU_LAUNCHED();
  dim3 grid(nw_cu_blocks((size_t)C, 128), 64);
  nw_encoder_bwd_wte_k<<<grid, 128, 0, nw_cu.stream>>>(dwte, dout, inp, B * T,
                                                       C);
  NW_CU_LAUNCHED();
}

/* -------------------------------------------------------- column sums */

/* Rows per chunk so that (chunks, C) partials fit the scratch. */
static int nw_cu_chunks(int N, int C, int per_col) {
  int R = (int)(NW_CU_RED_FLOATS / ((size_t)C * per_col));
  R = R < 1 ? 1 : R > 64 ? 64 : R;
  return R < N ? R : (N > 0 ? N : 1);
}

/* part (R,C): chunk r's sum of rows [r*rows, r*rows+rows) of x (N,C). */
static __global__ void nw_colsum_part_k(float *part, const float *x, int N,
                                        int C, int rows) {
  int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  if (c >= C)
    return;
  int n0 = r * rows, n1 = n0 + rows < N ? n0 + rows : N;
  float s = 0.0f;
  for (int n = n0; n < n1; n++)
    s += x[(size_t)n * C + c];
  part[(size_t)r * C + c] = s;
}

/* out (C) += sum of the R partials in order. */
static __global__ void nw_colsum_finish_k(float *out, const float *part, int R,
                                          int C) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C)
    return;
  float s = 0.0f;
  for (int r = 0; r < R; r++)
    s += part[(size_t)r * C + c];
  out[c] += s;
}

void nw_cu_colsum_add(float *out, const float *x, int N, int C) {
  int R = nw_cu_chunks(N, C, 1), rows = (N + R - 1) / R;
  dim3 grid(nw_cu_blocks((size_t)C, 256), R);
  nw_colsum_part_k<<<grid, 256, 0, nw_cu.stream>>>(nw_cu.red, x, N, C, rows);
  NW_CU_LAUNCHED();
  nw_colsum_finish_k<<<nw_cu_blocks((size_t)C, 256), 256, 0, nw_cu.stream>>>(
      out, nw_cu.red, R, C);
  NW_CU_LAUNCHED();
}

/* out (N,C): every row a copy of row (C): the bias before a product. */
static __global__ void nw_fill_rows_k(float *out, const float *row, int C,
                                      size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = row[i % C];
}

void nw_cu_fill_rows(float *out, const float *row, int N, int C) {
  size_t n = (size_t)N * C;
  nw_fill_rows_k<<<nw_cu_blocks(n, 256), 256, 0, nw_cu.stream>>>(out, row, C,
                                                                 n);
  NW_CU_LAUNCHED();
}

/* ---------------------------------------------------------- layernorm */

/* One warp per row of (N,C): mean, variance, normalise. */
static __global__ void nw_layernorm_fwd_k(float *out, float *mean, float *rstd,
                                          const float *inp, const float *weight,
                                          const float *bias, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= N)
    return;
  const float *x = inp + (size_t)row * C;
  float *o = out + (size_t)row * C;
  float s = 0.0f;
  for (int c = lane; c < C; c += 32)
    s += x[c];
  float m = nw_warp_sum(s) / C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32)
    v += (x[c] - m) * (x[c] - m);
  float rs = 1.0f / sqrtf(nw_warp_sum(v) / C + 1e-5f);
  for (int c = lane; c < C; c += 32)
    o[c] = (x[c] - m) * rs * weight[c] + bias[c];
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = rs;
  }
}

void nw_cu_layernorm_forward(float *out, float *mean, float *rstd,
                             const float *inp, const float *weight,
                             const float *bias, int N, int C) {
  nw_layernorm_fwd_k<<<nw_cu_blocks((size_t)N, 8), 256, 0, nw_cu.stream>>>(
      out, mean, rstd, inp, weight, bias, N, C);
  NW_CU_LAUNCHED();
}

/* dinp: one warp per row (rows are independent). */
static __global__ void nw_layernorm_bwd_inp_k(float *dinp, const float *dout,
                                              const float *inp,
                                              const float *weight,
                                              const float *mean,
                                              const float *rstd, int N, int C) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x % 32;
  if (row >= N)
    return;
  const float *x = inp + (size_t)row * C, *d = dout + (size_t)row * C;
  float *di = dinp + (size_t)row * C;
  float m = mean[row], rs = rstd[row];
  float dm = 0.0f, dnm = 0.0f;
  for (int c = lane; c < C; c += 32) {
    float dnorm = weight[c] * d[c];
    dm += dnorm;
    dnm += dnorm * (x[c] - m) * rs;
  }
  dm = nw_warp_sum(dm) / C;
  dnm = nw_warp_sum(dnm) / C;
  for (int c = lane; c < C; c += 32) {
    float norm = (x[c] - m) * rs;
    float dnorm = weight[c] * d[c];
    di[c] += (dnorm - dm - norm * dnm) * rs;
  }
}

/* Partials of dweight and dbias over row chunks: part (2,R,C). */
static __global__ void nw_layernorm_bwd_part_k(float *part, const float *dout,
                                               const float *inp,
                                               const float *mean,
                                               const float *rstd, int N, int C,
                                               int rows) {
  int c = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
  int R = gridDim.y;
  if (c >= C)
    return;
  int n0 = r * rows, n1 = n0 + rows < N ? n0 + rows : N;
  float sw = 0.0f, sb = 0.0f;
  for (int n = n0; n < n1; n++) {
    float d = dout[(size_t)n * C + c];
    sb += d;
    sw += (inp[(size_t)n * C + c] - mean[n]) * rstd[n] * d;
  }
  part[(size_t)r * C + c] = sw;
  part[(size_t)(R + r) * C + c] = sb;
}

void nw_cu_layernorm_backward(float *dinp, float *dweight, float *dbias,
                              const float *dout, const float *inp,
                              const float *weight, const float *mean,
                              const float *rstd, int N, int C) {
  nw_layernorm_bwd_inp_k<<<nw_cu_blocks((size_t)N, 8), 256, 0, nw_cu.stream>>>(
      dinp, dout, inp, weight, mean, rstd, N, C);
  NW_CU_LAUNCHED();
  int R = nw_cu_chunks(N, C, 2), rows = (N + R - 1) / R;
  dim3 grid(nw_cu_blocks((size_t)C, 256), R);
  nw_layernorm_bwd_part_k<<<grid, 256, 0, nw_cu.stream>>>(
      nw_cu.red, dout, inp, mean, rstd, N, C, rows);
  NW_CU_LAUNCHED();
  unsigned cb = nw_cu_blocks((size_t)C, 256);
  nw_colsum_finish_k<<<cb, 256, 0, nw_cu.stream>>>(dweight, nw_cu.red, R, C);
  NW_CU_LAUNCHED();
  nw_colsum_finish_k<<<cb, 256, 0, nw_cu.stream>>>(
      dbias, nw_cu.red + (size_t)R * C, R, C);
  NW_CU_LAUNCHED();
}

/* --------------------------------------------------- gelu and residual */

/* GPT-2's tanh approximation as x * sigmoid(2z), as backend_cpu.c. */
static __global__ void nw_gelu_fwd_k(float *out, const float *inp, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  float x = inp[i];
  float z = GELU_SCALE * (x + 0.044715f * x * x * x);
  out[i] = x / (1.0f + expf(-2.0f * z));
}

static __global__ void nw_gelu_bwd_k(float *dinp, const float *inp,
                                     const float *dout, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  float x = inp[i];
  float z = GELU_SCALE * (x + 0.044715f * x * x * x);
  float sg = 1.0f / (1.0f + expf(-2.0f * z)); /* 0.5 (1 + tanh z) */
  float dz = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
  float grad = sg + 2.0f * x * sg * (1.0f - sg) * dz;
  dinp[i] += grad * dout[i];
}

void nw_cu_gelu_forward(float *out, const float *inp, size_t n) {
  if (!n)
    return;
  nw_gelu_fwd_k<<<nw_cu_blocks(n, 256), 256, 0, nw_cu.stream>>>(out, inp, n);
  NW_CU_LAUNCHED();
}

void nw_cu_gelu_backward(float *dinp, const float *inp, const float *dout,
                         size_t n) {
  if (!n)
    return;
  nw_gelu_bwd_k<<<nw_cu_blocks(n, 256), 256, 0, nw_cu.stream>>>(dinp, inp, dout,
                                                                n);
  NW_CU_LAUNCHED();
}

static __global__ void nw_residual_fwd_k(float *out, const float *a,
                                         const float *b, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    out[i] = a[i] + b[i];
}

static __global__ void nw_residual_bwd_k(float *d1, float *d2,
                                         const float *dout, size_t n) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    d1[i] += dout[i];
    d2[i] += dout[i];
  }
}

void nw_cu_residual_forward(float *out, const float *a, const float *b,
                            size_t n) {
  if (!n)
    return;
  nw_residual_fwd_k<<<nw_cu_blocks(n, 256), 256, 0, nw_cu.stream>>>(out, a, b,
                                                                    n);
  NW_CU_LAUNCHED();
}

void nw_cu_residual_backward(float *dinp1, float *dinp2, const float *dout,
                             size_t n) {
  if (!n)
    return;
  nw_residual_bwd_k<<<nw_cu_blocks(n, 256), 256, 0, nw_cu.stream>>>(
      dinp1, dinp2, dout, n);
  NW_CU_LAUNCHED();
}
