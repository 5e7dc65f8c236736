/* vdev.c — the virtual device: a capacity and a process table in a POSIX
 * shared-memory segment, guarded by a robust process-shared mutex. */
#define _GNU_SOURCE
#include "device/vdev.h" // defines: nw_vdev_open, nw_vdev_reserve, nw_vdev_list, ...

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/error.h" // defines: NW_E* codes

#define NW_VDEV_MAGIC 0x31766476775e774eULL /* "Nw^wvdv1" little-endian */
#define NW_VDEV_VERSION 1u
#define NW_VDEV_PREFIX "/nightwatch-vdev-"
#define NW_VDEV_SHM_DIR "/dev/shm"
#define NW_VDEV_WAIT_TRIES                                                     \
  200 /* x 10 ms: how long an opener waits for init                            \
       */

/* One process on the device; pid 0 = free. pid is written last when a slot
 * is taken, so a slot half-written by a process that died is still free. */
typedef struct {
  int32_t pid;
  uint32_t uid;
  uint64_t start_time; /* /proc/<pid>/stat field 22; tells a recycled pid */
  uint64_t bytes;
  char run_id[64];
} nw__vdev_slot;

/* The segment. The header's offsets are fixed for every layout version so
 * that an opener can name what is wrong (docs/virtual-device.md). */
typedef struct {
  uint64_t magic;    /* 0: NW_VDEV_MAGIC, stored last (release) */
  uint32_t version;  /* 8: NW_VDEV_VERSION */
  uint32_t nslots;   /* 12: NW_VDEV_SLOTS */
  uint64_t size;     /* 16: sizeof(nw__vdev_shm) */
  uint64_t capacity; /* 24: bytes, > 0 */
  pthread_mutex_t lock;
  nw__vdev_slot slots[NW_VDEV_SLOTS];
} nw__vdev_shm;

/* The header offsets are part of the on-disk contract (docs and tests). */
_Static_assert(offsetof(nw__vdev_shm, version) == 8, "vdev layout");
_Static_assert(offsetof(nw__vdev_shm, nslots) == 12, "vdev layout");
_Static_assert(offsetof(nw__vdev_shm, size) == 16, "vdev layout");
_Static_assert(offsetof(nw__vdev_shm, capacity) == 24, "vdev layout");

struct nw_vdev {
  nw__vdev_shm *shm;
  int slot;  /* index of this handle's slot */
  pid_t pid; /* the process that owns the slot */
  char name[NW_VDEV_NAME_MAX + 1];
};

static void nw__vdev_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nw__vdev_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int nw__vdev_check_name(const char *name, char *err, size_t errlen) {
  size_t len = name ? strlen(name) : 0;
  int ok = len >= 1 && len <= NW_VDEV_NAME_MAX;
  for (size_t i = 0; ok && i < len; i++) {
    char c = name[i];
    ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  }
  if (!ok) {
    nw__vdev_err(err, errlen,
                 "virtual device name '%.80s%s': use 1..%d characters from "
                 "[A-Za-z0-9._-]",
                 name ? name : "(null)", len > 80 ? "..." : "",
                 NW_VDEV_NAME_MAX);
    return NW_ECONFIG;
  }
  return 0;
}

static void nw__vdev_shm_name(char *buf, size_t len, const char *name) {
  snprintf(buf, len, NW_VDEV_PREFIX "%s", name);
}

/* State (field 3) and start time (field 22) of a process from
 * /proc/<pid>/stat. Fields are counted after the last ')' because the
 * command name (field 2) may hold spaces and parentheses. */
static int nw__vdev_proc_stat(pid_t pid, char *state, uint64_t *start) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return -1;
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (!p || p[1] != ' ')
    return -1;
  p += 2;
  *state = *p;
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (!p)
      return -1;
    p++;
  }
  char *end;
  errno = 0;
  unsigned long long v = strtoull(p, &end, 10);
  if (errno || end == p)
    return -1;
  *start = v;
  return 0;
}

/* A slot's process is alive when its pid exists, is not a zombie (a zombie
 * holds no memory) and started when the slot says. A pid whose /proc entry
 * cannot be read but that kill() reports as existing counts as alive. */
