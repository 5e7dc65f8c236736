/* size.c — the model's tensor table and the bytes of each call, as pure
 * functions of the shape. model_train.c and model_decode.c carve their
 * blocks with the same functions, so these numbers are what they allocate. */
#include "model/size.h"

#include <stdio.h>

#include "device/mem.h" // defines: nw_mem_block_bytes

/* One transformer block's tensors, in the order of NW_LP_*. */
static const struct {
  const char *suffix;
  int d0_mult; /* rows in units of C */
  int d1_mult; /* columns in units of C, 0 for vectors */
} nw_size_slots[NW_LP_COUNT] = {
    {"ln_1.weight", 1, 0},        {"ln_1.bias", 1, 0},
    {"attn.c_attn.weight", 3, 1}, {"attn.c_attn.bias", 3, 0},
    {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0},
    {"ln_2.weight", 1, 0},        {"ln_2.bias", 1, 0},
    {"mlp.c_fc.weight", 4, 1},    {"mlp.c_fc.bias", 4, 0},
    {"mlp.c_proj.weight", 1, 4},  {"mlp.c_proj.bias", 1, 0},
};

int nw_model_shape_ok(const nw_model_config *s) {
  return s->n_layer >= 1 && s->n_layer <= 10000 && s->n_head >= 1 &&
         s->n_embd >= 1 && s->n_embd <= 65536 && s->n_embd % s->n_head == 0 &&
         s->vocab_size >= 1 && s->vocab_size <= 16 * 1024 * 1024 &&
         s->max_seq_len >= 1 && s->max_seq_len <= 16 * 1024 * 1024;
}

int nw_model_tensor_count(const nw_model_config *c) {
  return 4 + c->n_layer * NW_LP_COUNT;
}

static void nw_size_set(nw_tensor_info *t, const char *name, int d0, int d1) {
  snprintf(t->name, sizeof t->name, "%s", name);
  t->ndim = d1 > 0 ? 2 : 1;
  t->shape[0] = d0;
  t->shape[1] = d1 > 0 ? d1 : 0;
  t->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
}

/* Tensor i without its offset. */
static void nw_size_tensor(const nw_model_config *c, int i, nw_tensor_info *t) {
  int C = c->n_embd, L = c->n_layer;
  char name[64];
  if (i == NW_T_WTE) {
    nw_size_set(t, "transformer.wte.weight", c->vocab_size, C);
  } else if (i == NW_T_WPE) {
    nw_size_set(t, "transformer.wpe.weight", c->max_seq_len, C);
  } else if (i < NW_T_LNFW(L)) {
    int l = (i - 2) / NW_LP_COUNT, s = (i - 2) % NW_LP_COUNT;
    snprintf(name, sizeof name, "transformer.h.%d.%s", l,
             nw_size_slots[s].suffix);
    nw_size_set(t, name, nw_size_slots[s].d0_mult * C,
                nw_size_slots[s].d1_mult * C);
  } else if (i == NW_T_LNFW(L)) {
    nw_size_set(t, "transformer.ln_f.weight", C, 0);
  } else {
    nw_size_set(t, "transformer.ln_f.bias", C, 0);
  }
}

void nw_model_tensor_at(const nw_model_config *c, int i, nw_tensor_info *t) {
  size_t off = 0;
  for (int k = 0; k < i; k++) { /* the tensors before: a few dozen per layer */
    nw_size_tensor(c, k, t);
    off += t->numel;
  }
  nw_size_tensor(c, i, t);
  t->offset = off;
}

size_t nw_model_tensor_table(const nw_model_config *c, nw_tensor_info *out) {
  size_t off = 0;
  for (int i = 0; i < nw_model_tensor_count(c); i++) {
    nw_size_tensor(c, i, &out[i]);
    out[i].offset = off;
    off += out[i].numel;
  }
  return off;
}

