/* runlock.h — one supervisor per run directory.
 * defines: nw_runlock_acquire, nw_runlock_holder, nw_runlock_release
 *
 * RUN_DIR/nightwatch.lock, opened O_CLOEXEC (a trainer never inherits it)
 * and locked with an open-file-description lock (F_OFD_SETLK, write lock on
 * the whole file): the kernel drops it when the supervisor dies, however it
 * dies, so a stale lock file never blocks a restart. The holder's pid is
 * written into the file for the message a second supervisor prints. */
#ifndef NW_RUNLOCK_H
#define NW_RUNLOCK_H

#include <stddef.h>

#define NW_RUNLOCK_FILE "nightwatch.lock"

/* Locks dir (which must exist). Returns the descriptor (>= 0) that holds
 * the lock, NW_EBUSY when another process holds it (*holder = its pid, or 0
 * when the file does not say), or NW_ESYS; err says which. */
int nw_runlock_acquire(const char *dir, int *holder, char *err, size_t errlen);

/* Without taking it: the pid of the supervisor holding dir's lock, 0 when
 * none holds it (or the directory has no lock file). */
int nw_runlock_holder(const char *dir);

/* Drops the lock (the file stays: removing it would race a new holder). */
void nw_runlock_release(int fd);

#endif
