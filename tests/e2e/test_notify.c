/* test_notify.c — `nightwatch run` speaking the systemd notify protocol to a
 * real datagram socket, as systemd would hear it.
 *
 * The test binds an AF_UNIX SOCK_DGRAM socket with SO_PASSCRED (each
 * datagram carries its sender's pid, as systemd checks NotifyAccess=main)
 * and SO_TIMESTAMPNS (the kernel's time of each send, so a test process
 * that reads late does not distort the ping intervals), sets NOTIFY_SOCKET
 * and WATCHDOG_USEC and runs the real supervisor with the real trainer on a
 * tiny model. Timing bounds are generous: these are noisy 2-core VMs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/config.h"
#include "e2e/fixture.h"
#include "testutil.h"

#define NW_MSG_MAX 4096

typedef struct {
  char text[512]; /* "KEY=value" lines */
  pid_t pid;      /* SCM_CREDENTIALS: the sender */
  double t;       /* SCM_TIMESTAMPNS: when the kernel queued it (realtime) */
} msg;

typedef struct {
  nw_case *run;   /* the supervised run (its HOME holds the socket) */
  char sock[400]; /* NOTIFY_SOCKET */
  int fd;         /* the bound notify socket */
  int drain_fd;   /* a pipe to read and discard while receiving; -1 */
  pid_t sup;      /* the supervisor (run->sup while it runs) */
  msg *m;
  int n;
} nctx;

static double realtime_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The context of the running test, for the teardown: a failed assertion
 * leaves the test function without its ctx_fini. */
static nctx *live;

/* A run of the tiny model, its notify socket bound in the case's HOME. */
static void ctx_init(nctx *c, const char *tag) {
  memset(c, 0, sizeof *c);
  live = c;
  c->run = nw_case_new(tag);
  const char *fixed[] = {"model.n_layer=1",
                         "model.n_embd=32",
                         "eval.every=0",
                         "data.long_fraction=0",
                         "checkpoint.every=0",
                         "train.log_every=1000000",
                         NULL};
  for (int i = 0; fixed[i]; i++)
    nw_case_set(c->run, "%s", fixed[i]);
  snprintf(c->sock, sizeof c->sock, "%s/notify", c->run->home);
  c->drain_fd = -1;
  c->m = calloc(NW_MSG_MAX, sizeof *c->m);
  assert_non_null(c->m);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  assert_true(strlen(c->sock) < sizeof a.sun_path);
  strcpy(a.sun_path, c->sock);
  c->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  assert_true(c->fd >= 0);
  assert_int_equal(bind(c->fd, (struct sockaddr *)&a, sizeof a), 0);
  int one = 1;
  assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one),
                   0);
  assert_int_equal(
      setsockopt(c->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one), 0);
}

static void dump(const nctx *c) {
  fprintf(stderr, "---- %d notify messages ----\n", c->n);
  for (int i = 0; i < c->n; i++) {
    char one[512];
    snprintf(one, sizeof one, "%s", c->m[i].text);
    for (char *p = one; *p; p++)
      if (*p == '\n')
        *p = '|';
    fprintf(stderr, "%.3f pid %d: %s\n", c->m[i].t, (int)c->m[i].pid, one);
  }
  nw_case_dump(c->run);
}

/* The socket and the messages; the run's processes and files go with
 * nw_case_free (a test that got to its end) or nw_case_teardown. */
static void ctx_close(nctx *c) {
  close(c->fd);
  free(c->m);
  c->m = NULL;
  live = NULL;
}

static void ctx_fini(nctx *c) {
  nw_case_free(c->run);
  ctx_close(c);
}

static int teardown(void **state) {
  if (live)
    ctx_close(live);
  return nw_case_teardown(state);
}

/* Starts `nightwatch run` on the tiny model for steps steps, talking to the
 * test's socket; WATCHDOG_USEC when watchdog_usec > 0. Its stdout and
 * stderr go to err_fd, or to the log file when err_fd < 0. extra: more
 * "--set" values, NULL-terminated. */
