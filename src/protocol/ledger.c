/* ledger.c — the append-only, fsynced recovery ledger. */
#define _GNU_SOURCE
#include "protocol/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "protocol/settings.h"

int nw_ledger_open(nw_ledger *l, const char *dir, char *err, size_t errlen) {
  snprintf(l->path, sizeof l->path, "%s/%s", dir, NW_LEDGER_FILE);
  l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (l->fd < 0) {
    snprintf(err, errlen, "%s: %s", l->path, strerror(errno));
    return NW_ESYS;
  }
  return 0;
}

void nw_ledger_now_iso(char *buf, size_t len) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, len, "%s.%03dZ", base, (int)(ts.tv_nsec / 1000000));
}

int nw_ledger_append(nw_ledger *l, json_t *obj) {
  if (!obj)
    return NW_EHOSTMEM;
  char now[40];
  nw_ledger_now_iso(now, sizeof now);
  /* "time" first in the line: people read the file too */
  json_t *line = json_pack("{s:s}", "time", now);
  if (!line || json_object_update(line, obj) < 0) {
    json_decref(line);
    json_decref(obj);
    return NW_EHOSTMEM;
  }
  json_decref(obj);
  /* 15 digits: 1.19, not 1.1899999999999999 (a double's 17) */
  char *text = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER |
                                    JSON_REAL_PRECISION(15));
  json_decref(line);
  if (!text)
    return NW_EHOSTMEM;
  size_t n = strlen(text);
  text[n] = '\n'; /* json_dumps leaves room: the NUL becomes the newline */
  int rc = 0;
  ssize_t w = write(l->fd, text, n + 1);
  if (w != (ssize_t)(n + 1) || fsync(l->fd) < 0)
    rc = NW_EIO;
  free(text);
  return rc;
}

void nw_ledger_close(nw_ledger *l) {
  if (l->fd >= 0)
    close(l->fd);
  l->fd = -1;
}

json_t *nw_ledger_settings(const nw_config *cfg) {
  nw_settings s;
  nw_settings_of(cfg, &s);
  return nw_settings_json(&s, 0);
}

int nw_ledger_read(const char *path, void (*fn)(void *user, json_t *entry),
                   void *user, int *bad) {
  FILE *f = fopen(path, "re");
  if (!f)
    return errno == ENOENT ? NW_ENOTFOUND : NW_EIO;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  if (bad)
    *bad = 0;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (n == 1 && line[0] == '\n')
      continue;
    json_t *e = json_loadb(line, (size_t)n, JSON_DISABLE_EOF_CHECK, NULL);
    if (json_is_object(e))
      fn(user, e);
    else if (bad)
      (*bad)++;
    json_decref(e);
  }
  int rc = ferror(f) ? NW_EIO : 0;
  free(line);
  fclose(f);
  return rc;
}
