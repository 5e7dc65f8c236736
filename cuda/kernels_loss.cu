/* kernels_loss.cu — the fused LM-head softmax + cross-entropy (dlogits
 * written in place), greedy argmax, AdamW, and the sum of squares of the
 * global gradient norm. Semantics of backend_cpu.c. */
#include <math.h> // defines: INFINITY

#include "cuda/cuda_internal.cuh" // defines: nw_cu, NW_CU_LAUNCHED

#define NW_CE_THREADS 512

/* Block-wide reduction of one float (max or sum) through shared memory;
 * every thread receives the result. */
template <bool IS_MAX>
static __device__ float nw_block_reduce(float v, float *shared) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int nwarps = blockDim.x / 32;
  v = IS_MAX ? nw_warp_max(v) : nw_warp_sum(v);
  __syncthreads(); /* shared may still be read by a previous reduction */
  if (lane == 0)
    shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : (IS_MAX ? -INFINITY : 0.0f);
  return IS_MAX ? nw_warp_max(v) : nw_warp_sum(v);
}

/* One block per row of logits (N,V). losses[n] = -log p[target]; with grad
 * the row becomes scale * (p - onehot). */
static __global__ void nw_crossentropy_k(float *losses, float *logits,
                                         const int *targets, int V, float scale,
                                         int grad) {
  __shared__ float shared[32];
  size_t n = blockIdx.x;
  float *x = logits + n * V;
  int tgt = targets[n];
  if (tgt < 0) {
    if (threadIdx.x == 0)
      losses[n] = 0.0f;
    if (grad)
      for (int i = threadIdx.x; i < V; i += blockDim.x)
        x[i] = 0.0f;
    return;
  }
  float xt = x[tgt]; /* read before any thread overwrites the row */
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    mx = fmaxf(mx, x[i]);
  mx = nw_block_reduce<true>(mx, shared);
  float s = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    s += expf(x[i] - mx);
  s = nw_block_reduce<false>(s, shared);
  if (threadIdx.x == 0)
    losses[n] = logf(s) - (xt - mx);
  if (!grad)
    return;
  float k = scale / s;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    x[i] = expf(x[i] - mx) * k - (i == tgt ? scale : 0.0f);
}

void nw_cu_crossentropy(float *losses, float *logits, const int *targets, int N,
                        int V, float scale, int grad) {
  if (N <= 0)
    return;
  nw_crossentropy_k<<<(unsigned)N, NW_CE_THREADS, 0, nw_cu.stream>>>(
      losses, logits, targets, V, scale, grad);
  NW_CU_LAUNCHED();
}

/* One block per row; ties go to the lowest index, as the CPU's first max. */
static __global__ void nw_argmax_k(int *next, const float *logits, int V) {
  __shared__ float sv[1024];
  __shared__ int si[1024];
  const float *x = logits + (size_t)blockIdx.x * V;
  float best = -INFINITY;
  int bi = V; /* "none": loses every tie */
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    if (x[i] > best || bi == V) {
      best = x[i];
      bi = i;
    }
  sv[threadIdx.x] = best;
  si[threadIdx.x] = bi;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) {
      float ov = sv[threadIdx.x + s];
      int oi = si[threadIdx.x + s];
      if (oi < V && (si[threadIdx.x] == V || ov > sv[threadIdx.x] ||
                     (ov == sv[threadIdx.x] && oi < si[threadIdx.x]))) {
        sv[threadIdx.x] = ov;
        si[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0)
    next[blockIdx.x] = si[0] < V ? si[0] : 0;
}

void nw_cu_argmax(int *next, const float *logits, int B, int V) {
  if (B <= 0)
    return;
  nw_argmax_k<<<(unsigned)B, 256, 0, nw_cu.stream>>>(next, logits, V);
  NW_CU_LAUNCHED();
}

static __global__ void nw_adamw_k(float *p, const float *g, float *m, float *v,
                                  size_t n, float lr, float b1, float b2,
                                  float eps, float wd, float bc1, float bc2,
                                  float gs) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  float gi = g[i] * gs;
  float mi = b1 * m[i] + (1.0f - b1) * gi;
  float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
}

void nw_cu_adamw(float *p, const float *g, float *m, float *v, size_t n,
                 float lr, float b1, float b2, float eps, float wd, float bc1,
                 float bc2, float gs) {
  if (!n)
    return;
  nw_adamw_k<<<nw_cu_blocks(n, 256), 256, 0, nw_cu.stream>>>(
      p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2, gs);
  NW_CU_LAUNCHED();
}

/* A fixed grid, each block a fixed slice summed in double, the partials
 * summed on the host in order: the bits do not depend on the card. */
static __global__ void nw_sumsq_k(double *part, const float *x, size_t n) {
  __shared__ double shared[256];
  size_t per = (n + gridDim.x - 1) / gridDim.x;
  size_t i0 = (size_t)blockIdx.x * per;
  size_t i1 = i0 + per < n ? i0 + per : n;
  double s = 0.0;
  for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x)
    s += (double)x[i] * (double)x[i];
  shared[threadIdx.x] = s;
  __syncthreads();
  for (int k = blockDim.x / 2; k > 0; k >>= 1) {
    if ((int)threadIdx.x < k)
      shared[threadIdx.x] += shared[threadIdx.x + k];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    part[blockIdx.x] = shared[0];
}

double nw_cu_sumsq(const float *x, size_t n) {
  double host[NW_CU_SUMSQ_BLOCKS];
  if (!n)
    return 0.0;
  nw_sumsq_k<<<NW_CU_SUMSQ_BLOCKS, 256, 0, nw_cu.stream>>>(nw_cu.sumsq_part, x,
                                                           n);
  if (nw_cu_rt(cudaGetLastError(), "nw_sumsq_k", __FILE__, __LINE__) < 0 ||
      nw_cu_rt(cudaMemcpyAsync(host, nw_cu.sumsq_part, sizeof host,
                               cudaMemcpyDeviceToHost, nw_cu.stream),
               "cudaMemcpyAsync", __FILE__, __LINE__) < 0 ||
      nw_cu_rt(cudaStreamSynchronize(nw_cu.stream), "cudaStreamSynchronize",
               __FILE__, __LINE__) < 0)
    return NAN; /* status() has the error; NaN stops the update anyway */
  double total = 0.0;
  for (int b = 0; b < NW_CU_SUMSQ_BLOCKS; b++)
    total += host[b];
  return total;
}
