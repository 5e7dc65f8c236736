/* keytable_value.c — the value types of a key table (keytable.h). A parse finds
 * what is wrong (a fault) apart from how it is said, so that the two dialects
 * word the same fault their own way. */
#include "base/keytable.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"

/* What is wrong with a value; NW__KT_SAID: the reason is written already. */
enum {
  NW__KT_OK = 0,
  NW__KT_SYNTAX,    /* not a value of the type */
  NW__KT_RANGE,     /* a value, out of range */
  NW__KT_NONFINITE, /* nan or inf */
  NW__KT_CHOICE,    /* not one of the choices */
  NW__KT_SAID,
};

/* Echoed values are cut at this many bytes. */
#define NW__KT_SHOW 64

static const struct {
  const char *suffix;
  uint64_t mult;
} nw__kt_units[] = {
    {"B", 1},
    {"KB", 1000ull},
    {"MB", 1000000ull},
    {"GB", 1000000000ull},
    {"TB", 1000000000000ull},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
};

static int nw__kt_choice(const char *const *ch, const char *v) {
  for (int i = 0; ch[i]; i++)
    if (!strcmp(ch[i], v))
      return i;
  return -1;
}

static int nw__kt_nchoices(const char *const *ch) {
  int n = 0;
  while (ch[n])
    n++;
  return n;
}

/* "a, b or c" */
static void nw__kt_choices(const char *const *ch, nw_strbuf *out) {
  for (int i = 0; ch[i]; i++)
    nw_strbuf_printf(out, "%s%s", i ? (ch[i + 1] ? ", " : " or ") : "", ch[i]);
}

static int nw__kt_in_range(const nw_kt_key *k, double x) {
  if (k->flags & NW_KT_MIN_OPEN ? x <= k->min : x < k->min)
    return 0;
  return k->flags & NW_KT_MAX_OPEN ? x < k->max : x <= k->max;
}

void nw_kt_describe(const nw_kt_key *k, nw_strbuf *out) {
  switch (k->type) {
  case NW_KT_INT:
    if (k->max >= INT_MAX)
      nw_strbuf_printf(out, "an integer >= %d", (int)k->min);
    else
      nw_strbuf_printf(out, "an integer in [%d, %d]", (int)k->min, (int)k->max);
    return;
  case NW_KT_U64:
    nw_strbuf_printf(out, "an integer in [0, %" PRIu64 "]", UINT64_MAX);
    return;
  case NW_KT_DOUBLE:
    nw_strbuf_printf(out, "a number in %c",
                     k->flags & NW_KT_MIN_OPEN ? '(' : '[');
    nw_strbuf_double(out, k->min);
    nw_strbuf_printf(out, ", ");
    nw_strbuf_double(out, k->max);
    nw_strbuf_printf(out, "%c", k->flags & NW_KT_MAX_OPEN ? ')' : ']');
    return;
  case NW_KT_BOOL:
    nw_strbuf_printf(out, "true, false, yes, no, 1 or 0");
    return;
  case NW_KT_STRING:
  case NW_KT_ENUM:
    if (k->choices) { /* a string with choices reads like an enum */
      nw_strbuf_printf(out, "one of ");
      nw__kt_choices(k->choices, out);
    } else {
      nw_strbuf_printf(out, "a %sstring of at most %zu bytes",
                       k->flags & NW_KT_NONEMPTY ? "non-empty " : "",
                       k->size - 1);
    }
    return;
  case NW_KT_SIZE:
    nw_strbuf_printf(out, "a byte count with an optional suffix B, KB, MB, "
                          "GB, TB, KiB, MiB, GiB or TiB");
    return;
  case NW_KT_CUSTOM:
    nw_strbuf_printf(out, "a %s", k->ops->type_name);
    return;
  }
}

const char *nw_kt_type_name(const nw_kt_key *k) {
  switch (k->type) {
  case NW_KT_INT:
    return "int";
  case NW_KT_U64:
    return "uint64";
  case NW_KT_DOUBLE:
    return "double";
  case NW_KT_BOOL:
    return "bool";
  case NW_KT_STRING:
    return k->choices ? "choice" : "string";
  case NW_KT_ENUM:
    return "enum";
  case NW_KT_SIZE:
    return "size";
  case NW_KT_CUSTOM:
    return k->ops->type_name;
  }
  return "invalid";
}

/* ---- numbers ---- */

/* Rejects what strtoll would skip or accept loosely: leading whitespace, an
 * empty string, trailing text. */
