/* optim.c — AdamW, clipping and the schedule. */
#include "trainer/optim.h"

#include <math.h>
#include <stdlib.h>

#include "base/error.h"

struct nw_optim {
  nw_model *model;
  const nw_backend *be;
  nw_mem *mem;
  float *m; /* (num_params) exp_avg */
  float *v; /* (num_params) exp_avg_sq */
};

int nw_optim_create(nw_optim **out, nw_model *model, const nw_backend *be,
                    nw_mem *mem) {
  *out = NULL;
  nw_optim *o = calloc(1, sizeof *o);
  if (!o)
    return NW_EHOSTMEM;
  o->model = model;
  o->be = be;
  o->mem = mem;
  *out = o;
  return 0;
}

int nw_optim_alloc_state(nw_optim *o) {
  if (o->m)
    return 0;
  size_t bytes = nw_model_num_params(o->model) * sizeof(float);
  float *m = NULL, *v = NULL;
  int rc = nw_mem_alloc(o->mem, NW_MEM_OPTIMIZER, bytes, (void **)&m);
  if (rc == 0)
    rc = nw_mem_alloc(o->mem, NW_MEM_OPTIMIZER, bytes, (void **)&v);
  if (rc < 0) {
    nw_mem_free(o->mem, m);
    return rc;
  }
  o->m = m; /* nw_mem_alloc zeroes: fresh moments */
  o->v = v;
  return 0;
}

void nw_optim_destroy(nw_optim *o) {
  if (!o)
    return;
  nw_mem_free(o->mem, o->m);
  nw_mem_free(o->mem, o->v);
  free(o);
}

float *nw_optim_exp_avg(nw_optim *o) { return o->m; }
float *nw_optim_exp_avg_sq(nw_optim *o) { return o->v; }

double nw_optim_lr(const nw_train_config *tc, int step) {
  if (step < tc->warmup_steps)
    return tc->lr * (step + 1) / tc->warmup_steps;
  if (step >= tc->steps)
    return tc->min_lr;
  double span = tc->steps - tc->warmup_steps;
  double frac = span > 0 ? (step - tc->warmup_steps) / span : 1.0;
  double coeff = 0.5 * (1.0 + cos(M_PI * frac)); /* 1 -> 0 */
  return tc->min_lr + coeff * (tc->lr - tc->min_lr);
}

int nw_optim_step(nw_optim *o, const nw_train_config *tc, int step,
                  double *grad_norm) {
  NW_TRY(nw_optim_alloc_state(o));
  const nw_backend *be = o->be;
  float *params = nw_model_params(o->model);
  float *grads = nw_model_grads(o->model);
  size_t n = nw_model_num_params(o->model);

  double norm = sqrt(be->sumsq(grads, n));
  NW_TRY(be->status()); /* a device fault before the parameters change */
  *grad_norm = norm;
  if (!isfinite(norm))
    return NW_ENUMERIC; /* never write NaN into the parameters */
  float gs = 1.0f;
  if (tc->grad_clip > 0 && norm > tc->grad_clip)
    gs = (float)(tc->grad_clip / norm);

  float lr = (float)nw_optim_lr(tc, step);
  int t = step + 1;
  float bc1 = (float)(1.0 - pow(tc->beta1, t));
  float bc2 = (float)(1.0 - pow(tc->beta2, t));
  int nt = nw_model_num_tensors(o->model);
  for (int i = 0; i < nt; i++) {
    const nw_tensor_info *ti = nw_model_tensor(o->model, i);
    float wd = ti->ndim == 2 ? (float)tc->weight_decay : 0.0f;
    be->adamw(params + ti->offset, grads + ti->offset, o->m + ti->offset,
              o->v + ti->offset, ti->numel, lr, (float)tc->beta1,
              (float)tc->beta2, (float)tc->eps, wd, bc1, bc2, gs);
  }
  return be->status();
}
