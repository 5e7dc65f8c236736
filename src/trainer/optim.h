/* optim.h — AdamW with decoupled weight decay, global-norm clipping and a
 * warmup + cosine learning-rate schedule.
 * defines: nw_optim, nw_optim_create, nw_optim_step, nw_optim_lr
 *
 * The moments live in the memory domain (category optimizer) and, as in
 * PyTorch, are allocated at the first step, not at creation: the first
 * optimizer step is where a model that fits for forward and backward can
 * still run out of memory. Weight decay
 * applies to matrices (2-D tensors), not to biases and LayerNorm gains, as in
 * GPT-2 training. */
#ifndef NW_OPTIM_H
#define NW_OPTIM_H

#include "base/config.h"
#include "device/mem.h"
#include "trainer/model/model.h"

typedef struct nw_optim nw_optim;

int nw_optim_create(nw_optim **out, nw_model *model, const nw_backend *be,
                    nw_mem *mem);
void nw_optim_destroy(nw_optim *o);

/* Allocates the zeroed moments if they are not yet (NW_ENOMEM possible);
 * called by the first step and by a checkpoint load. */
int nw_optim_alloc_state(nw_optim *o);
float *nw_optim_exp_avg(nw_optim *o);    /* (num_params) or NULL before */
float *nw_optim_exp_avg_sq(nw_optim *o); /* (num_params) or NULL before */

/* Learning rate for the step with 0-based index `step`: linear warmup over
 * warmup_steps, then cosine decay from lr to min_lr at `steps`. */
double nw_optim_lr(const nw_train_config *tc, int step);

/* Applies one update for 0-based step index `step` using the model's
 * gradients; *grad_norm receives the global norm before clipping. */
int nw_optim_step(nw_optim *o, const nw_train_config *tc, int step,
                  double *grad_norm);

#endif
