/* train_oom.c — what the trainer writes when the device runs out of memory:
 * the state of the step, the memory domain at the refused allocation and
 * the other processes on the device (docs/protocol.md, "OOM report"). */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"
#include "base/log.h"
#include "device/device.h"
#include "device/gpu_procs.h"
#include "trainer/train.h"

/* The card as NVML sees it: every process with its memory (this one left
 * out), or, without NVML, a line saying why none are listed. */
static void nw_fill_gpu_procs(const nw_trainer *t, nw_oom_report *r) {
  (void)t;
  uint64_t used = 0, cap = 0;
  if (nw_device_usage(&used, &cap) == 0) {
    r->device_used = used;
    r->device_capacity = cap;
  }
  char desc[sizeof r->device] = "", bus[32] = "", err[sizeof r->device_note];
  nw_device_describe(desc, sizeof desc, bus, sizeof bus);
  snprintf(r->device, sizeof r->device, "%s", desc[0] ? desc : "cuda:0");
  nw_gpu_proc procs[NW_OOM_MAX_PROCS];
  int n = 0;
  int rc = nw_gpu_list_processes(bus, procs, NW_OOM_MAX_PROCS, &n, NULL, NULL,
                                 err, sizeof err);
  if (rc < 0) {
    /* the classifier then has only this process's own numbers */
    snprintf(r->device_note, sizeof r->device_note, "%s", err);
    nw_warn("OOM report: no process list: %s", err);
    return;
  }
  if (n > NW_OOM_MAX_PROCS)
    n = NW_OOM_MAX_PROCS;
  int self = (int)getpid();
  for (int i = 0; i < n; i++) {
    if (procs[i].pid == self)
      continue;
    nw_device_proc *dp = &r->procs[r->n_procs++];
    dp->pid = procs[i].pid;
    dp->uid = procs[i].uid < 0 ? (unsigned)-1 : (unsigned)procs[i].uid;
    snprintf(dp->run_id, sizeof dp->run_id, "%s", procs[i].run_id);
    dp->bytes = procs[i].bytes;
  }
}

void nw_trainer_fill_oom_report(const nw_trainer *t, nw_oom_report *r) {
  const nw_config *cfg = &t->cfg;
  memset(r, 0, sizeof *r);
  r->version = NW_OOM_REPORT_VERSION;
  r->pid = (int)getpid();
  snprintf(r->run_id, sizeof r->run_id, "%s", t->run_id);
  snprintf(r->device, sizeof r->device, "cpu:%s", t->device_name);
  r->phase = t->phase;
  r->step = t->step;
  r->micro_step = t->micro_step;

  nw_mem_stats st;
  nw_mem_failure_stats(t->mem, &st);
  r->requested_bytes = st.failed_request;
  r->requested_category = st.failed_category;
  r->cap_bytes = st.cap;
  memcpy(r->live, st.live, sizeof r->live);
  memcpy(r->peak, st.peak, sizeof r->peak);
  r->cached_bytes = st.cached;
  r->kv_cache_bytes = st.live[NW_MEM_KV_CACHE];

  nw_settings_of(cfg, &r->set);
  r->seq_len = t->seq_len;
  r->max_seq_len = cfg->model.max_seq_len;
  r->median_seq_len = nw_trainer_median_seq_len(t);
  r->steps_since_eval =
      t->last_eval_step < 0 ? -1 : t->step - t->last_eval_step;
  if (t->durable_step >= 0 && t->durable_step == t->step) {
    r->emergency_checkpoint = 1;
    snprintf(r->checkpoint, sizeof r->checkpoint, "%s", t->durable_path);
  }

  if (t->device == NW_DEVICE_CUDA) {
    nw_fill_gpu_procs(t, r);
  } else if (t->vdev) {
    /* The device as it stands now: the process table plays NVML's role. */
    uint64_t used = 0, cap = 0;
    if (nw_vdev_usage(t->vdev, &used, &cap) == 0) {
      r->device_used = used;
      r->device_capacity = cap;
    }
    nw_vdev_proc procs[NW_OOM_MAX_PROCS];
    int n = 0;
    if (nw_vdev_list(t->vdev, procs, NW_OOM_MAX_PROCS, &n) == 0) {
      if (n > NW_OOM_MAX_PROCS)
        n = NW_OOM_MAX_PROCS;
      for (int i = 0; i < n; i++) {
        if (procs[i].self)
          continue;
        nw_device_proc *dp = &r->procs[r->n_procs++];
        dp->pid = procs[i].pid;
        dp->uid = procs[i].uid;
        snprintf(dp->run_id, sizeof dp->run_id, "%s", procs[i].run_id);
        dp->bytes = procs[i].bytes;
      }
    }
  }
}

int nw_trainer_report_oom(nw_trainer *t, char *err, size_t errlen) {
  nw_oom_report r;
  nw_trainer_fill_oom_report(t, &r);
  nw_error("out of device memory in %s at step %d: %llu bytes of %s refused "
           "(device %llu of %llu bytes in use, %d other process(es))",
           nw_phase_name(r.phase), r.step,
           (unsigned long long)r.requested_bytes,
           nw_mem_category_name(r.requested_category),
           (unsigned long long)r.device_used,
           (unsigned long long)r.device_capacity, r.n_procs);
  char path[NW_PATH_MAX + 32];
  nw_oom_report_path(t->cfg.run.dir, t->world.rank, t->world.size, path,
                     sizeof path);
  int rc = nw_oom_report_write_path(&r, path, err, errlen);
  nw_status_emit(
      &t->status,
      json_pack("{s:s, s:s, s:i, s:i, s:I, s:s, s:s}", "event", "oom", "phase",
                nw_phase_name(r.phase), "step", r.step, "micro_step",
                r.micro_step, "requested_bytes", (json_int_t)r.requested_bytes,
                "category", nw_mem_category_name(r.requested_category),
                "report", rc == 0 ? path : ""));
  return rc;
}
