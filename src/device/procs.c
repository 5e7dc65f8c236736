/* procs.c — one list of a device's holders from NVML or from the virtual
 * device's process table. */
#define _GNU_SOURCE
#include "device/procs.h"

#include <stdio.h>  // defines: snprintf
#include <string.h> // defines: memset, strcmp
#include <unistd.h> // defines: getpid

#include "device/gpu_procs.h" // defines: nw_gpu_list_processes
#include "device/vdev.h"      // defines: nw_vdev_list_by_name

static int nw_holders_gpu(const char *name, nw_holders *out) {
  nw_gpu_proc procs[NW_HOLDERS_MAX];
  int n = 0;
  int rc =
      nw_gpu_list_processes(name, procs, NW_HOLDERS_MAX, &n, &out->capacity,
                            &out->used, out->note, sizeof out->note);
  if (rc < 0)
    return rc;
  int self = (int)getpid();
  out->total = n;
  out->n = n < NW_HOLDERS_MAX ? n : NW_HOLDERS_MAX;
  for (int i = 0; i < out->n; i++) {
    nw_holder *h = &out->h[i];
    h->pid = procs[i].pid;
    h->uid = procs[i].uid;
    snprintf(h->run_id, sizeof h->run_id, "%s", procs[i].run_id);
    h->bytes = procs[i].bytes;
    h->bytes_unknown = procs[i].bytes_unknown;
    h->self = procs[i].pid == self;
  }
  return 0;
}

static int nw_holders_vdev(const char *name, nw_holders *out) {
  nw_vdev_proc procs[NW_HOLDERS_MAX];
  int n = 0;
  int rc = nw_vdev_list_by_name(name, procs, NW_HOLDERS_MAX, &n, &out->capacity,
                                out->note, sizeof out->note);
  if (rc < 0)
    return rc;
  out->total = n;
  out->n = n < NW_HOLDERS_MAX ? n : NW_HOLDERS_MAX;
  for (int i = 0; i < out->n; i++) {
    nw_holder *h = &out->h[i];
    h->pid = procs[i].pid;
    h->uid = (int)procs[i].uid;
    snprintf(h->run_id, sizeof h->run_id, "%s", procs[i].run_id);
    h->bytes = procs[i].bytes;
    h->self = procs[i].self;
    out->used += procs[i].bytes;
  }
  return 0;
}

int nw_holders_list(const nw_device_ref *dev, nw_holders *out) {
  memset(out, 0, sizeof *out);
  int rc = dev->gpu ? nw_holders_gpu(dev->name, out)
                    : nw_holders_vdev(dev->name ? dev->name : "", out);
  if (rc < 0) {
    out->n = out->total = 0;
    return rc;
  }
  if (out->total > out->n)
    snprintf(out->note, sizeof out->note,
             "%d processes on the device; the first %d are listed", out->total,
             out->n);
  return 0;
}

int nw_holders_find(const nw_holders *hs, int pid, unsigned uid,
                    const char *run_id) {
  for (int i = 0; i < hs->n; i++) {
    const nw_holder *h = &hs->h[i];
    if (h->pid == pid && h->uid >= 0 && (unsigned)h->uid == uid &&
        (!run_id || !strcmp(h->run_id, run_id)))
      return i;
  }
  return -1;
}

void nw_holders_describe(const nw_device_ref *dev, char *buf, size_t len) {
  if (dev->gpu)
    snprintf(buf, len, "GPU %s", dev->name && *dev->name ? dev->name : "0");
  else
    snprintf(buf, len, "virtual device %s", dev->name ? dev->name : "");
}
