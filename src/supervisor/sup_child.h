/* sup_child.h — starting, signalling and reaping the supervised trainer,
 * and signalling other processes without recycled-pid accidents.
 * defines: nw_child_spec, nw_child, nw_child_spawn, nw_child_signal,
 *          nw_child_signal_group, nw_child_reap, nw_child_close,
 *          nw_child_env_build, nw_child_env_free, nw_pidfd_open,
 *          nw_pidfd_send, nw_which
 *
 * The child: own process group (setpgid(0,0)), PR_SET_PDEATHSIG SIGKILL
 * (checked against a parent that died before the prctl), default signal
 * dispositions and an empty mask, the status pipe's write end left open
 * across exec. An exec failure reaches the parent through a CLOEXEC pipe
 * (libuv's way), so "no such program" is an error of the spawn, not an exit
 * code to guess at. */
#ifndef NW_SUP_CHILD_H
#define NW_SUP_CHILD_H

#include <stddef.h>
#include <sys/types.h>

typedef struct {
  char *const *argv;  /* argv[0]: a path (nw_which resolves bare names) */
  char *const *envp;  /* the whole environment; "NIGHTWATCH_STATUS_FD=%d" is
                         added by spawn */
  int capture_stderr; /* 1: the child's stderr goes to a pipe */
} nw_child_spec;

typedef struct {
  pid_t pid;     /* 0 when none */
  int pidfd;     /* readable when the child exits; -1 when none */
  int status_fd; /* read end of the status pipe, non-blocking; -1 at EOF */
  int stderr_fd; /* read end of the stderr pipe, non-blocking, or -1 */
  int reaped;    /* the pid is gone: no more signals by pid or group */
} nw_child;

/* Forks and execs. Returns 0; NW_ECONFIG when exec failed (err: "PATH:
 * reason"; the child is already reaped); NW_ESYS for pipe/fork failures. */
int nw_child_spawn(const nw_child_spec *spec, nw_child *c, char *err,
                   size_t errlen);

/* sig to the child itself through its pidfd. */
int nw_child_signal(nw_child *c, int sig);
/* sig to the child's process group. Safe while the child is not reaped: its
 * pid (= the group id) cannot be reused before that. */
int nw_child_signal_group(nw_child *c, int sig);

/* Reaps the child if it exited: returns 1 with the wait status in *status,
 * 0 when it still runs, NW_ESYS on failure. */
int nw_child_reap(nw_child *c, int *status);

/* Closes the descriptors (the child must be reaped or abandoned). */
void nw_child_close(nw_child *c);

/* environ without the names in unset (NULL-terminated), plus set
 * ("NAME=value", NULL-terminated). NULL when out of memory. */
char **nw_child_env_build(const char *const *unset, const char *const *set);
void nw_child_env_free(char **env);

/* pidfd_open / pidfd_send_signal (through syscall(2)). */
int nw_pidfd_open(pid_t pid);
int nw_pidfd_send(int pidfd, int sig);

/* The path execve needs for name: name itself when it holds a '/', else
 * the first executable match in $PATH. 0 or NW_ENOTFOUND. */
int nw_which(const char *name, char *out, size_t len);

#endif
