/* runlock.c — the run directory's exclusive locks. */
#define _GNU_SOURCE
#include "base/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"

/* "PID RUN_ID\n" (the run id may be absent). */
static void nw_runlock_read(int fd, nw_runlock_holder_info *h) {
  char buf[256];
  memset(h, 0, sizeof *h);
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0)
    return;
  buf[n] = '\0';
  char *end;
  long pid = strtol(buf, &end, 10);
  if (end == buf || pid <= 0 || pid > 1 << 30)
    return;
  h->pid = (int)pid;
  while (*end == ' ')
    end++;
  size_t len = strcspn(end, "\n");
  if (len < sizeof h->run_id)
    snprintf(h->run_id, sizeof h->run_id, "%.*s", (int)len, end);
}

int nw_runlock_take(const char *dir, const char *name, const char *what,
                    const char *run_id, nw_runlock_holder_info *holder,
                    char *err, size_t errlen) {
  char path[4096];
  memset(holder, 0, sizeof *holder);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NW_ESYS;
  }
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
    int e = errno;
    if (e == EAGAIN || e == EACCES) {
      /* The holder writes its pid right after locking; a reader racing that
       * write sees 0 and says so. */
      nw_runlock_read(fd, holder);
      close(fd);
      snprintf(err, errlen,
               "%s is held by pid %d%s%s: another %s runs this run", path,
               holder->pid, holder->run_id[0] ? " of run " : "", holder->run_id,
               what);
      return NW_EBUSY;
    }
    close(fd);
    snprintf(err, errlen, "%s: lock: %s", path, strerror(e));
    return NW_ESYS;
  }
  char line[256];
  int n = snprintf(line, sizeof line, "%d%s%s\n", (int)getpid(),
                   run_id ? " " : "", run_id ? run_id : "");
  if (n >= (int)sizeof line || ftruncate(fd, 0) < 0 ||
      pwrite(fd, line, (size_t)n, 0) != n) {
    snprintf(err, errlen, "%s: write: %s", path, strerror(errno));
    close(fd);
    return NW_ESYS;
  }
  return fd;
}

void nw_runlock_who(const char *dir, const char *name,
                    nw_runlock_holder_info *holder) {
  char path[4096];
  memset(holder, 0, sizeof *holder);
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  /* F_OFD_GETLK wants a lock type we could take: a read lock on O_RDONLY */
  struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
  if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
    nw_runlock_read(fd, holder);
  close(fd);
}

int nw_runlock_acquire(const char *dir, int *holder, char *err, size_t errlen) {
  nw_runlock_holder_info h;
  int rc = nw_runlock_take(dir, NW_RUNLOCK_FILE, "supervisor", NULL, &h, err,
                           errlen);
  *holder = h.pid;
  return rc;
}

int nw_runlock_holder(const char *dir) {
  nw_runlock_holder_info h;
  nw_runlock_who(dir, NW_RUNLOCK_FILE, &h);
  return h.pid;
}

void nw_runlock_release(int fd) {
  if (fd >= 0)
    close(fd);
}
