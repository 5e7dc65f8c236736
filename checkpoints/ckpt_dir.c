/* ckpt_dir.c — the checkpoints of a run directory: names, listing newest
 * first, finding the newest that verifies, keep-last-N retention. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "base/fsutil.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_internal.h"

#define NW_CKPT_DIGITS 10

void nw_ckpt_path(const char *run_dir, int64_t step, char *buf, size_t len) {
  snprintf(buf, len, "%s/%s/ckpt-%010lld.h5", run_dir, NW_CKPT_SUBDIR,
           (long long)step);
}

/* "ckpt-<10 digits>.h5" followed by `rest`; the step, or -1. */
static int64_t nw_ckpt_parse_name(const char *name, const char **rest) {
  if (strncmp(name, "ckpt-", 5) != 0)
    return -1;
  int64_t step = 0;
  for (int i = 0; i < NW_CKPT_DIGITS; i++) {
    char c = name[5 + i];
    if (c < '0' || c > '9')
      return -1;
    step = step * 10 + (c - '0');
  }
  if (strncmp(name + 5 + NW_CKPT_DIGITS, ".h5", 3) != 0)
    return -1;
  *rest = name + 5 + NW_CKPT_DIGITS + 3;
  return step;
}

typedef struct {
  int64_t step;
  char name[5 + NW_CKPT_DIGITS + 4];
} nw_ckpt_entry;

static int nw_ckpt_cmp_desc(const void *a, const void *b) {
  int64_t x = ((const nw_ckpt_entry *)a)->step;
  int64_t y = ((const nw_ckpt_entry *)b)->step;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* Every checkpoint of the run newest first (*out malloc'd, *n entries). A
 * missing directory is an empty list. */
static int nw_ckpt_scan(const char *run_dir, nw_ckpt_entry **out, int *n,
                        char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  char dir[NW_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/%s", run_dir, NW_CKPT_SUBDIR);
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT)
      return 0;
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return NW_EIO;
  }
  nw_ckpt_entry *v = NULL;
  int cap = 0, cnt = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *rest;
    int64_t step = nw_ckpt_parse_name(de->d_name, &rest);
    if (step < 0 || *rest != 0)
      continue;
    if (cnt == cap) {
      int nc = cap ? 2 * cap : 64;
      nw_ckpt_entry *nv = realloc(v, (size_t)nc * sizeof *v);
      if (!nv) {
        free(v);
        closedir(d);
        snprintf(err, errlen, "%s: out of host memory", dir);
        return NW_EHOSTMEM;
      }
      v = nv;
      cap = nc;
    }
    v[cnt].step = step;
    memcpy(v[cnt].name, de->d_name, sizeof v[cnt].name - 1); /* exact length */
    v[cnt].name[sizeof v[cnt].name - 1] = 0;
    cnt++;
  }
  closedir(d);
  if (cnt > 0)
    qsort(v, (size_t)cnt, sizeof *v, nw_ckpt_cmp_desc);
  *out = v;
  *n = cnt;
  return 0;
}

static int nw_ckpt_join(const char *run_dir, const char *name, char *buf,
                        size_t len) {
  size_t n =
      (size_t)snprintf(buf, len, "%s/%s/%s", run_dir, NW_CKPT_SUBDIR, name);
  return n < len ? 0 : -1;
}

int nw_ckpt_list(const char *run_dir, char (*paths)[NW_PATH_MAX], int max,
                 int *n, char *err, size_t errlen) {
  nw_ckpt_entry *v;
  int cnt;
  *n = 0;
  NW_TRY(nw_ckpt_scan(run_dir, &v, &cnt, err, errlen));
  int rc = 0;
  for (int i = 0; i < cnt && *n < max; i++) {
    if (nw_ckpt_join(run_dir, v[i].name, paths[*n], NW_PATH_MAX) != 0) {
      snprintf(err, errlen, "%s: path too long", run_dir);
      rc = NW_ECONFIG;
      break;
    }
    (*n)++;
  }
  free(v);
  return rc;
}

int64_t nw_ckpt_name_step(const char *path) {
  const char *rest;
  int64_t step = nw_ckpt_parse_name(nw_ckpt__base(path), &rest);
  return step >= 0 && *rest == 0 ? step : -1;
}

int nw_ckpt_set_aside(const char *run_dir, const char *path, const char *subdir,
                      char *moved_to, size_t len) {
  char dir[NW_PATH_MAX], err[256];
  snprintf(dir, sizeof dir, "%s/%s/%s", run_dir, NW_CKPT_SUBDIR, subdir);
  moved_to[0] = 0;
  NW_TRY(nw_mkdir_p(dir, err, sizeof err));
  const char *base = nw_ckpt__base(path);
  for (int k = 0; k < 1000; k++) {
    char to[NW_PATH_MAX + 64];
    if (k == 0)
      snprintf(to, sizeof to, "%s/%s", dir, base);
    else
      snprintf(to, sizeof to, "%s/%s.%d", dir, base, k);
    /* never over another: link fails on an existing name, rename would not */
    struct stat sb;
    if (lstat(to, &sb) == 0)
      continue;
    if (rename(path, to) != 0)
      return errno == ENOENT ? NW_ENOTFOUND : NW_EIO;
    snprintf(moved_to, len, "%s", to);
    (void)nw_fsync_parent_dir(to);
    (void)nw_fsync_parent_dir(path);
    return 0;
  }
  return NW_EBUSY;
}

