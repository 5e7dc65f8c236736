/* sup_progress.c — status lines into the run's progress. */
#include "supervisor/sup_progress.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h" // defines: nw_log_set_step

void nw_sup_progress_init(nw_sup_progress *p) {
  memset(p, 0, sizeof *p);
  p->resume_step = -1;
}

void nw_sup_progress_started(nw_sup_progress *p, double now) {
  p->last_line_t = now;
  p->start_line_t = p->resume_line_t = 0;
  p->resume_step = -1;
  p->seen_stop = p->seen_finish = 0;
  p->ckpt_errors = p->skipped = 0;
}

static int nw_sup_int(json_t *o, const char *k, int def) {
  json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

/* o's string member k into buf ("" when absent). */
static void nw_sup_str(json_t *o, const char *k, char *buf, size_t len) {
  const char *v = json_string_value(json_object_get(o, k));
  snprintf(buf, len, "%s", v ? v : "");
}

static void nw_sup_progress_step(nw_sup_progress *p, json_t *o) {
  p->step = nw_sup_int(o, "step", p->step);
  nw_log_set_step(p->step);
  p->loss = json_number_value(json_object_get(o, "loss"));
  p->have_loss = 1;
  p->seq_len = nw_sup_int(o, "seq_len", 0);
}

nw_sup_line nw_sup_progress_line(nw_sup_progress *p, int r, const char *text,
                                 double now) {
  p->last_line_t = now;
  if (r != 0) /* progress is rank 0's */
    return NW_SUP_LINE_OTHER;
  json_t *o = json_loads(text, 0, NULL);
  const char *ev = json_string_value(json_object_get(o, "event"));
  nw_sup_line kind = NW_SUP_LINE_OTHER; /* not ours: ignored */
  if (!ev)
    ev = "";
  if (!strcmp(ev, "start")) {
    p->step = p->start_step = nw_sup_int(o, "step", 0);
    p->total_steps = nw_sup_int(o, "steps", p->total_steps);
    p->start_line_t = now;
    kind = NW_SUP_LINE_START;
  } else if (!strcmp(ev, "resume")) {
    p->resume_step = nw_sup_int(o, "step", -1);
    p->resume_line_t = now;
    kind = NW_SUP_LINE_RESUME;
  } else if (!strcmp(ev, "step")) {
    nw_sup_progress_step(p, o);
    kind = NW_SUP_LINE_STEP;
  } else if (!strcmp(ev, "stop")) {
    p->seen_stop = 1;
    kind = NW_SUP_LINE_STOP;
  } else if (!strcmp(ev, "finish")) {
    p->seen_finish = 1;
    kind = NW_SUP_LINE_FINISH;
  } else if (!strcmp(ev, "checkpoint_error")) {
    nw_sup_str(o, "error", p->ckpt_error, sizeof p->ckpt_error);
    p->ckpt_error_step = nw_sup_int(o, "step", -1);
    p->ckpt_errors++;
    kind = NW_SUP_LINE_CKPT_ERROR;
  } else if (!strcmp(ev, "checkpoint_skipped")) {
    nw_sup_str(o, "path", p->skipped_path, sizeof p->skipped_path);
    nw_sup_str(o, "reason", p->skipped_reason, sizeof p->skipped_reason);
    nw_sup_str(o, "moved_to", p->skipped_moved_to, sizeof p->skipped_moved_to);
    p->skipped++;
    kind = NW_SUP_LINE_CKPT_SKIPPED;
  }
  json_decref(o);
  return kind;
}
