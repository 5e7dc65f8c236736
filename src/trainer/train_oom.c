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
#include "device/procs.h"
#include "trainer/train.h"

/* The other processes holding this trainer's device (device/procs.h: NVML
 * on a GPU, the process table on the virtual device), this one left out;
 * when they cannot be listed, a note in the report says why and the
 * classifier has only this process's own numbers. */
static void nw_fill_holders(const nw_device_ref *dev, nw_oom_report *r) {
  nw_holders hs;
  if (nw_holders_list(dev, &hs) < 0)
    nw_warn("OOM report: no process list: %s", hs.note);
  snprintf(r->device_note, sizeof r->device_note, "%s", hs.note);
  if (!dev->gpu && hs.capacity) {
    r->device_used = hs.used;
    r->device_capacity = hs.capacity;
  }
  for (int i = 0; i < hs.n && r->n_procs < NW_OOM_MAX_PROCS; i++) {
    if (hs.h[i].self)
      continue;
    nw_device_proc *dp = &r->procs[r->n_procs++];
    dp->pid = hs.h[i].pid;
    dp->uid = hs.h[i].uid < 0 ? (unsigned)-1 : (unsigned)hs.h[i].uid;
    snprintf(dp->run_id, sizeof dp->run_id, "%s", hs.h[i].run_id);
    dp->bytes = hs.h[i].bytes;
  }
}

/* The card as the CUDA runtime names it and counts its memory; NVML, asked
 * by PCI bus id (the one name both agree on), lists its processes. */
static void nw_fill_gpu(nw_oom_report *r) {
  uint64_t used = 0, cap = 0;
  if (nw_device_usage(&used, &cap) == 0) {
    r->device_used = used;
    r->device_capacity = cap;
  }
  char desc[sizeof r->device] = "", bus[32] = "";
  nw_device_describe(desc, sizeof desc, bus, sizeof bus);
  snprintf(r->device, sizeof r->device, "%s", desc[0] ? desc : "cuda:0");
  nw_device_ref dev = {.gpu = 1, .name = bus};
  nw_fill_holders(&dev, r);
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
    nw_fill_gpu(r);
  } else if (t->vdev) {
    nw_device_ref dev = {.gpu = 0, .name = t->device_name};
    nw_fill_holders(&dev, r);
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
