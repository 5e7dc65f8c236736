/* runlock.h — one supervisor, and one trainer, per run directory.
 * defines: nw_runlock_holder_info, nw_runlock_take, nw_runlock_who,
 *          nw_runlock_acquire, nw_runlock_holder, nw_runlock_release,
 *          NW_RUNLOCK_FILE, NW_TRAINLOCK_FILE
 *
 * RUN_DIR/nightwatch.lock (the supervisor's) and RUN_DIR/trainer.lock (the
 * trainer's, held by rank 0), each opened O_CLOEXEC (no child inherits it)
 * and locked with an open-file-description lock (F_OFD_SETLK, write lock on
 * the whole file): the kernel drops it when the holder dies, however it
 * dies, so a stale lock file never blocks a restart. The holder writes
 * "PID RUN_ID" into the file for the message a second one prints and, for
 * the trainer's, for the supervisor's proof that a holder is a duplicate of
 * its own run (docs/supervisor.md). */
#ifndef NW_RUNLOCK_H
#define NW_RUNLOCK_H

#include <stddef.h>

#define NW_RUNLOCK_FILE "nightwatch.lock"
#define NW_TRAINLOCK_FILE "trainer.lock"

/* Who holds a lock: pid 0 when none does (or the file does not say yet). */
typedef struct {
  int pid;
  char run_id[128]; /* "" when the holder did not write one */
} nw_runlock_holder_info;

/* Locks DIR/NAME (dir must exist), writing "PID RUN_ID" into it (run_id
 * may be NULL). The descriptor (>= 0) that holds the lock; NW_EBUSY when
 * another process holds it (*holder says who), or NW_ESYS; err says which,
 * naming `what` ("supervisor", "trainer") and the holder. */
int nw_runlock_take(const char *dir, const char *name, const char *what,
                    const char *run_id, nw_runlock_holder_info *holder,
                    char *err, size_t errlen);

/* Without taking it: who holds DIR/NAME now (pid 0: nobody). */
void nw_runlock_who(const char *dir, const char *name,
                    nw_runlock_holder_info *holder);

/* The supervisor's lock, DIR/nightwatch.lock. */
int nw_runlock_acquire(const char *dir, int *holder, char *err, size_t errlen);
/* The pid of the supervisor holding dir's lock, 0 when none. */
int nw_runlock_holder(const char *dir);

/* Drops a lock (the file stays: removing it would race a new holder). */
void nw_runlock_release(int fd);

#endif