static int nw__kt_parse_ll(const char *v, long long *out) {
  if (!((*v >= '0' && *v <= '9') || *v == '-' || *v == '+'))
    return NW__KT_SYNTAX;
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end)
    return NW__KT_SYNTAX;
  if (errno == ERANGE)
    return NW__KT_RANGE;
  *out = x;
  return NW__KT_OK;
}

/* As above for unsigned; a '-' is not a number (strtoull would wrap it).
 * *end receives the first unparsed character when end is non-NULL. */
static int nw__kt_parse_ull(const char *v, uint64_t *out, const char **end) {
  if (*v == '+')
    v++;
  if (!(*v >= '0' && *v <= '9'))
    return NW__KT_SYNTAX;
  char *e;
  errno = 0;
  unsigned long long x = strtoull(v, &e, 10);
  if (errno == ERANGE)
    return NW__KT_RANGE;
  if (end)
    *end = e;
  else if (*e)
    return NW__KT_SYNTAX;
  *out = x;
  return NW__KT_OK;
}

static int nw__kt_parse_size(const char *v, uint64_t *out) {
  const char *end;
  uint64_t n;
  int rc = nw__kt_parse_ull(v, &n, &end);
  if (rc)
    return rc;
  while (*end == ' ' || *end == '\t')
    end++;
  uint64_t mult = 1;
  if (*end) {
    size_t i, nunits = sizeof nw__kt_units / sizeof nw__kt_units[0];
    for (i = 0; i < nunits; i++)
      if (strcmp(end, nw__kt_units[i].suffix) == 0)
        break;
    if (i == nunits)
      return NW__KT_SYNTAX;
    mult = nw__kt_units[i].mult;
  }
  if (n > UINT64_MAX / mult)
    return NW__KT_RANGE;
  *out = n * mult;
  return NW__KT_OK;
}

static int nw__kt_parse_int(const nw_kt_key *k, const char *v, void *dst) {
  long long x = 0;
  int rc = nw__kt_parse_ll(v, &x);
  if (rc == NW__KT_OK && !nw__kt_in_range(k, (double)x))
    rc = NW__KT_RANGE;
  if (rc == NW__KT_OK) {
    int i = (int)x;
    memcpy(dst, &i, sizeof i);
  }
  return rc;
}

static int nw__kt_parse_double(const nw_kt_key *k, const char *v, void *dst) {
  if (!*v || *v == ' ' || *v == '\t')
    return NW__KT_SYNTAX;
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (end == v || *end)
    return NW__KT_SYNTAX;
  if (!isfinite(x))
    return NW__KT_NONFINITE;
  if (errno == ERANGE || !nw__kt_in_range(k, x))
    return NW__KT_RANGE;
  memcpy(dst, &x, sizeof x);
  return NW__KT_OK;
}

/* ---- strings, words ---- */

static int nw__kt_parse_string(const nw_kt_key *k, const char *v, void *dst,
                               nw_strbuf *why) {
  size_t n = strlen(v);
  if (n >= k->size) {
    nw_strbuf_printf(why, "value is %zu bytes long; the limit is %zu", n,
                     k->size - 1);
    return NW__KT_SAID;
  }
  for (const char *p = v; *p; p++) {
    if ((unsigned char)*p < 0x20 || *p == 0x7f) {
      nw_strbuf_quote(why, '"', v, NW__KT_SHOW);
      nw_strbuf_printf(why, " contains a control character");
      return NW__KT_SAID;
    }
  }
  if (!n && (k->flags & NW_KT_NONEMPTY)) {
    nw_strbuf_printf(why, "must not be empty");
    return NW__KT_SAID;
  }
  if (k->choices && nw__kt_choice(k->choices, v) < 0)
    return NW__KT_CHOICE;
  /* Zero the whole array so that equal settings are equal bytes. */
  memset(dst, 0, k->size);
  memcpy(dst, v, n);
  return NW__KT_OK;
}

static int nw__kt_parse_word(const nw_kt_key *k, const char *v, void *dst) {
  int i;
  if (k->type == NW_KT_ENUM) {
    i = nw__kt_choice(k->choices, v);
    if (i < 0)
      return NW__KT_CHOICE;
  } else if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
             !strcmp(v, "1")) {
    i = 1;
  } else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") ||
             !strcmp(v, "0")) {
    i = 0;
  } else {
    return NW__KT_SYNTAX;
  }
  memcpy(dst, &i, sizeof i);
  return NW__KT_OK;
}

