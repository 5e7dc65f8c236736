/* keytable.h — one engine for "[section] key = value" files over a table of
 * keys. Each key has a type, a default (as file text), a range, a line of
 * documentation and a place in the caller's struct. Loading (all or
 * nothing, every error as FILE:LINE naming the key and listing the keys the
 * section takes), `--set section.key=value`, re-checking values set in code,
 * dumping as a file that loads back the same, and comparing are loops over
 * the table. The trainer's config (base/config.c) and the recovery policy
 * (recovery/policy_load.c) are two tables over it.
 * defines: nw_kt_type, nw_kt_ops, nw_kt_key, nw_kt_dialect, nw_keytable,
 *          nw_kt_session, NW_KT_MIN_OPEN, NW_KT_MAX_OPEN, NW_KT_NONEMPTY,
 *          NW_KT_AT, nw_kt_defaults, nw_kt_parse_buffer, nw_kt_parse_file,
 *          nw_kt_set, nw_kt_check, nw_kt_dump, nw_kt_equal, nw_kt_find,
 *          nw_kt_describe, nw_kt_type_name, nw_kt_line, nw_kt_report,
 *          nw_kt_value_parse, nw_kt_value_format, nw_kt_value_check,
 *          nw_kt_value_equal
 *
 * The syntax is base/ini.h's. Errors look like this (the two dialects keep
 * the wording their files have always had, which docs and tests quote):
 *   dotted:    my.conf:3: model.n_layer: "0" is out of range; expected an
 *              integer in [1, 256]
 *              my.conf:12: train.step: unknown key "step" in [train]; keys:
 *              steps lr ...
 *   bracketed: p.conf:12: [activation] factor: 1.5 is out of range: must be
 *              > 0 and < 1
 *              p.conf:3: unknown key 'factr' (keys here: actions, factor,
 *              floor)
 * Input echoed into a message has its control bytes escaped. */
#ifndef NW_KEYTABLE_H
#define NW_KEYTABLE_H

#include <stddef.h>

#include "base/ini.h"
#include "base/strbuf.h"

typedef enum {
  NW_KT_INT,    /* int, decimal, in [min, max] */
  NW_KT_U64,    /* uint64_t, decimal */
  NW_KT_DOUBLE, /* double, strtod syntax, finite, in [min, max] */
  NW_KT_BOOL,   /* int 0/1 from true/false/yes/no (any case)/1/0 */
  NW_KT_STRING, /* char[size], no control characters; choices: allowed */
  NW_KT_ENUM,   /* int-sized: the index of the value in choices */
  NW_KT_SIZE,   /* uint64_t bytes, an optional suffix B, KB, ..., TiB */
  NW_KT_CUSTOM, /* ops->parse and ops->format */
} nw_kt_type;

enum {
  NW_KT_MIN_OPEN = 1, /* min itself is out of range: (min, ... */
  NW_KT_MAX_OPEN = 2, /* max itself is out of range: ..., max) */
  NW_KT_NONEMPTY = 4, /* a string that may not be "" */
};

typedef struct nw_kt_key nw_kt_key;

/* A value type of the caller's own (the policy's chains of actions). */
typedef struct {
  /* Parses value into dst (the key's field, k->size bytes). Returns 0, or
   * NW_ECONFIG with every reason, joined by "; ", in why; dst is then
   * untouched. */
  int (*parse)(const nw_kt_key *k, const char *value, void *dst,
               nw_strbuf *why);
  /* Appends the value at src as file text that parse reads back. */
  void (*format)(const nw_kt_key *k, const void *src, nw_strbuf *out);
  const char *type_name; /* for docs: "chain" */
} nw_kt_ops;

struct nw_kt_key {
  const char *section;
  const char *key;
  nw_kt_type type;
  size_t offset;   /* of the field in the table's struct */
  size_t size;     /* of the field; a string's capacity with the NUL */
  const char *def; /* the default, as file text */
  double min, max; /* the range of INT and DOUBLE keys */
  unsigned flags;  /* NW_KT_MIN_OPEN | NW_KT_MAX_OPEN | NW_KT_NONEMPTY */
  const char *const *choices; /* NULL-terminated: ENUM names, STRING values */
  const nw_kt_ops *ops;       /* CUSTOM */
  const char *doc;            /* one line for people */
};

/* Where a field lives: .offset and .size of st's member, the size checked
 * at compile time against ctype (a negative array size when they differ). */
#define NW_KT_AT(st, member, ctype)                                            \
  .offset = offsetof(st, member),                                              \
  .size =                                                                      \
      sizeof(((st *)0)->member) +                                              \
      0 * sizeof(char[sizeof(((st *)0)->member) == sizeof(ctype) ? 1 : -1])

