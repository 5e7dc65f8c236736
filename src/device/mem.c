/* mem.c — the memory domain over host memory (the CPU device) or over a
 * device with memory of its own (the CUDA provider, cuda/cuda_mem.cu).
 *
 * Host blocks carry a small header (category, size) in front of the pointer
 * the caller sees; a device block's header is a separate host allocation on
 * a list of live device blocks (device memory cannot hold a host struct).
 * The list is searched on free: a step holds a few dozen blocks. Freed blocks
 * go to a per-size cache list, as a GPU caching allocator keeps freed segments,
 * so that the steady state of training does no system allocation; nw_mem_trim
 * hands them back. The cap counts what the device holds (live plus cached): a
 * request that would pass it first trims the cache, then fails with NW_ENOMEM.
 */
#include "device/mem.h"

#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "device/host_alloc.h"

/* Header in front of every block; 64 bytes keep the payload aligned for
 * AVX-512 loads. */
typedef struct nw_block {
  struct nw_block *next_cached; /* cache list link while freed; the live
                                   list's link for a device block */
  void *ptr;                    /* the caller's pointer */
  size_t bytes;                 /* payload size */
  nw_mem_category cat;
  uint32_t magic;
  char pad[64 - 2 * sizeof(void *) - sizeof(size_t) - sizeof(nw_mem_category) -
           sizeof(uint32_t)];
} nw_block;

#define NW_BLOCK_MAGIC 0x6e776d62u /* "nwmb" */

struct nw_mem {
  nw_mem_stats st;
  nw_mem_stats at_failure; /* st when the last request was refused */
  nw_mem_device dev;       /* reserve == NULL: plain host memory */
  nw_block *cache;         /* freed blocks, most recent first */
  nw_block *live;          /* live device blocks (dev.alloc set) */
};

static void nw_block_destroy(nw_mem *m, nw_block *b);

int nw_mem_create(nw_mem **out, uint64_t cap_bytes) {
  nw_mem *m = calloc(1, sizeof *m);
  if (!m)
    return NW_EHOSTMEM;
  m->st.cap = cap_bytes;
  *out = m;
  return 0;
}

void nw_mem_destroy(nw_mem *m) {
  if (!m)
    return;
  nw_mem_trim(m);
  /* Device blocks still live go back too: device memory outlives nothing
   * but the process, and a leak there would shrink the card for others. */
  while (m->live) {
    nw_block *b = m->live;
    m->live = b->next_cached;
    if (m->dev.release)
      m->dev.release(m->dev.ctx, b->bytes);
    nw_block_destroy(m, b);
  }
  free(m);
}

void nw_mem_attach_device(nw_mem *m, const nw_mem_device *dev) {
  m->dev = *dev;
}

/* Gives one block's memory back: to the device that made it, or the host. */
static void nw_block_destroy(nw_mem *m, nw_block *b) {
  if (m->dev.alloc) {
    m->dev.free(m->dev.ctx, b->ptr);
    b->magic = 0;
  }
  free(b);
}

/* A fresh block of `want` bytes; NW_ENOMEM when the device or host has none
 * (another NW_E* when the device failed otherwise). */
static int nw_block_create(nw_mem *m, size_t want, nw_block **out) {
  *out = NULL;
  if (!m->dev.alloc) {
    nw_block *b = nw_host_alloc(sizeof(nw_block) + want);
    if (!b)
      return NW_ENOMEM;
    b->ptr = b + 1;
    *out = b;
    return 0;
  }
  nw_block *b = malloc(sizeof *b);
  if (!b)
    return NW_EHOSTMEM;
  memset(b, 0, sizeof *b);
  int rc = m->dev.alloc(m->dev.ctx, want, &b->ptr);
  if (rc == NW_ENOMEM && nw_mem_trim(m) > 0)
    rc = m->dev.alloc(m->dev.ctx, want, &b->ptr); /* our cache was in the way */
  if (rc < 0) {
    free(b);
    return rc;
  }
  *out = b;
  return 0;
}

/* Returns the largest cached block to the device: the fewest blocks freed
 * for the room made. */
static void nw_mem_evict_largest(nw_mem *m) {
  nw_block **largest = &m->cache;
  for (nw_block **pp = &m->cache; *pp; pp = &(*pp)->next_cached)
    if ((*pp)->bytes > (*largest)->bytes)
      largest = pp;
  nw_block *b = *largest;
  *largest = b->next_cached;
  m->st.cached -= b->bytes;
  m->st.reserved -= b->bytes;
  if (m->dev.release)
    m->dev.release(m->dev.ctx, b->bytes);
  nw_block_destroy(m, b);
}

/* Reserves `bytes` from the device, trimming our own cache first when the
 * device is full: cached blocks are ours to give back. */
static int nw_mem_reserve(nw_mem *m, size_t bytes) {
  if (m->st.cap && m->st.reserved + bytes > m->st.cap) {
    nw_mem_trim(m);
    if (m->st.reserved + bytes > m->st.cap)
      return NW_ENOMEM;
  }
  if (!m->dev.reserve)
    return 0;
  if (m->dev.reserve(m->dev.ctx, bytes) == 0)
    return 0;
  if (nw_mem_trim(m) == 0)
    return NW_ENOMEM;
  return m->dev.reserve(m->dev.ctx, bytes) == 0 ? 0 : NW_ENOMEM;
}

