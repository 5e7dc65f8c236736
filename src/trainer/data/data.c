/* data.c — the dataset object, the order of examples, and micro-batches.
 *
 * Order rule: training example `index` of a finite source is
 * perm_e(index % n) with e = index / n and perm_e a Fisher-Yates shuffle of
 * 0..n-1 seeded from (seed, e); validation example `index` is index % n in
 * file order; synthetic example `index` is generated from the index itself.
 * Nothing depends on how a caller groups indices into micro-batches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "trainer/data/data.h"
#include "trainer/data/data_internal.h"

#define NW__ORDER_KEY 0x6f726465725f7631ull /* shuffle stream */

int nw_data_open(nw_dataset **out, const nw_data_config *cfg, int vocab_size,
                 int max_seq_len, char *err, size_t errlen) {
  *out = NULL;
  if (errlen)
    err[0] = '\0';
  if (max_seq_len < 1) {
    snprintf(err, errlen, "model.max_seq_len: must be >= 1, got %d",
             max_seq_len);
    return NW_ECONFIG;
  }
  if (vocab_size < 1) {
    snprintf(err, errlen, "model.vocab_size: must be >= 1, got %d", vocab_size);
    return NW_ECONFIG;
  }
  nw_dataset *d = calloc(1, sizeof *d);
  if (!d) {
    snprintf(err, errlen, "data: out of host memory");
    return NW_EHOSTMEM;
  }
  d->source = cfg->source;
  d->cfg = *cfg;
  d->vocab_size = vocab_size;
  d->max_seq_len = max_seq_len;
  d->cap = max_seq_len + 1;
  int rc;
  switch (cfg->source) {
  case NW_DATA_SYNTHETIC:
    rc = nw__synth_check(cfg, vocab_size, max_seq_len, err, errlen);
    d->n[NW_SPLIT_TRAIN] = d->n[NW_SPLIT_VAL] = UINT64_MAX;
    break;
  case NW_DATA_TEXT:
    rc = nw__data_load_text(d, err, errlen);
    break;
  case NW_DATA_SHARDS:
    rc = nw__data_load_shards(d, err, errlen);
    break;
  default:
    snprintf(err, errlen, "data.source: unknown source %d", (int)cfg->source);
    rc = NW_ECONFIG;
    break;
  }
  if (rc < 0)
    goto fail;
  if (cfg->source != NW_DATA_SYNTHETIC) {
    if (d->n[NW_SPLIT_TRAIN] > UINT32_MAX) {
      snprintf(err, errlen, "data.path '%s': %llu examples, more than %u",
               cfg->path, (unsigned long long)d->n[NW_SPLIT_TRAIN], UINT32_MAX);
      rc = NW_EDATA;
      goto fail;
    }
    d->perm = malloc(d->n[NW_SPLIT_TRAIN] * sizeof *d->perm);
    if (!d->perm)
      goto nomem;
  }
  d->scratch = malloc((size_t)d->cap * sizeof *d->scratch);
  if (!d->scratch)
    goto nomem;
  *out = d;
  return NW_OK;
nomem:
  snprintf(err, errlen, "data: out of host memory");
  rc = NW_EHOSTMEM;
fail:
  nw_data_close(d);
  return rc;
}

void nw_data_close(nw_dataset *d) {
  if (!d)
    return;
  nw__data_files_free(d);
  free(d->perm);
  free(d->scratch);
  free(d);
}

uint64_t nw_data_count(const nw_dataset *d, nw_split split) {
  if (split != NW_SPLIT_TRAIN && split != NW_SPLIT_VAL)
    return 0;
  return d->n[split];
}

/* Fisher-Yates over 0..n-1 from a splitmix64 stream keyed by (seed, epoch);
 * j is drawn by Lemire's multiply-shift (bias below 2^-32 for n < 2^32). */
static void nw__order_shuffle(nw_dataset *d, uint64_t epoch) {
  uint64_t n = d->n[NW_SPLIT_TRAIN];
  uint64_t state = nw__mix64(nw__mix64(d->cfg.seed ^ NW__ORDER_KEY) ^ epoch);
  for (uint64_t i = 0; i < n; i++)
    d->perm[i] = (uint32_t)i;
  for (uint64_t i = n - 1; i > 0; i--) {
    state += NW__GOLDEN;
    uint64_t r = nw__mix64(state);
    uint64_t j = (uint64_t)(((unsigned __int128)r * (i + 1)) >> 64);
    uint32_t t = d->perm[i];
    d->perm[i] = d->perm[j];
    d->perm[j] = t;
  }
  d->perm_epoch = epoch;
  d->perm_valid = 1;
}

