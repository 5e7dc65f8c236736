/* test_classify.c — the classifier over a table of OOM reports built from
 * the real estimator: every capacity is chosen between two estimates, so a
 * case says which of them fit and the classifier must agree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/config.h"
#include "base/error.h"
#include "model/estimate.h"
#include "recovery/classify.h"

#define SELF_UID 1000u
#define REPORT_PID 4000
#define KIB 1024ull

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

#define P_DUP                                                                  \
  { 4242, SELF_UID, "run-a", SMALL }
#define P_DUP_BIG                                                              \
  { 4242, SELF_UID, "run-a", BIG }
#define P_USER_BIG                                                             \
  { 777, 2000, "theirs", BIG }
#define P_USER_SMALL                                                           \
  { 777, 2000, "theirs", SMALL }

static const tcase cases[] = {
    /* 3. sequence-length */
    {.name = "long batch, median fits",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_SEQUENCE_LENGTH,
     .has = {"padded to 96 tokens", "the median is 24", "at 24 tokens"}},
    {.name = "long batch in backward",
     .phase = NW_PHASE_TRAIN_BACKWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_SEQUENCE_LENGTH,
     .has = {"train-backward"}},
    {.name = "long batch at the maximum",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 128,
     .med = 16,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_SEQUENCE_LENGTH,
     .has = {"at 128 it needs"}},
    {.name = "long batch in optimizer phase",
     .phase = NW_PHASE_OPTIMIZER,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_SEQUENCE_LENGTH},
    {.name = "capacity from device.memory",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_FROM_CONFIG,
     .expect = NW_CAUSE_SEQUENCE_LENGTH},
    {.name = "process cap below the device",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_PROCESS_CAP,
     .expect = NW_CAUSE_SEQUENCE_LENGTH},
    {.name = "capacity unknown, held memory proves the median fits",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_UNKNOWN,
     .expect = NW_CAUSE_SEQUENCE_LENGTH,
     .has = {"capacity is unknown"}},
    {.name = "capacity unknown, held memory is below the median's need",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_UNKNOWN_LOW,
     .expect = NW_CAUSE_ACTIVATION,
     .has = {"Even at the median length 24", "capacity is unknown"}},
    {.name = "only the process cap known, foreign process: not blamed",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_CAP_ONLY,
     .procs = {P_USER_BIG},
     .expect = NW_CAUSE_SEQUENCE_LENGTH,
     .foreign = {777}},
    {.name = "own other rank's memory is not another's",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {{4300, SELF_UID, "run-a", BIG}},
     .self_pid = 4300,
     .expect = NW_CAUSE_SEQUENCE_LENGTH},
    {.name = "foreign small process, long batch",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {P_USER_SMALL},
     .expect = NW_CAUSE_SEQUENCE_LENGTH,
     .has = {"never killed"},
     .foreign = {777}},
    /* 4. activation */
    {.name = "seq_len == median, median does not fit",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .expect = NW_CAUSE_ACTIVATION,
     .has = {"typical for the median 24"}},
    {.name = "seq_len == median, estimate says it fits",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_ABOVE_ALL,
     .expect = NW_CAUSE_ACTIVATION,
     .lacks = "padded to 24 tokens;"},
    {.name = "slightly above the median is typical",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 28,
     .med = 24,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_ACTIVATION,
     .has = {"padded to 28 tokens"}},
    {.name = "long batch, even the median does not fit",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .expect = NW_CAUSE_ACTIVATION,
     .has = {"Even at the median length 24"}},
    {.name = "no median yet",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 0,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_ACTIVATION,
     .has = {"No median length yet"}},
    {.name = "optimizer phase, typical batch",
     .phase = NW_PHASE_OPTIMIZER,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .expect = NW_CAUSE_ACTIVATION,
     .has = {"optimizer"}},
    {.name = "capacity unknown, typical batch",
     .phase = NW_PHASE_TRAIN_BACKWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_UNKNOWN,
     .expect = NW_CAUSE_ACTIVATION,
     .has = {"capacity is unknown"}},
    {.name = "own other rank is not a duplicate",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .procs = {{4300, SELF_UID, "run-a", BIG}},
     .self_pid = 4300,
     .expect = NW_CAUSE_ACTIVATION},
    {.name = "the failing pid itself in the table is ignored",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .procs = {{REPORT_PID, SELF_UID, "run-a", BIG}},
     .expect = NW_CAUSE_ACTIVATION},
    /* rules 3 and 4 cannot decide */
    {.name = "long batch, both lengths fit by the estimate",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_ABOVE_ALL,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"cannot tell"}},
    /* 2. eval-cache */
    {.name = "eval-forward",
     .phase = NW_PHASE_EVAL_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_EVAL_CACHE,
     .has = {"during evaluation (eval-forward"}},
    {.name = "eval-generate with no kv live",
     .phase = NW_PHASE_EVAL_GENERATE,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_EVAL_CACHE,
     .has = {"0.0 MiB of kv-cache live"}},
    {.name = "eval-generate with kv live",
     .phase = NW_PHASE_EVAL_GENERATE,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .kv = 1,
     .expect = NW_CAUSE_EVAL_CACHE,
     .has = {"eval batch 4"}},
    {.name = "kept kv-cache in train-forward",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .kv = 1,
     .since_eval = 3,
     .expect = NW_CAUSE_EVAL_CACHE,
     .has = {"kv-cache held 0.5 MiB during train-forward",
             "3 steps after the evaluation at step 200",
             "Without the cache the step needs"}},
    {.name = "kept kv-cache AND a long batch: eval-cache first",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .kv = 1,
     .since_eval = 1,
     .expect = NW_CAUSE_EVAL_CACHE,
     .lacks = "padded to 96"},
    {.name = "kept kv-cache AND median does not fit: eval-cache first",
     .phase = NW_PHASE_TRAIN_BACKWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .kv = 1,
     .since_eval = 2,
     .expect = NW_CAUSE_EVAL_CACHE},
    {.name = "kept kv-cache in optimizer",
     .phase = NW_PHASE_OPTIMIZER,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .kv = 1,
     .since_eval = 5,
     .expect = NW_CAUSE_EVAL_CACHE},
    {.name = "kept kv-cache in checkpoint",
     .phase = NW_PHASE_CHECKPOINT,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .kv = 1,
     .since_eval = 5,
     .expect = NW_CAUSE_EVAL_CACHE},
    {.name = "kv-cache live, no evaluation in this process",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .kv = 1,
     .since_eval = -1,
     .expect = NW_CAUSE_EVAL_CACHE,
     .has = {"kv-cache held"},
     .lacks = "after the evaluation"},
    /* 1. duplicate-process */
    {.name = "duplicate of this run AND a long batch: duplicate first",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {P_DUP},
     .expect = NW_CAUSE_DUPLICATE,
     .has = {"process of this run (pid 4242, same uid)"},
     .dups = {4242}},
    {.name = "duplicate of this run holding much",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .procs = {P_DUP_BIG},
     .expect = NW_CAUSE_DUPLICATE,
     .has = {"of run \"run-a\""},
     .dups = {4242}},
    {.name = "duplicate during eval-generate: duplicate first",
     .phase = NW_PHASE_EVAL_GENERATE,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {P_DUP},
     .expect = NW_CAUSE_DUPLICATE,
     .dups = {4242}},
    {.name = "duplicate AND kept kv-cache: duplicate first",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .kv = 1,
     .since_eval = 3,
     .procs = {P_DUP},
     .expect = NW_CAUSE_DUPLICATE,
     .dups = {4242}},
    {.name = "another user's process holds the memory",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .procs = {P_USER_BIG},
     .expect = NW_CAUSE_DUPLICATE,
     .has = {"another user's process", "without them this train-forward "
                                       "would fit"},
     .foreign = {777}},
    {.name = "another user's process AND a long batch",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {P_USER_BIG},
     .expect = NW_CAUSE_DUPLICATE,
     .foreign = {777}},
    {.name = "same user, another run: foreign",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .procs = {{555, SELF_UID, "run-b", BIG}},
     .expect = NW_CAUSE_DUPLICATE,
     .has = {"the same uid but another run"},
     .foreign = {555}},
    {.name = "this run id under another uid: never killable",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .procs = {{666, 0, "run-a", SMALL}},
     .expect = NW_CAUSE_DUPLICATE,
     .has = {"not provably ours"},
     .foreign = {666}},
    {.name = "a duplicate and two foreign processes",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {{778, 2001, "x", SMALL}, P_DUP, P_USER_SMALL},
     .expect = NW_CAUSE_DUPLICATE,
     .dups = {4242},
     .foreign = {778, 777}},
    {.name = "supervisor without a run id takes the report's",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {P_DUP},
     .obs_run = "",
     .expect = NW_CAUSE_DUPLICATE,
     .dups = {4242}},
    {.name = "empty run ids never match",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 24,
     .med = 24,
     .cap = CAP_BELOW_MEDIAN,
     .procs = {{4242, SELF_UID, "", BIG}},
     .obs_run = "",
     .rep_run = "",
     .expect = NW_CAUSE_DUPLICATE,
     .foreign = {4242}},
    {.name = "init phase with another user's process",
     .phase = NW_PHASE_INIT,
     .cap = CAP_BELOW_STATIC,
     .procs = {P_USER_BIG},
     .expect = NW_CAUSE_DUPLICATE,
     .foreign = {777}},
    {.name = "duplicate without a config",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .procs = {P_DUP},
     .no_cfg = 1,
     .expect = NW_CAUSE_DUPLICATE,
     .dups = {4242}},
    /* unknown with a report */
    {.name = "init phase, the model fits",
     .phase = NW_PHASE_INIT,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"not explained by batch or length"}},
    {.name = "init phase, the model does not fit",
     .phase = NW_PHASE_INIT,
     .cap = CAP_BELOW_STATIC,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"alone need"}},
    {.name = "training, the model does not fit",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BELOW_STATIC,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"no batch or length setting helps"}},
    {.name = "checkpoint phase without kv",
     .phase = NW_PHASE_CHECKPOINT,
     .T = 24,
     .med = 24,
     .cap = CAP_BETWEEN,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"in checkpoint"}},
    {.name = "unknown report version",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .version = 7,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"version 7"}},
    {.name = "long batch without a config",
     .phase = NW_PHASE_TRAIN_FORWARD,
     .T = 96,
     .med = 24,
     .cap = CAP_BETWEEN,
     .no_cfg = 1,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"configuration"}},
    /* no report */
    {.name = "no report, kernel OOM kill",
     .no_report = 1,
     .exit_code = -1,
     .signal = 9,
     .kernel = 1,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"oom_kill counter rose", "host memory", "signal 9 (SIGKILL)"}},
    {.name = "no report, segfault",
     .no_report = 1,
     .exit_code = -1,
     .signal = 11,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"signal 11 (SIGSEGV)"},
     .lacks = "oom_kill"},
    {.name = "no report, plain failure",
     .no_report = 1,
     .exit_code = 1,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"code 1: not an out-of-memory failure"}},
    {.name = "no report, foreign trainer's CUDA OOM text",
     .no_report = 1,
     .exit_code = 1,
     .cuda = 1,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"CUDA out-of-memory", "cannot be told apart"},
     .lacks = "not an out-of-memory"},
    {.name = "no report, OOM exit code",
     .no_report = 1,
     .exit_code = 75,
     .expect = NW_CAUSE_UNKNOWN,
     .has = {"report is missing"}},
};