static int nw__vdev_alive(const nw__vdev_slot *s) {
  if (s->pid <= 0)
    return 0;
  if (kill(s->pid, 0) != 0 && errno == ESRCH)
    return 0;
  char state;
  uint64_t start;
  if (nw__vdev_proc_stat(s->pid, &state, &start) != 0)
    return kill(s->pid, 0) == 0 || errno != ESRCH;
  if (state == 'Z' || state == 'X')
    return 0;
  return start == s->start_time;
}

/* Frees the slots of dead processes; their bytes return to the device.
 * Called with the lock held. */
static void nw__vdev_reclaim(nw__vdev_shm *shm) {
  for (int i = 0; i < NW_VDEV_SLOTS; i++) {
    nw__vdev_slot *s = &shm->slots[i];
    if (s->pid != 0 && !nw__vdev_alive(s)) {
      s->pid = 0;
      s->bytes = 0;
    }
  }
}

/* Takes the lock and reclaims. A holder that died leaves the mutex
 * EOWNERDEAD: the table is consistent slot by slot (a reserve writes one
 * word, a registration publishes pid last), so mark it consistent and let
 * reclaim drop the dead holder's slot. */
static int nw__vdev_lock(nw__vdev_shm *shm) {
  int rc = pthread_mutex_lock(&shm->lock);
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&shm->lock);
    rc = 0;
  }
  if (rc != 0)
    return rc == ENOTRECOVERABLE ? NW_EDATA : NW_ESYS;
  nw__vdev_reclaim(shm);
  return 0;
}

static void nw__vdev_unlock(nw__vdev_shm *shm) {
  pthread_mutex_unlock(&shm->lock);
}

static uint64_t nw__vdev_used(const nw__vdev_shm *shm) {
  uint64_t used = 0;
  for (int i = 0; i < NW_VDEV_SLOTS; i++) {
    const nw__vdev_slot *s = &shm->slots[i];
    if (s->pid != 0)
      used = s->bytes > UINT64_MAX - used ? UINT64_MAX : used + s->bytes;
  }
  return used;
}

static void nw__vdev_sleep_10ms(void) {
  struct timespec ts = {0, 10 * 1000 * 1000};
  nanosleep(&ts, NULL);
}

#define NW__VDEV_HINT                                                          \
  "; if no process uses it, remove it with: rm " NW_VDEV_SHM_DIR NW_VDEV_PREFIX

/* Builds a fresh device in a segment this process created with O_EXCL and
 * publishes the magic last, so an opener never sees a half-built header. */
static int nw__vdev_init(int fd, const char *shm, uint64_t capacity,
                         nw__vdev_shm **out, char *err, size_t errlen) {
  if (ftruncate(fd, sizeof(nw__vdev_shm)) != 0) {
    nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: ftruncate: %s", shm,
                 strerror(errno));
    return NW_ESYS;
  }
  nw__vdev_shm *m =
      mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) {
    nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: mmap: %s", shm,
                 strerror(errno));
    return NW_ESYS;
  }
  pthread_mutexattr_t attr;
  int rc = pthread_mutexattr_init(&attr);
  if (rc == 0)
    rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  if (rc == 0)
    rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0)
    rc = pthread_mutex_init(&m->lock, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) {
    munmap(m, sizeof *m);
    nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: mutex: %s", shm,
                 strerror(rc));
    return NW_ESYS;
  }
  m->version = NW_VDEV_VERSION;
  m->nslots = NW_VDEV_SLOTS;
  m->size = sizeof *m;
  m->capacity = capacity;
  __atomic_store_n(&m->magic, NW_VDEV_MAGIC, __ATOMIC_RELEASE);
  *out = m;
  return 0;
}

/* Waits (bounded) for the creator of the segment to publish its header,
 * and checks the header against this layout. 0 with *why NULL when it is
 * a device of this layout, 0 with *why saying why not (it may point into
 * whybuf), or NW_ESYS with err set. */
