/* host_alloc.c — aligned allocations with a huge-page hint. */
#define _GNU_SOURCE
#include "device/host_alloc.h"

#include <stdlib.h>
#include <sys/mman.h>

#define NW_HUGE (2u << 20)

void *nw_host_alloc(size_t bytes) {
  if (bytes < 2 * NW_HUGE)
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
  size_t rounded = (bytes + NW_HUGE - 1) & ~(size_t)(NW_HUGE - 1);
  void *p = aligned_alloc(NW_HUGE, rounded);
  if (p)
    (void)madvise(p, rounded, MADV_HUGEPAGE); /* a hint: failure is fine */
  return p;
}
