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
#include "unit/recovery/classify_cases.h"

#define KIB 1024ull

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

/* What the process had available (A) in this case, for a request of req
 * bytes at length T with median med; et gets the estimate at T. */
static uint64_t available(const tcase *c, const nw_config *cfg,
                          const nw_estimate *st, uint64_t req,
                          uint64_t *et_out) {
  int T = c->T > 0 ? c->T : 24, med = c->med > 0 ? c->med : T;
  uint64_t em = train_total(cfg, med), et = train_total(cfg, T), A = 0;
  switch (c->cap) {
  case CAP_BELOW_MEDIAN:
  case CAP_UNKNOWN_LOW:
    A = st->total + (em - st->total) / 2;
    break;
  case CAP_ABOVE_ALL:
    A = et + et / 4;
    break;
  case CAP_BELOW_STATIC:
    A = st->total * 3 / 4;
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
      (em - st->total) / 2 < req)
    fail_msg("%s: activations too small", c->name);
  *et_out = et;
  return A;
}

/* held bytes laid out as the domain would: kv, state, the rest
 * activations. */
static void lay_out(const tcase *c, const nw_config *cfg, const nw_estimate *st,
                    uint64_t held, nw_oom_report *r) {
  uint64_t left = held;
  if (c->kv) {
    r->kv_cache_bytes = nw_estimate_kept_kv(cfg);
    r->live[NW_MEM_KV_CACHE] = r->kv_cache_bytes;
    left = left > r->kv_cache_bytes ? left - r->kv_cache_bytes : 0;
  }
  static const nw_mem_category state[] = {NW_MEM_PARAMS, NW_MEM_GRADS,
                                          NW_MEM_OPTIMIZER};
  for (int i = 0; i < 3; i++) {
    uint64_t b = st->bytes[state[i]] < left ? st->bytes[state[i]] : left;
    r->live[state[i]] = b;
    left -= b;
  }
  r->live[NW_MEM_ACTIVATIONS] = left;
  memcpy(r->peak, r->live, sizeof r->peak);
}

/* The case's other processes on the device (a big one holds twice what
 * the step needs at length T, et), and the capacity as the case tells it:
 * the device's, the process's cap, the config's, or none. */
static void place_on_device(const tcase *c, nw_config *cfg, uint64_t A,
                            uint64_t held, uint64_t et, nw_oom_report *r) {
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

/* A report as the trainer would write it for this case: the process held
 * just under what was available (A) and asked for 64 KiB more. */
static void build(const tcase *c, nw_config *cfg, nw_oom_report *r) {
  *cfg = base_config();
  memset(r, 0, sizeof *r);
  nw_estimate st;
  nw_estimate_static(cfg, &st);
  uint64_t req = 64 * KIB, et;
  uint64_t A = available(c, cfg, &st, req, &et);

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

  /* held = A - 32 KiB */
  uint64_t held = A > req / 2 ? A - req / 2 : 0;
  lay_out(c, cfg, &st, held, r);
  place_on_device(c, cfg, A, held, et, r);
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
  size_t n = (size_t)nw_classify_n_cases;
  assert_true(n >= 30);
  for (size_t i = 0; i < n; i++) {
    const tcase *c = &nw_classify_cases[i];
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
