/* ckpt_verify.c — verification in a forked child under a time limit. HDF5
 * can hang or crash on a damaged file (HDFGroup/hdf5#1707); the child takes
 * that risk, the caller only waits, up to the limit, and kills it after. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "checkpoints/ckpt_internal.h"

/* The child: one byte of result (0, or -NW_E*), then the message. It never
 * returns: _exit skips atexit handlers (HDF5's among them) and stdio
 * buffers inherited from the parent. */
static void nw_ckpt_child(const char *path, int wfd, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent)
    _exit(120);
  signal(SIGPIPE, SIG_IGN);
  /* test-only: a verifier that never answers, as HDF5 on some damaged
   * files (the fault suite proves the caller's limit with it) */
  const char *fault = getenv("NIGHTWATCH_TEST_CKPT_FAIL");
  while (fault && strcmp(fault, "verify-hang") == 0)
    pause();
  char msg[1024];
  msg[0] = 0;
  int rc = nw_ckpt_verify(path, msg + 1, sizeof msg - 1);
  msg[0] = (char)(unsigned char)(rc < 0 ? -rc : 0);
  size_t len = 1 + (rc < 0 ? strlen(msg + 1) : 0);
  for (size_t done = 0; done < len;) {
    ssize_t w = write(wfd, msg + done, len - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    done += (size_t)w;
  }
  _exit(rc < 0 ? 1 : 0);
}

/* About once a second while the child works: search->waiting, a
 * heartbeat for a supervisor that counts silence as a hang. The longest
 * poll wait (ms) that keeps that rhythm. */
static int nw_ckpt_beat(const nw_ckpt_search *search, const char *path,
                        double started, double *beat, int wait_ms) {
  if (!search || !search->waiting)
    return wait_ms;
  double now = nw_clock_now();
  if (now - *beat >= 1.0) {
    search->waiting(search->user, path, now - started);
    *beat = now;
  }
  return wait_ms < 0 || wait_ms > 1000 ? 1000 : wait_ms;
}

/* Reads the child's report from fd into msg (of size len, terminated)
 * until EOF (the child's exit closes the pipe) or the deadline (0: none).
 * Returns 1 when the deadline passed first. */
static int nw_ckpt_read_report(int fd, double deadline, char *msg, size_t len,
                               size_t *got, const char *path,
                               const nw_ckpt_search *search) {
  int timed_out = 0;
  double started = nw_clock_now(), beat = started;
  *got = 0;
  for (;;) {
    int wait_ms = -1;
    if (deadline > 0) {
      double left = deadline - nw_clock_now();
      if (left <= 0) {
        timed_out = 1;
        break;
      }
      wait_ms = (int)(left * 1000.0) + 1;
    }
    wait_ms = nw_ckpt_beat(search, path, started, &beat, wait_ms);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, wait_ms);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr < 0)
      break;
    if (pr == 0)
      continue; /* the deadline check above decides */
    ssize_t r = read(fd, msg + *got, len - 1 - *got);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (r <= 0)
      break;
    *got += (size_t)r;
    if (*got == len - 1)
      break;
  }
  msg[*got] = 0;
  return timed_out;
}

/* Reaps the child: it has closed its end, so it is exiting; still bounded
 * by the deadline (0: none). Returns 1 when the deadline passed first;
 * *reaped says whether *status is the child's. */
static int nw_ckpt_reap(pid_t pid, double deadline, int *status, int *reaped) {
  *reaped = 0;
  for (;;) {
    pid_t w = waitpid(pid, status, WNOHANG);
    if (w == pid) {
      *reaped = 1;
      return 0;
    }
    if (w < 0 && errno != EINTR)
      return 0; /* ECHILD: reaped elsewhere (SIGCHLD ignored); the pipe says */
    if (deadline > 0 && nw_clock_now() >= deadline)
      return 1;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

int nw_ckpt_verify_isolated(const char *path, double timeout_s, char *err,
                            size_t errlen) {
  return nw_ckpt_verify_watched(path, timeout_s, NULL, err, errlen);
}

int nw_ckpt_verify_watched(const char *path, double timeout_s,
                           const nw_ckpt_search *search, char *err,
                           size_t errlen) {
  const char *base = nw_ckpt__base(path);
  struct stat sb;
  if (stat(path, &sb) != 0) {
    snprintf(err, errlen, "%s: %s", base, strerror(errno));
    return NW_EDATA;
  }
  if (!S_ISREG(sb.st_mode)) {
    snprintf(err, errlen,
             "%s: not a regular file (never a checkpoint we wrote)", base);
    return NW_EDATA;
  }
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) {
    snprintf(err, errlen, "%s: pipe: %s", base, strerror(errno));
    return NW_ESYS;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "%s: fork: %s", base, strerror(errno));
    close(pfd[0]);
    close(pfd[1]);
    return NW_ESYS;
  }
  if (pid == 0) {
    close(pfd[0]);
    nw_ckpt_child(path, pfd[1], parent);
  }
  close(pfd[1]);

  double deadline = timeout_s > 0 ? nw_clock_now() + timeout_s : 0;
  char msg[1024];
  size_t got = 0;
  int timed_out = nw_ckpt_read_report(pfd[0], deadline, msg, sizeof msg, &got,
                                      path, search);
  close(pfd[0]);
  int status = 0, reaped = 0;
  if (!timed_out)
    timed_out = nw_ckpt_reap(pid, deadline, &status, &reaped);
  if (timed_out) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
    snprintf(err, errlen, "%s: verification timed out after %g s", base,
             timeout_s);
    return NW_EDATA;
  }
  if (reaped && WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    snprintf(err, errlen, "%s: verification crashed: signal %d (%s)", base, sig,
             strsignal(sig));
    return NW_EDATA;
  }
  if (got == 0) {
    snprintf(err, errlen, "%s: verifier exited with status %d and no report",
             base, reaped && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return NW_EDATA;
  }
  int code = (unsigned char)msg[0];
  if (code == 0)
    return 0;
  snprintf(err, errlen, "%s", msg + 1);
  return -code;
}
