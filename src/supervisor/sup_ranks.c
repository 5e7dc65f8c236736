/* sup_ranks.c — the trainers of one run. The first rank to fail is the one
 * the recovery is about; its peers are killed at once (they hold no state
 * the failing rank has not saved: every rank is identical at a step
 * boundary) so that no rank stays blocked in a collective. */
#define _GNU_SOURCE
#include "supervisor/sup_ranks.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"             // defines: NW_E*
#include "base/log.h"               // defines: nw_info
#include "protocol/exit_codes.h"    // defines: NW_EXIT_*
#include "supervisor/trainer_env.h" // defines: nw_trainer_argv, ..._env

/* ---- starting ---- */

static void nw_sup_rank_reset(nw_sup_rank *r) {
  memset(&r->child, 0, sizeof r->child);
  r->child.pidfd = r->child.status_fd = r->child.stderr_fd = -1;
  r->line_len = r->line_off = 0;
  r->err_tail[0] = '\0';
  r->wstatus = 0;
}

void nw_sup_ranks_kill_all(nw_sup_ranks *rs) {
  nw_sup_ranks_signal(rs, SIGKILL);
  for (int r = 0; r < rs->n; r++) {
    nw_child *c = &rs->rank[r].child;
    int st;
    while (c->pid > 0 && !c->reaped && nw_child_reap(c, &st) == 0)
      usleep(10000);
  }
}

static void nw_sup_ranks_log_start(const nw_sup_ranks *rs,
                                   const nw_config *cfg) {
  int micro = cfg->batch.micro, accum = nw_config_accum(&cfg->batch);
  int max_len = nw_config_max_len(cfg);
  if (rs->n > 1)
    nw_info("trainers started: %d ranks, pids %d..%d (start %d), micro %d "
            "accum %d max_len %d",
            rs->n, (int)rs->rank[0].child.pid,
            (int)rs->rank[rs->n - 1].child.pid, rs->starts, micro, accum,
            max_len);
  else
    nw_info("trainer started: pid %d (start %d), micro %d accum %d max_len %d",
            (int)rs->rank[0].child.pid, rs->starts, micro, accum, max_len);
}

int nw_sup_ranks_start(nw_sup_ranks *rs, const nw_sup_options *o,
                       const nw_config *cfg, const char *run_id, double now,
                       char *err, size_t errlen) {
  char *argv[512];
  nw_trainer_args args;
  int world = cfg->batch.world > 0 ? cfg->batch.world : 1;
  nw_trainer_argv(o, cfg, o->resume_none && rs->starts == 0, &args, argv, 512);
  /* a fresh name per start: nothing of a dead world is ever joined */
  snprintf(rs->comm, sizeof rs->comm, "nw-%s-%d-%d", run_id, (int)getpid(),
           rs->starts + 1);
  rs->n = rs->n_live = 0;
  rs->fail_rank = -1;
  for (int r = 0; r < world; r++) {
    nw_sup_rank *rk = &rs->rank[r];
    nw_sup_rank_reset(rk);
    char **env = nw_trainer_env(o, cfg, run_id, rs->comm, r);
    int rc = NW_EHOSTMEM;
    snprintf(err, errlen, "out of memory");
    if (env) {
      nw_child_spec spec = {argv, env, o->command != NULL};
      rc = nw_child_spawn(&spec, &rk->child, err, errlen);
      nw_child_env_free(env);
    }
    if (rc < 0) {
      /* exec failed (config error, never retried) or no fork: both final */
      nw_sup_ranks_kill_all(rs);
      nw_sup_ranks_close(rs);
      rs->n = rs->n_live = 0;
      return rc;
    }
    rs->n++;
    rs->n_live++;
  }
  rs->starts++;
  rs->spawn_t = now;
  rs->stderr_oom = 0;
  nw_sup_ranks_log_start(rs, cfg);
  return 0;
}

/* ---- signals and exits ---- */

void nw_sup_ranks_signal(nw_sup_ranks *rs, int sig) {
  for (int r = 0; r < rs->n; r++) {
    nw_child *c = &rs->rank[r].child;
    if (c->pid > 0 && !c->reaped)
      nw_child_signal_group(c, sig);
  }
}

void nw_sup_ranks_close(nw_sup_ranks *rs) {
  for (int r = 0; r < rs->n; r++)
    nw_child_close(&rs->rank[r].child);
}