static nw_config base_config(void) {
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.model = (nw_model_config){2, 4, 64, 256, 128};
  cfg.batch = (nw_batch_config){.effective = 32, .micro = 8, .world = 1};
  cfg.eval.every = 100;
  cfg.eval.batch = 4;
  cfg.eval.generate = 8;
  cfg.eval.release_cache = 0;
  cfg.device.memory = 0;
  return cfg;
}

static uint64_t train_total(const nw_config *cfg, int T) {
  nw_estimate e;
  nw_estimate_train(cfg, cfg->batch.micro, T, 0, &e);
  return e.total;
}

/* A report as the trainer would write it for this case: the process held
 * just under what was available (A) and asked for 64 KiB more. */
static void build(const tcase *c, nw_config *cfg, nw_oom_report *r) {
  *cfg = base_config();
  memset(r, 0, sizeof *r);
  int T = c->T > 0 ? c->T : 24, med = c->med > 0 ? c->med : T;
  nw_estimate st;
  nw_estimate_static(cfg, &st);
  uint64_t em = train_total(cfg, med), et = train_total(cfg, T);
  uint64_t req = 64 * KIB, A = 0;
  switch (c->cap) {
  case CAP_BELOW_MEDIAN:
  case CAP_UNKNOWN_LOW:
    A = st.total + (em - st.total) / 2;
    break;
  case CAP_ABOVE_ALL:
    A = et + et / 4;
    break;
  case CAP_BELOW_STATIC:
    A = st.total * 3 / 4;
    break;
  default:
    A = em + (et - em) / 2;
    if (et == em) /* T == med: BETWEEN means "just fits" */
      A = em + req;
    break;
  }
  /* margins the cases rely on; a smaller model would make them vacuous */
  if (c->cap == CAP_BETWEEN && et > em && (et - em) / 2 < req)
    fail_msg("%s: estimates %llu and %llu too close", c->name,
             (unsigned long long)em, (unsigned long long)et);
  if ((c->cap == CAP_BELOW_MEDIAN || c->cap == CAP_UNKNOWN_LOW) &&
      (em - st.total) / 2 < req)
    fail_msg("%s: activations too small", c->name);

  r->version = c->version ? c->version : NW_OOM_REPORT_VERSION;
  r->pid = REPORT_PID;
  snprintf(r->run_id, sizeof r->run_id, "%s",
           c->rep_run ? c->rep_run : "run-a");
  snprintf(r->device, sizeof r->device, "cpu:test");
  r->phase = c->phase;
  r->step = 203;
  r->micro_step = 1;
  r->requested_bytes = req;
  r->requested_category = NW_MEM_ACTIVATIONS;
  nw_settings_of(cfg, &r->set);
  r->set.world = 1;
  r->seq_len = c->T;
  r->max_seq_len = cfg->model.max_seq_len;
  r->median_seq_len = c->med;
  r->steps_since_eval = c->kv ? c->since_eval : -1;

  /* held = A - 32 KiB, laid out as the domain would: kv, state, the rest
   * activations */
  uint64_t held = A > req / 2 ? A - req / 2 : 0, left = held;
  if (c->kv) {
    r->kv_cache_bytes = nw_estimate_kept_kv(cfg);
    r->live[NW_MEM_KV_CACHE] = r->kv_cache_bytes;
    left = left > r->kv_cache_bytes ? left - r->kv_cache_bytes : 0;
  }
  static const nw_mem_category state[] = {NW_MEM_PARAMS, NW_MEM_GRADS,
                                          NW_MEM_OPTIMIZER};
  for (int i = 0; i < 3; i++) {
    uint64_t b = st.bytes[state[i]] < left ? st.bytes[state[i]] : left;
    r->live[state[i]] = b;
    left -= b;
  }
  r->live[NW_MEM_ACTIVATIONS] = left;
  memcpy(r->peak, r->live, sizeof r->peak);

  uint64_t around = 0;
  for (int i = 0; i < 4 && c->procs[i].pid; i++) {
    nw_device_proc *p = &r->procs[r->n_procs++];
    p->pid = c->procs[i].pid;
    p->uid = c->procs[i].uid;
    snprintf(p->run_id, sizeof p->run_id, "%s", c->procs[i].run);
    p->bytes = c->procs[i].size == BIG ? 2 * (et + r->kv_cache_bytes) : 4 * KIB;
    if (p->pid != REPORT_PID)
      around += p->bytes;
  }
  uint64_t capacity = A + around;
  r->device_used = held + around;
  switch (c->cap) {
  case CAP_UNKNOWN:
  case CAP_UNKNOWN_LOW:
    break;
  case CAP_CAP_ONLY:
    r->cap_bytes = A;
    break;
  case CAP_FROM_CONFIG:
    cfg->device.memory = capacity;
    break;
  case CAP_PROCESS_CAP:
    r->cap_bytes = A;
    r->device_capacity = 4 * capacity;
    break;
  default:
    r->device_capacity = capacity;
  }
}

