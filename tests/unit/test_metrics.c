/* test_metrics.c — `nightwatch status RUN_DIR --metrics FILE`: a run
 * directory built with the real ledger writer, a status.json and a
 * checkpoint-named file; the file the real binary writes is checked line by
 * line against the Prometheus text exposition grammar (names, labels,
 * escapes, float values, HELP/TYPE before each family, families not split),
 * then for its values (recoveries by cause counted from the ledger, step,
 * loss, settings, ages, the run lock), the atomic write (no temporary left)
 * and the error when the target's directory is missing. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/error.h"
#include "base/runlock.h"
#include "protocol/ledger.h"
#include "testutil.h"

/* A run id that needs every escape of a label value. */
#define RUN_ID "night \"one\" \\ A"
#define RUN_LABEL "night \\\"one\\\" \\\\ A"

typedef struct {
  char dir[256];  /* the run directory */
  char out[300];  /* the metrics directory (node_exporter's) */
  char prom[340]; /* out/nightwatch.prom */
  char ckpt[400]; /* dir/checkpoints/ckpt-0000000100.h5 */
} fixture;

static void ledger_add(const char *dir, json_t *e) {
  char err[512];
  nw_ledger l;
  assert_int_equal(nw_ledger_open(&l, dir, err, sizeof err), 0);
  json_object_set_new(e, "run_id", json_string(RUN_ID));
  assert_int_equal(nw_ledger_append(&l, e), 0);
  nw_ledger_close(&l);
}

static void ledger_recovery(const char *dir, const char *cause) {
  ledger_add(dir, json_pack("{s:s, s:s, s:s}", "event", "recovery", "cause",
                            cause, "action", "restart"));
}

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  if (!fx)
    return -1;
  nw_test_tmpdir(fx->dir, sizeof fx->dir, "metrics");
  snprintf(fx->out, sizeof fx->out, "%s/textfile", fx->dir);
  snprintf(fx->prom, sizeof fx->prom, "%s/nightwatch.prom", fx->out);
  if (mkdir(fx->out, 0755) != 0)
    return -1;
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  char sub[320];
  snprintf(sub, sizeof sub, "%s/checkpoints", fx->dir);
  nw_test_rmdir_flat(sub);
  nw_test_rmdir_flat(fx->out);
  nw_test_rmdir_flat(fx->dir);
  free(fx);
  return 0;
}

/* status.json as the supervisor writes it; the ledger: three recoveries
 * (two activation, one hang), a resume and a give-up; one checkpoint file
 * (a name is all the metrics look at) written two minutes ago. */
static void make_run(fixture *fx) {
  json_t *st = json_pack(
      "{s:s, s:s, s:i, s:i, s:i, s:f, s:i, s:i, s:{s:i, s:i, s:i, s:i, s:i, "
      "s:b}, s:s}",
      "updated", "2026-11-23T16:40:01.250Z", "state", "running", "trainer_pid",
      4242, "step", 120, "steps", 600, "loss", 2.5, "seq_len", 23, "recoveries",
      3, "settings", "micro", 8, "accum", 4, "effective", 32, "max_len", 96,
      "eval_batch", 16, "release_cache", 1, "run_id", RUN_ID);
  assert_non_null(st);
  char *text = json_dumps(st, JSON_INDENT(2));
  char path[400];
  nw_test_write_text(fx->dir, "status.json", text, path, sizeof path);
  free(text);
  json_decref(st);
  ledger_add(fx->dir, json_pack("{s:s, s:i}", "event", "start", "start", 1));
  ledger_recovery(fx->dir, "activation");
  ledger_recovery(fx->dir, "activation");
  ledger_add(fx->dir, json_pack("{s:s, s:i}", "event", "resumed", "step", 90));
  ledger_recovery(fx->dir, "hang");
  ledger_add(fx->dir, json_pack("{s:s, s:s, s:s}", "event", "give-up", "cause",
                                "activation", "action", "give-up"));
  char sub[320];
  snprintf(sub, sizeof sub, "%s/checkpoints", fx->dir);
  assert_int_equal(mkdir(sub, 0755), 0);
  nw_test_write_text(sub, "ckpt-0000000100.h5", "not hdf5", fx->ckpt,
                     sizeof fx->ckpt);
  struct timespec t[2];
  clock_gettime(CLOCK_REALTIME, &t[0]);
  t[0].tv_sec -= 120;
  t[1] = t[0];
  assert_int_equal(utimensat(AT_FDCWD, fx->ckpt, t, 0), 0);
}