typedef enum {
  /* "section.key: \"v\" is not valid; expected ..."; each key of an
   * unknown section is an error of its own */
  NW_KT_DOTTED,
  /* "[section] key: 'v' is not a number"; an unknown section is one
   * error, at its first key */
  NW_KT_BRACKETED,
} nw_kt_dialect;

typedef struct nw_kt_session nw_kt_session;

typedef struct {
  const nw_kt_key *keys; /* a section's keys next to each other */
  size_t n_keys;
  size_t obj_size; /* of the struct the keys live in */
  nw_kt_dialect dialect;
  /* Keys outside the table (the config's webhooks): called first for every
   * key. 1: not one of them, go on with the table; 0: taken; NW_ECONFIG:
   * why says what is wrong. line is 0 for --set. May be NULL. */
  int (*extra)(void *obj, const char *section, const char *key,
               const char *value, int line, char *why, size_t whylen);
  /* Why k has no effect in obj, or NULL when it has one. Such a key is
   * left out of dumps, and setting it in a file is an error. May be NULL. */
  const char *(*unused)(const void *obj, const nw_kt_key *k);
  /* Checks between keys after a whole file, reported with nw_kt_report at
   * the line of a key involved (nw_kt_line). May be NULL. */
  void (*check)(const void *obj, nw_kt_session *s);
} nw_keytable;

/* Zeroes obj, then sets every key to its default. */
void nw_kt_defaults(const nw_keytable *t, void *obj);

/* Parses len bytes of text (need not be NUL-terminated; a fuzzer's input
 * as it comes) named name over obj: each key the text sets replaces its
 * field, the others keep theirs. obj changes only when the whole text is
 * good: a reload never half-applies. Every error goes to errs. Returns 0,
 * NW_ECONFIG (errors in the text) or NW_EHOSTMEM. */
int nw_kt_parse_buffer(const nw_keytable *t, void *obj, const char *name,
                       const char *text, size_t len, nw_ini_errs *errs);

/* The same for a file; an unreadable one returns NW_ENOTFOUND or NW_EIO
 * with "PATH: reason" as an error of line 0. */
int nw_kt_parse_file(const nw_keytable *t, void *obj, const char *path,
                     nw_ini_errs *errs);

/* Applies one "section.key=value" (a section name may hold dots, a key
 * not: "alert.pager.url" is key url of [alert.pager]). Spaces around the
 * name and the value are trimmed and one pair of double quotes around the
 * value removed. On error writes "--set ARG: reason" into err, leaves obj
 * as it was and returns NW_ECONFIG. */
int nw_kt_set(const nw_keytable *t, void *obj, const char *assignment,
              char *err, size_t errlen);

/* Checks every field of obj against its key's range or choices again (code
 * may change a struct without the parser), one line per problem appended
 * to out ("\n" between lines, none after the last, *n counting them).
 * Returns the number of problems found. */
int nw_kt_check(const nw_keytable *t, const void *obj, nw_strbuf *out, int *n);

/* Appends obj as a file: "[section]" headers (a blank line before each but
 * at the start of out), "key = value" lines, every key but unused ones;
 * numbers that read back exactly, strings quoted. */
void nw_kt_dump(const nw_keytable *t, const void *obj, nw_strbuf *out);

/* 1 when every key has the same value in a and b, else 0. */
int nw_kt_equal(const nw_keytable *t, const void *a, const void *b);

/* The key section.key, or NULL. */
const nw_kt_key *nw_kt_find(const nw_keytable *t, const char *section,
                            const char *key);

/* One value (keytable_value.c). Parses v for k into dst (the field) only
 * when it is valid. Returns 0, or NW_ECONFIG with the reason in why (no key
 * prefix) worded in dialect d, or NW_EINTERNAL for a key of no known type. */
int nw_kt_value_parse(const nw_kt_key *k, nw_kt_dialect d, const char *v,
                      void *dst, nw_strbuf *why);

/* Appends the field at src as file text. */
void nw_kt_value_format(const nw_kt_key *k, const void *src, nw_strbuf *out);

/* Appends "section.key (value) is out of range; expected ..." (no newline)
 * and returns 1 when the field at src is not a value k accepts; else 0. */
int nw_kt_value_check(const nw_kt_key *k, const void *src, nw_strbuf *out);

/* 1 when the fields at a and b hold the same value. */
int nw_kt_value_equal(const nw_kt_key *k, const void *a, const void *b);

/* What k accepts, for messages and docs: "an integer in [1, 256]". */
void nw_kt_describe(const nw_kt_key *k, nw_strbuf *out);

/* "int", "uint64", "double", "bool", "string", "choice" (a string with
 * choices), "enum", "size", or a custom type's name. */
const char *nw_kt_type_name(const nw_kt_key *k);

/* For a table's check: the line that set section.key in this text, 0 when
 * the text left it alone. */
int nw_kt_line(const nw_kt_session *s, const char *section, const char *key);

/* For a table's check: one more error at line. */
void nw_kt_report(nw_kt_session *s, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
