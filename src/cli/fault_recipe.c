/* fault_recipe.c — see fault_recipe.h; every size is the midpoint between
 * what must fit and what must not, so that neither side is a near miss. */
#include "cli/fault_recipe.h"

#include "model/estimate.h"

uint64_t nw_recipe_activation(const nw_config *cfg) {
  nw_estimate fits, big;
  nw_estimate_train(cfg, 8, 10, 0, &fits);
  nw_estimate_train(cfg, 32, 5, 0, &big); /* the shortest possible batch */
  return (fits.total + big.total) / 2;
}

uint64_t nw_recipe_sequence_length(const nw_config *cfg) {
  nw_estimate typical, longest;
  nw_estimate_train(cfg, 8, 72, 0, &typical);
  nw_estimate_train(cfg, 8, cfg->model.max_seq_len, 0, &longest);
  return (typical.total + longest.total) / 2;
}

uint64_t nw_recipe_eval_cache(const nw_config *cfg) {
  nw_config ec = *cfg;
  ec.eval.batch = NW_RECIPE_EVAL_BATCH;
  ec.eval.every = NW_RECIPE_EVAL_EVERY;
  uint64_t kv = nw_estimate_kept_kv(&ec);
  nw_estimate train, with_kv, first_eval;
  nw_estimate_train(&ec, 8, 8, 0, &train);
  nw_estimate_train(&ec, 8, 5, kv, &with_kv);
  nw_config released = ec;
  released.eval.release_cache = 1;
  nw_estimate_eval(&released, 8, &first_eval);
  uint64_t need =
      train.total > first_eval.total ? train.total : first_eval.total;
  return (need + with_kv.total) / 2;
}

uint64_t nw_recipe_duplicate(const nw_config *cfg, uint64_t *one_total) {
  nw_estimate one, st;
  nw_estimate_train(cfg, 8, 8, 0, &one);
  nw_estimate_static(cfg, &st);
  if (one_total)
    *one_total = one.total;
  return one.total + st.bytes[NW_MEM_PARAMS] + st.bytes[NW_MEM_GRADS] / 2;
}