/* ---- the exposition grammar ---- */

#define MAX_SAMPLES 64

typedef struct {
  int n;
  char name[MAX_SAMPLES][96];
  char labels[MAX_SAMPLES][256]; /* as written, between the braces */
  double value[MAX_SAMPLES];
} samples;

static int full_match(const char *re, const char *s) {
  regex_t r;
  assert_int_equal(regcomp(&r, re, REG_EXTENDED | REG_NOSUB), 0);
  int ok = regexec(&r, s, 0, NULL, 0) == 0;
  regfree(&r);
  return ok;
}

#define NAME_RE "[a-zA-Z_:][a-zA-Z0-9_:]*"
#define LABEL_NAME_RE "[a-zA-Z_][a-zA-Z0-9_]*"
/* Go's ParseFloat as the format uses it (no hex in practice), NaN, ±Inf */
#define FLOAT_RE                                                               \
  "^([-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?|NaN|[-+]?Inf)$"

/* Label set "a=\"x\",b=\"y\"" (trailing comma allowed): each name matches
 * the label-name rule and occurs once, each value uses only \\, \" and \n
 * escapes. */
static void check_labels(const char *s, const char *line) {
  char seen[8][64];
  int nseen = 0;
  while (*s) {
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || eq - s >= 64 || eq[1] != '"')
      fail_msg("bad label in: %s", line);
    char name[64];
    memcpy(name, s, (size_t)(eq - s));
    name[eq - s] = 0;
    char anchored[64];
    snprintf(anchored, sizeof anchored, "^%s$", LABEL_NAME_RE);
    if (!full_match(anchored, name))
      fail_msg("bad label name '%s' in: %s", name, line);
    for (int i = 0; i < nseen; i++)
      if (!strcmp(seen[i], name))
        fail_msg("label %s twice in: %s", name, line);
    assert_true(nseen < 8);
    snprintf(seen[nseen++], 64, "%s", name);
    const char *p = eq + 2;
    for (; *p && *p != '"'; p++) {
      if (*p == '\n')
        fail_msg("raw newline in a label value: %s", line);
      if (*p == '\\') {
        p++;
        if (*p != '\\' && *p != '"' && *p != 'n')
          fail_msg("bad escape in: %s", line);
      }
    }
    if (*p != '"')
      fail_msg("unterminated label value in: %s", line);
    s = p + 1;
    if (*s == ',')
      s++;
    else if (*s)
      fail_msg("junk after a label value in: %s", line);
  }
}

/* The families seen so far: TYPE and HELP lines, families whose samples
 * were read, and the family being read. */
typedef struct {
  char typed[MAX_SAMPLES][96], helped[MAX_SAMPLES][96], done[MAX_SAMPLES][96];
  int ntyped, nhelped, ndone;
  char current[96];
} families;

static int listed(char (*names)[96], int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (!strcmp(names[i], name))
      return 1;
  return 0;
}