static int nw__vdev_header(int fd, const char *shm, const char **why,
                           char *whybuf, size_t whylen, char *err,
                           size_t errlen) {
  *why = "never initialised (its creator died?)";
  for (int tries = 0; tries < NW_VDEV_WAIT_TRIES; tries++) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: fstat: %s", shm,
                   strerror(errno));
      return NW_ESYS;
    }
    if (st.st_size == 0) { /* creator between O_EXCL and ftruncate */
      nw__vdev_sleep_10ms();
      continue;
    }
    struct {
      uint64_t magic;
      uint32_t version, nslots;
      uint64_t size;
    } h;
    if ((size_t)st.st_size < sizeof h) {
      *why = "too small";
      return 0;
    }
    if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) {
      nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: read: %s", shm,
                   strerror(errno));
      return NW_ESYS;
    }
    if (h.magic == 0) { /* creator has not published yet */
      nw__vdev_sleep_10ms();
      continue;
    }
    *why = whybuf;
    if (h.magic != NW_VDEV_MAGIC)
      *why = "bad magic";
    else if (h.version != NW_VDEV_VERSION)
      snprintf(whybuf, whylen,
               "layout version %" PRIu32 ", this build reads %u", h.version,
               NW_VDEV_VERSION);
    else if ((uint64_t)st.st_size != sizeof(nw__vdev_shm) ||
             h.size != sizeof(nw__vdev_shm))
      snprintf(whybuf, whylen,
               "size %lld bytes (header says %" PRIu64 "), expected %zu",
               (long long)st.st_size, h.size, sizeof(nw__vdev_shm));
    else
      *why = NULL;
    return 0;
  }
  return 0;
}

/* Maps a segment another process created, waiting (bounded) for its creator
 * to publish the magic, and refuses anything that is not a device of this
 * layout. */
static int nw__vdev_attach(int fd, const char *shm, nw__vdev_shm **out,
                           char *err, size_t errlen) {
  const char *why;
  char whybuf[128];
  NW_TRY(nw__vdev_header(fd, shm, &why, whybuf, sizeof whybuf, err, errlen));
  nw__vdev_shm *m = MAP_FAILED;
  if (!why) {
    m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
      nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: mmap: %s", shm,
                   strerror(errno));
      return NW_ESYS;
    }
    /* Pairs with the creator's release store: the header is complete. */
    if (__atomic_load_n(&m->magic, __ATOMIC_ACQUIRE) != NW_VDEV_MAGIC)
      why = "bad magic";
    else if (m->nslots != NW_VDEV_SLOTS) {
      snprintf(whybuf, sizeof whybuf, "%" PRIu32 " slots, expected %d",
               m->nslots, NW_VDEV_SLOTS);
      why = whybuf;
    } else if (m->capacity == 0)
      why = "capacity 0";
  }
  if (why) {
    if (m != MAP_FAILED)
      munmap(m, sizeof *m);
    nw__vdev_err(err, errlen,
                 NW_VDEV_SHM_DIR "%s: not a nightwatch virtual device "
                                 "(%s)" NW__VDEV_HINT "%s",
                 shm, why, shm + strlen(NW_VDEV_PREFIX));
    return NW_EDATA;
  }
  *out = m;
  return 0;
}

/* Opens (and with create, creates) the segment of a valid name. */
static int nw__vdev_map(const char *name, int create, uint64_t capacity,
                        nw__vdev_shm **out, char *err, size_t errlen) {
  char shm[sizeof NW_VDEV_PREFIX + NW_VDEV_NAME_MAX];
  nw__vdev_shm_name(shm, sizeof shm, name);
  /* A segment can vanish between a failed O_EXCL and the open (someone
   * unlinked it); then try to create again. */
  for (int attempt = 0; attempt < 3; attempt++) {
    if (create) {
      int fd = shm_open(shm, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd >= 0) {
        int rc = nw__vdev_init(fd, shm, capacity, out, err, errlen);
        close(fd);
        if (rc < 0)
          shm_unlink(shm);
        return rc;
      }
      if (errno != EEXIST) {
        nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: create: %s", shm,
                     strerror(errno));
        return NW_ESYS;
      }
    }
    int fd = shm_open(shm, O_RDWR | O_CLOEXEC, 0);
    if (fd >= 0) {
      int rc = nw__vdev_attach(fd, shm, out, err, errlen);
      close(fd);
      return rc;
    }
    if (errno != ENOENT) {
      nw__vdev_err(err, errlen, NW_VDEV_SHM_DIR "%s: open: %s", shm,
                   strerror(errno));
      return NW_ESYS;
    }
    if (!create) {
      nw__vdev_err(err, errlen,
                   "no virtual device '%s' (" NW_VDEV_SHM_DIR
                   "%s does not exist)",
                   name, shm);
      return NW_ENOTFOUND;
    }
  }
  nw__vdev_err(err, errlen,
               NW_VDEV_SHM_DIR "%s: created and removed "
                               "repeatedly by another process",
               shm);
  return NW_EBUSY;
}

