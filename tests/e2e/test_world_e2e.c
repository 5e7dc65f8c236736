/* test_world_e2e.c — `nightwatch run` with several ranks on CPU virtual
 * devices (one per rank, "NAME.r"): each of the four causes arises on one
 * rank from settings a user could write, the supervisor classifies it from
 * that rank's report, applies the policy to every rank, and restarts them
 * together from the same checkpoint with zero completed steps lost. After
 * every run no trainer of it is left, and no shared-memory segment. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/config.h"
#include "cli/fault_recipe.h"
#include "e2e/fixture.h"
#include "testutil.h"

/* A case of `world` ranks on the small model, checkpoints every 5 steps. */
static nw_case *world_case(const char *tag, int world) {
  nw_case *c = nw_case_new(tag);
  nw_case_world(c, world);
  nw_case_set(c, "model.n_layer=2");
  nw_case_set(c, "model.n_embd=64");
  nw_case_set(c, "checkpoint.every=5");
  return c;
}

/* The model every case trains, as the estimator sees it. */
static void small_config(nw_config *cfg) {
  nw_config_defaults(cfg);
  cfg->model.n_layer = 2;
  cfg->model.n_embd = 64;
  cfg->eval.every = 0;
  cfg->data.long_fraction = 0;
}

/* The common end: one recovery of `cause` (or more of it), every rank
 * restarted together, zero steps lost, the run finished. */
static void check_recovered(nw_case *c, int rc, const char *cause, int steps) {
  if (rc != 0)
    nw_case_dump(c);
  assert_int_equal(rc, 0);
  json_t *a = nw_case_ledger(c);
  json_t *fail = nw_test_ledger_find(a, "oom", 0);
  if (!fail || strcmp(nw_test_json_str(fail, "cause"), cause)) {
    nw_case_dump(c);
    fail_msg("expected an oom of cause %s", cause);
  }
  assert_int_equal(nw_test_json_int(fail, "world"), c->world);
  int rank = nw_test_json_int(fail, "rank");
  assert_true(rank >= 0 && rank < c->world);
  char dev[96];
  snprintf(dev, sizeof dev, "%s.%d", c->device, rank);
  assert_string_equal(nw_test_json_str(fail, "device"), dev);
  json_t *rec = nw_test_ledger_find(a, "recovery", 0);
  assert_non_null(rec);
  assert_string_equal(nw_test_json_str(rec, "cause"), cause);
  assert_int_equal(nw_test_json_int(json_object_get(rec, "after"), "world"),
                   c->world);
  assert_int_equal(
      nw_test_json_int(json_object_get(rec, "after"), "effective"),
      nw_test_json_int(json_object_get(rec, "before"), "effective"));
  json_t *res = nw_test_ledger_find(a, "resumed", 0);
  assert_non_null(res);
  assert_int_equal(nw_test_json_int(res, "steps_lost"), 0);
  json_t *fin = nw_test_ledger_find(a, "finish", 0);
  if (!fin) {
    nw_case_dump(c);
    fail_msg("the run did not finish");
  }
  assert_int_equal(nw_test_json_int(fin, "step"), steps);
  assert_true(nw_test_ledger_count(a, "start") >= 2);
  printf("%s on rank %d of %d: %s; resumed at step %d, %d steps lost, "
         "%.2f s to recover\n",
         cause, rank, c->world, nw_test_json_str(rec, "summary"),
         nw_test_json_int(res, "step"), nw_test_json_int(res, "steps_lost"),
         json_number_value(json_object_get(res, "seconds_to_recover")));
  nw_case_assert_nothing_left(c, a);
  json_decref(a);
}

static void test_activation_two_ranks(void **state) {
  (void)state;
  nw_case *c = world_case("wact", 2);
  nw_config cfg;
  small_config(&cfg);
  nw_case_set(c, "device.memory=%llu",
              (unsigned long long)nw_recipe_activation(&cfg));
  nw_case_set(c, "batch.effective=64");
  nw_case_set(c, "batch.micro=32");
  nw_case_set(c, "eval.every=0");
  nw_case_set(c, "data.long_fraction=0");
  nw_case_set(c, "train.steps=12");
  check_recovered(c, nw_case_run(c, NULL, 120), "activation", 12);
  nw_case_free(c);
}

static void test_sequence_length_one_rank(void **state) {
  (void)state;
  nw_case *c = world_case("wseq", 2);
  nw_config cfg;
  small_config(&cfg);
  nw_case_set(c, "device.memory=%llu",
              (unsigned long long)nw_recipe_sequence_length(&cfg));
  nw_case_set(c, "batch.effective=32");
  nw_case_set(c, "eval.every=0");
  nw_case_set(c, "data.long_fraction=0.02");
  nw_case_set(c, "data.long_max_digits=48");
  nw_case_set(c, "train.steps=30");
  check_recovered(c, nw_case_run(c, NULL, 180), "sequence-length", 30);
  nw_case_free(c);
}

