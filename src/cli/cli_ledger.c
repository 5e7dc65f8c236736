/* cli_ledger.c — the ledger and the run's status for people (and --json
 * for scripts). */
#define _GNU_SOURCE
#include "cli/cli_ledger.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/error.h"
#include "base/runlock.h"
#include "cli/metrics.h"
#include "protocol/ledger.h"
#include "supervisor/supervisor.h"

static const char *nw_cl_str(json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : "-";
}

static int nw_cl_int(json_t *o, const char *k, int def) {
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

static double nw_cl_num(json_t *o, const char *k) {
  return json_number_value(json_object_get(o, k));
}

static void nw_cl_settings(json_t *st, char *buf, size_t len) {
  if (!json_is_object(st)) {
    snprintf(buf, len, "-");
    return;
  }
  snprintf(buf, len, "micro %d accum %d (eff %d) len %d eval %d%s",
           nw_cl_int(st, "micro", 0), nw_cl_int(st, "accum", 0),
           nw_cl_int(st, "effective", 0), nw_cl_int(st, "max_len", 0),
           nw_cl_int(st, "eval_batch", 0),
           json_is_true(json_object_get(st, "release_cache")) ? " release"
                                                              : "");
}

/* The detail column: what matters for each event. */
static void nw_cl_detail(json_t *e, char *buf, size_t len) {
  const char *ev = nw_cl_str(e, "event");
  char a[160], b[160];
  if (!strcmp(ev, "start")) {
    nw_cl_settings(json_object_get(e, "settings"), a, sizeof a);
    snprintf(buf, len, "start %d: %s", nw_cl_int(e, "start", 0), a);
  } else if (!strcmp(ev, "recovery")) {
    nw_cl_settings(json_object_get(e, "before"), a, sizeof a);
    nw_cl_settings(json_object_get(e, "after"), b, sizeof b);
    snprintf(buf, len, "%s; backoff %.1f s [%s] -> [%s]",
             nw_cl_str(e, "summary"), nw_cl_num(e, "backoff_s"), a, b);
  } else if (!strcmp(ev, "resumed")) {
    snprintf(buf, len,
             "step %d from %d, %d steps lost, %.2f s to recover (process "
             "start %.2f s, first step %.2f s after the fork)",
             nw_cl_int(e, "step", 0), nw_cl_int(e, "resumed_from", 0),
             nw_cl_int(e, "steps_lost", 0), nw_cl_num(e, "seconds_to_recover"),
             nw_cl_num(e, "process_start_s"), nw_cl_num(e, "first_step_s"));
  } else if (!strcmp(ev, "give-up")) {
    nw_cl_settings(json_object_get(e, "settings"), a, sizeof a);
    snprintf(buf, len, "%s [%s]", nw_cl_str(e, "evidence"), a);
  } else if (!strcmp(ev, "delivery")) {
    /* "recovery -> default (hooks.slack.com): delivered, 2 attempts, HTTP
     * 200, 0.41 s" */
    int n =
        snprintf(buf, len,
                 "%s -> %s (%s): %s, %d attempt%s, HTTP %d, "
                 "%.2f s",
                 nw_cl_str(e, "of"), nw_cl_str(e, "hook"), nw_cl_str(e, "host"),
                 nw_cl_str(e, "outcome"), nw_cl_int(e, "attempts", 0),
                 nw_cl_int(e, "attempts", 0) == 1 ? "" : "s",
                 nw_cl_int(e, "http_status", 0), nw_cl_num(e, "seconds"));
    const char *err = json_string_value(json_object_get(e, "error"));
    if (err && n > 0 && (size_t)n < len)
      snprintf(buf + n, len - (size_t)n, ": %s", err);
  } else if (!strcmp(ev, "kill")) {
    char *pids = json_dumps(json_object_get(e, "pids"), JSON_COMPACT);
    snprintf(buf, len, "SIGTERM to duplicates %s, SIGKILL after %.0f s",
             pids ? pids : "?", nw_cl_num(e, "grace_s"));
    free(pids);
  } else {
    snprintf(buf, len, "%s", nw_cl_str(e, "evidence"));
  }
}

static void nw_cl_row(void *user, json_t *e) {
  (void)user;
  char detail[2048];
  nw_cl_detail(e, detail, sizeof detail);
  int pid = nw_cl_int(e, "pid", 0);
  char pids[16] = "-";
  if (pid)
    snprintf(pids, sizeof pids, "%d", pid);
  printf("%-24s %-12s %-17s %-17s %-8s %s\n", nw_cl_str(e, "time"),
         nw_cl_str(e, "event"), nw_cl_str(e, "cause"), nw_cl_str(e, "action"),
         pids, detail);
}

int nw_cli_ledger(int argc, char **argv) {
  if (argc != 2 || argv[1][0] == '-') {
    fputs("usage: nightwatch ledger RUN_DIR\n", argc == 2 ? stdout : stderr);
    return argc == 2 && !strcmp(argv[1], "--help") ? 0 : NW_EXIT_USAGE;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", argv[1], NW_LEDGER_FILE);
  printf("%-24s %-12s %-17s %-17s %-8s %s\n", "TIME", "EVENT", "CAUSE",
         "ACTION", "PID", "DETAIL");
  int bad = 0;
  int rc = nw_ledger_read(path, nw_cl_row, NULL, &bad);
  if (rc < 0) {
    fprintf(stderr, "nightwatch ledger: %s: %s\n", path, nw_strerror(rc));
    return NW_EXIT_FAILURE;
  }
  if (bad)
    fprintf(stderr, "nightwatch ledger: %d unreadable line%s skipped\n", bad,
            bad == 1 ? "" : "s");
  return 0;
}

/* ---- status ---- */

typedef struct {
  int recoveries, gave_up;
  json_t *last_recovery, *last_resumed, *last_event;
} nw_cl_summary;

static void nw_cl_sum(void *user, json_t *e) {
  nw_cl_summary *s = user;
  const char *ev = nw_cl_str(e, "event");
  json_t **slot = NULL;
  if (!strcmp(ev, "recovery")) {
    s->recoveries++;
    slot = &s->last_recovery;
  } else if (!strcmp(ev, "resumed")) {
    slot = &s->last_resumed;
  }
  if (!strcmp(ev, "give-up"))
    s->gave_up = 1;
  if (slot) {
    json_decref(*slot);
    *slot = json_incref(e);
  }
  json_decref(s->last_event);
  s->last_event = json_incref(e);
}

#define NW_CL_STATUS_USAGE                                                     \
  "usage: nightwatch status RUN_DIR [--json] [--metrics FILE]\n"

/* --metrics FILE: the Prometheus textfile (src/metrics.h), written after
 * the usual output. */
static int nw_cl_metrics(const char *dir, const char *file) {
  nw_metrics m;
  char err[2 * NW_PATH_MAX];
  int rc = nw_metrics_collect(dir, &m, err, sizeof err);
  if (rc == 0)
    rc = nw_metrics_write(file, &m, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "nightwatch status: --metrics %s\n", err);
    return NW_EXIT_FAILURE;
  }
  return 0;
}

int nw_cli_status(int argc, char **argv) {
  const char *dir = NULL, *metrics = NULL;
  int as_json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json"))
      as_json = 1;
    else if (!strcmp(argv[i], "--metrics") && i + 1 < argc && !metrics)
      metrics = argv[++i];
    else if (argv[i][0] != '-' && !dir)
      dir = argv[i];
    else {
      fputs(NW_CL_STATUS_USAGE, stderr);
      return NW_EXIT_USAGE;
    }
  }
  if (!dir) {
    fputs(NW_CL_STATUS_USAGE, stderr);
    return NW_EXIT_USAGE;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/status.json", dir);
  json_t *st = json_load_file(path, 0, NULL);
  nw_cl_summary sum = {0};
  snprintf(path, sizeof path, "%s/%s", dir, NW_LEDGER_FILE);
  int lrc = nw_ledger_read(path, nw_cl_sum, &sum, NULL);
  if (!st && lrc < 0) {
    fprintf(stderr, "nightwatch status: %s: no status.json and no ledger\n",
            dir);
    return NW_EXIT_FAILURE;
  }
  int holder = nw_runlock_holder(dir);
  if (as_json) {
    json_t *o =
        json_pack("{s:O?, s:i, s:i, s:O?, s:O?, s:O?}", "status", st,
                  "supervisor_running", holder, "recoveries", sum.recoveries,
                  "last_recovery", sum.last_recovery, "last_resumed",
                  sum.last_resumed, "last_event", sum.last_event);
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text)
      puts(text);
    free(text);
    json_decref(o);
  } else {
    char set[200];
    nw_cl_settings(json_object_get(st, "settings"), set, sizeof set);
    printf("run        %s (%s)\n", nw_cl_str(st, "run_id"), dir);
    if (holder)
      printf("supervisor running, pid %d; state %s\n", holder,
             nw_cl_str(st, "state"));
    else
      printf("supervisor not running; last state %s\n", nw_cl_str(st, "state"));
    printf("trainer    pid %d\n", nw_cl_int(st, "trainer_pid", 0));
    printf("step       %d / %d, loss %.4f\n", nw_cl_int(st, "step", 0),
           nw_cl_int(st, "steps", 0), nw_cl_num(st, "loss"));
    printf("settings   %s\n", set);
    printf("recoveries %d%s\n", sum.recoveries,
           sum.gave_up ? " (gave up)" : "");
    if (sum.last_recovery) {
      char d[2048];
      nw_cl_detail(sum.last_recovery, d, sizeof d);
      printf("last       %s %s: %s\n", nw_cl_str(sum.last_recovery, "time"),
             nw_cl_str(sum.last_recovery, "cause"), d);
    }
    if (sum.last_resumed) {
      char d[2048];
      nw_cl_detail(sum.last_resumed, d, sizeof d);
      printf("resumed    %s\n", d);
    }
  }
  json_decref(st);
  json_decref(sum.last_recovery);
  json_decref(sum.last_resumed);
  json_decref(sum.last_event);
  return metrics ? nw_cl_metrics(dir, metrics) : 0;
}
