/* cuda_internal.cuh — what the .cu files of the backend share: the module
 * state, the checks that turn CUDA and cuBLAS errors into NW_E* values, the
 * row-major matrix products, and the kernels' entry points.
 * defines: nw_cu_state, nw_cu, NW_CU, NW_CU_RC, NW_CUBLAS, nw_cu_gemm,
 *          nw_cu_gemm_strided, nw_cu_colsum_add, the kernel wrappers
 *
 * Errors: every CUDA and cuBLAS call is checked. A failure is logged with
 * file:line, kept as the backend's first error (nw_backend.status hands it
 * to the model at its step boundaries) and the calling operation returns:
 * backend operations cannot return a value, the model checks status. */
#ifndef NW_CUDA_INTERNAL_CUH
#define NW_CUDA_INTERNAL_CUH

#include <cublas_v2.h>    // defines: cublasHandle_t, cublasGemmEx
#include <cuda_runtime.h> // defines: cudaStream_t, cudaError_t
#include <stddef.h>       // defines: size_t

extern "C" {
#include "base/error.h"     // defines: NW_E*
#include "cuda/nw_cuda.h"   // defines: nw_precision
#include "device/backend.h" // defines: nw_backend
#include "device/device.h"  // defines: NW_GPU_* workspace sizes
#include "device/mem.h"     // defines: nw_mem
}

/* Floats of the scratch for two-stage column sums (bias and LayerNorm
 * parameter gradients): partial sums of row chunks, then their sum in a
 * fixed order, so results never depend on scheduling (no atomics). */
#define NW_CU_RED_FLOATS NW_GPU_RED_FLOATS
/* Blocks of the sum of squares: fixed, so the bits of the gradient norm do
 * not depend on the card. */
#define NW_CU_SUMSQ_BLOCKS NW_GPU_SUMSQ_BLOCKS
/* cuBLAS workspace: 32 MiB, what NVIDIA recommends for Hopper. */
#define NW_CU_CUBLAS_WORKSPACE NW_GPU_CUBLAS_WORKSPACE

typedef struct {
  int open;
  int ordinal;
  nw_precision prec;
  cudaStream_t stream;
  cublasHandle_t blas;
  cublasComputeType_t compute; /* from prec */
  nw_mem *mem;                 /* the domain the scratch lives in */
  void *scratch;               /* one workspace block: cuBLAS, sums */
  void *blas_ws;               /* (NW_CU_CUBLAS_WORKSPACE) bytes */
  float *red;                  /* (NW_CU_RED_FLOATS) column-sum partials */
  double *sumsq_part;          /* (NW_CU_SUMSQ_BLOCKS) */
  int err;                     /* first error since status(), NW_E* */
} nw_cu_state;

extern nw_cu_state nw_cu;

/* 0 for success, else the NW_E* of the error, logged and kept. */
int nw_cu_rt(cudaError_t e, const char *expr, const char *file, int line);
int nw_cu_blas(cublasStatus_t s, const char *expr, const char *file, int line);

/* In a void operation: on error, return from it. */
#define NW_CU(call)                                                            \
  do {                                                                         \
    if (nw_cu_rt((call), #call, __FILE__, __LINE__) < 0)                       \
      return;                                                                  \
  } while (0)
#define NW_CUBLAS(call)                                                        \
  do {                                                                         \
    if (nw_cu_blas((call), #call, __FILE__, __LINE__) < 0)                     \
      return;                                                                  \
  } while (0)
/* In an int function: on error, return the NW_E*. */
#define NW_CU_RC(call)                                                         \
  do {                                                                         \
    int nw__rc = nw_cu_rt((call), #call, __FILE__, __LINE__);                  \
    if (nw__rc < 0)                                                            \
      return nw__rc;                                                           \
  } while (0)
/* After a kernel launch: a refused launch is an error like any other. */
#define NW_CU_LAUNCHED() NW_CU(cudaGetLastError())

/* Row-major products with the meaning of cblas_sgemm(CblasRowMajor, ...):
 * C (M,N) = alpha op(A) op(B) + beta C. cuBLAS is column-major, and a
 * row-major matrix is its transpose in column-major, so C^T = op(B)^T
 * op(A)^T is computed with the operands swapped. Precision from nw_cu. */
void nw_cu_gemm(int ta, int tb, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta,
                float *C, int ldc);
/* batch products, operand i at A + i*sA, B + i*sB, C + i*sC (floats) */
void nw_cu_gemm_strided(int ta, int tb, int M, int N, int K, float alpha,
                        const float *A, int lda, long long sA, const float *B,
                        int ldb, long long sB, float beta, float *C, int ldc,
                        long long sC, int batch);

/* out (C) += column sums of x (N,C), deterministic (two stages). */
void nw_cu_colsum_add(float *out, const float *x, int N, int C);

/* The operations of nw_backend_cuda, by file. */
/* kernels_layer.cu */
void nw_cu_encoder_forward(float *out, const int *inp, const float *wte,
                           const float *wpe, int B, int T, int C);
void nw_cu_encoder_backward(float *dwte, float *dwpe, const float *dout,
                            const int *inp, int B, int T, int C);
void nw_cu_layernorm_forward(float *out, float *mean, float *rstd,
                             const float *inp, const float *weight,
                             const float *bias, int N, int C);
void nw_cu_layernorm_backward(float *dinp, float *dweight, float *dbias,
                              const float *dout, const float *inp,
                              const float *weight, const float *mean,
                              const float *rstd, int N, int C);
void nw_cu_gelu_forward(float *out, const float *inp, size_t n);
void nw_cu_gelu_backward(float *dinp, const float *inp, const float *dout,
                         size_t n);
void nw_cu_residual_forward(float *out, const float *a, const float *b,
                            size_t n);
void nw_cu_residual_backward(float *dinp1, float *dinp2, const float *dout,
                             size_t n);
void nw_cu_fill_rows(float *out, const float *row, int N, int C);
/* kernels_attention.cu */
void nw_cu_attention_forward(float *out, float *att, const float *qkv, int B,
                             int T, int C, int NH);
void nw_cu_attention_backward(float *dqkv, float *datt, const float *dout,
                              const float *qkv, const float *att, int B, int T,
                              int C, int NH);
void nw_cu_attention_decode(float *out, const float *q, const float *kcache,
                            const float *vcache, int B, int C, int NH, int Tmax,
                            int pos);
/* kernels_loss.cu */
void nw_cu_crossentropy(float *losses, float *logits, const int *targets, int N,
                        int V, float scale, int grad);
void nw_cu_argmax(int *next, const float *logits, int B, int V);
void nw_cu_adamw(float *p, const float *g, float *m, float *v, size_t n,
                 float lr, float b1, float b2, float eps, float wd, float bc1,
                 float bc2, float gs);
double nw_cu_sumsq(const float *x, size_t n);

/* Blocks of `threads` covering n items, as an unsigned grid size. */
static inline unsigned nw_cu_blocks(size_t n, unsigned threads) {
  return (unsigned)((n + threads - 1) / threads);
}

/* Sum over a warp, every lane receiving it. */
static __device__ inline float nw_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

static __device__ inline float nw_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

#endif
