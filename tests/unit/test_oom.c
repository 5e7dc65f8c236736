/* test_oom.c — out-of-memory failures that arise naturally, from settings a
 * user could write, on the CPU virtual device: the four causes (activation,
 * sequence-length, eval-cache, duplicate-process) and an OOM in every phase
 * the trainer can reach. Each runs the real nightwatch-train and checks its
 * exit code and the fields of its OOM report. Under the sanitizer build the
 * same runs prove that the unwinding leaks nothing (LeakSanitizer fails the
 * process otherwise, and the exit code would not be 75). */
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

#include "base/config.h"
#include "device/vdev.h"
#include "model/estimate.h"
#include "protocol/exit_codes.h"
#include "protocol/oom_report.h"
#include "testutil.h"
#include "trainer/model/model.h"

#define MIB (1024.0 * 1024.0)

typedef struct {
  char dir[256];
  char device[64];
  char out[1 << 16];
  nw_oom_report rep;
} oom_case;

/* The defaults the test reasons about, also passed to the trainer. */
static void base_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->data.long_fraction = 0; /* only the sequence-length case has a tail */
  cfg->eval.every = 0;
}

/* Runs nightwatch-train with the given --set list (NULL-terminated) plus
 * the case's run directory and device; returns the exit code. */
static int run_trainer(oom_case *c, const char *const *sets) {
  char *argv[64];
  int n = 0;
  static char dirset[320], devset[128];
  argv[n++] = (char *)NW_TRAIN_BIN;
  snprintf(dirset, sizeof dirset, "--set=run.dir=%s", c->dir);
  snprintf(devset, sizeof devset, "--set=device.name=%s", c->device);
  argv[n++] = dirset;
  argv[n++] = devset;
  argv[n++] = "--set=data.long_fraction=0";
  argv[n++] = "--set=eval.every=0";
  for (int i = 0; sets[i]; i++)
    argv[n++] = (char *)sets[i];
  argv[n] = NULL;
  return nw_test_run_cmd(argv, c->out, sizeof c->out);
}

static void case_init(oom_case *c, const char *tag) {
  nw_test_tmpdir(c->dir, sizeof c->dir, tag);
  snprintf(c->device, sizeof c->device, "nwt-%d-%s", (int)getpid(), tag);
}

static void case_fini(oom_case *c) { nw_vdev_unlink(c->device); }

/* Expects an OOM exit and loads the report. */
static void expect_oom(oom_case *c, int rc) {
  if (rc != NW_EXIT_OOM)
    fail_msg("exit %d, expected %d (OOM); output:\n%s", rc, NW_EXIT_OOM,
             c->out);
  char path[512], err[512];
  snprintf(path, sizeof path, "%s/%s", c->dir, NW_OOM_REPORT_FILE);
  if (nw_oom_report_read(path, &c->rep, err, sizeof err) < 0)
    fail_msg("report: %s", err);
  /* the device never holds more than its capacity */
  assert_true(c->rep.device_capacity > 0);
  assert_true(c->rep.device_used <= c->rep.device_capacity);
  uint64_t live = 0;
  for (int i = 0; i < NW_MEM_NCAT; i++)
    live += c->rep.live[i];
  assert_true(live + c->rep.requested_bytes > c->rep.device_capacity ||
              c->rep.n_procs > 0 || c->rep.cached_bytes > 0);
  assert_true(live <= c->rep.device_capacity);
}

static void set_memory(char *buf, size_t len, double bytes) {
  snprintf(buf, len, "--set=device.memory=%llu", (unsigned long long)bytes);
}

/* (a) activation: a micro-batch too big for the device at ordinary
 * lengths. The device holds micro-batch 8 at the longest length the data
 * has (T 8 with short operands) but micro-batch 32 at no length. */