/* Maps v's segment: an existing one when capacity is 0, else created if
 * need be and of that capacity. 0, or an error with err set. */
static int nw__vdev_open_map(nw_vdev *v, uint64_t capacity, char *err,
                             size_t errlen) {
  const char *name = v->name;
  int rc;
  if (capacity == 0) {
    rc = nw__vdev_map(name, 0, 0, &v->shm, err, errlen);
    if (rc == NW_ENOTFOUND) {
      nw__vdev_err(err, errlen,
                   "virtual device %s does not exist and capacity 0 cannot "
                   "create it",
                   name);
      rc = NW_ECONFIG;
    }
  } else {
    rc = nw__vdev_map(name, 1, capacity, &v->shm, err, errlen);
  }
  if (rc < 0)
    return rc;
  if (capacity != 0 && v->shm->capacity != capacity) {
    nw__vdev_err(err, errlen,
                 "virtual device %s exists with capacity %" PRIu64
                 " bytes, not the requested %" PRIu64,
                 name, v->shm->capacity, capacity);
    munmap(v->shm, sizeof *v->shm);
    return NW_ECONFIG;
  }
  return 0;
}

/* Takes a free process slot of the mapped device for this process. 0, or
 * an error with err set. */
static int nw__vdev_claim_slot(nw_vdev *v, uint64_t self_start,
                               const char *run_id, char *err, size_t errlen) {
  nw__vdev_shm *shm = v->shm;
  int rc = nw__vdev_lock(shm);
  if (rc < 0) {
    nw__vdev_err(err, errlen,
                 "virtual device %s: cannot take its lock" NW__VDEV_HINT "%s",
                 v->name, v->name);
    return rc;
  }
  for (int i = 0; i < NW_VDEV_SLOTS; i++) {
    nw__vdev_slot *s = &shm->slots[i];
    if (s->pid != 0)
      continue;
    s->uid = (uint32_t)getuid();
    s->start_time = self_start;
    s->bytes = 0;
    snprintf(s->run_id, sizeof s->run_id, "%s", run_id);
    s->pid = v->pid;
    v->slot = i;
    break;
  }
  nw__vdev_unlock(shm);
  if (v->slot < 0) {
    nw__vdev_err(err, errlen, "virtual device %s: all %d process slots taken",
                 v->name, NW_VDEV_SLOTS);
    return NW_EBUSY;
  }
  return 0;
}

int nw_vdev_open(nw_vdev **out, const char *name, uint64_t capacity,
                 const char *run_id, char *err, size_t errlen) {
  *out = NULL;
  NW_TRY(nw__vdev_check_name(name, err, errlen));
  if (!run_id)
    run_id = "";
  if (strlen(run_id) > NW_VDEV_RUN_ID_MAX) {
    nw__vdev_err(err, errlen, "virtual device %s: run id longer than %d", name,
                 NW_VDEV_RUN_ID_MAX);
    return NW_ECONFIG;
  }
  uint64_t self_start;
  char state;
  if (nw__vdev_proc_stat(getpid(), &state, &self_start) != 0) {
    nw__vdev_err(err, errlen, "virtual device %s: cannot read /proc/self/stat",
                 name);
    return NW_ESYS;
  }
  nw_vdev *v = calloc(1, sizeof *v);
  if (!v) {
    nw__vdev_err(err, errlen, "virtual device %s: out of host memory", name);
    return NW_EHOSTMEM;
  }
  snprintf(v->name, sizeof v->name, "%s", name);
  v->pid = getpid();
  v->slot = -1;
  int rc = nw__vdev_open_map(v, capacity, err, errlen);
  if (rc < 0)
    goto fail_map;
  rc = nw__vdev_claim_slot(v, self_start, run_id, err, errlen);
  if (rc < 0)
    goto fail_lock;
  *out = v;
  return 0;

fail_lock:
  munmap(v->shm, sizeof *v->shm);
fail_map:
  free(v);
  return rc;
}