static void observe(const tcase *c, nw_observations *o) {
  memset(o, 0, sizeof *o);
  o->exit_code = c->no_report ? c->exit_code : 75;
  o->signal = c->signal;
  o->oom_killed_by_kernel = c->kernel;
  o->stderr_cuda_oom = c->cuda;
  o->self_uid = SELF_UID;
  snprintf(o->run_id, sizeof o->run_id, "%s",
           c->obs_run ? c->obs_run : "run-a");
  o->self_pids[o->n_self_pids++] = REPORT_PID;
  if (c->self_pid)
    o->self_pids[o->n_self_pids++] = c->self_pid;
}

static void check_pids(const char *name, const char *what, const int *want,
                       const int *got, int n_got) {
  int n_want = 0;
  while (n_want < 4 && want[n_want])
    n_want++;
  if (n_want != n_got)
    fail_msg("%s: %d %s pids, expected %d", name, n_got, what, n_want);
  for (int i = 0; i < n_want; i++)
    if (want[i] != got[i])
      fail_msg("%s: %s pid %d is %d, expected %d", name, what, i, got[i],
               want[i]);
}

static void test_table(void **state) {
  (void)state;
  size_t n = sizeof cases / sizeof cases[0];
  assert_true(n >= 30);
  for (size_t i = 0; i < n; i++) {
    const tcase *c = &cases[i];
    nw_config cfg;
    nw_oom_report rep;
    nw_observations obs;
    build(c, &cfg, &rep);
    observe(c, &obs);
    nw_classification out;
    memset(&out, 0xa5, sizeof out); /* nw_classify must set everything */
    nw_classify(c->no_cfg ? NULL : &cfg, c->no_report ? NULL : &rep, &obs,
                &out);
    if (out.cause != c->expect)
      fail_msg("case \"%s\": cause %s, expected %s\n  evidence: %s", c->name,
               nw_cause_name(out.cause), nw_cause_name(c->expect),
               out.evidence);
    if (getenv("NW_TEST_VERBOSE"))
      print_message("%-58s %-17s %s\n", c->name, nw_cause_name(out.cause),
                    out.evidence);
    assert_non_null(memchr(out.evidence, '\0', sizeof out.evidence));
    assert_true(strlen(out.evidence) > 0);
    for (int k = 0; k < 3 && c->has[k]; k++)
      if (!strstr(out.evidence, c->has[k]))
        fail_msg("case \"%s\": evidence lacks \"%s\"\n  evidence: %s", c->name,
                 c->has[k], out.evidence);
    if (c->lacks && strstr(out.evidence, c->lacks))
      fail_msg("case \"%s\": evidence has \"%s\"\n  evidence: %s", c->name,
               c->lacks, out.evidence);
    check_pids(c->name, "duplicate", c->dups, out.duplicate_pids,
               out.n_duplicates);
    check_pids(c->name, "foreign", c->foreign, out.foreign_pids, out.n_foreign);
    uint64_t fb = 0;
    for (int k = 0; k < rep.n_procs && !c->no_report; k++)
      for (int f = 0; f < out.n_foreign; f++)
        if (rep.procs[k].pid == out.foreign_pids[f])
          fb += rep.procs[k].bytes;
    assert_int_equal(out.foreign_bytes, fb);
    /* a pure function: the same inputs give the same words */
    nw_classification again;
    nw_classify(c->no_cfg ? NULL : &cfg, c->no_report ? NULL : &rep, &obs,
                &again);
    assert_int_equal(again.cause, out.cause);
    assert_string_equal(again.evidence, out.evidence);
  }
  print_message("%zu classification cases\n", n);
}

