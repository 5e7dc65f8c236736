/* sup_ranks.h — the trainers of one run: one per rank of the data-parallel
 * world (one for world.size 1), started together, read line by line, and
 * ended together (docs/multi-gpu.md, "The supervisor"). Processes and
 * pipes only: what a line or an exit means, and what is done about it, is
 * the state machine's (sup_machine.c).
 * defines: nw_sup_rank, nw_sup_ranks, nw_sup_rank_exit,
 *          nw_sup_ranks_start, nw_sup_ranks_signal, nw_sup_ranks_close,
 *          nw_sup_ranks_exited, nw_sup_ranks_primary, nw_sup_ranks_pids,
 *          nw_sup_ranks_kill_all, nw_sup_rank_fill, nw_sup_rank_line,
 *          nw_sup_rank_read_stderr */
#ifndef NW_SUP_RANKS_H
#define NW_SUP_RANKS_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"           // defines: nw_config
#include "supervisor/sup_child.h"  // defines: nw_child
#include "supervisor/supervisor.h" // defines: nw_sup_options, NW_SUP_MAX_RANKS

/* One trainer process: rank r of the data-parallel world. */
typedef struct {
  nw_child child;     /* pid 0: none */
  char line[16384];   /* status bytes not yet taken as lines */
  size_t line_len;    /* bytes in line */
  size_t line_off;    /* of them, taken already */
  char err_tail[128]; /* end of a foreign trainer's stderr, for matches */
  int wstatus;        /* its wait status, once reaped */
} nw_sup_rank;

typedef struct {
  nw_sup_rank rank[NW_SUP_MAX_RANKS];
  int n;          /* started by the last start */
  int n_live;     /* of those, not reaped yet */
  int fail_rank;  /* the first to fail since the start; -1: none */
  char comm[160]; /* NIGHTWATCH_COMM of the last start */
  int starts;     /* starts of the world */
  double spawn_t; /* monotonic time of the last start */
  int stderr_oom; /* a foreign trainer printed an out-of-memory message */
  /* the cgroup's oom_kill counter at the last start (sup_recover.h) */
  uint64_t oom_kill_before;
  int oom_kill_known;
} nw_sup_ranks;

/* What a rank's exit means for the world. */
typedef enum {
  NW_SUP_RANK_EXIT_QUIET, /* others live; nothing to do */
  NW_SUP_RANK_EXIT_FIRST, /* the first failure, peers live: kill them */
  NW_SUP_RANK_EXIT_ALL,   /* every rank is gone */
} nw_sup_rank_exit;

/* Starts every rank of the world at now with the settings cfg. Returns 0;
 * NW_ECONFIG (exec failed: never retried) or NW_ESYS/NW_EHOSTMEM, err
 * saying why, with the ranks started so far killed and reaped. */
int nw_sup_ranks_start(nw_sup_ranks *rs, const nw_sup_options *o,
                       const nw_config *cfg, const char *run_id, double now,
                       char *err, size_t errlen);
/* sig to the process group of every rank not reaped yet. */
void nw_sup_ranks_signal(nw_sup_ranks *rs, int sig);
/* Closes every rank's descriptors (all reaped). */
void nw_sup_ranks_close(nw_sup_ranks *rs);
/* Leaving with ranks alive (a loop failure): SIGKILL and reap them. */
void nw_sup_ranks_kill_all(nw_sup_ranks *rs);
/* Rank r was reaped with wstatus. */
nw_sup_rank_exit nw_sup_ranks_exited(nw_sup_ranks *rs, int r, int wstatus);
/* The rank a recovery is about: the first that failed, else 0. */
int nw_sup_ranks_primary(const nw_sup_ranks *rs);
/* Every rank's pid into pids (NW_SUP_MAX_RANKS); the count. */
int nw_sup_ranks_pids(const nw_sup_ranks *rs, int *pids);

/* Reads what rank rk's status pipe holds: 1 when bytes arrived, 0 when
 * none (the pipe is closed at end of file). Lines are then taken with
 * nw_sup_rank_line until it returns NULL. */
int nw_sup_rank_fill(nw_sup_rank *rk);
/* The next whole line (NUL-terminated, valid until the next fill), or
 * NULL. */
const char *nw_sup_rank_line(nw_sup_rank *rk);
/* A foreign trainer's stderr: copied to ours, scanned for out-of-memory
 * messages (rs->stderr_oom). 1 when output arrived. */
int nw_sup_rank_read_stderr(nw_sup_ranks *rs, int r);

#endif
