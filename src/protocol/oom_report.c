/* oom_report.c — the OOM report as JSON (jansson), written and read. */
#define _GNU_SOURCE
#include "protocol/oom_report.h"

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/fsutil.h"

static const char *const nw_phase_names[NW_PHASE_COUNT] = {
#define NW_PHASE_NAME(name, str) str,
    NW_PHASES(NW_PHASE_NAME)
#undef NW_PHASE_NAME
};

const char *nw_phase_name(nw_phase p) {
  return (int)p >= 0 && p < NW_PHASE_COUNT ? nw_phase_names[p] : "unknown";
}

int nw_phase_parse(const char *s, nw_phase *out) {
  for (int i = 0; i < NW_PHASE_COUNT; i++)
    if (strcmp(s, nw_phase_names[i]) == 0) {
      *out = (nw_phase)i;
      return 0;
    }
  return NW_EDATA;
}

static json_t *nw_bytes_by_category(const uint64_t *v) {
  json_t *o = json_object();
  for (int c = 0; c < NW_MEM_NCAT; c++)
    json_object_set_new(o, nw_mem_category_name((nw_mem_category)c),
                        json_integer((json_int_t)v[c]));
  return o;
}

int nw_oom_report_write(const nw_oom_report *r, const char *dir, char *err,
                        size_t errlen) {
  char path[2048];
  snprintf(path, sizeof path, "%s/%s", dir, NW_OOM_REPORT_FILE);
  return nw_oom_report_write_path(r, path, err, errlen);
}

int nw_oom_report_write_path(const nw_oom_report *r, const char *path,
                             char *err, size_t errlen) {
  json_t *procs = json_array();
  for (int i = 0; i < r->n_procs; i++)
    json_array_append_new(
        procs, json_pack("{s:i, s:i, s:s, s:I}", "pid", r->procs[i].pid, "uid",
                         (int)r->procs[i].uid, "run_id", r->procs[i].run_id,
                         "bytes", (json_int_t)r->procs[i].bytes));
  json_t *o = json_pack(
      "{s:i, s:i, s:s, s:s, s:s, s:i, s:i, s:I, s:s, s:I, s:I, s:I, s:o, "
      "s:o, s:I, s:I}",
      "version", NW_OOM_REPORT_VERSION, "pid", r->pid, "run_id", r->run_id,
      "device", r->device, "phase", nw_phase_name(r->phase), "step", r->step,
      "micro_step", r->micro_step, "requested_bytes",
      (json_int_t)r->requested_bytes, "requested_category",
      nw_mem_category_name(r->requested_category), "cap_bytes",
      (json_int_t)r->cap_bytes, "device_capacity",
      (json_int_t)r->device_capacity, "device_used", (json_int_t)r->device_used,
      "live_bytes", nw_bytes_by_category(r->live), "peak_bytes",
      nw_bytes_by_category(r->peak), "cached_bytes",
      (json_int_t)r->cached_bytes, "kv_cache_bytes",
      (json_int_t)r->kv_cache_bytes);
  json_t *more =
      json_pack("{s:i, s:i, s:i, s:i, s:o, s:b, s:s}", "seq_len", r->seq_len,
                "max_seq_len", r->max_seq_len, "median_seq_len",
                r->median_seq_len, "steps_since_eval", r->steps_since_eval,
                "device_processes", procs, "emergency_checkpoint",
                r->emergency_checkpoint, "checkpoint", r->checkpoint);
  json_t *set = nw_settings_json(&r->set, 1);
  if (more && set)
    json_object_update(more, set);
  json_decref(set);
  if (!o || !more) {
    json_decref(o);
    json_decref(more);
    snprintf(err, errlen, "OOM report: could not build JSON");
    return NW_EHOSTMEM;
  }
  json_object_update(o, more);
  json_decref(more);
  if (r->device_note[0])
    json_object_set_new(o, "device_note", json_string(r->device_note));
  char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!text) {
    snprintf(err, errlen, "OOM report: could not format JSON");
    return NW_EHOSTMEM;
  }
  size_t len = strlen(text);
  int rc = nw_write_file_atomic(path, text, len, err, errlen);
  free(text);
  return rc;
}

