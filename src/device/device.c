/* device.c — device.type to a device, and the dispatch into cuda/. Built
 * with and without CUDA: without it, cuda is a configuration error and auto
 * is the CPU. */
#include "device/device.h"

#include <stdio.h>  // defines: snprintf
#include <string.h> // defines: strcmp

#include "base/error.h" // defines: NW_E*

#ifdef NW_HAVE_CUDA
#include "cuda/nw_cuda.h" // defines: nw_cuda_device_count, nw_cuda_open, ...
#endif

int nw_device_resolve(const nw_device_config *dc, nw_device_kind *kind,
                      char *err, size_t errlen) {
  *kind = NW_DEVICE_CPU;
  if (strcmp(dc->type, "cpu") == 0)
    return 0;
  int want_cuda = strcmp(dc->type, "cuda") == 0;
  if (!want_cuda && strcmp(dc->type, "auto") != 0) {
    snprintf(err, errlen, "device.type = %s: expected cpu, cuda or auto",
             dc->type);
    return NW_ECONFIG;
  }
#ifdef NW_HAVE_CUDA
  int n = 0;
  char why[256] = "";
  int rc = nw_cuda_device_count(&n, why, sizeof why);
  if (rc == 0 && n > 0) {
    *kind = NW_DEVICE_CUDA;
    return 0;
  }
  if (!want_cuda)
    return 0; /* auto: no GPU here, the CPU it is */
  snprintf(err, errlen,
           "device.type = cuda: no CUDA GPU on this machine (%s); set "
           "device.type = cpu or auto",
           rc < 0 ? why : "the runtime sees 0 devices");
  return NW_ECONFIG;
#else
  if (!want_cuda)
    return 0;
  snprintf(err, errlen,
           "device.type = cuda: this nightwatch-train was built without the "
           "CUDA backend (no nvcc at build time, or -DNW_CUDA=OFF); set "
           "device.type = cpu or auto, or rebuild with CUDA (docs/gpu.md)");
  return NW_ECONFIG;
#endif
}

#ifdef NW_HAVE_CUDA
static int nw_precision_parse(const char *s, nw_precision *p) {
  if (strcmp(s, "tf32") == 0)
    *p = NW_PRECISION_TF32;
  else if (strcmp(s, "bf16") == 0)
    *p = NW_PRECISION_BF16;
  else if (strcmp(s, "fp32") == 0)
    *p = NW_PRECISION_FP32;
  else
    return NW_ECONFIG;
  return 0;
}
#endif

int nw_device_open(const nw_device_config *dc, int ordinal, nw_mem *mem,
                   const nw_backend **be, char *err, size_t errlen) {
#ifdef NW_HAVE_CUDA
  nw_precision prec;
  if (nw_precision_parse(dc->precision, &prec) < 0) {
    snprintf(err, errlen, "device.precision = %s: expected tf32, bf16 or fp32",
             dc->precision);
    return NW_ECONFIG;
  }
  NW_TRY(nw_cuda_open(ordinal, prec, mem, err, errlen));
  *be = &nw_backend_cuda;
  return 0;
#else
  (void)dc;
  (void)ordinal;
  (void)mem;
  *be = NULL;
  snprintf(err, errlen, "device.type = cuda: built without the CUDA backend");
  return NW_ECONFIG;
#endif
}

void nw_device_close(void) {
#ifdef NW_HAVE_CUDA
  nw_cuda_close();
#endif
}

int nw_device_usage(uint64_t *used, uint64_t *capacity) {
#ifdef NW_HAVE_CUDA
  uint64_t free_bytes = 0, total = 0;
  NW_TRY(nw_cuda_mem_info(&free_bytes, &total));
  *used = total - free_bytes;
  *capacity = total;
  return 0;
#else
  *used = *capacity = 0;
  return NW_ENOTFOUND;
#endif
}

int nw_device_describe(char *desc, size_t desclen, char *bus_id,
                       size_t bus_id_len) {
#ifdef NW_HAVE_CUDA
  return nw_cuda_describe(desc, desclen, bus_id, bus_id_len);
#else
  snprintf(desc, desclen, "cpu");
  if (bus_id_len)
    bus_id[0] = 0;
  return NW_ENOTFOUND;
#endif
}
