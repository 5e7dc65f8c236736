/* policy.h — recovery policies: what to do when a cause recurs.
 * defines: nw_action, nw_foreign, nw_give_up, nw_policy_chain, nw_policy,
 *          nw_recovery_history, nw_decision, nw_policy_defaults,
 *          nw_policy_load, nw_policy_load_cb, nw_policy_parse_string,
 *          nw_policy_parse_buffer, nw_policy_keytable, nw_policy_equal,
 * nw_policy_dump, nw_policy_chain_summary, nw_policy_limits_summary,
 * nw_action_name, nw_action_parse, nw_foreign_name, nw_give_up_name,
 *          nw_recovery_history_init, nw_recovery_history_started,
 *          nw_policy_decide
 *
 * A policy is parsed from an INI file (docs/policies.md) into a new struct
 * by the key-table engine (base/keytable.h); a file with any error is
 * refused whole, every error listed as FILE:LINE.
 * nw_policy_decide is pure: (policy, cause, settings in force, history, now)
 * -> action and settings after. It does no I/O; the supervisor carries out
 * the decision. The effective batch never changes. */
#ifndef NW_POLICY_H
#define NW_POLICY_H

#include <stddef.h>

#include "base/config.h"
#include "base/ini.h"
#include "base/keytable.h"
#include "recovery/cause.h"

typedef enum {
  NW_ACTION_FREE_CACHE,        /* eval.release_cache on, trim after eval */
  NW_ACTION_HALVE_EVAL_BATCH,  /* eval.batch -> ceil(eval.batch / 2) */
  NW_ACTION_KILL_DUPLICATE,    /* SIGTERM, grace, SIGKILL provable duplicates */
  NW_ACTION_HALVE_MICRO_BATCH, /* micro -> largest divisor <= micro / 2 */
  NW_ACTION_SHORTEN_SEQUENCES, /* data.max_len -> max(floor, len * factor) */
  NW_ACTION_RESTART,           /* same settings, from the last checkpoint */
  NW_ACTION_GIVE_UP,           /* stop recovering */
  NW_ACTION_COUNT
} nw_action;

/* What kill-duplicate does with processes on the device that are not
 * provably duplicates (another user, or another run id). */
typedef enum {
  NW_FOREIGN_WAIT,           /* never kill: wait with backoff and alert */
  NW_FOREIGN_KILL_SAME_USER, /* kill those of our own user; wait for others */
} nw_foreign;

typedef enum {
  NW_GIVE_UP_EXIT, /* ledger entry, alert, non-zero exit for systemd */
} nw_give_up;

/* Distinct actions per chain: a chain may not repeat one. */
#define NW_POLICY_MAX_CHAIN NW_ACTION_COUNT
/* Upper bound of limits.max_recoveries (the history keeps that many times). */
#define NW_POLICY_MAX_RECOVERIES 256

typedef struct {
  nw_action
      actions[NW_POLICY_MAX_CHAIN]; /* tried in order, n_actions of them */
  int n_actions;                    /* >= 1 */
  double factor; /* shorten-sequences: length times this, in (0, 1) */
  int floor;     /* shorten-sequences: never below this many positions */
} nw_policy_chain;

typedef struct {
  nw_policy_chain chain[NW_CAUSE_COUNT]; /* one per cause, by nw_cause */
  struct {
    double grace_seconds;        /* SIGTERM -> SIGKILL */
    nw_foreign foreign;          /* processes that are not duplicates */
    double wait_initial_seconds; /* first wait for foreign processes */
    double wait_max_seconds;     /* the wait grows by backoff_factor to this */
  } duplicate;
  struct {
    int max_recoveries;                /* at most this many per window */
    double window_seconds;             /* sliding window for max_recoveries */
    double backoff_initial_seconds;    /* wait before the first restart */
    double backoff_max_seconds;        /* the wait never exceeds this */
    double backoff_factor;             /* growth per consecutive recovery */
    double min_start_interval_seconds; /* between two trainer starts */
    double backoff_reset_seconds;      /* a run this long resets the backoff */
    nw_give_up give_up;                /* what giving up means */
  } limits;
} nw_policy;

/* The embedded default: identical to policies/default.conf. */
void nw_policy_defaults(nw_policy *p);

/* Parses the policy file at path into *out. Keys and sections the file
 * leaves out keep their default values. Every error (syntax, unknown
 * section/key/action, bad number, out of range, empty or inconsistent
 * chain, duplicate key) goes to on_error (may be NULL) as (path, line,
 * reason) and into err as "PATH:LINE: reason" lines, like nw_ini_parse.
 * Returns 0 with *out filled, or NW_ECONFIG (errors in the file), NW_EIO /
 * NW_ENOTFOUND (unreadable, line 0) or NW_EHOSTMEM; *out is then untouched:
 * a policy is never half-applied. */
