/* model.c — GPT-2 parameters: the tensor table, the parameter and gradient
 * arenas, seeded initialisation, and the kv-cache.
 * Forward and backward live in model_train.c, generation in model_decode.c.
 */
#include "trainer/model/model.h"

#include <math.h>   // defines: sqrt, log, cos
#include <stdio.h>  // defines: snprintf
#include <stdlib.h> // defines: calloc, malloc, free

#include "base/error.h"                   // defines: NW_E*
#include "trainer/model/model_internal.h" // defines: struct nw_model, NW_LP_*, NW_T_*

/* ---------------------------------------------------------------- rng */

/* splitmix64: a tiny generator whose whole state is one word, so the
 * initialisation is a pure function of the seed on every platform. */
typedef struct {
  uint64_t s;
  int have_spare; /* Box-Muller makes normals in pairs */
  double spare;
} nw_rng;

static uint64_t nw_rng_u64(nw_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* uniform in (0, 1]: never 0, so log() below is finite */
static double nw_rng_uniform(nw_rng *r) {
  return ((nw_rng_u64(r) >> 11) + 1) * (1.0 / 9007199254740992.0);
}

static double nw_rng_normal(nw_rng *r) {
  if (r->have_spare) {
    r->have_spare = 0;
    return r->spare;
  }
  double u1 = nw_rng_uniform(r), u2 = nw_rng_uniform(r);
  double rad = sqrt(-2.0 * log(u1));
  double th = 6.283185307179586 * u2;
  r->spare = rad * sin(th);
  r->have_spare = 1;
  return rad * cos(th);
}

/* ------------------------------------------------------- tensor table */

/* GPT-2 init: matrices normal(0, 0.02), the two residual projections of each
 * block scaled by 1/sqrt(2L) (they add into the residual stream L*2 times),
 * biases 0, LayerNorm weights 1. One generator stream in tensor order. */
static void nw_model_init_tensor(const nw_model *m, int idx, nw_rng *rng,
                                 float *host) {
  const nw_tensor_info *t = &m->tensors[idx];
  int slot = -1;
  if (idx >= 2 && idx < NW_T_LNFW(m->cfg.n_layer))
    slot = (idx - 2) % NW_LP_COUNT;
  int is_ln_weight = slot == NW_LP_LN1W || slot == NW_LP_LN2W ||
                     idx == NW_T_LNFW(m->cfg.n_layer);
  if (t->ndim == 2) {
    double std = 0.02;
    if (slot == NW_LP_ATTPROJW || slot == NW_LP_FCPROJW)
      std /= sqrt(2.0 * m->cfg.n_layer);
    for (size_t i = 0; i < t->numel; i++)
      host[i] = (float)(std * nw_rng_normal(rng));
  } else {
    for (size_t i = 0; i < t->numel; i++)
      host[i] = is_ln_weight ? 1.0f : 0.0f;
  }
}

/* -------------------------------------------------------------- model */

int nw_model_create(nw_model **out, const nw_model_config *shape,
                    const nw_backend *be, nw_mem *mem, uint64_t seed) {
  *out = NULL;
  if (shape->n_layer < 1 || shape->n_head < 1 || shape->n_embd < 1 ||
      shape->n_embd % shape->n_head != 0 || shape->vocab_size < 1 ||
      shape->max_seq_len < 1)
    return NW_ECONFIG;
  int rc = NW_EHOSTMEM;
  float *host = NULL;
  nw_model *m = calloc(1, sizeof *m);
  if (!m)
    return NW_EHOSTMEM;
  m->cfg = *shape;
  m->be = be;
  m->mem = mem;
  m->num_tensors = nw_model_tensor_count(shape);
  m->tensors = calloc((size_t)m->num_tensors, sizeof *m->tensors);
  if (!m->tensors)
    goto fail;
  m->num_params = nw_model_tensor_table(shape, m->tensors);

  size_t bytes = m->num_params * sizeof(float);
  rc = nw_mem_alloc(mem, NW_MEM_PARAMS, bytes, (void **)&m->params);
  if (rc < 0)
    goto fail;
  rc = nw_mem_alloc(mem, NW_MEM_GRADS, bytes, (void **)&m->grads);
  if (rc < 0)
    goto fail;

  size_t maxnumel = 0;
  for (int i = 0; i < m->num_tensors; i++)
    if (m->tensors[i].numel > maxnumel)
      maxnumel = m->tensors[i].numel;
  rc = NW_EHOSTMEM;
  host = malloc(maxnumel * sizeof(float));
  if (!host)
    goto fail;
  nw_rng rng = {.s = seed};
  for (int i = 0; i < m->num_tensors; i++) {
    nw_model_init_tensor(m, i, &rng, host);
    be->to_device(nw_model__tensor(m, m->params, i), host,
                  m->tensors[i].numel * sizeof(float));
  }
  free(host);
  host = NULL;
  be->memset0(m->grads, bytes);
  if ((rc = be->status()) < 0)
    goto fail;
  *out = m;
  return 0;
fail:
  free(host);
  nw_model_destroy(m);
  return rc;
}

void nw_model_destroy(nw_model *m) {
  if (!m)
    return;
  nw_model_kv_free(m);
  nw_mem_free(m->mem, m->grads);
  nw_mem_free(m->mem, m->params);
  free(m->tensors);
  free(m);
}

size_t nw_model_num_params(const nw_model *m) { return m->num_params; }
float *nw_model_params(nw_model *m) { return m->params; }
float *nw_model_grads(nw_model *m) { return m->grads; }
int nw_model_num_tensors(const nw_model *m) { return m->num_tensors; }

int nw_model_failed_in_backward(const nw_model *m) {
  return m->failed_in_backward;
}

const nw_tensor_info *nw_model_tensor(const nw_model *m, int i) {
  if (i < 0 || i >= m->num_tensors)
    return NULL;
  return &m->tensors[i];
}

void nw_model_zero_grad(nw_model *m) {
  m->be->memset0(m->grads, m->num_params * sizeof(float));
}

/* ----------------------------------------------------------- kv-cache */

int nw_model_kv_alloc(nw_model *m, int B, int T_max) {
  if (B < 1 || T_max < 1 || T_max > m->cfg.max_seq_len)
    return NW_ESHAPE;
  if (m->kv && m->kv_B == B && m->kv_T == T_max)
    return 0; /* every position is written before it is read */
  /* The new cache is allocated before the old one is freed so that a
   * failure leaves the model as it was (at the cost of both existing for a
   * moment when the shape changes). */
  size_t n = (size_t)m->cfg.n_layer * 2 * (size_t)B * (size_t)T_max *
             (size_t)m->cfg.n_embd;
  float *kv;
  int rc =
      nw_mem_alloc(m->mem, NW_MEM_KV_CACHE, n * sizeof(float), (void **)&kv);
  if (rc < 0)
    return rc;
  nw_model_kv_free(m);
  m->kv = kv;
  m->kv_B = B;
  m->kv_T = T_max;
  return 0;
}

void nw_model_kv_free(nw_model *m) {
  nw_mem_free(m->mem, m->kv);
  m->kv = NULL;
  m->kv_B = 0;
  m->kv_T = 0;
}

size_t nw_model_kv_bytes(const nw_model *m) {
  if (!m->kv)
    return 0;
  return (size_t)m->cfg.n_layer * 2 * (size_t)m->kv_B * (size_t)m->kv_T *
         (size_t)m->cfg.n_embd * sizeof(float);
}
