/* test_policy_decide.c — the policy's decisions (recovery/policy.h,
 * nw_policy_decide): each chain escalates and gives up as its file says,
 * the limits' window and backoff, and the halve-micro-batch property (the
 * effective batch never changes). test_policy.c tests the file format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <unistd.h>

#include "base/config.h"
#include "base/error.h"
#include "base/ini.h"
#include "base/keytable.h"
#include "protocol/world.h"
#include "recovery/cause.h"
#include "recovery/policy.h"
#include "testutil.h"

#ifndef NW_SOURCE_DIR
#error "NW_SOURCE_DIR must name the source tree"
#endif

/* ---- helpers ---- */

static char g_dir[512];

static int group_setup(void **state) {
  (void)state;
  nw_test_tmpdir(g_dir, sizeof g_dir, "policy");
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  return nw_test_rmdir_flat(g_dir);
}

/* Errors as the sink saw them. */
typedef struct {
  int n;
  int line[32];
  char msg[32][512];
} sink_log;

/* ---- decisions ---- */

static nw_policy roomy_policy(void) {
  nw_policy p;
  nw_policy_defaults(&p);
  p.limits.max_recoveries = NW_POLICY_MAX_RECOVERIES;
  return p;
}

static void test_activation_escalates_then_gives_up(void **state) {
  (void)state;
  nw_policy p = roomy_policy();
  nw_config cfg;
  nw_config_defaults(&cfg);
  nw_world_resolve(&cfg); /* as both programs do: one rank on the CPU */
  assert_int_equal(cfg.batch.world, 1);
  assert_int_equal(cfg.batch.effective, 32);
  assert_int_equal(cfg.batch.micro, 8);
  assert_int_equal(cfg.model.max_seq_len, 96);
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  double now = 1000;

  int micro[] = {4, 2, 1};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(
        nw_policy_decide(&p, NW_CAUSE_ACTIVATION, &cfg, &h, now, &d), 0);
    assert_false(d.give_up);
    assert_int_equal(d.action, NW_ACTION_HALVE_MICRO_BATCH);
    assert_int_equal(d.link, 0);
    assert_int_equal(d.attempt, i + 1);
    assert_int_equal(d.after.batch.micro, micro[i]);
    assert_int_equal(d.after.batch.effective, 32);
    assert_int_equal(nw_config_accum(&d.after.batch) * d.after.batch.micro *
                         d.after.batch.world,
                     32);
    if (i == 0)
      assert_string_equal(d.summary, "micro-batch 8 -> 4, accumulation 4 -> "
                                     "8, effective 32 unchanged");
    memcpy(&cfg, &d.after, sizeof cfg);
    now += 10;
  }
  int len[] = {72, 54, 40, 32};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(
        nw_policy_decide(&p, NW_CAUSE_ACTIVATION, &cfg, &h, now, &d), 0);
    assert_false(d.give_up);
    assert_int_equal(d.action, NW_ACTION_SHORTEN_SEQUENCES);
    assert_int_equal(d.link, 1);
    assert_int_equal(d.after.data.max_len, len[i]);
    assert_int_equal(d.after.model.max_seq_len, 96); /* never the model */
    assert_int_equal(d.after.batch.micro, 1);
    assert_int_equal(d.after.batch.effective, 32);
    assert_non_null(strstr(d.summary, "halve-micro-batch exhausted"));
    memcpy(&cfg, &d.after, sizeof cfg);
    now += 10;
  }
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_ACTIVATION, &cfg, &h, now, &d),
                   0);
  assert_true(d.give_up);
  assert_int_equal(d.action, NW_ACTION_GIVE_UP);
  assert_non_null(strstr(d.reason, "every action of the activation chain"));
  assert_non_null(strstr(d.summary, "at the floor 32"));
  assert_memory_equal(&d.after, &cfg, sizeof cfg); /* nothing changed */
  assert_int_equal(h.total, 7);
}

static void test_sequence_length_shortens_first(void **state) {
  (void)state;
  nw_policy p = roomy_policy();
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.data.max_len = 64;
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  assert_int_equal(
      nw_policy_decide(&p, NW_CAUSE_SEQUENCE_LENGTH, &cfg, &h, 0, &d), 0);
  assert_int_equal(d.action, NW_ACTION_SHORTEN_SEQUENCES);
  assert_int_equal(d.after.data.max_len, 48);
  assert_int_equal(d.after.batch.micro, 8);
  memcpy(&cfg, &d.after, sizeof cfg);
  assert_int_equal(
      nw_policy_decide(&p, NW_CAUSE_SEQUENCE_LENGTH, &cfg, &h, 1, &d), 0);
  assert_int_equal(d.after.data.max_len, 36);
  memcpy(&cfg, &d.after, sizeof cfg);
  assert_int_equal(
      nw_policy_decide(&p, NW_CAUSE_SEQUENCE_LENGTH, &cfg, &h, 2, &d), 0);
  assert_int_equal(d.after.data.max_len, 32); /* 27 is below the floor */
  memcpy(&cfg, &d.after, sizeof cfg);
  assert_int_equal(
      nw_policy_decide(&p, NW_CAUSE_SEQUENCE_LENGTH, &cfg, &h, 3, &d), 0);
  assert_int_equal(d.action, NW_ACTION_HALVE_MICRO_BATCH);
  assert_int_equal(d.after.batch.micro, 4);
  assert_int_equal(d.after.data.max_len, 32);
}