/* wte, wpe, per block 12C^2 weights and 13C biases/gains, and ln_f. */
size_t nw_model_param_count(const nw_model_config *c) {
  size_t C = (size_t)c->n_embd, L = (size_t)c->n_layer;
  return (size_t)c->vocab_size * C + (size_t)c->max_seq_len * C +
         L * (12 * C * C + 13 * C) + 2 * C;
}

uint64_t nw_model_kv_bytes_for(const nw_model_config *c, int B, int T_max) {
  return nw_mem_block_bytes((size_t)c->n_layer * 2 * (size_t)B * (size_t)T_max *
                            (size_t)c->n_embd * sizeof(float));
}

/* model_train.c carves its block with these sizes (its nw_acts order). */
size_t nw_model_acts_saved_floats(const nw_model_config *c, int B, int T,
                                  int train, size_t sizes[NW_ACTS_SAVED]) {
  size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd;
  size_t N = (size_t)B * T, Ls = train ? L : 1;
  const size_t s[NW_ACTS_SAVED] = {
      N * C,      /* encoded */
      Ls * N * C, /* ln1 */
      Ls * N,     Ls * N, Ls * N * 3 * C, Ls * N * C,     Ls * N * C,
      Ls * N * C, Ls * N, Ls * N,         Ls * N * 4 * C, Ls * N * 4 * C,
      Ls * N * C, N * C,         /* lnf */
      N,          N,      N * C, /* proj */
  };
  size_t total = 0;
  for (int i = 0; i < NW_ACTS_SAVED; i++) {
    sizes[i] = s[i];
    total += (s[i] + 15) & ~(size_t)15; /* keep 64-byte alignment */
  }
  return total;
}

void nw_model_call_bytes(const nw_model_config *c, int B, int T,
                         nw_call_kind kind, uint64_t bytes[NW_MEM_NCAT]) {
  int train = kind != NW_CALL_EVAL;
  size_t sizes[NW_ACTS_SAVED];
  size_t N = (size_t)B * T, C = (size_t)c->n_embd, V = (size_t)c->vocab_size;
  size_t att = (size_t)c->n_head * N * (size_t)T;
  size_t Ls = train ? (size_t)c->n_layer : 1;
  for (int i = 0; i < NW_MEM_NCAT; i++)
    bytes[i] = 0;
  bytes[NW_MEM_ACTIVATIONS] =
      nw_mem_block_bytes(nw_model_acts_saved_floats(c, B, T, train, sizes) *
                         sizeof(float)) +
      nw_mem_block_bytes(N * V * sizeof(float));
  bytes[NW_MEM_ATTENTION] = nw_mem_block_bytes(Ls * att * sizeof(float));
  bytes[NW_MEM_WORKSPACE] = nw_mem_block_bytes(N * sizeof(float));
  bytes[NW_MEM_DATA] = nw_mem_block_bytes(2 * N * sizeof(int));
  if (kind == NW_CALL_TRAIN) {
    bytes[NW_MEM_ACTIVATIONS] +=
        nw_mem_block_bytes((N * C + 2 * N * 4 * C) * sizeof(float));
    bytes[NW_MEM_ATTENTION] += nw_mem_block_bytes(att * sizeof(float));
  }
}

/* Floats of the one scratch block of a decode step over B rows. */
size_t nw_model_decode_floats(const nw_model_config *c, int B) {
  size_t BC = (size_t)B * c->n_embd;
  return 7 * BC + 2 * 4 * BC + 2 * (size_t)B + (size_t)B * c->vocab_size;
}

void nw_model_decode_bytes(const nw_model_config *c, int B,
                           uint64_t bytes[NW_MEM_NCAT]) {
  for (int i = 0; i < NW_MEM_NCAT; i++)
    bytes[i] = 0;
  bytes[NW_MEM_ACTIVATIONS] =
      nw_mem_block_bytes(nw_model_decode_floats(c, B) * sizeof(float));
  bytes[NW_MEM_DATA] = nw_mem_block_bytes(2 * (size_t)B * sizeof(int));
}
