/* testutil.c — helpers shared by the test binaries. */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void nw_test_tmpdir(char *buf, size_t len, const char *tag) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base)
    base = "/tmp";
  snprintf(buf, len, "%s/nwtest-%s-XXXXXX", base, tag);
  if (!mkdtemp(buf)) {
    fprintf(stderr, "mkdtemp %s: %s\n", buf, strerror(errno));
    abort();
  }
}

int nw_test_rmdir_flat(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return -1;
  struct dirent *e;
  char path[1024];
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  return rmdir(dir);
}

void nw_test_write_text(const char *dir, const char *name, const char *text,
                        char *path, size_t len) {
  snprintf(path, len, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  size_t n = strlen(text);
  if (!f || fwrite(text, 1, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "write %s: %s\n", path, strerror(errno));
    abort();
  }
}

double nw_test_rel_diff(const float *a, const float *b, size_t n) {
  double maxdiff = 0, maxref = 1e-30;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > maxdiff)
      maxdiff = d;
    if (fabs((double)b[i]) > maxref)
      maxref = fabs((double)b[i]);
  }
  return maxdiff / maxref;
}

int nw_test_run_cmd(char *const argv[], char *out, size_t len) {
  int pfd[2];
  if (pipe(pfd) != 0)
    return -1;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    dup2(pfd[1], 1);
    dup2(pfd[1], 2);
    close(pfd[0]);
    close(pfd[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(pfd[1]);
  size_t used = 0;
  for (;;) {
    char tmp[4096];
    ssize_t r = read(pfd[0], tmp, sizeof tmp);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    size_t take = (size_t)r;
    if (len && used + take > len - 1)
      take = len - 1 - used;
    memcpy(out + used, tmp, take);
    used += take;
  }
  if (len)
    out[used] = 0;
  close(pfd[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  if (WIFSIGNALED(st))
    return 128 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

json_t *nw_test_ledger_load(const char *run_dir) {
  char p[1024];
  snprintf(p, sizeof p, "%s/ledger.jsonl", run_dir);
  json_t *a = json_array();
  FILE *f = fopen(p, "r");
  if (!f)
    return a;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) {
    json_t *e = json_loads(line, 0, NULL);
    if (e)
      json_array_append_new(a, e);
  }
  free(line);
  fclose(f);
  return a;
}

json_t *nw_test_ledger_find(json_t *a, const char *event, int nth) {
  size_t i;
  json_t *e;
  json_array_foreach(a, i, e) {
    const char *ev = json_string_value(json_object_get(e, "event"));
    if (ev && !strcmp(ev, event) && nth-- == 0)
      return e;
  }
  return NULL;
}

int nw_test_ledger_count(json_t *a, const char *event) {
  int n = 0;
  while (nw_test_ledger_find(a, event, n))
    n++;
  return n;
}

char *nw_test_slurp(const char *path, size_t *len) {
  if (len)
    *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  /* read to the end: a log or a FIFO has no size to ask for first */
  while (buf) {
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap)
      break;
    cap *= 2;
    char *bigger = realloc(buf, cap + 1);
    if (!bigger)
      free(buf);
    buf = bigger;
  }
  int bad = ferror(f);
  fclose(f);
  if (!buf || bad) {
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

int nw_test_wait_step_line(int fd, int step, double timeout) {
  char buf[8192];
  size_t len = 0;
  double end = nw_test_now() + timeout;
  for (;;) {
    double left = end - nw_test_now();
    if (left <= 0)
      return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(left * 1000) + 1) <= 0)
      continue;
    if (len == sizeof buf - 1)
      len = 0; /* a line too long: not one of ours */
    ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
    if (n <= 0)
      return -1;
    len += (size_t)n;
    buf[len] = '\0';
    char *p0 = buf, *nl;
    while ((nl = strchr(p0, '\n'))) {
      *nl = '\0';
      json_t *o = json_loads(p0, 0, NULL);
      const char *ev = json_string_value(json_object_get(o, "event"));
      int at = (int)json_integer_value(json_object_get(o, "step"));
      int hit = ev && !strcmp(ev, "step") && at >= step;
      json_decref(o);
      if (hit)
        return 0;
      p0 = nl + 1;
    }
    len -= (size_t)(p0 - buf);
    memmove(buf, p0, len);
  }
}

int nw_test_json_int(const json_t *o, const char *k) {
  return (int)json_integer_value(json_object_get(o, k));
}

const char *nw_test_json_str(const json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : "";
}

unsigned nw_test_seed(const char *what) {
  const char *env = getenv("NW_TEST_SEED");
  unsigned seed;
  if (env && *env) {
    seed = (unsigned)strtoul(env, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed =
        (unsigned)ts.tv_sec ^ (unsigned)ts.tv_nsec ^ ((unsigned)getpid() << 16);
  }
  printf("%s: seed %u (replay: NW_TEST_SEED=%u)\n", what, seed, seed);
  fflush(stdout);
  return seed;
}

double nw_test_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void nw_test_sleep(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

int nw_test_spawn_logged(char *const argv[], const char *log) {
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    abort();
  }
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    setenv("OMP_NUM_THREADS", "1", 1);
    execv(argv[0], argv);
    _exit(127);
  }
  return (int)pid;
}

int nw_test_wait_exit(int pid, double timeout) {
  double end = nw_test_now() + timeout;
  int st;
  for (;;) {
    if (waitpid(pid, &st, WNOHANG) == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (nw_test_now() >= end)
      return -1;
    nw_test_sleep(0.02);
  }
}

int nw_test_wait_or_kill(int pid, double timeout) {
  int rc = nw_test_wait_exit(pid, timeout);
  if (rc < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  return rc;
}
