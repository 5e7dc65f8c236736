/* ini.c — the INI reader: one pass over a private copy of the text, split in
 * place into lines; each error is recorded with its line and parsing goes on,
 * so a file with three bad lines reports three errors. */
#include "base/ini.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"

/* A key already seen, for the duplicate check. Pointers into the copy. */
typedef struct {
  const char *section;
  const char *key;
  int line;
} nw__ini_seen;

typedef struct {
  const char *name;
  nw_ini_handler handler;
  void *user;
  nw_ini_errs *errs;
  int nerr; /* errors of this text */
  nw__ini_seen *seen;
  size_t nseen, capseen;
} nw__ini_state;

/* Room kept at the end of buf for the "(N more errors not shown)" line. */
#define NW__INI_TRAILER 48

void nw_ini_errs_init(nw_ini_errs *e, char *buf, size_t len,
                      nw_ini_error_sink sink, void *user) {
  *e = (nw_ini_errs){.sink = sink, .user = user, .buf = buf, .len = len};
  if (buf && len)
    buf[0] = '\0';
}

void nw_ini_errs_add(nw_ini_errs *e, const char *name, int line,
                     const char *msg) {
  e->count++;
  if (e->sink)
    e->sink(e->user, name, line, msg);
  if (!e->buf || e->len == 0)
    return;
  char where[32] = "";
  if (line > 0)
    snprintf(where, sizeof where, ":%d", line);
  const char *sep = e->used ? "\n" : "";
  int need = snprintf(NULL, 0, "%s%s%s: %s", sep, name, where, msg);
  size_t reserve = e->len >= 4 * NW__INI_TRAILER ? NW__INI_TRAILER : 0;
  /* The first error is always written, cut if it must be; later ones only
   * whole, so the buffer never ends in half a line. */
  if (e->used > 0 && e->used + (size_t)need + reserve >= e->len) {
    e->dropped++;
  } else {
    snprintf(e->buf + e->used, e->len - e->used, "%s%s%s: %s", sep, name, where,
             msg);
    e->used += (size_t)need;
    if (e->used >= e->len)
      e->used = e->len - 1;
  }
  /* Rewritten after every error, so the text is whole at any time: no
   * "finish" call for a caller to forget. */
  if (e->dropped && e->used + 1 < e->len)
    snprintf(e->buf + e->used, e->len - e->used, "\n(%d more errors not shown)",
             e->dropped);
}

