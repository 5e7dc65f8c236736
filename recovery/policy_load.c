/* policy_load.c — reading a policy file: ini.c does the syntax and the
 * duplicate keys; the handler checks each key against the table; checks
 * between keys run after the whole file. Every error goes to the caller,
 * each with its line, and the result is copied out only when there were
 * none. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "recovery/policy.h"
#include "recovery/policy_internal.h"

/* ---- errors: every one to the sink and into the buffer ---- */

/* Room kept at the end of err for the "(N more errors not shown)" line. */
#define NW__POL_TRAILER 48

typedef struct {
  const char *name;
  nw_ini_error_sink sink;
  void *user;
  char *err;
  size_t errlen, used;
  int nerr, dropped;
} nw__pol_errs;

static void nw__pol_error(nw__pol_errs *e, const char *name, int line,
                          const char *msg) {
  e->nerr++;
  if (e->sink)
    e->sink(e->user, name, line, msg);
  if (!e->err || e->errlen == 0)
    return;
  char one[1200];
  if (line > 0)
    snprintf(one, sizeof one, "%s%s:%d: %s", e->used ? "\n" : "", name, line,
             msg);
  else
    snprintf(one, sizeof one, "%s%s: %s", e->used ? "\n" : "", name, msg);
  size_t need = strlen(one);
  size_t reserve = e->errlen >= 4 * NW__POL_TRAILER ? NW__POL_TRAILER : 0;
  /* The first error is always written, truncated if it must be; later ones
   * only whole, so the buffer never ends in half a line. */
  if (e->used > 0 && e->used + need + reserve >= e->errlen) {
    e->dropped++;
    return;
  }
  snprintf(e->err + e->used, e->errlen - e->used, "%s", one);
  e->used += need;
  if (e->used >= e->errlen)
    e->used = e->errlen - 1;
}

static void nw__pol_errorf(nw__pol_errs *e, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nw__pol_errorf(nw__pol_errs *e, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  nw__pol_error(e, e->name, line, msg);
}

static void nw__pol_finish_errs(nw__pol_errs *e) {
  if (e->dropped && e->err && e->errlen > e->used)
    snprintf(e->err + e->used, e->errlen - e->used,
             "\n(%d more errors not shown)", e->dropped);
}

/* ---- the parser ---- */

#define NW__MAX_UNKNOWN_SECS 16

typedef struct {
  nw_policy pol;                    /* starts as the default */
  int line[NW__NSEC][NW__MAX_KEYS]; /* where each key was set; 0: not set */
  char unknown[NW__MAX_UNKNOWN_SECS][64]; /* unknown sections reported */
  int n_unknown;
  nw__pol_errs errs;
} nw__pol_parse;

static void nw__ini_sink(void *user, const char *name, int line,
                         const char *msg) {
  nw__pol_parse *ps = user;
  nw__pol_error(&ps->errs, name, line, msg);
}

/* Appends "; " and the formatted reason to err (the handler's reason). */
static void nw__reason(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nw__reason(char *err, size_t len, const char *fmt, ...) {
  size_t used = strlen(err);
  if (used + 3 >= len)
    return;
  if (used) {
    strcpy(err + used, "; ");
    used += 2;
  }
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err + used, len - used, fmt, ap);
  va_end(ap);
}

static char *nw__trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
    *--e = '\0';
  return s;
}

/* "a, b, c" -> chain; every problem of the list into err. */
static void nw__parse_chain(int sec, const char *value, nw_policy_chain *out,
                            char *err, size_t len) {
  char buf[512];
  if (strlen(value) >= sizeof buf) {
    nw__reason(err, len, "the list is too long");
    return;
  }
  strcpy(buf, value);
  if (*nw__trim(buf) == '\0') {
    nw__reason(err, len, "empty chain: name at least one action");
    return;
  }
  nw_policy_chain c = *out;
  c.n_actions = 0;
  int bad = 0;
  const char *terminal = NULL; /* a never-exhausted action seen */
  int item = 0;
  /* strsep-like split that keeps empty items so "a,,b" is reported */
  for (char *p = buf, *next; p; p = next, item++) {
    next = strchr(p, ',');
    if (next)
      *next++ = '\0';
    char *name = nw__trim(p);
    if (*name == '\0') {
      nw__reason(err, len, "empty action at position %d of the list", item + 1);
      bad = 1;
      continue;
    }
    nw_action a;
    if (nw_action_parse(name, &a) < 0) {
      nw__reason(err, len,
                 "unknown action '%.64s' (free-cache, halve-eval-batch, "
                 "kill-duplicate, halve-micro-batch, shorten-sequences, "
                 "restart, give-up)",
                 name);
      bad = 1;
      continue;
    }
    if (a == NW_ACTION_KILL_DUPLICATE && sec != NW_CAUSE_DUPLICATE) {
      nw__reason(err, len,
                 "kill-duplicate belongs only in [duplicate-process]");
      bad = 1;
    }
    if (nw__chain_has(&c, a)) {
      nw__reason(err, len, "%s is listed twice", name);
      bad = 1;
      continue;
    }
    if (terminal) {
      nw__reason(err, len, "%s can never run: %s before it is never exhausted",
                 name, terminal);
      bad = 1;
    }
    if (nw__action_terminal(a) && !terminal)
      terminal = nw_action_name(a);
    if (c.n_actions < NW_POLICY_MAX_CHAIN)
      c.actions[c.n_actions++] = a;
  }
  if (!bad)
    *out = c;
}

