/* metrics.h — a run's state in the Prometheus text exposition format, for
 * node_exporter's textfile collector (`nightwatch status RUN_DIR --metrics
 * FILE`; docs/operations.md lists the metrics).
 * defines: nw_metrics, NW_METRICS_CAUSES, nw_metrics_cause_name,
 *          nw_metrics_collect, nw_metrics_format, nw_metrics_write
 *
 * Everything is read from the run directory, never from the supervisor
 * itself: status.json, the ledger, the run lock and the names of the
 * checkpoints (listed, not verified: a metrics scrape must stay cheap). */
#ifndef NW_METRICS_H
#define NW_METRICS_H

#include <stddef.h>

#include "recovery/cause.h"

/* The classifier's causes and "hang" (a cause only the ledger knows). */
#define NW_METRICS_CAUSES (NW_CAUSE_COUNT + 1)

typedef struct {
  char run_id[256]; /* status.json's, else the ledger's, else the dir's name */
  int have_status;  /* status.json was read: the fields down to age_s */
  long step, steps;
  double loss;
  int micro, accum, effective, seq_len, max_len;
  double status_age_s;                /* since status.json was written */
  int supervisor_up;                  /* a supervisor holds the run lock */
  long recoveries[NW_METRICS_CAUSES]; /* "recovery" entries by cause */
  int gave_up;                        /* a give-up with no start after it */
  int have_ckpt;                      /* a checkpoint file exists */
  long ckpt_step;
  double ckpt_age_s; /* since it was written */
} nw_metrics;

/* The label value of recoveries[i]: "unknown", "eval-cache", ..., "hang". */
const char *nw_metrics_cause_name(int i);

/* Fills m from run_dir as of now. A missing status.json, ledger or
 * checkpoint leaves its metrics out; an unreadable one is NW_EIO or
 * NW_EDATA with err naming the file. */
int nw_metrics_collect(const char *run_dir, nw_metrics *m, char *err,
                       size_t errlen);

/* The exposition text (# HELP, # TYPE, one sample a line, label run=...)
 * as a malloc'd string in *text, its length in *len. NW_EHOSTMEM. */
int nw_metrics_format(const nw_metrics *m, char **text, size_t *len);

/* Formats m and writes it to path atomically (a temporary beside it, then
 * rename: the collector never reads half a file). err names path. */
int nw_metrics_write(const char *path, const nw_metrics *m, char *err,
                     size_t errlen);

#endif
