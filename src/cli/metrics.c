/* metrics.c — read a run directory into nw_metrics; write it in the
 * Prometheus text exposition format (version 0.0.4). */
#define _GNU_SOURCE
#include "cli/metrics.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "base/runlock.h"
#include "checkpoints/ckpt.h"
#include "protocol/ledger.h"

const char *nw_metrics_cause_name(int i) {
  return i < NW_CAUSE_COUNT ? nw_cause_name((nw_cause)i) : "hang";
}

static double nw_metrics_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double nw_metrics_mtime(const struct stat *st) {
  return (double)st->st_mtim.tv_sec + st->st_mtim.tv_nsec * 1e-9;
}

static int nw_metrics_int(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? (int)json_integer_value(v) : 0;
}

/* nw_ledger_read callback: recoveries by cause, give-up state, run id. */
static void nw_metrics_entry(void *user, json_t *e) {
  nw_metrics *m = user;
  const char *ev = json_string_value(json_object_get(e, "event"));
  const char *run = json_string_value(json_object_get(e, "run_id"));
  if (run && !m->have_status)
    snprintf(m->run_id, sizeof m->run_id, "%s", run);
  if (!ev)
    return;
  if (!strcmp(ev, "recovery")) {
    const char *cause = json_string_value(json_object_get(e, "cause"));
    /* The ledger only holds causes of this table; anything else would be
     * a newer writer's, counted as unknown rather than dropped. */
    int slot = NW_CAUSE_UNKNOWN;
    for (int i = 0; cause && i < NW_METRICS_CAUSES; i++)
      if (!strcmp(cause, nw_metrics_cause_name(i)))
        slot = i;
    m->recoveries[slot]++;
  } else if (!strcmp(ev, "give-up")) {
    m->gave_up = 1;
  } else if (!strcmp(ev, "start")) {
    m->gave_up = 0; /* a new supervisor (systemd's restart) took over */
  }
}

static int nw_metrics_status(const char *run_dir, nw_metrics *m, double now,
                             char *err, size_t errlen) {
  char path[NW_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/status.json", run_dir);
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT)
      return 0;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NW_EIO;
  }
  json_error_t jerr;
  json_t *o = json_load_file(path, 0, &jerr);
  if (!json_is_object(o)) {
    /* written atomically by the supervisor: never half a file */
    snprintf(err, errlen, "%s: %s", path, o ? "not an object" : jerr.text);
    json_decref(o);
    return NW_EDATA;
  }
  m->have_status = 1;
  const char *run = json_string_value(json_object_get(o, "run_id"));
  if (run)
    snprintf(m->run_id, sizeof m->run_id, "%s", run);
  m->step = nw_metrics_int(o, "step");
  m->steps = nw_metrics_int(o, "steps");
  m->loss = json_number_value(json_object_get(o, "loss"));
  m->seq_len = nw_metrics_int(o, "seq_len");
  json_t *set = json_object_get(o, "settings");
  m->micro = nw_metrics_int(set, "micro");
  m->accum = nw_metrics_int(set, "accum");
  m->effective = nw_metrics_int(set, "effective");
  m->max_len = nw_metrics_int(set, "max_len");
  m->status_age_s = now - nw_metrics_mtime(&st);
  json_decref(o);
  return 0;
}

/* The newest checkpoint by name; its age from its mtime (written once,
 * renamed into place, never touched again). */
static int nw_metrics_ckpt(const char *run_dir, nw_metrics *m, double now,
                           char *err, size_t errlen) {
  char paths[1][NW_PATH_MAX];
  int n = 0;
  NW_TRY(nw_ckpt_list(run_dir, paths, 1, &n, err, errlen));
  if (n == 0)
    return 0;
  struct stat st;
  if (stat(paths[0], &st) != 0) {
    if (errno == ENOENT)
      return 0; /* removed by retention since the listing */
    snprintf(err, errlen, "%s: %s", paths[0], strerror(errno));
    return NW_EIO;
  }
  const char *name = strrchr(paths[0], '/');
  m->ckpt_step = strtol(name ? name + 6 : paths[0] + 5, NULL, 10); /* ckpt-N */
  m->ckpt_age_s = now - nw_metrics_mtime(&st);
  m->have_ckpt = 1;
  return 0;
}

