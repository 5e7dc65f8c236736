/* policy_decide.c — from a cause, the settings in force and the history to
 * an action and the settings after. Pure: no I/O, no clock; the caller
 * passes now. One function per action says what it would change, or why it
 * is exhausted (it would change nothing). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "base/strbuf.h"
#include "recovery/policy.h"

void nw_recovery_history_init(nw_recovery_history *h) {
  memset(h, 0, sizeof *h);
  h->last_start = -1;
}

void nw_recovery_history_started(nw_recovery_history *h, double now) {
  h->last_start = now;
}

/* An action's outcome: 1 applied (d->after and d->summary written), 0
 * exhausted (why written), or a negative NW_E* code. */
typedef int (*nw__action_fn)(const nw_policy *p, const nw_policy_chain *ch,
                             const nw_config *cur, nw_decision *d, char *why,
                             size_t len);

static int nw__free_cache(const nw_policy *p, const nw_policy_chain *ch,
                          const nw_config *cur, nw_decision *d, char *why,
                          size_t len) {
  (void)p, (void)ch;
  if (cur->eval.release_cache) {
    snprintf(why, len, "the kv-cache is already released after generation");
    return 0;
  }
  d->after.eval.release_cache = 1;
  d->trim_after_eval = 1;
  snprintf(d->summary, sizeof d->summary,
           "eval.release_cache false -> true: the kv-cache is freed after "
           "each generation and the allocator cache trimmed after eval");
  return 1;
}

static int nw__halve_eval_batch(const nw_policy *p, const nw_policy_chain *ch,
                                const nw_config *cur, nw_decision *d, char *why,
                                size_t len) {
  (void)p, (void)ch;
  int b = cur->eval.batch;
  if (b <= 1) {
    snprintf(why, len, "the eval batch is already %d", b);
    return 0;
  }
  d->after.eval.batch = b / 2 + b % 2;
  snprintf(d->summary, sizeof d->summary, "eval batch %d -> %d", b,
           d->after.eval.batch);
  return 1;
}

static int nw__kill_duplicate(const nw_policy *p, const nw_policy_chain *ch,
                              const nw_config *cur, nw_decision *d, char *why,
                              size_t len) {
  (void)ch, (void)why, (void)len;
  /* The foreign wait grows like the restart backoff, per consecutive
   * duplicate-process recovery. */
  double w = p->duplicate.wait_initial_seconds;
  for (int i = 1; i < d->attempt && w < p->duplicate.wait_max_seconds; i++)
    w *= p->limits.backoff_factor;
  d->foreign_wait_seconds = fmin(w, p->duplicate.wait_max_seconds);
  d->grace_seconds = p->duplicate.grace_seconds;
  d->foreign = p->duplicate.foreign;
  snprintf(d->summary, sizeof d->summary,
           "stop duplicates of run '%s' (same user and same run id): "
           "SIGTERM, %g s grace, SIGKILL; %s: wait %g s and alert",
           cur->run.id, d->grace_seconds,
           d->foreign == NW_FOREIGN_WAIT
               ? "foreign processes are never killed"
               : "other processes of our user are killed too; other users'",
           d->foreign_wait_seconds);
  return 1;
}

static int nw__halve_micro_batch(const nw_policy *p, const nw_policy_chain *ch,
                                 const nw_config *cur, nw_decision *d,
                                 char *why, size_t len) {
  (void)p, (void)ch;
  const nw_batch_config *b = &cur->batch;
  int w = b->world > 0 ? b->world : 1; /* unresolved (auto) counts as 1 */
  if (b->effective < 1 || b->micro < 1 || b->world < 0 ||
      b->effective % w != 0 || (b->effective / w) % b->micro)
    return NW_ECONFIG;
  if (b->micro == 1) {
    snprintf(why, len, "the micro-batch is already 1");
    return 0;
  }
  /* The largest divisor of the per-rank batch that is at most half the
   * micro-batch: accumulation stays an integer, effective is unchanged. */
  int per_rank = b->effective / w;
  int m = b->micro / 2;
  while (per_rank % m)
    m--;
  d->after.batch.micro = m;
  char world[32] = "";
  if (w > 1)
    snprintf(world, sizeof world, " (%d ranks)", w);
  snprintf(d->summary, sizeof d->summary,
           "micro-batch %d -> %d, accumulation %d -> %d, effective %d%s "
           "unchanged",
           b->micro, m, nw_config_accum(b), nw_config_accum(&d->after.batch),
           b->effective, world);
  return 1;
}

