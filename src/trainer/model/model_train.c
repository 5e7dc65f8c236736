/* model_train.c — the GPT-2 forward pass, the loss, and the backward pass.
 *
 * Every buffer a call needs is allocated up front, before any arithmetic, so
 * an out-of-memory failure returns NW_ENOMEM with parameters AND gradients
 * untouched and every block of the call freed.
 *
 * Per call, for B sequences of T positions (N = B*T, L layers):
 *   ACTIVATIONS  saved per layer: ln1 (N,C), qkv (N,3C), atty (N,C),
 *                residual2 (N,C), ln2 (N,C), fch (N,4C), fch_gelu (N,4C),
 *                residual3 (N,C), two (N) mean/rstd pairs; once: encoded,
 *                lnf, proj (N,C), logits (N,V); backward: dres (N,C) and
 *                two (N,4C) scratch buffers
 *   ATTENTION    att (L,B,NH,T,T); backward: datt (B,NH,T,T)
 *   WORKSPACE    losses (N)
 *   DATA         inputs and targets (N) token ids
 * Evaluation keeps no per-layer copies: one layer's buffers are reused. */
#include <stdlib.h> // defines: malloc, free

#include "base/error.h"                   // defines: NW_E*
#include "trainer/model/model_internal.h" // defines: struct nw_model, nw_model__layer

/* Blocks of one call, freed together in reverse order: the unwind path of
 * every function below is one call to nw_call_free. */
#define NW_CALL_MAX_BLOCKS 8
typedef struct {
  nw_mem *mem;
  int n;
  void *blocks[NW_CALL_MAX_BLOCKS];
} nw_call_mem;

static int nw_call_alloc(nw_call_mem *cm, nw_mem_category cat, size_t bytes,
                         void *out) {
  void *p = NULL;
  if (cm->n == NW_CALL_MAX_BLOCKS)
    return NW_EINTERNAL;
  int rc = nw_mem_alloc(cm->mem, cat, bytes, &p);
  if (rc < 0)
    return rc;
  cm->blocks[cm->n++] = p;
  *(void **)out = p;
  return 0;
}

static void nw_call_free(nw_call_mem *cm) {
  while (cm->n > 0)
    nw_mem_free(cm->mem, cm->blocks[--cm->n]);
}

typedef struct {
  int B, T, train;
  int *inputs, *targets; /* (B,T) */
  float *encoded;        /* (B,T,C) */
  /* per layer when training, else one layer's worth (stride 0) */
  float *ln1;                 /* (L,B,T,C) */
  float *ln1_mean, *ln1_rstd; /* (L,B,T) */
  float *qkv;                 /* (L,B,T,3C) */
  float *atty;                /* (L,B,T,C) attention output, pre-projection */
  float *att;                 /* (L,B,NH,T,T) softmax scores */
  float *residual2;           /* (L,B,T,C) after attention */
  float *ln2;                 /* (L,B,T,C) */
  float *ln2_mean, *ln2_rstd; /* (L,B,T) */
  float *fch;                 /* (L,B,T,4C) */
  float *fch_gelu;            /* (L,B,T,4C) */
  float *residual3;           /* (L,B,T,C) block output */
  float *lnf;                 /* (B,T,C) */
  float *lnf_mean, *lnf_rstd; /* (B,T) */
  float *proj;   /* (B,T,C) projection before its residual add; backward:
                    gradient of whichever (B,T,C) activation is in flight */
  float *logits; /* (B,T,V); dlogits after the loss when training */
  float *losses; /* (B,T) */
  /* backward only */
  float *dres; /* (B,T,C) gradient of the residual stream */
  float *d4a;  /* (B,T,4C) dfch_gelu, then dqkv (B,T,3C) */
  float *d4b;  /* (B,T,4C) dfch */
  float *datt; /* (B,NH,T,T) */
} nw_acts;

