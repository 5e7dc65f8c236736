/* backend_cuda.cu — the CUDA backend: module state, error checks, the
 * memory domain's device provider (cudaMalloc), cuBLAS matrix products and
 * the nw_backend table. Kernels live in kernels_*.cu by concern.
 *
 * One stream carries all work in order, so a block the domain hands out
 * again from its cache is never still in use by an earlier kernel, and a
 * copy to the host waits exactly for the work it depends on. */
#include <cuda_bf16.h> // defines: __nv_bfloat16, __float2bfloat16
#include <dlfcn.h>     // defines: dlopen, dlsym, dlerror
#include <stdio.h>     // defines: snprintf
#include <string.h>    // defines: memset, memcpy

#include "cuda/cuda_internal.cuh" // defines: nw_cu, NW_CU, nw_cu_gemm

extern "C" {
#include "base/log.h" // defines: nw_error, nw_info
}

nw_cu_state nw_cu;

/* ------------------------------------------------- cuBLAS, loaded late */

/* cuBLAS is loaded when a GPU is opened, not when the program starts:
 * loading libcublas and libcublasLt costs ~0.7 s of page faults on a VM,
 * which every CPU run and every restart of a recovery would pay for
 * nothing. The prototypes come from cublas_v2.h; the symbols are the _v2
 * names its macros map to. */
static struct {
  void *lib;
  decltype(&cublasCreate_v2) create;
  decltype(&cublasDestroy_v2) destroy;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetWorkspace_v2) set_workspace;
  /* spelled out: C++ sees an overload of each in cublas_api.h */
  cublasStatus_t (*gemm)(cublasHandle_t, cublasOperation_t, cublasOperation_t,
                         int, int, int, const void *, const void *,
                         cudaDataType, int, const void *, cudaDataType, int,
                         const void *, void *, cudaDataType, int,
                         cublasComputeType_t, cublasGemmAlgo_t);
  cublasStatus_t (*gemm_strided)(cublasHandle_t, cublasOperation_t,
                                 cublasOperation_t, int, int, int, const void *,
                                 const void *, cudaDataType, int, long long,
                                 const void *, cudaDataType, int, long long,
                                 const void *, void *, cudaDataType, int,
                                 long long, int, cublasComputeType_t,
                                 cublasGemmAlgo_t);
  decltype(&cublasGetStatusString) status_string;
} nw_blas;

#ifndef NW_CUBLAS_DIR
#define NW_CUBLAS_DIR ""
#endif

static int nw_cublas_load(char *err, size_t errlen) {
  if (nw_blas.lib)
    return 0;
  /* the loader's search path first (LD_LIBRARY_PATH, a bundle), then the
   * toolkit this binary was built against */
  void *lib = dlopen("libcublas.so.13", RTLD_NOW | RTLD_LOCAL);
  if (!lib && NW_CUBLAS_DIR[0])
    lib = dlopen(NW_CUBLAS_DIR "/libcublas.so.13", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *why = dlerror();
    snprintf(err, errlen, "cannot load cuBLAS: %s",
             why ? why : "libcublas.so.13");
    return NW_ECONFIG;
  }
  static const struct {
    const char *sym;
    size_t off;
  } syms[] = {
      {"cublasCreate_v2", offsetof(decltype(nw_blas), create)},
      {"cublasDestroy_v2", offsetof(decltype(nw_blas), destroy)},
      {"cublasSetStream_v2", offsetof(decltype(nw_blas), set_stream)},
      {"cublasSetWorkspace_v2", offsetof(decltype(nw_blas), set_workspace)},
      {"cublasGemmEx", offsetof(decltype(nw_blas), gemm)},
      {"cublasGemmStridedBatchedEx", offsetof(decltype(nw_blas), gemm_strided)},
      {"cublasGetStatusString", offsetof(decltype(nw_blas), status_string)},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *f = dlsym(lib, syms[i].sym);
    if (!f) {
      snprintf(err, errlen, "cuBLAS: no symbol %s", syms[i].sym);
      dlclose(lib);
      return NW_ECONFIG;
    }
    memcpy((char *)&nw_blas + syms[i].off, &f, sizeof f);
  }
  nw_blas.lib = lib; /* kept for the life of the process */
  return 0;
}

/* ------------------------------------------------------------- errors */

static void nw_cu_keep(int rc) {
  if (nw_cu.err == 0)
    nw_cu.err = rc;
}

