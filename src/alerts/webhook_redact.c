/* webhook_redact.c — a hook's secret, and keeping it and the URL's tokens
 * out of every text: a URL names a Slack or Discord webhook's token in its
 * path, others put one in the query, so nothing of a URL but its host is
 * ever shown, and error texts from libcurl or the receiver are redacted
 * before they reach a log line or an outcome. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alerts/webhook_internal.h"
#include "base/error.h"
#include "base/log.h"

static int nw__add_scrub(nw_webhook__hook *h, const char *s, size_t n,
                         size_t min) {
  if (n < min || h->n_scrub == NW_WEBHOOK_SCRUB_MAX)
    return 0;
  char *c = strndup(s, n);
  if (!c)
    return NW_EHOSTMEM;
  /* longest first: the whole URL is replaced before its pieces */
  int i = h->n_scrub++;
  while (i > 0 && strlen(h->scrub[i - 1]) < n) {
    h->scrub[i] = h->scrub[i - 1];
    i--;
  }
  h->scrub[i] = c;
  return 0;
}

/* The whole URL, its user:password@, its path and query, and each piece
 * of those (Slack's and Discord's tokens are path segments; others put
 * them in the query), and the secret. */
int nw_webhook__redact_init(nw_webhook__hook *h) {
  const char *u = h->url;
  NW_TRY(nw__add_scrub(h, u, strlen(u), 1));
  const char *p = strstr(u, "://");
  p = p ? p + 3 : u;
  size_t auth = strcspn(p, "/?#");
  const char *at = NULL;
  for (size_t i = 0; i < auth; i++)
    if (p[i] == '@')
      at = p + i;
  if (at)
    NW_TRY(nw__add_scrub(h, p, (size_t)(at - p), 1));
  const char *path = p + auth;
  NW_TRY(nw__add_scrub(h, path, strlen(path), 2)); /* not a lone "/" */
  while (*path) {
    path += strspn(path, "/?#&=;");
    size_t n = strcspn(path, "/?#&=;");
    /* shorter pieces ("api", "hooks") are no token, and common words */
    NW_TRY(nw__add_scrub(h, path, n, 6));
    path += n;
  }
  if (h->secret && h->secret_len)
    NW_TRY(nw__add_scrub(h, h->secret, h->secret_len, 1));
  return 0;
}

/* Replaces every string of h->scrub in text (NUL-terminated, of size len) by
 * "[redacted]"; what no longer fits is cut off. */
void nw_webhook__redact(const nw_webhook__hook *h, char *text, size_t len) {
  static const char mark[] = "[redacted]";
  if (len == 0)
    return;
  char *out = malloc(len);
  if (!out) { /* cannot prove the text clean: show none of it */
    snprintf(text, len, "%s", mark);
    return;
  }
  size_t n = 0;
  for (const char *p = text; *p && n + 1 < len;) {
    int hit = -1;
    for (int i = 0; i < h->n_scrub && hit < 0; i++)
      if (strncmp(p, h->scrub[i], strlen(h->scrub[i])) == 0)
        hit = i;
    if (hit < 0) {
      out[n++] = *p++;
      continue;
    }
    size_t k = sizeof mark - 1;
    if (n + k + 1 > len)
      k = len - 1 - n;
    memcpy(out + n, mark, k);
    n += k;
    p += strlen(h->scrub[hit]);
  }
  out[n] = 0;
  memcpy(text, out, n + 1);
  free(out);
}

/* --- the secret ------------------------------------------------------- */

int nw_webhook__read_secret(nw_webhook__hook *h, const char *path, char *err,
                            size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, errlen, "alert hook %s: secret_file %s: %s", h->name, path,
             strerror(errno));
    return NW_ECONFIG;
  }
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "alert hook %s: secret_file %s: not a regular file",
             h->name, path);
    close(fd);
    return NW_ECONFIG;
  }
  if (st.st_mode & (S_IRGRP | S_IROTH))
    nw_warn("alert hook %s: secret_file %s can be read by group or others "
            "(mode %04o): chmod 600 it",
            h->name, path, (unsigned)(st.st_mode & 07777));
  char buf[NW_WEBHOOK_SECRET_MAX + 1];
  size_t n = 0;
  ssize_t r = 0;
  while (n < sizeof buf && (r = read(fd, buf + n, sizeof buf - n)) != 0) {
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      break;
    n += (size_t)r;
  }
  int rerr = r < 0 ? errno : 0;
  close(fd);
  int rc = 0;
  if (rerr) {
    snprintf(err, errlen, "alert hook %s: secret_file %s: %s", h->name, path,
             strerror(rerr));
    rc = NW_ECONFIG;
  } else if (n > NW_WEBHOOK_SECRET_MAX) {
    snprintf(err, errlen,
             "alert hook %s: secret_file %s is longer than %d bytes", h->name,
             path, NW_WEBHOOK_SECRET_MAX);
    rc = NW_ECONFIG;
  }
  /* "echo secret > file" leaves a newline the receiver's copy lacks */
  while (rc == 0 && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    n--;
  if (rc == 0 && n == 0) {
    snprintf(err, errlen, "alert hook %s: secret_file %s is empty", h->name,
             path);
    rc = NW_ECONFIG;
  }
  if (rc == 0 && memchr(buf, 0, n)) {
    snprintf(err, errlen, "alert hook %s: secret_file %s holds a NUL byte",
             h->name, path);
    rc = NW_ECONFIG;
  }
  if (rc == 0 && !(h->secret = malloc(n + 1)))
    rc = NW_EHOSTMEM;
  if (rc == 0) {
    memcpy(h->secret, buf, n);
    h->secret[n] = 0;
    h->secret_len = n;
  }
  explicit_bzero(buf, sizeof buf);
  return rc;
}
