/* data_files.c — the finite sources: a text file (one line an example) and
 * llm.c token shards (one EOT-separated document an example).
 *
 * Files are held whole in memory (text read into a buffer, shards mapped)
 * and indexed once into spans, so that an example is a copy. Every check on
 * file contents returns an error naming the file; nothing here asserts. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "trainer/data/data_internal.h"

#define NW__SHARD_MAGIC 20240520
#define NW__SHARD_VERSION 1
#define NW__SHARD_HEADER_BYTES 1024 /* 256 int32 */
#define NW__EOT 50256               /* GPT-2 <|endoftext|> */

typedef struct {
  nw__data_span *v;
  uint64_t n, cap;
} nw__span_list;

static int nw__span_push(nw__span_list *l, uint64_t off, uint64_t len,
                         uint32_t file, int cap) {
  if (l->n == l->cap) {
    uint64_t ncap = l->cap ? 2 * l->cap : 1024;
    nw__data_span *v = realloc(l->v, ncap * sizeof *v);
    if (!v)
      return NW_EHOSTMEM;
    l->v = v;
    l->cap = ncap;
  }
  l->v[l->n].off = off;
  l->v[l->n].len = (uint32_t)(len < (uint64_t)cap ? len : (uint64_t)cap);
  l->v[l->n].file = file;
  l->n++;
  return NW_OK;
}

static int nw__file_add(nw_dataset *d, uint32_t *index) {
  nw__data_file *f = realloc(d->files, (size_t)(d->n_files + 1) * sizeof *f);
  if (!f)
    return NW_EHOSTMEM;
  d->files = f;
  memset(&d->files[d->n_files], 0, sizeof *f);
  *index = (uint32_t)d->n_files++;
  return NW_OK;
}

void nw__data_files_free(nw_dataset *d) {
  for (int i = 0; i < d->n_files; i++) {
    nw__data_file *f = &d->files[i];
    if (f->mapped)
      munmap(f->base, f->size);
    else
      free(f->base);
  }
  free(d->files);
  d->files = NULL;
  d->n_files = 0;
  free(d->owned[0]);
  free(d->owned[1]);
  d->owned[0] = d->owned[1] = NULL;
  d->spans[0] = d->spans[1] = NULL;
}

/* Holds out the last ceil(val_fraction * n) examples of l (at least one, and
 * at least one left for training). */
static int nw__split_tail(nw_dataset *d, nw__span_list *l, const char *what,
                          char *err, size_t errlen) {
  double frac = d->cfg.val_fraction;
  if (!(frac >= 0.0 && frac < 1.0)) {
    snprintf(err, errlen, "data.val_fraction: must be in [0, 1), got %g", frac);
    return NW_ECONFIG;
  }
  if (l->n < 2) {
    snprintf(err, errlen,
             "%s: only %llu usable example(s); need at least 2 to hold one "
             "out for validation (or set data.val_path)",
             what, (unsigned long long)l->n);
    return NW_EDATA;
  }
  double x = frac * (double)l->n;
  uint64_t k = (uint64_t)x;
  if (x - (double)k > 1e-9) /* ceil, forgiving 0.1 * 30 = 3.0000000000000004 */
    k++;
  if (k < 1)
    k = 1;
  if (k > l->n - 1)
    k = l->n - 1;
  d->owned[NW_SPLIT_TRAIN] = l->v;
  d->spans[NW_SPLIT_TRAIN] = l->v;
  d->n[NW_SPLIT_TRAIN] = l->n - k;
  d->spans[NW_SPLIT_VAL] = l->v + (l->n - k);
  d->n[NW_SPLIT_VAL] = k;
  l->v = NULL;
  return NW_OK;
}

/* ---- text ---------------------------------------------------------------- */

static int nw__text_read(nw_dataset *d, const char *key, const char *path,
                         uint32_t *index, char *err, size_t errlen) {
  if (!path[0]) {
    snprintf(err, errlen, "%s: must name a text file for data.source text",
             key);
    return NW_ECONFIG;
  }
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    snprintf(err, errlen, "%s: cannot open '%s': %s", key, path,
             strerror(errno));
    return NW_EIO;
  }
  struct stat st;
  if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: '%s' is not a regular file", key, path);
    fclose(fp);
    return NW_EIO;
  }
  if (st.st_size == 0) {
    snprintf(err, errlen, "%s: '%s' is empty", key, path);
    fclose(fp);
    return NW_EDATA;
  }
  uint8_t *buf = malloc((size_t)st.st_size);
  if (!buf) {
    snprintf(err, errlen, "%s: '%s': no memory for %lld bytes", key, path,
             (long long)st.st_size);
    fclose(fp);
    return NW_EHOSTMEM;
  }
  size_t got = fread(buf, 1, (size_t)st.st_size, fp);
  int rerr = ferror(fp);
  fclose(fp);
  if (got != (size_t)st.st_size || rerr) {
    snprintf(err, errlen, "%s: '%s': short read (%zu of %lld bytes)", key, path,
             got, (long long)st.st_size);
    free(buf);
    return NW_EIO;
  }
  int rc = nw__file_add(d, index);
  if (rc < 0) {
    free(buf);
    snprintf(err, errlen, "%s: '%s': out of host memory", key, path);
    return rc;
  }
  nw__data_file *f = &d->files[*index];
  f->base = buf;
  f->size = (size_t)st.st_size;
  f->tok = buf;
  f->ntok = (uint64_t)st.st_size;
  return NW_OK;
}

