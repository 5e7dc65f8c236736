/* test_recovery_e2e.c — end to end, one test per OOM cause arising from
 * settings a user could write (no fault switch): the real `nightwatch run`
 * supervising the real nightwatch-train, a small model on the CPU virtual
 * device. Each run fails only after some completed steps; the test reads
 * from the ledger that the supervisor classified the cause, applied the
 * policy's action, lost no step and finished with the same effective batch,
 * then compares the final parameters (the last checkpoint) with a
 * fault-free run of the same math within 1e-4 relative.
 *
 * The learning rate is kept flat after warmup (train.min_lr = train.lr), so
 * train.steps does not enter the math and a run split over several
 * supervisor invocations computes what one run does. The data order depends
 * only on data.seed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/config.h"
#include "checkpoints/ckpt.h"
#include "device/vdev.h"
#include "e2e/fixture.h"
#include "model/estimate.h"
#include "testutil.h"

#define STEPS 30
#define REF_MEMORY "device.memory=1GiB"

/* The small model every run trains, as the test reasons about it. */
static void small_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->model.n_layer = 2;
  cfg->model.n_embd = 64;
  cfg->model.n_head = 4;
  cfg->eval.every = 0;
  cfg->data.long_fraction = 0;
}

/* The default policy's chains with short waits (a user's policy file). */
static const char *const quick_policy =
    "[eval-cache]\nactions = free-cache, halve-eval-batch\n"
    "[duplicate-process]\nactions = kill-duplicate\ngrace_seconds = 10\n"
    "[activation]\nactions = halve-micro-batch, shorten-sequences\n"
    "factor = 0.75\nfloor = 32\n"
    "[sequence-length]\nactions = shorten-sequences, halve-micro-batch\n"
    "factor = 0.75\nfloor = 32\n"
    "[limits]\nmax_recoveries = 8\nbackoff_initial_seconds = 0.1\n"
    "min_start_interval_seconds = 0\n";

/* A case of the small model under the quick policy; flat learning rate. */
static nw_case *small_case(const char *tag) {
  nw_case *c = nw_case_new(tag);
  nw_case_policy(c, quick_policy);
  nw_case_set(c, "model.n_layer=2");
  nw_case_set(c, "model.n_embd=64");
  nw_case_set(c, "model.n_head=4");
  nw_case_set(c, "train.min_lr=0.003");
  nw_case_set(c, "train.lr=0.003");
  nw_case_set(c, "checkpoint.every=4");
  return c;
}