static void test_activation(void **state) {
  (void)state;
  oom_case c;
  case_init(&c, "act");
  nw_config cfg;
  base_config(&cfg);
  nw_estimate fits, big;
  nw_estimate_train(&cfg, 8, 8, 0, &fits);
  nw_estimate_train(&cfg, 32, 5, 0, &big); /* the shortest possible batch */
  assert_true(fits.total < big.total);
  char mem[64];
  set_memory(mem, sizeof mem, (fits.total + big.total) / 2.0);
  const char *sets[] = {mem, "--set=batch.micro=32", "--set=train.steps=3",
                        NULL};
  expect_oom(&c, run_trainer(&c, sets));
  assert_true(c.rep.phase == NW_PHASE_TRAIN_FORWARD ||
              c.rep.phase == NW_PHASE_TRAIN_BACKWARD);
  assert_int_equal(c.rep.step, 0);
  assert_int_equal(c.rep.micro_step, 0);
  assert_int_equal(c.rep.set.micro, 32);
  assert_int_equal(c.rep.set.accum, 1);
  assert_true(c.rep.requested_category == NW_MEM_ACTIVATIONS ||
              c.rep.requested_category == NW_MEM_ATTENTION);
  assert_int_equal(c.rep.kv_cache_bytes, 0);
  assert_int_equal(c.rep.n_procs, 0);
  assert_true(c.rep.seq_len <= 12);
  case_fini(&c);
}

/* (b) sequence-length: the device holds the typical micro-batch, but not
 * one that holds a rare long problem (operands of up to 24 digits). */
static void test_sequence_length(void **state) {
  (void)state;
  oom_case c;
  case_init(&c, "seq");
  nw_config cfg;
  base_config(&cfg);
  nw_estimate typical, longest;
  nw_estimate_train(&cfg, 8, 16, 0, &typical);
  nw_estimate_train(&cfg, 8, 60, 0, &longest);
  char mem[64];
  set_memory(mem, sizeof mem, (typical.total + longest.total) / 2.0);
  const char *sets[] = {mem, "--set=data.long_fraction=0.03",
                        "--set=train.steps=200", NULL};
  expect_oom(&c, run_trainer(&c, sets));
  assert_true(c.rep.phase == NW_PHASE_TRAIN_FORWARD ||
              c.rep.phase == NW_PHASE_TRAIN_BACKWARD);
  assert_true(c.rep.seq_len > 30);
  assert_true(c.rep.median_seq_len > 0 && c.rep.median_seq_len < 16);
  assert_int_equal(c.rep.max_seq_len, 96);
  assert_int_equal(c.rep.kv_cache_bytes, 0);
  assert_int_equal(c.rep.set.micro, 8);
  printf("sequence-length OOM at step %d: batch length %d, median %d\n",
         c.rep.step, c.rep.seq_len, c.rep.median_seq_len);
  case_fini(&c);
}

/* (c) eval-cache: the kv-cache an evaluation keeps (eval.release_cache =
 * false, the default) no longer leaves room for the next training step. */
static void test_eval_cache(void **state) {
  (void)state;
  oom_case c;
  case_init(&c, "kv");
  nw_config cfg;
  base_config(&cfg);
  cfg.eval.batch = 16;
  cfg.eval.every = 5;
  /* It fits: training at any length of these problems, the first
   * evaluation (no cache yet), and generation. It does not fit: training
   * with the cache kept. */
  nw_estimate train, with_kv, first_eval;
  uint64_t kv = nw_estimate_kept_kv(&cfg);
  nw_estimate_train(&cfg, 8, 8, 0, &train);
  nw_estimate_train(&cfg, 8, 5, kv, &with_kv);
  nw_config released = cfg;
  released.eval.release_cache = 1;
  nw_estimate_eval(&released, 8, &first_eval);
  double need = train.total > first_eval.total ? (double)train.total
                                               : (double)first_eval.total;
  assert_true(need < with_kv.total);
  double cap = (need + with_kv.total) / 2.0;
  char mem[64];
  set_memory(mem, sizeof mem, cap);
  const char *sets[] = {mem,
                        "--set=eval.every=5",
                        "--set=eval.batch=16",
                        "--set=eval.batches=1",
                        "--set=eval.generate=16",
                        "--set=train.steps=20",
                        NULL};
  expect_oom(&c, run_trainer(&c, sets));
  assert_true(c.rep.phase == NW_PHASE_TRAIN_FORWARD ||
              c.rep.phase == NW_PHASE_TRAIN_BACKWARD);
  assert_int_equal(c.rep.kv_cache_bytes, kv);
  assert_true(c.rep.steps_since_eval >= 0);
  assert_int_equal(c.rep.set.release_cache, 0);
  /* the same settings with the cache released train to the end */
  const char *release[] = {mem,
                           "--set=eval.every=5",
                           "--set=eval.batch=16",
                           "--set=eval.batches=1",
                           "--set=eval.generate=16",
                           "--set=train.steps=12",
                           "--set=eval.release_cache=true",
                           NULL};
  int rc = run_trainer(&c, release);
  if (rc != 0)
    fail_msg("with the cache released: exit %d\n%s", rc, c.out);
  case_fini(&c);
}