/* One span per line of at least 2 bytes, '\n' included. */
static int nw__text_index(nw_dataset *d, uint32_t fi, nw__span_list *l) {
  const nw__data_file *f = &d->files[fi];
  uint64_t start = 0;
  while (start < f->ntok) {
    const uint8_t *nl = memchr(f->tok + start, '\n', f->ntok - start);
    uint64_t end = nl ? (uint64_t)(nl - f->tok) + 1 : f->ntok;
    if (end - start >= 2)
      NW_TRY(nw__span_push(l, start, end - start, fi, d->cap));
    start = end;
  }
  return NW_OK;
}

static int nw__text_file(nw_dataset *d, const char *key, const char *path,
                         nw__span_list *l, char *err, size_t errlen) {
  uint32_t fi;
  NW_TRY(nw__text_read(d, key, path, &fi, err, errlen));
  if (nw__text_index(d, fi, l) < 0) {
    snprintf(err, errlen, "%s: '%s': out of host memory indexing lines", key,
             path);
    return NW_EHOSTMEM;
  }
  if (l->n == 0) {
    snprintf(err, errlen,
             "%s: '%s' has no usable example (a line of at least 2 bytes)", key,
             path);
    return NW_EDATA;
  }
  return NW_OK;
}

static int nw__shard_set(nw_dataset *d, const char *key, const char *pattern,
                         nw__span_list *l, char *err, size_t errlen);

/* Reads one source (a text file, or a glob of shards) into a span list;
 * key names the setting in errors. */
typedef int (*nw__source_reader)(nw_dataset *d, const char *key,
                                 const char *path, nw__span_list *l, char *err,
                                 size_t errlen);

/* The split rule shared by files and shards: data.val_path read the same
 * way when set, else the tail of data.path held out. */
static int nw__load_splits(nw_dataset *d, nw__source_reader read, char *err,
                           size_t errlen) {
  nw__span_list tr = {0}, va = {0};
  int rc = read(d, "data.path", d->cfg.path, &tr, err, errlen);
  if (rc < 0)
    goto fail;
  if (d->cfg.val_path[0]) {
    rc = read(d, "data.val_path", d->cfg.val_path, &va, err, errlen);
    if (rc < 0)
      goto fail;
    d->owned[NW_SPLIT_TRAIN] = d->spans[NW_SPLIT_TRAIN] = tr.v;
    d->n[NW_SPLIT_TRAIN] = tr.n;
    d->owned[NW_SPLIT_VAL] = d->spans[NW_SPLIT_VAL] = va.v;
    d->n[NW_SPLIT_VAL] = va.n;
    return NW_OK;
  }
  char what[NW_PATH_MAX + 16];
  snprintf(what, sizeof what, "data.path '%s'", d->cfg.path);
  rc = nw__split_tail(d, &tr, what, err, errlen);
  if (rc < 0)
    goto fail;
  return NW_OK;
fail:
  free(tr.v);
  free(va.v);
  return rc;
}

int nw__data_load_text(nw_dataset *d, char *err, size_t errlen) {
  if (d->vocab_size < 256) {
    snprintf(err, errlen,
             "model.vocab_size: must be >= 256 for data.source text (byte "
             "tokens), got %d",
             d->vocab_size);
    return NW_ECONFIG;
  }
  d->tok_bytes = 1;
  return nw__load_splits(d, nw__text_file, err, errlen);
}

/* ---- shards -------------------------------------------------------------- */

static int32_t nw__le32(const uint8_t *p) {
  return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24);
}

