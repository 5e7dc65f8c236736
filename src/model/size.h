/* size.h — the model's shapes and sizes, without the model: its tensor
 * table (names, shapes, offsets in the parameter arena) and the bytes each
 * call allocates, per memory category. Below the trainer, the checkpoints
 * and the recovery, which all need them and none of which may carry the
 * model's arithmetic (the supervisor links this, never the backend).
 * defines: nw_tensor_info, NW_LP_*, NW_T_*, nw_call_kind,
 *          nw_model_tensor_count, nw_model_tensor_at, nw_model_tensor_table,
 *          nw_model_param_count, nw_model_kv_bytes_for, nw_model_call_bytes,
 *          nw_model_decode_bytes, nw_model_acts_saved_floats,
 *          nw_model_decode_floats, nw_model_shape_ok
 *
 * Parameter layout: one flat arena in state_dict order
 *   transformer.wte.weight (V,C), transformer.wpe.weight (maxT,C),
 *   per layer i: transformer.h.{i}.ln_1.weight (C) ... mlp.c_proj.bias (C),
 *   transformer.ln_f.weight (C), transformer.ln_f.bias (C).
 * Matrices are nn.Linear layout (out, in): y = x @ W^T + b. */
#ifndef NW_MODEL_SIZE_H
#define NW_MODEL_SIZE_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"           // defines: nw_model_config
#include "protocol/mem_category.h" // defines: NW_MEM_NCAT

#define NW_MAX_TENSOR_DIMS 2

/* One parameter tensor inside the flat parameter arena. Names follow the
 * PyTorch state_dict keys of GPT-2 (transformer.h.0.attn.c_attn.weight). */
typedef struct {
  char name[64];
  size_t offset; /* in floats, into the parameter arena */
  size_t numel;
  int ndim;
  int shape[NW_MAX_TENSOR_DIMS];
} nw_tensor_info;

/* Slots of one transformer block, in state_dict order. */
enum {
  NW_LP_LN1W,     /* ln_1.weight (C) */
  NW_LP_LN1B,     /* ln_1.bias (C) */
  NW_LP_QKVW,     /* attn.c_attn.weight (3C,C) */
  NW_LP_QKVB,     /* attn.c_attn.bias (3C) */
  NW_LP_ATTPROJW, /* attn.c_proj.weight (C,C) */
  NW_LP_ATTPROJB, /* attn.c_proj.bias (C) */
  NW_LP_LN2W,     /* ln_2.weight (C) */
  NW_LP_LN2B,     /* ln_2.bias (C) */
  NW_LP_FCW,      /* mlp.c_fc.weight (4C,C) */
  NW_LP_FCB,      /* mlp.c_fc.bias (4C) */
  NW_LP_FCPROJW,  /* mlp.c_proj.weight (C,4C) */
  NW_LP_FCPROJB,  /* mlp.c_proj.bias (C) */
  NW_LP_COUNT
};

/* Tensor indices outside the blocks. */
#define NW_T_WTE 0
#define NW_T_WPE 1
#define NW_T_LAYER(l, slot) (2 + (l)*NW_LP_COUNT + (slot))
#define NW_T_LNFW(L) (2 + (L)*NW_LP_COUNT)
#define NW_T_LNFB(L) (3 + (L)*NW_LP_COUNT)

/* 1 when the shape is one a model can have (bounds far beyond any model we
 * train, small enough that 4*C*C and V*C overflow neither an int nor a
 * size_t). */
int nw_model_shape_ok(const nw_model_config *c);

/* Tensors of a model of this shape. */
int nw_model_tensor_count(const nw_model_config *c);
/* Tensor i (0 <= i < count) with its offset in the arena. */
void nw_model_tensor_at(const nw_model_config *c, int i, nw_tensor_info *t);
/* All of them into out (count entries); returns the parameter count. */
size_t nw_model_tensor_table(const nw_model_config *c, nw_tensor_info *out);
/* Parameters of a model of this shape (the table's total, in closed form). */
size_t nw_model_param_count(const nw_model_config *c);

/* What a call allocates, for nw_model_call_bytes. */
typedef enum {
  NW_CALL_EVAL = 0,          /* nw_model_forward_loss */
  NW_CALL_TRAIN = 1,         /* nw_model_forward_backward, all of it */
  NW_CALL_TRAIN_FORWARD = 2, /* ... only the blocks allocated before the
                                backward's own */
} nw_call_kind;

/* Floats of each saved activation tensor of one call (B sequences of T), in
 * the order the trainer carves them (model_train.c's nw_acts); returns the
 * floats of the one block that holds them all (each tensor 64-byte
 * aligned). One function for the allocation and for nw_model_call_bytes, so
 * that the estimator can never disagree with what a call allocates. */
#define NW_ACTS_SAVED 17
size_t nw_model_acts_saved_floats(const nw_model_config *c, int B, int T,
                                  int train, size_t sizes[NW_ACTS_SAVED]);

/* Bytes by category that one call allocates for (B, T) — exactly, block
 * rounding included. The memory estimator is built on it. */
void nw_model_call_bytes(const nw_model_config *c, int B, int T,
                         nw_call_kind kind, uint64_t bytes[NW_MEM_NCAT]);

/* Floats of the one scratch block of a decode step over B rows. */
size_t nw_model_decode_floats(const nw_model_config *c, int B);
/* Bytes by category of one decode step over a cache of B rows. */
void nw_model_decode_bytes(const nw_model_config *c, int B,
                           uint64_t bytes[NW_MEM_NCAT]);
/* kv-cache bytes of a cache of B rows of T_max positions (n_layer, 2, B,
 * n_head, T_max, head_dim floats), block rounding included. */
uint64_t nw_model_kv_bytes_for(const nw_model_config *c, int B, int T_max);

#endif
