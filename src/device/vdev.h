/* vdev.h — the CPU backend's virtual device: a capacity and a per-process
 * usage table in a named POSIX shared-memory segment.
 * defines: nw_vdev, nw_vdev_proc, nw_vdev_open, nw_vdev_reserve,
 *          nw_vdev_release, nw_vdev_usage, nw_vdev_list, nw_vdev_close,
 *          nw_vdev_list_by_name, nw_vdev_print, nw_vdev_unlink
 *
 * Two processes that open the same name contend for the same bytes, as two
 * processes on one GPU do; the process table plays NVML's role. The segment
 * is /dev/shm/nightwatch-vdev-<name> and outlives its processes (a GPU stays
 * when its processes exit). Every operation first reclaims the slots of dead
 * processes, so a crashed trainer's bytes come back to the device.
 *
 * A slot belongs to the process that opened the handle. After fork() the
 * child holds a copy of the handle but not the registration: reserve, usage
 * and list from the child return NW_EINTERNAL, release does nothing, and
 * close only unmaps. A child that wants device memory opens its own handle.
 *
 * A handle is for one thread at a time; separate handles (even in one
 * process) are separate slots. See docs/virtual-device.md. */
#ifndef NW_VDEV_H
#define NW_VDEV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NW_VDEV_NAME_MAX 64 /* chars of a device name, [A-Za-z0-9._-] */
#define NW_VDEV_RUN_ID_MAX 63
#define NW_VDEV_SLOTS 64 /* processes one device can hold */

typedef struct nw_vdev nw_vdev;

/* One live process on a device. */
typedef struct {
  int pid;
  unsigned uid;
  char run_id[64];
  uint64_t bytes;      /* reserved on the device */
  uint64_t start_time; /* /proc/<pid>/stat field 22, clock ticks since boot */
  int self;            /* 1 for the caller's own slot (or own pid) */
} nw_vdev_proc;

/* Opens device `name`, creating it with `capacity` bytes when it does not
 * exist, and registers this process (run_id may be NULL). capacity 0 accepts
 * an existing device's capacity and cannot create one. Errors: NW_ECONFIG
 * (bad name or run id, capacity mismatch), NW_EDATA (segment is not a
 * nightwatch device of this layout), NW_EBUSY (all slots taken), NW_ESYS. */
int nw_vdev_open(nw_vdev **out, const char *name, uint64_t capacity,
                 const char *run_id, char *err, size_t errlen);

/* Adds bytes to this process's usage when the device has room, else
 * NW_ENOMEM and nothing changes. */
int nw_vdev_reserve(nw_vdev *v, uint64_t bytes);

/* Returns bytes to the device (clamped at this slot's usage). */
void nw_vdev_release(nw_vdev *v, uint64_t bytes);

/* Bytes held by all live processes, and the device's capacity. */
int nw_vdev_usage(nw_vdev *v, uint64_t *used, uint64_t *capacity);

/* Up to max live processes into procs; *n is how many are on the device
 * (may exceed max). */
int nw_vdev_list(nw_vdev *v, nw_vdev_proc *procs, int max, int *n);

/* Releases this process's slot and its bytes and unmaps the segment; the
 * segment itself stays. NULL is fine. */
void nw_vdev_close(nw_vdev *v);

/* Lists a device without registering (for a supervisor or --device-ps).
 * NW_ENOTFOUND when there is no such device. capacity may be NULL. */
int nw_vdev_list_by_name(const char *name, nw_vdev_proc *procs, int max, int *n,
                         uint64_t *capacity, char *err, size_t errlen);

/* An nvidia-smi-like table of the device and its processes. */
int nw_vdev_print(FILE *f, const char *name, char *err, size_t errlen);

/* Removes the segment (processes that have it open keep their mapping).
 * NW_ENOTFOUND when there is none. */
int nw_vdev_unlink(const char *name);

/* Test hook: takes the device lock and returns without releasing it, so a
 * test can kill a process that holds the lock. Not for other callers. */
int nw__vdev_test_lock(nw_vdev *v);

#endif