/* A "# HELP" or "# TYPE" line (any other comment is fine). */
static void check_comment(families *f, const char *line) {
  char kind[8], name[96];
  int used = 0;
  if (sscanf(line, "# %7s %95s %n", kind, name, &used) < 2)
    return; /* a plain comment */
  if (strcmp(kind, "HELP") && strcmp(kind, "TYPE"))
    return;
  char anchored[64];
  snprintf(anchored, sizeof anchored, "^%s$", NAME_RE);
  if (!full_match(anchored, name))
    fail_msg("bad metric name in: %s", line);
  if (!strcmp(kind, "TYPE")) {
    const char *type = line + used;
    if (!full_match("^(counter|gauge|histogram|summary|untyped)$", type))
      fail_msg("bad type in: %s", line);
    if (!strcmp(type, "counter") && !full_match("_total$", name))
      fail_msg("a counter without _total: %s", line);
    if (listed(f->typed, f->ntyped, name))
      fail_msg("second TYPE for %s", name);
    if (listed(f->done, f->ndone, name))
      fail_msg("TYPE after samples of %s", name);
    snprintf(f->typed[f->ntyped++], 96, "%s", name);
  } else {
    if (listed(f->helped, f->nhelped, name))
      fail_msg("second HELP for %s", name);
    if (!line[used])
      fail_msg("empty HELP for %s", name);
    snprintf(f->helped[f->nhelped++], 96, "%s", name);
  }
}

/* A sample line: name, optional {labels}, one space, value; no timestamp
 * (the textfile collector refuses them). Into out as sample out->n. */
static void check_sample(families *f, const char *line, samples *out) {
  assert_true(out->n < MAX_SAMPLES);
  int i = out->n;
  size_t nlen = strcspn(line, "{ ");
  assert_true(nlen > 0 && nlen < sizeof out->name[i]);
  memcpy(out->name[i], line, nlen);
  out->name[i][nlen] = 0;
  char anchored[64];
  snprintf(anchored, sizeof anchored, "^%s$", NAME_RE);
  if (!full_match(anchored, out->name[i]))
    fail_msg("bad metric name in: %s", line);
  const char *p = line + nlen;
  out->labels[i][0] = 0;
  if (*p == '{') {
    /* the closing brace: the last '}' before the value */
    const char *close = strrchr(p, '}');
    if (!close)
      fail_msg("unclosed labels: %s", line);
    size_t llen = (size_t)(close - p - 1);
    assert_true(llen < sizeof out->labels[i]);
    memcpy(out->labels[i], p + 1, llen);
    out->labels[i][llen] = 0;
    check_labels(out->labels[i], line);
    p = close + 1;
  }
  if (*p != ' ')
    fail_msg("no space before the value: %s", line);
  p++;
  if (!full_match(FLOAT_RE, p))
    fail_msg("bad value '%s' in: %s", p, line);
  out->value[i] = !strcmp(p, "NaN") ? 0.0 / 0.0 : strtod(p, NULL);
  /* a family: TYPE (and HELP) first; its samples in one block */
  if (!listed(f->typed, f->ntyped, out->name[i]))
    fail_msg("sample before its TYPE: %s", line);
  if (strcmp(f->current, out->name[i])) {
    if (listed(f->done, f->ndone, out->name[i]))
      fail_msg("family %s split in two", out->name[i]);
    snprintf(f->done[f->ndone++], 96, "%s", out->name[i]);
    snprintf(f->current, sizeof f->current, "%s", out->name[i]);
  }
  out->n++;
}

/* Every line of text, by the text format 0.0.4 rules; the samples into
 * out. */
static void check_exposition(const char *text, samples *out) {
  families *f = calloc(1, sizeof *f);
  assert_non_null(f);
  out->n = 0;
  size_t len = strlen(text);
  assert_true(len > 0);
  assert_int_equal(text[len - 1], '\n');
  char *copy = strdup(text), *save = NULL;
  assert_non_null(copy);
  for (char *line = strtok_r(copy, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    if (line[0] == '#')
      check_comment(f, line);
    else
      check_sample(f, line, out);
  }
  free(copy);
  free(f);
}

/* The value of name with exactly these labels; fails when absent. */
static double value_of(const samples *s, const char *name, const char *labels) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->name[i], name) && !strcmp(s->labels[i], labels))
      return s->value[i];
  fail_msg("no sample %s{%s}", name, labels);
  return 0;
}

