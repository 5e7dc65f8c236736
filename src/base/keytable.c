/* keytable.c — files, --set, dumps and comparisons over a table of keys.
 * A parse fills a private copy of the caller's struct through the INI
 * reader and copies it back only when the text had no error at all. */
#include "base/keytable.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Unknown sections said once (bracketed dialect): this many remembered. */
#define NW__KT_UNKNOWN_MAX 16
/* Longest --set value (twice the longest path). */
#define NW__KT_SET_VALUE_MAX 2048

struct nw_kt_session {
  const nw_keytable *t;
  void *obj; /* the copy being filled */
  const char *name;
  nw_ini_errs *errs;
  int *lines; /* per key: the line that set it; 0 not set */
  char unknown[NW__KT_UNKNOWN_MAX][64];
  int n_unknown;
};

const nw_kt_key *nw_kt_find(const nw_keytable *t, const char *section,
                            const char *key) {
  for (size_t i = 0; i < t->n_keys; i++)
    if (!strcmp(t->keys[i].section, section) && !strcmp(t->keys[i].key, key))
      return &t->keys[i];
  return NULL;
}

static int nw__kt_has_section(const nw_keytable *t, const char *section) {
  for (size_t i = 0; i < t->n_keys; i++)
    if (!strcmp(t->keys[i].section, section))
      return 1;
  return 0;
}

/* The first key of each section, for listing the sections once each. */
static int nw__kt_first_of_section(const nw_keytable *t, size_t i) {
  for (size_t j = 0; j < i; j++)
    if (!strcmp(t->keys[j].section, t->keys[i].section))
      return 0;
  return 1;
}

/* A key as messages name it: "model.n_layer" or "[activation] factor". */
static void nw__kt_name(const nw_keytable *t, const char *section,
                        const char *key, nw_strbuf *out) {
  if (t->dialect == NW_KT_DOTTED)
    nw_strbuf_printf(out, "%s.%s", section, key);
  else
    nw_strbuf_printf(out, "[%s] %s", section, key);
}

/* sep between the keys of section, or between sections when NULL. */
static void nw__kt_list(const nw_keytable *t, const char *section,
                        const char *sep, nw_strbuf *out) {
  int n = 0;
  for (size_t i = 0; i < t->n_keys; i++) {
    const nw_kt_key *k = &t->keys[i];
    if (section ? strcmp(k->section, section) != 0
                : !nw__kt_first_of_section(t, i))
      continue;
    nw_strbuf_printf(out, "%s%s", n++ ? sep : "",
                     section ? k->key : k->section);
  }
}

/* ---- unknown keys and sections ---- */

/* dotted: "unknown key \"step\" in [train]; keys: steps lr ..." */
static void nw__kt_unknown_dotted(const nw_keytable *t, const char *section,
                                  const char *key, nw_strbuf *why) {
  if (nw__kt_has_section(t, section)) {
    nw_strbuf_printf(why, "unknown key ");
    nw_strbuf_quote(why, '"', key, 64);
    nw_strbuf_printf(why, " in [%s]; keys: ", section);
    nw__kt_list(t, section, " ", why);
  } else {
    nw_strbuf_printf(why, "unknown section [");
    nw_strbuf_escape(why, section, 64);
    nw_strbuf_printf(why, "]; sections: ");
    nw__kt_list(t, NULL, " ", why);
  }
}

/* bracketed, a key of the table: "it belongs in [duplicate-process]" or
 * "... in [a], [b] or [c]". Returns 0 when no section has it. */
static int nw__kt_belongs(const nw_keytable *t, const char *key,
                          nw_strbuf *why) {
  size_t n = 0, seen = 0;
  for (size_t i = 0; i < t->n_keys; i++)
    n += !strcmp(t->keys[i].key, key);
  if (!n)
    return 0;
  nw_strbuf_printf(why, "unknown key '%s' here: it belongs in ", key);
  for (size_t i = 0; i < t->n_keys; i++) {
    if (strcmp(t->keys[i].key, key))
      continue;
    seen++;
    nw_strbuf_printf(why, "%s[%s]",
                     seen == 1   ? ""
                     : seen == n ? " or "
                                 : ", ",
                     t->keys[i].section);
  }
  return 1;
}

/* bracketed: "unknown key 'factr' (keys here: actions, factor, floor)"; an
 * unknown section is said once. Returns 1 when why holds an error. */
