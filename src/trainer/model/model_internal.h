/* model_internal.h — what model.c, model_train.c and model_decode.c share,
 * and two helpers the tests use to compare decoding with a full forward.
 * defines: struct nw_model, NW_LP_* layer tensor slots, nw_model__tensor,
 *          nw_model__layer, nw_model__forward_logits, nw_model__decode_logits
 *
 * Parameter layout: one flat arena in state_dict order
 *   transformer.wte.weight (V,C), transformer.wpe.weight (maxT,C),
 *   per layer i: transformer.h.{i}.ln_1.weight (C) ... mlp.c_proj.bias (C),
 *   transformer.ln_f.weight (C), transformer.ln_f.bias (C).
 * Matrices are nn.Linear layout (out, in): y = x @ W^T + b. HF's GPT-2
 * checkpoints use Conv1D, which stores (in, out): transpose when loading. */
#ifndef NW_MODEL_INTERNAL_H
#define NW_MODEL_INTERNAL_H

#include "trainer/model/model.h"

struct nw_model {
  nw_model_config cfg;
  const nw_backend *be;
  nw_mem *mem;
  size_t num_params;
  float *params; /* (num_params) NW_MEM_PARAMS */
  float *grads;  /* (num_params) NW_MEM_GRADS */
  int num_tensors;
  nw_tensor_info *tensors; /* host array (num_tensors) */
  /* generation */
  float *kv; /* (L, 2, kv_B, NH, kv_T, hs) NW_MEM_KV_CACHE, or NULL */
  int kv_B, kv_T;
  int failed_in_backward; /* the last call's refused block was backward's */
};

/* Tensor idx inside an arena (params or grads). */
static inline float *nw_model__tensor(const nw_model *m, float *arena,
                                      int idx) {
  return arena + m->tensors[idx].offset;
}

static inline float *nw_model__layer(const nw_model *m, float *arena, int l,
                                     int slot) {
  return nw_model__tensor(m, arena, NW_T_LAYER(l, slot));
}

/* Full forward of inputs (B,T) (host); copies the logits (B,T,V) to the
 * host array `logits`. */
int nw_model__forward_logits(nw_model *m, const int *inputs, int B, int T,
                             float *logits);

/* nw_model_decode_step that also copies the logits (B,V) of this position
 * to the host array `logits` (may be NULL). */
int nw_model__decode_logits(nw_model *m, const int *tokens, int pos, int *next,
                            float *logits);

#endif
