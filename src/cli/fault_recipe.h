/* fault_recipe.h — device sizes that make each of the four causes arise
 * from settings a user could write, reasoned with the memory estimator on a
 * given model: `nightwatch demo` runs them, and the end-to-end tests run
 * them on smaller models and on several ranks.
 * defines: nw_recipe_activation, nw_recipe_sequence_length,
 *          nw_recipe_eval_cache, nw_recipe_duplicate,
 *          NW_RECIPE_EVAL_BATCH, NW_RECIPE_EVAL_EVERY
 *
 * cfg is the run's config with the data's long tail off (data.long_fraction
 * 0) and no evaluation; each recipe says which settings go with its size. */
#ifndef NW_FAULT_RECIPE_H
#define NW_FAULT_RECIPE_H

#include <stdint.h>

#include "base/config.h"

/* activation: with batch.micro=32, a device that holds micro-batch 8 at the
 * longest typical addition problem (10 tokens) but micro-batch 32 at no
 * length: the policy halves the micro-batch. */
uint64_t nw_recipe_activation(const nw_config *cfg);

/* sequence-length: with data.long_fraction=0.02 and
 * data.long_max_digits=48, a device on which micro-batch 8 fits at every
 * length up to 72 tokens (three quarters of 96, the policy's first cut) but
 * not padded to the model's longest: the policy shortens sequences. */
uint64_t nw_recipe_sequence_length(const nw_config *cfg);

/* eval-cache: with eval.batch=NW_RECIPE_EVAL_BATCH, eval.every (at least
 * NW_RECIPE_EVAL_EVERY) and eval.release_cache=false, training fits and so
 * does the first evaluation, training beside the kv-cache it keeps does not:
 * the policy frees the cache. */
#define NW_RECIPE_EVAL_BATCH 16
#define NW_RECIPE_EVAL_EVERY 5
uint64_t nw_recipe_eval_cache(const nw_config *cfg);

/* duplicate-process: a device on which one trainer (micro-batch 8) fits,
 * and a second one's parameters beside it but not its gradients: a stale
 * trainer of the same run id makes the new one fail at init. *one_total
 * (may be NULL) receives what one training trainer holds, to tell when a
 * stale one has taken its memory. */
uint64_t nw_recipe_duplicate(const nw_config *cfg, uint64_t *one_total);

#endif