/* Field readers: each names the file and the field when it is wrong. */
typedef struct {
  json_t *root;
  const char *path;
  char *err;
  size_t errlen;
  int failed;
} nw_reader;

/* An integer field of at least min (and at most INT_MAX when it is read into
 * an int): a well-formed report with nonsense in it (a negative size, pid
 * 1) is no evidence, and is refused whole. */
static int64_t nw_get_range(nw_reader *rd, json_t *obj, const char *key,
                            int64_t min, int64_t max) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_integer(v) || json_integer_value(v) < min ||
      json_integer_value(v) > max) {
    if (!rd->failed)
      snprintf(rd->err, rd->errlen, "%s: field %s: %s (at least %lld%s)",
               rd->path, key,
               !v                    ? "missing"
               : !json_is_integer(v) ? "not an integer"
                                     : "out of range",
               (long long)min, max == INT_MAX ? ", at most 2^31-1" : "");
    rd->failed = 1;
    return min > 0 ? min : 0;
  }
  return json_integer_value(v);
}

/* the two ranges most fields have */
static int nw_get_int(nw_reader *rd, json_t *obj, const char *key, int min) {
  return (int)nw_get_range(rd, obj, key, min, INT_MAX);
}
static uint64_t nw_get_bytes(nw_reader *rd, json_t *obj, const char *key) {
  return (uint64_t)nw_get_range(rd, obj, key, 0, INT64_MAX);
}

static void nw_get_str(nw_reader *rd, json_t *obj, const char *key, char *dst,
                       size_t len) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_string(v)) {
    if (!rd->failed)
      snprintf(rd->err, rd->errlen, "%s: field %s: missing or not a string",
               rd->path, key);
    rd->failed = 1;
    dst[0] = 0;
    return;
  }
  snprintf(dst, len, "%s", json_string_value(v));
}

static void nw_get_categories(nw_reader *rd, const char *key, uint64_t *out) {
  json_t *o = json_object_get(rd->root, key);
  if (!json_is_object(o)) {
    if (!rd->failed)
      snprintf(rd->err, rd->errlen, "%s: field %s: missing or not an object",
               rd->path, key);
    rd->failed = 1;
    return;
  }
  for (int c = 0; c < NW_MEM_NCAT; c++)
    out[c] = nw_get_bytes(rd, o, nw_mem_category_name((nw_mem_category)c));
}

/* The other processes on the device, and the note that says when that
 * list is not complete. */
static void nw_get_procs(nw_reader *rd, json_t *root, nw_oom_report *r) {
  /* optional: present only when the process list is not complete */
  json_t *note = json_object_get(root, "device_note");
  if (json_is_string(note))
    snprintf(r->device_note, sizeof r->device_note, "%s",
             json_string_value(note));
  json_t *procs = json_object_get(root, "device_processes");
  if (!rd->failed && !json_is_array(procs)) {
    snprintf(rd->err, rd->errlen, "%s: field device_processes: not an array",
             rd->path);
    rd->failed = 1;
  }
  size_t i;
  json_t *p;
  json_array_foreach(procs, i, p) {
    if (r->n_procs >= NW_OOM_MAX_PROCS)
      break;
    nw_device_proc *dp = &r->procs[r->n_procs++];
    dp->pid = nw_get_int(rd, p, "pid", 2);
    dp->uid = (unsigned)nw_get_range(rd, p, "uid", 0, UINT32_MAX);
    nw_get_str(rd, p, "run_id", dp->run_id, sizeof dp->run_id);
    dp->bytes = nw_get_bytes(rd, p, "bytes");
  }
}

static int nw_oom_report_fields(json_t *root, const char *path,
                                nw_oom_report *r, char *err, size_t errlen);

