/* classify.h — why a trainer ran out of memory: the OOM report and what the
 * supervisor saw, turned into one cause with the evidence written out.
 * defines: nw_observations, nw_classification, nw_classify
 * (nw_cause, nw_cause_name and nw_cause_parse come from cause.h, shared with
 * the policy engine)
 *
 * A pure function over structs (no I/O, no clock, no globals): the same
 * report and observations always give the same cause and the same words.
 * docs/recovery.md, "Classification", lists the rules in order. */
#ifndef NW_CLASSIFY_H
#define NW_CLASSIFY_H

#include <stdint.h>

#include "base/config.h"
#include "protocol/oom_report.h"
#include "recovery/cause.h"

#define NW_CLASSIFY_MAX_SELF 8

/* What the supervisor knows besides the report. All-zero means "nothing
 * observed". */
typedef struct {
  int exit_code;              /* the trainer's exit status; -1 if it died */
  int signal;                 /* the signal that ended it, 0 if none */
  int oom_killed_by_kernel;   /* cgroup memory.events oom_kill rose */
  int stderr_cuda_oom;        /* a foreign trainer printed a CUDA/PyTorch OOM */
  unsigned self_uid;          /* the supervisor's uid (getuid()) */
  char run_id[NW_RUN_ID_MAX]; /* this run; "" = take the report's */
  int self_pids[NW_CLASSIFY_MAX_SELF]; /* this supervisor's own trainers */
  int n_self_pids;
} nw_observations;

#define NW_CLASSIFY_MAX_PIDS 16

typedef struct {
  nw_cause cause;
  char evidence[1024]; /* sentences, numbers in MiB */
  /* Same uid AND same run id, holding device memory: the only processes a
   * policy may kill. At most NW_CLASSIFY_MAX_PIDS are listed. */
  int duplicate_pids[NW_CLASSIFY_MAX_PIDS];
  int n_duplicates;
  /* Every other process holding device memory: never killed. */
  int foreign_pids[NW_CLASSIFY_MAX_PIDS];
  int n_foreign;
  uint64_t foreign_bytes; /* what all foreign processes hold (even unlisted) */
} nw_classification;

/* cfg: the run's settings (for the estimator; NULL leaves the estimator out).
 * rep: the OOM report, NULL when the trainer left none. obs: NULL = nothing
 * observed. The pid lists are filled whatever the cause. */
void nw_classify(const nw_config *cfg, const nw_oom_report *rep,
                 const nw_observations *obs, nw_classification *out);

#endif