static int nw__kt_parse_u64(const nw_kt_key *k, const char *v, void *dst) {
  uint64_t x = 0;
  int rc = k->type == NW_KT_SIZE ? nw__kt_parse_size(v, &x)
                                 : nw__kt_parse_ull(v, &x, NULL);
  if (rc == NW__KT_OK)
    memcpy(dst, &x, sizeof x);
  return rc;
}

/* ---- the reasons, in each dialect ---- */

/* dotted: "\"12x\" is not valid; expected an integer in [1, 256]" */
static void nw__kt_why_dotted(const nw_kt_key *k, int fault, const char *v,
                              nw_strbuf *why) {
  nw_strbuf_quote(why, '"', v, NW__KT_SHOW);
  if (fault == NW__KT_SYNTAX)
    nw_strbuf_printf(why, " is not valid; expected ");
  else if (fault == NW__KT_CHOICE)
    nw_strbuf_printf(why, " is not ");
  else
    nw_strbuf_printf(why, " is out of range; expected ");
  nw_kt_describe(k, why);
}

/* bracketed: "'soon' is not a number", "1.5 is out of range: must be > 0
 * and < 1", "'kill' is not wait or kill-same-user" */
static void nw__kt_why_bracketed(const nw_kt_key *k, int fault, const char *v,
                                 nw_strbuf *why) {
  if (fault == NW__KT_RANGE &&
      (k->type == NW_KT_INT || k->type == NW_KT_DOUBLE)) {
    nw_strbuf_escape(why, v, NW__KT_SHOW);
    nw_strbuf_printf(why, " is out of range: must be %s %g and %s %g",
                     k->flags & NW_KT_MIN_OPEN ? ">" : ">=", k->min,
                     k->flags & NW_KT_MAX_OPEN ? "<" : "<=", k->max);
    return;
  }
  nw_strbuf_quote(why, '\'', v, NW__KT_SHOW);
  if (fault == NW__KT_CHOICE) {
    nw_strbuf_printf(why, " is not ");
    nw__kt_choices(k->choices, why);
  } else if (fault == NW__KT_NONFINITE ||
             (fault == NW__KT_SYNTAX && k->type == NW_KT_DOUBLE)) {
    nw_strbuf_printf(why, " is not a number");
  } else if (fault == NW__KT_SYNTAX && k->type == NW_KT_INT) {
    nw_strbuf_printf(why, " is not an integer");
  } else {
    nw_strbuf_printf(why, " is not valid: expected ");
    nw_kt_describe(k, why);
  }
}

int nw_kt_value_parse(const nw_kt_key *k, nw_kt_dialect d, const char *v,
                      void *dst, nw_strbuf *why) {
  int fault;
  switch (k->type) {
  case NW_KT_INT:
    fault = nw__kt_parse_int(k, v, dst);
    break;
  case NW_KT_U64:
  case NW_KT_SIZE:
    fault = nw__kt_parse_u64(k, v, dst);
    break;
  case NW_KT_DOUBLE:
    fault = nw__kt_parse_double(k, v, dst);
    break;
  case NW_KT_BOOL:
  case NW_KT_ENUM:
    fault = nw__kt_parse_word(k, v, dst);
    break;
  case NW_KT_STRING:
    fault = nw__kt_parse_string(k, v, dst, why);
    break;
  case NW_KT_CUSTOM:
    return k->ops->parse(k, v, dst, why) ? NW_ECONFIG : 0;
  default:
    nw_strbuf_printf(why, "internal error: bad key type");
    return NW_EINTERNAL;
  }
  if (fault == NW__KT_OK)
    return 0;
  if (fault != NW__KT_SAID) {
    if (d == NW_KT_DOTTED)
      nw__kt_why_dotted(k, fault, v, why);
    else
      nw__kt_why_bracketed(k, fault, v, why);
  }
  return NW_ECONFIG;
}

/* ---- stored values ---- */

static void nw__kt_format_size(uint64_t bytes, nw_strbuf *out) {
  static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4 && bytes; i++) {
    uint64_t mult = 1ull << (10 * (4 - i));
    if (bytes % mult == 0) {
      nw_strbuf_printf(out, "%" PRIu64 "%s", bytes / mult, units[i]);
      return;
    }
  }
  nw_strbuf_printf(out, "%" PRIu64, bytes);
}