/* A candidate that failed: moved aside, reported, and added to the list
 * of err (the caller's message when none verifies). */
static void nw_ckpt_reject(const char *run_dir, const char *p, const char *why,
                           const nw_ckpt_search *search, char *list,
                           size_t listlen) {
  char moved[NW_PATH_MAX + 64] = "";
  if (nw_ckpt_set_aside(run_dir, p, "damaged", moved, sizeof moved) < 0)
    moved[0] = 0;
  if (search && search->skipped)
    search->skipped(search->user, p, why, moved);
  size_t used = strlen(list);
  if (used + 1 < listlen)
    snprintf(list + used, listlen - used, "%s%s", used ? "; " : "", why);
}

int nw_ckpt_find_latest(const char *run_dir, double timeout_s,
                        const nw_ckpt_search *search, char *path, size_t len,
                        char *err, size_t errlen) {
  nw_ckpt_entry *v;
  int cnt;
  NW_TRY(nw_ckpt_scan(run_dir, &v, &cnt, err, errlen));
  char p[NW_PATH_MAX], why[1024], list[4096] = "";
  for (int i = 0; i < cnt; i++) {
    if (nw_ckpt_join(run_dir, v[i].name, p, sizeof p) != 0)
      continue;
    if (nw_ckpt_verify_watched(p, timeout_s, search, why, sizeof why) == 0) {
      snprintf(path, len, "%s", p);
      free(v);
      return 0;
    }
    nw_ckpt_reject(run_dir, p, why, search, list, sizeof list);
  }
  free(v);
  if (cnt == 0) {
    snprintf(err, errlen, "%s/%s: no checkpoints", run_dir, NW_CKPT_SUBDIR);
    return NW_ENOTFOUND;
  }
  snprintf(err, errlen,
           "%s/%s: none of %d checkpoint%s verifies (moved to damaged/): %s",
           run_dir, NW_CKPT_SUBDIR, cnt, cnt == 1 ? "" : "s", list);
  return NW_EDAMAGED;
}

/* Verification for retention: regular files only (anything else is not a
 * checkpoint we wrote), time limit by size (a disk at 50 MB/s, plus 30 s). */
static int nw_ckpt_good(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
    return 0;
  double limit = 30.0 + (double)sb.st_size / 50e6;
  char why[1024];
  return nw_ckpt_verify_isolated(path, limit, why, sizeof why) == 0;
}

/* "ckpt-<step>.h5.tmp.<pid>" whose writer is gone. */
static int nw_ckpt_stale_tmp(const char *name) {
  const char *rest;
  if (nw_ckpt_parse_name(name, &rest) < 0 || strncmp(rest, ".tmp.", 5) != 0)
    return 0;
  rest += 5;
  if (*rest == 0)
    return 0;
  long pid = 0;
  for (const char *c = rest; *c; c++) {
    if (*c < '0' || *c > '9' || pid > 1L << 30)
      return 0;
    pid = pid * 10 + (*c - '0');
  }
  if (pid <= 0 || pid == (long)getpid())
    return 0;
  return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

int nw_ckpt_retain(const char *run_dir, int keep, const char *durable_newest) {
  char err[256];
  nw_ckpt_entry *v;
  int cnt;
  NW_TRY(nw_ckpt_scan(run_dir, &v, &cnt, err, sizeof err));
  if (keep < 1)
    keep = 1;
  char p[NW_PATH_MAX];
  /* Protected: the newest file that verifies and everything newer (a
   * successor that is not good yet must not cost us the last good one). */
  int protect_through = -1;
  if (cnt > keep) {
    protect_through = cnt - 1; /* none verifies: keep all */
    for (int i = 0; i < cnt; i++)
      if (nw_ckpt_join(run_dir, v[i].name, p, sizeof p) == 0 &&
          nw_ckpt_good(p)) {
        protect_through = i;
        break;
      }
  }
  int removed = 0;
  for (int i = keep; i < cnt; i++) {
    if (i <= protect_through)
      continue;
    if (nw_ckpt_join(run_dir, v[i].name, p, sizeof p) != 0)
      continue;
    if (durable_newest && strcmp(nw_ckpt__base(durable_newest), v[i].name) == 0)
      continue;
    if (unlink(p) == 0)
      removed++;
  }
  free(v);

  char dir[NW_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/%s", run_dir, NW_CKPT_SUBDIR);
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
      if (nw_ckpt_stale_tmp(de->d_name) &&
          nw_ckpt_join(run_dir, de->d_name, p, sizeof p) == 0 && unlink(p) == 0)
        removed++;
    closedir(d);
  }
  if (removed > 0 && nw_ckpt_join(run_dir, ".", p, sizeof p) == 0)
    (void)nw_fsync_parent_dir(p); /* the unlinks, durable */
  return removed;
}