/* Blocks are multiples of 256 bytes, as cudaMalloc's granularity. */
size_t nw_mem_block_bytes(size_t bytes) {
  return ((bytes ? bytes : 1) + 255) & ~(size_t)255;
}

int nw_mem_alloc(nw_mem *m, nw_mem_category cat, size_t bytes, void **out) {
  *out = NULL;
  size_t want = nw_mem_block_bytes(bytes);
  nw_block *b = NULL;
  /* Reuse the smallest cached block that fits with at most 1/8 to spare:
   * micro-batches of similar lengths share blocks instead of each length
   * growing the cache, and what a step holds stays within 1/8 of what the
   * estimator predicts for it. Under pressure the cache is trimmed. */
  nw_block **best = NULL;
  for (nw_block **pp = &m->cache; *pp; pp = &(*pp)->next_cached) {
    size_t have = (*pp)->bytes;
    if (have >= want && have <= want + want / 8 &&
        (!best || have < (*best)->bytes))
      best = pp;
  }
  if (best) {
    b = *best;
    *best = b->next_cached;
    m->st.cached -= b->bytes;
  }
  if (!b) {
    /* A miss that would grow what the domain holds past the most it ever
     * had live first returns cached blocks, largest first: blocks of
     * lengths that no longer come would otherwise pile up (variable
     * sequence lengths make every size a new one). The footprint stays at
     * the working set's peak. */
    uint64_t live_after = m->st.live_total + want;
    uint64_t high =
        live_after > m->st.peak_total ? live_after : m->st.peak_total;
    while (m->cache && m->st.reserved + want > high)
      nw_mem_evict_largest(m);
    if (nw_mem_reserve(m, want) < 0)
      goto fail;
    int rc = nw_block_create(m, want, &b);
    if (rc < 0) {
      if (m->dev.release)
        m->dev.release(m->dev.ctx, want);
      if (rc != NW_ENOMEM)
        return rc; /* a device fault, not a refusal: no OOM to report */
      goto fail;
    }
    b->bytes = want;
    b->magic = NW_BLOCK_MAGIC;
    m->st.reserved += want;
  }
  b->cat = cat;
  b->next_cached = NULL;
  if (m->dev.alloc) {
    int rc = m->dev.zero(m->dev.ctx, b->ptr, b->bytes);
    if (rc < 0) {
      /* back to the cache: the block itself is sound */
      b->next_cached = m->cache;
      m->cache = b;
      m->st.cached += b->bytes;
      return rc;
    }
    b->next_cached = m->live;
    m->live = b;
  } else {
    memset(b->ptr, 0, b->bytes);
  }
  m->st.live[cat] += b->bytes;
  m->st.live_total += b->bytes;
  if (m->st.live[cat] > m->st.peak[cat])
    m->st.peak[cat] = m->st.live[cat];
  if (m->st.live_total > m->st.peak_total)
    m->st.peak_total = m->st.live_total;
  *out = b->ptr;
  return 0;
fail:
  m->st.failed_request = want;
  m->st.failed_category = cat;
  m->at_failure = m->st;
  return NW_ENOMEM;
}

void nw_mem_free(nw_mem *m, void *p) {
  if (!p)
    return;
  nw_block *b = NULL;
  if (m->dev.alloc) {
    nw_block **pp = &m->live;
    while (*pp && (*pp)->ptr != p)
      pp = &(*pp)->next_cached;
    b = *pp;
    if (!b)
      abort(); /* not ours: a memory-safety bug, never a recoverable error */
    *pp = b->next_cached;
  } else {
    b = (nw_block *)p - 1;
  }
  if (b->magic != NW_BLOCK_MAGIC)
    abort(); /* not ours: a memory-safety bug, never a recoverable error */
  m->st.live[b->cat] -= b->bytes;
  m->st.live_total -= b->bytes;
  m->st.cached += b->bytes;
  b->next_cached = m->cache;
  m->cache = b;
}

uint64_t nw_mem_trim(nw_mem *m) {
  uint64_t returned = 0;
  while (m->cache) {
    nw_block *b = m->cache;
    m->cache = b->next_cached;
    returned += b->bytes;
    nw_block_destroy(m, b);
  }
  m->st.cached -= returned;
  m->st.reserved -= returned;
  if (returned && m->dev.release)
    m->dev.release(m->dev.ctx, returned);
  return returned;
}

void nw_mem_stats_get(const nw_mem *m, nw_mem_stats *st) { *st = m->st; }

void nw_mem_failure_stats(const nw_mem *m, nw_mem_stats *st) {
  *st = m->at_failure;
}

void nw_mem_note_failure(nw_mem *m, nw_mem_category cat, size_t bytes) {
  m->st.failed_request = bytes;
  m->st.failed_category = cat;
  m->at_failure = m->st;
}

void nw_mem_reset_peaks(nw_mem *m) {
  for (int c = 0; c < NW_MEM_NCAT; c++)
    m->st.peak[c] = m->st.live[c];
  m->st.peak_total = m->st.live_total;
}
