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

#include "backend.h"
#include "config.h"
#include "mem.h"

#define NW_MAX_TENSOR_DIMS 2

/* One parameter tensor inside the flat parameter arena. Names follow the
 * PyTorch state_dict keys of GPT-2 (transformer.h.0.attn.c_attn.weight). */
typedef struct {
  char name[64];
  size_t offset; /* in floats, into nw_model_params() */
  size_t numel;
  int ndim;
  int shape[NW_MAX_TENSOR_DIMS];
} nw_tensor_info;

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

/* What a call allocates, for nw_model_call_bytes. */
typedef enum {
  NW_CALL_EVAL = 0,          /* nw_model_forward_loss */
  NW_CALL_TRAIN = 1,         /* nw_model_forward_backward, all of it */
  NW_CALL_TRAIN_FORWARD = 2, /* ... only the blocks allocated before the
                                backward's own */
} nw_call_kind;

/* Bytes by category that one call allocates for (B, T) — exactly, block
 * rounding included. The memory estimator is built on it. */
void nw_model_call_bytes(const nw_model_config *c, int B, int T,
                         nw_call_kind kind, uint64_t bytes[NW_MEM_NCAT]);
/* Bytes by category of one decode step over a cache of B rows. */
void nw_model_decode_bytes(const nw_model_config *c, int B,
                           uint64_t bytes[NW_MEM_NCAT]);
/* Parameters of a model of this shape (num_params without building it). */
size_t nw_model_param_count(const nw_model_config *c);
/* kv-cache bytes of nw_model_kv_alloc(B, T_max), block rounding included. */
uint64_t nw_model_kv_bytes_for(const nw_model_config *c, int B, int T_max);

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