int nw_cu_rt(cudaError_t e, const char *expr, const char *file, int line) {
  if (e == cudaSuccess)
    return 0;
  /* Out of memory is not sticky: clear it so that the next check does not
   * see it again; a device fault stays (and every later call fails). */
  int rc = e == cudaErrorMemoryAllocation ? NW_ENOMEM : NW_EINTERNAL;
  if (rc == NW_ENOMEM) {
    (void)cudaGetLastError();
    if (nw_cu.mem)
      nw_mem_note_failure(nw_cu.mem, NW_MEM_WORKSPACE, 0);
  }
  nw_error("%s:%d: %s: %s (%s)", file, line, expr, cudaGetErrorString(e),
           cudaGetErrorName(e));
  nw_cu_keep(rc);
  return rc;
}

int nw_cu_blas(cublasStatus_t s, const char *expr, const char *file, int line) {
  if (s == CUBLAS_STATUS_SUCCESS)
    return 0;
  /* cuBLAS allocating for itself (its workspace is ours, but a heuristic
   * may still ask for more) is an OOM like a refused cudaMalloc; the
   * domain records it so that the report says workspace. */
  int rc = s == CUBLAS_STATUS_ALLOC_FAILED ? NW_ENOMEM : NW_EINTERNAL;
  if (rc == NW_ENOMEM && nw_cu.mem)
    nw_mem_note_failure(nw_cu.mem, NW_MEM_WORKSPACE, 0);
  nw_error("%s:%d: %s: %s (%d)", file, line, expr,
           nw_blas.status_string ? nw_blas.status_string(s) : "cuBLAS error",
           (int)s);
  nw_cu_keep(rc);
  return rc;
}

static int nw_cu_status(void) {
  int rc = nw_cu.err;
  nw_cu.err = 0;
  cudaError_t e = cudaGetLastError(); /* a launch nobody checked */
  if (rc == 0 && e != cudaSuccess)
    rc = e == cudaErrorMemoryAllocation ? NW_ENOMEM : NW_EINTERNAL;
  return rc;
}

/* ------------------------------------------- the domain's provider */

static int nw_cu_dev_alloc(void *ctx, size_t bytes, void **out) {
  (void)ctx;
  *out = NULL;
  cudaError_t e = cudaMalloc(out, bytes);
  if (e == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError(); /* not sticky: the domain reports it */
    *out = NULL;
    return NW_ENOMEM;
  }
  return nw_cu_rt(e, "cudaMalloc", __FILE__, __LINE__);
}

static void nw_cu_dev_free(void *ctx, void *p) {
  (void)ctx;
  /* cudaFree waits for the device: the block may still be read by queued
   * work. A failure here is a device fault, kept for status(). */
  nw_cu_rt(cudaFree(p), "cudaFree", __FILE__, __LINE__);
}

static int nw_cu_dev_zero(void *ctx, void *p, size_t bytes) {
  (void)ctx;
  return nw_cu_rt(cudaMemsetAsync(p, 0, bytes, nw_cu.stream), "cudaMemsetAsync",
                  __FILE__, __LINE__);
}

/* ------------------------------------------------------ open, close */

extern "C" int nw_cuda_device_count(int *n, char *err, size_t errlen) {
  *n = 0;
  cudaError_t e = cudaGetDeviceCount(n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    *n = 0;
    if (e == cudaErrorNoDevice)
      return 0;
    snprintf(err, errlen, "cudaGetDeviceCount: %s (%s)", cudaGetErrorString(e),
             cudaGetErrorName(e));
    return NW_ENOTFOUND;
  }
  return 0;
}

