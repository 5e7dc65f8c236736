/* estimate.h — the analytic memory model: bytes per category for a model,
 * micro-batch, padded sequence length and evaluation settings.
 * defines: nw_estimate, nw_estimate_train, nw_estimate_eval,
 *          nw_estimate_static, nw_estimate_kept_kv, nw_estimate_print,
 *          nw_estimate_check_capacity
 *
 * Built on the model's own size functions (model.h), so it predicts what the
 * memory domain will hold block for block; the supervisor uses it to choose
 * new settings, and `nightwatch-train --estimate` prints it. */
#ifndef NW_ESTIMATE_H
#define NW_ESTIMATE_H

#include <stdint.h>
#include <stdio.h>

#include "base/config.h"
#include "device/mem.h"

typedef struct {
  uint64_t bytes[NW_MEM_NCAT]; /* peak per category */
  uint64_t total;              /* peak of the sum (phases do not overlap) */
} nw_estimate;

/* Parameters, gradients and AdamW moments: held from the first step on. */
void nw_estimate_static(const nw_config *cfg, nw_estimate *e);

/* kv-cache bytes an evaluation leaves held through training: 0 when
 * eval.release_cache or no generation. */
uint64_t nw_estimate_kept_kv(const nw_config *cfg);

/* Peak of one training step with micro-batches of B sequences padded to T,
 * with kv_held bytes of kv-cache held through it. */
void nw_estimate_train(const nw_config *cfg, int B, int T, uint64_t kv_held,
                       nw_estimate *e);

/* Peak of one evaluation: the validation forward at eval.batch x T, then
 * generation with the kv-cache (eval.batch, max_seq_len). */
void nw_estimate_eval(const nw_config *cfg, int T, nw_estimate *e);

/* The table for `--estimate`: per category, a training step at the
 * configured micro-batch and max_seq_len, with and without a kept kv-cache,
 * and an evaluation; then the device capacity and whether each fits. */
void nw_estimate_print(FILE *f, const nw_config *cfg);

/* NW_ECONFIG with the numbers in err when device.memory cannot hold even
 * the parameters, gradients and optimizer state. */
int nw_estimate_check_capacity(const nw_config *cfg, char *err, size_t errlen);

#endif
