/* test_demo.c — `nightwatch demo --quick`: the real supervisor meets the
 * four out-of-memory causes on the default model and recovers from each;
 * the demo exits 0 only when every run recorded its cause and finished, and
 * its table names every cause. The demo runs in a case of the supervised-
 * run fixture (e2e/fixture.h): its directory, its log, a time limit. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "e2e/fixture.h"
#include "testutil.h"

static void test_demo_quick(void **state) {
  (void)state;
  /* the demo's runs live in the case's run directory, its output in the
   * case's log */
  nw_case *c = nw_case_new("demo");
  char *argv[] = {(char *)NW_BIN, "demo", "--quick", "--dir", c->dir, NULL};
  int rc = nw_case_exec(c, argv, 540);
  char *out = nw_test_slurp(c->log, NULL);
  assert_non_null(out);
  if (rc != 0)
    fail_msg("nightwatch demo --quick: exit %d\n%s", rc, out);
  const char *table = strstr(out, "CAUSE");
  if (!table)
    fail_msg("no table:\n%s", out);
  static const char *const want[] = {
      "activation",        "halve-micro-batch", "sequence-length",
      "shorten-sequences", "eval-cache",        "free-cache",
      "duplicate-process", "kill-duplicate",    NULL};
  for (int i = 0; want[i]; i++)
    if (!strstr(table, want[i]))
      fail_msg("the table lacks %s:\n%s", want[i], table);
  assert_null(strstr(table, "FAILED"));
  assert_non_null(strstr(out, "All four causes met and recovered from"));
  printf("%s", table);
  free(out);
  nw_case_free(c);
}

static void test_demo_usage(void **state) {
  (void)state;
  static char out[1 << 12];
  char *argv[] = {(char *)NW_BIN, "demo", "--bogus", NULL};
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), 64);
  assert_non_null(strstr(out, "usage: nightwatch demo"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_demo_usage),
      cmocka_unit_test_teardown(test_demo_quick, nw_case_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