/* Operations on a handle are for the process that opened it. */
static int nw__vdev_owned(const nw_vdev *v) {
  return v && v->slot >= 0 && getpid() == v->pid;
}

int nw_vdev_reserve(nw_vdev *v, uint64_t bytes) {
  if (!nw__vdev_owned(v))
    return NW_EINTERNAL;
  nw__vdev_shm *shm = v->shm;
  NW_TRY(nw__vdev_lock(shm));
  nw__vdev_slot *s = &shm->slots[v->slot];
  int rc = 0;
  uint64_t used = nw__vdev_used(shm);
  if (s->pid != v->pid)
    rc = NW_EINTERNAL; /* our slot was taken from us: cannot happen alive */
  else if (used > shm->capacity || bytes > shm->capacity - used)
    rc = NW_ENOMEM;
  else
    s->bytes += bytes;
  nw__vdev_unlock(shm);
  return rc;
}

void nw_vdev_release(nw_vdev *v, uint64_t bytes) {
  if (!nw__vdev_owned(v) || nw__vdev_lock(v->shm) < 0)
    return;
  nw__vdev_slot *s = &v->shm->slots[v->slot];
  if (s->pid == v->pid)
    s->bytes = bytes > s->bytes ? 0 : s->bytes - bytes;
  nw__vdev_unlock(v->shm);
}

int nw_vdev_usage(nw_vdev *v, uint64_t *used, uint64_t *capacity) {
  if (!nw__vdev_owned(v))
    return NW_EINTERNAL;
  NW_TRY(nw__vdev_lock(v->shm));
  if (used)
    *used = nw__vdev_used(v->shm);
  if (capacity)
    *capacity = v->shm->capacity;
  nw__vdev_unlock(v->shm);
  return 0;
}

/* Copies the live slots out; self_slot < 0 marks by pid instead. Called
 * with the lock held (and so after reclaim). */
static void nw__vdev_collect(const nw__vdev_shm *shm, int self_slot,
                             nw_vdev_proc *procs, int max, int *n) {
  int count = 0;
  pid_t me = getpid();
  for (int i = 0; i < NW_VDEV_SLOTS; i++) {
    const nw__vdev_slot *s = &shm->slots[i];
    if (s->pid == 0)
      continue;
    if (count < max && procs) {
      nw_vdev_proc *p = &procs[count];
      p->pid = s->pid;
      p->uid = s->uid;
      memcpy(p->run_id, s->run_id, sizeof p->run_id);
      p->run_id[sizeof p->run_id - 1] = '\0';
      p->bytes = s->bytes;
      p->start_time = s->start_time;
      p->self = self_slot >= 0 ? i == self_slot : s->pid == me;
    }
    count++;
  }
  *n = count;
}

int nw_vdev_list(nw_vdev *v, nw_vdev_proc *procs, int max, int *n) {
  if (!nw__vdev_owned(v))
    return NW_EINTERNAL;
  NW_TRY(nw__vdev_lock(v->shm));
  nw__vdev_collect(v->shm, v->slot, procs, max, n);
  nw__vdev_unlock(v->shm);
  return 0;
}

void nw_vdev_close(nw_vdev *v) {
  if (!v)
    return;
  if (nw__vdev_owned(v) && nw__vdev_lock(v->shm) == 0) {
    nw__vdev_slot *s = &v->shm->slots[v->slot];
    if (s->pid == v->pid) {
      s->pid = 0;
      s->bytes = 0;
    }
    nw__vdev_unlock(v->shm);
  }
  munmap(v->shm, sizeof *v->shm);
  free(v);
}

