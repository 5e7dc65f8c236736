/* sup_kill.c — SIGTERM, grace, SIGKILL for provable duplicates. */
#define _GNU_SOURCE
#include "supervisor/sup_kill.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/runlock.h" // defines: nw_runlock_who, NW_TRAINLOCK_FILE

#include "base/log.h"             // defines: nw_info, nw_warn, nw_error
#include "supervisor/sup_child.h" // defines: nw_pidfd_open, nw_pidfd_send

void nw_sup_kills_init(nw_sup_kills *k) { memset(k, 0, sizeof *k); }

/* The proof, taken after the pidfd pins the process: it is on the device
 * right now with this uid (and, run_id non-NULL, this run id). A device
 * whose holders cannot be listed (NVML cannot answer, a GPU we cannot
 * name) is no proof, and without proof nothing is killed. */
static int nw_sup_kills_proven(const nw_device_ref *dev, int pid,
                               const char *run_id) {
  nw_holders hs;
  if (nw_holders_list(dev, &hs) < 0) {
    char where[160];
    nw_holders_describe(dev, where, sizeof where);
    nw_warn("cannot prove that pid %d is on %s: %s", pid, where, hs.note);
    return 0;
  }
  return nw_holders_find(&hs, pid, (unsigned)getuid(), run_id) >= 0;
}

/* The other proof: it holds this run directory's trainer lock, with our
 * uid and our run id written in it (base/runlock.h). */
static int nw_sup_kills_holds_lock(const char *run_dir, int pid,
                                   const char *run_id) {
  nw_runlock_holder_info h;
  nw_runlock_who(run_dir, NW_TRAINLOCK_FILE, &h);
  return h.pid == pid && !strcmp(h.run_id, run_id) &&
         nw_sup_pid_uid(pid) == (long)getuid();
}

long nw_sup_pid_uid(int pid) {
  char path[64];
  struct stat sb;
  snprintf(path, sizeof path, "/proc/%d", pid);
  return stat(path, &sb) == 0 ? (long)sb.st_uid : -1;
}

/* Pins pid with a pidfd, checks the proof again (a pid can be reused
 * between the evidence and now), then SIGTERM. */
static int nw_sup_kills_pin(nw_sup_kills *k, int pid, const nw_device_ref *dev,
                            const char *lock_dir, const char *run_id,
                            double grace) {
  if (pid <= 1 || pid == getpid() || k->n == NW_SUP_MAX_KILL)
    return 0;
  int fd = nw_pidfd_open(pid);
  if (fd < 0) {
    nw_info("duplicate %d is already gone", pid);
    return 0;
  }
  int proven = dev ? nw_sup_kills_proven(dev, pid, run_id)
                   : nw_sup_kills_holds_lock(lock_dir, pid, run_id);
  if (!proven) {
    nw_warn("process %d is no longer provably a duplicate of this run: "
            "not killed",
            pid);
    close(fd);
    return 0;
  }
  if (nw_pidfd_send(fd, SIGTERM) < 0) {
    close(fd);
    return 0;
  }
  nw_warn("duplicate of this run, pid %d: SIGTERM (SIGKILL in %.0f s)", pid,
          grace);
  k->pidfd[k->n] = fd;
  k->pid[k->n++] = pid;
  k->grace = grace;
  return 1;
}

int nw_sup_kills_term(nw_sup_kills *k, const nw_device_ref *dev, int pid,
                      const char *run_id, double grace) {
  return nw_sup_kills_pin(k, pid, dev, NULL, run_id, grace);
}

int nw_sup_kills_term_lock_holder(nw_sup_kills *k, const char *run_dir, int pid,
                                  const char *run_id, double grace) {
  return nw_sup_kills_pin(k, pid, NULL, run_dir, run_id, grace);
}

int nw_sup_kills_reap(nw_sup_kills *k) {
  for (int i = 0; i < k->n;) {
    struct pollfd p = {.fd = k->pidfd[i], .events = POLLIN};
    if (poll(&p, 1, 0) > 0) {
      nw_info("duplicate %d is gone", k->pid[i]);
      close(k->pidfd[i]);
      k->pidfd[i] = k->pidfd[k->n - 1];
      k->pid[i] = k->pid[k->n - 1];
      k->n--;
      continue;
    }
    i++;
  }
  return k->n;
}

void nw_sup_kills_sigkill(nw_sup_kills *k) {
  for (int i = 0; i < k->n; i++) {
    nw_warn("duplicate %d outlived the grace: SIGKILL", k->pid[i]);
    nw_pidfd_send(k->pidfd[i], SIGKILL);
  }
}

void nw_sup_kills_forget(nw_sup_kills *k, int survived) {
  for (int i = 0; i < k->n; i++) {
    if (survived)
      nw_error("duplicate %d survives SIGKILL; going on", k->pid[i]);
    close(k->pidfd[i]);
  }
  k->n = 0;
}
