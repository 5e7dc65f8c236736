/* workspace.c — the device's own bytes in the domain. Whether this build
 * has the CUDA backend is a compile-time fact (NW_HAVE_CUDA), so that a
 * program without the backend (the supervisor) sizes an "auto" device as
 * the trainer built beside it will. */
#include "device/workspace.h"

#include <string.h> // defines: strcmp

#include "device/mem.h" // defines: nw_mem_block_bytes

uint64_t nw_device_fixed_bytes(const nw_device_config *dc) {
  int gpu = strcmp(dc->type, "cuda") == 0 ||
            (strcmp(dc->type, "auto") == 0 && nw_device_built_with_cuda());
  return gpu ? nw_mem_block_bytes(NW_GPU_SCRATCH_BYTES) : 0;
}

int nw_device_built_with_cuda(void) {
#ifdef NW_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}
