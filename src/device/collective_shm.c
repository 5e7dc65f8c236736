/* collective_shm.c — the collective of the CPU device: ranks on one host
 * meet in a POSIX shared-memory segment named from NIGHTWATCH_COMM.
 *
 * Layout: a header (a process-shared robust mutex and condition variable,
 * the barrier's count and generation, the abort word), one record per rank
 * (a robust "alive" mutex the rank's main thread holds while it is in the
 * world, its state and pid), then one slot of chunk bytes per rank. An
 * all-reduce copies a chunk into its slot, waits for everyone, sums the
 * slots in rank order into its own buffer and waits again before the slots
 * are reused: memory is size x chunk, whatever the buffer.
 *
 * Failure: a rank that exits for any reason, SIGKILL included, releases its
 * alive mutex through the kernel's robust list; a peer's trylock then says
 * EOWNERDEAD, which a pid check could not (a zombie or a reused pid looks
 * alive). Waits sleep on a futex word in short slices and look at the abort
 * word and the peers' alive mutexes between slices, so a death is seen
 * within a slice and a deadline bounds everything. Not a pthread condition
 * variable: glibc's broadcast waits for the waiters of the old group to
 * leave it, so a waiter that was killed or stopped inside pthread_cond_wait
 * would block every later broadcast, mutex held. A rank that dies holding
 * the header mutex hands its successor EOWNERDEAD: the state it was
 * changing cannot be trusted, so the communicator is aborted. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "device/collective_internal.h"

#define NW_SHM_MAGIC 0x31306c6c6f63776eULL /* "nwcoll01" */
#define NW_SHM_SLICE 0.02 /* seconds between looks at the peers */
#define NW_SHM_DEFAULT_CHUNK (1u << 20)

enum { NW_RANK_FREE = 0, NW_RANK_IN = 1, NW_RANK_LEFT = 2 };
/* why the communicator was aborted: the abort word is
 * reason << 16 | (rank + 1), 0 while healthy */
enum {
  NW_ABORT_CALLED = 1,
  NW_ABORT_DIED = 2,
  NW_ABORT_LEFT = 3,
  NW_ABORT_TIMEOUT = 4,
  NW_ABORT_LOCK_DIED = 5, /* died holding the header mutex: rank unknown */
};

typedef struct {
  pthread_mutex_t alive; /* robust; held by the rank while it is in */
  int state;             /* NW_RANK_*, under the header mutex */
  int pid;
} nw_shm_rank;

typedef struct {
  _Atomic uint64_t magic; /* stored last by rank 0: the segment is ready */
  int size;
  uint64_t slot_bytes, total_bytes;
  pthread_mutex_t mu;    /* robust; guards everything below */
  _Atomic uint32_t wake; /* futex: bumped at every change worth a look */
  int attached;
  int arrived;  /* ranks in the current barrier */
  uint64_t gen; /* barriers completed */
  _Atomic int abort_word;
} nw_shm_hdr;

typedef struct {
  nw_coll base; /* first: the common header */
  nw_shm_hdr *h;
  nw_shm_rank *ranks; /* (size) */
  char *slots;        /* (size, slot_bytes) */
  size_t map_bytes;
  char name[300];
  int holds_alive; /* this rank's alive mutex is locked by us */
  int locked;      /* we hold the header mutex */
} nw_shm;