/* (d) duplicate-process: a second trainer of the same run on the same
 * device takes memory the first one needs. */
static void test_duplicate(void **state) {
  (void)state;
  oom_case c;
  case_init(&c, "dup");
  nw_config cfg;
  base_config(&cfg);
  nw_estimate one, st;
  nw_estimate_train(&cfg, 8, 8, 0, &one);
  nw_estimate_static(&cfg, &st);
  /* one trainer fits; a second one's parameters fit beside it, not its
   * gradients */
  char mem[64];
  set_memory(mem, sizeof mem,
             one.total + st.bytes[NW_MEM_PARAMS] +
                 st.bytes[NW_MEM_GRADS] / 2.0);
  /* the first trainer: long enough to be running when the second starts */
  pid_t first = fork();
  assert_true(first >= 0);
  if (first == 0) {
    /* a run directory of its own (one trainer per directory: the second
     * would be refused, exit 73) with the same run id: a duplicate */
    char dirset[360], devset[128], idset[128];
    snprintf(dirset, sizeof dirset, "--set=run.dir=%s/first", c.dir);
    snprintf(devset, sizeof devset, "--set=device.name=%s", c.device);
    snprintf(idset, sizeof idset, "--set=run.id=dup-%d", (int)getppid());
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl(NW_TRAIN_BIN, NW_TRAIN_BIN, dirset, devset, mem, idset,
          "--set=data.long_fraction=0", "--set=eval.every=0",
          "--set=train.steps=100000", (char *)NULL);
    _exit(127);
  }
  /* wait until it holds its memory: it is listed with bytes on the device */
  int held = 0;
  for (int i = 0; i < 400 && !held; i++) {
    nw_vdev_proc procs[8];
    int n = 0;
    char err[256];
    if (nw_vdev_list_by_name(c.device, procs, 8, &n, NULL, err, sizeof err) ==
            0 &&
        n == 1 && procs[0].pid == first &&
        procs[0].bytes >= (uint64_t)(one.total * 0.9))
      held = 1;
    else
      usleep(25000);
  }
  assert_true(held);
  char idset[128];
  snprintf(idset, sizeof idset, "--set=run.id=dup-%d", (int)getpid());
  const char *sets[] = {mem, idset, "--set=train.steps=3", NULL};
  int rc = run_trainer(&c, sets);
  kill(first, SIGKILL);
  waitpid(first, NULL, 0);
  expect_oom(&c, rc);
  /* it could not even hold its parameters and gradients */
  assert_int_equal(c.rep.phase, NW_PHASE_INIT);
  assert_true(c.rep.requested_category == NW_MEM_PARAMS ||
              c.rep.requested_category == NW_MEM_GRADS);
  assert_int_equal(c.rep.n_procs, 1);
  assert_int_equal(c.rep.procs[0].pid, first);
  assert_string_equal(c.rep.procs[0].run_id, c.rep.run_id);
  assert_true(c.rep.procs[0].bytes > 0);
  assert_int_equal(c.rep.procs[0].uid, getuid());
  case_fini(&c);
}

static uint64_t sum_bytes(const uint64_t *b) {
  uint64_t t = 0;
  for (int i = 0; i < NW_MEM_NCAT; i++)
    t += b[i];
  return t;
}

