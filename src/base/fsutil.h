/* fsutil.h — durable file operations: nothing half-written is ever visible.
 * defines: nw_write_file_atomic, nw_fsync_dir, nw_mkdir_p */
#ifndef NW_FSUTIL_H
#define NW_FSUTIL_H

#include <stddef.h>

/* Writes data to "PATH.tmp.PID", fsyncs it, renames it over path and fsyncs
 * the directory. On failure the temporary is removed, path is untouched, and
 * err says which step failed. */
int nw_write_file_atomic(const char *path, const void *data, size_t len,
                         char *err, size_t errlen);

/* fsync of the directory holding path (so a rename in it is durable). */
int nw_fsync_parent_dir(const char *path);

/* mkdir -p with mode 0755; err names the component that failed. */
int nw_mkdir_p(const char *dir, char *err, size_t errlen);

#endif
