/* host_alloc.h — large host buffers backed by transparent huge pages.
 * defines: nw_host_alloc
 *
 * First touching a fresh 4 KiB page costs a page fault; on the VMs these
 * runs live on that is tens of microseconds, so first-touching 1.5 GB of
 * checkpoint buffers took 7 s. Buffers of 4 MiB and more are 2 MiB-aligned
 * and advised MADV_HUGEPAGE (the kernel's "madvise" THP mode honours it),
 * 512 times fewer faults. Free them with free(). */
#ifndef NW_HOST_ALLOC_H
#define NW_HOST_ALLOC_H

#include <stddef.h>

/* 64-byte aligned (2 MiB for large sizes); NULL when the host refuses. */
void *nw_host_alloc(size_t bytes);

#endif
