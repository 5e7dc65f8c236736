/* test_fault_records.c — records that a fault left half-written or that
 * carry nonsense (issue 13): a torn ledger line is never continued and a
 * record is whole or absent; an OOM report with impossible numbers is no
 * evidence at all. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/error.h"
#include "fault_fs.h"
#include "protocol/ledger.h"
#include "protocol/oom_report.h"
#include "testutil.h"

static void count_line(void *user, json_t *e) {
  (void)e;
  ++*(int *)user;
}

/* A ledger whose last line was torn (a crash, a full disk): the next
 * record starts on a line of its own, so the reader loses only the torn
 * one. */
static void test_torn_tail_not_continued(void **state) {
  (void)state;
  char dir[512], path[600];
  nw_test_tmpdir(dir, sizeof dir, "torn");
  snprintf(path, sizeof path, "%s/%s", dir, NW_LEDGER_FILE);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"event\":\"start\"}\n{\"event\":\"recovery\",\"before\":{\"max_le",
        f);
  fclose(f);
  nw_ledger l;
  char err[256];
  assert_int_equal(nw_ledger_open(&l, dir, err, sizeof err), 0);
  assert_int_equal(nw_ledger_append(&l, json_pack("{s:s}", "event", "stop")),
                   0);
  nw_ledger_close(&l);
  int good = 0, bad = 0;
  assert_int_equal(nw_ledger_read(path, count_line, &good, &bad), 0);
  assert_int_equal(good, 2); /* start, stop */
  assert_int_equal(bad, 1);  /* the torn line alone */
  nw_test_rmdir_flat(dir);
}

/* A record that cannot be written whole on a full disk is not written at
 * all: the file keeps its size, and the next append after space is freed
 * is whole. */
static void test_record_whole_or_absent(void **state) {
  (void)state;
  nw_fault_fs fs;
  nw_fault_fs_mount(&fs, "ledger", 256);
  if (!fs.mounted)
    skip();
  nw_ledger l;
  char err[256], path[600];
  snprintf(path, sizeof path, "%s/%s", fs.dir, NW_LEDGER_FILE);
  assert_int_equal(nw_ledger_open(&l, fs.dir, err, sizeof err), 0);
  assert_int_equal(nw_ledger_append(&l, json_pack("{s:s}", "event", "start")),
                   0);
  nw_fault_fs_fill(&fs, 0);
  /* bigger than any block left */
  char big[16384];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  size_t before = 0;
  free(nw_test_slurp(path, &before));
  int rc = nw_ledger_append(
      &l, json_pack("{s:s, s:s}", "event", "recovery", "evidence", big));
  printf("append on a full disk: %s\n", nw_strerror(rc));
  assert_int_equal(rc, NW_ENOSPC);
  size_t after = 0;
  free(nw_test_slurp(path, &after));
  assert_int_equal(after, before);
  char filler[600];
  snprintf(filler, sizeof filler, "%s/filler", fs.dir);
  unlink(filler);
  assert_int_equal(nw_ledger_append(&l, json_pack("{s:s}", "event", "stop")),
                   0);
  nw_ledger_close(&l);
  int good = 0, bad = 0;
  assert_int_equal(nw_ledger_read(path, count_line, &good, &bad), 0);
  assert_int_equal(good, 2);
  assert_int_equal(bad, 0);
  nw_fault_fs_unmount(&fs);
}

/* A valid report, as the trainer writes it. */
static void good_report(nw_oom_report *r) {
  memset(r, 0, sizeof *r);
  r->version = NW_OOM_REPORT_VERSION;
  r->pid = 4242;
  snprintf(r->run_id, sizeof r->run_id, "run-1");
  snprintf(r->device, sizeof r->device, "cpu:nw0");
  r->phase = NW_PHASE_TRAIN_FORWARD;
  r->micro_step = 0;
  r->requested_bytes = 1 << 20;
  r->requested_category = NW_MEM_ACTIVATIONS;
  r->set.micro = 8;
  r->set.accum = 4;
  r->set.effective = 32;
  r->set.world = 1;
  r->set.max_len = 96;
  r->set.eval_batch = 8;
  r->steps_since_eval = -1;
  r->n_procs = 1;
  r->procs[0].pid = 5151;
  snprintf(r->procs[0].run_id, sizeof r->procs[0].run_id, "run-1");
  r->procs[0].bytes = 1 << 20;
}

/* The good report's JSON with the first `from` replaced by `to`. */
static char *edited(const char *path, const char *from, const char *to) {
  char *text = nw_test_slurp(path, NULL);
  assert_non_null(text);
  char *at = strstr(text, from);
  if (!at)
    fail_msg("%s not in the report", from);
  size_t n = strlen(text) + strlen(to) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
  free(text);
  return out;
}

/* Well-formed nonsense is refused whole, naming the field: a negative
 * size, pid 0 or 1 or -1 (of the trainer or of a listed process), an
 * unknown phase. */
static void test_report_nonsense_refused(void **state) {
  (void)state;
  char dir[512], path[600], err[512];
  nw_test_tmpdir(dir, sizeof dir, "report");
  snprintf(path, sizeof path, "%s/oom-report.json", dir);
  nw_oom_report r, back;
  good_report(&r);
  assert_int_equal(nw_oom_report_write_path(&r, path, err, sizeof err), 0);
  assert_int_equal(nw_oom_report_read(path, &back, err, sizeof err), 0);
  static const struct {
    const char *from, *to, *field;
  } cases[] = {
      {"\"kv_cache_bytes\": 0", "\"kv_cache_bytes\": -5", "kv_cache_bytes"},
      {"\"pid\": 5151", "\"pid\": 1", "pid"},
      {"\"pid\": 5151", "\"pid\": -1", "pid"},
      {"\"pid\": 5151", "\"pid\": 0", "pid"},
      {"\"pid\": 4242", "\"pid\": 1", "pid"},
      {"\"requested_bytes\": 1048576", "\"requested_bytes\": -1",
       "requested_bytes"},
      {"\"phase\": \"train-forward\"", "\"phase\": \"lunch\"", "phase"},
      {"\"micro_batch\": 8", "\"micro_batch\": -8", "micro_batch"},
      {"\"steps_since_eval\": -1", "\"steps_since_eval\": -2",
       "steps_since_eval"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *text = edited(path, cases[i].from, cases[i].to);
    int rc = nw_oom_report_parse("edited.json", text, strlen(text), &back, err,
                                 sizeof err);
    free(text);
    if (rc != NW_EDATA || !strstr(err, cases[i].field))
      fail_msg("%s -> %s: rc %d, \"%s\"", cases[i].from, cases[i].to, rc, err);
    printf("%s: %s\n", cases[i].to, err);
  }
  unlink(path);
  nw_test_rmdir_flat(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_torn_tail_not_continued),
      cmocka_unit_test(test_record_whole_or_absent),
      cmocka_unit_test(test_report_nonsense_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