/* Carves the activations of one call out of a few blocks. */
static int nw_acts_alloc(const nw_model *m, nw_call_mem *cm, nw_acts *a, int B,
                         int T, int train) {
  size_t L = (size_t)m->cfg.n_layer, C = (size_t)m->cfg.n_embd;
  size_t NH = (size_t)m->cfg.n_head, V = (size_t)m->cfg.vocab_size;
  size_t N = (size_t)B * T, Ls = train ? L : 1;
  *a = (nw_acts){.B = B, .T = T, .train = train};
  size_t sizes[NW_ACTS_SAVED];
  size_t total = nw_model_acts_saved_floats(&m->cfg, B, T, train, sizes);
  float **ptrs[NW_ACTS_SAVED] = {
      &a->encoded,   &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty,
      &a->residual2, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu,
      &a->residual3, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->proj};
  enum { NP = NW_ACTS_SAVED };
  float *base;
  int rc = nw_call_alloc(cm, NW_MEM_ACTIVATIONS, total * sizeof(float), &base);
  if (rc < 0)
    return rc;
  for (int i = 0; i < NP; i++) {
    *ptrs[i] = base;
    base += (sizes[i] + 15) & ~(size_t)15;
  }
  size_t att = NH * N * (size_t)T;
  if ((rc = nw_call_alloc(cm, NW_MEM_ATTENTION, Ls * att * sizeof(float),
                          &a->att)) < 0 ||
      (rc = nw_call_alloc(cm, NW_MEM_ACTIVATIONS, N * V * sizeof(float),
                          &a->logits)) < 0 ||
      (rc = nw_call_alloc(cm, NW_MEM_WORKSPACE, N * sizeof(float),
                          &a->losses)) < 0 ||
      (rc = nw_call_alloc(cm, NW_MEM_DATA, 2 * N * sizeof(int), &a->inputs)) <
          0)
    return rc;
  a->targets = a->inputs + N;
  if (!train)
    return 0;
  size_t bw = N * C + 2 * N * 4 * C;
  if ((rc = nw_call_alloc(cm, NW_MEM_ACTIVATIONS, bw * sizeof(float),
                          &a->dres)) < 0 ||
      (rc = nw_call_alloc(cm, NW_MEM_ATTENTION, att * sizeof(float),
                          &a->datt)) < 0)
    return rc;
  a->d4a = a->dres + N * C;
  a->d4b = a->d4a + N * 4 * C;
  return 0;
}

/* inputs (B,T) -> logits (B,T,V). a->inputs holds the token ids. */
static void nw_forward(nw_model *m, nw_acts *a) {
  const nw_backend *be = m->be;
  int B = a->B, T = a->T, C = m->cfg.n_embd, NH = m->cfg.n_head;
  int L = m->cfg.n_layer, V = m->cfg.vocab_size, N = B * T;
  size_t NC = (size_t)N * C;
  float *p = m->params;
  be->encoder_forward(a->encoded, a->inputs, nw_model__tensor(m, p, NW_T_WTE),
                      nw_model__tensor(m, p, NW_T_WPE), B, T, C);
  float *residual = a->encoded; /* (B,T,C) input of the block */
  for (int l = 0; l < L; l++) {
    size_t ls = a->train ? (size_t)l : 0;
    float *ln1 = a->ln1 + ls * NC, *ln1_mean = a->ln1_mean + ls * N;
    float *ln1_rstd = a->ln1_rstd + ls * N, *qkv = a->qkv + ls * 3 * NC;
    float *atty = a->atty + ls * NC;
    float *att = a->att + ls * (size_t)NH * N * T;
    float *residual2 = a->residual2 + ls * NC, *ln2 = a->ln2 + ls * NC;
    float *ln2_mean = a->ln2_mean + ls * N, *ln2_rstd = a->ln2_rstd + ls * N;
    float *fch = a->fch + ls * 4 * NC, *fch_gelu = a->fch_gelu + ls * 4 * NC;
    float *residual3 = a->residual3 + ls * NC;

    be->layernorm_forward(ln1, ln1_mean, ln1_rstd, residual,
                          nw_model__layer(m, p, l, NW_LP_LN1W),
                          nw_model__layer(m, p, l, NW_LP_LN1B), N, C);
    be->matmul_forward(qkv, ln1, nw_model__layer(m, p, l, NW_LP_QKVW),
                       nw_model__layer(m, p, l, NW_LP_QKVB), N, C, 3 * C);
    be->attention_forward(atty, att, qkv, B, T, C, NH);
    be->matmul_forward(a->proj, atty, nw_model__layer(m, p, l, NW_LP_ATTPROJW),
                       nw_model__layer(m, p, l, NW_LP_ATTPROJB), N, C, C);
    be->residual_forward(residual2, residual, a->proj, NC);
    be->layernorm_forward(ln2, ln2_mean, ln2_rstd, residual2,
                          nw_model__layer(m, p, l, NW_LP_LN2W),
                          nw_model__layer(m, p, l, NW_LP_LN2B), N, C);
    be->matmul_forward(fch, ln2, nw_model__layer(m, p, l, NW_LP_FCW),
                       nw_model__layer(m, p, l, NW_LP_FCB), N, C, 4 * C);
    be->gelu_forward(fch_gelu, fch, 4 * NC);
    be->matmul_forward(a->proj, fch_gelu,
                       nw_model__layer(m, p, l, NW_LP_FCPROJW),
                       nw_model__layer(m, p, l, NW_LP_FCPROJB), N, 4 * C, C);
    /* in evaluation residual3 is also this block's input buffer: it is read
     * (by ln1 and the first residual add) before it is written here */
    be->residual_forward(residual3, residual2, a->proj, NC);
    residual = residual3;
  }
  be->layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, residual,
                        nw_model__tensor(m, p, NW_T_LNFW(L)),
                        nw_model__tensor(m, p, NW_T_LNFB(L)), N, C);
  /* LM head tied to wte (V,C): logits = lnf @ wte^T */
  be->matmul_forward(a->logits, a->lnf, nw_model__tensor(m, p, NW_T_WTE), NULL,
                     N, C, V);
}