int nw_oom_report_read(const char *path, nw_oom_report *r, char *err,
                       size_t errlen) {
  memset(r, 0, sizeof *r);
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  if (!root) {
    snprintf(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
    return NW_EDATA;
  }
  return nw_oom_report_fields(root, path, r, err, errlen);
}

int nw_oom_report_parse(const char *name, const char *text, size_t len,
                        nw_oom_report *r, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  json_error_t jerr;
  json_t *root = json_loadb(text, len, 0, &jerr);
  if (!root) {
    snprintf(err, errlen, "%s:%d: %s", name, jerr.line, jerr.text);
    return NW_EDATA;
  }
  return nw_oom_report_fields(root, name, r, err, errlen);
}

/* Every field of the report in root (which it releases). */
static int nw_oom_report_fields(json_t *root, const char *path,
                                nw_oom_report *r, char *err, size_t errlen) {
  nw_reader rd = {root, path, err, errlen, 0};
  r->version = nw_get_int(&rd, root, "version", 0);
  if (!rd.failed && r->version != NW_OOM_REPORT_VERSION) {
    snprintf(err, errlen, "%s: version %d, expected %d", path, r->version,
             NW_OOM_REPORT_VERSION);
    json_decref(root);
    return NW_EDATA;
  }
  char name[64];
  r->pid = nw_get_int(&rd, root, "pid", 2);
  nw_get_str(&rd, root, "run_id", r->run_id, sizeof r->run_id);
  nw_get_str(&rd, root, "device", r->device, sizeof r->device);
  nw_get_str(&rd, root, "phase", name, sizeof name);
  if (!rd.failed && nw_phase_parse(name, &r->phase) < 0) {
    snprintf(err, errlen, "%s: field phase: unknown phase \"%s\"", path, name);
    rd.failed = 1;
  }
  r->step = nw_get_int(&rd, root, "step", 0);
  r->micro_step = nw_get_int(&rd, root, "micro_step", -1);
  r->requested_bytes = nw_get_bytes(&rd, root, "requested_bytes");
  nw_get_str(&rd, root, "requested_category", name, sizeof name);
  int found = 0;
  for (int c = 0; c < NW_MEM_NCAT; c++)
    if (strcmp(name, nw_mem_category_name((nw_mem_category)c)) == 0) {
      r->requested_category = (nw_mem_category)c;
      found = 1;
    }
  if (!rd.failed && !found) {
    snprintf(err, errlen, "%s: field requested_category: unknown \"%s\"", path,
             name);
    rd.failed = 1;
  }
  r->cap_bytes = nw_get_bytes(&rd, root, "cap_bytes");
  r->device_capacity = nw_get_bytes(&rd, root, "device_capacity");
  r->device_used = nw_get_bytes(&rd, root, "device_used");
  nw_get_categories(&rd, "live_bytes", r->live);
  nw_get_categories(&rd, "peak_bytes", r->peak);
  r->cached_bytes = nw_get_bytes(&rd, root, "cached_bytes");
  r->kv_cache_bytes = nw_get_bytes(&rd, root, "kv_cache_bytes");
  char why[256];
  if (!rd.failed && nw_settings_from_json(root, &r->set, why, sizeof why) < 0) {
    snprintf(err, errlen, "%s: %s", path, why);
    rd.failed = 1;
  }
  r->seq_len = nw_get_int(&rd, root, "seq_len", 0);
  r->max_seq_len = nw_get_int(&rd, root, "max_seq_len", 0);
  r->median_seq_len = nw_get_int(&rd, root, "median_seq_len", 0);
  r->steps_since_eval = nw_get_int(&rd, root, "steps_since_eval", -1);
  json_t *b = json_object_get(root, "emergency_checkpoint");
  r->emergency_checkpoint = json_is_true(b);
  nw_get_str(&rd, root, "checkpoint", r->checkpoint, sizeof r->checkpoint);
  nw_get_procs(&rd, root, r);
  json_decref(root);
  return rd.failed ? NW_EDATA : 0;
}

void nw_oom_report_path(const char *dir, int rank, int world, char *buf,
                        size_t len) {
  if (world <= 1)
    snprintf(buf, len, "%s/%s", dir, NW_OOM_REPORT_FILE);
  else
    snprintf(buf, len, "%s/oom-report-rank%d.json", dir, rank);
}
