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

/* A key already seen, for the duplicate check. Pointers into the copy. */
typedef struct {
  const char *section;
  const char *key;
  int line;
} nw__ini_seen;

typedef struct {
  const char *name;
  const nw_ini_callbacks *cb;
  char *err;
  size_t errlen;
  size_t used; /* bytes of err in use, without the NUL */
  int dropped; /* errors that did not fit into err */
  int nerr;    /* errors so far */
  nw__ini_seen *seen;
  size_t nseen, capseen;
} nw__ini_state;

/* Room kept at the end of err for the "(N more errors not shown)" line. */
#define NW__INI_TRAILER 48

static void nw__ini_report(nw__ini_state *st, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nw__ini_report(nw__ini_state *st, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  st->nerr++;
  if (st->cb && st->cb->on_error)
    st->cb->on_error(st->cb->user, st->name, line, msg);
  if (!st->err || st->errlen == 0)
    return;
  const char *sep = st->used ? "\n" : "";
  int need = snprintf(NULL, 0, "%s%s:%d: %s", sep, st->name, line, msg);
  size_t reserve = st->errlen >= 4 * NW__INI_TRAILER ? NW__INI_TRAILER : 0;
  /* The first error is always written, truncated if it must be; later ones
   * only whole, so the buffer never ends in half a line. */
  if (st->used > 0 && st->used + (size_t)need + reserve >= st->errlen) {
    st->dropped++;
    return;
  }
  snprintf(st->err + st->used, st->errlen - st->used, "%s%s:%d: %s", sep,
           st->name, line, msg);
  st->used += (size_t)need;
  if (st->used >= st->errlen)
    st->used = st->errlen - 1;
}

static void nw__ini_finish(nw__ini_state *st) {
  if (st->dropped && st->err && st->used + 1 < st->errlen)
    snprintf(st->err + st->used, st->errlen - st->used,
             "\n(%d more errors not shown)", st->dropped);
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
      nw__ini_report(st, line, "unexpected text after closing quote: \"%.40s\"",
                     after);
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
  char *close = strchr(s, ']');
  if (!close) {
    nw__ini_report(st, line, "missing ']' in section header \"%.40s\"", s);
    return NULL;
  }
  *close = '\0';
  char *name = nw__ini_trim(s + 1);
  const char *rest = close + 1;
  while (nw__ini_space(*rest))
    rest++;
  if (*rest && !nw__ini_comment_start(*rest))
    nw__ini_report(st, line, "unexpected text after ']': \"%.40s\"", rest);
  if (!*name) {
    nw__ini_report(st, line, "empty section name");
    return NULL;
  }
  const char *bad = nw__ini_bad_char(name);
  if (bad) {
    nw__ini_report(st, line, "invalid character '%c' in section name [%.40s]",
                   *bad, name);
    return NULL;
  }
  return name;
}

static int nw__ini_run(nw__ini_state *st, char *text, size_t len) {
  char *p = text, *end = text + len;
  const char *section = NULL;
  int section_bad = 0; /* last header was unusable: skip its keys quietly */
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
    char *eq = strchr(s, '=');
    if (!eq) {
      nw__ini_report(st, line,
                     "expected 'key = value' or '[section]', got "
                     "\"%.40s\"",
                     s);
      continue;
    }
    *eq = '\0';
    char *key = nw__ini_trim(s);
    if (!*key) {
      nw__ini_report(st, line, "empty key before '='");
      continue;
    }
    const char *bad = nw__ini_bad_char(key);
    if (bad) {
      nw__ini_report(st, line, "invalid character '%c' in key \"%.40s\"", *bad,
                     key);
      continue;
    }
    if (!section) {
      if (!section_bad)
        nw__ini_report(st, line, "key \"%.40s\" outside any [section]", key);
      continue;
    }
    char *value = nw__ini_value(st, eq + 1, line);
    if (!value)
      continue;
    int oom = 0;
    if (nw__ini_duplicate(st, section, key, line, &oom))
      continue;
    if (oom)
      return NW_EHOSTMEM;
    if (!st->cb || !st->cb->handler)
      continue;
    char msg[1024];
    msg[0] = '\0';
    int rc = st->cb->handler(st->cb->user, section, key, value, line, msg,
                             sizeof msg);
    if (rc != 0) {
      nw__ini_report(st, line, "%s", msg[0] ? msg : "rejected");
      if (rc < 0)
        return rc;
    }
  }
  return st->nerr;
}

/* Parses len bytes of text (need not be NUL-terminated). */
static int nw__ini_parse(const char *name, const char *text, size_t len,
                         const nw_ini_callbacks *cb, char *err, size_t errlen) {
  nw__ini_state st = {.name = name, .cb = cb, .err = err, .errlen = errlen};
  if (err && errlen)
    err[0] = '\0';
  char *copy = malloc(len + 1);
  if (!copy) {
    if (err && errlen)
      snprintf(err, errlen, "%s: out of memory", name);
    return NW_EHOSTMEM;
  }
  memcpy(copy, text, len);
  copy[len] = '\0';
  int rc = nw__ini_run(&st, copy, len);
  nw__ini_finish(&st);
  free(st.seen);
  free(copy);
  return rc;
}

int nw_ini_parse_string_cb(const char *name, const char *text,
                           const nw_ini_callbacks *cb, char *err,
                           size_t errlen) {
  return nw__ini_parse(name, text, strlen(text), cb, err, errlen);
}

int nw_ini_parse_string(const char *name, const char *text, nw_ini_handler h,
                        void *user, char *err, size_t errlen) {
  nw_ini_callbacks cb = {.handler = h, .user = user};
  return nw_ini_parse_string_cb(name, text, &cb, err, errlen);
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

int nw_ini_parse_file_cb(const char *path, const nw_ini_callbacks *cb,
                         char *err, size_t errlen) {
  char *buf = NULL;
  size_t len = 0;
  const char *why = "";
  int rc = nw__ini_slurp(path, &buf, &len, &why);
  if (rc < 0) {
    if (err && errlen)
      snprintf(err, errlen, "%s: %s", path, why);
    if (cb && cb->on_error)
      cb->on_error(cb->user, path, 0, why);
    return rc;
  }
  rc = nw__ini_parse(path, buf, len, cb, err, errlen);
  free(buf);
  return rc;
}

int nw_ini_parse_file(const char *path, nw_ini_handler h, void *user, char *err,
                      size_t errlen) {
  nw_ini_callbacks cb = {.handler = h, .user = user};
  return nw_ini_parse_file_cb(path, &cb, err, errlen);
}