static void nw_shm_sleep(double s) {
  struct timespec ts = nw_clock_timespec(s);
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static size_t nw_shm_align(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t nw_shm_ranks_off(void) {
  return nw_shm_align(sizeof(nw_shm_hdr));
}
static size_t nw_shm_slots_off(int size) {
  return nw_shm_ranks_off() + nw_shm_align((size_t)size * sizeof(nw_shm_rank));
}

/* Every waiter looks again (no lock needed: the futex word is the
 * handshake, and a wake never blocks). */
static void nw_shm_wake(nw_shm_hdr *h) {
  atomic_fetch_add(&h->wake, 1);
  syscall(SYS_futex, (uint32_t *)&h->wake, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void nw_shm_unlock(nw_shm *s) {
  if (s->locked) {
    s->locked = 0;
    pthread_mutex_unlock(&s->h->mu);
  }
}

static void nw_shm_set_abort(nw_shm *s, int reason, int rank) {
  int expect = 0;
  atomic_compare_exchange_strong(&s->h->abort_word, &expect,
                                 reason << 16 | (rank + 1));
}

/* The communicator failed for everyone: the reason as this rank's error. */
static int nw_shm_aborted(nw_shm *s) {
  int w = atomic_load(&s->h->abort_word);
  int reason = w >> 16, rank = (w & 0xffff) - 1;
  nw_coll *c = &s->base;
  switch (reason) {
  case NW_ABORT_CALLED:
    return nw_coll_fail(c, NW_EPEER, "rank %d aborted the collective", rank);
  case NW_ABORT_DIED:
    return nw_coll_fail(c, NW_EPEER, "rank %d died", rank);
  case NW_ABORT_LEFT:
    return nw_coll_fail(c, NW_EPEER, "rank %d left the world early", rank);
  case NW_ABORT_TIMEOUT:
    return nw_coll_fail(c, NW_EPEER, "rank %d timed out waiting", rank);
  default:
    return nw_coll_fail(c, NW_EPEER,
                        "a rank died holding the collective's lock");
  }
}

/* Takes the header mutex by the deadline. A holder that died leaves the
 * state it was changing unknown: made consistent (so the mutex stays
 * usable for the others' exits) and the communicator aborted. */
static int nw_shm_lock(nw_shm *s, double deadline) {
  struct timespec ts = nw_clock_timespec(deadline);
  int rc = pthread_mutex_clocklock(&s->h->mu, CLOCK_MONOTONIC, &ts);
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&s->h->mu);
    s->locked = 1;
    nw_shm_set_abort(s, NW_ABORT_LOCK_DIED, -1);
    nw_shm_wake(s->h);
    return 0; /* locked; the caller sees the abort word */
  }
  if (rc == 0)
    s->locked = 1;
  if (rc == ETIMEDOUT)
    return nw_coll_fail(&s->base, NW_ETIMEDOUT,
                        "rank %d: the collective's lock was not free within "
                        "%.1f s",
                        s->base.rank, s->base.timeout_s);
  if (rc != 0)
    return nw_coll_fail(&s->base, NW_EPEER, "the collective's lock: %s",
                        strerror(rc));
  return 0;
}

/* 1 when rank r, which joined, is still in the world. Its alive mutex is
 * held while it is; free (we got it) means it left or died and someone
 * already noticed. */
static int nw_shm_peer_alive(nw_shm *s, int r, int *reason) {
  nw_shm_rank *pr = &s->ranks[r];
  if (pr->state == NW_RANK_FREE)
    return 1; /* not joined yet: nothing to watch */
  int rc = pthread_mutex_trylock(&pr->alive);
  if (rc == EBUSY)
    return 1;
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&pr->alive);
    pthread_mutex_unlock(&pr->alive);
    *reason = NW_ABORT_DIED;
    return 0;
  }
  if (rc == 0)
    pthread_mutex_unlock(&pr->alive);
  *reason = pr->state == NW_RANK_LEFT ? NW_ABORT_LEFT : NW_ABORT_DIED;
  return 0;
}

/* Called holding the header mutex: waits until *word differs from old
 * (is64) or reaches old (an int), the communicator is aborted, a peer dies
 * or leaves, or the deadline passes. The mutex is let go while sleeping;
 * on return it is held again unless taking it back failed (s->locked
 * says). `what` names the wait for the timeout's message. */