void nw_kt_value_format(const nw_kt_key *k, const void *src, nw_strbuf *out) {
  int iv;
  uint64_t uv;
  double dv;
  switch (k->type) {
  case NW_KT_INT:
    memcpy(&iv, src, sizeof iv);
    nw_strbuf_printf(out, "%d", iv);
    return;
  case NW_KT_U64:
  case NW_KT_SIZE:
    memcpy(&uv, src, sizeof uv);
    if (k->type == NW_KT_SIZE)
      nw__kt_format_size(uv, out);
    else
      nw_strbuf_printf(out, "%" PRIu64, uv);
    return;
  case NW_KT_DOUBLE:
    memcpy(&dv, src, sizeof dv);
    nw_strbuf_double(out, dv);
    return;
  case NW_KT_BOOL:
    memcpy(&iv, src, sizeof iv);
    nw_strbuf_printf(out, "%s", iv ? "true" : "false");
    return;
  case NW_KT_ENUM:
    memcpy(&iv, src, sizeof iv);
    if (iv >= 0 && iv < nw__kt_nchoices(k->choices))
      nw_strbuf_printf(out, "%s", k->choices[iv]);
    else
      nw_strbuf_printf(out, "%d", iv);
    return;
  case NW_KT_STRING: {
    /* Always quoted, so that '#', ';' and edge spaces survive. */
    const char *p = src;
    nw_strbuf_printf(out, "\"");
    for (size_t j = 0; j < k->size && p[j]; j++)
      nw_strbuf_printf(out, "%s%c", p[j] == '"' || p[j] == '\\' ? "\\" : "",
                       p[j]);
    nw_strbuf_printf(out, "\"");
    return;
  }
  case NW_KT_CUSTOM:
    k->ops->format(k, src, out);
    return;
  }
}

static int nw__kt_check_string(const nw_kt_key *k, const char *p,
                               nw_strbuf *out) {
  if (!memchr(p, '\0', k->size)) {
    nw_strbuf_printf(out, "%s.%s is not NUL-terminated", k->section, k->key);
    return 1;
  }
  if ((k->flags & NW_KT_NONEMPTY) && !*p) {
    nw_strbuf_printf(out, "%s.%s must not be empty", k->section, k->key);
    return 1;
  }
  if (k->choices && nw__kt_choice(k->choices, p) < 0) {
    nw_strbuf_printf(out, "%s.%s (", k->section, k->key);
    nw_strbuf_quote(out, '"', p, NW__KT_SHOW);
    nw_strbuf_printf(out, ") is not ");
    nw_kt_describe(k, out);
    return 1;
  }
  return 0;
}

int nw_kt_value_check(const nw_kt_key *k, const void *src, nw_strbuf *out) {
  int iv;
  double dv;
  switch (k->type) {
  case NW_KT_INT:
    memcpy(&iv, src, sizeof iv);
    if (nw__kt_in_range(k, iv))
      return 0;
    nw_strbuf_printf(out, "%s.%s (%d) is out of range; expected ", k->section,
                     k->key, iv);
    break;
  case NW_KT_DOUBLE:
    memcpy(&dv, src, sizeof dv);
    if (isfinite(dv) && nw__kt_in_range(k, dv))
      return 0;
    nw_strbuf_printf(out, "%s.%s (%g) is out of range; expected ", k->section,
                     k->key, dv);
    break;
  case NW_KT_BOOL:
  case NW_KT_ENUM:
    memcpy(&iv, src, sizeof iv);
    if (iv >= 0 &&
        iv <= (k->type == NW_KT_BOOL ? 1 : nw__kt_nchoices(k->choices) - 1))
      return 0;
    nw_strbuf_printf(out, "%s.%s (%d) is not ", k->section, k->key, iv);
    break;
  case NW_KT_STRING:
    return nw__kt_check_string(k, src, out);
  default: /* every bit pattern is a value */
    return 0;
  }
  nw_kt_describe(k, out);
  return 1;
}

int nw_kt_value_equal(const nw_kt_key *k, const void *a, const void *b) {
  switch (k->type) {
  case NW_KT_DOUBLE: {
    double x, y;
    memcpy(&x, a, sizeof x);
    memcpy(&y, b, sizeof y);
    return x == y;
  }
  case NW_KT_STRING:
    return strncmp(a, b, k->size) == 0;
  case NW_KT_CUSTOM: {
    /* the file text says what the value means */
    char x[1024], y[1024];
    nw_strbuf bx = nw_strbuf_init(x, sizeof x),
              by = nw_strbuf_init(y, sizeof y);
    k->ops->format(k, a, &bx);
    k->ops->format(k, b, &by);
    return bx.len == by.len && strcmp(x, y) == 0;
  }
  default: /* ints and uint64s: the bytes */
    return memcmp(a, b, k->size) == 0;
  }
}