static int nw__parse_double(const char *v, double *out) {
  char *end;
  if (*v == '\0')
    return -1;
  double d = strtod(v, &end);
  if (*end != '\0' || !isfinite(d))
    return -1;
  *out = d;
  return 0;
}

static int nw__parse_int(const char *v, long *out) {
  char *end;
  if (*v == '\0')
    return -1;
  long l = strtol(v, &end, 10);
  if (*end != '\0')
    return -1;
  *out = l;
  return 0;
}

static int nw__in_range(const nw__pkey *k, double d) {
  if ((k->open & NW__MIN_OPEN) ? d <= k->min : d < k->min)
    return 0;
  if ((k->open & NW__MAX_OPEN) ? d >= k->max : d > k->max)
    return 0;
  return 1;
}

static void nw__range_reason(const nw__pkey *k, const char *v, char *err,
                             size_t len) {
  nw__reason(err, len, "%.64s is out of range: must be %s %g and %s %g", v,
             (k->open & NW__MIN_OPEN) ? ">" : ">=", k->min,
             (k->open & NW__MAX_OPEN) ? "<" : "<=", k->max);
}

static int nw__pick_foreign(const char *v) {
  for (int f = NW_FOREIGN_WAIT; f <= NW_FOREIGN_KILL_SAME_USER; f++)
    if (strcmp(v, nw_foreign_name((nw_foreign)f)) == 0)
      return f;
  return -1;
}

/* Unknown key: say where it belongs, or which keys this section takes. */
static void nw__unknown_key(int sec, const char *key, char *err, size_t len) {
  int k = nw__key_find(key);
  if (k >= 0) {
    const char *where = "a cause section";
    for (int s = 0; s < NW__NSEC; s++)
      if (nw__pkeys[k].sections == (1u << s))
        where = nw__sec_name(s);
    nw__reason(err, len, "unknown key '%s' here: it belongs in [%s]", key,
               where);
    return;
  }
  char list[256] = "";
  size_t used = 0;
  for (int i = 0; i < NW__NKEYS; i++) {
    if (!(nw__pkeys[i].sections & (1u << sec)))
      continue;
    int w = snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "",
                     nw__pkeys[i].name);
    if (w < 0 || (size_t)w >= sizeof list - used)
      break;
    used += (size_t)w;
  }
  nw__reason(err, len, "unknown key '%.64s' (keys here: %s)", key, list);
}

static int nw__pol_handler(void *user, const char *section, const char *key,
                           const char *value, int line, char *err,
                           size_t errlen) {
  nw__pol_parse *ps = user;
  int sec = nw__sec_find(section);
  err[0] = '\0';
  if (sec < 0) {
    for (int i = 0; i < ps->n_unknown; i++)
      if (strcmp(ps->unknown[i], section) == 0)
        return 0; /* said once per section */
    if (ps->n_unknown < NW__MAX_UNKNOWN_SECS)
      snprintf(ps->unknown[ps->n_unknown++], sizeof ps->unknown[0], "%s",
               section);
    snprintf(err, errlen,
             "unknown section [%.64s] (sections: eval-cache, "
             "duplicate-process, activation, sequence-length, unknown, "
             "limits)",
             section);
    return 1;
  }
  int k = nw__key_find(key);
  if (k < 0 || !(nw__pkeys[k].sections & (1u << sec))) {
    nw__unknown_key(sec, key, err, errlen);
    return 1;
  }
  const nw__pkey *pk = &nw__pkeys[k];
  size_t plen = (size_t)snprintf(err, errlen, "[%s] %s: ", section, key);
  if (plen >= errlen / 2)
    plen = 0;             /* no room for a prefix: the reason alone */
  char *why = err + plen; /* the reason follows the prefix */
  size_t wlen = errlen - plen;
  why[0] = '\0';
  void *dst = nw__key_ptr(&ps->pol, sec, pk);
  switch (pk->type) {
  case NW__PK_CHAIN:
    nw__parse_chain(sec, value, &ps->pol.chain[sec], why, wlen);
    break;
  case NW__PK_DBL: {
    double d;
    if (nw__parse_double(value, &d) < 0)
      nw__reason(why, wlen, "'%.64s' is not a number", value);
    else if (!nw__in_range(pk, d))
      nw__range_reason(pk, value, why, wlen);
    else
      *(double *)dst = d;
    break;
  }
  case NW__PK_INT: {
    long l;
    if (nw__parse_int(value, &l) < 0)
      nw__reason(why, wlen, "'%.64s' is not an integer", value);
    else if (!nw__in_range(pk, (double)l))
      nw__range_reason(pk, value, why, wlen);
    else
      *(int *)dst = (int)l;
    break;
  }
  case NW__PK_FOREIGN: {
    int i = nw__pick_foreign(value);
    if (i < 0)
      nw__reason(why, wlen, "'%.64s' is not wait or kill-same-user", value);
    else
      *(nw_foreign *)dst = (nw_foreign)i;
    break;
  }
  case NW__PK_GIVE_UP: {
    int i = strcmp(value, nw_give_up_name(NW_GIVE_UP_EXIT)) == 0 ? 0 : -1;
    if (i < 0)
      nw__reason(why, wlen, "'%.64s' is not exit", value);
    else
      *(nw_give_up *)dst = (nw_give_up)i;
    break;
  }
  }
  if (why[0])
    return 1;
  err[0] = '\0';
  ps->line[sec][k] = line;
  return 0;
}

