/* policy_internal.h — what the policy files share between them: the key
 * table, the sections, small helpers. Not part of the API.
 * defines: nw__pkey, nw__pkeys, NW__NKEYS, NW__SEC_*, nw__sec_name,
 *          nw__sec_find, nw__sec_order, nw__key_find, nw__key_ptr,
 *          nw__chain_has, nw__action_terminal */
#ifndef NW_POLICY_INTERNAL_H
#define NW_POLICY_INTERNAL_H

#include <stddef.h>

#include "recovery/policy.h"

/* Sections: one per cause (by nw_cause) and [limits]. */
#define NW__SEC_LIMITS NW_CAUSE_COUNT
#define NW__NSEC (NW_CAUSE_COUNT + 1)

/* Files and dumps list the sections in this order. */
extern const int nw__sec_order[NW__NSEC];
const char *nw__sec_name(int s);
int nw__sec_find(const char *name); /* -1: unknown */

typedef enum {
  NW__PK_CHAIN,
  NW__PK_DBL,
  NW__PK_INT,
  NW__PK_FOREIGN,
  NW__PK_GIVE_UP,
} nw__pk_type;

#define NW__MIN_OPEN 1 /* the minimum itself is out of range */
#define NW__MAX_OPEN 2

typedef struct {
  const char *name;
  unsigned sections; /* bit s: allowed in section s */
  nw__pk_type type;
  int in_chain;  /* offset is into the section's nw_policy_chain */
  size_t offset; /* else into nw_policy */
  double min, max;
  int open; /* NW__MIN_OPEN | NW__MAX_OPEN */
} nw__pkey;

extern const nw__pkey nw__pkeys[];
extern const int nw__nkeys;
#define NW__NKEYS nw__nkeys
#define NW__MAX_KEYS 24 /* at least NW__NKEYS, for arrays */
enum { NW__K_ACTIONS = 0, NW__K_FACTOR = 1, NW__K_FLOOR = 2 };

int nw__key_find(const char *name); /* index into nw__pkeys, or -1 */
void *nw__key_ptr(nw_policy *p, int sec, const nw__pkey *k);
int nw__chain_has(const nw_policy_chain *c, nw_action a);
/* restart, kill-duplicate, give-up: never exhausted, so nothing may follow */
int nw__action_terminal(nw_action a);

#endif
