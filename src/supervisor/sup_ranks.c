/* sup_ranks.c — the trainers of one run: one per rank of the data-parallel
 * world (one for world.size 1), started together, read line by line, and
 * ended together. The first rank to fail is the one the recovery is about;
 * its peers are killed at once (they hold no state the failing rank has not
 * saved: every rank is identical at a step boundary) so that no rank stays
 * blocked in a collective. docs/multi-gpu.md, "The supervisor". */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "checkpoints/ckpt.h"
#include "protocol/exit_codes.h"
#include "protocol/world.h"
#include "supervisor/supervisor_internal.h"
#include "supervisor/trainer_env.h"

/* ---- starting ---- */

static void nw_sup_rank_reset(nw_sup_rank *r) {
  memset(&r->child, 0, sizeof r->child);
  r->child.pidfd = r->child.status_fd = r->child.stderr_fd = -1;
  r->line_len = 0;
  r->err_tail[0] = '\0';
  r->wstatus = 0;
}

/* Takes down the ranks started so far (a later rank could not start). */
static void nw_sup_ranks_abandon(nw_sup *s) {
  nw_sup_signal_ranks(s, SIGKILL);
  for (int r = 0; r < s->n_ranks; r++) {
    nw_child *c = &s->rank[r].child;
    int st;
    while (c->pid > 0 && !c->reaped && nw_child_reap(c, &st) == 0)
      usleep(10000);
    nw_child_close(c);
  }
  s->n_ranks = s->n_live = 0;
}

void nw_sup_start(nw_sup *s) {
  char *argv[512], err[1024];
  nw_trainer_args args;
  int world = s->cfg.batch.world > 0 ? s->cfg.batch.world : 1;
  nw_trainer_argv(s->opt, &s->cfg, &args, argv, 512);
  s->oom_kill_known = nw_sup_oom_kill_count(&s->oom_kill_before) == 0;
  /* a fresh name per start: nothing of a dead world is ever joined */
  snprintf(s->comm, sizeof s->comm, "nw-%s-%d-%d", s->run_id, (int)getpid(),
           s->starts + 1);
  double now = nw_clock_now();
  s->n_ranks = s->n_live = 0;
  s->fail_rank = -1;
  for (int r = 0; r < world; r++) {
    nw_sup_rank *rk = &s->rank[r];
    nw_sup_rank_reset(rk);
    char **env = nw_trainer_env(s->opt, &s->cfg, s->run_id, s->comm, r);
    int rc = NW_EHOSTMEM;
    snprintf(err, sizeof err, "out of memory");
    if (env) {
      nw_child_spec spec = {argv, env, s->opt->command != NULL};
      rc = nw_child_spawn(&spec, &rk->child, err, sizeof err);
      nw_child_env_free(env);
    }
    if (rc < 0) {
      /* exec failed (config error, never retried) or no fork: both final */
      nw_error("cannot start the trainer%s: %s", world > 1 ? " ranks" : "",
               err);
      nw_sup_ranks_abandon(s);
      s->exit_code =
          rc == NW_ECONFIG ? NW_SUP_EXIT_CONFIG : NW_SUP_EXIT_FAILURE;
      nw_sup_ledger(s, json_pack("{s:s, s:s, s:s}", "event", "config-error",
                                 "evidence", err, "action", "give up"));
      nw_sup_set_state(s, NW_SUP_GAVE_UP, 0);
      return;
    }
    s->n_ranks++;
    s->n_live++;
  }
  s->starts++;
  s->spawn_t = s->last_line_t = now;
  s->stderr_oom = s->seen_stop = s->seen_finish = s->seen_oom = 0;
  s->start_line_t = s->resume_line_t = 0;
  s->resume_step = -1;
  nw_recovery_history_started(&s->hist, now);
  json_t *pids = json_array();
  for (int r = 0; r < s->n_ranks; r++)
    json_array_append_new(pids, json_integer(s->rank[r].child.pid));
  if (world > 1)
    nw_info("trainers started: %d ranks, pids %d..%d (start %d), micro %d "
            "accum %d max_len %d",
            world, (int)s->rank[0].child.pid, (int)s->rank[world - 1].child.pid,
            s->starts, s->cfg.batch.micro, nw_config_accum(&s->cfg.batch),
            nw_config_max_len(&s->cfg));
  else
    nw_info("trainer started: pid %d (start %d), micro %d accum %d max_len %d",
            (int)s->rank[0].child.pid, s->starts, s->cfg.batch.micro,
            nw_config_accum(&s->cfg.batch), nw_config_max_len(&s->cfg));
  nw_sup_ledger(s, json_pack("{s:s, s:i, s:o, s:i, s:o, s:i}", "event", "start",
                             "pid", (int)s->rank[0].child.pid, "pids", pids,
                             "start", s->starts, "settings",
                             nw_ledger_settings(&s->cfg), "supervisor_pid",
                             (int)getpid()));
  nw_sup_set_state(s, NW_SUP_STARTING, now + s->cfg.supervisor.hang_timeout);
}