/* Checks between keys, after the whole file: each names the line of a key
 * involved (the one the file set, the later one when both). */
static void nw__pol_cross_check(nw__pol_parse *ps) {
  const nw_policy *p = &ps->pol;
  for (int s = 0; s < NW_CAUSE_COUNT; s++) {
    if (nw__chain_has(&p->chain[s], NW_ACTION_SHORTEN_SEQUENCES))
      continue;
    const int ks[2] = {NW__K_FACTOR, NW__K_FLOOR};
    for (int i = 0; i < 2; i++)
      if (ps->line[s][ks[i]])
        nw__pol_errorf(&ps->errs, ps->line[s][ks[i]],
                       "[%s] %s has no effect: the chain has no "
                       "shorten-sequences",
                       nw__sec_name(s), nw__pkeys[ks[i]].name);
  }
  struct {
    int sec;
    const char *lo, *hi;
    double vlo, vhi;
  } pairs[] = {
      {NW_CAUSE_DUPLICATE, "wait_initial_seconds", "wait_max_seconds",
       p->duplicate.wait_initial_seconds, p->duplicate.wait_max_seconds},
      {NW__SEC_LIMITS, "backoff_initial_seconds", "backoff_max_seconds",
       p->limits.backoff_initial_seconds, p->limits.backoff_max_seconds},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    if (pairs[i].vlo <= pairs[i].vhi)
      continue;
    int llo = ps->line[pairs[i].sec][nw__key_find(pairs[i].lo)];
    int lhi = ps->line[pairs[i].sec][nw__key_find(pairs[i].hi)];
    nw__pol_errorf(&ps->errs, llo > lhi ? llo : lhi,
                   "[%s] %s (%g) is greater than %s (%g)",
                   nw__sec_name(pairs[i].sec), pairs[i].lo, pairs[i].vlo,
                   pairs[i].hi, pairs[i].vhi);
  }
}

static int nw__pol_run(const char *name, const char *path, const char *text,
                       nw_policy *out, nw_ini_error_sink on_error, void *user,
                       char *err, size_t errlen) {
  if (err && errlen)
    err[0] = '\0';
  nw__pol_parse *ps = calloc(1, sizeof *ps);
  if (!ps) {
    if (err && errlen)
      snprintf(err, errlen, "%s: out of host memory", name);
    return NW_EHOSTMEM;
  }
  nw_policy_defaults(&ps->pol);
  ps->errs = (nw__pol_errs){.name = name,
                            .sink = on_error,
                            .user = user,
                            .err = err,
                            .errlen = err ? errlen : 0};
  nw_ini_callbacks cb = {
      .handler = nw__pol_handler, .on_error = nw__ini_sink, .user = ps};
  int rc = path ? nw_ini_parse_file_cb(path, &cb, NULL, 0)
                : nw_ini_parse_string_cb(name, text, &cb, NULL, 0);
  if (rc >= 0)
    nw__pol_cross_check(ps);
  nw__pol_finish_errs(&ps->errs);
  if (rc >= 0 && ps->errs.nerr == 0) {
    *out = ps->pol;
    rc = 0;
  } else if (rc >= 0) {
    rc = NW_ECONFIG;
  }
  free(ps);
  return rc;
}

int nw_policy_load_cb(const char *path, nw_policy *out,
                      nw_ini_error_sink on_error, void *user, char *err,
                      size_t errlen) {
  return nw__pol_run(path, path, NULL, out, on_error, user, err, errlen);
}

int nw_policy_load(const char *path, nw_policy *out, char *err, size_t errlen) {
  return nw_policy_load_cb(path, out, NULL, NULL, err, errlen);
}

int nw_policy_parse_string(const char *name, const char *text, nw_policy *out,
                           nw_ini_error_sink on_error, void *user, char *err,
                           size_t errlen) {
  return nw__pol_run(name, NULL, text, out, on_error, user, err, errlen);
}