/* A rank that ended well: finished, stopped, or left because a peer
 * failed (NW_EXIT_PEER: the peer is the one to look at). */
static int nw_sup_rank_ok(int wstatus) {
  return WIFEXITED(wstatus) && (WEXITSTATUS(wstatus) == NW_EXIT_FINISHED ||
                                WEXITSTATUS(wstatus) == NW_EXIT_PEER);
}

nw_sup_rank_exit nw_sup_ranks_exited(nw_sup_ranks *rs, int r, int wstatus) {
  rs->rank[r].wstatus = wstatus;
  rs->n_live--;
  int first = !nw_sup_rank_ok(wstatus) && rs->fail_rank < 0;
  if (first)
    rs->fail_rank = r;
  if (rs->n_live == 0)
    return NW_SUP_RANK_EXIT_ALL;
  return first ? NW_SUP_RANK_EXIT_FIRST : NW_SUP_RANK_EXIT_QUIET;
}

int nw_sup_ranks_primary(const nw_sup_ranks *rs) {
  return rs->fail_rank >= 0 ? rs->fail_rank : 0;
}

int nw_sup_ranks_pids(const nw_sup_ranks *rs, int *pids) {
  for (int r = 0; r < rs->n; r++)
    pids[r] = (int)rs->rank[r].child.pid;
  return rs->n;
}

/* ---- reading ---- */

int nw_sup_rank_fill(nw_sup_rank *rk) {
  if (rk->child.status_fd < 0)
    return 0;
  /* what was taken makes room */
  memmove(rk->line, rk->line + rk->line_off, rk->line_len - rk->line_off);
  rk->line_len -= rk->line_off;
  rk->line_off = 0;
  if (rk->line_len == sizeof rk->line - 1) /* a line too long: dropped */
    rk->line_len = 0;
  for (;;) {
    ssize_t n = read(rk->child.status_fd, rk->line + rk->line_len,
                     sizeof rk->line - 1 - rk->line_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n > 0) {
      rk->line_len += (size_t)n;
      rk->line[rk->line_len] = '\0';
      return 1;
    }
    if (n == 0 || errno != EAGAIN) {
      close(rk->child.status_fd);
      rk->child.status_fd = -1;
    }
    return 0;
  }
}

const char *nw_sup_rank_line(nw_sup_rank *rk) {
  char *p = rk->line + rk->line_off;
  char *nl = memchr(p, '\n', rk->line_len - rk->line_off);
  if (!nl)
    return NULL;
  *nl = '\0';
  rk->line_off = (size_t)(nl + 1 - rk->line);
  return p;
}

static const char *const nw_sup_oom_words[] = {"CUDA out of memory",
                                               "CUBLAS_STATUS_ALLOC_FAILED",
                                               "OutOfMemoryError", NULL};

/* Copies a foreign trainer's output to our stderr. */
static void nw_sup_copy_stderr(const char *buf, ssize_t n) {
  for (ssize_t off = 0; off < n;) {
    ssize_t w = write(2, buf + off, (size_t)(n - off));
    if (w <= 0 && errno != EINTR)
      break;
    off += w > 0 ? w : 0;
  }
}

/* Scanned across read boundaries through err_tail. */
int nw_sup_rank_read_stderr(nw_sup_ranks *rs, int r) {
  nw_sup_rank *rk = &rs->rank[r];
  int got = 0;
  char buf[4096 + sizeof rk->err_tail];
  while (rk->child.stderr_fd >= 0) {
    size_t tail = strlen(rk->err_tail);
    memcpy(buf, rk->err_tail, tail);
    ssize_t n = read(rk->child.stderr_fd, buf + tail, 4096);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) {
        close(rk->child.stderr_fd);
        rk->child.stderr_fd = -1;
      }
      break;
    }
    got = 1;
    nw_sup_copy_stderr(buf + tail, n);
    size_t len = tail + (size_t)n;
    buf[len] = '\0';
    for (int i = 0; nw_sup_oom_words[i]; i++)
      if (memmem(buf, len, nw_sup_oom_words[i], strlen(nw_sup_oom_words[i])))
        rs->stderr_oom = 1;
    size_t keep = len < 63 ? len : 63; /* longer than the longest word */
    memcpy(rk->err_tail, buf + len - keep, keep);
    rk->err_tail[keep] = '\0';
  }
  return got;
}
