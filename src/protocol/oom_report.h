/* oom_report.h — the evidence a trainer leaves when it runs out of device
 * memory: written as JSON (atomically) into the run directory, read back by
 * the supervisor's classifier. docs/protocol.md documents every field.
 * defines: nw_phase, nw_oom_report, nw_oom_report_write, nw_oom_report_read,
 *          nw_oom_report_parse */
#ifndef NW_OOM_REPORT_H
#define NW_OOM_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/mem_category.h"
#include "protocol/settings.h" // defines: nw_settings

#define NW_PHASES(X)                                                           \
  X(INIT, "init")                                                              \
  X(TRAIN_FORWARD, "train-forward")                                            \
  X(TRAIN_BACKWARD, "train-backward")                                          \
  X(OPTIMIZER, "optimizer")                                                    \
  X(EVAL_FORWARD, "eval-forward")                                              \
  X(EVAL_GENERATE, "eval-generate")                                            \
  X(CHECKPOINT, "checkpoint")

typedef enum {
#define NW_PHASE_ENUM(name, str) NW_PHASE_##name,
  NW_PHASES(NW_PHASE_ENUM)
#undef NW_PHASE_ENUM
      NW_PHASE_COUNT
} nw_phase;

const char *nw_phase_name(nw_phase p);
int nw_phase_parse(const char *s, nw_phase *out); /* NW_EDATA if unknown */

#define NW_OOM_MAX_PROCS 64
#define NW_RUN_ID_MAX 64

/* Another process holding memory on the same device. */
typedef struct {
  int pid;
  unsigned uid;
  char run_id[NW_RUN_ID_MAX];
  uint64_t bytes;
} nw_device_proc;

typedef struct {
  int version; /* NW_OOM_REPORT_VERSION */
  int pid;     /* the trainer that failed */
  char run_id[NW_RUN_ID_MAX];
  char device[80];       /* "cpu:NAME" or "cuda:N NAME" */
  char device_note[256]; /* why device_processes is empty although the
                            device may hold others ("nvml unavailable:
                            ..."); "" when the list is complete */
  nw_phase phase;
  int step;       /* optimizer steps completed before the failure */
  int micro_step; /* micro-batch index within the step (-1 outside) */
  uint64_t requested_bytes;
  nw_mem_category requested_category;
  uint64_t cap_bytes;       /* this process's cap (0 = none) */
  uint64_t device_capacity; /* bytes of the whole device (0 = unknown) */
  uint64_t device_used;     /* bytes all processes held at the failure */
  uint64_t live[NW_MEM_NCAT];
  uint64_t peak[NW_MEM_NCAT];
  uint64_t cached_bytes;   /* freed blocks the allocator kept */
  uint64_t kv_cache_bytes; /* live kv-cache at the failure */
  nw_settings set;         /* the settings in force (protocol/settings.h) */
  int seq_len;             /* padded length of the failing batch (0 = none) */
  int max_seq_len;         /* the model's maximum (model.max_seq_len) */
  int median_seq_len;      /* running median of padded micro-batch lengths */
  int steps_since_eval;    /* -1 when no evaluation ran in this process */
  int n_procs; /* other processes on the device, this one excluded */
  nw_device_proc procs[NW_OOM_MAX_PROCS];
  int emergency_checkpoint; /* 1 when one was written */
  char checkpoint[1024];    /* its file name, "" when none */
} nw_oom_report;

#define NW_OOM_REPORT_VERSION 1
#define NW_OOM_REPORT_FILE "oom-report.json"

/* Where rank `rank` of a world of `world` puts its report: DIR/oom-report.json
 * for a single rank, DIR/oom-report-rank<R>.json for several (ranks can fail
 * at once; each report stays whole). The supervisor reads the same path. */
void nw_oom_report_path(const char *dir, int rank, int world, char *buf,
                        size_t len);

/* Writes DIR/oom-report.json atomically. */
int nw_oom_report_write(const nw_oom_report *r, const char *dir, char *err,
                        size_t errlen);
/* Writes the report to path atomically. */
int nw_oom_report_write_path(const nw_oom_report *r, const char *path,
                             char *err, size_t errlen);
/* Reads a report; err names the file and the field that is wrong. */
int nw_oom_report_read(const char *path, nw_oom_report *r, char *err,
                       size_t errlen);
/* The same for len bytes of JSON in memory, named name in messages: a
 * fuzzer's entry point. */
int nw_oom_report_parse(const char *name, const char *text, size_t len,
                        nw_oom_report *r, char *err, size_t errlen);

#endif