static void set_arg(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

static json_t *find(json_t *a, const char *event, int nth) {
  return nw_test_ledger_find(a, event, nth);
}

static int count(json_t *a, const char *event) {
  return nw_test_ledger_count(a, event);
}

/* What every recovered run must show: each failure of the expected cause,
 * each recovery the expected action with the effective batch unchanged, one
 * outage resumed with no step lost, the run finished at STEPS, no give-up.
 * Returns the last recovery (borrowed from a). */
static json_t *expect_recovered(const nw_case *r, json_t *a, const char *cause,
                                const char *action, int effective,
                                int min_failed_step) {
  int nrec = count(a, "recovery");
  if (nrec < 1 || count(a, "give-up") > 0 || count(a, "resumed") != 1) {
    nw_case_dump(r);
    fail_msg("expected recoveries and one resume");
  }
  json_t *oom = find(a, "oom", 0);
  assert_non_null(oom);
  if (strcmp(nw_test_json_str(oom, "cause"), cause)) {
    nw_case_dump(r);
    fail_msg("cause %s, expected %s", nw_test_json_str(oom, "cause"), cause);
  }
  assert_int_equal(nw_test_json_int(oom, "exit_code"), 75);
  int failed = nw_test_json_int(oom, "failed_step");
  json_t *res = find(a, "resumed", 0);
  /* An OOM at init of a resumed trainer (its report says step 0: it had not
   * loaded its checkpoint) counts from the step the run had reached. */
  assert_true(failed >= min_failed_step);
  assert_int_equal(nw_test_json_int(res, "steps_lost"), 0);
  assert_int_equal(nw_test_json_int(res, "failed_step"), failed);
  for (int i = 0; i < nrec; i++) {
    json_t *rec = find(a, "recovery", i);
    assert_string_equal(nw_test_json_str(rec, "cause"), cause);
    assert_string_equal(nw_test_json_str(rec, "action"), action);
    assert_int_equal(
        nw_test_json_int(json_object_get(rec, "before"), "effective"),
        effective);
    assert_int_equal(
        nw_test_json_int(json_object_get(rec, "after"), "effective"),
        effective);
  }
  assert_int_equal(nw_test_json_int(res, "resumed_from"), failed);
  json_t *fin = find(a, "finish", count(a, "finish") - 1);
  assert_non_null(fin);
  assert_int_equal(nw_test_json_int(fin, "step"), STEPS);
  assert_int_equal(nw_test_json_int(fin, "exit_code"), 0);
  return find(a, "recovery", nrec - 1);
}

static void read_final(const char *dir, nw_ckpt_state *st) {
  char path[1024], err[512];
  nw_ckpt_path(dir, STEPS, path, sizeof path);
  if (nw_ckpt_read(path, st, err, sizeof err) < 0)
    fail_msg("%s", err);
}

/* The final parameters of the recovered run against the fault-free one. */
static void expect_same_params(const char *what, const nw_case *got,
                               const nw_case *ref, int effective) {
  nw_ckpt_state x, y;
  read_final(ref->dir, &x);
  read_final(got->dir, &y);
  assert_int_equal(x.step, STEPS);
  assert_int_equal(y.step, STEPS);
  assert_int_equal(x.num_params, y.num_params);
  assert_int_equal(y.effective, effective);
  assert_int_equal(x.effective, effective);
  double rel = nw_test_rel_diff(y.params, x.params, x.num_params);
  printf("%s: recovered vs fault-free, max relative difference %.3g "
         "(micro %d accum %d vs %d/%d)\n",
         what, rel, y.micro, y.accum, x.micro, x.accum);
  assert_true(rel < 1e-4);
  nw_ckpt_free(&x);
  nw_ckpt_free(&y);
}

/* (1) activation: micro-batch 32 does not fit the device at any length, 8
 * does. The run trains 6 steps at micro-batch 8; the user then asks for
 * micro-batch 32 (the same effective batch) and the resumed trainer fails at
 * step 6. The supervisor halves the micro-batch until it fits and the run
 * finishes; a fault-free run at micro-batch 8 gives the same parameters. */
static void test_activation(void **state) {
  (void)state;
  nw_config cfg;
  small_config(&cfg);
  nw_estimate fits, big;
  nw_estimate_train(&cfg, 8, 10, 0, &fits); /* the longest short problem */
  nw_estimate_train(&cfg, 32, 5, 0, &big);  /* the shortest possible */
  assert_true(fits.total < big.total);
  char mem[64], steps[32];
  set_arg(mem, sizeof mem, "device.memory=%llu",
          (unsigned long long)((fits.total + big.total) / 2));
  set_arg(steps, sizeof steps, "train.steps=%d", STEPS);

  nw_case *r = small_case("act");
  const char *first[] = {mem,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.effective=32",
                         "batch.micro=8",
                         "train.steps=6",
                         NULL};
  nw_case_run_ok(r, first, 60);
  const char *second[] = {mem,
                          "eval.every=0",
                          "data.long_fraction=0",
                          "batch.effective=32",
                          "batch.micro=32",
                          steps,
                          NULL};
  nw_case_run_ok(r, second, 60);
  json_t *a = nw_case_ledger(r);
  json_t *last =
      expect_recovered(r, a, "activation", "halve-micro-batch", 32, 6);
  assert_int_equal(nw_test_json_int(find(a, "oom", 0), "failed_step"), 6);
  assert_int_equal(
      nw_test_json_int(json_object_get(find(a, "recovery", 0), "before"),
                       "micro"),
      32);
  int micro = nw_test_json_int(json_object_get(last, "after"), "micro");
  assert_true(micro == 16 || micro == 8);
  assert_int_equal(nw_test_json_int(json_object_get(last, "after"), "accum"),
                   32 / micro);
  json_decref(a);

  nw_case *ref = small_case("act-ref");
  const char *plain[] = {REF_MEMORY,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.effective=32",
                         "batch.micro=8",
                         steps,
                         NULL};
  nw_case_run_ok(ref, plain, 60);
  a = nw_case_ledger(ref);
  assert_int_equal(count(a, "oom"), 0);
  json_decref(a);
  expect_same_params("activation", r, ref, 32);
  nw_case_free(r);
  nw_case_free(ref);
}

/* (2) sequence-length: rare long problems (operands of up to 40 digits, 2%
 * of the examples) pad their micro-batch to the full 96 positions; the
 * device holds a micro-batch of 8 at 72 tokens but not at 96. The first
 * such batch fails after some completed steps; the supervisor shortens the
 * sequences (data.max_len) and the run finishes. The fault-free run trains
 * to the failed step, then resumes with the max_len the policy chose. */
static void test_sequence_length(void **state) {
  (void)state;
  nw_config cfg;
  small_config(&cfg);
  nw_estimate at72, at96;
  nw_estimate_train(&cfg, 8, 72, 0, &at72);
  nw_estimate_train(&cfg, 8, 96, 0, &at96);
  assert_true(at72.total < at96.total);
  char mem[64], steps[32];
  set_arg(mem, sizeof mem, "device.memory=%llu",
          (unsigned long long)((at72.total + at96.total) / 2));
  set_arg(steps, sizeof steps, "train.steps=%d", STEPS);

  nw_case *r = small_case("seq");
  const char *sets[] = {mem,
                        "eval.every=0",
                        "data.long_fraction=0.02",
                        "data.long_max_digits=40",
                        "batch.effective=32",
                        "batch.micro=8",
                        steps,
                        NULL};
  nw_case_run_ok(r, sets, 60);
  json_t *a = nw_case_ledger(r);
  json_t *last =
      expect_recovered(r, a, "sequence-length", "shorten-sequences", 32, 1);
  int failed = nw_test_json_int(find(a, "oom", 0), "failed_step");
  json_t *after = json_object_get(last, "after");
  int max_len = nw_test_json_int(after, "max_len");
  assert_true(max_len >= 32 && max_len < 96);
  assert_int_equal(nw_test_json_int(after, "micro"), 8);
  printf("sequence-length: failed at step %d, max_len 96 -> %d in %d "
         "recoveries\n",
         failed, max_len, count(a, "recovery"));
  json_decref(a);

  /* fault-free: to the failed step, then the policy's max_len to the end */
  nw_case *ref = small_case("seq-ref");
  char upto[32], len[32];
  set_arg(upto, sizeof upto, "train.steps=%d", failed);
  set_arg(len, sizeof len, "data.max_len=%d", max_len);
  const char *before[] = {REF_MEMORY,
                          "eval.every=0",
                          "data.long_fraction=0.02",
                          "data.long_max_digits=40",
                          "batch.effective=32",
                          "batch.micro=8",
                          upto,
                          NULL};
  nw_case_run_ok(ref, before, 60);
  const char *rest[] = {REF_MEMORY,
                        "eval.every=0",
                        "data.long_fraction=0.02",
                        "data.long_max_digits=40",
                        "batch.effective=32",
                        "batch.micro=8",
                        len,
                        steps,
                        NULL};
  nw_case_run_ok(ref, rest, 60);
  a = nw_case_ledger(ref);
  assert_int_equal(count(a, "oom"), 0);
  json_decref(a);
  expect_same_params("sequence-length", r, ref, 32);
  nw_case_free(r);
  nw_case_free(ref);
}

/* (3) eval-cache: the run trains 5 steps without evaluation; the user then
 * turns evaluation on every 5 steps with generation, keeping the kv-cache
 * (eval.release_cache = false, the default). The evaluation at step 10
 * fits, the training step after it does not beside the kept cache. The
 * supervisor frees the cache (release_cache = true) and the run finishes;
 * the fault-free run has the same settings on a large device. */
static void test_eval_cache(void **state) {
  (void)state;
  nw_config cfg;
  small_config(&cfg);
  cfg.eval.batch = 16;
  cfg.eval.every = 5;
  cfg.eval.generate = 16;
  cfg.eval.batches = 1;
  nw_estimate train, with_kv, ev;
  uint64_t kv = nw_estimate_kept_kv(&cfg);
  assert_true(kv > 0);
  nw_estimate_train(&cfg, 8, 10, 0, &train);
  nw_estimate_train(&cfg, 8, 5, kv, &with_kv);
  nw_config released = cfg;
  released.eval.release_cache = 1;
  nw_estimate_eval(&released, 10, &ev);
  double need = train.total > ev.total ? (double)train.total : (double)ev.total;
  assert_true(need < with_kv.total);
  char mem[64], steps[32];
  set_arg(mem, sizeof mem, "device.memory=%llu",
          (unsigned long long)((need + with_kv.total) / 2));
  set_arg(steps, sizeof steps, "train.steps=%d", STEPS);

  nw_case *r = small_case("kv");
  const char *first[] = {mem,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.micro=8",
                         "train.steps=5",
                         NULL};
  nw_case_run_ok(r, first, 60);
  const char *second[] = {mem,
                          "eval.every=5",
                          "eval.batch=16",
                          "eval.batches=1",
                          "eval.generate=16",
                          "data.long_fraction=0",
                          "batch.micro=8",
                          steps,
                          NULL};
  nw_case_run_ok(r, second, 60);
  json_t *a = nw_case_ledger(r);
  json_t *last = expect_recovered(
      r, a, "eval-cache", "free-cache",
      nw_test_json_int(json_object_get(find(a, "start", 0), "settings"),
                       "effective"),
      5);
  assert_int_equal(count(a, "recovery"), 1);
  assert_false(json_is_true(
      json_object_get(json_object_get(last, "before"), "release_cache")));
  assert_true(json_is_true(
      json_object_get(json_object_get(last, "after"), "release_cache")));
  int eff = nw_test_json_int(json_object_get(last, "after"), "effective");
  printf("eval-cache: failed at step %d\n",
         nw_test_json_int(find(a, "oom", 0), "failed_step"));
  json_decref(a);

  nw_case *ref = small_case("kv-ref");
  const char *plain[] = {
      REF_MEMORY,      "eval.every=0",  "data.long_fraction=0",
      "batch.micro=8", "train.steps=5", NULL};
  nw_case_run_ok(ref, plain, 60);
  const char *plain2[] = {REF_MEMORY,
                          "eval.every=5",
                          "eval.batch=16",
                          "eval.batches=1",
                          "eval.generate=16",
                          "data.long_fraction=0",
                          "batch.micro=8",
                          steps,
                          NULL};
  nw_case_run_ok(ref, plain2, 60);
  a = nw_case_ledger(ref);
  assert_int_equal(count(a, "oom"), 0);
  json_decref(a);
  expect_same_params("eval-cache", r, ref, eff);
  nw_case_free(r);
  nw_case_free(ref);
}

/* (4) duplicate-process: the run trains 6 steps; meanwhile a second
 * nightwatch-train of the same run id was started by hand on the same
 * device (another run directory) and holds its memory. The supervised
 * trainer, resuming at step 6, cannot hold its state beside it; the
 * supervisor stops the duplicate (same uid, same run id) and the run
 * finishes. The fault-free run is a plain run of the same settings. */
static void test_duplicate_process(void **state) {
  (void)state;
  nw_config cfg;
  small_config(&cfg);
  nw_estimate one, st;
  nw_estimate_train(&cfg, 8, 10, 0, &one);
  nw_estimate_static(&cfg, &st);
  uint64_t cap =
      one.total + st.bytes[NW_MEM_PARAMS] + st.bytes[NW_MEM_GRADS] / 2;
  char mem[64], steps[32], rid[80], run_id[64];
  set_arg(mem, sizeof mem, "device.memory=%llu", (unsigned long long)cap);
  set_arg(steps, sizeof steps, "train.steps=%d", STEPS);
  set_arg(run_id, sizeof run_id, "e2e-dup-%d", (int)getpid());
  set_arg(rid, sizeof rid, "run.id=%s", run_id);

  nw_case *r = small_case("dup");
  const char *first[] = {mem,
                         rid,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.micro=8",
                         "train.steps=6",
                         NULL};
  nw_case_run_ok(r, first, 60);

  /* the duplicate: the same run id, started by hand on the same device,
   * holding its steady memory, then hung (stopped) as stale ones are:
   * SIGTERM waits while it is stopped, and the supervisor's SIGKILL after
   * the grace ends it */
  const char *stale[] = {mem,
                         rid,
                         "model.n_layer=2",
                         "model.n_embd=64",
                         "model.n_head=4",
                         "data.long_fraction=0",
                         "eval.every=0",
                         "checkpoint.every=0",
                         "train.steps=100000000",
                         NULL};
  pid_t dup =
      nw_case_stale_trainer(r, r->device, stale, (uint64_t)(one.total * 0.9));
  const char *second[] = {
      mem,   rid, "eval.every=0", "data.long_fraction=0", "batch.micro=8",
      steps, NULL};
  int rc = nw_case_run(r, second, 60);
  int drc = nw_case_stale_exit(r, 15); /* stopped by the supervisor, or us */
  /* 137: the supervisor's SIGKILL after the grace (it is stopped);
   * anything else is the duplicate's own end, which a failure should show */
  printf("duplicate trainer %d ended with %d (its log: %s/stale.log)\n",
         (int)dup, drc, r->home);
  if (rc != 0)
    nw_case_dump(r);
  assert_int_equal(rc, 0);
  /* stopped, it cannot take the SIGTERM: the SIGKILL after the grace */
  if (drc != 128 + SIGKILL)
    fail_msg("the duplicate trainer: exit %d", drc);
  json_t *a = nw_case_ledger(r);
  expect_recovered(r, a, "duplicate-process", "kill-duplicate", 32, 6);
  json_t *oom = find(a, "oom", 0);
  assert_int_equal(json_integer_value(json_array_get(
                       json_object_get(oom, "duplicate_pids"), 0)),
                   dup);
  json_t *k = find(a, "kill", 0);
  assert_non_null(k);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(k, "pids"), 0)), dup);
  json_decref(a);

  nw_case *ref = small_case("dup-ref");
  const char *plain[] = {
      REF_MEMORY,      "eval.every=0", "data.long_fraction=0",
      "batch.micro=8", steps,          NULL};
  nw_case_run_ok(ref, plain, 60);
  expect_same_params("duplicate-process", r, ref, 32);
  nw_case_free(r);
  nw_case_free(ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_activation, nw_case_teardown),
      cmocka_unit_test_teardown(test_sequence_length, nw_case_teardown),
      cmocka_unit_test_teardown(test_eval_cache, nw_case_teardown),
      cmocka_unit_test_teardown(test_duplicate_process, nw_case_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
