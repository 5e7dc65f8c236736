/* ledger.c — the append-only, fsynced recovery ledger. */
#define _GNU_SOURCE
#include "protocol/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h"
#include "protocol/settings.h"

int nw_ledger_open(nw_ledger *l, const char *dir, char *err, size_t errlen) {
  snprintf(l->path, sizeof l->path, "%s/%s", dir, NW_LEDGER_FILE);
  /* read too: the last byte says whether a torn record ends the file */
  l->fd = open(l->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
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

/* 1 when the file's last byte is not a newline: a record torn by a crash
 * or a full disk that could not be cut off. */
static int nw_ledger_torn_tail(int fd, off_t size) {
  char last = '\n';
  return size > 0 && pread(fd, &last, 1, size - 1) == 1 && last != '\n';
}

/* One record, whole or not at all: a short write (a full disk) is cut back
 * to the size before it, and a torn tail left by an earlier failure gets a
 * newline first, so that no record is ever glued onto it (the reader skips
 * the torn line alone). */
static int nw_ledger_write_whole(nw_ledger *l, const char *text, size_t n) {
  struct stat st;
  if (fstat(l->fd, &st) < 0)
    return NW_EIO;
  int torn = nw_ledger_torn_tail(l->fd, st.st_size);
  if (torn && write(l->fd, "\n", 1) != 1) {
    if (ftruncate(l->fd, st.st_size) != 0) {
      /* the tail stays torn; the next append tries again */
    }
    return NW_EIO;
  }
  off_t before = st.st_size + torn;
  ssize_t w = write(l->fd, text, n);
  if (w != (ssize_t)n) {
    int e = w < 0 ? errno : ENOSPC;
    if (ftruncate(l->fd, before) != 0) {
      /* cannot cut it: the next append starts on a new line */
    }
    return e == ENOSPC ? NW_ENOSPC : NW_EIO;
  }
  return fsync(l->fd) < 0 ? NW_EIO : 0;
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
  int rc = nw_ledger_write_whole(l, text, n + 1);
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