static void test_eval_cache_rank0(void **state) {
  (void)state;
  nw_case *c = world_case("wkv", 2);
  nw_config cfg;
  small_config(&cfg);
  nw_case_set(c, "device.memory=%llu",
              (unsigned long long)nw_recipe_eval_cache(&cfg));
  nw_case_set(c, "data.long_fraction=0");
  nw_case_set(c, "eval.every=%d", NW_RECIPE_EVAL_EVERY);
  nw_case_set(c, "eval.batch=%d", NW_RECIPE_EVAL_BATCH);
  nw_case_set(c, "eval.batches=1");
  nw_case_set(c, "eval.generate=16");
  nw_case_set(c, "eval.release_cache=false");
  nw_case_set(c, "train.steps=12");
  check_recovered(c, nw_case_run(c, NULL, 180), "eval-cache", 12);
  nw_case_free(c);
}

/* A stale nightwatch-train of the same run id holds the device of the last
 * rank: only that rank fails (at init), the stale process is killed, and
 * every rank restarts. */
static void dup_case(int world) {
  char tag[16];
  snprintf(tag, sizeof tag, "wdup%d", world);
  nw_case *c = world_case(tag, world);
  nw_config cfg;
  small_config(&cfg);
  uint64_t one_total = 0;
  unsigned long long mem = nw_recipe_duplicate(&cfg, &one_total);
  char run_id[64], mem_set[64], rid_set[96], dev[96];
  snprintf(run_id, sizeof run_id, "wdup-%d-%d", (int)getpid(), world);
  snprintf(mem_set, sizeof mem_set, "device.memory=%llu", mem);
  snprintf(rid_set, sizeof rid_set, "run.id=%s", run_id);
  snprintf(dev, sizeof dev, "%s.%d", c->device, world - 1);
  const char *stale_sets[] = {mem_set,
                              rid_set,
                              "model.n_layer=2",
                              "model.n_embd=64",
                              "data.long_fraction=0",
                              "eval.every=0",
                              "train.steps=1000000",
                              "checkpoint.every=0",
                              "world.size=1",
                              NULL};
  /* holding a training step's memory on that device, stopped */
  pid_t stale = nw_case_stale_trainer(c, dev, stale_sets, one_total * 9 / 10);
  nw_case_set(c, "%s", mem_set);
  nw_case_set(c, "%s", rid_set);
  nw_case_set(c, "batch.effective=%d", 8 * world);
  nw_case_set(c, "eval.every=0");
  nw_case_set(c, "data.long_fraction=0");
  nw_case_set(c, "train.steps=10");
  int rc = nw_case_run(c, NULL, 120);
  if (nw_case_stale_exit(c, 15) < 0) {
    nw_case_dump(c);
    fail_msg("the stale trainer %d was not stopped", (int)stale);
  }
  check_recovered(c, rc, "duplicate-process", 10);
  json_t *ledger = nw_case_ledger(c);
  json_t *oom = nw_test_ledger_find(ledger, "oom", 0);
  assert_int_equal(nw_test_json_int(oom, "rank"), world - 1);
  json_t *kill_e = nw_test_ledger_find(ledger, "kill", 0);
  assert_non_null(kill_e);
  assert_int_equal(
      json_integer_value(json_array_get(json_object_get(kill_e, "pids"), 0)),
      stale);
  json_decref(ledger);
  nw_case_free(c);
}

static void test_duplicate_last_rank_of_two(void **state) {
  (void)state;
  dup_case(2);
}

static void test_duplicate_last_rank_of_four(void **state) {
  (void)state;
  dup_case(4);
}

/* A run long enough that a rank is still training when the test acts on
 * it: the small model does about 40 steps a second, and status.json,
 * which the test waits on, is written every 0.25 s. */
#define LONG_STEPS 300

static void long_run_sets(nw_case *c, int steps) {
  nw_case_set(c, "eval.every=0");
  nw_case_set(c, "data.long_fraction=0");
  nw_case_set(c, "train.steps=%d", steps);
}

/* The step of the newest checkpoint in the run directory (a write in
 * progress is a temporary until its rename makes it durable); -1 when there
 * is none. */
static int newest_checkpoint(const nw_case *c) {
  char path[400];
  snprintf(path, sizeof path, "%s/checkpoints", c->dir);
  DIR *d = opendir(path);
  if (!d)
    return -1;
  int newest = -1, step, end;
  struct dirent *e;
  while ((e = readdir(d)))
    if (sscanf(e->d_name, "ckpt-%d.h5%n", &step, &end) == 1 &&
        e->d_name[end] == '\0' && step > newest)
      newest = step;
  closedir(d);
  return newest;
}

/* A rank killed from outside (the kernel's OOM killer, a crash): every rank
 * stops and the world restarts from the newest checkpoint. Checkpoints are
 * written in the background, so how many steps that is depends on timing;
 * what the design guarantees is that nothing durable at the kill is lost:
 * the resume is from that checkpoint or a newer one, and the run finishes
 * its last step. */