static int nw__shorten_sequences(const nw_policy *p, const nw_policy_chain *ch,
                                 const nw_config *cur, nw_decision *d,
                                 char *why, size_t len) {
  (void)p;
  int have = nw_config_max_len(cur);
  if (have < 1)
    return NW_ECONFIG;
  if (have <= ch->floor) {
    snprintf(why, len, "the max sequence length %d is at the floor %d", have,
             ch->floor);
    return 0;
  }
  int want = (int)floor((double)have * ch->factor);
  if (want < ch->floor)
    want = ch->floor;
  if (want >= have) {
    snprintf(why, len, "x%g leaves the max sequence length %d as it is",
             ch->factor, have);
    return 0;
  }
  /* data.max_len only: the model's positions never change. */
  d->after.data.max_len = want;
  snprintf(d->summary, sizeof d->summary,
           "max sequence length %d -> %d (x%g, floor %d), %d sequences per "
           "effective batch unchanged",
           have, want, ch->factor, ch->floor, cur->batch.effective);
  return 1;
}

static int nw__restart(const nw_policy *p, const nw_policy_chain *ch,
                       const nw_config *cur, nw_decision *d, char *why,
                       size_t len) {
  (void)p, (void)ch, (void)cur, (void)why, (void)len;
  snprintf(d->summary, sizeof d->summary,
           "restart from the last checkpoint with unchanged settings");
  return 1;
}

static const nw__action_fn nw__actions[NW_ACTION_COUNT] = {
    [NW_ACTION_FREE_CACHE] = nw__free_cache,
    [NW_ACTION_HALVE_EVAL_BATCH] = nw__halve_eval_batch,
    [NW_ACTION_KILL_DUPLICATE] = nw__kill_duplicate,
    [NW_ACTION_HALVE_MICRO_BATCH] = nw__halve_micro_batch,
    [NW_ACTION_SHORTEN_SEQUENCES] = nw__shorten_sequences,
    [NW_ACTION_RESTART] = nw__restart,
    [NW_ACTION_GIVE_UP] = NULL, /* handled by the walk */
};

/* Seconds to wait before the restart: backoff_initial * factor^(streak-1)
 * capped at backoff_max, and never sooner than min_start_interval after
 * the last start. */
static double nw__backoff(const nw_policy *p, const nw_recovery_history *h,
                          int streak, double now) {
  double b = p->limits.backoff_initial_seconds;
  for (int i = 1; i < streak && b < p->limits.backoff_max_seconds; i++)
    b *= p->limits.backoff_factor;
  b = fmin(b, p->limits.backoff_max_seconds);
  if (h->last_start >= 0) {
    double soonest = h->last_start + p->limits.min_start_interval_seconds - now;
    b = fmax(b, soonest);
  }
  return b;
}

static int nw__recent(const nw_policy *p, const nw_recovery_history *h,
                      double now) {
  int n = 0;
  for (int i = 0; i < h->n_times; i++)
    if (now - h->times[i] < p->limits.window_seconds)
      n++;
  return n;
}

static void nw__give_up(nw_decision *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void nw__give_up(nw_decision *d, const char *fmt, ...) {
  d->give_up = 1;
  d->action = NW_ACTION_GIVE_UP;
  d->backoff_seconds = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->reason, sizeof d->reason, fmt, ap);
  va_end(ap);
  /* the summary keeps the exhausted links noted so far */
  nw_strbuf sb = nw_strbuf_at(d->summary, sizeof d->summary);
  nw_strbuf_printf(&sb, "%sgive up: %s", d->summary[0] ? "; " : "", d->reason);
}

/* Records a recovery of cause at now in h; returns the wait before the
 * restart. */
