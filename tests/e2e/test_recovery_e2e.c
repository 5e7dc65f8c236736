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
#include "model/estimate.h"
#include "testutil.h"

#define STEPS 30
#define REF_MEMORY "device.memory=1GiB"

typedef struct {
  char dir[256];   /* run directory */
  char log[320];   /* the supervisor's stdout+stderr */
  char device[64]; /* virtual device, unique per run */
} e2e_run;

/* The small model every run trains, as the test reasons about it. */
static void small_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->model.n_layer = 2;
  cfg->model.n_embd = 64;
  cfg->model.n_head = 4;
  cfg->eval.every = 0;
  cfg->data.long_fraction = 0;
}

static const char *const small_sets[] = {"model.n_layer=2",
                                         "model.n_embd=64",
                                         "model.n_head=4",
                                         "train.min_lr=0.003",
                                         "train.lr=0.003",
                                         "checkpoint.every=4",
                                         NULL};

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

static void run_init(e2e_run *r, const char *tag) {
  nw_test_tmpdir(r->dir, sizeof r->dir, tag);
  snprintf(r->log, sizeof r->log, "%s.log", r->dir);
  snprintf(r->device, sizeof r->device, "nwe2e-%d-%s", (int)getpid(), tag);
}

static void run_fini(e2e_run *r) { nw_vdev_unlink(r->device); }

/* The file's text; "" when it cannot be read (a log not yet written). */
static char *slurp(const char *path) {
  char *s = nw_test_slurp(path, NULL);
  return s ? s : strdup("");
}

static void dump_log(const e2e_run *r) {
  char *s = slurp(r->log);
  fprintf(stderr, "---- supervisor log %s ----\n%s\n", r->log, s);
  free(s);
  char p[512];
  snprintf(p, sizeof p, "%s/ledger.jsonl", r->dir);
  s = slurp(p);
  fprintf(stderr, "---- ledger ----\n%s\n", s);
  free(s);
}

static void set_arg(char *buf, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, len, fmt, ap);
  va_end(ap);
}

/* Runs `nightwatch run --run-dir DIR --policy P` with the small model, the
 * run's device and the extra --set values (NULL-terminated) to its end;
 * returns its exit code. */
static int sup_run(e2e_run *r, const char *const *sets, double timeout) {
  char *argv[96];
  static char pol[512], dev[128];
  nw_test_write_text(r->dir, "policy.conf", quick_policy, pol, sizeof pol);
  int n = 0;
  argv[n++] = (char *)NW_BIN;
  argv[n++] = "run";
  argv[n++] = "--run-dir";
  argv[n++] = r->dir;
  argv[n++] = "--policy";
  argv[n++] = pol;
  for (int i = 0; small_sets[i]; i++) {
    argv[n++] = "--set";
    argv[n++] = (char *)small_sets[i];
  }
  set_arg(dev, sizeof dev, "device.name=%s", r->device);
  argv[n++] = "--set";
  argv[n++] = dev;
  for (int i = 0; sets && sets[i]; i++) {
    argv[n++] = "--set";
    argv[n++] = (char *)sets[i];
  }
  argv[n] = NULL;
  return nw_test_wait_or_kill(nw_test_spawn_logged(argv, r->log), timeout);
}

static void sup_ok(e2e_run *r, const char *const *sets) {
  int rc = sup_run(r, sets, 60);
  if (rc != 0) {
    dump_log(r);
    fail_msg("nightwatch run in %s: exit %d", r->dir, rc);
  }
}