static void nw__ini_report(nw__ini_state *st, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nw__ini_report(nw__ini_state *st, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  st->nerr++;
  nw_ini_errs_add(st->errs, st->name, line, msg);
}

/* Text of the file for a message: at most max bytes, control bytes
 * escaped. */
static const char *nw__ini_show(const char *s, size_t max, char *buf,
                                size_t len) {
  nw_strbuf b = nw_strbuf_init(buf, len);
  nw_strbuf_escape(&b, s, max);
  return buf;
}

static int nw__ini_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static char *nw__ini_trim(char *s) {
  while (nw__ini_space(*s))
    s++;
  char *e = s + strlen(s);
  while (e > s && nw__ini_space(e[-1]))
    *--e = '\0';
  return s;
}

static int nw__ini_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

/* Returns the first character that may not appear in a name, or NULL. */
static const char *nw__ini_bad_char(const char *s) {
  for (; *s; s++)
    if (!nw__ini_name_char(*s))
      return s;
  return NULL;
}

static int nw__ini_comment_start(char c) { return c == '#' || c == ';'; }

/* Parses the value after '=' in place. Returns NULL and reports on error. */
static char *nw__ini_value(nw__ini_state *st, char *v, int line) {
  v = nw__ini_trim(v);
  if (*v == '"') {
    char *out = v, *p = v + 1;
    while (*p && *p != '"') {
      if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
        p++;
      *out++ = *p++;
    }
    if (*p != '"') {
      nw__ini_report(st, line, "unterminated quoted value");
      return NULL;
    }
    const char *after = p + 1;
    while (nw__ini_space(*after))
      after++;
    if (*after && !nw__ini_comment_start(*after)) {
      char t[200];
      nw__ini_report(st, line, "unexpected text after closing quote: \"%s\"",
                     nw__ini_show(after, 40, t, sizeof t));
      return NULL;
    }
    *out = '\0';
    return v;
  }
  /* An unquoted value ends at a comment that starts the value or follows
   * whitespace, so "a#b" keeps its '#'. */
  for (char *p = v; *p; p++) {
    if (nw__ini_comment_start(*p) && (p == v || nw__ini_space(p[-1]))) {
      *p = '\0';
      break;
    }
  }
  return nw__ini_trim(v);
}

/* Records section.key at line; reports and returns 1 when it was seen. */
static int nw__ini_duplicate(nw__ini_state *st, const char *section,
                             const char *key, int line, int *oom) {
  for (size_t i = 0; i < st->nseen; i++) {
    if (strcmp(st->seen[i].key, key) == 0 &&
        strcmp(st->seen[i].section, section) == 0) {
      nw__ini_report(st, line, "%s.%s: duplicate key (first set on line %d)",
                     section, key, st->seen[i].line);
      return 1;
    }
  }
  if (st->nseen == st->capseen) {
    size_t cap = st->capseen ? 2 * st->capseen : 64;
    nw__ini_seen *n = realloc(st->seen, cap * sizeof *n);
    if (!n) {
      *oom = 1;
      return 0;
    }
    st->seen = n;
    st->capseen = cap;
  }
  st->seen[st->nseen++] = (nw__ini_seen){section, key, line};
  return 0;
}

/* Handles one header line s (starts with '['). Returns the new section name,
 * or NULL when the header is unusable. */
static const char *nw__ini_header(nw__ini_state *st, char *s, int line) {
  char t[200], c[8];
  char *close = strchr(s, ']');
  if (!close) {
    nw__ini_report(st, line, "missing ']' in section header \"%s\"",
                   nw__ini_show(s, 40, t, sizeof t));
    return NULL;
  }
  *close = '\0';
  char *name = nw__ini_trim(s + 1);
  const char *rest = close + 1;
  while (nw__ini_space(*rest))
    rest++;
  if (*rest && !nw__ini_comment_start(*rest))
    nw__ini_report(st, line, "unexpected text after ']': \"%s\"",
                   nw__ini_show(rest, 40, t, sizeof t));
  if (!*name) {
    nw__ini_report(st, line, "empty section name");
    return NULL;
  }
  const char *bad = nw__ini_bad_char(name);
  if (bad) {
    nw__ini_report(st, line, "invalid character '%s' in section name [%s]",
                   nw__ini_show(bad, 1, c, sizeof c),
                   nw__ini_show(name, 40, t, sizeof t));
    return NULL;
  }
  return name;
}

/* Handles one "key = value" line s (trimmed, not a header). section is NULL
 * before the first header; section_bad: the last header was unusable, so
 * its keys are skipped quietly. Returns 0, or a negative code to stop. */
static int nw__ini_key_line(nw__ini_state *st, char *s, int line,
                            const char *section, int section_bad) {
  char t[200], c[8];
  char *eq = strchr(s, '=');
  if (!eq) {
    nw__ini_report(st, line,
                   "expected 'key = value' or '[section]', got \"%s\"",
                   nw__ini_show(s, 40, t, sizeof t));
    return 0;
  }
  *eq = '\0';
  char *key = nw__ini_trim(s);
  if (!*key) {
    nw__ini_report(st, line, "empty key before '='");
    return 0;
  }
  const char *bad = nw__ini_bad_char(key);
  if (bad) {
    nw__ini_report(st, line, "invalid character '%s' in key \"%s\"",
                   nw__ini_show(bad, 1, c, sizeof c),
                   nw__ini_show(key, 40, t, sizeof t));
    return 0;
  }
  if (!section) {
    if (!section_bad)
      nw__ini_report(st, line, "key \"%.40s\" outside any [section]", key);
    return 0;
  }
  char *value = nw__ini_value(st, eq + 1, line);
  if (!value)
    return 0;
  int oom = 0;
  if (nw__ini_duplicate(st, section, key, line, &oom))
    return 0;
  if (oom)
    return NW_EHOSTMEM;
  if (!st->handler)
    return 0;
  char msg[1024];
  msg[0] = '\0';
  int rc = st->handler(st->user, section, key, value, line, msg, sizeof msg);
  if (rc != 0)
    nw__ini_report(st, line, "%s", msg[0] ? msg : "rejected");
  return rc < 0 ? rc : 0;
}

static int nw__ini_run(nw__ini_state *st, char *text, size_t len) {
  char *p = text, *end = text + len;
  const char *section = NULL;
  int section_bad = 0;
  int line = 0;
  if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
    p += 3;
  while (p < end) {
    line++;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *eol = nl ? nl : end;
    *eol = '\0';
    char *raw = p;
    p = eol + 1;
    if (strlen(raw) != (size_t)(eol - raw)) {
      nw__ini_report(st, line, "NUL byte in line");
      continue;
    }
    char *s = nw__ini_trim(raw);
    if (!*s || nw__ini_comment_start(*s))
      continue;
    if (*s == '[') {
      section = nw__ini_header(st, s, line);
      section_bad = section == NULL;
      continue;
    }
    int rc = nw__ini_key_line(st, s, line, section, section_bad);
    if (rc < 0)
      return rc;
  }
  return st->nerr;
}

int nw_ini_parse_buffer(const char *name, const char *text, size_t len,
                        nw_ini_handler h, void *user, nw_ini_errs *errs) {
  nw__ini_state st = {.name = name, .handler = h, .user = user, .errs = errs};
  /* a private copy, split in place into NUL-terminated lines */
  char *copy = malloc(len + 1);
  if (!copy) {
    nw_ini_errs_add(errs, name, 0, "out of host memory");
    return NW_EHOSTMEM;
  }
  memcpy(copy, text, len);
  copy[len] = '\0';
  int rc = nw__ini_run(&st, copy, len);
  free(st.seen);
  free(copy);
  return rc;
}

/* Reads a whole file into a malloc'd buffer; on failure returns a negative
 * code and the reason (errno's text) in why. */
static int nw__ini_slurp(const char *path, char **out, size_t *outlen,
                         const char **why) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    *why = strerror(e);
    return e == ENOENT ? NW_ENOTFOUND : NW_EIO;
  }
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  if (!buf)
    goto fail_nomem;
  for (;;) {
    if (len == cap) {
      char *n = realloc(buf, cap * 2);
      if (!n)
        goto fail_nomem;
      buf = n;
      cap *= 2;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    *why = strerror(errno ? errno : EIO);
    free(buf);
    fclose(f);
    return NW_EIO;
  }
  fclose(f);
  *out = buf;
  *outlen = len;
  return 0;
fail_nomem:
  free(buf);
  fclose(f);
  *why = "out of memory";
  return NW_EHOSTMEM;
}

