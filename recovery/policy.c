/* policy.c — policies as data: names, the embedded default, comparison, dump
 * and summaries, the last three over the key table of policy_load.c, which
 * also reads files. The decisions are in policy_decide.c. */
#include "recovery/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/keytable.h"
#include "base/strbuf.h"
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

const char *const nw__foreign_names[] = {
    [NW_FOREIGN_WAIT] = "wait",
    [NW_FOREIGN_KILL_SAME_USER] = "kill-same-user",
    NULL,
};

const char *const nw__give_up_names[] = {[NW_GIVE_UP_EXIT] = "exit", NULL};

const char *nw_foreign_name(nw_foreign f) {
  if ((int)f < 0 || f > NW_FOREIGN_KILL_SAME_USER)
    return "invalid";
  return nw__foreign_names[f];
}

const char *nw_give_up_name(nw_give_up g) {
  return g == NW_GIVE_UP_EXIT ? nw__give_up_names[g] : "invalid";
}

/* ---- the default: the table's (policy_load.c) ---- */

void nw_policy_defaults(nw_policy *p) { nw_kt_defaults(&nw__policy_table, p); }

int nw__chain_has(const nw_policy_chain *c, nw_action a) {
  for (int i = 0; i < c->n_actions; i++)
    if (c->actions[i] == a)
      return 1;
  return 0;
}

/* ---- comparison, dump, summaries ---- */

int nw_policy_equal(const nw_policy *a, const nw_policy *b) {
  return nw_kt_equal(&nw__policy_table, a, b);
}

size_t nw_policy_dump(const nw_policy *p, char *buf, size_t buflen) {
  nw_strbuf o = nw_strbuf_init(buf, buflen);
  nw_strbuf_printf(&o, "# nightwatch recovery policy (docs/policies.md)\n");
  nw_kt_dump(&nw__policy_table, p, &o);
  return o.len;
}

void nw_policy_chain_summary(const nw_policy *p, nw_cause c, char *buf,
                             size_t len) {
  nw_strbuf o = nw_strbuf_init(buf, len);
  if ((int)c < 0 || c >= NW_CAUSE_COUNT)
    return;
  const nw_policy_chain *ch = &p->chain[c];
  for (int i = 0; i < ch->n_actions; i++) {
    nw_action a = ch->actions[i];
    nw_strbuf_printf(&o, "%s%s", i ? " -> " : "", nw_action_name(a));
    if (a == NW_ACTION_SHORTEN_SEQUENCES)
      nw_strbuf_printf(&o, " (x%g, floor %d)", ch->factor, ch->floor);
    else if (a == NW_ACTION_KILL_DUPLICATE)
      nw_strbuf_printf(
          &o, " (grace %g s; foreign: %s, waits %g..%g s)",
          p->duplicate.grace_seconds, nw_foreign_name(p->duplicate.foreign),
          p->duplicate.wait_initial_seconds, p->duplicate.wait_max_seconds);
  }
  nw_action last =
      ch->n_actions ? ch->actions[ch->n_actions - 1] : NW_ACTION_GIVE_UP;
  if (last == NW_ACTION_RESTART || last == NW_ACTION_KILL_DUPLICATE)
    nw_strbuf_printf(&o, ", repeated within the limits");
  else if (last != NW_ACTION_GIVE_UP)
    nw_strbuf_printf(&o, " -> give up");
}

void nw_policy_limits_summary(const nw_policy *p, char *buf, size_t len) {
  nw_strbuf o = nw_strbuf_init(buf, len);
  nw_strbuf_printf(
      &o,
      "at most %d recoveries per %g s; backoff %g s x%g up to %g s, "
      "reset by a run of %g s; at least %g s between starts; "
      "give up: %s",
      p->limits.max_recoveries, p->limits.window_seconds,
      p->limits.backoff_initial_seconds, p->limits.backoff_factor,
      p->limits.backoff_max_seconds, p->limits.backoff_reset_seconds,
      p->limits.min_start_interval_seconds, nw_give_up_name(p->limits.give_up));
}