int nw_vdev_list_by_name(const char *name, nw_vdev_proc *procs, int max, int *n,
                         uint64_t *capacity, char *err, size_t errlen) {
  *n = 0;
  NW_TRY(nw__vdev_check_name(name, err, errlen));
  nw__vdev_shm *shm;
  NW_TRY(nw__vdev_map(name, 0, 0, &shm, err, errlen));
  int rc = nw__vdev_lock(shm);
  if (rc < 0) {
    nw__vdev_err(err, errlen,
                 "virtual device %s: cannot take its lock" NW__VDEV_HINT "%s",
                 name, name);
  } else {
    nw__vdev_collect(shm, -1, procs, max, n);
    if (capacity)
      *capacity = shm->capacity;
    nw__vdev_unlock(shm);
  }
  munmap(shm, sizeof *shm);
  return rc;
}

static double nw__vdev_mib(uint64_t bytes) {
  return (double)bytes / (1024.0 * 1024.0);
}

int nw_vdev_print(FILE *f, const char *name, char *err, size_t errlen) {
  nw_vdev_proc procs[NW_VDEV_SLOTS];
  int n;
  uint64_t capacity;
  NW_TRY(nw_vdev_list_by_name(name, procs, NW_VDEV_SLOTS, &n, &capacity, err,
                              errlen));
  uint64_t used = 0;
  for (int i = 0; i < n; i++)
    used += procs[i].bytes;
  const char *rule = "+-------------------------------------------------------"
                     "-----------------------+";
  fprintf(f, "%s\n", rule);
  fprintf(f, "| %-76s |\n", "nightwatch virtual device");
  char line[128];
  snprintf(line, sizeof line, "%.64s  (" NW_VDEV_SHM_DIR NW_VDEV_PREFIX "%s)",
           name, name);
  fprintf(f, "| %-76.76s |\n", line);
  snprintf(line, sizeof line,
           "memory %.1f MiB / %.1f MiB used (%.0f%%), %d process%s",
           nw__vdev_mib(used), nw__vdev_mib(capacity),
           100.0 * (double)used / (double)capacity, n, n == 1 ? "" : "es");
  fprintf(f, "| %-76.76s |\n", line);
  fprintf(f, "%s\n", rule);
  fprintf(f, "| %8s  %-12s  %-36.36s  %12s |\n", "PID", "USER", "RUN ID",
          "MEMORY");
  fprintf(f, "%s\n", rule);
  if (n == 0)
    fprintf(f, "| %-76s |\n", "no processes on this device");
  for (int i = 0; i < n; i++) {
    char user[32];
    struct passwd pw, *res = NULL;
    char pwbuf[1024];
    if (getpwuid_r(procs[i].uid, &pw, pwbuf, sizeof pwbuf, &res) == 0 && res)
      snprintf(user, sizeof user, "%s", res->pw_name);
    else
      snprintf(user, sizeof user, "%u", procs[i].uid);
    snprintf(line, sizeof line, "%.1f MiB", nw__vdev_mib(procs[i].bytes));
    fprintf(f, "| %8d  %-12.12s  %-36.36s  %12s |\n", procs[i].pid, user,
            procs[i].run_id[0] ? procs[i].run_id : "-", line);
  }
  fprintf(f, "%s\n", rule);
  return ferror(f) ? NW_EIO : 0;
}

int nw_vdev_unlink(const char *name) {
  NW_TRY(nw__vdev_check_name(name, NULL, 0));
  char shm[sizeof NW_VDEV_PREFIX + NW_VDEV_NAME_MAX];
  nw__vdev_shm_name(shm, sizeof shm, name);
  if (shm_unlink(shm) != 0)
    return errno == ENOENT ? NW_ENOTFOUND : NW_ESYS;
  return 0;
}

int nw__vdev_test_lock(nw_vdev *v) {
  if (!nw__vdev_owned(v))
    return NW_EINTERNAL;
  return nw__vdev_lock(v->shm);
}