int nw_ini_parse_path(const char *path, nw_ini_handler h, void *user,
                      nw_ini_errs *errs) {
  char *buf = NULL;
  size_t len = 0;
  const char *why = "";
  int rc = nw__ini_slurp(path, &buf, &len, &why);
  if (rc < 0) {
    nw_ini_errs_add(errs, path, 0, why);
    return rc;
  }
  rc = nw_ini_parse_buffer(path, buf, len, h, user, errs);
  free(buf);
  return rc;
}

int nw_ini_parse_string_cb(const char *name, const char *text,
                           const nw_ini_callbacks *cb, char *err,
                           size_t errlen) {
  nw_ini_errs errs;
  nw_ini_errs_init(&errs, err, errlen, cb->on_error, cb->user);
  return nw_ini_parse_buffer(name, text, strlen(text), cb->handler, cb->user,
                             &errs);
}

int nw_ini_parse_string(const char *name, const char *text, nw_ini_handler h,
                        void *user, char *err, size_t errlen) {
  nw_ini_callbacks cb = {.handler = h, .user = user};
  return nw_ini_parse_string_cb(name, text, &cb, err, errlen);
}

int nw_ini_parse_file_cb(const char *path, const nw_ini_callbacks *cb,
                         char *err, size_t errlen) {
  nw_ini_errs errs;
  nw_ini_errs_init(&errs, err, errlen, cb->on_error, cb->user);
  return nw_ini_parse_path(path, cb->handler, cb->user, &errs);
}

int nw_ini_parse_file(const char *path, nw_ini_handler h, void *user, char *err,
                      size_t errlen) {
  nw_ini_callbacks cb = {.handler = h, .user = user};
  return nw_ini_parse_file_cb(path, &cb, err, errlen);
}