int nw_policy_load(const char *path, nw_policy *out, char *err, size_t errlen);
int nw_policy_load_cb(const char *path, nw_policy *out,
                      nw_ini_error_sink on_error, void *user, char *err,
                      size_t errlen);

/* The same for text in memory, named name in messages: NUL-terminated, or
 * len bytes (a fuzzer's input as it comes). */
int nw_policy_parse_string(const char *name, const char *text, nw_policy *out,
                           nw_ini_error_sink on_error, void *user, char *err,
                           size_t errlen);
int nw_policy_parse_buffer(const char *name, const char *text, size_t len,
                           nw_policy *out, nw_ini_error_sink on_error,
                           void *user, char *err, size_t errlen);

/* The table of keys (base/keytable.h): for docs and their tests. */
const nw_keytable *nw_policy_keytable(void);

/* 1 when a and b mean the same policy, else 0. */
int nw_policy_equal(const nw_policy *a, const nw_policy *b);

/* Writes p as a complete policy file that parses back to p. Returns the
 * length of the text, which is longer than buflen - 1 when buf was too
 * small (then truncated). */
size_t nw_policy_dump(const nw_policy *p, char *buf, size_t buflen);

/* One line for people, e.g. "halve-micro-batch -> shorten-sequences (x0.75,
 * floor 32) -> give up". */
void nw_policy_chain_summary(const nw_policy *p, nw_cause c, char *buf,
                             size_t len);
void nw_policy_limits_summary(const nw_policy *p, char *buf, size_t len);

/* "free-cache", ...; "invalid" out of range. */
const char *nw_action_name(nw_action a);
/* "wait", "kill-same-user"; "exit". "invalid" out of range. */
const char *nw_foreign_name(nw_foreign f);
const char *nw_give_up_name(nw_give_up g);
/* 0, or NW_ENOTFOUND with *out untouched. */
int nw_action_parse(const char *name, nw_action *out);

/* What the decisions so far were. The supervisor keeps one per run, starts
 * it with nw_recovery_history_init, tells it when the trainer starts, and
 * hands it to every nw_policy_decide, which updates it. */
typedef struct {
  int attempts[NW_CAUSE_COUNT]; /* consecutive recoveries of this cause */
  int streak;        /* consecutive recoveries of any cause: backoff exponent */
  double last_start; /* when the trainer last started; < 0: not yet */
  double times[NW_POLICY_MAX_RECOVERIES]; /* recent recoveries, a ring */
  int n_times;                            /* valid entries of times */
  int head;                               /* next slot of the ring */
  int total;                              /* recoveries since init */
} nw_recovery_history;

void nw_recovery_history_init(nw_recovery_history *h);
/* The trainer was (re)started at now. */
void nw_recovery_history_started(nw_recovery_history *h, double now);

typedef struct {
  nw_cause cause;
  nw_action action;    /* NW_ACTION_GIVE_UP when give_up */
  int link;            /* index of the action in the cause's chain; -1: none */
  int attempt;         /* 1 for the first of consecutive recoveries of cause */
  nw_config after;     /* settings for the restart; == current unless changed */
  int trim_after_eval; /* free-cache: trim the allocator cache after eval */
  double backoff_seconds; /* wait this long before restarting */
  int give_up;            /* 1: stop recovering, see reason */
  nw_give_up give_up_mode;
  /* kill-duplicate */
  double grace_seconds;        /* SIGTERM, this long, SIGKILL */
  nw_foreign foreign;          /* handling of processes not provably ours */
  double foreign_wait_seconds; /* wait this long for foreign ones, alert */
  char summary[512]; /* "micro-batch 8 -> 4, accumulation 4 -> 8, ..." */
  char reason[512];  /* why give_up; "" otherwise */
} nw_decision;

/* Decides the recovery from a failure of cause at time now (seconds, any
 * monotonic origin) with the settings current. Walks the cause's chain from
 * its first link and takes the first action that changes the settings
 * (restart and kill-duplicate always apply); an action that would leave the
 * settings as they are is exhausted and escalates to the next link. Gives
 * up when every link is exhausted, at a give-up link, or when
 * limits.max_recoveries recoveries happened within limits.window_seconds.
 * Updates h (a recovery is recorded unless the decision is to give up).
 * Returns 0, NW_ECONFIG when current's batch is inconsistent (effective not
 * a multiple of micro * world), or NW_EINTERNAL for a bad argument. */
int nw_policy_decide(const nw_policy *p, nw_cause cause,
                     const nw_config *current, nw_recovery_history *h,
                     double now, nw_decision *out);

#endif
