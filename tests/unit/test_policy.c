/* test_policy.c — recovery policies: the shipped files, the embedded default,
 * every error class with its file:line, several errors at once, nothing
 * half-applied, control bytes escaped; the key table against the causes and
 * docs/policies.md; escalation along each chain, limits, backoff; a
 * property test of halve-micro-batch over many batch shapes; the CLI. */
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

static void write_file(const char *name, const char *text, char *path,
                       size_t len) {
  nw_test_write_text(g_dir, name, text, path, len);
}

static void shipped(const char *name, char *path, size_t len) {
  snprintf(path, len, "%s/policies/%s", NW_SOURCE_DIR, name);
}

/* Errors as the sink saw them. */
typedef struct {
  int n;
  int line[32];
  char msg[32][512];
} sink_log;

static void sink(void *user, const char *name, int line, const char *msg) {
  sink_log *l = user;
  (void)name;
  if (l->n < 32) {
    l->line[l->n] = line;
    snprintf(l->msg[l->n], sizeof l->msg[0], "%s", msg);
  }
  l->n++;
}

/* A policy that is certainly not what any test file yields: a load that
 * fails must leave it exactly as it was. */
static void sentinel(nw_policy *p) {
  nw_policy_defaults(p);
  p->limits.max_recoveries = 77;
  p->chain[NW_CAUSE_ACTIVATION].factor = 0.123;
}

/* Loads text as a file named name; expects it refused with nerr errors and
 * *out untouched; err holds the messages. */
static void expect_refused(const char *name, const char *text, int nerr,
                           char *err, size_t errlen, sink_log *log) {
  char path[1024];
  write_file(name, text, path, sizeof path);
  nw_policy p, before;
  sentinel(&p);
  memcpy(&before, &p, sizeof p);
  memset(log, 0, sizeof *log);
  int rc = nw_policy_load_cb(path, &p, sink, log, err, errlen);
  if (rc != NW_ECONFIG || log->n != nerr)
    print_error("%s: rc %d, %d errors:\n%s\n", name, rc, log->n, err);
  assert_int_equal(rc, NW_ECONFIG);
  assert_int_equal(log->n, nerr);
  assert_memory_equal(&p, &before, sizeof p);
}

/* err contains "PATH:LINE: " followed (somewhere on that line) by what. */
static void expect_error(const char *err, const char *name, int line,
                         const char *what) {
  char prefix[1100];
  snprintf(prefix, sizeof prefix, "%s/%s:%d: ", g_dir, name, line);
  const char *at = strstr(err, prefix);
  if (!at)
    print_error("no '%s' in:\n%s\n", prefix, err);
  assert_non_null(at);
  const char *eol = strchr(at, '\n');
  size_t n = eol ? (size_t)(eol - at) : strlen(at);
  char one[1200];
  snprintf(one, sizeof one, "%.*s", (int)n, at);
  if (!strstr(one, what))
    print_error("no '%s' in '%s'\n", what, one);
  assert_non_null(strstr(one, what));
}

/* ---- names ---- */

static void test_names(void **state) {
  (void)state;
  for (int c = 0; c < NW_CAUSE_COUNT; c++) {
    nw_cause back;
    assert_int_equal(nw_cause_parse(nw_cause_name((nw_cause)c), &back), 0);
    assert_int_equal(back, c);
  }
  assert_string_equal(nw_cause_name(NW_CAUSE_DUPLICATE), "duplicate-process");
  assert_string_equal(nw_cause_name(NW_CAUSE_COUNT), "invalid");
  nw_cause c = NW_CAUSE_ACTIVATION;
  assert_int_equal(nw_cause_parse("Activation", &c), NW_ENOTFOUND);
  assert_int_equal(c, NW_CAUSE_ACTIVATION);
  for (int a = 0; a < NW_ACTION_COUNT; a++) {
    nw_action back;
    assert_int_equal(nw_action_parse(nw_action_name((nw_action)a), &back), 0);
    assert_int_equal(back, a);
  }
}

/* ---- shipped files and the default ---- */

typedef struct {
  char keys[64][80];
  int n;
} key_set;

static int collect_keys(void *user, const char *section, const char *key,
                        const char *value, int line, char *err, size_t len) {
  key_set *s = user;
  (void)value, (void)line, (void)err, (void)len;
  if (s->n < 64)
    snprintf(s->keys[s->n++], sizeof s->keys[0], "%s.%s", section, key);
  return 0;
}