static json_t *ledger(const e2e_run *r) { return nw_test_ledger_load(r->dir); }

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
static json_t *expect_recovered(const e2e_run *r, json_t *a, const char *cause,
                                const char *action, int effective,
                                int min_failed_step) {
  int nrec = count(a, "recovery");
  if (nrec < 1 || count(a, "give-up") > 0 || count(a, "resumed") != 1) {
    dump_log(r);
    fail_msg("expected recoveries and one resume");
  }
  json_t *oom = find(a, "oom", 0);
  assert_non_null(oom);
  if (strcmp(nw_test_json_str(oom, "cause"), cause)) {
    dump_log(r);
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
static void expect_same_params(const char *what, const e2e_run *got,
                               const e2e_run *ref, int effective) {
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

  e2e_run r;
  run_init(&r, "act");
  const char *first[] = {mem,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.effective=32",
                         "batch.micro=8",
                         "train.steps=6",
                         NULL};
  sup_ok(&r, first);
  const char *second[] = {mem,
                          "eval.every=0",
                          "data.long_fraction=0",
                          "batch.effective=32",
                          "batch.micro=32",
                          steps,
                          NULL};
  sup_ok(&r, second);
  json_t *a = ledger(&r);
  json_t *last =
      expect_recovered(&r, a, "activation", "halve-micro-batch", 32, 6);
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

  e2e_run ref;
  run_init(&ref, "act-ref");
  const char *plain[] = {REF_MEMORY,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.effective=32",
                         "batch.micro=8",
                         steps,
                         NULL};
  sup_ok(&ref, plain);
  a = ledger(&ref);
  assert_int_equal(count(a, "oom"), 0);
  json_decref(a);
  expect_same_params("activation", &r, &ref, 32);
  run_fini(&r);
  run_fini(&ref);
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

  e2e_run r;
  run_init(&r, "seq");
  const char *sets[] = {mem,
                        "eval.every=0",
                        "data.long_fraction=0.02",
                        "data.long_max_digits=40",
                        "batch.effective=32",
                        "batch.micro=8",
                        steps,
                        NULL};
  sup_ok(&r, sets);
  json_t *a = ledger(&r);
  json_t *last =
      expect_recovered(&r, a, "sequence-length", "shorten-sequences", 32, 1);
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
  e2e_run ref;
  run_init(&ref, "seq-ref");
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
  sup_ok(&ref, before);
  const char *rest[] = {REF_MEMORY,
                        "eval.every=0",
                        "data.long_fraction=0.02",
                        "data.long_max_digits=40",
                        "batch.effective=32",
                        "batch.micro=8",
                        len,
                        steps,
                        NULL};
  sup_ok(&ref, rest);
  a = ledger(&ref);
  assert_int_equal(count(a, "oom"), 0);
  json_decref(a);
  expect_same_params("sequence-length", &r, &ref, 32);
  run_fini(&r);
  run_fini(&ref);
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

  e2e_run r;
  run_init(&r, "kv");
  const char *first[] = {mem,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.micro=8",
                         "train.steps=5",
                         NULL};
  sup_ok(&r, first);
  const char *second[] = {mem,
                          "eval.every=5",
                          "eval.batch=16",
                          "eval.batches=1",
                          "eval.generate=16",
                          "data.long_fraction=0",
                          "batch.micro=8",
                          steps,
                          NULL};
  sup_ok(&r, second);
  json_t *a = ledger(&r);
  json_t *last = expect_recovered(
      &r, a, "eval-cache", "free-cache",
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

  e2e_run ref;
  run_init(&ref, "kv-ref");
  const char *plain[] = {
      REF_MEMORY,      "eval.every=0",  "data.long_fraction=0",
      "batch.micro=8", "train.steps=5", NULL};
  sup_ok(&ref, plain);
  const char *plain2[] = {REF_MEMORY,
                          "eval.every=5",
                          "eval.batch=16",
                          "eval.batches=1",
                          "eval.generate=16",
                          "data.long_fraction=0",
                          "batch.micro=8",
                          steps,
                          NULL};
  sup_ok(&ref, plain2);
  a = ledger(&ref);
  assert_int_equal(count(a, "oom"), 0);
  json_decref(a);
  expect_same_params("eval-cache", &r, &ref, eff);
  run_fini(&r);
  run_fini(&ref);
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

  e2e_run r;
  run_init(&r, "dup");
  const char *first[] = {mem,
                         rid,
                         "eval.every=0",
                         "data.long_fraction=0",
                         "batch.micro=8",
                         "train.steps=6",
                         NULL};
  sup_ok(&r, first);

  /* the duplicate: the same run id, started by hand, training */
  char ddir[256];
  nw_test_tmpdir(ddir, sizeof ddir, "dup-other");
  int status_pipe[2];
  assert_int_equal(pipe(status_pipe), 0);
  pid_t dup = fork();
  assert_true(dup >= 0);
  if (dup == 0) {
    char dirset[320], devset[128], ridset[96], fdv[16];
    close(status_pipe[0]);
    set_arg(fdv, sizeof fdv, "%d", status_pipe[1]);
    setenv("NIGHTWATCH_STATUS_FD", fdv, 1);
    set_arg(dirset, sizeof dirset, "--set=run.dir=%s", ddir);
    set_arg(devset, sizeof devset, "--set=device.name=%s", r.device);
    set_arg(ridset, sizeof ridset, "--set=%s", rid);
    char memset_[80];
    set_arg(memset_, sizeof memset_, "--set=%s", mem);
    char dlog[320];
    set_arg(dlog, sizeof dlog, "%s.log", ddir);
    int lfd = open(dlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(lfd, 1);
    dup2(lfd, 2);
    setenv("OMP_NUM_THREADS", "1", 1);
    execl(NW_TRAIN_BIN, NW_TRAIN_BIN, dirset, devset, ridset, memset_,
          "--set=model.n_layer=2", "--set=model.n_embd=64",
          "--set=model.n_head=4", "--set=data.long_fraction=0",
          "--set=eval.every=0", "--set=checkpoint.every=0",
          "--set=train.steps=100000000", (char *)NULL);
    _exit(127);
  }
  /* After two steps its optimizer state is allocated and its activations
   * are cached: it holds its steady memory and needs no more. Before that
   * (a slow machine) the new trainer could take memory the duplicate still
   * needs, and the duplicate would be the one to fail. */
  close(status_pipe[1]);
  int stepped = nw_test_wait_step_line(status_pipe[0], 2, 60);
  close(status_pipe[0]);
  int held = 0;
  for (int i = 0; i < 800 && !held && stepped == 0; i++) {
    nw_vdev_proc procs[8];
    int n = 0;
    char err[256];
    if (nw_vdev_list_by_name(r.device, procs, 8, &n, NULL, err, sizeof err) ==
            0 &&
        n == 1 && procs[0].pid == dup &&
        procs[0].bytes >= (uint64_t)(one.total * 0.9))
      held = 1;
    else
      usleep(25000);
  }
  if (!held) {
    kill(dup, SIGKILL);
    waitpid(dup, NULL, 0);
    fail_msg("the duplicate trainer never held its memory");
  }
  /* A stale trainer that hangs, as stale ones do: stopped, its memory holds
   * still. A running one frees and re-reserves activation blocks as batch
   * lengths vary, and on a loaded machine it lost the race for memory to the
   * trainer under test (it ran out first). SIGTERM waits while it is
   * stopped: the supervisor's SIGKILL after the grace ends it. */
  assert_int_equal(kill(dup, SIGSTOP), 0);
  const char *second[] = {
      mem,   rid, "eval.every=0", "data.long_fraction=0", "batch.micro=8",
      steps, NULL};
  int rc = sup_run(&r, second, 60);
  int drc =
      nw_test_wait_or_kill(dup, 15); /* stopped by the supervisor, or by us */
  /* 137: the supervisor's SIGKILL after the grace (it is stopped);
   * anything else is the duplicate's own end, which a failure should show */
  printf("duplicate trainer %d ended with %d (its log: %s.log)\n", (int)dup,
         drc, ddir);
  if (rc != 0)
    dump_log(&r);
  assert_int_equal(rc, 0);
  /* stopped, it cannot take the SIGTERM: the SIGKILL after the grace */
  if (drc != 128 + SIGKILL)
    fail_msg("the duplicate trainer: exit %d", drc);
  json_t *a = ledger(&r);
  expect_recovered(&r, a, "duplicate-process", "kill-duplicate", 32, 6);
  json_t *oom = find(a, "oom", 0);
  assert_int_equal(json_integer_value(json_array_get(
                       json_object_get(oom, "duplicate_pids"), 0)),
                   dup);
  json_t *k = find(a, "kill", 0);
  assert_non_null(k);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(k, "pids"), 0)), dup);
  json_decref(a);

  e2e_run ref;
  run_init(&ref, "dup-ref");
  const char *plain[] = {
      REF_MEMORY,      "eval.every=0", "data.long_fraction=0",
      "batch.micro=8", steps,          NULL};
  sup_ok(&ref, plain);
  expect_same_params("duplicate-process", &r, &ref, 32);
  run_fini(&r);
  run_fini(&ref);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation),
      cmocka_unit_test(test_sequence_length),
      cmocka_unit_test(test_eval_cache),
      cmocka_unit_test(test_duplicate_process),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
