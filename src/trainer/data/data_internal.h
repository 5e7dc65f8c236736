/* data_internal.h — what data.c, data_synthetic.c and data_files.c share;
 * not part of the public API (see data.h).
 * defines: nw_dataset (the struct), nw__data_span, nw__data_file,
 *          nw__mix64, nw__synth_check, nw__synth_example,
 *          nw__data_load_text, nw__data_load_shards, nw__data_files_free */
#ifndef NW_DATA_INTERNAL_H
#define NW_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/data/data.h"

/* One example of a finite source: tokens [off, off + len) of file `file`,
 * len already truncated to max_seq_len + 1 (and >= 2). */
typedef struct {
  uint64_t off;  /* first token, in tokens from the file's token start */
  uint32_t len;  /* tokens, truncated */
  uint32_t file; /* index into nw_dataset.files */
} nw__data_span;

/* A file held in memory: read into a buffer (text) or mapped (shards). */
typedef struct {
  uint8_t *base;      /* whole file */
  size_t size;        /* bytes of base */
  int mapped;         /* 1: munmap, 0: free */
  const uint8_t *tok; /* first token (base for text, base + 1024 for shards) */
  uint64_t ntok;      /* tokens after tok */
} nw__data_file;

struct nw_dataset {
  nw_data_source source;
  nw_data_config cfg;
  int vocab_size;
  int max_seq_len;
  int cap; /* max_seq_len + 1: tokens an example may have */

  /* finite sources (text, shards) */
  nw__data_file *files;
  int n_files;
  int tok_bytes;           /* 1: bytes (text), 2: uint16 little-endian */
  nw__data_span *spans[2]; /* per split; spans[VAL] may point into train's */
  uint64_t n[2];           /* examples per split */
  nw__data_span *owned[2]; /* allocations behind spans[] */

  /* training order: permutation of the current epoch */
  uint32_t *perm;      /* (n[TRAIN]) */
  uint64_t perm_epoch; /* epoch perm holds, valid when perm_valid */
  int perm_valid;

  int *scratch; /* (cap) one example, for lengths and batch rows */
};

/* splitmix64's finalizer: a bijection on 64 bits with good avalanche. */
static inline uint64_t nw__mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

#define NW__GOLDEN 0x9e3779b97f4a7c15ull

/* Checks the synthetic keys against the model; err names the key. */
int nw__synth_check(const nw_data_config *cfg, int vocab_size, int max_seq_len,
                    char *err, size_t errlen);

/* Synthetic example `index` of `split`, at most cap tokens. */
void nw__synth_example(const nw_data_config *cfg, nw_split split,
                       uint64_t index, int cap, int *tokens, int *len,
                       int *prompt_len);

/* Fill d->files, d->spans, d->n for a text or shard source. */
int nw__data_load_text(nw_dataset *d, char *err, size_t errlen);
int nw__data_load_shards(nw_dataset *d, char *err, size_t errlen);
void nw__data_files_free(nw_dataset *d);

#endif
