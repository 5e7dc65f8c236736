/* policy_internal.h — what the policy files share between them. Not part of
 * the API.
 * defines: nw__policy_table, nw__foreign_names, nw__give_up_names,
 *          nw__chain_has, nw__action_terminal */
#ifndef NW_POLICY_INTERNAL_H
#define NW_POLICY_INTERNAL_H

#include "base/keytable.h"
#include "recovery/policy.h"

/* The policy file's keys (policy_load.c): a section per cause, in the order
 * files and dumps list them, then [limits]. */
extern const nw_keytable nw__policy_table;

/* NULL-terminated, indexed by nw_foreign and nw_give_up (policy.c). */
extern const char *const nw__foreign_names[];
extern const char *const nw__give_up_names[];

int nw__chain_has(const nw_policy_chain *c, nw_action a);
/* restart, kill-duplicate, give-up: never exhausted, so nothing may follow */
int nw__action_terminal(nw_action a);

#endif