/* ---- signals and exits ---- */

void nw_sup_signal_ranks(nw_sup *s, int sig) {
  for (int r = 0; r < s->n_ranks; r++) {
    nw_child *c = &s->rank[r].child;
    if (c->pid > 0 && !c->reaped)
      nw_child_signal_group(c, sig);
  }
}

void nw_sup_ranks_close(nw_sup *s) {
  for (int r = 0; r < s->n_ranks; r++)
    nw_child_close(&s->rank[r].child);
}

/* A rank that ended well: finished, stopped, or left because a peer
 * failed (NW_EXIT_PEER: the peer is the one to look at). */
static int nw_sup_rank_ok(int wstatus) {
  return WIFEXITED(wstatus) && (WEXITSTATUS(wstatus) == NW_EXIT_FINISHED ||
                                WEXITSTATUS(wstatus) == NW_EXIT_PEER);
}

void nw_sup_rank_exited(nw_sup *s, int r, int wstatus) {
  s->rank[r].wstatus = wstatus;
  s->n_live--;
  if (!nw_sup_rank_ok(wstatus) && s->fail_rank < 0) {
    s->fail_rank = r;
    if (s->n_live > 0) {
      /* its peers wait in a collective for it: SIGKILL, not SIGTERM (a stop
       * checkpoint would race the failing rank's emergency checkpoint, and
       * every rank's state at the step boundary is the one it saved) */
      nw_warn("rank %d (pid %d) failed: killing the %d other rank%s", r,
              (int)s->rank[r].child.pid, s->n_live, s->n_live == 1 ? "" : "s");
      nw_sup_signal_ranks(s, SIGKILL);
    }
  }
  if (s->n_live > 0)
    return;
  int primary = s->fail_rank >= 0 ? s->fail_rank : 0;
  nw_sup_on_exit(s, primary, s->rank[primary].wstatus);
}

/* ---- reading ---- */

int nw_sup_read_status(nw_sup *s, int r, double now) {
  nw_sup_rank *rk = &s->rank[r];
  int got = 0;
  for (;;) {
    if (rk->line_len == sizeof rk->line - 1) /* a line too long: drop it */
      rk->line_len = 0;
    ssize_t n = read(rk->child.status_fd, rk->line + rk->line_len,
                     sizeof rk->line - 1 - rk->line_len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      if (n == 0 || errno != EAGAIN) {
        close(rk->child.status_fd);
        rk->child.status_fd = -1;
      }
      break;
    }
    rk->line_len += (size_t)n;
    rk->line[rk->line_len] = '\0';
    char *p = rk->line, *nl;
    while ((nl = strchr(p, '\n'))) {
      *nl = '\0';
      nw_sup_on_line(s, r, p, now);
      got = 1;
      p = nl + 1;
    }
    rk->line_len -= (size_t)(p - rk->line);
    memmove(rk->line, p, rk->line_len);
  }
  return got;
}

static const char *const nw_sup_oom_words[] = {"CUDA out of memory",
                                               "CUBLAS_STATUS_ALLOC_FAILED",
                                               "OutOfMemoryError", NULL};

/* A foreign trainer's stderr: copied to ours, scanned for OOM messages
 * (across read boundaries through err_tail). */
int nw_sup_read_stderr(nw_sup *s, int r) {
  nw_sup_rank *rk = &s->rank[r];
  int got = 0;
  char buf[4096 + sizeof rk->err_tail];
  for (;;) {
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
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(2, buf + tail + off, (size_t)(n - off));
      if (w <= 0 && errno != EINTR)
        break;
      off += w > 0 ? w : 0;
    }
    size_t len = tail + (size_t)n;
    buf[len] = '\0';
    for (int i = 0; nw_sup_oom_words[i]; i++)
      if (memmem(buf, len, nw_sup_oom_words[i], strlen(nw_sup_oom_words[i])))
        s->stderr_oom = 1;
    size_t keep = len < 63 ? len : 63; /* longer than the longest word */
    memcpy(rk->err_tail, buf + len - keep, keep);
    rk->err_tail[keep] = '\0';
  }
  return got;
}