static int nw__kt_unknown_bracketed(nw_kt_session *s, const char *section,
                                    const char *key, nw_strbuf *why) {
  const nw_keytable *t = s->t;
  if (nw__kt_has_section(t, section)) {
    if (nw__kt_belongs(t, key, why))
      return 1;
    nw_strbuf_printf(why, "unknown key ");
    nw_strbuf_quote(why, '\'', key, 64);
    nw_strbuf_printf(why, " (keys here: ");
    nw__kt_list(t, section, ", ", why);
    nw_strbuf_printf(why, ")");
    return 1;
  }
  for (int i = 0; i < s->n_unknown; i++)
    if (!strcmp(s->unknown[i], section))
      return 0;
  if (s->n_unknown < NW__KT_UNKNOWN_MAX)
    snprintf(s->unknown[s->n_unknown++], sizeof s->unknown[0], "%s", section);
  nw_strbuf_printf(why, "unknown section [");
  nw_strbuf_escape(why, section, 64);
  nw_strbuf_printf(why, "] (sections: ");
  nw__kt_list(t, NULL, ", ", why);
  nw_strbuf_printf(why, ")");
  return 1;
}

/* ---- a text ---- */

/* Stores one key of the text; the INI reader puts "NAME:LINE: " in front
 * of the message left in err. */
static int nw__kt_handler(void *user, const char *section, const char *key,
                          const char *value, int line, char *err,
                          size_t errlen) {
  nw_kt_session *s = user;
  const nw_keytable *t = s->t;
  nw_strbuf msg = nw_strbuf_init(err, errlen);
  char why[768];
  if (t->extra) {
    why[0] = '\0';
    int rc = t->extra(s->obj, section, key, value, line, why, sizeof why);
    if (rc < 0) {
      nw__kt_name(t, section, key, &msg);
      nw_strbuf_printf(&msg, ": %s", why);
      return 1;
    }
    if (rc == 0)
      return 0;
  }
  const nw_kt_key *k = nw_kt_find(t, section, key);
  if (!k) {
    if (t->dialect == NW_KT_BRACKETED)
      return nw__kt_unknown_bracketed(s, section, key, &msg);
    nw__kt_name(t, section, key, &msg);
    nw_strbuf_printf(&msg, ": ");
    nw__kt_unknown_dotted(t, section, key, &msg);
    return 1;
  }
  nw_strbuf wb = nw_strbuf_init(why, sizeof why);
  int rc =
      nw_kt_value_parse(k, t->dialect, value, (char *)s->obj + k->offset, &wb);
  if (rc < 0) {
    nw__kt_name(t, section, key, &msg);
    nw_strbuf_printf(&msg, ": %s", why);
    return rc == NW_ECONFIG ? 1 : rc;
  }
  s->lines[k - t->keys] = line;
  return 0;
}

int nw_kt_line(const nw_kt_session *s, const char *section, const char *key) {
  const nw_kt_key *k = nw_kt_find(s->t, section, key);
  return k ? s->lines[k - s->t->keys] : 0;
}

void nw_kt_report(nw_kt_session *s, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nw_ini_errs_add(s->errs, s->name, line, msg);
}

/* After the whole text: keys set to no effect, then the table's checks. */
static void nw__kt_after(nw_kt_session *s) {
  const nw_keytable *t = s->t;
  for (size_t i = 0; t->unused && i < t->n_keys; i++) {
    const char *reason = s->lines[i] ? t->unused(s->obj, &t->keys[i]) : NULL;
    if (!reason)
      continue;
    char name[160];
    nw_strbuf nb = nw_strbuf_init(name, sizeof name);
    nw__kt_name(t, t->keys[i].section, t->keys[i].key, &nb);
    nw_kt_report(s, s->lines[i], "%s has no effect: %s", name, reason);
  }
  if (t->check)
    t->check(s->obj, s);
}

/* path, or else len bytes of text named name. */
static int nw__kt_parse(const nw_keytable *t, void *obj, const char *name,
                        const char *path, const char *text, size_t len,
                        nw_ini_errs *errs) {
  nw_kt_session s = {.t = t, .name = name, .errs = errs};
  int before = errs->count;
  s.obj = malloc(t->obj_size);
  s.lines = calloc(t->n_keys ? t->n_keys : 1, sizeof *s.lines);
  int rc = NW_EHOSTMEM;
  if (!s.obj || !s.lines) {
    nw_ini_errs_add(errs, name, 0, "out of host memory");
    goto out;
  }
  memcpy(s.obj, obj, t->obj_size);
  rc = path ? nw_ini_parse_path(path, nw__kt_handler, &s, errs)
            : nw_ini_parse_buffer(name, text, len, nw__kt_handler, &s, errs);
  if (rc < 0)
    goto out;
  nw__kt_after(&s);
  rc = errs->count == before ? 0 : NW_ECONFIG;
  if (rc == 0)
    memcpy(obj, s.obj, t->obj_size);
out:
  free(s.lines);
  free(s.obj);
  return rc;
}

int nw_kt_parse_buffer(const nw_keytable *t, void *obj, const char *name,
                       const char *text, size_t len, nw_ini_errs *errs) {
  return nw__kt_parse(t, obj, name, NULL, text, len, errs);
}

int nw_kt_parse_file(const nw_keytable *t, void *obj, const char *path,
                     nw_ini_errs *errs) {
  return nw__kt_parse(t, obj, path, path, NULL, 0, errs);
}