static double nw__record(const nw_policy *p, nw_recovery_history *h,
                         nw_cause cause, double now) {
  if (h->streak < 1 << 20)
    h->streak++;
  double backoff = nw__backoff(p, h, h->streak, now);
  h->attempts[cause]++;
  h->times[h->head] = now;
  h->head = (h->head + 1) % NW_POLICY_MAX_RECOVERIES;
  if (h->n_times < NW_POLICY_MAX_RECOVERIES)
    h->n_times++;
  h->total++;
  return backoff;
}

/* Walks the cause's chain: the first link that changes something is taken;
 * the exhausted ones before it are noted in the summary. */
static int nw__walk(const nw_policy *p, nw_cause cause,
                    const nw_config *current, nw_recovery_history *h,
                    double now, nw_decision *out) {
  const nw_policy_chain *ch = &p->chain[cause];
  char notes[384];
  nw_strbuf nb = nw_strbuf_init(notes, sizeof notes);
  for (int i = 0; i < ch->n_actions; i++) {
    nw_action a = ch->actions[i];
    if ((int)a < 0 || a >= NW_ACTION_COUNT)
      return NW_EINTERNAL;
    if (a == NW_ACTION_GIVE_UP) {
      snprintf(out->summary, sizeof out->summary, "%s", notes);
      out->link = i;
      nw__give_up(out, "the %s chain reached give-up", nw_cause_name(cause));
      return 0;
    }
    char why[160] = "";
    int rc = nw__actions[a](p, ch, current, out, why, sizeof why);
    if (rc < 0)
      return rc;
    if (rc == 0) {
      nw_strbuf_printf(&nb, "%s%s exhausted (%s)", notes[0] ? "; " : "",
                       nw_action_name(a), why);
      /* an exhausted action leaves nothing behind */
      memcpy(&out->after, current, sizeof out->after);
      out->trim_after_eval = 0;
      continue;
    }
    out->action = a;
    out->link = i;
    if (notes[0]) {
      nw_strbuf sb = nw_strbuf_at(out->summary, sizeof out->summary);
      nw_strbuf_printf(&sb, "; %s", notes);
    }
    out->backoff_seconds = nw__record(p, h, cause, now);
    return 0;
  }
  snprintf(out->summary, sizeof out->summary, "%s", notes);
  nw__give_up(out, "every action of the %s chain is exhausted",
              nw_cause_name(cause));
  return 0;
}

int nw_policy_decide(const nw_policy *p, nw_cause cause,
                     const nw_config *current, nw_recovery_history *h,
                     double now, nw_decision *out) {
  if (!p || !current || !h || !out || (int)cause < 0 || cause >= NW_CAUSE_COUNT)
    return NW_EINTERNAL;
  const nw_policy_chain *ch = &p->chain[cause];
  if (ch->n_actions < 1 || ch->n_actions > NW_POLICY_MAX_CHAIN)
    return NW_EINTERNAL;

  memset(out, 0, sizeof *out);
  out->cause = cause;
  out->link = -1;
  memcpy(&out->after, current, sizeof out->after);
  out->give_up_mode = p->limits.give_up;
  out->grace_seconds = p->duplicate.grace_seconds;
  out->foreign = p->duplicate.foreign;

  /* A trainer that ran for backoff_reset_seconds before this failure was
   * healthy: the backoff and the consecutive counts start again. The
   * settings are not restored, so a chain goes on from where they are. */
  if (h->last_start >= 0 &&
      now - h->last_start >= p->limits.backoff_reset_seconds) {
    h->streak = 0;
    memset(h->attempts, 0, sizeof h->attempts);
  }
  for (int c = 0; c < NW_CAUSE_COUNT; c++)
    if (c != (int)cause)
      h->attempts[c] = 0;
  out->attempt = h->attempts[cause] + 1;

  int recent = nw__recent(p, h, now);
  if (recent >= p->limits.max_recoveries) {
    nw__give_up(out,
                "%d recoveries within %g s (limits.max_recoveries = %d, "
                "limits.window_seconds = %g)",
                recent, p->limits.window_seconds, p->limits.max_recoveries,
                p->limits.window_seconds);
    return 0;
  }
  return nw__walk(p, cause, current, h, now, out);
}