/* a->logits holds dlogits (already scaled). Accumulates into m->grads. The
 * residual stream's gradient flows through a->dres: a residual add passes
 * its output gradient unchanged to both inputs, so the projections take dres
 * as their output gradient and the LayerNorms add into it. */
static void nw_backward(nw_model *m, nw_acts *a) {
  const nw_backend *be = m->be;
  int B = a->B, T = a->T, C = m->cfg.n_embd, NH = m->cfg.n_head;
  int L = m->cfg.n_layer, V = m->cfg.vocab_size, N = B * T;
  size_t NC = (size_t)N * C, fbytes = sizeof(float);
  float *p = m->params, *g = m->grads;
  float *dbtc = a->proj; /* (B,T,C) */

  be->memset0(dbtc, NC * fbytes);
  be->matmul_backward(dbtc, nw_model__tensor(m, g, NW_T_WTE), NULL, a->logits,
                      a->lnf, nw_model__tensor(m, p, NW_T_WTE), N, C, V);
  be->memset0(a->dres, NC * fbytes);
  be->layernorm_backward(a->dres, nw_model__tensor(m, g, NW_T_LNFW(L)),
                         nw_model__tensor(m, g, NW_T_LNFB(L)), dbtc,
                         a->residual3 + (size_t)(L - 1) * NC,
                         nw_model__tensor(m, p, NW_T_LNFW(L)), a->lnf_mean,
                         a->lnf_rstd, N, C);
  for (int l = L - 1; l >= 0; l--) {
    const float *residual =
        l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * NC;
    float *ln1 = a->ln1 + l * NC, *ln1_mean = a->ln1_mean + (size_t)l * N;
    float *ln1_rstd = a->ln1_rstd + (size_t)l * N;
    float *qkv = a->qkv + l * 3 * NC, *atty = a->atty + l * NC;
    float *att = a->att + (size_t)l * NH * N * T;
    float *residual2 = a->residual2 + l * NC, *ln2 = a->ln2 + l * NC;
    float *ln2_mean = a->ln2_mean + (size_t)l * N;
    float *ln2_rstd = a->ln2_rstd + (size_t)l * N;
    float *fch = a->fch + l * 4 * NC, *fch_gelu = a->fch_gelu + l * 4 * NC;
    float *dfch_gelu = a->d4a, *dfch = a->d4b, *dqkv = a->d4a;

    /* MLP: residual3 = residual2 + c_proj(gelu(c_fc(ln2(residual2)))) */
    be->memset0(dfch_gelu, 4 * NC * fbytes);
    be->matmul_backward(dfch_gelu, nw_model__layer(m, g, l, NW_LP_FCPROJW),
                        nw_model__layer(m, g, l, NW_LP_FCPROJB), a->dres,
                        fch_gelu, nw_model__layer(m, p, l, NW_LP_FCPROJW), N,
                        4 * C, C);
    be->memset0(dfch, 4 * NC * fbytes);
    be->gelu_backward(dfch, fch, dfch_gelu, 4 * NC);
    be->memset0(dbtc, NC * fbytes);
    be->matmul_backward(dbtc, nw_model__layer(m, g, l, NW_LP_FCW),
                        nw_model__layer(m, g, l, NW_LP_FCB), dfch, ln2,
                        nw_model__layer(m, p, l, NW_LP_FCW), N, C, 4 * C);
    be->layernorm_backward(a->dres, nw_model__layer(m, g, l, NW_LP_LN2W),
                           nw_model__layer(m, g, l, NW_LP_LN2B), dbtc,
                           residual2, nw_model__layer(m, p, l, NW_LP_LN2W),
                           ln2_mean, ln2_rstd, N, C);

    /* attention: residual2 = residual + c_proj(attn(c_attn(ln1(residual)))) */
    be->memset0(dbtc, NC * fbytes);
    be->matmul_backward(dbtc, nw_model__layer(m, g, l, NW_LP_ATTPROJW),
                        nw_model__layer(m, g, l, NW_LP_ATTPROJB), a->dres, atty,
                        nw_model__layer(m, p, l, NW_LP_ATTPROJW), N, C, C);
    be->memset0(dqkv, 3 * NC * fbytes);
    be->memset0(a->datt, (size_t)NH * N * T * fbytes);
    be->attention_backward(dqkv, a->datt, dbtc, qkv, att, B, T, C, NH);
    be->memset0(dbtc, NC * fbytes);
    be->matmul_backward(dbtc, nw_model__layer(m, g, l, NW_LP_QKVW),
                        nw_model__layer(m, g, l, NW_LP_QKVB), dqkv, ln1,
                        nw_model__layer(m, p, l, NW_LP_QKVW), N, C, 3 * C);
    be->layernorm_backward(a->dres, nw_model__layer(m, g, l, NW_LP_LN1W),
                           nw_model__layer(m, g, l, NW_LP_LN1B), dbtc, residual,
                           nw_model__layer(m, p, l, NW_LP_LN1W), ln1_mean,
                           ln1_rstd, N, C);
  }
  be->encoder_backward(nw_model__tensor(m, g, NW_T_WTE),
                       nw_model__tensor(m, g, NW_T_WPE), a->dres, a->inputs, B,
                       T, C);
}