/* The span of a finite source's example `index`. */
static const nw__data_span *nw__data_span_at(nw_dataset *d, nw_split split,
                                             uint64_t index) {
  uint64_t n = d->n[split];
  uint64_t id = index % n;
  if (split == NW_SPLIT_TRAIN) {
    uint64_t epoch = index / n;
    if (!d->perm_valid || d->perm_epoch != epoch)
      nw__order_shuffle(d, epoch);
    id = d->perm[id];
  }
  return &d->spans[split][id];
}

int nw_data_example(nw_dataset *d, nw_split split, uint64_t index, int *tokens,
                    int *len, int *prompt_len) {
  if (split != NW_SPLIT_TRAIN && split != NW_SPLIT_VAL)
    return NW_EINTERNAL;
  if (d->source == NW_DATA_SYNTHETIC) {
    nw__synth_example(&d->cfg, split, index, d->cap, tokens, len, prompt_len);
    return NW_OK;
  }
  if (d->n[split] == 0)
    return NW_EDATA;
  const nw__data_span *s = nw__data_span_at(d, split, index);
  const uint8_t *p = d->files[s->file].tok + s->off * (uint64_t)d->tok_bytes;
  if (d->tok_bytes == 1) {
    for (uint32_t i = 0; i < s->len; i++)
      tokens[i] = p[i];
  } else {
    for (uint32_t i = 0; i < s->len; i++)
      tokens[i] = (int)p[2 * i] | (int)p[2 * i + 1] << 8;
  }
  *len = (int)s->len;
  *prompt_len = 0;
  return NW_OK;
}

/* Tokens of an example without copying them where the index knows. */
static int nw__data_len(nw_dataset *d, nw_split split, uint64_t index,
                        int *len) {
  if (d->source != NW_DATA_SYNTHETIC && d->n[split] > 0 &&
      (split == NW_SPLIT_TRAIN || split == NW_SPLIT_VAL)) {
    *len = (int)nw__data_span_at(d, split, index)->len;
    return NW_OK;
  }
  int prompt;
  return nw_data_example(d, split, index, d->scratch, len, &prompt);
}

int nw_batch_build(nw_batch *batch, nw_dataset *d, nw_split split,
                   uint64_t index0, int B) {
  if (B < 1)
    return NW_ESHAPE;
  int longest = 0;
  for (int b = 0; b < B; b++) {
    int len;
    NW_TRY(nw__data_len(d, split, index0 + (uint64_t)b, &len));
    if (len > longest)
      longest = len;
  }
  int T = longest - 1;
  size_t bt = (size_t)B * (size_t)T;
  if (bt > (size_t)INT32_MAX)
    return NW_ESHAPE;
  if ((int)bt > batch->capacity_bt) {
    /* Grow both or neither: on failure the batch keeps its old buffers. */
    int *in = malloc(bt * sizeof *in);
    int *tg = malloc(bt * sizeof *tg);
    if (!in || !tg) {
      free(in);
      free(tg);
      return NW_EHOSTMEM;
    }
    free(batch->inputs);
    free(batch->targets);
    batch->inputs = in;
    batch->targets = tg;
    batch->capacity_bt = (int)bt;
  }
  batch->B = B;
  batch->T = T;
  batch->n_targets = 0;
  for (int b = 0; b < B; b++) {
    int len, prompt;
    NW_TRY(nw_data_example(d, split, index0 + (uint64_t)b, d->scratch, &len,
                           &prompt));
    int *in = batch->inputs + (size_t)b * T;  /* (T) row b */
    int *tg = batch->targets + (size_t)b * T; /* (T) row b */
    for (int t = 0; t < T; t++) {
      if (t < len - 1) {
        in[t] = d->scratch[t];
        tg[t] = d->scratch[t + 1];
      } else {
        in[t] = 0;
        tg[t] = -1;
      }
    }
    batch->n_targets += len - 1;
  }
  return NW_OK;
}

void nw_batch_free(nw_batch *batch) {
  free(batch->inputs);
  free(batch->targets);
  memset(batch, 0, sizeof *batch);
}

int nw_data_count_targets(nw_dataset *d, nw_split split, uint64_t index0, int n,
                          int64_t *count) {
  int64_t c = 0;
  for (int i = 0; i < n; i++) {
    int len;
    NW_TRY(nw__data_len(d, split, index0 + (uint64_t)i, &len));
    c += len - 1;
  }
  *count = c;
  return NW_OK;
}
