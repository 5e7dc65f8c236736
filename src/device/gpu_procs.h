/* gpu_procs.h — the processes on a GPU and their memory, from NVML loaded
 * at run time: NVML's role for a real card, as the process table of the
 * virtual device (vdev.h) plays it for the CPU.
 * defines: nw_gpu_proc, nw_gpu_list_processes, nw_gpu_pid_on_device
 *
 * Plain host C with dlopen("libnvidia-ml.so.1"): no NVML header, no CUDA
 * runtime and no CUDA context, so the supervisor (which must survive a sick
 * driver and never initialises CUDA) can call it too. The library name can
 * be overridden with NW_NVML_LIBRARY (a path or a soname). NVML reports
 * pids of the host's pid namespace: inside a container without the host's
 * pid namespace they are not this container's pids, and the uid and run id
 * below are then unknown. */
#ifndef NW_GPU_PROCS_H
#define NW_GPU_PROCS_H

#include <stddef.h>
#include <stdint.h>

#define NW_GPU_MAX_PROCS 64

/* One compute process on the card. */
typedef struct {
  int pid;
  int uid;           /* owner from /proc/PID/status; -1 when unreadable */
  char run_id[64];   /* NIGHTWATCH_RUN_ID of its environment (same user
                        only: /proc/PID/environ); "" when none or unknown */
  uint64_t bytes;    /* device memory NVML attributes to it; 0 unknown */
  int bytes_unknown; /* 1 when NVML did not say (MIG, some drivers) */
} nw_gpu_proc;

/* Lists the compute processes on the GPU `device`: "" or NULL for NVML
 * index 0, a decimal NVML index, or a PCI bus id ("0000:65:00.0", what
 * cudaDeviceGetPCIBusId returns: the one name the CUDA runtime and NVML
 * agree on whatever CUDA_VISIBLE_DEVICES says). Up to max into procs, *n
 * the number on the card (may exceed max); capacity and used (either may
 * be NULL) receive the card's total and used bytes.
 * Errors: NW_ENOTFOUND when NVML cannot be used, err then starting with
 * "nvml unavailable: " and the reason (no library, a missing symbol,
 * nvmlInit failed); NW_ECONFIG for a device NVML does not know; NW_EIO when
 * a query failed. */
int nw_gpu_list_processes(const char *device, nw_gpu_proc *procs, int max,
                          int *n, uint64_t *capacity, uint64_t *used, char *err,
                          size_t errlen);

/* The supervisor's proof before it signals a process: 1 when pid is on the
 * GPU `device` now, owned by uid and (run_id non-NULL) with that run id in
 * its environment; 0 when not; a negative NW_E* (err says why) when NVML
 * cannot tell, which must count as "not proven". */
int nw_gpu_pid_on_device(const char *device, int pid, unsigned uid,
                         const char *run_id, char *err, size_t errlen);

#endif
