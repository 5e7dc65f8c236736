/* nw_cuda.h — what host C code calls in cuda/ (C linkage). Only src/device.c
 * and the GPU tests include it, and only in builds with NW_HAVE_CUDA.
 * defines: nw_precision, nw_cuda_device_count, nw_cuda_open, nw_cuda_close,
 *          nw_cuda_mem_info, nw_cuda_describe, nw_cuda_gemm_rate
 *
 * One GPU per process, as in llm.c: the backend's state (device, stream,
 * cuBLAS handle and its workspace, precision, first error) is module state
 * set by nw_cuda_open, because nw_backend is a table of plain functions. */
#ifndef NW_CUDA_H
#define NW_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "device/mem.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  NW_PRECISION_TF32 = 0, /* FP32 storage, TF32 tensor-core products */
  NW_PRECISION_BF16 = 1, /* BF16 product inputs, FP32 accumulation */
  NW_PRECISION_FP32 = 2, /* FP32 products (no tensor cores) */
} nw_precision;

/* GPUs the runtime sees. 0 and *n = 0 when there are none; NW_ENOTFOUND
 * with the runtime's reason in err when it cannot tell (no driver). */
int nw_cuda_device_count(int *n, char *err, size_t errlen);

/* Sets up GPU `ordinal` for this process: a stream, a cuBLAS handle whose
 * workspace is a block of the memory domain (category workspace), and the
 * domain's device provider (cudaMalloc/cudaFree/cudaMemsetAsync) attached
 * to mem. NW_ENOMEM when the card cannot hold the handle or workspace (the
 * domain records it), NW_ECONFIG with err for a device that cannot be used.
 * nw_backend_cuda is usable after it. */
int nw_cuda_open(int ordinal, nw_precision prec, nw_mem *mem, char *err,
                 size_t errlen);
/* Waits for the device, returns the workspace to the domain and destroys
 * the handle and stream; the domain (and its cudaMalloc blocks) outlives
 * it and is destroyed by its owner afterwards. */
void nw_cuda_close(void);

/* The card's free and total bytes (cudaMemGetInfo). */
int nw_cuda_mem_info(uint64_t *free_bytes, uint64_t *total_bytes);

/* "cuda:ORDINAL NAME" and the PCI bus id NVML knows the card by. */
int nw_cuda_describe(char *desc, size_t desclen, char *bus_id,
                     size_t bus_id_len);

/* The card's measured matrix rate in FLOP/s: the best of `reps` square
 * products of size n with BF16 inputs and FP32 accumulation (the MFU
 * denominator of bench_gpu). Needs nw_cuda_open. */
int nw_cuda_gemm_rate(int n, int reps, double *flops_per_s);

#ifdef __cplusplus
}
#endif

#endif
