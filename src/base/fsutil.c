/* fsutil.c — write to a temporary, fsync, rename, fsync the directory. */
#define _GNU_SOURCE
#include "base/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"

int nw_fsync_parent_dir(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return NW_EIO;
  int rc = fsync(fd) == 0 ? 0 : NW_EIO;
  close(fd);
  return rc;
}

int nw_write_file_atomic(const char *path, const void *data, size_t len,
                         char *err, size_t errlen) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
    return NW_EIO;
  }
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      snprintf(err, errlen, "%s: write: %s", tmp,
               w < 0 ? strerror(errno) : "short write");
      goto fail;
    }
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0) {
    snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
    goto fail;
  }
  if (close(fd) != 0) {
    fd = -1;
    snprintf(err, errlen, "%s: close: %s", tmp, strerror(errno));
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0) {
    snprintf(err, errlen, "rename %s -> %s: %s", tmp, path, strerror(errno));
    goto fail;
  }
  if (nw_fsync_parent_dir(path) < 0) {
    snprintf(err, errlen, "%s: fsync of its directory failed", path);
    return NW_EIO; /* the file is in place; only its durability is unsure */
  }
  return 0;
fail:
  if (fd >= 0)
    close(fd);
  unlink(tmp);
  return NW_EIO;
}

int nw_mkdir_p(const char *dir, char *err, size_t errlen) {
  char buf[4096];
  size_t n = (size_t)snprintf(buf, sizeof buf, "%s", dir);
  if (n >= sizeof buf) {
    snprintf(err, errlen, "%s: path too long", dir);
    return NW_ECONFIG;
  }
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0)
      continue;
    char c = buf[i];
    buf[i] = 0;
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "mkdir %s: %s", buf, strerror(errno));
      return NW_EIO;
    }
    buf[i] = c;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: not a directory", dir);
    return NW_EIO;
  }
  return 0;
}
