/* sup_child.c — fork/exec of the trainer, pidfds. */
#define _GNU_SOURCE
#include "supervisor/sup_child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"

extern char **environ;

int nw_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int nw_pidfd_send(int pidfd, int sig) {
  return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int nw_which(const char *name, char *out, size_t len) {
  if (strchr(name, '/')) {
    snprintf(out, len, "%s", name);
    return 0;
  }
  const char *path = getenv("PATH");
  if (!path || !*path)
    path = "/usr/local/bin:/usr/bin:/bin";
  while (*path) {
    const char *end = strchr(path, ':');
    size_t n = end ? (size_t)(end - path) : strlen(path);
    snprintf(out, len, "%.*s/%s", (int)n, n ? path : ".", name);
    if (access(out, X_OK) == 0)
      return 0;
    path += n + (end ? 1 : 0);
  }
  return NW_ENOTFOUND;
}

static int nw_child_env_unset(const char *entry, const char *const *unset) {
  for (int i = 0; unset && unset[i]; i++) {
    size_t n = strlen(unset[i]);
    if (strncmp(entry, unset[i], n) == 0 && entry[n] == '=')
      return 1;
  }
  return 0;
}

char **nw_child_env_build(const char *const *unset, const char *const *set) {
  size_t n = 0, k = 0;
  while (environ[n])
    n++;
  for (size_t i = 0; set && set[i]; i++)
    n++;
  char **env = calloc(n + 1, sizeof *env);
  if (!env)
    return NULL;
  for (size_t i = 0; environ[i]; i++)
    if (!nw_child_env_unset(environ[i], unset) &&
        !(env[k++] = strdup(environ[i])))
      goto fail;
  for (size_t i = 0; set && set[i]; i++)
    if (!(env[k++] = strdup(set[i])))
      goto fail;
  return env;
fail:
  nw_child_env_free(env);
  return NULL;
}

void nw_child_env_free(char **env) {
  if (!env)
    return;
  for (size_t i = 0; env[i]; i++)
    free(env[i]);
  free(env);
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void nw_child_exec(const nw_child_spec *spec, char **envp, pid_t parent,
                          int status_w, int err_w, int exec_w) {
  int e = 0;
  if (setpgid(0, 0) < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
    e = errno;
    goto fail;
  }
  if (getppid() != parent) /* the parent died before the prctl */
    _exit(127);
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP)
      sigaction(sig, &dfl, NULL); /* fails harmlessly for glibc's own */
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (err_w >= 0 && dup2(err_w, 2) < 0) {
    e = errno;
    goto fail;
  }
  if (fcntl(status_w, F_SETFD, 0) < 0) { /* keep it across exec */
    e = errno;
    goto fail;
  }
  execve(spec->argv[0], spec->argv, envp);
  e = errno;
fail:
  while (write(exec_w, &e, sizeof e) < 0 && errno == EINTR)
    ;
  _exit(127);
}

int nw_child_spawn(const nw_child_spec *spec, nw_child *c, char *err,
                   size_t errlen) {
  int st[2] = {-1, -1}, er[2] = {-1, -1}, ex[2] = {-1, -1};
  char **envp = NULL;
  int rc = NW_ESYS;
  memset(c, 0, sizeof *c);
  c->pidfd = c->status_fd = c->stderr_fd = -1;
  if (pipe2(st, O_CLOEXEC) < 0 || pipe2(ex, O_CLOEXEC) < 0 ||
      (spec->capture_stderr && pipe2(er, O_CLOEXEC) < 0)) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    goto out;
  }
  char fdvar[48];
  snprintf(fdvar, sizeof fdvar, "NIGHTWATCH_STATUS_FD=%d", st[1]);
  const char *unset[] = {"NIGHTWATCH_STATUS_FD", NULL};
  const char *set[] = {fdvar, NULL};
  char **saved = environ;
  environ = (char **)spec->envp;
  envp = nw_child_env_build(unset, set);
  environ = saved;
  if (!envp) {
    snprintf(err, errlen, "out of host memory");
    rc = NW_EHOSTMEM;
    goto out;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    goto out;
  }
  if (pid == 0)
    nw_child_exec(spec, envp, parent, st[1], er[1], ex[1]);
  close(ex[1]);
  ex[1] = -1;
  int e = 0;
  ssize_t n;
  while ((n = read(ex[0], &e, sizeof e)) < 0 && errno == EINTR)
    ;
  if (n == (ssize_t)sizeof e) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    snprintf(err, errlen, "%s: %s", spec->argv[0], strerror(e));
    rc = NW_ECONFIG;
    goto out;
  }
  c->pid = pid;
  c->pidfd = nw_pidfd_open(pid);
  if (c->pidfd < 0) {
    snprintf(err, errlen, "pidfd_open: %s", strerror(errno));
    kill(pid, SIGKILL); /* unreaped: the pid is still ours */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      ;
    c->pid = 0;
    goto out;
  }
  c->status_fd = st[0];
  st[0] = -1;
  fcntl(c->status_fd, F_SETFL, O_NONBLOCK);
  if (spec->capture_stderr) {
    c->stderr_fd = er[0];
    er[0] = -1;
    fcntl(c->stderr_fd, F_SETFL, O_NONBLOCK);
  }
  rc = 0;
out:
  for (int i = 0; i < 2; i++) {
    if (st[i] >= 0)
      close(st[i]);
    if (er[i] >= 0)
      close(er[i]);
    if (ex[i] >= 0)
      close(ex[i]);
  }
  nw_child_env_free(envp);
  return rc;
}

int nw_child_signal(nw_child *c, int sig) {
  if (c->pidfd < 0 || c->reaped)
    return NW_ENOTFOUND;
  return nw_pidfd_send(c->pidfd, sig) < 0 && errno != ESRCH ? NW_ESYS : 0;
}

int nw_child_signal_group(nw_child *c, int sig) {
  if (c->pid <= 0 || c->reaped)
    return NW_ENOTFOUND;
  if (kill(-c->pid, sig) < 0 && errno != ESRCH)
    return nw_child_signal(c, sig); /* no group (a foreign setsid) */
  return 0;
}

int nw_child_reap(nw_child *c, int *status) {
  if (c->pid <= 0 || c->reaped)
    return NW_ENOTFOUND;
  pid_t r;
  while ((r = waitpid(c->pid, status, WNOHANG)) < 0 && errno == EINTR)
    ;
  if (r < 0)
    return NW_ESYS;
  if (r == 0)
    return 0;
  c->reaped = 1;
  return 1;
}

void nw_child_close(nw_child *c) {
  if (c->pidfd >= 0)
    close(c->pidfd);
  if (c->status_fd >= 0)
    close(c->status_fd);
  if (c->stderr_fd >= 0)
    close(c->stderr_fd);
  c->pidfd = c->status_fd = c->stderr_fd = -1;
  c->pid = 0;
}
