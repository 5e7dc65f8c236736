/* procs.h — who holds a device: the processes on a GPU as NVML lists them
 * (gpu_procs.h), or on a CPU virtual device as its process table lists them
 * (vdev.h), as one list. The trainer's OOM report, the supervisor's proof
 * before it signals a duplicate and its re-check of a device held by others
 * all read this one view.
 * defines: nw_device_ref, nw_holder, nw_holders, NW_HOLDERS_MAX,
 *          nw_holders_list, nw_holders_find, nw_holders_describe
 *
 * Plain host C: no CUDA, no NVML header (NVML is loaded at run time), so
 * the supervisor, which never initialises CUDA, uses it too. */
#ifndef NW_PROCS_H
#define NW_PROCS_H

#include <stddef.h>
#include <stdint.h>

/* A device by name. */
typedef struct {
  int gpu;          /* 1: a GPU; 0: a CPU virtual device */
  const char *name; /* GPU: an NVML index or a PCI bus id ("" or NULL: index
                       0); virtual device: its name */
} nw_device_ref;

/* One process holding the device. */
typedef struct {
  int pid;
  int uid;           /* its owner; -1 when unknown */
  char run_id[64];   /* NIGHTWATCH_RUN_ID it runs under; "" none or unknown */
  uint64_t bytes;    /* device memory it holds */
  int bytes_unknown; /* 1 when the device does not say (bytes is then 0) */
  int self;          /* 1 for the calling process */
} nw_holder;

#define NW_HOLDERS_MAX 64

typedef struct {
  nw_holder h[NW_HOLDERS_MAX]; /* n of them */
  int n;
  int total;         /* processes on the device (may exceed n) */
  uint64_t used;     /* bytes in use on the whole device; 0 unknown */
  uint64_t capacity; /* bytes of the whole device; 0 unknown */
  char note[256];    /* "" when the list is complete; else why it may not
                        be (no NVML, more processes than listed, no such
                        virtual device) */
} nw_holders;

/* Lists the processes holding dev into *out. Returns 0, or a negative
 * NW_E* with out->n 0 and out->note saying why (NW_ENOTFOUND: NVML cannot
 * be used or there is no such virtual device; NW_ECONFIG: a GPU NVML does
 * not know; NW_EIO: a query failed). A failure is never proof of an empty
 * device. */
int nw_holders_list(const nw_device_ref *dev, nw_holders *out);

/* Index in hs of pid, owned by uid and (run_id non-NULL) running under
 * run_id; -1 when it is not there. */
int nw_holders_find(const nw_holders *hs, int pid, unsigned uid,
                    const char *run_id);

/* "GPU 0" or "virtual device NAME", for messages. */
void nw_holders_describe(const nw_device_ref *dev, char *buf, size_t len);

#endif