/* Runs one phase case: a one-layer model on single-digit problems (every
 * micro-batch pads to 5 or 6 tokens) on a device of `cap` bytes of which
 * another process (this test, as a foreign run) holds `held`; expects an OOM in
 * `phase`. */
static void phase_case(const char *tag, double cap, double held,
                       const char *const *extra, nw_phase phase,
                       nw_mem_category cat) {
  oom_case c;
  case_init(&c, tag);
  nw_vdev *other = NULL;
  if (held > 0) {
    char err[256];
    if (nw_vdev_open(&other, c.device, (uint64_t)cap, "another-run", err,
                     sizeof err) < 0)
      fail_msg("%s", err);
    assert_int_equal(nw_vdev_reserve(other, (uint64_t)held), 0);
  }
  char mem[64];
  set_memory(mem, sizeof mem, cap);
  const char *sets[16] = {mem, "--set=data.short_max_digits=1",
                          "--set=train.steps=2", "--set=model.n_layer=1"};
  int n = 4;
  for (int i = 0; extra && extra[i]; i++)
    sets[n++] = extra[i];
  sets[n] = NULL;
  expect_oom(&c, run_trainer(&c, sets));
  if (c.rep.phase != phase)
    fail_msg("%s: phase %s, expected %s", tag, nw_phase_name(c.rep.phase),
             nw_phase_name(phase));
  assert_int_equal(c.rep.requested_category, cat);
  if (other) {
    assert_int_equal(c.rep.n_procs, 1);
    assert_string_equal(c.rep.procs[0].run_id, "another-run");
  }
  nw_vdev_close(other);
  case_fini(&c);
}

/* The phases the four causes do not reach, each from a device size that
 * fits everything before it and not the phase's own blocks: the
 * backward, the optimizer (AdamW's moments are allocated at the first
 * step, as in PyTorch), the evaluation forward and generation. The
 * checkpoint phase comes with the checkpoints. */
static void test_every_phase(void **state) {
  (void)state;
  nw_config cfg;
  base_config(&cfg);
  const int B = 8, Tlo = 5, Thi = 6;
  cfg.model.n_layer = 1; /* a backward bigger than a forward's length step */
  nw_estimate st;
  nw_estimate_static(&cfg, &st);
  uint64_t pg = st.bytes[NW_MEM_PARAMS] + st.bytes[NW_MEM_GRADS];
  uint64_t opt = st.bytes[NW_MEM_OPTIMIZER];
  uint64_t fwd_hi[NW_MEM_NCAT], all_lo[NW_MEM_NCAT], all_hi[NW_MEM_NCAT];
  nw_model_call_bytes(&cfg.model, B, Thi, NW_CALL_TRAIN_FORWARD, fwd_hi);
  nw_model_call_bytes(&cfg.model, B, Tlo, NW_CALL_TRAIN, all_lo);
  nw_model_call_bytes(&cfg.model, B, Thi, NW_CALL_TRAIN, all_hi);

  /* (init: a device too small for the model is a config error, so an OOM
   * at init needs another process on the device: test_duplicate) */
  /* train-backward: the forward of the longest batch fits, no backward */
  assert_true(sum_bytes(fwd_hi) < sum_bytes(all_lo));
  phase_case("bwd", pg + opt + (sum_bytes(fwd_hi) + sum_bytes(all_lo)) / 2.0, 0,
             NULL, NW_PHASE_TRAIN_BACKWARD, NW_MEM_ACTIVATIONS);

  /* optimizer: a device that holds everything, but another run holds part
   * of it: a whole forward and backward fits beside it, the moments do
   * not (a device too small for the moments alone is a config error) */
  double cap = (double)(pg + opt + sum_bytes(all_hi)) * 1.25;
  phase_case("opt", cap, cap - (pg + sum_bytes(all_hi) + opt / 4.0), NULL,
             NW_PHASE_OPTIMIZER, NW_MEM_OPTIMIZER);

  /* eval-forward: training fits; a validation batch of 128 does not */
  nw_config ec = cfg;
  ec.eval.batch = 128;
  uint64_t eval_lo[NW_MEM_NCAT];
  nw_model_call_bytes(&ec.model, ec.eval.batch, Tlo, NW_CALL_EVAL, eval_lo);
  double train_peak = (double)(pg + opt + sum_bytes(all_hi));
  assert_true(train_peak < pg + opt + sum_bytes(eval_lo));
  const char *evf[] = {"--set=eval.every=1", "--set=eval.batch=128",
                       "--set=eval.batches=1", "--set=eval.generate=0", NULL};
  phase_case("evf", (train_peak + pg + opt + sum_bytes(eval_lo)) / 2.0, 0, evf,
             NW_PHASE_EVAL_FORWARD, NW_MEM_ACTIVATIONS);

  /* eval-generate: training and the validation forward fit, the kv-cache
   * of 64 rows of 96 positions does not */
  ec.eval.batch = 64;
  uint64_t kv =
      nw_model_kv_bytes_for(&ec.model, ec.eval.batch, ec.model.max_seq_len);
  uint64_t eval_hi[NW_MEM_NCAT];
  nw_model_call_bytes(&ec.model, ec.eval.batch, Thi, NW_CALL_EVAL, eval_hi);
  /* The first evaluation runs before the first step, when AdamW's moments
   * do not exist yet: the cache must not fit beside the parameters alone,
   * while training (moments included) and the validation forward do. */
  double before = train_peak;
  if (pg + sum_bytes(eval_hi) > before)
    before = (double)(pg + sum_bytes(eval_hi));
  assert_true(before < pg + kv);
  const char *evg[] = {"--set=eval.every=1", "--set=eval.batch=64",
                       "--set=eval.batches=1", "--set=eval.generate=8", NULL};
  phase_case("evg", (before + pg + kv) / 2.0, 0, evg, NW_PHASE_EVAL_GENERATE,
             NW_MEM_KV_CACHE);
}