static int has_metric(const samples *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (!strcmp(s->name[i], name))
      return 1;
  return 0;
}

static char *read_all(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    fail_msg("cannot read %s", path);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* Runs `nightwatch status DIR --metrics FILE`; its output in out. */
static int run_status(const char *dir, const char *file, char *out,
                      size_t len) {
  char *argv[] = {(char *)NW_BIN, "status",     (char *)dir,
                  "--metrics",    (char *)file, NULL};
  return nw_test_run_cmd(argv, out, len);
}

/* Nothing in the textfile directory but the file itself. */
static void assert_only_prom(const fixture *fx) {
  DIR *d = opendir(fx->out);
  assert_non_null(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (strcmp(e->d_name, "nightwatch.prom"))
      fail_msg("left in the textfile directory: %s", e->d_name);
    n++;
  }
  closedir(d);
  assert_int_equal(n, 1);
}

#define L(extra) "run=\"" RUN_LABEL "\"" extra

static void test_metrics_values(void **state) {
  fixture *fx = *state;
  make_run(fx);
  char out[8192];
  int rc = run_status(fx->dir, fx->prom, out, sizeof out);
  if (rc != 0)
    fail_msg("exit %d: %s", rc, out);
  /* the usual status output is still there */
  assert_non_null(strstr(out, "step       120 / 600"));
  const char *text = read_all(fx->prom);
  assert_non_null(text);
  samples s;
  check_exposition(text, &s);
  assert_only_prom(fx);

  assert_true(value_of(&s, "nightwatch_step", L("")) == 120);
  assert_true(value_of(&s, "nightwatch_steps_planned", L("")) == 600);
  assert_true(value_of(&s, "nightwatch_loss", L("")) == 2.5);
  assert_true(value_of(&s, "nightwatch_micro_batch", L("")) == 8);
  assert_true(value_of(&s, "nightwatch_accumulation", L("")) == 4);
  assert_true(value_of(&s, "nightwatch_effective_batch", L("")) == 32);
  assert_true(value_of(&s, "nightwatch_seq_len", L("")) == 23);
  assert_true(value_of(&s, "nightwatch_max_seq_len", L("")) == 96);
  double age = value_of(&s, "nightwatch_status_age_seconds", L(""));
  assert_true(age >= 0 && age < 60);
  /* every cause, zeros included; counted from the ledger */
  const struct {
    const char *cause;
    double n;
  } want[] = {{"unknown", 0},           {"eval-cache", 0},
              {"duplicate-process", 0}, {"activation", 2},
              {"sequence-length", 0},   {"hang", 1}};
  int nrec = 0;
  for (int i = 0; i < s.n; i++)
    nrec += !strcmp(s.name[i], "nightwatch_recoveries_total");
  assert_int_equal(nrec, 6);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char labels[256];
    snprintf(labels, sizeof labels, L(",cause=\"%s\""), want[i].cause);
    if (value_of(&s, "nightwatch_recoveries_total", labels) != want[i].n)
      fail_msg("recoveries of %s: want %g", want[i].cause, want[i].n);
  }
  assert_true(value_of(&s, "nightwatch_gave_up", L("")) == 1);
  assert_true(value_of(&s, "nightwatch_supervisor_up", L("")) == 0);
  assert_true(value_of(&s, "nightwatch_last_checkpoint_step", L("")) == 100);
  age = value_of(&s, "nightwatch_last_checkpoint_age_seconds", L(""));
  if (age < 119 || age > 180)
    fail_msg("checkpoint age %g, want about 120", age);
}

/* A second write replaces the file whole (a new inode): a new supervisor
 * started after the give-up, one more recovery, and a supervisor holding the
 * lock. */
