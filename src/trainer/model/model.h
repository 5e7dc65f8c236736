/* model.h — a GPT-2-style decoder-only transformer LM.
 * defines: nw_model, nw_model_create, nw_model_forward_backward,
 *          nw_model_forward_loss, nw_model_kv_*, nw_model_decode_step
 *
 * Token and position embeddings, pre-LayerNorm blocks with causal multi-head
 * attention and a GELU MLP, a final LayerNorm, and an LM head tied to the
 * token embedding. Parameters, gradients and activations live in the memory
 * domain (mem.h) under their categories; the arithmetic runs on a backend
 * (backend.h). Every function that allocates can fail with NW_ENOMEM and
 * then leaves the model as it was before the call (activations freed,
 * parameters and gradients untouched by the failed call). */
#ifndef NW_MODEL_H
#define NW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "device/backend.h"
#include "device/mem.h"
#include "model/size.h" // defines: nw_tensor_info, nw_model_call_bytes ...

typedef struct nw_model nw_model;

/* Allocates parameters (initialised from seed as GPT-2 does: normal(0,0.02),
 * residual projections scaled by 1/sqrt(2*n_layer), LayerNorm weight 1 bias
 * 0) and zeroed gradients. */
int nw_model_create(nw_model **out, const nw_model_config *shape,
                    const nw_backend *be, nw_mem *mem, uint64_t seed);
void nw_model_destroy(nw_model *m);

size_t nw_model_num_params(const nw_model *m);
float *nw_model_params(nw_model *m); /* (num_params) device memory */
float *nw_model_grads(nw_model *m);  /* (num_params) device memory */
int nw_model_num_tensors(const nw_model *m);
const nw_tensor_info *nw_model_tensor(const nw_model *m, int i);
void nw_model_zero_grad(nw_model *m);

/* One micro-batch: inputs and targets are (B, T) host arrays, targets -1
 * where no loss is taken (padding). Adds loss_scale * dloss/dparam into the
 * gradients (the caller passes 1 / target tokens of the whole effective
 * batch). *loss_sum receives the summed cross-entropy over counted targets. */
int nw_model_forward_backward(nw_model *m, const int *inputs,
                              const int *targets, int B, int T,
                              float loss_scale, double *loss_sum);

/* After NW_ENOMEM from nw_model_forward_backward: 1 when the refused
 * allocation was one the backward pass needs (the forward's all fit). */
int nw_model_failed_in_backward(const nw_model *m);

/* Forward only (evaluation): the summed loss over counted targets. */
int nw_model_forward_loss(nw_model *m, const int *inputs, const int *targets,
                          int B, int T, double *loss_sum);

/* Key/value cache for generation: (n_layer, 2, B, n_head, T_max, head_dim)
 * floats in the kv-cache category. */
int nw_model_kv_alloc(nw_model *m, int B, int T_max);
void nw_model_kv_free(nw_model *m);
size_t nw_model_kv_bytes(const nw_model *m); /* 0 when not allocated */

/* Feeds tokens (B) at position pos (same for every row, 0 <= pos < T_max of
 * the cache) and writes the greedy next token of each row into next (B). */
int nw_model_decode_step(nw_model *m, const int *tokens, int pos, int *next);

#endif