/* ---- --set ---- */

static char *nw__kt_trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
    *--e = '\0';
  return s;
}

/* "--set ARG" (escaped, cut) in front of a message. */
static void nw__kt_set_arg(nw_strbuf *out, const char *arg) {
  nw_strbuf_printf(out, "--set ");
  nw_strbuf_escape(out, arg, 200);
}

int nw_kt_set(const nw_keytable *t, void *obj, const char *assignment,
              char *err, size_t errlen) {
  nw_strbuf msg = nw_strbuf_init(err, errlen);
  char name[128], value[NW__KT_SET_VALUE_MAX], why[768];
  const char *eq = strchr(assignment, '=');
  size_t nlen = eq ? (size_t)(eq - assignment) : 0;
  char *section = name, *dot = NULL;
  if (eq && nlen < sizeof name) {
    memcpy(name, assignment, nlen);
    name[nlen] = '\0';
    section = nw__kt_trim(name);
    dot = strrchr(section, '.');
  }
  if (!dot || dot == section || !dot[1]) {
    nw__kt_set_arg(&msg, assignment);
    nw_strbuf_printf(&msg, ": expected section.key=value");
    return NW_ECONFIG;
  }
  *dot = '\0';
  const char *key = dot + 1;
  if (strlen(eq + 1) >= sizeof value) {
    nw__kt_set_arg(&msg, assignment);
    nw_strbuf_printf(&msg, "...: value is too long");
    return NW_ECONFIG;
  }
  strcpy(value, eq + 1);
  char *v = nw__kt_trim(value);
  size_t vlen = strlen(v);
  if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
    v[vlen - 1] = '\0';
    v++;
  }
  int rc = t->extra ? t->extra(obj, section, key, v, 0, why, sizeof why) : 1;
  if (rc <= 0) {
    /* the value may be a URL with a token: the message names the key */
    if (rc < 0) {
      nw__kt_set_arg(&msg, section);
      nw_strbuf_printf(&msg, ".");
      nw_strbuf_escape(&msg, key, 64);
      nw_strbuf_printf(&msg, ": %s", why);
    }
    return rc < 0 ? NW_ECONFIG : 0;
  }
  const nw_kt_key *k = nw_kt_find(t, section, key);
  nw_strbuf wb = nw_strbuf_init(why, sizeof why);
  if (!k) {
    nw__kt_unknown_dotted(t, section, key, &wb);
    rc = NW_ECONFIG;
  } else {
    rc = nw_kt_value_parse(k, t->dialect, v, (char *)obj + k->offset, &wb);
  }
  if (rc < 0) {
    nw__kt_set_arg(&msg, assignment);
    nw_strbuf_printf(&msg, ": %s", why);
  }
  return rc;
}

/* ---- whole structs ---- */

void nw_kt_defaults(const nw_keytable *t, void *obj) {
  memset(obj, 0, t->obj_size);
  /* The defaults are valid by construction (the tables' tests load them);
   * a typo would leave that key zero and fail those tests. */
  for (size_t i = 0; i < t->n_keys; i++) {
    const nw_kt_key *k = &t->keys[i];
    char why[256];
    nw_strbuf wb = nw_strbuf_init(why, sizeof why);
    (void)nw_kt_value_parse(k, t->dialect, k->def, (char *)obj + k->offset,
                            &wb);
  }
}

int nw_kt_check(const nw_keytable *t, const void *obj, nw_strbuf *out, int *n) {
  int found = 0;
  for (size_t i = 0; i < t->n_keys; i++) {
    const nw_kt_key *k = &t->keys[i];
    char line[512];
    nw_strbuf lb = nw_strbuf_init(line, sizeof line);
    if (!nw_kt_value_check(k, (const char *)obj + k->offset, &lb))
      continue;
    nw_strbuf_printf(out, "%s%s", *n ? "\n" : "", line);
    (*n)++;
    found++;
  }
  return found;
}

void nw_kt_dump(const nw_keytable *t, const void *obj, nw_strbuf *out) {
  const char *section = NULL;
  for (size_t i = 0; i < t->n_keys; i++) {
    const nw_kt_key *k = &t->keys[i];
    if (t->unused && t->unused(obj, k))
      continue;
    if (!section || strcmp(section, k->section)) {
      section = k->section;
      nw_strbuf_printf(out, "%s[%s]\n", out->len ? "\n" : "", section);
    }
    nw_strbuf_printf(out, "%s = ", k->key);
    nw_kt_value_format(k, (const char *)obj + k->offset, out);
    nw_strbuf_printf(out, "\n");
  }
}

int nw_kt_equal(const nw_keytable *t, const void *a, const void *b) {
  for (size_t i = 0; i < t->n_keys; i++) {
    const nw_kt_key *k = &t->keys[i];
    if (!nw_kt_value_equal(k, (const char *)a + k->offset,
                           (const char *)b + k->offset))
      return 0;
  }
  return 1;
}
