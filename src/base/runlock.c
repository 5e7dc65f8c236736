/* runlock.c — the run directory's exclusive lock. */
#define _GNU_SOURCE
#include "base/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"

static int nw_runlock_read_pid(int fd) {
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  return atoi(buf);
}

int nw_runlock_acquire(const char *dir, int *holder, char *err, size_t errlen) {
  char path[4096];
  *holder = 0;
  snprintf(path, sizeof path, "%s/%s", dir, NW_RUNLOCK_FILE);
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
      *holder = nw_runlock_read_pid(fd);
      close(fd);
      snprintf(err, errlen,
               "%s is held by pid %d: another supervisor runs "
               "this run",
               path, *holder);
      return NW_EBUSY;
    }
    close(fd);
    snprintf(err, errlen, "%s: lock: %s", path, strerror(e));
    return NW_ESYS;
  }
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
    snprintf(err, errlen, "%s: write: %s", path, strerror(errno));
    close(fd);
    return NW_ESYS;
  }
  return fd;
}

int nw_runlock_holder(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, NW_RUNLOCK_FILE);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  /* F_OFD_GETLK wants a lock type we could take: a read lock on O_RDONLY */
  struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
  int pid = 0;
  if (fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
    pid = nw_runlock_read_pid(fd);
  close(fd);
  return pid;
}

void nw_runlock_release(int fd) {
  if (fd >= 0)
    close(fd);
}