static void test_metrics_rewrite(void **state) {
  fixture *fx = *state;
  make_run(fx);
  char out[8192], err[512];
  assert_int_equal(run_status(fx->dir, fx->prom, out, sizeof out), 0);
  struct stat before, after;
  assert_int_equal(stat(fx->prom, &before), 0);
  ledger_add(fx->dir, json_pack("{s:s, s:i}", "event", "start", "start", 2));
  ledger_recovery(fx->dir, "eval-cache");
  int holder = 0;
  int lock = nw_runlock_acquire(fx->dir, &holder, err, sizeof err);
  assert_true(lock >= 0);
  int rc = run_status(fx->dir, fx->prom, out, sizeof out);
  nw_runlock_release(lock);
  if (rc != 0)
    fail_msg("exit %d: %s", rc, out);
  /* renamed into place, never rewritten in place: a scrape reads the old
   * file or the new one, whole */
  assert_int_equal(stat(fx->prom, &after), 0);
  assert_true(after.st_ino != before.st_ino);
  samples s;
  check_exposition(read_all(fx->prom), &s);
  assert_only_prom(fx);
  assert_true(value_of(&s, "nightwatch_gave_up", L("")) == 0);
  assert_true(value_of(&s, "nightwatch_supervisor_up", L("")) == 1);
  assert_true(value_of(&s, "nightwatch_recoveries_total",
                       L(",cause=\"eval-cache\"")) == 1);
  assert_true(value_of(&s, "nightwatch_recoveries_total",
                       L(",cause=\"activation\"")) == 2);
}

/* A ledger only (the supervisor never wrote a status), no checkpoint: no
 * step or checkpoint metrics, the run id from the ledger. */
static void test_metrics_ledger_only(void **state) {
  fixture *fx = *state;
  ledger_recovery(fx->dir, "sequence-length");
  char out[8192];
  int rc = run_status(fx->dir, fx->prom, out, sizeof out);
  if (rc != 0)
    fail_msg("exit %d: %s", rc, out);
  samples s;
  check_exposition(read_all(fx->prom), &s);
  assert_false(has_metric(&s, "nightwatch_step"));
  assert_false(has_metric(&s, "nightwatch_loss"));
  assert_false(has_metric(&s, "nightwatch_status_age_seconds"));
  assert_false(has_metric(&s, "nightwatch_last_checkpoint_age_seconds"));
  assert_false(has_metric(&s, "nightwatch_last_checkpoint_step"));
  assert_true(value_of(&s, "nightwatch_recoveries_total",
                       L(",cause=\"sequence-length\"")) == 1);
  assert_true(value_of(&s, "nightwatch_gave_up", L("")) == 0);
}

/* The textfile directory does not exist: exit 1, the message names the
 * file and says why, nothing is written anywhere. */
static void test_metrics_missing_dir(void **state) {
  fixture *fx = *state;
  make_run(fx);
  char target[400], out[8192];
  snprintf(target, sizeof target, "%s/nope/nightwatch.prom", fx->dir);
  assert_int_equal(run_status(fx->dir, target, out, sizeof out), 1);
  char want[1024];
  snprintf(want, sizeof want, "--metrics %s: directory %s/nope: does not exist",
           target, fx->dir);
  if (!strstr(out, want))
    fail_msg("no \"%s\" in:\n%s", want, out);
  struct stat st;
  char nope[300];
  snprintf(nope, sizeof nope, "%s/nope", fx->dir);
  assert_int_equal(stat(nope, &st), -1);
  /* a missing argument is a usage error */
  char *argv[] = {(char *)NW_BIN, "status", fx->dir, "--metrics", NULL};
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), 64);
  assert_non_null(strstr(out, "--metrics FILE"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_metrics_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics_rewrite, setup, teardown),
      cmocka_unit_test_setup_teardown(test_metrics_ledger_only, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_metrics_missing_dir, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