static int collect_keys_dump(void *user, const char *section, const char *key,
                             const char *value, int line, char *err,
                             size_t len) {
  return collect_keys(user, section, key, value, line, err, len);
}

static void test_default_conf_is_the_default(void **state) {
  (void)state;
  char path[1024], err[4096];
  shipped("default.conf", path, sizeof path);
  nw_policy file, def;
  memset(&file, 0, sizeof file);
  int rc = nw_policy_load(path, &file, err, sizeof err);
  if (rc)
    print_error("%s\n", err);
  assert_int_equal(rc, 0);
  nw_policy_defaults(&def);
  assert_true(nw_policy_equal(&file, &def));

  /* default.conf spells out every key the default has: none is left to
   * the embedded values, so the file alone says what the default is. */
  key_set in_file = {0}, in_dump = {0};
  assert_int_equal(
      nw_ini_parse_file(path, collect_keys, &in_file, err, sizeof err), 0);
  char dump[8192];
  assert_true(nw_policy_dump(&def, dump, sizeof dump) < sizeof dump);
  assert_int_equal(nw_ini_parse_string("dump", dump, collect_keys_dump,
                                       &in_dump, err, sizeof err),
                   0);
  assert_true(in_dump.n > 10);
  assert_int_equal(in_file.n, in_dump.n);
  for (int i = 0; i < in_dump.n; i++) {
    int found = 0;
    for (int j = 0; j < in_file.n; j++)
      found |= strcmp(in_dump.keys[i], in_file.keys[j]) == 0;
    if (!found)
      print_error("default.conf lacks %s\n", in_dump.keys[i]);
    assert_true(found);
  }
}

static void test_shipped_files_parse_and_round_trip(void **state) {
  (void)state;
  const char *names[] = {"default.conf", "cautious.conf", "aggressive.conf"};
  nw_policy p[3], def;
  nw_policy_defaults(&def);
  for (int i = 0; i < 3; i++) {
    char path[1024], err[4096];
    shipped(names[i], path, sizeof path);
    int rc = nw_policy_load(path, &p[i], err, sizeof err);
    if (rc)
      print_error("%s\n", err);
    assert_int_equal(rc, 0);
    /* the dump is a complete policy file that reads back the same */
    char dump[8192];
    nw_policy back;
    memset(&back, 0, sizeof back);
    assert_true(nw_policy_dump(&p[i], dump, sizeof dump) < sizeof dump);
    rc = nw_policy_parse_string("dump", dump, &back, NULL, NULL, err,
                                sizeof err);
    if (rc)
      print_error("%s\n%s\n", dump, err);
    assert_int_equal(rc, 0);
    assert_true(nw_policy_equal(&back, &p[i]));
  }
  /* the examples are what their comments say */
  assert_false(nw_policy_equal(&p[1], &def));
  assert_false(nw_policy_equal(&p[2], &def));
  assert_true(p[1].limits.max_recoveries < def.limits.max_recoveries);
  assert_true(p[1].limits.backoff_initial_seconds >
              def.limits.backoff_initial_seconds);
  assert_true(p[1].chain[NW_CAUSE_ACTIVATION].factor >
              def.chain[NW_CAUSE_ACTIVATION].factor);
  assert_true(p[2].limits.max_recoveries > def.limits.max_recoveries);
  assert_true(p[2].chain[NW_CAUSE_ACTIVATION].factor == 0.5);
  assert_int_equal(p[2].duplicate.foreign, NW_FOREIGN_KILL_SAME_USER);
}

static void test_partial_file_keeps_defaults(void **state) {
  (void)state;
  char err[1024];
  nw_policy p, def;
  nw_policy_defaults(&def);
  assert_int_equal(nw_policy_parse_string("t",
                                          "[limits]\nmax_recoveries = 3\n"
                                          "[activation]\nfactor = 0.5\n",
                                          &p, NULL, NULL, err, sizeof err),
                   0);
  assert_int_equal(p.limits.max_recoveries, 3);
  assert_true(p.chain[NW_CAUSE_ACTIVATION].factor == 0.5);
  def.limits.max_recoveries = 3;
  def.chain[NW_CAUSE_ACTIVATION].factor = 0.5;
  assert_true(nw_policy_equal(&p, &def));
}