static void test_cause_names(void **state) {
  (void)state;
  static const char *names[] = {"unknown", "eval-cache", "duplicate-process",
                                "activation", "sequence-length"};
  for (int c = 0; c < NW_CAUSE_COUNT; c++) {
    assert_string_equal(nw_cause_name((nw_cause)c), names[c]);
    nw_cause back = NW_CAUSE_COUNT;
    assert_int_equal(nw_cause_parse(names[c], &back), 0);
    assert_int_equal(back, c);
  }
  nw_cause x = NW_CAUSE_ACTIVATION;
  assert_true(nw_cause_parse("duplicate", &x) < 0);
  assert_true(nw_cause_parse("", &x) < 0);
  assert_true(nw_cause_parse(NULL, &x) < 0);
  assert_int_equal(x, NW_CAUSE_ACTIVATION);
  assert_string_not_equal(nw_cause_name(NW_CAUSE_COUNT), "unknown");
}

/* 40 duplicates: 16 listed, the evidence says how many were left out and
 * still fits its buffer with whole sentences. */
static void test_many_processes(void **state) {
  (void)state;
  tcase c = {.name = "many",
             .phase = NW_PHASE_TRAIN_FORWARD,
             .T = 24,
             .med = 24,
             .cap = CAP_BETWEEN};
  nw_config cfg;
  nw_oom_report rep;
  nw_observations obs;
  build(&c, &cfg, &rep);
  observe(&c, &obs);
  for (int i = 0; i < 60; i++) {
    nw_device_proc *p = &rep.procs[rep.n_procs++];
    p->pid = 5000 + i;
    p->uid = i < 40 ? SELF_UID : 3000;
    snprintf(p->run_id, sizeof p->run_id, "%s", i < 40 ? "run-a" : "zz");
    p->bytes = 4 * KIB;
  }
  rep.device_capacity += 60 * 4 * KIB;
  nw_classification out;
  nw_classify(&cfg, &rep, &obs, &out);
  assert_int_equal(out.cause, NW_CAUSE_DUPLICATE);
  assert_int_equal(out.n_duplicates, NW_CLASSIFY_MAX_PIDS);
  assert_int_equal(out.n_foreign, NW_CLASSIFY_MAX_PIDS);
  assert_int_equal(out.duplicate_pids[15], 5015);
  assert_int_equal(out.foreign_pids[0], 5040);
  assert_int_equal(out.foreign_bytes, 20 * 4 * KIB);
  assert_non_null(strstr(out.evidence, "24 duplicate and 4 foreign pids"));
  /* a bogus count is clamped, never read past the table */
  rep.n_procs = 1000;
  nw_classify(&cfg, &rep, &obs, &out);
  assert_int_equal(out.n_duplicates, NW_CLASSIFY_MAX_PIDS);
  rep.n_procs = -3;
  nw_classify(&cfg, &rep, &obs, &out);
  assert_int_equal(out.n_duplicates, 0);
}

