/* model_decode.c — incremental forward for greedy generation with the
 * kv-cache: one position for every row of the cache per call.
 *
 * Per call (B = rows of the cache): ACTIVATIONS x, x2, ln, q, atty, proj,
 * lnf (B,C), fch, fch_gelu (B,4C), mean/rstd (B), logits (B,V); DATA token
 * ids and next tokens (B). All freed before returning. */
#include "base/error.h"                   // defines: NW_E*
#include "trainer/model/model_internal.h" // defines: struct nw_model, nw_model__layer

/* The activations of one call, pointed into one allocation; B = rows of
 * the cache. */
typedef struct {
  float *x;        /* (B,C) residual stream */
  float *x2;       /* (B,C) residual after attention */
  float *ln;       /* (B,C) */
  float *q;        /* (B,C) */
  float *atty;     /* (B,C) */
  float *proj;     /* (B,C) */
  float *lnf;      /* (B,C) */
  float *fch;      /* (B,4C) */
  float *fch_gelu; /* (B,4C) */
  float *mean;     /* (B) */
  float *rstd;     /* (B) */
  float *logits;   /* (B,V) */
} nw__decode_acts;

static void nw__decode_point(nw__decode_acts *a, float *buf, int B, int C) {
  size_t BC = (size_t)B * C;
  a->x = buf;
  a->x2 = a->x + BC;
  a->ln = a->x2 + BC;
  a->q = a->ln + BC;
  a->atty = a->q + BC;
  a->proj = a->atty + BC;
  a->lnf = a->proj + BC;
  a->fch = a->lnf + BC;
  a->fch_gelu = a->fch + 4 * BC;
  a->mean = a->fch_gelu + 4 * BC;
  a->rstd = a->mean + B;
  a->logits = a->rstd + B;
}

/* Block l at position pos: its k and v go into the cache, a->x moves on. */
static void nw__decode_layer(nw_model *m, const nw__decode_acts *a, int l,
                             int pos) {
  const nw_backend *be = m->be;
  int B = m->kv_B, Tmax = m->kv_T, C = m->cfg.n_embd, NH = m->cfg.n_head;
  int hs = C / NH;
  size_t BC = (size_t)B * C;
  size_t head = (size_t)Tmax * hs; /* floats per (b,h) in the cache */
  float *p = m->params;
  float *qkvw = nw_model__layer(m, p, l, NW_LP_QKVW); /* (3C,C) */
  float *qkvb = nw_model__layer(m, p, l, NW_LP_QKVB); /* (3C) */
  float *kc = m->kv + (size_t)l * 2 * B * NH * head;  /* (B,NH,Tmax,hs) */
  float *vc = kc + (size_t)B * NH * head;
  be->layernorm_forward(a->ln, a->mean, a->rstd, a->x,
                        nw_model__layer(m, p, l, NW_LP_LN1W),
                        nw_model__layer(m, p, l, NW_LP_LN1B), B, C);
  /* q from the first C rows of c_attn; k and v straight into the cache,
   * one head at a time, since each head's slot is contiguous there */
  be->matmul_forward(a->q, a->ln, qkvw, qkvb, B, C, C);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      size_t slot = ((size_t)b * NH + h) * head + (size_t)pos * hs;
      size_t row = (size_t)C + (size_t)h * hs;
      be->matmul_forward(kc + slot, a->ln + (size_t)b * C, qkvw + row * C,
                         qkvb + row, 1, C, hs);
      be->matmul_forward(vc + slot, a->ln + (size_t)b * C, qkvw + (row + C) * C,
                         qkvb + row + C, 1, C, hs);
    }
  be->attention_decode(a->atty, a->q, kc, vc, B, C, NH, Tmax, pos);
  be->matmul_forward(a->proj, a->atty, nw_model__layer(m, p, l, NW_LP_ATTPROJW),
                     nw_model__layer(m, p, l, NW_LP_ATTPROJB), B, C, C);
  be->residual_forward(a->x2, a->x, a->proj, BC);
  be->layernorm_forward(a->ln, a->mean, a->rstd, a->x2,
                        nw_model__layer(m, p, l, NW_LP_LN2W),
                        nw_model__layer(m, p, l, NW_LP_LN2B), B, C);
  be->matmul_forward(a->fch, a->ln, nw_model__layer(m, p, l, NW_LP_FCW),
                     nw_model__layer(m, p, l, NW_LP_FCB), B, C, 4 * C);
  be->gelu_forward(a->fch_gelu, a->fch, 4 * BC);
  be->matmul_forward(a->proj, a->fch_gelu,
                     nw_model__layer(m, p, l, NW_LP_FCPROJW),
                     nw_model__layer(m, p, l, NW_LP_FCPROJB), B, 4 * C, C);
  be->residual_forward(a->x, a->x2, a->proj, BC);
}

int nw_model__decode_logits(nw_model *m, const int *tokens, int pos, int *next,
                            float *logits) {
  if (!m->kv || pos < 0 || pos >= m->kv_T)
    return NW_ESHAPE;
  const nw_backend *be = m->be;
  int B = m->kv_B, C = m->cfg.n_embd;
  int L = m->cfg.n_layer, V = m->cfg.vocab_size;
  for (int b = 0; b < B; b++)
    if (tokens[b] < 0 || tokens[b] >= V)
      return NW_EDATA;

  size_t total = nw_model_decode_floats(&m->cfg, B);
  float *buf = NULL;
  int *ids = NULL;
  int rc = nw_mem_alloc(m->mem, NW_MEM_ACTIVATIONS, total * sizeof(float),
                        (void **)&buf);
  if (rc < 0)
    return rc;
  rc = nw_mem_alloc(m->mem, NW_MEM_DATA, 2 * (size_t)B * sizeof(int),
                    (void **)&ids);
  if (rc < 0) {
    nw_mem_free(m->mem, buf);
    return rc;
  }
  nw__decode_acts a;
  nw__decode_point(&a, buf, B, C);
  int *dtok = ids, *dnext = ids + B;
  float *p = m->params;

  be->to_device(dtok, tokens, (size_t)B * sizeof(int));
  /* encoder at position pos: wpe row pos is row 0 of a T=1 call */
  be->encoder_forward(a.x, dtok, nw_model__tensor(m, p, NW_T_WTE),
                      nw_model__tensor(m, p, NW_T_WPE) + (size_t)pos * C, B, 1,
                      C);
  for (int l = 0; l < L; l++)
    nw__decode_layer(m, &a, l, pos);
  be->layernorm_forward(a.lnf, a.mean, a.rstd, a.x,
                        nw_model__tensor(m, p, NW_T_LNFW(L)),
                        nw_model__tensor(m, p, NW_T_LNFB(L)), B, C);
  be->matmul_forward(a.logits, a.lnf, nw_model__tensor(m, p, NW_T_WTE), NULL, B,
                     C, V);
  be->argmax(dnext, a.logits, B, V);
  be->to_host(next, dnext, (size_t)B * sizeof(int));
  if (logits)
    be->to_host(logits, a.logits, (size_t)B * V * sizeof(float));
  nw_mem_free(m->mem, ids);
  nw_mem_free(m->mem, buf);
  return be->status();
}

int nw_model_decode_step(nw_model *m, const int *tokens, int pos, int *next) {
  return nw_model__decode_logits(m, tokens, pos, next, NULL);
}
