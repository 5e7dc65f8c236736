/* classify_cases.h — the classifier's test cases (test_classify.c): each an
 * OOM report described by what fits, built from the real estimator, and
 * the cause and evidence the classifier must give.
 * defines: tcase, tproc, nw_classify_cases, nw_classify_n_cases, the CAP_
 *          capacities, SMALL and BIG processes, SELF_UID, REPORT_PID */
#ifndef NW_TEST_CLASSIFY_CASES_H
#define NW_TEST_CLASSIFY_CASES_H

#include "protocol/oom_report.h"
#include "recovery/classify.h"

#define SELF_UID 1000u
#define REPORT_PID 4000

/* What the capacity available to the run is, relative to the estimates of a
 * training step at the median length (em) and this batch's length (et). */
enum {
  CAP_BETWEEN,      /* em fits, et does not */
  CAP_BELOW_MEDIAN, /* above the static state, below em */
  CAP_ABOVE_ALL,    /* both fit by the estimate */
  CAP_BELOW_STATIC, /* not even parameters, gradients and moments */
  CAP_UNKNOWN,      /* BETWEEN, but neither report nor config knows it */
  CAP_FROM_CONFIG,  /* BETWEEN, known only from device.memory */
  CAP_PROCESS_CAP,  /* BETWEEN through the process's own cap */
  CAP_CAP_ONLY,     /* BETWEEN through the cap; device capacity unknown */
  CAP_UNKNOWN_LOW,  /* BELOW_MEDIAN, but neither report nor config knows */
};

enum { SMALL = 1, BIG = 2 }; /* 4 KiB; enough to push the step over */

typedef struct {
  int pid;
  unsigned uid;
  const char *run;
  int size;
} tproc;

typedef struct {
  const char *name;
  int no_report;
  nw_phase phase;
  int T, med;
  int cap;
  int kv;                        /* 1: the kept kv-cache is live */
  int since_eval;                /* steps since the last evaluation; -1 none */
  tproc procs[4];                /* pid 0 ends the list */
  int self_pid;                  /* one of the procs is the supervisor's own */
  const char *obs_run, *rep_run; /* NULL: "run-a" */
  int version;                   /* 0: current */
  int no_cfg;
  int exit_code, signal, kernel, cuda;
  nw_cause expect;
  const char *has[3];
  const char *lacks;
  int dups[4], foreign[4]; /* 0 ends */
} tcase;

extern const tcase nw_classify_cases[];
extern const int nw_classify_n_cases;

#endif