/* ---- malformed files: one per error class ---- */

static void test_error_classes(void **state) {
  (void)state;
  char err[4096];
  sink_log log;
  struct {
    const char *name, *text;
    int line;
    const char *what;
  } cases[] = {
      {"sec.conf", "[limits]\nmax_recoveries = 3\n[activaton]\nfactor = 0.5\n",
       4, "unknown section [activaton]"},
      {"key.conf", "[activation]\nactions = restart\nfactr = 0.5\n", 3,
       "unknown key 'factr' (keys here: actions, factor, floor)"},
      {"where.conf", "[activation]\ngrace_seconds = 5\n", 2,
       "it belongs in [duplicate-process]"},
      {"action.conf", "\n[eval-cache]\nactions = free-cache, halve-batch\n", 3,
       "unknown action 'halve-batch'"},
      {"empty.conf", "[unknown]\nactions =\n", 2, "empty chain"},
      {"hole.conf", "[activation]\nactions = halve-micro-batch,,restart\n", 2,
       "empty action at position 2"},
      {"twice.conf",
       "[activation]\nactions = halve-micro-batch, halve-micro-batch\n", 2,
       "halve-micro-batch is listed twice"},
      {"unreach.conf",
       "[sequence-length]\nactions = restart, shorten-sequences\n", 2,
       "shorten-sequences can never run: restart"},
      {"kill.conf", "[activation]\nactions = kill-duplicate\n", 2,
       "kill-duplicate belongs only in [duplicate-process]"},
      {"num.conf", "[limits]\nwindow_seconds = soon\n", 2,
       "[limits] window_seconds: 'soon' is not a number"},
      {"int.conf", "[limits]\nmax_recoveries = 2.5\n", 2,
       "'2.5' is not an integer"},
      {"f1.conf", "[sequence-length]\nfactor = 1\n", 2,
       "[sequence-length] factor: 1 is out of range: must be > 0 and < 1"},
      {"f0.conf", "[sequence-length]\nfactor = 0\n", 2, "out of range"},
      {"fneg.conf", "[activation]\nfactor = -0.5\n", 2, "out of range"},
      {"floor.conf", "[activation]\nfloor = 0\n", 2,
       "[activation] floor: 0 is out of range: must be >= 1"},
      {"nan.conf", "[limits]\nbackoff_factor = nan\n", 2, "not a number"},
      {"foreign.conf", "[duplicate-process]\nforeign = kill\n", 2,
       "'kill' is not wait or kill-same-user"},
      {"giveup.conf", "[limits]\ngive_up = retry\n", 2, "'retry' is not exit"},
      {"dup.conf", "[limits]\nmax_recoveries = 3\nmax_recoveries = 4\n", 3,
       "max_recoveries"},
      {"syntax.conf", "[limits]\nmax_recoveries 3\n", 2, ""},
      {"noeffect.conf", "[eval-cache]\nfloor = 16\n", 2,
       "[eval-cache] floor has no effect"},
      {"backoff.conf",
       "[limits]\nbackoff_max_seconds = 5\nbackoff_initial_seconds = 10\n", 3,
       "backoff_initial_seconds (10) is greater than backoff_max_seconds (5)"},
      {"wait.conf", "[duplicate-process]\nwait_initial_seconds = 700\n", 2,
       "wait_initial_seconds (700) is greater than wait_max_seconds (600)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    expect_refused(cases[i].name, cases[i].text, 1, err, sizeof err, &log);
    expect_error(err, cases[i].name, cases[i].line, cases[i].what);
    assert_int_equal(log.line[0], cases[i].line);
  }
}

static void test_unreadable_file(void **state) {
  (void)state;
  char path[1024], err[1024];
  snprintf(path, sizeof path, "%s/absent.conf", g_dir);
  nw_policy p, before;
  sentinel(&p);
  memcpy(&before, &p, sizeof p);
  assert_int_equal(nw_policy_load(path, &p, err, sizeof err), NW_ENOTFOUND);
  assert_non_null(strstr(err, path));
  assert_memory_equal(&p, &before, sizeof p);
}

static void test_every_error_at_once(void **state) {
  (void)state;
  char err[8192];
  sink_log log;
  const char *text = "# five mistakes, one valid key\n"      /* 1 */
                     "[limits]\n"                            /* 2 */
                     "max_recoveries = 3\n"                  /* 3: fine */
                     "window_seconds = -1\n"                 /* 4 */
                     "[activation]\n"                        /* 5 */
                     "actions = halve-micro-batch, shrink\n" /* 6 */
                     "factor = 1.5\n"                        /* 7 */
                     "[sequence-length]\n"                   /* 8 */
                     "floor = 0\n"                           /* 9 */
                     "[bogus]\n"                             /* 10 */
                     "x = 1\n"                               /* 11 */
                     "y = 2\n";                              /* 12: same */
  expect_refused("many.conf", text, 5, err, sizeof err, &log);
  expect_error(err, "many.conf", 4, "window_seconds");
  expect_error(err, "many.conf", 6, "unknown action 'shrink'");
  expect_error(err, "many.conf", 7, "factor: 1.5 is out of range");
  expect_error(err, "many.conf", 9, "floor: 0 is out of range");
  expect_error(err, "many.conf", 11, "unknown section [bogus]");
  int want[] = {4, 6, 7, 9, 11};
  for (int i = 0; i < 5; i++)
    assert_int_equal(log.line[i], want[i]);
  /* several problems in one chain are one error with every reason */
  expect_refused("chain.conf",
                 "[activation]\nactions = restart, nope, restart\n", 1, err,
                 sizeof err, &log);
  expect_error(err, "chain.conf", 2, "unknown action 'nope'");
  expect_error(err, "chain.conf", 2, "restart is listed twice");
}

static void test_small_error_buffer(void **state) {
  (void)state;
  char text[4096] = "[limits]\n";
  for (int i = 0; i < 40; i++)
    snprintf(text + strlen(text), sizeof text - strlen(text), "k%d = 1\n", i);
  char err[300];
  sink_log log;
  expect_refused("lots.conf", text, 40, err, sizeof err, &log);
  assert_true(strlen(err) < sizeof err);
  assert_non_null(strstr(err, "more errors not shown"));
  /* the sink saw them all, with their lines */
  assert_int_equal(log.line[0], 2);
  assert_int_equal(log.line[31], 33);
}

static void test_control_bytes_escaped(void **state) {
  (void)state;
  char err[2048];
  sink_log log;
  expect_refused("ctl.conf",
                 "[activation]\nactions = restart, n\x1b[2Jope\n[x\x07]\n", 2,
                 err, sizeof err, &log);
  expect_error(err, "ctl.conf", 2, "unknown action 'n\\x1b[2Jope'");
  expect_error(err, "ctl.conf", 3, "invalid character '\\x07'");
  for (const char *p = err; *p; p++)
    assert_true((unsigned char)*p >= 0x20 || *p == '\n');
}

/* The text of a policy need not end in a NUL (a fuzzer's input), and
 * nothing past len is read. */
static void test_parse_buffer(void **state) {
  (void)state;
  const char text[] = "[limits]\nmax_recoveries = 35";
  size_t len = sizeof text - 1;
  char *exact = malloc(len);
  assert_non_null(exact);
  memcpy(exact, text, len);
  nw_policy p;
  char err[256];
  assert_int_equal(nw_policy_parse_buffer("buf", exact, len - 1, &p, NULL, NULL,
                                          err, sizeof err),
                   0);
  assert_int_equal(p.limits.max_recoveries, 3);
  assert_int_equal(nw_policy_parse_buffer("buf", exact, len, &p, NULL, NULL,
                                          err, sizeof err),
                   0);
  assert_int_equal(p.limits.max_recoveries, 35);
  free(exact);
}

/* ---- the key table ---- */

/* A section per cause, named as nw_cause_name says, each with a chain;
 * the only other section is [limits]. */
static void test_table_sections_are_causes(void **state) {
  (void)state;
  const nw_keytable *t = nw_policy_keytable();
  for (int c = 0; c < NW_CAUSE_COUNT; c++) {
    const char *name = nw_cause_name((nw_cause)c);
    const nw_kt_key *k = nw_kt_find(t, name, "actions");
    if (!k)
      fail_msg("no [%s] actions in the policy table", name);
    assert_int_equal(k->type, NW_KT_CUSTOM);
  }
  for (size_t i = 0; i < t->n_keys; i++) {
    nw_cause c;
    if (strcmp(t->keys[i].section, "limits"))
      assert_int_equal(nw_cause_parse(t->keys[i].section, &c), 0);
  }
}

/* docs/policies.md has a row for every key, with its default in a cell
 * (chains: "see default.conf"). */
static void test_docs_list_every_key(void **state) {
  (void)state;
  char *doc = nw_test_slurp(NW_SOURCE_DIR "/docs/policies.md", NULL);
  assert_non_null(doc);
  const nw_keytable *t = nw_policy_keytable();
  char bad[512] = "";
  for (size_t i = 0; i < t->n_keys && !bad[0]; i++) {
    const nw_kt_key *k = &t->keys[i];
    char row[128], cell[128], cell_code[128];
    snprintf(row, sizeof row, "\n| `%s` |", k->key);
    const char *at = strstr(doc, row);
    if (!at) {
      snprintf(bad, sizeof bad, "docs/policies.md has no row for %s", k->key);
      break;
    }
    const char *eol = strchr(at + 1, '\n');
    size_t n = eol ? (size_t)(eol - at) : strlen(at);
    char line[1024];
    snprintf(line, sizeof line, "%.*s", (int)n, at);
    const char *def = k->type == NW_KT_CUSTOM ? "see default.conf" : k->def;
    snprintf(cell, sizeof cell, "| %s |", def);
    snprintf(cell_code, sizeof cell_code, "| `%s` |", def);
    if (!strstr(line, cell) && !strstr(line, cell_code))
      snprintf(bad, sizeof bad,
               "docs/policies.md: %s's row lacks its default %s", k->key, def);
  }
  free(doc);
  if (bad[0])
    fail_msg("%s", bad);
}

/* ---- the CLI ---- */

static void test_cli(void **state) {
  (void)state;
  char out[8192], path[1024];
  shipped("default.conf", path, sizeof path);
  char *ok[] = {NW_BIN, "policy", "check", path, NULL};
  assert_int_equal(nw_test_run_cmd(ok, out, sizeof out), 0);
  assert_non_null(strstr(out, "activation"));
  assert_non_null(
      strstr(out, "halve-micro-batch -> shorten-sequences (x0.75, floor 32) "
                  "-> give up"));
  assert_non_null(strstr(out, "at most 8 recoveries per 3600 s"));

  write_file("cli-bad.conf",
             "[limits]\nmax_recoveries = lots\n[activation]\nfloor = 0\n", path,
             sizeof path);
  char *bad[] = {NW_BIN, "policy", "check", path, NULL};
  assert_int_equal(nw_test_run_cmd(bad, out, sizeof out), 1);
  char want[1100];
  snprintf(want, sizeof want, "%s:2: [limits] max_recoveries", path);
  assert_non_null(strstr(out, want));
  snprintf(want, sizeof want, "%s:4: [activation] floor", path);
  assert_non_null(strstr(out, want));

  char *usage[] = {NW_BIN, "policy", "check", NULL};
  assert_int_equal(nw_test_run_cmd(usage, out, sizeof out), 64);
  char *nosuch[] = {NW_BIN, "policy", "check", "/nonexistent/p.conf", NULL};
  assert_int_equal(nw_test_run_cmd(nosuch, out, sizeof out), 1);
  assert_non_null(strstr(out, "/nonexistent/p.conf"));

  /* show prints a policy that check accepts */
  char *show[] = {NW_BIN, "policy", "show", NULL};
  static char dump[8192];
  assert_int_equal(nw_test_run_cmd(show, dump, sizeof dump), 0);
  nw_policy p, def;
  char err[1024];
  assert_int_equal(
      nw_policy_parse_string("show", dump, &p, NULL, NULL, err, sizeof err), 0);
  nw_policy_defaults(&def);
  assert_true(nw_policy_equal(&p, &def));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_default_conf_is_the_default),
      cmocka_unit_test(test_shipped_files_parse_and_round_trip),
      cmocka_unit_test(test_partial_file_keeps_defaults),
      cmocka_unit_test(test_error_classes),
      cmocka_unit_test(test_unreadable_file),
      cmocka_unit_test(test_every_error_at_once),
      cmocka_unit_test(test_small_error_buffer),
      cmocka_unit_test(test_control_bytes_escaped),
      cmocka_unit_test(test_parse_buffer),
      cmocka_unit_test(test_table_sections_are_causes),
      cmocka_unit_test(test_docs_list_every_key),
      cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