/* Token ids index the embedding tables: an id out of range would read out of
 * bounds, so it is refused before anything runs. */
static int nw_check_batch(const nw_model *m, const int *inputs,
                          const int *targets, int B, int T) {
  if (B < 1 || T < 1 || T > m->cfg.max_seq_len)
    return NW_ESHAPE;
  int V = m->cfg.vocab_size;
  for (size_t i = 0; i < (size_t)B * T; i++) {
    if (inputs[i] < 0 || inputs[i] >= V)
      return NW_EDATA;
    if (targets && (targets[i] < -1 || targets[i] >= V))
      return NW_EDATA;
  }
  return 0;
}

/* Shared body of training and evaluation calls. */
static int nw_run(nw_model *m, const int *inputs, const int *targets, int B,
                  int T, int train, float loss_scale, double *loss_sum) {
  int rc = nw_check_batch(m, inputs, targets, B, T);
  if (rc < 0)
    return rc;
  size_t N = (size_t)B * T;
  nw_call_mem cm = {.mem = m->mem};
  nw_acts a;
  float *losses = malloc(N * sizeof(float)); /* host copy */
  if (!losses)
    return NW_EHOSTMEM;
  rc = nw_acts_alloc(m, &cm, &a, B, T, train);
  /* The token ids are the forward's last block: when they were allocated,
   * the refused block was one of the backward's own. */
  m->failed_in_backward = rc == NW_ENOMEM && train && a.inputs != NULL;
  if (rc < 0)
    goto out;
  m->be->to_device(a.inputs, inputs, N * sizeof(int));
  m->be->to_device(a.targets, targets, N * sizeof(int));
  nw_forward(m, &a);
  m->be->crossentropy(a.losses, a.logits, a.targets, (int)N, m->cfg.vocab_size,
                      loss_scale, train);
  /* A GPU library can refuse memory inside an operation: the phase of the
   * refusal is the pass that was running. */
  if ((rc = m->be->status()) < 0)
    goto out;
  if (train) {
    nw_backward(m, &a);
    if ((rc = m->be->status()) < 0) {
      m->failed_in_backward = rc == NW_ENOMEM;
      goto out;
    }
  }
  m->be->to_host(losses, a.losses, N * sizeof(float));
  if ((rc = m->be->status()) < 0)
    goto out; /* a fault of queued work shows at the copy */
  double sum = 0.0;
  for (size_t i = 0; i < N; i++)
    sum += losses[i];
  *loss_sum = sum;
out:
  nw_call_free(&cm);
  free(losses);
  return rc;
}

int nw_model_forward_backward(nw_model *m, const int *inputs,
                              const int *targets, int B, int T,
                              float loss_scale, double *loss_sum) {
  if (!targets)
    return NW_ESHAPE;
  return nw_run(m, inputs, targets, B, T, 1, loss_scale, loss_sum);
}

int nw_model_forward_loss(nw_model *m, const int *inputs, const int *targets,
                          int B, int T, double *loss_sum) {
  if (!targets)
    return NW_ESHAPE;
  return nw_run(m, inputs, targets, B, T, 0, 1.0f, loss_sum);
}

int nw_model__forward_logits(nw_model *m, const int *inputs, int B, int T,
                             float *logits) {
  int rc = nw_check_batch(m, inputs, NULL, B, T);
  if (rc < 0)
    return rc;
  size_t N = (size_t)B * T;
  nw_call_mem cm = {.mem = m->mem};
  nw_acts a;
  rc = nw_acts_alloc(m, &cm, &a, B, T, 0);
  if (rc == 0) {
    m->be->to_device(a.inputs, inputs, N * sizeof(int));
    nw_forward(m, &a);
    m->be->to_host(logits, a.logits, N * m->cfg.vocab_size * sizeof(float));
    rc = m->be->status();
  }
  nw_call_free(&cm);
  return rc;
}
