/* test_settings.c — the one list of settings recovery changes
 * (protocol/settings.h) and what is generated from it: the report fields,
 * the trainer's --set arguments, a foreign trainer's environment, the
 * ledger's settings objects, and the table in docs/protocol.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/config.h"
#include "base/error.h"
#include "protocol/ledger.h"
#include "protocol/oom_report.h"
#include "protocol/settings.h"
#include "supervisor/sup_child.h"
#include "supervisor/trainer_env.h"
#include "testutil.h"

static nw_config test_config(void) {
  nw_config c;
  nw_config_defaults(&c);
  c.batch.effective = 64;
  c.batch.micro = 8;
  c.batch.world = 2;
  c.data.max_len = 48;
  c.eval.batch = 3;
  c.eval.release_cache = 1;
  return c;
}

/* The values in force, read from the config (derived ones computed). */
static void test_values_of_config(void **state) {
  (void)state;
  nw_config c = test_config();
  nw_settings s;
  nw_settings_of(&c, &s);
  assert_int_equal(s.micro, 8);
  assert_int_equal(s.accum, 4); /* 64 / (8 x 2) */
  assert_int_equal(s.effective, 64);
  assert_int_equal(s.world, 2);
  assert_int_equal(s.max_len, 48);
  assert_int_equal(s.eval_batch, 3);
  assert_int_equal(s.release_cache, 1);
  c.data.max_len = 0; /* 0: the model's maximum */
  nw_settings_of(&c, &s);
  assert_int_equal(s.max_len, c.model.max_seq_len);
}

/* Ledger keys and report fields: every setting, with its type; the report
 * fields read back to the same values, and a missing or negative one is
 * named. */
static void test_json_both_ways(void **state) {
  (void)state;
  nw_config c = test_config();
  nw_settings s, back;
  nw_settings_of(&c, &s);
  json_t *ledger = nw_ledger_settings(&c);
  json_t *report = nw_settings_json(&s, 1);
  assert_int_equal(json_object_size(ledger), NW_SETTING_COUNT);
  assert_int_equal(json_object_size(report), NW_SETTING_COUNT);
  for (int i = 0; i < NW_SETTING_COUNT; i++) {
    const nw_setting_info *t = &nw_settings_table[i];
    json_t *l = json_object_get(ledger, t->ledger);
    json_t *r = json_object_get(report, t->report);
    assert_non_null(l);
    assert_non_null(r);
    if (t->type == NW_SETTING_BOOL) {
      assert_true(json_is_boolean(l));
      assert_int_equal(json_is_true(r), s.v[i]);
    } else {
      assert_int_equal(json_integer_value(l), s.v[i]);
    }
  }
  char err[256];
  memset(&back, 0xff, sizeof back);
  assert_int_equal(nw_settings_from_json(report, &back, err, sizeof err), 0);
  assert_memory_equal(&back, &s, sizeof s);
  json_object_set_new(report, "micro_batch", json_integer(-5));
  assert_int_equal(nw_settings_from_json(report, &back, err, sizeof err),
                   NW_EDATA);
  assert_non_null(strstr(err, "micro_batch"));
  json_object_del(report, "eval_release_cache");
  json_object_set_new(report, "micro_batch", json_integer(5));
  assert_int_equal(nw_settings_from_json(report, &back, err, sizeof err),
                   NW_EDATA);
  assert_non_null(strstr(err, "eval_release_cache"));
  json_decref(ledger);
  json_decref(report);
}

/* nightwatch-train gets every setting with a config key after the user's
 * own --set options, then --resume auto; derived ones are not passed. */
static void test_trainer_argv(void **state) {
  (void)state;
  nw_config c = test_config();
  char *sets[] = {"batch.micro=32", "train.steps=9"};
  nw_sup_options o = {.train_bin = "/bin/nightwatch-train",
                      .sets = sets,
                      .n_sets = 2,
                      .config_path = "run.conf"};
  nw_trainer_args args;
  char *argv[64];
  int n = nw_trainer_argv(&o, &c, 0, &args, argv, 64);
  assert_null(argv[n]);
  assert_string_equal(argv[0], "/bin/nightwatch-train");
  assert_string_equal(argv[1], "run.conf");
  assert_string_equal(argv[3], "batch.micro=32"); /* the user's first */
  int passed = 0, last_micro = -1;
  for (int i = 0; i < NW_SETTING_COUNT; i++)
    passed += nw_settings_table[i].key != NULL;
  assert_int_equal(n, 2 + 2 * 2 + 2 * passed + 2);
  for (int i = 0; i < n; i++)
    if (!strncmp(argv[i], "batch.micro=", 12))
      last_micro = i;
  assert_string_equal(argv[last_micro], "batch.micro=8"); /* in force wins */
  const char *want[] = {"batch.micro=8", "world.size=2", "data.max_len=48",
                        "eval.batch=3", "eval.release_cache=true"};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
    int found = 0;
    for (int i = 0; i < n; i++)
      found |= !strcmp(argv[i], want[k]) && !strcmp(argv[i - 1], "--set");
    assert_true(found);
  }
  assert_string_equal(argv[n - 2], "--resume");
  assert_string_equal(argv[n - 1], "auto");
  /* nightwatch run --resume none: the first start only */
  n = nw_trainer_argv(&o, &c, 1, &args, argv, 64);
  assert_string_equal(argv[n - 1], "none");
}