static int nw_shm_wait(nw_shm *s, const void *word, int is64, uint64_t old,
                       double deadline, const char *what) {
  nw_shm_hdr *h = s->h;
  for (;;) {
    uint64_t now_val =
        is64 ? *(const uint64_t *)word : (uint64_t) * (const int *)word;
    if (is64 ? now_val != old : now_val >= old)
      return 0;
    if (atomic_load(&h->abort_word))
      return nw_shm_aborted(s);
    for (int r = 0; r < h->size; r++) {
      int reason;
      if (r != s->base.rank && !nw_shm_peer_alive(s, r, &reason)) {
        nw_shm_set_abort(s, reason, r);
        nw_shm_wake(h);
        return nw_shm_aborted(s);
      }
    }
    double now = nw_clock_now();
    if (now >= deadline) {
      /* wake the others now rather than at their own deadlines */
      nw_shm_set_abort(s, NW_ABORT_TIMEOUT, s->base.rank);
      nw_shm_wake(h);
      return nw_coll_fail(&s->base, NW_ETIMEDOUT,
                          "rank %d: %s: no answer from the other ranks "
                          "within %.1f s",
                          s->base.rank, what, s->base.timeout_s);
    }
    /* The word read under the mutex: a change after it makes FUTEX_WAIT
     * return at once, so no wake-up is lost between unlock and sleep. */
    uint32_t seen = atomic_load(&h->wake);
    nw_shm_unlock(s);
    double slice =
        deadline - now < NW_SHM_SLICE ? deadline - now : NW_SHM_SLICE;
    struct timespec rel = nw_clock_timespec(slice);
    syscall(SYS_futex, (uint32_t *)&h->wake, FUTEX_WAIT, seen, &rel, NULL, 0);
    NW_TRY(nw_shm_lock(s, deadline));
  }
}

static int nw_shm_barrier_locked(nw_shm *s, double deadline) {
  nw_shm_hdr *h = s->h;
  if (atomic_load(&h->abort_word))
    return nw_shm_aborted(s);
  uint64_t gen = h->gen;
  if (++h->arrived == h->size) {
    h->arrived = 0;
    h->gen++;
    nw_shm_wake(h);
    return 0;
  }
  return nw_shm_wait(s, &h->gen, 1, gen, deadline, "barrier");
}

static int nw_shm_barrier_at(nw_shm *s, double deadline) {
  NW_TRY(nw_shm_lock(s, deadline));
  int rc = nw_shm_barrier_locked(s, deadline);
  nw_shm_unlock(s);
  return rc;
}

static int nw_shm_barrier(nw_coll *c) {
  nw_shm *s = (nw_shm *)c;
  return nw_shm_barrier_at(s, nw_clock_now() + c->timeout_s);
}

static char *nw_shm_slot(nw_shm *s, int r) {
  return s->slots + (size_t)r * s->h->slot_bytes;
}

/* buf (n) += the other ranks' buf, in rank order; one chunk per round. */
static int nw_shm_allreduce_f32(nw_coll *c, float *buf, size_t n) {
  nw_shm *s = (nw_shm *)c;
  double deadline = nw_clock_now() + c->timeout_s;
  size_t chunk = s->h->slot_bytes / sizeof(float);
  int W = s->h->size;
  for (size_t off = 0; off < n; off += chunk) {
    size_t m = n - off < chunk ? n - off : chunk;
    memcpy(nw_shm_slot(s, c->rank), buf + off, m * sizeof(float));
    NW_TRY(nw_shm_barrier_at(s, deadline)); /* every slot is written */
    /* ((s0 + s1) + s2) + ... on every rank: the same bits everywhere */
    float *out = buf + off;
    memcpy(out, nw_shm_slot(s, 0), m * sizeof(float));
    for (int r = 1; r < W; r++) {
      const float *in = (const float *)nw_shm_slot(s, r);
      for (size_t i = 0; i < m; i++)
        out[i] += in[i];
    }
    NW_TRY(nw_shm_barrier_at(s, deadline)); /* every slot is read */
  }
  return 0;
}

static int nw_shm_allreduce_f64(nw_coll *c, double *vals, int n) {
  nw_shm *s = (nw_shm *)c;
  double deadline = nw_clock_now() + c->timeout_s;
  memcpy(nw_shm_slot(s, c->rank), vals, (size_t)n * sizeof(double));
  NW_TRY(nw_shm_barrier_at(s, deadline));
  for (int i = 0; i < n; i++) {
    double sum = 0;
    for (int r = 0; r < s->h->size; r++)
      sum += ((const double *)nw_shm_slot(s, r))[i];
    vals[i] = sum;
  }
  return nw_shm_barrier_at(s, deadline);
}

