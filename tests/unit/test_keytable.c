/* test_keytable.c — the engine under the config and the policy files: the
 * INI reader (comments, quotes, errors with their lines), the key table
 * (types, ranges, dialects, --set, checks after a file), escaping of echoed
 * input, and the one round-trip double formatter. test_config.c tests the
 * config's own table on top of it. */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <unistd.h>

#include "base/config.h"
#include "base/error.h"
#include "base/ini.h"
#include "base/keytable.h"
#include "base/strbuf.h"
#include "testutil.h"

#ifndef NW_SOURCE_DIR
#error "NW_SOURCE_DIR must name the source tree"
#endif

/* ---- helpers ---- */

/* One temp dir for the whole binary, emptied and removed at the end. */
static char g_dir[512];

static int group_setup(void **state) {
  (void)state;
  nw_test_tmpdir(g_dir, sizeof g_dir, "config");
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  return nw_test_rmdir_flat(g_dir);
}

/* Writes text to the temp dir as name; returns the path in path. */
static void write_file(const char *name, const char *text, char *path,
                       size_t len) {
  nw_test_write_text(g_dir, name, text, path, len);
}

static void assert_contains(const char *hay, const char *needle) {
  if (!strstr(hay, needle))
    fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

static int count_lines(const char *s) {
  if (!*s)
    return 0;
  int n = 1;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* ---- ini reader ---- */

typedef struct {
  char log[4096];
  size_t len;
  int sink_calls;
  char sink_log[4096];
  size_t sink_len;
  const char *reject_key; /* handler rejects this key */
  int stop_at;            /* handler returns NW_EDATA on this line */
} ini_rec;

static int rec_handler(void *user, const char *section, const char *key,
                       const char *value, int line, char *err, size_t errlen) {
  ini_rec *r = user;
  r->len += (size_t)snprintf(r->log + r->len, sizeof r->log - r->len,
                             "%d:[%s]%s=<%s>\n", line, section, key, value);
  if (r->stop_at == line) {
    snprintf(err, errlen, "stop here");
    return NW_EDATA;
  }
  if (r->reject_key && !strcmp(key, r->reject_key)) {
    snprintf(err, errlen, "%s.%s: rejected value %s", section, key, value);
    return 1;
  }
  return 0;
}

static void rec_sink(void *user, const char *name, int line, const char *msg) {
  ini_rec *r = user;
  r->sink_calls++;
  r->sink_len += (size_t)snprintf(r->sink_log + r->sink_len,
                                  sizeof r->sink_log - r->sink_len,
                                  "%s|%d|%s\n", name, line, msg);
}

static void test_ini_comments_quotes_whitespace(void **state) {
  (void)state;
  ini_rec r = {0};
  char err[1024];
  const char *text = "\xEF\xBB\xBF# comment\n"
                     "; another\n"
                     "\n"
                     "  [ sec ]   # trailing comment\n"
                     "a = 1\n"
                     "  b\t=  two words   ; inline\n"
                     "c = x#y;z\n"
                     "d = \"  keep # this ; too  \"  # but not this\n"
                     "e = \"esc \\\" and \\\\ and \\n\"\n"
                     "f =\n"
                     "g = # only a comment\r\n"
                     "[other.sec-1]\r\n"
                     "a = 2\r\n";
  assert_int_equal(
      nw_ini_parse_string("mem", text, rec_handler, &r, err, sizeof err), 0);
  assert_string_equal(err, "");
  assert_string_equal(r.log, "5:[sec]a=<1>\n"
                             "6:[sec]b=<two words>\n"
                             "7:[sec]c=<x#y;z>\n"
                             "8:[sec]d=<  keep # this ; too  >\n"
                             "9:[sec]e=<esc \" and \\ and \\n>\n"
                             "10:[sec]f=<>\n"
                             "11:[sec]g=<>\n"
                             "13:[other.sec-1]a=<2>\n");
}

static void test_ini_syntax_errors_with_lines(void **state) {
  (void)state;
  ini_rec r = {0};
  char err[4096];
  const char *text = "orphan = 1\n"     /* 1: outside a section */
                     "[good]\n"         /* 2 */
                     "k = 1\n"          /* 3 */
                     "no equals here\n" /* 4 */
                     " = 5\n"           /* 5: empty key */
                     "k = 2\n"          /* 6: duplicate of 3 */
                     "[broken\n"        /* 7: missing ] */
                     "skipped = 1\n"    /* 8: under a bad header */
                     "[ok] junk\n"      /* 9: text after ] */
                     "q = \"open\n"     /* 10: unterminated */
                     "r = \"x\" y\n"    /* 11: text after quote */
                     "bad key = 1\n"    /* 12: space in key */
                     "[]\n"             /* 13: empty section */
                     "[good]\n"         /* 14: reopened */
                     "k = 3\n"          /* 15: still a duplicate */
                     "fine = yes\n";    /* 16 */
  int n = nw_ini_parse_string("t.ini", text, rec_handler, &r, err, sizeof err);
  static const char *const want[] = {
      "t.ini:1: key \"orphan\" outside any [section]",
      "t.ini:4: expected 'key = value' or '[section]'",
      "t.ini:5: empty key",
      "t.ini:6: good.k: duplicate key (first set on line 3)",
      "t.ini:7: missing ']'",
      "t.ini:9: unexpected text after ']'",
      "t.ini:10: unterminated quoted value",
      "t.ini:11: unexpected text after closing quote",
      "t.ini:12: invalid character ' ' in key",
      "t.ini:13: empty section name",
      "t.ini:15: good.k: duplicate key (first set on line 3)",
  };
  assert_int_equal(n, (int)(sizeof want / sizeof want[0]));
  assert_int_equal(count_lines(err), n);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_contains(err, want[i]);
  /* Line 9's header still opens [ok]; nothing under [broken] is passed on. */
  assert_string_equal(r.log, "3:[good]k=<1>\n16:[good]fine=<yes>\n");
}

static void test_ini_handler_errors_and_sink(void **state) {
  (void)state;
  ini_rec r = {.reject_key = "bad"};
  char err[4096];
  nw_ini_callbacks cb = {rec_handler, rec_sink, &r};
  const char *text = "[s]\nbad = 1\nok = 2\nbad2 = 3\n[t]\nbad = 4\nnope\n";
  int n = nw_ini_parse_string_cb("x.ini", text, &cb, err, sizeof err);
  assert_int_equal(n, 3);
  assert_string_equal(err, "x.ini:2: s.bad: rejected value 1\n"
                           "x.ini:6: t.bad: rejected value 4\n"
                           "x.ini:7: expected 'key = value' or '[section]', "
                           "got \"nope\"");
  assert_int_equal(r.sink_calls, 3);
  assert_contains(r.sink_log, "x.ini|2|s.bad: rejected value 1\n");
  assert_contains(r.sink_log, "x.ini|7|expected");

  /* A negative return stops the parse with that code. */
  ini_rec r2 = {.stop_at = 3};
  n = nw_ini_parse_string("y.ini", "[s]\na=1\nb=2\nc=3\n", rec_handler, &r2,
                          err, sizeof err);
  assert_int_equal(n, NW_EDATA);
  assert_string_equal(err, "y.ini:3: stop here");
  assert_string_equal(r2.log, "2:[s]a=<1>\n3:[s]b=<2>\n");
}

static void test_ini_small_buffer_counts_dropped(void **state) {
  (void)state;
  char text[4096] = "";
  size_t len = 0;
  for (int i = 0; i < 40; i++)
    len += (size_t)snprintf(text + len, sizeof text - len, "junk line %d\n", i);
  char err[256];
  ini_rec r = {0};
  nw_ini_callbacks cb = {NULL, rec_sink, &r};
  int n = nw_ini_parse_string_cb("big.ini", text, &cb, err, sizeof err);
  assert_int_equal(n, 40);
  assert_int_equal(r.sink_calls, 40);
  assert_true(strlen(err) < sizeof err);
  assert_contains(err, "big.ini:1: ");
  assert_contains(err, "more errors not shown)");
  /* A tiny buffer still holds the start of the first error. */
  char tiny[12];
  n = nw_ini_parse_string("big.ini", text, NULL, NULL, tiny, sizeof tiny);
  assert_int_equal(n, 40);
  assert_string_equal(tiny, "big.ini:1: ");
}

static void test_ini_file(void **state) {
  (void)state;
  char path[1024], err[1024];
  ini_rec r = {0};
  write_file("f.ini", "[a]\nx = 1\n[a\n", path, sizeof path);
  assert_int_equal(nw_ini_parse_file(path, rec_handler, &r, err, sizeof err),
                   1);
  char want[1100];
  snprintf(want, sizeof want, "%s:3: missing ']'", path);
  assert_contains(err, want);
  assert_string_equal(r.log, "2:[a]x=<1>\n");
  assert_int_equal(
      nw_ini_parse_file("/nonexistent/f.ini", NULL, NULL, err, sizeof err),
      NW_ENOTFOUND);
  assert_contains(err, "/nonexistent/f.ini: ");
  assert_int_equal(nw_ini_parse_string("e", "", NULL, NULL, err, sizeof err),
                   0);
}

/* ---- the key-table engine on a table of its own ---- */

typedef struct {
  int n;
  double x;
  char name[8];
  int mode;
  int pair[2]; /* a custom type: "A-B" */
  int hooks;   /* keys taken by extra */
} kt_obj;

static const char *const kt_modes[] = {"off", "on", NULL};

static int kt_pair_parse(const nw_kt_key *k, const char *v, void *dst,
                         nw_strbuf *why) {
  (void)k;
  int a, b, used = 0;
  if (sscanf(v, "%d-%d%n", &a, &b, &used) != 2 || v[used]) {
    nw_strbuf_printf(why, "expected A-B");
    return NW_ECONFIG;
  }
  int *p = dst;
  p[0] = a;
  p[1] = b;
  return 0;
}

static void kt_pair_format(const nw_kt_key *k, const void *src,
                           nw_strbuf *out) {
  (void)k;
  const int *p = src;
  nw_strbuf_printf(out, "%d-%d", p[0], p[1]);
}

static const nw_kt_ops kt_pair_ops = {kt_pair_parse, kt_pair_format, "pair"};

static const nw_kt_key kt_keys[] = {
    {.section = "a",
     .key = "n",
     .type = NW_KT_INT,
     NW_KT_AT(kt_obj, n, int),
     .def = "5",
     .min = 1,
     .max = 9},
    {.section = "a",
     .key = "x",
     .type = NW_KT_DOUBLE,
     NW_KT_AT(kt_obj, x, double),
     .def = "0.5",
     .min = 0,
     .max = 1,
     .flags = NW_KT_MIN_OPEN},
    {.section = "b.c",
     .key = "name",
     .type = NW_KT_STRING,
     NW_KT_AT(kt_obj, name, char[8]),
     .def = "nm",
     .flags = NW_KT_NONEMPTY},
    {.section = "b.c",
     .key = "mode",
     .type = NW_KT_ENUM,
     NW_KT_AT(kt_obj, mode, int),
     .def = "off",
     .choices = kt_modes},
    {.section = "b.c",
     .key = "pair",
     .type = NW_KT_CUSTOM,
     NW_KT_AT(kt_obj, pair, int[2]),
     .def = "1-2",
     .ops = &kt_pair_ops},
    {.section = "b.c",
     .key = "n",
     .type = NW_KT_INT,
     NW_KT_AT(kt_obj, hooks, int),
     .def = "0",
     .min = 0,
     .max = 5},
};

/* pair means something only when mode is on */
static const char *kt_unused(const void *obj, const nw_kt_key *k) {
  const kt_obj *o = obj;
  return strcmp(k->key, "pair") || o->mode ? NULL : "mode is off";
}

static void kt_check(const void *obj, nw_kt_session *s) {
  const kt_obj *o = obj;
  if (o->x * 10 > o->n)
    nw_kt_report(s, nw_kt_line(s, "a", "x"), "x (%g) is more than n/10", o->x);
}

static int kt_extra(void *obj, const char *section, const char *key,
                    const char *value, int line, char *why, size_t len) {
  (void)line;
  if (strcmp(section, "hook"))
    return 1;
  if (strcmp(key, "url")) {
    snprintf(why, len, "no such hook key");
    return NW_ECONFIG;
  }
  (void)value;
  ((kt_obj *)obj)->hooks++;
  return 0;
}

static nw_keytable kt_table(nw_kt_dialect d) {
  return (nw_keytable){kt_keys,        sizeof kt_keys / sizeof kt_keys[0],
                       sizeof(kt_obj), d,
                       kt_extra,       kt_unused,
                       kt_check};
}

/* Parses text (as a buffer without a NUL after it) over *o. */
static int kt_parse(const nw_keytable *t, kt_obj *o, const char *text,
                    char *err, size_t errlen, int *nerr) {
  size_t len = strlen(text);
  char *exact = malloc(len ? len : 1); /* no NUL: ASan sees an overread */
  assert_non_null(exact);
  memcpy(exact, text, len);
  nw_ini_errs errs;
  nw_ini_errs_init(&errs, err, errlen, NULL, NULL);
  int rc = nw_kt_parse_buffer(t, o, "kt", exact, len, &errs);
  free(exact);
  *nerr = errs.count;
  return rc;
}

static void test_keytable_defaults_dump_equal(void **state) {
  (void)state;
  nw_keytable t = kt_table(NW_KT_DOTTED);
  kt_obj a, b;
  nw_kt_defaults(&t, &a);
  assert_int_equal(a.n, 5);
  assert_true(a.x == 0.5);
  assert_string_equal(a.name, "nm");
  assert_int_equal(a.pair[1], 2);
  char buf[512];
  nw_strbuf o = nw_strbuf_init(buf, sizeof buf);
  nw_kt_dump(&t, &a, &o);
  /* pair is unused while mode is off: left out */
  assert_string_equal(buf, "[a]\nn = 5\nx = 0.5\n\n[b.c]\nname = \"nm\"\n"
                           "mode = off\nn = 0\n");
  char err[1024];
  int nerr;
  memcpy(&b, &a, sizeof b);
  assert_int_equal(kt_parse(&t, &b, "[b.c]\nmode = on\npair = 7-8\n", err,
                            sizeof err, &nerr),
                   0);
  assert_false(nw_kt_equal(&t, &a, &b));
  o = nw_strbuf_init(buf, sizeof buf);
  nw_kt_dump(&t, &b, &o);
  assert_contains(buf, "pair = 7-8\n");
  kt_obj c;
  nw_kt_defaults(&t, &c);
  assert_int_equal(kt_parse(&t, &c, buf, err, sizeof err, &nerr), 0);
  assert_true(nw_kt_equal(&t, &b, &c));
  /* the length needed, from a NULL buffer */
  nw_strbuf none = nw_strbuf_init(NULL, 0);
  nw_kt_dump(&t, &b, &none);
  assert_int_equal(none.len, strlen(buf));
}

static void test_keytable_dialects(void **state) {
  (void)state;
  const char *text = "[a]\n"
                     "n = 12\n"       /* 2: range */
                     "x = 0\n"        /* 3: open minimum */
                     "[b.c]\n"        /* 4 */
                     "mode = maybe\n" /* 5: choice */
                     "pair = 1:2\n"   /* 6: custom */
                     "x = 1\n"        /* 7: belongs in [a] */
                     "[zz]\n"         /* 8 */
                     "p = 1\n"        /* 9: unknown section */
                     "q = 2\n"        /* 10: the same section again */
                     "[hook]\n"       /* 11 */
                     "url = x\n"      /* 12: taken by extra */
                     "port = 1\n";    /* 13: refused by extra */
  char err[4096];
  int nerr;
  kt_obj o, before;
  nw_keytable t = kt_table(NW_KT_DOTTED);
  nw_kt_defaults(&t, &o);
  memcpy(&before, &o, sizeof o);
  assert_int_equal(kt_parse(&t, &o, text, err, sizeof err, &nerr), NW_ECONFIG);
  assert_memory_equal(&o, &before, sizeof o);
  assert_int_equal(nerr, 8);
  assert_contains(err, "kt:2: a.n: \"12\" is out of range; expected an "
                       "integer in [1, 9]");
  assert_contains(err, "kt:3: a.x: \"0\" is out of range; expected a number "
                       "in (0, 1]");
  assert_contains(err, "kt:5: b.c.mode: \"maybe\" is not one of off or on");
  assert_contains(err, "kt:6: b.c.pair: expected A-B");
  assert_contains(err, "kt:7: b.c.x: unknown key \"x\" in [b.c]; keys: name "
                       "mode pair n");
  assert_contains(err, "kt:9: zz.p: unknown section [zz]; sections: a b.c");
  assert_contains(err, "kt:10: zz.q: unknown section");
  assert_contains(err, "kt:13: hook.port: no such hook key");

  t = kt_table(NW_KT_BRACKETED);
  assert_int_equal(kt_parse(&t, &o, text, err, sizeof err, &nerr), NW_ECONFIG);
  assert_memory_equal(&o, &before, sizeof o);
  assert_int_equal(nerr, 7); /* [zz] once */
  assert_contains(err, "kt:2: [a] n: 12 is out of range: must be >= 1 and "
                       "<= 9");
  assert_contains(err, "kt:3: [a] x: 0 is out of range: must be > 0 and <= "
                       "1");
  assert_contains(err, "kt:5: [b.c] mode: 'maybe' is not off or on");
  assert_contains(err, "kt:7: unknown key 'x' here: it belongs in [a]");
  assert_contains(err, "kt:9: unknown section [zz] (sections: a, b.c)");
  assert_null(strstr(err, "kt:10:"));
  assert_contains(err, "kt:13: [hook] port: no such hook key");
  assert_int_equal(
      kt_parse(&t, &o, "[a]\nn=x\n[b.c]\nn = 1.5\n", err, sizeof err, &nerr),
      NW_ECONFIG);
  assert_contains(err, "kt:2: [a] n: 'x' is not an integer");
  assert_contains(err, "kt:4: [b.c] n: '1.5' is not an integer");
  assert_int_equal(kt_parse(&t, &o, "[a]\nx = nan\n", err, sizeof err, &nerr),
                   NW_ECONFIG);
  assert_string_equal(err, "kt:2: [a] x: 'nan' is not a number");
}

static void test_keytable_after_file_checks(void **state) {
  (void)state;
  nw_keytable t = kt_table(NW_KT_BRACKETED);
  kt_obj o, before;
  nw_kt_defaults(&t, &o);
  memcpy(&before, &o, sizeof o);
  char err[1024];
  int nerr;
  /* a key that has no effect, at its line; a check between keys, at the
   * line of the key it names */
  assert_int_equal(kt_parse(&t, &o, "[b.c]\npair = 3-4\n[a]\n\nx = 0.9\n", err,
                            sizeof err, &nerr),
                   NW_ECONFIG);
  assert_int_equal(nerr, 2);
  assert_string_equal(err, "kt:2: [b.c] pair has no effect: mode is off\n"
                           "kt:5: x (0.9) is more than n/10");
  assert_memory_equal(&o, &before, sizeof o);
  assert_int_equal(
      kt_parse(&t, &o, "[a]\nn = 9\nx = 0.9\n", err, sizeof err, &nerr), 0);
  assert_int_equal(o.n, 9);
  assert_true(o.x == 0.9);
}

static void test_keytable_set(void **state) {
  (void)state;
  nw_keytable t = kt_table(NW_KT_DOTTED);
  kt_obj o, before;
  nw_kt_defaults(&t, &o);
  char err[512];
  /* a section name with a dot: the key is after the last one */
  assert_int_equal(nw_kt_set(&t, &o, " b.c.name = \"x y\" ", err, sizeof err),
                   0);
  assert_string_equal(o.name, "x y");
  assert_int_equal(nw_kt_set(&t, &o, "b.c.n=4", err, sizeof err), 0);
  assert_int_equal(o.hooks, 4);
  assert_int_equal(nw_kt_set(&t, &o, "hook.url=https://h/tok", err, sizeof err),
                   0);
  assert_int_equal(o.hooks, 5);
  memcpy(&before, &o, sizeof o);
  assert_int_equal(nw_kt_set(&t, &o, "hook.port=tok", err, sizeof err),
                   NW_ECONFIG);
  assert_string_equal(err, "--set hook.port: no such hook key");
  assert_int_equal(nw_kt_set(&t, &o, "b.c.name=123456789", err, sizeof err),
                   NW_ECONFIG);
  assert_string_equal(err, "--set b.c.name=123456789: value is 9 bytes long; "
                           "the limit is 7");
  assert_int_equal(nw_kt_set(&t, &o, "a.", err, sizeof err), NW_ECONFIG);
  assert_contains(err, "expected section.key=value");
  assert_memory_equal(&o, &before, sizeof o);
}

/* Control bytes of the input never reach a message raw. */
static int has_raw_control(const char *s) {
  for (; *s; s++)
    if (((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') || *s == 0x7f)
      return 1;
  return 0;
}

static void test_control_bytes_escaped(void **state) {
  (void)state;
  char path[1024], err[4096];
  write_file("ctl.conf",
             "[model]\nn_layer = \x1b[31m3\n[x\x02y]\n[train]\nlr\x7f = 1\n"
             "[data]\npath = \"a\x01\"\n",
             path, sizeof path);
  nw_config c;
  nw_config_defaults(&c);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), NW_ECONFIG);
  assert_int_equal(count_lines(err), 4);
  assert_contains(err, ":2: model.n_layer: \"\\x1b[31m3\" is not valid");
  assert_contains(err, ":3: invalid character '\\x02' in section name "
                       "[x\\x02y]");
  assert_contains(err, ":5: invalid character '\\x7f' in key");
  assert_contains(err, ":7: data.path: \"a\\x01\" contains a control");
  assert_false(has_raw_control(err));
  assert_int_equal(nw_config_set(&c, "model.n\x1b=1", err, sizeof err),
                   NW_ECONFIG);
  assert_contains(err, "--set model.n\\x1b=1: unknown key \"n\\x1b\"");
  assert_false(has_raw_control(err));
}

static void test_strbuf_double_round_trips(void **state) {
  (void)state;
  static const struct {
    double x;
    const char *text;
  } fixed[] = {{3600, "3600"},    {0.1, "0.1"},
               {1e-8, "1e-08"},   {1e7, "10000000"},
               {-2.5, "-2.5"},    {6e-4, "0.0006"},
               {1e300, "1e+300"}, {1.0 / 3, "0.3333333333333333"}};
  char buf[64];
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    nw_strbuf b = nw_strbuf_init(buf, sizeof buf);
    nw_strbuf_double(&b, fixed[i].x);
    assert_string_equal(buf, fixed[i].text);
  }
  /* random bit patterns: every finite one reads back exactly */
  uint64_t seed = (uint64_t)nw_test_seed("test_strbuf_double_round_trips");
  uint64_t s = seed | 1;
  int n = 0;
  for (int i = 0; i < 20000; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
    double x;
    memcpy(&x, &s, sizeof x);
    if (!isfinite(x))
      continue;
    nw_strbuf b = nw_strbuf_init(buf, sizeof buf);
    nw_strbuf_double(&b, x);
    if (strtod(buf, NULL) != x)
      fail_msg("seed %" PRIu64 ": %a printed as %s", seed, x, buf);
    n++;
  }
  assert_true(n > 15000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ini_comments_quotes_whitespace),
      cmocka_unit_test(test_ini_syntax_errors_with_lines),
      cmocka_unit_test(test_ini_handler_errors_and_sink),
      cmocka_unit_test(test_ini_small_buffer_counts_dropped),
      cmocka_unit_test(test_ini_file),
      cmocka_unit_test(test_keytable_defaults_dump_equal),
      cmocka_unit_test(test_keytable_dialects),
      cmocka_unit_test(test_keytable_after_file_checks),
      cmocka_unit_test(test_keytable_set),
      cmocka_unit_test(test_control_bytes_escaped),
      cmocka_unit_test(test_strbuf_double_round_trips),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
