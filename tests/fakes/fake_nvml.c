/* fake_nvml.c — a TEST DOUBLE of libnvidia-ml.so.1, built only for
 * tests/test_device.c and loaded through NW_NVML_LIBRARY. It implements the
 * few NVML entry points gpu_procs.c uses, with NVML's ABI, and describes one
 * card of 80 GiB (1 GiB used) at index 0 and PCI bus id 0000:65:00.0 with
 * one compute process: the pid in FAKE_NVML_PID, holding 12345 bytes. It
 * lets the tests check what gpu_procs.c does with NVML's answers (and with
 * /proc) on a machine without a GPU; it is never linked into a program.
 * FAKE_NVML_INIT_FAILS=1 makes nvmlInit_v2 fail as a driver mismatch. */
#include <stdlib.h>
#include <string.h>

typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId, computeInstanceId;
} fake_proc;
typedef struct {
  unsigned long long total, free, used;
} fake_mem;

static int fake_device = 42; /* the one handle */

int nvmlInit_v2(void) {
  const char *f = getenv("FAKE_NVML_INIT_FAILS");
  return f && *f == '1' ? 18 /* NVML_ERROR_LIB_RM_VERSION_MISMATCH */ : 0;
}
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int r) {
  return r == 18 ? "RM has detected an NVML/RM version mismatch" : "fake";
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **dev) {
  if (i != 0)
    return 2; /* NVML_ERROR_INVALID_ARGUMENT */
  *dev = &fake_device;
  return 0;
}
int nvmlDeviceGetHandleByPciBusId_v2(const char *bus, void **dev) {
  if (strcmp(bus, "0000:65:00.0") != 0)
    return 6; /* NVML_ERROR_NOT_FOUND */
  *dev = &fake_device;
  return 0;
}
int nvmlDeviceGetMemoryInfo(void *dev, fake_mem *m) {
  if (dev != &fake_device)
    return 2;
  m->total = 80ull << 30;
  m->used = 1ull << 30;
  m->free = m->total - m->used;
  return 0;
}
int nvmlDeviceGetComputeRunningProcesses_v3(void *dev, unsigned int *count,
                                            fake_proc *procs) {
  if (dev != &fake_device)
    return 2;
  const char *pid = getenv("FAKE_NVML_PID");
  if (!pid) {
    *count = 0;
    return 0;
  }
  if (*count < 1) {
    *count = 1;
    return 7; /* NVML_ERROR_INSUFFICIENT_SIZE */
  }
  memset(procs, 0, sizeof *procs);
  procs[0].pid = (unsigned)atoi(pid);
  procs[0].usedGpuMemory = 12345;
  *count = 1;
  return 0;
}
