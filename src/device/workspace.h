/* workspace.h — what a device holds in the memory domain besides the
 * model, as a pure function of the config: the estimator counts it, so the
 * supervisor needs it without linking the device code itself.
 * defines: NW_GPU_* workspace sizes, nw_device_fixed_bytes,
 *          nw_device_built_with_cuda */
#ifndef NW_DEVICE_WORKSPACE_H
#define NW_DEVICE_WORKSPACE_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h" // defines: nw_device_config

/* The CUDA backend's one workspace block in the memory domain (category
 * workspace), held from nw_device_open on: cuBLAS's workspace (32 MiB, what
 * NVIDIA recommends for Hopper), the partials of the deterministic column
 * sums and of the sum of squares. The estimator counts it for a GPU. */
#define NW_GPU_CUBLAS_WORKSPACE (32u << 20)
#define NW_GPU_RED_FLOATS (1u << 20)
#define NW_GPU_SUMSQ_BLOCKS 256
#define NW_GPU_SCRATCH_BYTES                                                   \
  ((size_t)NW_GPU_CUBLAS_WORKSPACE + (size_t)NW_GPU_RED_FLOATS * 4 +           \
   (size_t)NW_GPU_SUMSQ_BLOCKS * 8)

/* Bytes the device itself holds in the domain besides the model: the GPU
 * workspace when device.type is cuda (or auto in a build with CUDA), else
 * 0. A pure function of the config, for the estimator. */
uint64_t nw_device_fixed_bytes(const nw_device_config *dc);

/* 1 when this binary has the CUDA backend. */
int nw_device_built_with_cuda(void);

#endif