static void test_eval_cache_chain(void **state) {
  (void)state;
  nw_policy p = roomy_policy();
  nw_config cfg;
  nw_config_defaults(&cfg);
  assert_int_equal(cfg.eval.release_cache, 0);
  assert_int_equal(cfg.eval.batch, 32);
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_EVAL_CACHE, &cfg, &h, 0, &d),
                   0);
  assert_int_equal(d.action, NW_ACTION_FREE_CACHE);
  assert_int_equal(d.after.eval.release_cache, 1);
  assert_int_equal(d.trim_after_eval, 1);
  assert_int_equal(d.after.eval.batch, 32);
  memcpy(&cfg, &d.after, sizeof cfg);
  int batch[] = {16, 8, 4, 2, 1};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(
        nw_policy_decide(&p, NW_CAUSE_EVAL_CACHE, &cfg, &h, i + 1, &d), 0);
    assert_int_equal(d.action, NW_ACTION_HALVE_EVAL_BATCH);
    assert_int_equal(d.trim_after_eval, 0);
    assert_int_equal(d.after.eval.batch, batch[i]);
    assert_int_equal(d.after.batch.micro, 8); /* training untouched */
    memcpy(&cfg, &d.after, sizeof cfg);
  }
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_EVAL_CACHE, &cfg, &h, 9, &d),
                   0);
  assert_true(d.give_up);
  /* an odd batch rounds up */
  cfg.eval.batch = 5;
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_EVAL_CACHE, &cfg, &h, 10, &d),
                   0);
  assert_int_equal(d.after.eval.batch, 3);
}

static void test_duplicate_and_unknown(void **state) {
  (void)state;
  nw_policy p = roomy_policy();
  nw_config cfg;
  nw_config_defaults(&cfg);
  snprintf(cfg.run.id, sizeof cfg.run.id, "run-7");
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  double waits[] = {30, 60, 120, 240, 480, 600, 600};
  for (int i = 0; i < 7; i++) {
    assert_int_equal(nw_policy_decide(&p, NW_CAUSE_DUPLICATE, &cfg, &h, i, &d),
                     0);
    assert_false(d.give_up); /* never exhausted: bounded by the limits */
    assert_int_equal(d.action, NW_ACTION_KILL_DUPLICATE);
    assert_true(d.grace_seconds == 10);
    assert_int_equal(d.foreign, NW_FOREIGN_WAIT);
    assert_true(d.foreign_wait_seconds == waits[i]);
    assert_memory_equal(&d.after, &cfg, sizeof cfg);
    assert_non_null(strstr(d.summary, "run-7"));
    assert_non_null(strstr(d.summary, "never killed"));
  }
  /* another cause in between: the consecutive count starts again */
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, 8, &d), 0);
  assert_int_equal(d.action, NW_ACTION_RESTART);
  assert_int_equal(d.attempt, 1);
  assert_memory_equal(&d.after, &cfg, sizeof cfg);
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_DUPLICATE, &cfg, &h, 9, &d),
                   0);
  assert_int_equal(d.attempt, 1);
  assert_true(d.foreign_wait_seconds == 30);
}

static void test_give_up_link(void **state) {
  (void)state;
  nw_policy p;
  char err[1024];
  assert_int_equal(nw_policy_parse_string("t",
                                          "[eval-cache]\n"
                                          "actions = free-cache, give-up\n",
                                          &p, NULL, NULL, err, sizeof err),
                   0);
  nw_config cfg;
  nw_config_defaults(&cfg);
  cfg.eval.release_cache = 1;
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_EVAL_CACHE, &cfg, &h, 0, &d),
                   0);
  assert_true(d.give_up);
  assert_int_equal(d.link, 1);
  assert_non_null(strstr(d.reason, "reached give-up"));
  assert_non_null(strstr(d.summary, "free-cache exhausted"));
  assert_int_equal(h.total, 0);
}

static void test_limits_window(void **state) {
  (void)state;
  nw_policy p;
  nw_policy_defaults(&p); /* 8 per 3600 s */
  nw_config cfg;
  nw_config_defaults(&cfg);
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  for (int i = 0; i < 8; i++) {
    assert_int_equal(
        nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, 100.0 * i, &d), 0);
    assert_false(d.give_up);
  }
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, 800, &d),
                   0);
  assert_true(d.give_up);
  assert_non_null(strstr(d.reason, "8 recoveries within 3600 s"));
  /* once the first has left the window, there is room for one more */
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, 3600.5, &d),
                   0);
  assert_false(d.give_up);
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, 3601, &d),
                   0);
  assert_true(d.give_up);
  /* max_recoveries = 0: never recover */
  p.limits.max_recoveries = 0;
  nw_recovery_history_init(&h);
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, 0, &d), 0);
  assert_true(d.give_up);
}

