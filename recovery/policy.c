/* policy.c — policies as data: names, the key table, the embedded default,
 * comparison, dump and summaries. Files are read by policy_load.c; the
 * decisions are in policy_decide.c. */
#include "recovery/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "recovery/policy_internal.h"

/* ---- names ---- */

static const char *const nw__action_names[NW_ACTION_COUNT] = {
    [NW_ACTION_FREE_CACHE] = "free-cache",
    [NW_ACTION_HALVE_EVAL_BATCH] = "halve-eval-batch",
    [NW_ACTION_KILL_DUPLICATE] = "kill-duplicate",
    [NW_ACTION_HALVE_MICRO_BATCH] = "halve-micro-batch",
    [NW_ACTION_SHORTEN_SEQUENCES] = "shorten-sequences",
    [NW_ACTION_RESTART] = "restart",
    [NW_ACTION_GIVE_UP] = "give-up",
};

const char *nw_action_name(nw_action a) {
  if ((int)a < 0 || a >= NW_ACTION_COUNT)
    return "invalid";
  return nw__action_names[a];
}

int nw_action_parse(const char *name, nw_action *out) {
  for (int a = 0; a < NW_ACTION_COUNT; a++) {
    if (strcmp(name, nw__action_names[a]) == 0) {
      *out = (nw_action)a;
      return 0;
    }
  }
  return NW_ENOTFOUND;
}

int nw__action_terminal(nw_action a) {
  return a == NW_ACTION_RESTART || a == NW_ACTION_KILL_DUPLICATE ||
         a == NW_ACTION_GIVE_UP;
}

static const char *const nw__foreign_names[] = {
    [NW_FOREIGN_WAIT] = "wait",
    [NW_FOREIGN_KILL_SAME_USER] = "kill-same-user",
};

const char *nw_foreign_name(nw_foreign f) {
  if ((int)f < 0 || f > NW_FOREIGN_KILL_SAME_USER)
    return "invalid";
  return nw__foreign_names[f];
}

const char *nw_give_up_name(nw_give_up g) {
  return g == NW_GIVE_UP_EXIT ? "exit" : "invalid";
}

/* ---- sections ---- */

const int nw__sec_order[NW__NSEC] = {
    NW_CAUSE_EVAL_CACHE,      NW_CAUSE_DUPLICATE, NW_CAUSE_ACTIVATION,
    NW_CAUSE_SEQUENCE_LENGTH, NW_CAUSE_UNKNOWN,   NW__SEC_LIMITS};

const char *nw__sec_name(int s) {
  return s == NW__SEC_LIMITS ? "limits" : nw_cause_name((nw_cause)s);
}

int nw__sec_find(const char *name) {
  nw_cause c;
  if (nw_cause_parse(name, &c) == 0)
    return (int)c;
  return strcmp(name, "limits") == 0 ? NW__SEC_LIMITS : -1;
}

/* ---- the key table ---- */

