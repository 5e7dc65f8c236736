/* test_systemd_unit.c — the unit files CMake configures from the templates
 * in systemd/: every one passes `systemd-analyze verify` with no complaint
 * at all, a broken copy does not, nightwatch@.service says what
 * docs/operations.md promises, and `cmake --install` installs every unit.
 *
 * verify needs instance names (a template alone is not a loadable unit) and
 * ExecStart binaries that exist: it checks the build's test copies
 * (NW_BINARY_DIR/systemd-test, ExecStart in the build directory), copied to
 * a temporary directory as NAME@test.service. systemd need not be PID 1. */
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/config.h"
#include "supervisor/sup_child.h"
#include "supervisor/supervisor.h"
#include "testutil.h"

#define NW_UNIT_MAX 16

typedef struct {
  char name[NW_UNIT_MAX][256]; /* as configured: nightwatch@.service */
  int n;
} unit_list;

static void list_units(const char *dir, unit_list *u) {
  u->n = 0;
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL && u->n < NW_UNIT_MAX) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(u->name[u->n++], sizeof u->name[0], "%s", e->d_name);
  }
  closedir(d);
}

static char *slurp(const char *path) { return nw_test_slurp(path, NULL); }

/* NAME@.TYPE -> NAME@test.TYPE: an instance verify can load. */
static void instance_name(const char *unit, char *out, size_t len) {
  const char *at = strstr(unit, "@.");
  if (at)
    snprintf(out, len, "%.*s@test%s", (int)(at - unit), unit, at + 1);
  else
    snprintf(out, len, "%s", unit);
}

/* Copies the unit from src_dir into dir under its instance name, with
 * every occurrence of from replaced by to (NULL: unchanged). */
static void copy_unit(const char *src_dir, const char *unit, const char *dir,
                      const char *from, const char *to) {
  char src[1024], dst[1024], inst[160];
  snprintf(src, sizeof src, "%s/%s", src_dir, unit);
  instance_name(unit, inst, sizeof inst);
  snprintf(dst, sizeof dst, "%s/%s", dir, inst);
  char *text = slurp(src);
  assert_non_null(text);
  FILE *f = fopen(dst, "w");
  assert_non_null(f);
  const char *p = text, *hit;
  while (from && (hit = strstr(p, from))) {
    fwrite(p, 1, (size_t)(hit - p), f);
    fputs(to, f);
    p = hit + strlen(from);
  }
  fputs(p, f);
  assert_int_equal(fclose(f), 0);
  free(text);
}

/* `systemd-analyze verify` of dir/inst: 0 only when it exits 0 and says
 * nothing (it exits 0 on unknown keys and unparsable values, with a
 * warning). */
static int verify(const char *dir, const char *inst, char *out, size_t len) {
  char prog[1024], path[1024];
  if (nw_which("systemd-analyze", prog, sizeof prog) < 0) {
    snprintf(out, len, "systemd-analyze not found in PATH");
    return -1;
  }
  snprintf(path, sizeof path, "%s/%s", dir, inst);
  char *argv[] = {prog, "verify", "--man=no", path, NULL};
  int rc = nw_test_run_cmd(argv, out, len);
  return rc == 0 && out[0] == '\0' ? 0 : -1;
}

static void test_units_verify(void **state) {
  (void)state;
  unit_list inst, test;
  list_units(NW_BINARY_DIR "/systemd", &inst);
  list_units(NW_BINARY_DIR "/systemd-test", &test);
  assert_true(inst.n >= 1);
  assert_int_equal(inst.n, test.n); /* every installed unit is verified */
  int have_service = 0;
  char dir[256], out[8192];
  nw_test_tmpdir(dir, sizeof dir, "units");
  /* all in one directory: a timer finds its service there */
  for (int i = 0; i < test.n; i++)
    copy_unit(NW_BINARY_DIR "/systemd-test", test.name[i], dir, NULL, NULL);
  for (int i = 0; i < test.n; i++) {
    char name[160];
    instance_name(test.name[i], name, sizeof name);
    have_service |= !strcmp(test.name[i], "nightwatch@.service");
    int rc = verify(dir, name, out, sizeof out);
    if (rc != 0)
      fprintf(stderr, "systemd-analyze verify %s:\n%s\n", name, out);
    else
      fprintf(stderr, "systemd-analyze verify %s: ok\n", name);
    assert_int_equal(rc, 0);
  }
  assert_true(have_service);
  nw_test_rmdir_flat(dir);
}

/* The check above can fail: a unit whose ExecStart does not exist (verify
 * exits 1), and one with a misspelt key (verify exits 0 but warns). */