static void nw_shm_abort(nw_coll *c) {
  nw_shm *s = (nw_shm *)c;
  nw_shm_set_abort(s, NW_ABORT_CALLED, c->rank);
  nw_shm_wake(s->h);
}

static void nw_shm_unmap(nw_shm *s) {
  if (s->h)
    munmap(s->h, s->map_bytes);
  free(s);
}

static void nw_shm_close(nw_coll *c) {
  nw_shm *s = (nw_shm *)c;
  if (s->holds_alive) {
    /* Leaving: a peer still waiting for us fails at once instead of at
     * its deadline; one that finished the same calls never looks. */
    if (nw_shm_lock(s, nw_clock_now() + 1.0) == 0) {
      s->ranks[c->rank].state = NW_RANK_LEFT;
      nw_shm_unlock(s);
    }
    pthread_mutex_unlock(&s->ranks[c->rank].alive);
    nw_shm_wake(s->h);
  }
  nw_shm_unmap(s);
}

static const nw_coll_ops nw_shm_ops = {
    .allreduce_f32 = nw_shm_allreduce_f32,
    .allreduce_f64 = nw_shm_allreduce_f64,
    .barrier = nw_shm_barrier,
    .abort = nw_shm_abort,
    .close = nw_shm_close,
};

static int nw_shm_robust_mutex(pthread_mutex_t *m) {
  pthread_mutexattr_t a;
  if (pthread_mutexattr_init(&a))
    return NW_ESYS;
  int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) ||
           pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) ||
           pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return rc ? NW_ESYS : 0;
}

static void nw_shm_point(nw_shm *s, void *base, size_t bytes) {
  s->h = base;
  s->map_bytes = bytes;
  s->ranks = (nw_shm_rank *)((char *)base + nw_shm_ranks_off());
  s->slots = (char *)base + nw_shm_slots_off(s->h->size);
}

/* Rank 0: a fresh segment (a stale one of the same name, from a world that
 * crashed before its name was removed, is unlinked first). */
static int nw_shm_create(nw_shm *s, int size, size_t slot_bytes, char *err,
                         size_t errlen) {
  size_t total = nw_shm_slots_off(size) + (size_t)size * slot_bytes;
  shm_unlink(s->name);
  int fd = shm_open(s->name, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "shm_open %s: %s", s->name, strerror(errno));
    return NW_ESYS;
  }
  if (ftruncate(fd, (off_t)total) < 0) {
    snprintf(err, errlen, "ftruncate %s to %zu bytes: %s", s->name, total,
             strerror(errno));
    close(fd);
    shm_unlink(s->name);
    return NW_ESYS;
  }
  void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    snprintf(err, errlen, "mmap %s: %s", s->name, strerror(errno));
    shm_unlink(s->name);
    return NW_ESYS;
  }
  nw_shm_hdr *h = p;
  h->size = size;
  h->slot_bytes = slot_bytes;
  h->total_bytes = total;
  nw_shm_point(s, p, total);
  int bad = nw_shm_robust_mutex(&h->mu) < 0;
  for (int r = 0; r < size && !bad; r++)
    bad = nw_shm_robust_mutex(&s->ranks[r].alive) < 0;
  if (bad || pthread_mutex_lock(&s->ranks[0].alive)) {
    snprintf(err, errlen, "%s: process-shared robust mutexes unavailable",
             s->name);
    shm_unlink(s->name);
    return NW_ESYS;
  }
  s->holds_alive = 1;
  s->ranks[0].state = NW_RANK_IN;
  s->ranks[0].pid = (int)getpid();
  h->attached = 1;
  atomic_store(&h->magic, NW_SHM_MAGIC); /* release: all of the above */
  return 0;
}

/* Ranks > 0: the segment of this world, once rank 0 made it ready. Anything
 * else under the name (not ready, another size, a dead rank 0, our rank
 * taken) is a stale segment that rank 0 is about to replace: look again. */