static void test_crash_one_rank(void **state) {
  (void)state;
  nw_case *c = world_case("wcrash", 2);
  long_run_sets(c, LONG_STEPS);
  nw_case_start(c, NULL);
  int pids[2];
  int reached = nw_case_wait_step(c, 7, 60, pids);
  assert_int_equal(kill(pids[1], SIGKILL), 0);
  int durable = newest_checkpoint(c);
  int rc = nw_case_wait(c, 120);
  if (rc != 0)
    nw_case_dump(c);
  assert_int_equal(rc, 0);
  json_t *a = nw_case_ledger(c);
  json_t *crash = nw_test_ledger_find(a, "crash", 0);
  assert_non_null(crash);
  assert_int_equal(nw_test_json_int(crash, "rank"), 1);
  assert_int_equal(nw_test_json_int(crash, "signal"), SIGKILL);
  assert_non_null(nw_test_ledger_find(a, "recovery", 0));
  json_t *res = nw_test_ledger_find(a, "resumed", 0);
  assert_non_null(res);
  int from = nw_test_json_int(res, "resumed_from");
  printf("rank 1 killed at step %d or later, the newest checkpoint then "
         "was step %d; resumed from step %d (failed at %d, %d steps lost)\n",
         reached, durable, from, nw_test_json_int(res, "failed_step"),
         nw_test_json_int(res, "steps_lost"));
  /* from a checkpoint (every 5 steps; a peer's failure writes none), never
   * one older than was durable when the rank died */
  assert_int_equal(from % 5, 0);
  assert_true(from >= durable);
  assert_int_equal(nw_test_json_int(res, "steps_lost"),
                   nw_test_json_int(res, "failed_step") - from);
  assert_int_equal(
      nw_test_json_int(nw_test_ledger_find(a, "finish", 0), "step"),
      LONG_STEPS);
  nw_case_assert_nothing_left(c, a);
  json_decref(a);
  nw_case_free(c);
}

/* A rank that stops answering (SIGSTOP): no rank stays blocked; the hang is
 * seen, every rank is stopped and the world restarts. */
static void test_hang_one_rank(void **state) {
  (void)state;
  nw_case *c = world_case("whang", 2);
  long_run_sets(c, LONG_STEPS);
  nw_case_set(c, "supervisor.hang_timeout=3");
  nw_case_set(c, "supervisor.kill_grace=3");
  nw_case_start(c, NULL);
  int pids[2];
  nw_case_wait_step(c, 5, 60, pids);
  assert_int_equal(kill(pids[1], SIGSTOP), 0);
  int rc = nw_case_wait(c, 120);
  if (rc != 0)
    nw_case_dump(c);
  assert_int_equal(rc, 0);
  json_t *a = nw_case_ledger(c);
  assert_non_null(nw_test_ledger_find(a, "hang", 0));
  json_t *rec = nw_test_ledger_find(a, "recovery", 0);
  assert_non_null(rec);
  assert_string_equal(nw_test_json_str(rec, "cause"), "hang");
  assert_int_equal(
      nw_test_json_int(nw_test_ledger_find(a, "finish", 0), "step"),
      LONG_STEPS);
  nw_case_assert_nothing_left(c, a);
  json_decref(a);
  nw_case_free(c);
}

/* SIGTERM to the supervisor: every rank stops at the same step boundary,
 * one stop checkpoint (rank 0's), exit 0, nothing left. */
static void test_stop_all_ranks(void **state) {
  (void)state;
  nw_case *c = world_case("wstop", 2);
  long_run_sets(c, 1000000);
  nw_case_start(c, NULL);
  int pids[2];
  nw_case_wait_step(c, 3, 60, pids);
  assert_int_equal(kill(c->sup, SIGTERM), 0);
  int rc = nw_case_wait(c, 60);
  if (rc != 0)
    nw_case_dump(c);
  assert_int_equal(rc, 0);
  json_t *a = nw_case_ledger(c);
  json_t *stop = nw_test_ledger_find(a, "stop", 0);
  assert_non_null(stop);
  assert_true(json_is_true(json_object_get(stop, "checkpoint")));
  char ck[400];
  snprintf(ck, sizeof ck, "%s/checkpoints/ckpt-%010d.h5", c->dir,
           nw_test_json_int(stop, "step"));
  if (access(ck, F_OK) != 0)
    fail_msg("no stop checkpoint %s", ck);
  nw_case_assert_nothing_left(c, a);
  json_decref(a);
  nw_case_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_activation_two_ranks, nw_case_teardown),
      cmocka_unit_test_teardown(test_sequence_length_one_rank,
                                nw_case_teardown),
      cmocka_unit_test_teardown(test_eval_cache_rank0, nw_case_teardown),
      cmocka_unit_test_teardown(test_duplicate_last_rank_of_two,
                                nw_case_teardown),
      cmocka_unit_test_teardown(test_duplicate_last_rank_of_four,
                                nw_case_teardown),
      cmocka_unit_test_teardown(test_crash_one_rank, nw_case_teardown),
      cmocka_unit_test_teardown(test_hang_one_rank, nw_case_teardown),
      cmocka_unit_test_teardown(test_stop_all_ranks, nw_case_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