extern "C" int nw_cuda_open(int ordinal, nw_precision prec, nw_mem *mem,
                            char *err, size_t errlen) {
  if (nw_cu.open) {
    snprintf(err, errlen, "the CUDA backend is already open");
    return NW_EBUSY;
  }
  memset(&nw_cu, 0, sizeof nw_cu);
  nw_cu.ordinal = ordinal;
  nw_cu.prec = prec;
  nw_cu.mem = mem;
  nw_cu.compute = prec == NW_PRECISION_BF16   ? CUBLAS_COMPUTE_32F_FAST_16BF
                  : prec == NW_PRECISION_FP32 ? CUBLAS_COMPUTE_32F
                                              : CUBLAS_COMPUTE_32F_FAST_TF32;
  int rc =
      nw_cu_rt(cudaSetDevice(ordinal), "cudaSetDevice", __FILE__, __LINE__);
  /* The context is created lazily: force it here so that a card too full
   * for a context is an OOM at init, not a fault in the first kernel. */
  if (rc == 0)
    rc = nw_cu_rt(cudaFree(0), "cudaFree(0)", __FILE__, __LINE__);
  if (rc < 0) {
    snprintf(err, errlen, "cuda:%d: cannot use the device (%s)", ordinal,
             nw_strerror(rc));
    goto fail;
  }
  if ((rc = nw_cublas_load(err, errlen)) < 0)
    goto fail;
  if ((rc = nw_cu_rt(
           cudaStreamCreateWithFlags(&nw_cu.stream, cudaStreamNonBlocking),
           "cudaStreamCreate", __FILE__, __LINE__)) < 0 ||
      (rc = nw_cu_blas(nw_blas.create(&nw_cu.blas), "cublasCreate", __FILE__,
                       __LINE__)) < 0 ||
      (rc = nw_cu_blas(nw_blas.set_stream(nw_cu.blas, nw_cu.stream),
                       "cublasSetStream", __FILE__, __LINE__)) < 0) {
    snprintf(err, errlen, "cuda:%d: stream or cuBLAS handle: %s", ordinal,
             nw_strerror(rc));
    goto fail;
  }
  {
    nw_mem_device dev;
    memset(&dev, 0, sizeof dev);
    dev.alloc = nw_cu_dev_alloc;
    dev.free = nw_cu_dev_free;
    dev.zero = nw_cu_dev_zero;
    nw_mem_attach_device(mem, &dev);
  }
  {
    /* One workspace block: cuBLAS's workspace, the column-sum partials and
     * the sum-of-squares partials, each 256-byte aligned. */
    size_t ws = NW_CU_CUBLAS_WORKSPACE,
           red = (size_t)NW_CU_RED_FLOATS * sizeof(float),
           sq = NW_CU_SUMSQ_BLOCKS * sizeof(double);
    rc = nw_mem_alloc(mem, NW_MEM_WORKSPACE, ws + red + sq, &nw_cu.scratch);
    if (rc < 0) {
      snprintf(err, errlen, "cuda:%d: workspace: %s", ordinal, nw_strerror(rc));
      goto fail;
    }
    nw_cu.blas_ws = nw_cu.scratch;
    nw_cu.red = (float *)((char *)nw_cu.scratch + ws);
    nw_cu.sumsq_part = (double *)((char *)nw_cu.scratch + ws + red);
    if ((rc = nw_cu_blas(nw_blas.set_workspace(nw_cu.blas, nw_cu.blas_ws, ws),
                         "cublasSetWorkspace", __FILE__, __LINE__)) < 0) {
      snprintf(err, errlen, "cuda:%d: cuBLAS workspace: %s", ordinal,
               nw_strerror(rc));
      goto fail;
    }
  }
  nw_cu.err = 0;
  nw_cu.open = 1;
  return 0;
fail:
  nw_cu.open = 1; /* so that close undoes what was done */
  nw_cuda_close();
  return rc;
}

extern "C" void nw_cuda_close(void) {
  if (!nw_cu.open)
    return;
  if (nw_cu.stream)
    nw_cu_rt(cudaStreamSynchronize(nw_cu.stream), "cudaStreamSynchronize",
             __FILE__, __LINE__);
  if (nw_cu.scratch)
    nw_mem_free(nw_cu.mem, nw_cu.scratch);
  if (nw_cu.blas)
    nw_blas.destroy(nw_cu.blas);
  if (nw_cu.stream)
    cudaStreamDestroy(nw_cu.stream);
  /* the domain keeps its provider: its blocks are freed by its owner */
  nw_mem *mem = nw_cu.mem;
  memset(&nw_cu, 0, sizeof nw_cu);
  nw_cu.mem = mem;
}

extern "C" int nw_cuda_mem_info(uint64_t *free_bytes, uint64_t *total_bytes) {
  size_t f = 0, t = 0;
  NW_CU_RC(cudaMemGetInfo(&f, &t));
  *free_bytes = f;
  *total_bytes = t;
  return 0;
}