/* Bad input: a device too small for the model, and a shared-memory segment
 * that is not a nightwatch device, are config errors that say why. */
static void test_bad_device(void **state) {
  (void)state;
  oom_case c;
  case_init(&c, "bad");
  const char *small[] = {"--set=device.memory=4MiB", NULL};
  assert_int_equal(run_trainer(&c, small), NW_EXIT_CONFIG);
  assert_non_null(strstr(c.out, "device.memory"));
  assert_non_null(strstr(c.out, "cannot hold the model"));

  char path[256];
  snprintf(path, sizeof path, "/dev/shm/nightwatch-vdev-%s", c.device);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  for (int i = 0; i < 8192; i++)
    fputc('x', f);
  fclose(f);
  const char *foreign[] = {"--set=device.memory=64MiB", NULL};
  assert_int_equal(run_trainer(&c, foreign), NW_EXIT_CONFIG);
  assert_non_null(strstr(c.out, path));
  assert_non_null(strstr(c.out, "not a nightwatch virtual device"));
  case_fini(&c);
}

/* --device-ps lists the processes on a device, as nvidia-smi does. */
static void test_device_ps(void **state) {
  (void)state;
  oom_case c;
  case_init(&c, "ps");
  nw_vdev *v;
  char err[256];
  assert_int_equal(
      nw_vdev_open(&v, c.device, 64u << 20, "run-ps-1", err, sizeof err), 0);
  assert_int_equal(nw_vdev_reserve(v, 5u << 20), 0);
  char devset[128];
  snprintf(devset, sizeof devset, "--set=device.name=%s", c.device);
  char *argv[] = {(char *)NW_TRAIN_BIN, "--device-ps", devset, NULL};
  assert_int_equal(nw_test_run_cmd(argv, c.out, sizeof c.out), 0);
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  assert_non_null(strstr(c.out, pid));
  assert_non_null(strstr(c.out, "run-ps-1"));
  nw_vdev_close(v);
  case_fini(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation),
      cmocka_unit_test(test_sequence_length),
      cmocka_unit_test(test_eval_cache),
      cmocka_unit_test(test_duplicate),
      cmocka_unit_test(test_every_phase),
      cmocka_unit_test(test_bad_device),
      cmocka_unit_test(test_device_ps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