int nw_metrics_collect(const char *run_dir, nw_metrics *m, char *err,
                       size_t errlen) {
  memset(m, 0, sizeof *m);
  double now = nw_metrics_now();
  NW_TRY(nw_metrics_status(run_dir, m, now, err, errlen));
  char path[NW_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/%s", run_dir, NW_LEDGER_FILE);
  int rc = nw_ledger_read(path, nw_metrics_entry, m, NULL);
  if (rc < 0 && rc != NW_ENOTFOUND) {
    snprintf(err, errlen, "%s: %s", path, nw_strerror(rc));
    return rc;
  }
  NW_TRY(nw_metrics_ckpt(run_dir, m, now, err, errlen));
  m->supervisor_up = nw_runlock_holder(run_dir) > 0;
  if (!m->run_id[0]) {
    /* Two runs' files must not share a label set: node_exporter refuses
     * duplicates, so an unknown id falls back to the directory's name. */
    char buf[NW_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", run_dir);
    snprintf(m->run_id, sizeof m->run_id, "%s", basename(buf));
  }
  return 0;
}

/* ---- the exposition format ---- */

/* A label value: backslash, double quote and newline escaped. */
static void nw_metrics_label(FILE *f, const char *v) {
  for (; *v; v++) {
    if (*v == '\\')
      fputs("\\\\", f);
    else if (*v == '"')
      fputs("\\\"", f);
    else if (*v == '\n')
      fputs("\\n", f);
    else
      fputc(*v, f);
  }
}

/* The format's float: Go's ParseFloat syntax, NaN and +Inf/-Inf spelled
 * its way. */
static void nw_metrics_value(FILE *f, double v) {
  if (isnan(v))
    fputs("NaN", f);
  else if (isinf(v))
    fputs(v > 0 ? "+Inf" : "-Inf", f);
  else
    fprintf(f, "%.10g", v);
}

static void nw_metrics_head(FILE *f, const char *name, const char *type,
                            const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{run="..."} v, with a second label when label is not NULL. */
static void nw_metrics_sample(FILE *f, const nw_metrics *m, const char *name,
                              const char *label, const char *lvalue, double v) {
  fprintf(f, "%s{run=\"", name);
  nw_metrics_label(f, m->run_id);
  if (label) {
    fprintf(f, "\",%s=\"", label);
    nw_metrics_label(f, lvalue);
  }
  fputs("\"} ", f);
  nw_metrics_value(f, v);
  fputc('\n', f);
}

static void nw_metrics_gauge(FILE *f, const nw_metrics *m, const char *name,
                             const char *help, double v) {
  nw_metrics_head(f, name, "gauge", help);
  nw_metrics_sample(f, m, name, NULL, NULL, v);
}

int nw_metrics_format(const nw_metrics *m, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  FILE *f = open_memstream(text, len);
  if (!f)
    return NW_EHOSTMEM;
  if (m->have_status) {
    nw_metrics_gauge(f, m, "nightwatch_step", "Optimizer steps completed.",
                     (double)m->step);
    nw_metrics_gauge(f, m, "nightwatch_steps_planned",
                     "Optimizer steps the run is configured for.",
                     (double)m->steps);
    nw_metrics_gauge(f, m, "nightwatch_loss",
                     "Training loss of the latest step (mean per target "
                     "token of the effective batch).",
                     m->loss);
    nw_metrics_gauge(f, m, "nightwatch_micro_batch",
                     "Micro-batch size in force.", m->micro);
    nw_metrics_gauge(f, m, "nightwatch_accumulation",
                     "Gradient accumulation steps in force.", m->accum);
    nw_metrics_gauge(f, m, "nightwatch_effective_batch",
                     "Effective batch size (never changed by recovery).",
                     m->effective);
    nw_metrics_gauge(f, m, "nightwatch_seq_len",
                     "Padded length of the latest step's longest micro-batch.",
                     m->seq_len);
    nw_metrics_gauge(f, m, "nightwatch_max_seq_len",
                     "Maximum sequence length in force (data.max_len).",
                     m->max_len);
    nw_metrics_gauge(f, m, "nightwatch_status_age_seconds",
                     "Seconds since the supervisor last wrote status.json.",
                     m->status_age_s);
  }
  nw_metrics_head(f, "nightwatch_recoveries_total", "counter",
                  "Recoveries recorded in the ledger, by cause.");
  for (int i = 0; i < NW_METRICS_CAUSES; i++)
    nw_metrics_sample(f, m, "nightwatch_recoveries_total", "cause",
                      nw_metrics_cause_name(i), (double)m->recoveries[i]);
  nw_metrics_gauge(f, m, "nightwatch_gave_up",
                   "1 when the supervisor gave up and none was started since.",
                   m->gave_up);
  nw_metrics_gauge(f, m, "nightwatch_supervisor_up",
                   "1 when a supervisor holds the run directory's lock.",
                   m->supervisor_up);
  if (m->have_ckpt) {
    nw_metrics_gauge(f, m, "nightwatch_last_checkpoint_step",
                     "Step of the newest checkpoint file.",
                     (double)m->ckpt_step);
    nw_metrics_gauge(f, m, "nightwatch_last_checkpoint_age_seconds",
                     "Seconds since the newest checkpoint file was written.",
                     m->ckpt_age_s);
  }
  int bad = ferror(f);
  if (fclose(f) != 0 || bad) {
    free(*text);
    *text = NULL;
    *len = 0;
    return NW_EHOSTMEM;
  }
  return 0;
}

int nw_metrics_write(const char *path, const nw_metrics *m, char *err,
                     size_t errlen) {
  /* Say so plainly when the directory is missing: the writer's own message
   * would name the temporary, not the file asked for. */
  char dir[NW_PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  struct stat st;
  if (stat(dirname(dir), &st) != 0) {
    snprintf(err, errlen, "%s: directory %s: %s", path, dir,
             errno == ENOENT ? "does not exist" : strerror(errno));
    return NW_EIO;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: %s is not a directory", path, dir);
    return NW_EIO;
  }
  char *text;
  size_t len;
  if (nw_metrics_format(m, &text, &len) < 0) {
    snprintf(err, errlen, "%s: out of host memory", path);
    return NW_EHOSTMEM;
  }
  char werr[NW_PATH_MAX + 128];
  int rc = nw_write_file_atomic(path, text, len, werr, sizeof werr);
  free(text);
  if (rc < 0)
    snprintf(err, errlen, "%s: %s", path, werr);
  return rc;
}