static void test_backoff_grows_caps_and_resets(void **state) {
  (void)state;
  nw_policy p = roomy_policy(); /* 1 s x2 up to 300 s, reset after 600 s */
  nw_config cfg;
  nw_config_defaults(&cfg);
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  double want[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300};
  double now = 0;
  for (int i = 0; i < 12; i++) {
    nw_recovery_history_started(&h, now);
    now += 5; /* a short run */
    assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, now, &d),
                     0);
    assert_true(d.backoff_seconds == want[i]);
    now += d.backoff_seconds;
  }
  /* a run of backoff_reset_seconds was healthy: back to the start */
  nw_recovery_history_started(&h, now);
  now += 600;
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, now, &d),
                   0);
  assert_true(d.backoff_seconds == 1);
  assert_int_equal(d.attempt, 1);
  /* never two starts closer than min_start_interval_seconds */
  p.limits.backoff_initial_seconds = 0;
  p.limits.min_start_interval_seconds = 1;
  nw_recovery_history_init(&h);
  nw_recovery_history_started(&h, 50);
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, &cfg, &h, 50.25, &d),
                   0);
  assert_true(d.backoff_seconds == 0.75);
}

static void test_bad_arguments(void **state) {
  (void)state;
  nw_policy p = roomy_policy();
  nw_config cfg;
  nw_config_defaults(&cfg);
  nw_recovery_history h;
  nw_recovery_history_init(&h);
  nw_decision d;
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_COUNT, &cfg, &h, 0, &d),
                   NW_EINTERNAL);
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_UNKNOWN, NULL, &h, 0, &d),
                   NW_EINTERNAL);
  cfg.batch.micro = 5; /* 32 is not a multiple of 5 */
  assert_int_equal(nw_policy_decide(&p, NW_CAUSE_ACTIVATION, &cfg, &h, 0, &d),
                   NW_ECONFIG);
  assert_int_equal(h.total, 0);
}

/* ---- the property test ---- */

/* Every (effective, world, micro) with effective in 1..256, world in 1..8
 * dividing effective, micro dividing effective/world: halving keeps
 * micro * accum * world == effective, strictly decreases micro to 1, never
 * above old/2, and picks the largest such divisor. */
static void test_halve_micro_batch_property(void **state) {
  (void)state;
  nw_policy p = roomy_policy();
  p.chain[NW_CAUSE_ACTIVATION].n_actions = 1; /* halve-micro-batch only */
  nw_config cfg;
  nw_config_defaults(&cfg);
  long shapes = 0, steps = 0;
  for (int eff = 1; eff <= 256; eff++) {
    for (int world = 1; world <= 8; world++) {
      if (eff % world)
        continue;
      int per_rank = eff / world;
      for (int micro = 1; micro <= per_rank; micro++) {
        if (per_rank % micro)
          continue;
        shapes++;
        cfg.batch.effective = eff;
        cfg.batch.world = world;
        cfg.batch.micro = micro;
        nw_recovery_history h;
        nw_recovery_history_init(&h);
        nw_decision d;
        int guard = 0;
        for (;;) {
          int old = cfg.batch.micro;
          assert_int_equal(
              nw_policy_decide(&p, NW_CAUSE_ACTIVATION, &cfg, &h, guard, &d),
              0);
          if (old == 1) {
            assert_true(d.give_up);
            break;
          }
          steps++;
          assert_false(d.give_up);
          int m = d.after.batch.micro;
          assert_int_equal(d.after.batch.effective, eff);
          assert_int_equal(d.after.batch.world, world);
          assert_true(m >= 1 && m < old && m <= old / 2);
          assert_int_equal(per_rank % m, 0);
          assert_int_equal(m * nw_config_accum(&d.after.batch) * world, eff);
          for (int larger = m + 1; larger <= old / 2; larger++)
            assert_true(per_rank % larger != 0);
          memcpy(&cfg, &d.after, sizeof cfg);
          assert_true(++guard <= 32);
        }
      }
    }
  }
  assert_true(shapes > 2000);
  assert_true(steps > 2000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_activation_escalates_then_gives_up),
      cmocka_unit_test(test_sequence_length_shortens_first),
      cmocka_unit_test(test_eval_cache_chain),
      cmocka_unit_test(test_duplicate_and_unknown),
      cmocka_unit_test(test_give_up_link),
      cmocka_unit_test(test_limits_window),
      cmocka_unit_test(test_backoff_grows_caps_and_resets),
      cmocka_unit_test(test_bad_arguments),
      cmocka_unit_test(test_halve_micro_batch_property),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