static void test_broken_unit_fails(void **state) {
  (void)state;
  char dir[256], out[8192];
  nw_test_tmpdir(dir, sizeof dir, "badunit");
  copy_unit(NW_BINARY_DIR "/systemd-test", "nightwatch@.service", dir,
            NW_BINARY_DIR "/nightwatch run", NW_BINARY_DIR "/no-such run");
  assert_int_not_equal(verify(dir, "nightwatch@test.service", out, sizeof out),
                       0);
  fprintf(stderr, "missing binary: %s\n", out);
  assert_non_null(strstr(out, "no-such"));
  copy_unit(NW_BINARY_DIR "/systemd-test", "nightwatch@.service", dir,
            "KillMode=", "KilMode=");
  assert_int_not_equal(verify(dir, "nightwatch@test.service", out, sizeof out),
                       0);
  fprintf(stderr, "misspelt key: %s\n", out);
  assert_non_null(strstr(out, "KilMode"));
  nw_test_rmdir_flat(dir);
}

/* "KEY=value" on a line of its own; NULL when absent. Borrowed from a
 * static buffer. */
static const char *unit_value(const char *text, const char *key) {
  static char val[512];
  size_t k = strlen(key);
  for (const char *p = text; p && *p;
       p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
    if (!strncmp(p, key, k) && p[k] == '=') {
      const char *e = strchr(p, '\n');
      size_t n = e ? (size_t)(e - p - k - 1) : strlen(p + k + 1);
      snprintf(val, sizeof val, "%.*s", (int)n, p + k + 1);
      return val;
    }
  }
  return NULL;
}

static void expect(const char *text, const char *key, const char *want) {
  const char *v = unit_value(text, key);
  if (!v || strcmp(v, want))
    fprintf(stderr, "%s=%s, expected %s\n", key, v ? v : "(absent)", want);
  assert_non_null(v);
  assert_string_equal(v, want);
}

/* What docs/operations.md promises of nightwatch@.service. */
static void test_service_contract(void **state) {
  (void)state;
  char *t = slurp(NW_BINARY_DIR "/systemd/nightwatch@.service");
  assert_non_null(t);
  expect(t, "Type", "notify");
  expect(t, "NotifyAccess", "main");
  expect(t, "KillMode", "mixed");
  expect(t, "Restart", "on-failure");
  expect(t, "OOMPolicy", "continue");
  expect(t, "ExecReload", "/bin/kill -HUP $MAINPID");
  expect(t, "ProtectSystem", "strict");
  expect(t, "NoNewPrivileges", "yes");
  assert_non_null(unit_value(t, "WatchdogSec"));
  assert_non_null(unit_value(t, "StartLimitIntervalSec"));
  assert_non_null(unit_value(t, "StartLimitBurst"));
  /* the CUDA driver JIT needs writable+executable memory */
  assert_null(unit_value(t, "MemoryDenyWriteExecute"));
  assert_null(unit_value(t, "PrivateDevices"));
  /* usage and config errors are not restarted */
  char codes[32];
  snprintf(codes, sizeof codes, "%d %d", NW_EXIT_USAGE, NW_EXIT_CONFIG);
  expect(t, "RestartPreventExitStatus", codes);
  /* the stop checkpoint's grace, and a margin, fit in TimeoutStopSec */
  nw_config cfg;
  nw_config_defaults(&cfg);
  const char *stop = unit_value(t, "TimeoutStopSec");
  assert_non_null(stop);
  char *end;
  double secs = strtod(stop, &end);
  assert_true(!strcmp(end, "s") || !strcmp(end, ""));
  assert_true(secs >= cfg.supervisor.kill_grace + 30);
  /* the installed unit runs the installed binary, in its state directory */
  const char *exec = unit_value(t, "ExecStart");
  assert_non_null(exec);
  assert_non_null(strstr(exec, "/bin/nightwatch run /etc/nightwatch/%i.conf"));
  assert_non_null(strstr(exec, "--set run.dir=%S/nightwatch/%i"));
  expect(t, "StateDirectory", "nightwatch/%i");
  free(t);
}

/* `cmake --install` puts every configured unit into lib/systemd/system. */
static void test_install(void **state) {
  (void)state;
  char cmake[1024], dir[256], out[8192];
  assert_int_equal(nw_which("cmake", cmake, sizeof cmake), 0);
  nw_test_tmpdir(dir, sizeof dir, "install");
  char *argv[] = {cmake, "--install", NW_BINARY_DIR, "--prefix", dir, NULL};
  int rc = nw_test_run_cmd(argv, out, sizeof out);
  if (rc != 0)
    fprintf(stderr, "%s\n", out);
  assert_int_equal(rc, 0);
  unit_list u;
  list_units(NW_BINARY_DIR "/systemd", &u);
  for (int i = 0; i < u.n; i++) {
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/lib/systemd/system/%s", dir, u.name[i]);
    if (stat(path, &st) != 0)
      fprintf(stderr, "not installed: %s\n", path);
    assert_int_equal(stat(path, &st), 0);
  }
  char *rmv[] = {"/bin/rm", "-rf", dir, NULL};
  assert_int_equal(nw_test_run_cmd(rmv, out, sizeof out), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_units_verify),
      cmocka_unit_test(test_broken_unit_fails),
      cmocka_unit_test(test_service_contract),
      cmocka_unit_test(test_install),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