static const char *env_get(char **env, const char *name) {
  size_t len = strlen(name);
  for (int i = 0; env[i]; i++)
    if (!strncmp(env[i], name, len) && env[i][len] == '=')
      return env[i] + len + 1;
  return NULL;
}

/* A foreign trainer's environment: every setting with a variable, in
 * force, replacing what the supervisor itself inherited. */
static void test_foreign_env(void **state) {
  (void)state;
  nw_config c = test_config();
  char dir[512];
  nw_test_tmpdir(dir, sizeof dir, "settings");
  snprintf(c.run.dir, sizeof c.run.dir, "%s", dir);
  char *cmd[] = {"python3", "train.py", NULL};
  nw_sup_options o = {.command = cmd};
  setenv("NIGHTWATCH_MICRO_BATCH", "999", 1); /* stale: replaced */
  setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  char **env = nw_trainer_env(&o, &c, "run-1", "nw-comm", 1);
  assert_non_null(env);
  assert_string_equal(env_get(env, "NIGHTWATCH_MICRO_BATCH"), "8");
  assert_string_equal(env_get(env, "NIGHTWATCH_ACCUMULATION"), "4");
  assert_string_equal(env_get(env, "NIGHTWATCH_EFFECTIVE_BATCH"), "64");
  assert_string_equal(env_get(env, "NIGHTWATCH_MAX_SEQ_LEN"), "48");
  assert_string_equal(env_get(env, "NIGHTWATCH_EVAL_BATCH"), "3");
  assert_string_equal(env_get(env, "NIGHTWATCH_RELEASE_CACHE"), "1");
  assert_string_equal(env_get(env, "NIGHTWATCH_RUN_ID"), "run-1");
  assert_string_equal(env_get(env, "NIGHTWATCH_RANK"), "1");
  assert_string_equal(env_get(env, "NIGHTWATCH_RESUME"), "");
  assert_null(env_get(env, "NOTIFY_SOCKET"));
  int n = 0;
  for (int i = 0; env[i]; i++)
    n += !strncmp(env[i], "NIGHTWATCH_MICRO_BATCH=", 23);
  assert_int_equal(n, 1);
  nw_child_env_free(env);
  unsetenv("NIGHTWATCH_MICRO_BATCH");
  unsetenv("NOTIFY_SOCKET");
  nw_test_rmdir_flat(dir);
}

/* docs/protocol.md's table has one row per setting, in the list's order,
 * naming its config key, variable, report field and ledger key. */
static void test_docs_table(void **state) {
  (void)state;
  char *doc = nw_test_slurp(NW_SOURCE_DIR "/docs/protocol.md", NULL);
  assert_non_null(doc);
  const char *sec = strstr(doc, "## The settings recovery changes");
  assert_non_null(sec);
  const char *p = strstr(sec, "| --- |");
  assert_non_null(p);
  p = strchr(p, '\n') + 1;
  int row = 0;
  while (*p == '|') {
    const char *end = strchr(p, '\n');
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(end - p), p);
    assert_true(row < NW_SETTING_COUNT);
    const nw_setting_info *t = &nw_settings_table[row];
    char want[128];
    snprintf(want, sizeof want, "| %s |", t->name);
    assert_true(!strncmp(line, want, strlen(want)));
    const char *cols[] = {t->key, t->env, t->report, t->ledger};
    for (int k = 0; k < 4; k++) {
      if (!cols[k])
        continue;
      snprintf(want, sizeof want, "`%s`", cols[k]);
      if (!strstr(line, want))
        fail_msg("docs/protocol.md row \"%s\" lacks %s", line, want);
    }
    row++;
    p = end + 1;
  }
  assert_int_equal(row, NW_SETTING_COUNT);
  free(doc);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_values_of_config),
      cmocka_unit_test(test_json_both_ways),
      cmocka_unit_test(test_trainer_argv),
      cmocka_unit_test(test_foreign_env),
      cmocka_unit_test(test_docs_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