static void sup_start(nctx *c, long watchdog_usec, int steps, int err_fd,
                      const char *const *extra) {
  char v[32], total[32];
  const char *sets[8] = {total};
  snprintf(total, sizeof total, "train.steps=%d", steps);
  for (int i = 0; extra && extra[i] && i < 6; i++)
    sets[i + 1] = extra[i];
  nw_case_env(c->run, "NOTIFY_SOCKET", c->sock);
  snprintf(v, sizeof v, "%ld", watchdog_usec);
  nw_case_env(c->run, "WATCHDOG_USEC", watchdog_usec > 0 ? v : NULL);
  nw_case_env(c->run, "WATCHDOG_PID", NULL); /* for whoever we exec */
  if (err_fd >= 0)
    nw_case_output(c->run, err_fd);
  c->sup = nw_case_start(c->run, sets);
}

/* Reads every datagram queued now into c->m. */
static void recv_all(nctx *c) {
  for (;;) {
    msg *m = &c->m[c->n < NW_MSG_MAX ? c->n : NW_MSG_MAX - 1];
    char cbuf[CMSG_SPACE(sizeof(struct ucred)) +
              CMSG_SPACE(sizeof(struct timespec))];
    struct iovec iov = {m->text, sizeof m->text - 1};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cbuf,
                        .msg_controllen = sizeof cbuf};
    ssize_t r = recvmsg(c->fd, &mh, MSG_DONTWAIT);
    if (r < 0) {
      assert_true(errno == EAGAIN || errno == EINTR);
      if (errno == EAGAIN)
        return;
      continue;
    }
    m->text[r] = '\0';
    m->pid = -1;
    m->t = realtime_now();
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
      if (h->cmsg_level != SOL_SOCKET)
        continue;
      if (h->cmsg_type == SCM_CREDENTIALS) {
        struct ucred cr;
        memcpy(&cr, CMSG_DATA(h), sizeof cr);
        m->pid = cr.pid;
      } else if (h->cmsg_type == SCM_TIMESTAMPNS) {
        struct timespec ts;
        memcpy(&ts, CMSG_DATA(h), sizeof ts);
        m->t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
      }
    }
    assert_true(c->n < NW_MSG_MAX);
    c->n++;
  }
}

/* The value of KEY in message m (a static copy), NULL when absent. */
static const char *field(const msg *m, const char *key) {
  static char val[512];
  size_t k = strlen(key);
  for (const char *p = m->text; *p;) {
    const char *e = strchr(p, '\n');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len > k && !strncmp(p, key, k) && p[k] == '=') {
      snprintf(val, sizeof val, "%.*s", (int)(len - k - 1), p + k + 1);
      return val;
    }
    p += len + (e ? 1 : 0);
  }
  return NULL;
}

/* Receives for up to timeout seconds, until a message from index from on
 * has KEY=value (value NULL: any value). Returns its index or -1. */
static int wait_for(nctx *c, int from, const char *key, const char *value,
                    double timeout) {
  double end = nw_test_now() + timeout;
  for (;;) {
    recv_all(c);
    for (int i = from; i < c->n; i++) {
      const char *v = field(&c->m[i], key);
      if (v && (!value || !strcmp(v, value)))
        return i;
    }
    double left = end - nw_test_now();
    if (left <= 0)
      return -1;
    struct pollfd p[2] = {{c->fd, POLLIN, 0}, {c->drain_fd, POLLIN, 0}};
    poll(p, c->drain_fd >= 0 ? 2 : 1, (int)(left * 1000) + 1);
    if (c->drain_fd >= 0 && p[1].revents) {
      char buf[65536];
      while (read(c->drain_fd, buf, sizeof buf) > 0)
        ;
    }
  }
}

/* Receives for seconds seconds. */
static void pump(nctx *c, double seconds) {
  wait_for(c, c->n, "NO-SUCH-KEY", NULL, seconds);
}

/* The supervisor's exit code, -1 when it is still running after timeout;
 * receives meanwhile. */
static int sup_wait(nctx *c, double timeout) {
  double end = nw_test_now() + timeout;
  while (nw_test_now() < end) {
    int rc = nw_case_wait(c->run, 0);
    if (rc >= 0) {
      recv_all(c);
      return rc;
    }
    pump(c, 0.02);
  }
  return -1;
}

/* Every message came from the supervisor itself (NotifyAccess=main). */
static void assert_all_from(const nctx *c, pid_t pid) {
  for (int i = 0; i < c->n; i++) {
    if (c->m[i].pid != pid) {
      dump(c);
      fprintf(stderr, "message %d from pid %d, supervisor %d\n", i,
              (int)c->m[i].pid, (int)pid);
    }
    assert_int_equal(c->m[i].pid, pid);
  }
}