static unsigned nw__le16(const uint8_t *p) {
  return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* What is wrong with a mapped shard of size bytes (its header, its size,
 * each token against the vocabulary), written into detail; NULL when
 * nothing is. */
static const char *nw__shard_check(const nw_dataset *d, const uint8_t *base,
                                   uint64_t size, char *detail, size_t len) {
  int32_t magic = nw__le32(base), version = nw__le32(base + 4),
          ntok = nw__le32(base + 8);
  if (magic != NW__SHARD_MAGIC) {
    snprintf(detail, len, "bad magic %d (expected %d)", magic, NW__SHARD_MAGIC);
    return detail;
  }
  if (version != NW__SHARD_VERSION) {
    snprintf(detail, len, "unsupported version %d (expected %d)", version,
             NW__SHARD_VERSION);
    return detail;
  }
  if (ntok < 0 || size != NW__SHARD_HEADER_BYTES + 2 * (uint64_t)ntok) {
    snprintf(detail, len,
             "size %lld bytes, header says %d tokens (%llu bytes): truncated "
             "or corrupt",
             (long long)size, ntok,
             (unsigned long long)(NW__SHARD_HEADER_BYTES +
                                  2 * (uint64_t)(ntok < 0 ? 0 : ntok)));
    return detail;
  }
  const uint8_t *tok = base + NW__SHARD_HEADER_BYTES;
  for (int32_t i = 0; i < ntok; i++) {
    unsigned t = nw__le16(tok + 2 * (size_t)i);
    if (t >= (unsigned)d->vocab_size) {
      snprintf(detail, len, "token %u at index %d is >= model.vocab_size (%d)",
               t, i, d->vocab_size);
      return detail;
    }
  }
  return NULL;
}

/* Maps one shard and checks header, size and every token. */
static int nw__shard_map(nw_dataset *d, const char *key, const char *path,
                         uint32_t *index, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "%s: shard '%s': cannot open: %s", key, path,
             strerror(errno));
    return NW_EIO;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: shard '%s': not a regular file", key, path);
    close(fd);
    return NW_EIO;
  }
  if (st.st_size < NW__SHARD_HEADER_BYTES) {
    snprintf(err, errlen,
             "%s: shard '%s': %lld bytes, shorter than the %d-byte header", key,
             path, (long long)st.st_size, NW__SHARD_HEADER_BYTES);
    close(fd);
    return NW_EDATA;
  }
  uint8_t *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int merr = errno;
  close(fd);
  if (base == MAP_FAILED) {
    snprintf(err, errlen, "%s: shard '%s': mmap: %s", key, path,
             strerror(merr));
    return NW_EIO;
  }
  char detail[160];
  const char *why =
      nw__shard_check(d, base, (uint64_t)st.st_size, detail, sizeof detail);
  if (why) {
    snprintf(err, errlen, "%s: shard '%s': %s", key, path, why);
    munmap(base, (size_t)st.st_size);
    return NW_EDATA;
  }
  int rc = nw__file_add(d, index);
  if (rc < 0) {
    munmap(base, (size_t)st.st_size);
    snprintf(err, errlen, "%s: shard '%s': out of host memory", key, path);
    return rc;
  }
  nw__data_file *f = &d->files[*index];
  f->base = base;
  f->size = (size_t)st.st_size;
  f->mapped = 1;
  f->tok = base + NW__SHARD_HEADER_BYTES;
  f->ntok = (uint64_t)nw__le32(base + 8);
  return NW_OK;
}

/* One span per document: EOT and the tokens up to the next EOT. Tokens
 * before a file's first EOT (a document continued from the previous shard,
 * as llm.c's writers split them) form a document of their own. */
static int nw__shard_index(nw_dataset *d, uint32_t fi, nw__span_list *l) {
  const nw__data_file *f = &d->files[fi];
  uint64_t start = 0;
  while (start < f->ntok) {
    uint64_t end = start + 1;
    while (end < f->ntok && nw__le16(f->tok + 2 * end) != NW__EOT)
      end++;
    if (end - start >= 2)
      NW_TRY(nw__span_push(l, start, end - start, fi, d->cap));
    start = end;
  }
  return NW_OK;
}

static int nw__has_glob_chars(const char *s) { return strpbrk(s, "*?[") != 0; }

/* Maps and indexes every file of a pattern, in sorted order. */
static int nw__shard_set(nw_dataset *d, const char *key, const char *pattern,
                         nw__span_list *l, char *err, size_t errlen) {
  if (!pattern[0]) {
    snprintf(err, errlen, "%s: must name shard file(s) for data.source shards",
             key);
    return NW_ECONFIG;
  }
  glob_t g;
  memset(&g, 0, sizeof g);
  int grc = glob(pattern, 0, NULL, &g);
  if (grc == GLOB_NOMATCH && !nw__has_glob_chars(pattern)) {
    uint32_t fi; /* a plain path: let open() say what is wrong with it */
    globfree(&g);
    NW_TRY(nw__shard_map(d, key, pattern, &fi, err, errlen));
    if (nw__shard_index(d, fi, l) < 0)
      goto nomem;
  } else if (grc != 0) {
    snprintf(err, errlen, "%s: no file matches '%s'", key, pattern);
    globfree(&g);
    return grc == GLOB_NOMATCH ? NW_EIO : NW_ESYS;
  } else {
    for (size_t i = 0; i < g.gl_pathc; i++) {
      uint32_t fi;
      int rc = nw__shard_map(d, key, g.gl_pathv[i], &fi, err, errlen);
      if (rc < 0) {
        globfree(&g);
        return rc;
      }
      if (nw__shard_index(d, fi, l) < 0) {
        globfree(&g);
        goto nomem;
      }
    }
    globfree(&g);
  }
  if (l->n == 0) {
    snprintf(err, errlen, "%s '%s': no document of at least 2 tokens", key,
             pattern);
    return NW_EDATA;
  }
  return NW_OK;
nomem:
  snprintf(err, errlen, "%s '%s': out of host memory indexing documents", key,
           pattern);
  return NW_EHOSTMEM;
}

int nw__data_load_shards(nw_dataset *d, char *err, size_t errlen) {
  d->tok_bytes = 2;
  return nw__load_splits(d, nw__shard_set, err, errlen);
}