extern "C" int nw_cuda_describe(char *desc, size_t desclen, char *bus_id,
                                size_t bus_id_len) {
  cudaDeviceProp p;
  NW_CU_RC(cudaGetDeviceProperties(&p, nw_cu.ordinal));
  snprintf(desc, desclen, "cuda:%d %s", nw_cu.ordinal, p.name);
  if (bus_id_len)
    NW_CU_RC(cudaDeviceGetPCIBusId(bus_id, (int)bus_id_len, nw_cu.ordinal));
  return 0;
}

/* ------------------------------------------------------------ gemm */

static cublasOperation_t nw_cu_op(int t) {
  return t ? CUBLAS_OP_T : CUBLAS_OP_N;
}

void nw_cu_gemm(int ta, int tb, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta,
                float *C, int ldc) {
  NW_CUBLAS(nw_blas.gemm(nw_cu.blas, nw_cu_op(tb), nw_cu_op(ta), N, M, K,
                         &alpha, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta,
                         C, CUDA_R_32F, ldc, nw_cu.compute,
                         CUBLAS_GEMM_DEFAULT));
}

void nw_cu_gemm_strided(int ta, int tb, int M, int N, int K, float alpha,
                        const float *A, int lda, long long sA, const float *B,
                        int ldb, long long sB, float beta, float *C, int ldc,
                        long long sC, int batch) {
  NW_CUBLAS(nw_blas.gemm_strided(
      nw_cu.blas, nw_cu_op(tb), nw_cu_op(ta), N, M, K, &alpha, B, CUDA_R_32F,
      ldb, sB, A, CUDA_R_32F, lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch,
      nw_cu.compute, CUBLAS_GEMM_DEFAULT));
}

/* ---------------------------------------------------------- matmul */

static void nw_cu_matmul_forward(float *out, const float *inp,
                                 const float *weight, const float *bias, int N,
                                 int C, int OC) {
  float beta = 0.0f;
  if (bias) {
    /* out starts as the bias rows; the product adds inp @ W^T (as on the
     * CPU, so both add the bias in the same place of the sum) */
    nw_cu_fill_rows(out, bias, N, OC);
    beta = 1.0f;
  }
  nw_cu_gemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, beta, out, OC);
}

static void nw_cu_matmul_backward(float *dinp, float *dweight, float *dbias,
                                  const float *dout, const float *inp,
                                  const float *weight, int N, int C, int OC) {
  /* dinp (N,C) += dout (N,OC) @ W (OC,C) */
  if (dinp)
    nw_cu_gemm(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
  /* dW (OC,C) += dout^T (OC,N) @ inp (N,C) */
  nw_cu_gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
  if (dbias)
    nw_cu_colsum_add(dbias, dout, N, OC);
}

/* ----------------------------------------------------------- copies */

static void nw_cu_to_device(void *dst, const void *src, size_t bytes) {
  if (!bytes)
    return;
  NW_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, nw_cu.stream));
  /* The caller may free or reuse src as soon as we return; from pinned
   * memory the copy would still be in flight, so wait for it. */
  NW_CU(cudaStreamSynchronize(nw_cu.stream));
}

static void nw_cu_to_host(void *dst, const void *src, size_t bytes) {
  if (!bytes)
    return;
  NW_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, nw_cu.stream));
  NW_CU(cudaStreamSynchronize(nw_cu.stream));
}

static void nw_cu_memset0(void *dst, size_t bytes) {
  if (!bytes)
    return;
  NW_CU(cudaMemsetAsync(dst, 0, bytes, nw_cu.stream));
}

static int nw_cu_host_pin(void *p, size_t bytes) {
  cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
  if (e != cudaSuccess) {
    /* not fatal: the copy works from pageable memory, only slower */
    (void)cudaGetLastError();
    nw_info("cudaHostRegister of %zu bytes: %s", bytes, cudaGetErrorString(e));
    return NW_ESYS;
  }
  return 0;
}

static void nw_cu_host_unpin(void *p) {
  nw_cu_rt(cudaHostUnregister(p), "cudaHostUnregister", __FILE__, __LINE__);
}

/* ------------------------------------------------ the measured rate */

static __global__ void nw_fill_bf16(__nv_bfloat16 *x, size_t n, unsigned seed) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    x[i] = __float2bfloat16(((h >> 8) & 0xffff) / 65536.0f - 0.5f);
  }
}