static int nw_shm_attach(nw_shm *s, int rank, int size, double deadline,
                         char *err, size_t errlen) {
  const char *last = "no segment yet";
  while (nw_clock_now() < deadline) {
    int fd = shm_open(s->name, O_RDWR, 0);
    struct stat st;
    void *p = MAP_FAILED;
    if (fd >= 0 && fstat(fd, &st) == 0 &&
        (size_t)st.st_size >= nw_shm_slots_off(size))
      p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
               0);
    if (fd >= 0)
      close(fd);
    if (p == MAP_FAILED) {
      nw_shm_sleep(0.005);
      continue;
    }
    nw_shm_hdr *h = p;
    if (atomic_load(&h->magic) != NW_SHM_MAGIC || h->size != size ||
        h->total_bytes != (uint64_t)st.st_size) {
      last = "a segment that is not ready or of another world size";
      munmap(p, (size_t)st.st_size);
      nw_shm_sleep(0.005);
      continue;
    }
    nw_shm_point(s, p, (size_t)st.st_size);
    int rc = nw_shm_lock(s, deadline);
    if (rc < 0) {
      s->h = NULL;
      munmap(p, (size_t)st.st_size);
      snprintf(err, errlen, "%s: %s", s->name, s->base.why);
      return rc;
    }
    int reason, ok = !atomic_load(&h->abort_word) &&
                     s->ranks[rank].state == NW_RANK_FREE &&
                     nw_shm_peer_alive(s, 0, &reason);
    if (ok && pthread_mutex_trylock(&s->ranks[rank].alive) == 0) {
      s->holds_alive = 1;
      s->ranks[rank].state = NW_RANK_IN;
      s->ranks[rank].pid = (int)getpid();
      if (++h->attached == size)
        shm_unlink(s->name); /* everyone is in: a crash leaves nothing */
      nw_shm_wake(h);
      nw_shm_unlock(s);
      return 0;
    }
    nw_shm_unlock(s);
    last = "a stale segment (its rank 0 is gone or our rank is taken)";
    s->h = NULL;
    munmap(p, (size_t)st.st_size);
    nw_shm_sleep(0.005);
  }
  snprintf(err, errlen,
           "rank %d: %s: no segment of rank 0 within %.1f s (last seen: %s)",
           rank, s->name, s->base.timeout_s, last);
  return NW_ETIMEDOUT;
}

int nw_coll_shm_open(nw_coll **out, const nw_coll_options *o, char *err,
                     size_t errlen) {
  *out = NULL;
  nw_shm *s = calloc(1, sizeof *s);
  if (!s) {
    snprintf(err, errlen, "out of host memory");
    return NW_EHOSTMEM;
  }
  s->base.ops = &nw_shm_ops;
  s->base.rank = o->rank;
  s->base.size = o->size;
  s->base.timeout_s = o->timeout_s;
  if (nw_coll_shm_name(o->comm, s->name, sizeof s->name) < 0) {
    snprintf(err, errlen,
             "a world of %d ranks needs NIGHTWATCH_COMM, a name of 1 to 245 "
             "bytes (the supervisor sets it)",
             o->size);
    free(s);
    return NW_ECONFIG;
  }
  /* A slot holds the doubles of nw_coll_allreduce_f64 at least. */
  size_t slot = o->chunk_bytes ? o->chunk_bytes : NW_SHM_DEFAULT_CHUNK;
  slot = nw_shm_align(slot < NW_COLL_MAX_F64 * sizeof(double)
                          ? NW_COLL_MAX_F64 * sizeof(double)
                          : slot);
  double deadline = nw_clock_now() + o->timeout_s;
  int rc = o->rank == 0
               ? nw_shm_create(s, o->size, slot, err, errlen)
               : nw_shm_attach(s, o->rank, o->size, deadline, err, errlen);
  if (rc < 0) {
    nw_shm_unmap(s);
    return rc;
  }
  /* Everyone in before the first collective: a rank that never comes is a
   * failure of the start, not of some later step. */
  if ((rc = nw_shm_lock(s, deadline)) == 0) {
    rc = nw_shm_wait(s, &s->h->attached, 0, (uint64_t)o->size, deadline,
                     "forming the world");
    nw_shm_unlock(s);
  }
  if (rc < 0) {
    snprintf(err, errlen, "%s: %s", s->name, s->base.why);
    nw_shm_abort(&s->base);
    shm_unlink(s->name); /* ours or nobody's: the name is this world's */
    nw_shm_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}
