/* estimate.c — bytes per category from the model's own size functions. */
#include "model/estimate.h"

#include <string.h>

#include "base/error.h"
#include "device/workspace.h"
#include "model/size.h"

static void nw_estimate_sum(nw_estimate *e) {
  e->total = 0;
  for (int c = 0; c < NW_MEM_NCAT; c++)
    e->total += e->bytes[c];
}

void nw_estimate_static(const nw_config *cfg, nw_estimate *e) {
  memset(e, 0, sizeof *e);
  uint64_t p =
      nw_mem_block_bytes(nw_model_param_count(&cfg->model) * sizeof(float));
  e->bytes[NW_MEM_PARAMS] = p;
  e->bytes[NW_MEM_GRADS] = p;
  e->bytes[NW_MEM_OPTIMIZER] = 2 * p; /* exp_avg and exp_avg_sq */
  /* a GPU's cuBLAS workspace and reduction scratch (device.h) */
  e->bytes[NW_MEM_WORKSPACE] = nw_device_fixed_bytes(&cfg->device);
  nw_estimate_sum(e);
}

uint64_t nw_estimate_kept_kv(const nw_config *cfg) {
  if (cfg->eval.release_cache || cfg->eval.generate <= 0 ||
      cfg->eval.every <= 0)
    return 0;
  return nw_model_kv_bytes_for(&cfg->model, cfg->eval.batch,
                               cfg->model.max_seq_len);
}

void nw_estimate_train(const nw_config *cfg, int B, int T, uint64_t kv_held,
                       nw_estimate *e) {
  nw_estimate_static(cfg, e);
  uint64_t call[NW_MEM_NCAT];
  nw_model_call_bytes(&cfg->model, B, T, NW_CALL_TRAIN, call);
  for (int c = 0; c < NW_MEM_NCAT; c++)
    e->bytes[c] += call[c];
  e->bytes[NW_MEM_KV_CACHE] += kv_held;
  nw_estimate_sum(e);
}

void nw_estimate_eval(const nw_config *cfg, int T, nw_estimate *e) {
  nw_estimate st;
  nw_estimate_static(cfg, &st);
  uint64_t fwd[NW_MEM_NCAT], gen[NW_MEM_NCAT];
  nw_model_call_bytes(&cfg->model, cfg->eval.batch, T, NW_CALL_EVAL, fwd);
  /* The cache kept from an earlier evaluation is held during the forward. */
  fwd[NW_MEM_KV_CACHE] += nw_estimate_kept_kv(cfg);
  memset(gen, 0, sizeof gen);
  if (cfg->eval.generate > 0) {
    nw_model_decode_bytes(&cfg->model, cfg->eval.batch, gen);
    gen[NW_MEM_KV_CACHE] += nw_model_kv_bytes_for(&cfg->model, cfg->eval.batch,
                                                  cfg->model.max_seq_len);
  }
  uint64_t fwd_total = 0, gen_total = 0;
  for (int c = 0; c < NW_MEM_NCAT; c++) {
    fwd_total += fwd[c];
    gen_total += gen[c];
    e->bytes[c] = st.bytes[c] + (fwd[c] > gen[c] ? fwd[c] : gen[c]);
  }
  e->total = st.total + (fwd_total > gen_total ? fwd_total : gen_total);
}

static double nw_mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

void nw_estimate_print(FILE *f, const nw_config *cfg) {
  int B = cfg->batch.micro, T = cfg->model.max_seq_len;
  nw_estimate tr, trk, ev;
  uint64_t kept = nw_estimate_kept_kv(cfg);
  nw_estimate_train(cfg, B, T, 0, &tr);
  nw_estimate_train(cfg, B, T, kept, &trk);
  nw_estimate_eval(cfg, T, &ev);
  fprintf(f,
          "memory estimate (MiB): micro-batch %d, sequence length %d, eval "
          "batch %d\n",
          B, T, cfg->eval.batch);
  fprintf(f, "%-12s %12s %14s %12s\n", "category", "train step", "+ kept kv",
          "eval");
  for (int c = 0; c < NW_MEM_NCAT; c++)
    fprintf(f, "%-12s %12.2f %14.2f %12.2f\n",
            nw_mem_category_name((nw_mem_category)c), nw_mib(tr.bytes[c]),
            nw_mib(trk.bytes[c]), nw_mib(ev.bytes[c]));
  fprintf(f, "%-12s %12.2f %14.2f %12.2f\n", "total", nw_mib(tr.total),
          nw_mib(trk.total), nw_mib(ev.total));
  if (cfg->device.memory) {
    uint64_t cap = cfg->device.memory;
    fprintf(f, "%-12s %12.2f %14.2f %12.2f\n", "capacity", nw_mib(cap),
            nw_mib(cap), nw_mib(cap));
    fprintf(f, "%-12s %12s %14s %12s\n", "fits", tr.total <= cap ? "yes" : "NO",
            trk.total <= cap ? "yes" : "NO", ev.total <= cap ? "yes" : "NO");
  }
}

int nw_estimate_check_capacity(const nw_config *cfg, char *err, size_t errlen) {
  if (cfg->device.memory == 0)
    return 0;
  nw_estimate st;
  nw_estimate_static(cfg, &st);
  if (st.total <= cfg->device.memory)
    return 0;
  snprintf(err, errlen,
           "device.memory (%llu bytes) cannot hold the model: parameters "
           "%llu + gradients %llu + optimizer %llu = %llu bytes before any "
           "activation (see nightwatch-train --estimate)",
           (unsigned long long)cfg->device.memory,
           (unsigned long long)st.bytes[NW_MEM_PARAMS],
           (unsigned long long)st.bytes[NW_MEM_GRADS],
           (unsigned long long)st.bytes[NW_MEM_OPTIMIZER],
           (unsigned long long)st.total);
  return NW_ECONFIG;
}