extern "C" int nw_cuda_gemm_rate(int n, int reps, double *flops_per_s) {
  *flops_per_s = 0;
  size_t nn = (size_t)n * n;
  void *buf = NULL;
  NW_TRY(nw_mem_alloc(nw_cu.mem, NW_MEM_WORKSPACE,
                      2 * nn * sizeof(__nv_bfloat16) + nn * sizeof(float),
                      &buf));
  __nv_bfloat16 *A = (__nv_bfloat16 *)buf, *B = A + nn;
  float *C = (float *)(B + nn);
  nw_fill_bf16<<<nw_cu_blocks(nn, 256), 256, 0, nw_cu.stream>>>(A, nn, 1u);
  nw_fill_bf16<<<nw_cu_blocks(nn, 256), 256, 0, nw_cu.stream>>>(B, nn, 2u);
  int rc = nw_cu_rt(cudaGetLastError(), "nw_fill_bf16", __FILE__, __LINE__);
  cudaEvent_t e0 = NULL, e1 = NULL;
  if (rc == 0)
    rc = nw_cu_rt(cudaEventCreate(&e0), "cudaEventCreate", __FILE__, __LINE__);
  if (rc == 0)
    rc = nw_cu_rt(cudaEventCreate(&e1), "cudaEventCreate", __FILE__, __LINE__);
  float alpha = 1.0f, beta = 0.0f, best = 0.0f;
  for (int r = 0; rc == 0 && r <= reps; r++) {
    rc = nw_cu_rt(cudaEventRecord(e0, nw_cu.stream), "cudaEventRecord",
                  __FILE__, __LINE__);
    if (rc == 0)
      rc = nw_cu_blas(nw_blas.gemm(nw_cu.blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n,
                                   n, &alpha, A, CUDA_R_16BF, n, B, CUDA_R_16BF,
                                   n, &beta, C, CUDA_R_32F, n,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      "cublasGemmEx(bf16)", __FILE__, __LINE__);
    if (rc == 0)
      rc = nw_cu_rt(cudaEventRecord(e1, nw_cu.stream), "cudaEventRecord",
                    __FILE__, __LINE__);
    if (rc == 0)
      rc = nw_cu_rt(cudaEventSynchronize(e1), "cudaEventSynchronize", __FILE__,
                    __LINE__);
    float ms = 0;
    if (rc == 0)
      rc = nw_cu_rt(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime",
                    __FILE__, __LINE__);
    if (rc == 0 && r > 0 && ms > 0) { /* the first one warms up */
      float rate = (float)(2.0 * n * (double)nn / (ms * 1e-3));
      best = rate > best ? rate : best;
    }
  }
  if (e0)
    cudaEventDestroy(e0);
  if (e1)
    cudaEventDestroy(e1);
  nw_mem_free(nw_cu.mem, buf);
  *flops_per_s = best;
  nw_cu.err = 0;
  return rc;
}

/* ------------------------------------------------------------ table */

extern "C" const nw_backend nw_backend_cuda = {
    /* .name = */ "cuda",
    /* .encoder_forward = */ nw_cu_encoder_forward,
    /* .encoder_backward = */ nw_cu_encoder_backward,
    /* .layernorm_forward = */ nw_cu_layernorm_forward,
    /* .layernorm_backward = */ nw_cu_layernorm_backward,
    /* .matmul_forward = */ nw_cu_matmul_forward,
    /* .matmul_backward = */ nw_cu_matmul_backward,
    /* .attention_forward = */ nw_cu_attention_forward,
    /* .attention_backward = */ nw_cu_attention_backward,
    /* .gelu_forward = */ nw_cu_gelu_forward,
    /* .gelu_backward = */ nw_cu_gelu_backward,
    /* .residual_forward = */ nw_cu_residual_forward,
    /* .residual_backward = */ nw_cu_residual_backward,
    /* .crossentropy = */ nw_cu_crossentropy,
    /* .attention_decode = */ nw_cu_attention_decode,
    /* .argmax = */ nw_cu_argmax,
    /* .adamw = */ nw_cu_adamw,
    /* .sumsq = */ nw_cu_sumsq,
    /* .to_device = */ nw_cu_to_device,
    /* .to_host = */ nw_cu_to_host,
    /* .memset0 = */ nw_cu_memset0,
    /* .status = */ nw_cu_status,
    /* .host_pin = */ nw_cu_host_pin,
    /* .host_unpin = */ nw_cu_host_unpin,
};
