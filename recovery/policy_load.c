/* policy_load.c — the policy file's keys as a table for the key-table
 * engine (base/keytable.h): a chain of actions per cause, a value type of
 * its own; the checks between keys after a whole file; loading, where every
 * error goes to the caller with its line and the policy is copied out only
 * when there were none. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/keytable.h"
#include "base/strbuf.h"
#include "recovery/policy.h"
#include "recovery/policy_internal.h"

/* ---- the chain of actions: "halve-micro-batch, shorten-sequences" ---- */

/* One more reason, "; " after the ones before. */
static void nw__reason(nw_strbuf *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void nw__reason(nw_strbuf *why, const char *fmt, ...) {
  if (why->len)
    nw_strbuf_printf(why, "; ");
  va_list ap;
  va_start(ap, fmt);
  nw_strbuf_vprintf(why, fmt, ap);
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

/* Adds the action called name to c; every problem into why. 0 or 1: bad.
 * *terminal: the never-exhausted action seen so far, if any. */
static int nw__chain_add(nw_policy_chain *c, nw_cause cause, const char *name,
                         int item, const char **terminal, nw_strbuf *why) {
  if (*name == '\0') {
    nw__reason(why, "empty action at position %d of the list", item + 1);
    return 1;
  }
  nw_action a;
  if (nw_action_parse(name, &a) < 0) {
    nw__reason(why, "unknown action ");
    nw_strbuf_quote(why, '\'', name, 64);
    nw_strbuf_printf(why, " (free-cache, halve-eval-batch, kill-duplicate, "
                          "halve-micro-batch, shorten-sequences, restart, "
                          "give-up)");
    return 1;
  }
  int bad = 0;
  if (a == NW_ACTION_KILL_DUPLICATE && cause != NW_CAUSE_DUPLICATE) {
    nw__reason(why, "kill-duplicate belongs only in [duplicate-process]");
    bad = 1;
  }
  if (nw__chain_has(c, a)) {
    nw__reason(why, "%s is listed twice", name);
    return 1;
  }
  if (*terminal) {
    nw__reason(why, "%s can never run: %s before it is never exhausted", name,
               *terminal);
    bad = 1;
  }
  if (nw__action_terminal(a) && !*terminal)
    *terminal = nw_action_name(a);
  if (c->n_actions < NW_POLICY_MAX_CHAIN)
    c->actions[c->n_actions++] = a;
  return bad;
}

/* "a, b, c" -> the chain at dst (actions and n_actions; factor and floor
 * are keys of their own). */
static int nw__chain_parse(const nw_kt_key *k, const char *value, void *dst,
                           nw_strbuf *why) {
  nw_cause cause;
  if (nw_cause_parse(k->section, &cause) < 0) {
    nw__reason(why, "internal error: [%s] is not a cause", k->section);
    return NW_ECONFIG;
  }
  char buf[512];
  if (strlen(value) >= sizeof buf) {
    nw__reason(why, "the list is too long");
    return NW_ECONFIG;
  }
  strcpy(buf, value);
  if (*nw__trim(buf) == '\0') {
    nw__reason(why, "empty chain: name at least one action");
    return NW_ECONFIG;
  }
  nw_policy_chain c = *(nw_policy_chain *)dst;
  c.n_actions = 0;
  int bad = 0, item = 0;
  const char *terminal = NULL;
  /* strsep-like split that keeps empty items so "a,,b" is reported */
  for (char *p = buf, *next; p; p = next, item++) {
    next = strchr(p, ',');
    if (next)
      *next++ = '\0';
    bad |= nw__chain_add(&c, cause, nw__trim(p), item, &terminal, why);
  }
  if (bad)
    return NW_ECONFIG;
  memcpy(dst, &c, sizeof c);
  return 0;
}

static void nw__chain_format(const nw_kt_key *k, const void *src,
                             nw_strbuf *out) {
  (void)k;
  const nw_policy_chain *c = src;
  for (int a = 0; a < c->n_actions; a++)
    nw_strbuf_printf(out, "%s%s", a ? ", " : "", nw_action_name(c->actions[a]));
}

static const nw_kt_ops nw__chain_ops = {
    .parse = nw__chain_parse,
    .format = nw__chain_format,
    .type_name = "chain",
};

/* ---- the keys ---- */

#define NW__CAUSE_KEYS(cause, name, acts)                                      \
  {.section = name,                                                            \
   .key = "actions",                                                           \
   .type = NW_KT_CUSTOM,                                                       \
   NW_KT_AT(nw_policy, chain[cause], nw_policy_chain),                         \
   .def = acts,                                                                \
   .ops = &nw__chain_ops,                                                      \
   .doc = "the actions tried in order while the cause recurs"},                \
      {.section = name,                                                        \
       .key = "factor",                                                        \
       .type = NW_KT_DOUBLE,                                                   \
       NW_KT_AT(nw_policy, chain[cause].factor, double),                       \
       .def = "0.75",                                                          \
       .min = 0,                                                               \
       .max = 1,                                                               \
       .flags = NW_KT_MIN_OPEN | NW_KT_MAX_OPEN,                               \
       .doc = "shorten-sequences: the length times this"},                     \
  {                                                                            \
    .section = name, .key = "floor", .type = NW_KT_INT,                        \
    NW_KT_AT(nw_policy, chain[cause].floor, int), .def = "32", .min = 1,       \
    .max = 65536, .doc = "shorten-sequences: never below this many positions"  \
  }

#define NW__POL(sec, grp, f, t, ctype, def_, lo, hi, fl, doc_)                 \
  {                                                                            \
    .section = sec, .key = #f, .type = t, NW_KT_AT(nw_policy, grp.f, ctype),   \
    .def = def_, .min = lo, .max = hi, .flags = fl, .doc = doc_                \
  }
#define NW__DUP(f, def, lo, hi, fl, doc)                                       \
  NW__POL("duplicate-process", duplicate, f, NW_KT_DOUBLE, double, def, lo,    \
          hi, fl, doc)
#define NW__LIM(f, def, lo, hi, fl, doc)                                       \
  NW__POL("limits", limits, f, NW_KT_DOUBLE, double, def, lo, hi, fl, doc)

/* Files and dumps list the sections in this order. The section names are
 * nw_cause_name's (test_policy checks). */
static const nw_kt_key nw__policy_keys[] = {
    NW__CAUSE_KEYS(NW_CAUSE_EVAL_CACHE, "eval-cache",
                   "free-cache, halve-eval-batch"),
    NW__CAUSE_KEYS(NW_CAUSE_DUPLICATE, "duplicate-process", "kill-duplicate"),
    NW__DUP(grace_seconds, "10", 0, 3600, 0, "SIGTERM, this long, SIGKILL"),
    {.section = "duplicate-process",
     .key = "foreign",
     .type = NW_KT_ENUM,
     NW_KT_AT(nw_policy, duplicate.foreign, int),
     .def = "wait",
     .choices = nw__foreign_names,
     .doc = "processes that are not provably duplicates: wait for them, or "
            "kill those of our own user"},
    NW__DUP(wait_initial_seconds, "30", 0, 86400, NW_KT_MIN_OPEN,
            "the first wait for foreign processes"),
    NW__DUP(wait_max_seconds, "600", 0, 7 * 86400, NW_KT_MIN_OPEN,
            "the wait grows by limits.backoff_factor up to this"),
    NW__CAUSE_KEYS(NW_CAUSE_ACTIVATION, "activation",
                   "halve-micro-batch, shorten-sequences"),
    NW__CAUSE_KEYS(NW_CAUSE_SEQUENCE_LENGTH, "sequence-length",
                   "shorten-sequences, halve-micro-batch"),
    NW__CAUSE_KEYS(NW_CAUSE_UNKNOWN, "unknown", "restart"),
    NW__POL("limits", limits, max_recoveries, NW_KT_INT, int, "8", 0,
            NW_POLICY_MAX_RECOVERIES, 0,
            "at most this many recoveries within window_seconds"),
    NW__LIM(window_seconds, "3600", 0, 1e7, NW_KT_MIN_OPEN,
            "the sliding window of max_recoveries"),
    NW__LIM(backoff_initial_seconds, "1", 0, 86400, 0,
            "wait before the first restart"),
    NW__LIM(backoff_max_seconds, "300", 0, 86400, 0,
            "the wait never exceeds this"),
    NW__LIM(backoff_factor, "2", 1, 100, 0, "growth per consecutive recovery"),
    NW__LIM(min_start_interval_seconds, "1", 0, 3600, 0,
            "never two trainer starts closer than this"),
    NW__LIM(backoff_reset_seconds, "600", 0, 1e7, 0,
            "a run this long resets the backoff"),
    {.section = "limits",
     .key = "give_up",
     .type = NW_KT_ENUM,
     NW_KT_AT(nw_policy, limits.give_up, int),
     .def = "exit",
     .choices = nw__give_up_names,
     .doc = "ledger entry, alert, non-zero exit"},
};

/* factor and floor mean something only to shorten-sequences. */
static const char *nw__policy_unused(const void *obj, const nw_kt_key *k) {
  nw_cause c;
  if ((strcmp(k->key, "factor") && strcmp(k->key, "floor")) ||
      nw_cause_parse(k->section, &c) < 0)
    return NULL;
  const nw_policy *p = obj;
  if (nw__chain_has(&p->chain[c], NW_ACTION_SHORTEN_SEQUENCES))
    return NULL;
  return "the chain has no shorten-sequences";
}

/* A lower bound above its upper bound: reported at the later of the two
 * lines that set them. */
static void nw__policy_check(const void *obj, nw_kt_session *s) {
  const nw_policy *p = obj;
  const struct {
    const char *sec, *lo, *hi;
    double vlo, vhi;
  } pairs[] = {
      {"duplicate-process", "wait_initial_seconds", "wait_max_seconds",
       p->duplicate.wait_initial_seconds, p->duplicate.wait_max_seconds},
      {"limits", "backoff_initial_seconds", "backoff_max_seconds",
       p->limits.backoff_initial_seconds, p->limits.backoff_max_seconds},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    if (pairs[i].vlo <= pairs[i].vhi)
      continue;
    int llo = nw_kt_line(s, pairs[i].sec, pairs[i].lo);
    int lhi = nw_kt_line(s, pairs[i].sec, pairs[i].hi);
    nw_kt_report(s, llo > lhi ? llo : lhi,
                 "[%s] %s (%g) is greater than %s (%g)", pairs[i].sec,
                 pairs[i].lo, pairs[i].vlo, pairs[i].hi, pairs[i].vhi);
  }
}

const nw_keytable nw__policy_table = {
    .keys = nw__policy_keys,
    .n_keys = sizeof nw__policy_keys / sizeof nw__policy_keys[0],
    .obj_size = sizeof(nw_policy),
    .dialect = NW_KT_BRACKETED,
    .unused = nw__policy_unused,
    .check = nw__policy_check,
};

const nw_keytable *nw_policy_keytable(void) { return &nw__policy_table; }

/* ---- loading ---- */

/* path, or else len bytes of text named name. */
static int nw__pol_run(const char *name, const char *path, const char *text,
                       size_t len, nw_policy *out, nw_ini_error_sink on_error,
                       void *user, char *err, size_t errlen) {
  nw_ini_errs errs;
  nw_ini_errs_init(&errs, err, err ? errlen : 0, on_error, user);
  nw_policy p;
  nw_policy_defaults(&p);
  int rc =
      path ? nw_kt_parse_file(&nw__policy_table, &p, path, &errs)
           : nw_kt_parse_buffer(&nw__policy_table, &p, name, text, len, &errs);
  if (rc == 0)
    *out = p;
  return rc;
}

int nw_policy_load_cb(const char *path, nw_policy *out,
                      nw_ini_error_sink on_error, void *user, char *err,
                      size_t errlen) {
  return nw__pol_run(path, path, NULL, 0, out, on_error, user, err, errlen);
}

int nw_policy_load(const char *path, nw_policy *out, char *err, size_t errlen) {
  return nw_policy_load_cb(path, out, NULL, NULL, err, errlen);
}

int nw_policy_parse_buffer(const char *name, const char *text, size_t len,
                           nw_policy *out, nw_ini_error_sink on_error,
                           void *user, char *err, size_t errlen) {
  return nw__pol_run(name, NULL, text, len, out, on_error, user, err, errlen);
}

int nw_policy_parse_string(const char *name, const char *text, nw_policy *out,
                           nw_ini_error_sink on_error, void *user, char *err,
                           size_t errlen) {
  return nw_policy_parse_buffer(name, text, strlen(text), out, on_error, user,
                                err, errlen);
}
