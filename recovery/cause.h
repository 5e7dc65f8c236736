/* cause.h — why a trainer died: the causes the classifier names and the
 * policy engine maps to actions (docs/policies.md).
 * defines: nw_cause, NW_CAUSE_DEFINED, nw_cause_name, nw_cause_parse
 *
 * The one definition of nw_cause: recovery/classify.h and recovery/policy.h
 * both include this header. */
#ifndef NW_CAUSE_H
#define NW_CAUSE_H

typedef enum {
  NW_CAUSE_UNKNOWN,    /* "unknown": no report, e.g. killed by the kernel */
  NW_CAUSE_EVAL_CACHE, /* "eval-cache": eval phase or eval leftovers */
  NW_CAUSE_DUPLICATE,  /* "duplicate-process": another process holds it */
  NW_CAUSE_ACTIVATION, /* "activation": even typical lengths do not fit */
  NW_CAUSE_SEQUENCE_LENGTH, /* "sequence-length": fits at the median length */
  NW_CAUSE_COUNT
} nw_cause;
#define NW_CAUSE_DEFINED 1

/* The name used in policy files, the ledger and alerts ("eval-cache", ...);
 * "invalid" for a value out of range. */
const char *nw_cause_name(nw_cause c);

/* The cause named name (exact, case-sensitive). Returns 0, or NW_ENOTFOUND
 * with *out untouched. */
int nw_cause_parse(const char *name, nw_cause *out);

#endif
