/* mem.h — the device memory domain: every device allocation of the trainer.
 * defines: nw_mem_create, nw_mem_alloc, nw_mem_free,
 *          nw_mem_trim, nw_mem_stats, nw_mem_destroy, nw_mem_device,
 *          nw_mem_note_failure
 *
 * Each allocation names a category so that an out-of-memory failure can say
 * what held the device. Freed blocks are cached for reuse (as a GPU caching
 * allocator does) until nw_mem_trim returns them. An allocation that would
 * pass the cap fails with NW_ENOMEM and records the request. */
#ifndef NW_MEM_H
#define NW_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/mem_category.h" // defines: nw_mem_category, NW_MEM_NCAT

typedef struct nw_mem nw_mem;

typedef struct {
  uint64_t cap;               /* bytes; 0 = unlimited */
  uint64_t live[NW_MEM_NCAT]; /* bytes handed out, by category */
  uint64_t peak[NW_MEM_NCAT]; /* high-water mark of live, by category */
  uint64_t live_total;        /* sum of live */
  uint64_t peak_total;        /* high-water mark of live_total */
  uint64_t cached;            /* freed bytes kept for reuse */
  uint64_t reserved;          /* live_total + cached: what the device holds */
  uint64_t failed_request;    /* bytes of the last refused allocation */
  nw_mem_category failed_category;
} nw_mem_stats;

/* cap_bytes: 0 means unlimited. */
int nw_mem_create(nw_mem **out, uint64_t cap_bytes);

/* The device under the domain: every byte the domain holds (live or cached)
 * is reserved from it, so processes sharing a device contend for the same
 * bytes. reserve returns NW_ENOMEM when the device is full. Without one the
 * domain holds host memory limited only by its cap.
 *
 * A device with memory of its own (CUDA) also sets alloc, free and zero:
 * blocks then come from alloc (NW_ENOMEM when the device refuses, after
 * which the domain trims its cache and asks once more), their headers stay
 * in host memory, and zero clears a new block on the device. reserve and
 * release may then be NULL: the device counts its own bytes. */
typedef struct {
  void *ctx;
  int (*reserve)(void *ctx, uint64_t bytes);
  void (*release)(void *ctx, uint64_t bytes);
  int (*alloc)(void *ctx, size_t bytes, void **out);
  void (*free)(void *ctx, void *p);
  int (*zero)(void *ctx, void *p, size_t bytes);
} nw_mem_device;
void nw_mem_attach_device(nw_mem *m, const nw_mem_device *dev);
void nw_mem_destroy(nw_mem *m);

/* Allocates `bytes` (zeroed) for category `cat`. NW_ENOMEM when the cap,
 * the device or the host refuses; *out is then NULL and the stats record
 * the request. Another negative NW_E* when the device failed otherwise. */
int nw_mem_alloc(nw_mem *m, nw_mem_category cat, size_t bytes, void **out);
/* Returns a block to the cache. NULL is ignored. */
void nw_mem_free(nw_mem *m, void *p);
/* Returns every cached block to the device; the bytes returned. */
uint64_t nw_mem_trim(nw_mem *m);
void nw_mem_stats_get(const nw_mem *m, nw_mem_stats *st);
/* The stats as they were when the last allocation was refused (what an OOM
 * report shows: the caller's unwinding frees blocks afterwards). All zero
 * when no allocation has failed. */
void nw_mem_failure_stats(const nw_mem *m, nw_mem_stats *st);
/* Records a refusal that happened outside nw_mem_alloc (a library that
 * allocates device memory itself, as cuBLAS may), so that the OOM report
 * shows it like any other: bytes may be 0 when the library does not say. */
void nw_mem_note_failure(nw_mem *m, nw_mem_category cat, size_t bytes);
/* Bytes a request occupies in the domain (its block size). */
size_t nw_mem_block_bytes(size_t bytes);
void nw_mem_reset_peaks(nw_mem *m);

#endif