#define NW__IN_CAUSES ((1u << NW_CAUSE_COUNT) - 1)
#define NW__IN_DUP (1u << NW_CAUSE_DUPLICATE)
#define NW__IN_LIMITS (1u << NW__SEC_LIMITS)
#define NW__CHAINKEY(n, t, lo, hi, op)                                         \
  { #n, NW__IN_CAUSES, t, 1, offsetof(nw_policy_chain, n), lo, hi, op }
#define NW__POLKEY(sec, grp, n, t, lo, hi, op)                                 \
  { #n, sec, t, 0, offsetof(nw_policy, grp.n), lo, hi, op }

const nw__pkey nw__pkeys[] = {
    {"actions", NW__IN_CAUSES, NW__PK_CHAIN, 1, 0, 0, 0, 0},
    NW__CHAINKEY(factor, NW__PK_DBL, 0, 1, NW__MIN_OPEN | NW__MAX_OPEN),
    NW__CHAINKEY(floor, NW__PK_INT, 1, 65536, 0),
    NW__POLKEY(NW__IN_DUP, duplicate, grace_seconds, NW__PK_DBL, 0, 3600, 0),
    NW__POLKEY(NW__IN_DUP, duplicate, foreign, NW__PK_FOREIGN, 0, 0, 0),
    NW__POLKEY(NW__IN_DUP, duplicate, wait_initial_seconds, NW__PK_DBL, 0,
               86400, NW__MIN_OPEN),
    NW__POLKEY(NW__IN_DUP, duplicate, wait_max_seconds, NW__PK_DBL, 0,
               7 * 86400, NW__MIN_OPEN),
    NW__POLKEY(NW__IN_LIMITS, limits, max_recoveries, NW__PK_INT, 0,
               NW_POLICY_MAX_RECOVERIES, 0),
    NW__POLKEY(NW__IN_LIMITS, limits, window_seconds, NW__PK_DBL, 0, 1e7,
               NW__MIN_OPEN),
    NW__POLKEY(NW__IN_LIMITS, limits, backoff_initial_seconds, NW__PK_DBL, 0,
               86400, 0),
    NW__POLKEY(NW__IN_LIMITS, limits, backoff_max_seconds, NW__PK_DBL, 0, 86400,
               0),
    NW__POLKEY(NW__IN_LIMITS, limits, backoff_factor, NW__PK_DBL, 1, 100, 0),
    NW__POLKEY(NW__IN_LIMITS, limits, min_start_interval_seconds, NW__PK_DBL, 0,
               3600, 0),
    NW__POLKEY(NW__IN_LIMITS, limits, backoff_reset_seconds, NW__PK_DBL, 0, 1e7,
               0),
    NW__POLKEY(NW__IN_LIMITS, limits, give_up, NW__PK_GIVE_UP, 0, 0, 0),
};
const int nw__nkeys = (int)(sizeof nw__pkeys / sizeof nw__pkeys[0]);
_Static_assert(sizeof nw__pkeys / sizeof nw__pkeys[0] <= NW__MAX_KEYS,
               "NW__MAX_KEYS is too small for the key table");

int nw__key_find(const char *name) {
  for (int k = 0; k < NW__NKEYS; k++)
    if (strcmp(nw__pkeys[k].name, name) == 0)
      return k;
  return -1;
}

void *nw__key_ptr(nw_policy *p, int sec, const nw__pkey *k) {
  if (k->in_chain)
    return (char *)&p->chain[sec] + k->offset;
  return (char *)p + k->offset;
}

static const void *nw__key_cptr(const nw_policy *p, int sec,
                                const nw__pkey *k) {
  return nw__key_ptr((nw_policy *)p, sec, k);
}

/* ---- the default ---- */

static void nw__chain_set(nw_policy_chain *c, int n, const nw_action *a) {
  c->n_actions = n;
  for (int i = 0; i < n; i++)
    c->actions[i] = a[i];
}

void nw_policy_defaults(nw_policy *p) {
  memset(p, 0, sizeof *p);
  for (int c = 0; c < NW_CAUSE_COUNT; c++) {
    p->chain[c].factor = 0.75;
    p->chain[c].floor = 32;
  }
  nw__chain_set(
      &p->chain[NW_CAUSE_EVAL_CACHE], 2,
      (nw_action[]){NW_ACTION_FREE_CACHE, NW_ACTION_HALVE_EVAL_BATCH});
  nw__chain_set(&p->chain[NW_CAUSE_DUPLICATE], 1,
                (nw_action[]){NW_ACTION_KILL_DUPLICATE});
  nw__chain_set(
      &p->chain[NW_CAUSE_ACTIVATION], 2,
      (nw_action[]){NW_ACTION_HALVE_MICRO_BATCH, NW_ACTION_SHORTEN_SEQUENCES});
  nw__chain_set(
      &p->chain[NW_CAUSE_SEQUENCE_LENGTH], 2,
      (nw_action[]){NW_ACTION_SHORTEN_SEQUENCES, NW_ACTION_HALVE_MICRO_BATCH});
  nw__chain_set(&p->chain[NW_CAUSE_UNKNOWN], 1,
                (nw_action[]){NW_ACTION_RESTART});
  p->duplicate.grace_seconds = 10;
  p->duplicate.foreign = NW_FOREIGN_WAIT;
  p->duplicate.wait_initial_seconds = 30;
  p->duplicate.wait_max_seconds = 600;
  p->limits.max_recoveries = 8;
  p->limits.window_seconds = 3600;
  p->limits.backoff_initial_seconds = 1;
  p->limits.backoff_max_seconds = 300;
  p->limits.backoff_factor = 2;
  p->limits.min_start_interval_seconds = 1;
  p->limits.backoff_reset_seconds = 600;
  p->limits.give_up = NW_GIVE_UP_EXIT;
}

int nw__chain_has(const nw_policy_chain *c, nw_action a) {
  for (int i = 0; i < c->n_actions; i++)
    if (c->actions[i] == a)
      return 1;
  return 0;
}

/* ---- comparison, dump, summaries ---- */

int nw_policy_equal(const nw_policy *a, const nw_policy *b) {
  for (int c = 0; c < NW_CAUSE_COUNT; c++) {
    const nw_policy_chain *x = &a->chain[c], *y = &b->chain[c];
    if (x->n_actions != y->n_actions || x->factor != y->factor ||
        x->floor != y->floor)
      return 0;
    for (int i = 0; i < x->n_actions; i++)
      if (x->actions[i] != y->actions[i])
        return 0;
  }
  for (int k = 0; k < NW__NKEYS; k++) {
    const nw__pkey *pk = &nw__pkeys[k];
    if (pk->in_chain)
      continue;
    const void *x = nw__key_cptr(a, 0, pk), *y = nw__key_cptr(b, 0, pk);
    if (pk->type == NW__PK_DBL ? *(const double *)x != *(const double *)y
                               : *(const int *)x != *(const int *)y)
      return 0;
  }
  return 1;
}

typedef struct {
  char *buf;
  size_t len, used; /* used counts what was wanted, even past len */
} nw__out;

static void nw__outf(nw__out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void nw__outf(nw__out *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = o->used < o->len ? o->len - o->used : 0;
  int n = vsnprintf(room ? o->buf + o->used : NULL, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    o->used += (size_t)n;
}

/* The shortest text that reads back as the same double. */
static void nw__fmt_double(double d, char *buf, size_t len) {
  for (int prec = 6; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, d);
    if (strtod(buf, NULL) == d)
      return;
  }
}

size_t nw_policy_dump(const nw_policy *p, char *buf, size_t buflen) {
  nw__out o = {buf, buflen, 0};
  if (buf && buflen)
    buf[0] = '\0';
  nw__outf(&o, "# nightwatch recovery policy (docs/policies.md)\n");
  for (int i = 0; i < NW__NSEC; i++) {
    int s = nw__sec_order[i];
    nw__outf(&o, "\n[%s]\n", nw__sec_name(s));
    for (int k = 0; k < NW__NKEYS; k++) {
      const nw__pkey *pk = &nw__pkeys[k];
      if (!(pk->sections & (1u << s)))
        continue;
      if ((k == NW__K_FACTOR || k == NW__K_FLOOR) &&
          !nw__chain_has(&p->chain[s], NW_ACTION_SHORTEN_SEQUENCES))
        continue;
      const void *v = nw__key_cptr(p, s, pk);
      char num[64];
      nw__outf(&o, "%s = ", pk->name);
      switch (pk->type) {
      case NW__PK_CHAIN:
        for (int a = 0; a < p->chain[s].n_actions; a++)
          nw__outf(&o, "%s%s", a ? ", " : "",
                   nw_action_name(p->chain[s].actions[a]));
        break;
      case NW__PK_DBL:
        nw__fmt_double(*(const double *)v, num, sizeof num);
        nw__outf(&o, "%s", num);
        break;
      case NW__PK_INT:
        nw__outf(&o, "%d", *(const int *)v);
        break;
      case NW__PK_FOREIGN:
        nw__outf(&o, "%s", nw_foreign_name(*(const nw_foreign *)v));
        break;
      case NW__PK_GIVE_UP:
        nw__outf(&o, "%s", nw_give_up_name(*(const nw_give_up *)v));
        break;
      }
      nw__outf(&o, "\n");
    }
  }
  return o.used;
}

void nw_policy_chain_summary(const nw_policy *p, nw_cause c, char *buf,
                             size_t len) {
  nw__out o = {buf, len, 0};
  if (buf && len)
    buf[0] = '\0';
  if ((int)c < 0 || c >= NW_CAUSE_COUNT)
    return;
  const nw_policy_chain *ch = &p->chain[c];
  for (int i = 0; i < ch->n_actions; i++) {
    nw_action a = ch->actions[i];
    nw__outf(&o, "%s%s", i ? " -> " : "", nw_action_name(a));
    if (a == NW_ACTION_SHORTEN_SEQUENCES)
      nw__outf(&o, " (x%g, floor %d)", ch->factor, ch->floor);
    else if (a == NW_ACTION_KILL_DUPLICATE)
      nw__outf(
          &o, " (grace %g s; foreign: %s, waits %g..%g s)",
          p->duplicate.grace_seconds, nw_foreign_name(p->duplicate.foreign),
          p->duplicate.wait_initial_seconds, p->duplicate.wait_max_seconds);
  }
  nw_action last =
      ch->n_actions ? ch->actions[ch->n_actions - 1] : NW_ACTION_GIVE_UP;
  if (last == NW_ACTION_RESTART || last == NW_ACTION_KILL_DUPLICATE)
    nw__outf(&o, ", repeated within the limits");
  else if (last != NW_ACTION_GIVE_UP)
    nw__outf(&o, " -> give up");
}

void nw_policy_limits_summary(const nw_policy *p, char *buf, size_t len) {
  nw__out o = {buf, len, 0};
  if (buf && len)
    buf[0] = '\0';
  nw__outf(&o,
           "at most %d recoveries per %g s; backoff %g s x%g up to %g s, "
           "reset by a run of %g s; at least %g s between starts; "
           "give up: %s",
           p->limits.max_recoveries, p->limits.window_seconds,
           p->limits.backoff_initial_seconds, p->limits.backoff_factor,
           p->limits.backoff_max_seconds, p->limits.backoff_reset_seconds,
           p->limits.min_start_interval_seconds,
           nw_give_up_name(p->limits.give_up));
}