static void test_null_inputs(void **state) {
  (void)state;
  nw_classify(NULL, NULL, NULL, NULL); /* nothing to write into: no crash */
  nw_classification out;
  nw_classify(NULL, NULL, NULL, &out);
  assert_int_equal(out.cause, NW_CAUSE_UNKNOWN);
  assert_non_null(strstr(out.evidence, "no OOM report"));
  /* a report with unterminated run ids matches nothing */
  tcase c = {.name = "raw",
             .phase = NW_PHASE_TRAIN_FORWARD,
             .T = 24,
             .med = 24,
             .cap = CAP_BELOW_MEDIAN,
             .procs = {{4242, SELF_UID, "run-a", SMALL}}};
  nw_config cfg;
  nw_oom_report rep;
  build(&c, &cfg, &rep);
  memset(rep.run_id, 'x', sizeof rep.run_id);
  memset(rep.procs[0].run_id, 'x', sizeof rep.procs[0].run_id);
  nw_classify(&cfg, &rep, NULL, &out);
  assert_int_equal(out.n_duplicates, 0);
  assert_int_equal(out.n_foreign, 1);
  rep.phase = (nw_phase)99;
  nw_classify(&cfg, &rep, NULL, &out);
  assert_int_equal(out.cause, NW_CAUSE_UNKNOWN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_cause_names),
      cmocka_unit_test(test_many_processes),
      cmocka_unit_test(test_null_inputs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
