/* fault_fs.h — what the storage fault tests share: a small tmpfs of their
 * own (mount(2) needs root: without it each test skips and says why), a
 * filler that leaves a chosen number of bytes free, the process's resident
 * memory, and a checkpoint state of a small model.
 * defines: nw_fault_fs, nw_fault_fs_mount, nw_fault_fs_unmount,
 *          nw_fault_fs_fill, nw_fault_fs_free_bytes, nw_fault_rss_kib,
 *          nw_fault_state_init, nw_fault_state_fini */
#ifndef NW_FAULT_FS_H
#define NW_FAULT_FS_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoints/ckpt.h"

typedef struct {
  char dir[512];   /* the mount point, a fresh directory */
  char skip[1024]; /* why the file system could not be had, "" when mounted */
  int mounted;
} nw_fault_fs;

/* A tmpfs of size_kib at a fresh directory; fs->skip says why not (not
 * root, no mount permission in this container). */
void nw_fault_fs_mount(nw_fault_fs *fs, const char *tag, int size_kib);
void nw_fault_fs_unmount(nw_fault_fs *fs);

/* Writes FS/filler until only about leave_bytes are free (0: full). */
void nw_fault_fs_fill(const nw_fault_fs *fs, uint64_t leave_bytes);
uint64_t nw_fault_fs_free_bytes(const nw_fault_fs *fs);

/* Resident memory of this process, KiB (/proc/self/statm). */
long nw_fault_rss_kib(void);

/* A complete state (with optimizer moments) of a 2-layer, 64-wide model:
 * about 1.5 MB as a checkpoint. Buffers owned by st's fields; fini frees. */
void nw_fault_state_init(nw_ckpt_state *st, int64_t step);
void nw_fault_state_fini(nw_ckpt_state *st);

#endif