/* WATCHDOG=1 times in [t0, t1) (realtime), into t; their count. */
static int pings(const nctx *c, double t0, double t1, double *t, int max) {
  int n = 0;
  for (int i = 0; i < c->n && n < max; i++)
    if (field(&c->m[i], "WATCHDOG") && c->m[i].t >= t0 && c->m[i].t < t1)
      t[n++] = c->m[i].t;
  return n;
}

/* Receives until n pings sent at or after t0 (realtime) are in; their
 * times into t (room for max). Their count: less than n after timeout. */
static int wait_pings(nctx *c, double t0, int n, double timeout, double *t,
                      int max) {
  double end = nw_test_now() + timeout;
  int got;
  while ((got = pings(c, t0, 1e300, t, max)) < n && nw_test_now() < end)
    pump(c, 0.05);
  return got;
}

/* 1 while pid is blocked in write(2) (/proc/PID/syscall names the call it
 * sleeps in; "running" when it is not in one). */
static int blocked_in_write(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/syscall", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  long nr = -1;
  int ok = fscanf(f, "%ld", &nr) == 1;
  fclose(f);
  return ok && (nr == SYS_write || nr == SYS_writev);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Parsed STATUS= text. */
typedef struct {
  char state[32];
  int step, total, micro, accum, seq, recoveries;
  double loss;
} status;

static int parse_status(const char *s, status *st) {
  memset(st, 0, sizeof *st);
  st->loss = -1;
  int n = sscanf(s, "%31[^:]: step %d/%d", st->state, &st->step, &st->total);
  if (n != 3)
    return -1;
  const char *l = strstr(s, " loss ");
  if (l)
    st->loss = atof(l + 6);
  const char *mi = strstr(s, " micro ");
  if (!mi || sscanf(mi, " micro %d x accum %d seq %d recoveries %d", &st->micro,
                    &st->accum, &st->seq, &st->recoveries) != 4)
    return -1;
  return 0;
}

/* The trainer's pid from the ledger's latest start entry. */
static pid_t trainer_pid(const nctx *c) {
  json_t *a = nw_case_ledger(c->run);
  int k = nw_test_ledger_count(a, "start");
  json_t *e = k > 0 ? nw_test_ledger_find(a, "start", k - 1) : NULL;
  pid_t pid = e ? (pid_t)json_integer_value(json_object_get(e, "pid")) : 0;
  json_decref(a);
  return pid;
}

/* The sequence of one whole run: STATUS on state changes, READY=1 once at
 * the first step with step information, progress rate-limited, STOPPING=1
 * and a final STATUS at the end; every message from the supervisor. */
static void test_sequence(void **state) {
  (void)state;
  static nctx c; /* static: the teardown reaches it after a failure */
  ctx_init(&c, "seq");
  nw_config cfg;
  nw_config_defaults(&cfg);
  double t0 = nw_test_now();
  sup_start(&c, 1000000, 400, -1, NULL);
  pid_t sup = c.sup;
  int rc = sup_wait(&c, 120);
  double elapsed = nw_test_now() - t0;
  if (rc != 0)
    dump(&c);
  assert_int_equal(rc, 0);
  assert_all_from(&c, sup);
  int ready = -1, n_ready = 0, n_status = 0, stopping = -1, starting = -1;
  int ping = -1;
  status st, last = {0};
  for (int i = 0; i < c.n; i++) {
    const char *s = field(&c.m[i], "STATUS");
    if (s) {
      n_status++;
      assert_int_equal(parse_status(s, &st), 0);
      last = st;
      if (!strcmp(st.state, "starting") && starting < 0)
        starting = i;
    }
    if (field(&c.m[i], "READY")) {
      n_ready++;
      if (ready < 0) {
        ready = i;
        /* READY comes with the first step's numbers */
        assert_non_null(s);
        assert_string_equal(st.state, "running");
        assert_true(st.step >= 1);
        assert_int_equal(st.total, 400);
        assert_true(st.loss > 0);
        assert_int_equal(st.micro, cfg.batch.micro);
        assert_int_equal(st.accum, nw_config_accum(&cfg.batch));
        assert_int_equal(st.seq, nw_config_max_len(&cfg));
        assert_int_equal(st.recoveries, 0);
      }
    }
    if (field(&c.m[i], "STOPPING") && stopping < 0)
      stopping = i;
    if (field(&c.m[i], "WATCHDOG") && ping < 0)
      ping = i;
  }
  if (ready < 0 || starting < 0 || stopping < 0)
    dump(&c);
  assert_int_equal(n_ready, 1);
  assert_true(starting >= 0 && starting < ready);
  assert_true(stopping > ready);
  assert_string_equal(last.state, "finished");
  assert_int_equal(last.step, 400);
  /* progress at most once a second, plus the state changes (starting,
   * running, finished) and the READY one */
  fprintf(stderr, "%d messages, %d STATUS in %.2f s\n", c.n, n_status, elapsed);
  assert_true(n_status <= (int)elapsed + 5);
  /* the watchdog runs from the start, before READY */
  assert_true(ping >= 0 && ping < ready);
  ctx_fini(&c);
}

/* The trainer never sees systemd's variables. */
static void expect_trainer_env(const nctx *c) {
  pid_t tr = trainer_pid(c);
  assert_true(tr > 0);
  char path[64], env[1 << 15];
  snprintf(path, sizeof path, "/proc/%d/environ", (int)tr);
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  ssize_t len = read(fd, env, sizeof env - 1);
  close(fd);
  assert_true(len > 0);
  int saw_run_id = 0;
  for (char *p = env; p < env + len; p += strlen(p) + 1) {
    assert_true(strncmp(p, "NOTIFY_SOCKET=", 14));
    assert_true(strncmp(p, "WATCHDOG_", 9));
    saw_run_id |= !strncmp(p, "NIGHTWATCH_RUN_ID=", 18);
  }
  assert_true(saw_run_id); /* it was the trainer's environment we read */
}

/* Pings at about half of WATCHDOG_USEC (wd seconds): the next seven. */
static void expect_ping_interval(nctx *c, double wd) {
  double w0 = realtime_now(), t[256], iv[256];
  int n = wait_pings(c, w0, 7, 30, t, 256);
  if (n < 7)
    dump(c);
  assert_true(n >= 7);
  for (int i = 1; i < n; i++)
    iv[i - 1] = t[i] - t[i - 1];
  qsort(iv, (size_t)(n - 1), sizeof *iv, cmp_double);
  fprintf(stderr, "%d pings; interval min %.3f median %.3f max %.3f\n", n,
          iv[0], iv[(n - 1) / 2], iv[n - 2]);
  assert_true(iv[0] >= wd / 2 * 0.5);           /* never early */
  assert_true(iv[(n - 1) / 2] > wd / 2 * 0.75); /* about wd/2 */
  assert_true(iv[(n - 1) / 2] < wd / 2 * 2.5);
  assert_true(iv[n - 2] < wd); /* none so late that systemd would kill */
}

/* SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1. */
static void expect_reload(nctx *c, pid_t sup) {
  int from = c->n;
  assert_int_equal(kill(sup, SIGHUP), 0);
  int rl = wait_for(c, from, "RELOADING", "1", 10);
  assert_true(rl >= 0);
  const char *mono = field(&c->m[rl], "MONOTONIC_USEC");
  assert_non_null(mono);
  double mono_s = strtod(mono, NULL) * 1e-6;
  assert_true(mono_s > nw_test_now() - 10 && mono_s <= nw_test_now());
  int rd = wait_for(c, rl + 1, "READY", "1", 10);
  assert_true(rd > rl);
  assert_non_null(field(&c->m[rd], "STATUS"));
}

/* The ping interval, the trainer's environment, SIGHUP and SIGTERM. */
static void test_watchdog_reload_stop(void **state) {
  (void)state;
  static nctx c; /* static: the teardown reaches it after a failure */
  ctx_init(&c, "wd");
  const double wd = 1.0; /* WATCHDOG_USEC: pings every 0.5 s */
  sup_start(&c, (long)(wd * 1e6), 1000000, -1, NULL);
  pid_t sup = c.sup;
  int r = wait_for(&c, 0, "READY", "1", 60);
  if (r < 0)
    dump(&c);
  assert_true(r >= 0);
  expect_trainer_env(&c);
  expect_ping_interval(&c, wd);
  expect_reload(&c, sup);

  /* SIGTERM: STOPPING=1, EXTEND_TIMEOUT_USEC covering the kill grace, the
   * stop checkpoint, exit 0 */
  int from = c.n;
  assert_int_equal(kill(sup, SIGTERM), 0);
  int sp = wait_for(&c, from, "STOPPING", "1", 10);
  int ex = wait_for(&c, from, "EXTEND_TIMEOUT_USEC", NULL, 10);
  if (sp < 0 || ex < 0)
    dump(&c);
  assert_true(sp >= 0 && ex >= sp);
  nw_config cfg;
  nw_config_defaults(&cfg);
  double ext = strtod(field(&c.m[ex], "EXTEND_TIMEOUT_USEC"), NULL) * 1e-6;
  fprintf(stderr, "EXTEND_TIMEOUT_USEC %.1f s (kill_grace %.0f s)\n", ext,
          cfg.supervisor.kill_grace);
  assert_true(ext >= cfg.supervisor.kill_grace);
  int rc = sup_wait(&c, 60);
  if (rc != 0)
    dump(&c);
  assert_int_equal(rc, 0);
  json_t *a = nw_case_ledger(c.run);
  json_t *stop = nw_test_ledger_find(a, "stop", 0);
  assert_non_null(stop);
  assert_true(json_is_true(json_object_get(stop, "checkpoint")));
  json_decref(a);
  assert_all_from(&c, sup);
  ctx_fini(&c);
}

/* A trainer that cannot write its stop checkpoint (SIGSTOPped): the
 * extension is re-sent, shrinking with what is left of the kill grace,
 * until the supervisor's SIGKILL. */
static void test_extend_repeated(void **state) {
  (void)state;
  static nctx c; /* static: the teardown reaches it after a failure */
  ctx_init(&c, "ext");
  const char *extra[] = {"supervisor.kill_grace=2", NULL};
  sup_start(&c, 0, 1000000, -1, extra);
  pid_t sup = c.sup;
  assert_true(wait_for(&c, 0, "READY", "1", 60) >= 0);
  pid_t tr = trainer_pid(&c);
  assert_true(tr > 0);
  assert_int_equal(kill(tr, SIGSTOP), 0);
  int from = c.n;
  double t0 = nw_test_now();
  assert_int_equal(kill(sup, SIGTERM), 0);
  int rc = sup_wait(&c, 30);
  double took = nw_test_now() - t0;
  int n = 0;
  double prev = 1e30;
  for (int i = from; i < c.n; i++) {
    const char *v = field(&c.m[i], "EXTEND_TIMEOUT_USEC");
    if (!v)
      continue;
    double e = strtod(v, NULL) * 1e-6;
    fprintf(stderr, "EXTEND_TIMEOUT_USEC %.2f s\n", e);
    assert_true(e <= prev + 0.01); /* what is left only shrinks */
    assert_true(e > 0);
    prev = e;
    n++;
  }
  fprintf(stderr, "%d extensions, stopped in %.2f s, exit %d\n", n, took, rc);
  if (n < 3)
    dump(&c);
  /* the grace (2 s) at 0.5 s a message */
  assert_true(n >= 3);
  assert_true(rc >= 0 && took >= 2.0);
  assert_all_from(&c, sup);
  ctx_fini(&c);
}

/* Fills the pipe whose write end is fd to its last byte, through a file
 * description of our own, non-blocking, so the supervisor's stays
 * blocking. Returns the bytes written. */
static size_t fill_pipe(int fd) {
  char self[64];
  snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
  int wfd = open(self, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  assert_true(wfd >= 0);
  char junk[4096];
  memset(junk, 'x', sizeof junk);
  size_t filled = 0;
  for (;;) {
    ssize_t w = write(wfd, junk, sizeof junk);
    if (w <= 0)
      break;
    filled += (size_t)w;
  }
  assert_true(errno == EAGAIN);
  for (;;) { /* down to the last byte */
    ssize_t w = write(wfd, junk, 1);
    if (w <= 0)
      break;
    filled += (size_t)w;
  }
  close(wfd);
  return filled;
}

/* SIGHUP makes the loop log a line into the full pipe: once it is seen
 * blocked in write(2), no ping comes for as long as it stays blocked.
 * Returns the index of the RELOADING message. */
static int expect_frozen(nctx *c, pid_t sup) {
  int from = c->n;
  assert_int_equal(kill(sup, SIGHUP), 0);
  int rl = wait_for(c, from, "RELOADING", "1", 10);
  assert_true(rl >= 0);
  double end = nw_test_now() + 10;
  while (!blocked_in_write(sup) && nw_test_now() < end)
    pump(c, 0.01);
  assert_true(blocked_in_write(sup));
  /* a pinger on a thread of its own would ping ~10 times meanwhile */
  double f0 = c->m[rl].t, t[256];
  pump(c, 2.0);
  double f1 = realtime_now();
  int still = blocked_in_write(sup); /* so frozen all through [f0, f1] */
  recv_all(c);
  int frozen = pings(c, f0, f1, t, 256);
  fprintf(stderr, "frozen: %d pings in %.2f s after RELOADING (%s)\n", frozen,
          f1 - f0, still ? "still in write(2)" : "no longer in write(2)");
  if (frozen != 0 || !still)
    dump(c);
  assert_true(still);
  assert_int_equal(frozen, 0);
  assert_int_equal(kill(sup, 0), 0); /* stuck, not dead */
  assert_int_equal(wait_for(c, rl + 1, "READY", "1", 0), -1);
  return rl;
}

/* A genuinely frozen loop: the supervisor's stderr is a pipe the test has
 * filled and does not read, so its next log line blocks in write(2). A
 * pinger on a thread of its own would go on pinging; ours stops, and
 * resumes once the pipe is drained. */
static void test_frozen_loop_stops_pings(void **state) {
  (void)state;
  static nctx c; /* static: the teardown reaches it after a failure */
  ctx_init(&c, "frz");
  int p[2];
  assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  sup_start(&c, 400000, 1000000, p[1], NULL);
  pid_t sup = c.sup;
  /* the read end is drained while the run starts */
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  c.drain_fd = p[0];
  assert_true(wait_for(&c, 0, "READY", "1", 60) >= 0);
  c.drain_fd = -1;
  size_t filled = fill_pipe(p[1]);

  /* a full stderr alone is no freeze: the loop writes nothing and pings */
  double t[256];
  int before = wait_pings(&c, realtime_now(), 2, 10, t, 256);
  fprintf(stderr, "pipe filled (%zu bytes); then %d pings\n", filled, before);
  assert_true(before >= 2);

  int rl = expect_frozen(&c, sup);

  /* drain: the log line completes, READY=1 ends the reload, pings resume */
  c.drain_fd = p[0];
  int rd = wait_for(&c, rl + 1, "READY", "1", 10);
  assert_true(rd > rl);
  int after = wait_pings(&c, c.m[rd].t, 3, 10, t, 256);
  fprintf(stderr, "drained: %d pings after READY\n", after);
  assert_true(after >= 3);

  assert_int_equal(kill(sup, SIGTERM), 0);
  assert_int_equal(sup_wait(&c, 60), 0);
  assert_all_from(&c, sup);
  close(p[0]);
  close(p[1]);
  ctx_fini(&c);
}

/* A notify socket that is not there: logged once, the run goes on. */
static void test_unreachable_socket(void **state) {
  (void)state;
  static nctx c; /* static: the teardown reaches it after a failure */
  ctx_init(&c, "nosock");
  snprintf(c.sock, sizeof c.sock, "%s/missing/notify", c.run->home);
  sup_start(&c, 400000, 30, -1, NULL);
  int rc = sup_wait(&c, 120);
  assert_int_equal(rc, 0);
  assert_int_equal(c.n, 0);
  FILE *f = fopen(c.run->log, "r");
  assert_non_null(f);
  char line[1024];
  int warned = 0;
  while (fgets(line, sizeof line, f))
    warned += strstr(line, "notify: cannot send") != NULL;
  fclose(f);
  assert_int_equal(warned, 1);
  ctx_fini(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_sequence, teardown),
      cmocka_unit_test_teardown(test_watchdog_reload_stop, teardown),
      cmocka_unit_test_teardown(test_extend_repeated, teardown),
      cmocka_unit_test_teardown(test_frozen_loop_stops_pings, teardown),
      cmocka_unit_test_teardown(test_unreachable_socket, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
