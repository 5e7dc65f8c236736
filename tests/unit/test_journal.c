/* test_journal.c — src/log.c under systemd: when JOURNAL_STREAM names
 * stderr, each record reaches the journal's native socket as one datagram
 * with MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and RUN/STEP/CAUSE/ACTION;
 * when it names another stream, or the journal does not take the record,
 * the line goes to stderr.
 *
 * libsystemd sends to the hard-coded /run/systemd/journal/socket (no
 * variable redirects it), so these tests bind that path themselves: only
 * when nothing is there (no journald) and the directory is writable (root),
 * else they skip and say why. The logging process is this binary
 * re-executed as a helper ("--helper"), its stderr on a file whose dev:ino
 * goes into JOURNAL_STREAM, as systemd would do. A lock file serialises
 * test binaries of several build trees that run at once. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/log.h"
#include "testutil.h"

#define JOURNAL_DIR "/run/systemd/journal"
#define JOURNAL_SOCKET JOURNAL_DIR "/socket"
#define LOCK_FILE "/tmp/nightwatch-test-journal.lock"

/* ---- the helper: what a nightwatch process logs ---- */

/* Four records: plain; an event with run, step, cause and action; a
 * message with a newline (the protocol's binary form) after the step was
 * cleared; a debug record, only once the level allows it. */
static int helper_main(void) {
  nw_log_set_prefix("nw-helper");
  nw_info("plain %d", 1);
  nw_log_set_run("run-7");
  nw_log_set_step(42);
  nw_log_event(NW_LOG_ERROR, "activation", "halve-micro-batch",
               "recovered at step %d", 42);
  nw_log_set_step(-1);
  nw_warn("two\nlines");
  nw_debug("not at level info");
  nw_log_set_level(NW_LOG_DEBUG);
  nw_log_event(NW_LOG_DEBUG, NULL, "free-cache", "debug on");
  return 0;
}

/* ---- the fake journal ---- */

#define MAX_RECORDS 8
#define MAX_FIELDS 16

typedef struct {
  int n;
  char key[MAX_FIELDS][64];
  char val[MAX_FIELDS][4096];
} record;

typedef struct {
  int lock_fd;
  int sock;      /* bound to JOURNAL_SOCKET, or -1 */
  int bound;     /* we created JOURNAL_SOCKET: remove it */
  int made_dir;  /* we created JOURNAL_DIR: remove it */
  char tmp[256]; /* the helper's stderr file lives here */
  char err_path[300];
  int n_records;
  record rec[MAX_RECORDS];
} fixture;

static int setup(void **state) {
  fixture *fx = calloc(1, sizeof *fx);
  if (!fx)
    return -1;
  fx->sock = -1;
  fx->lock_fd = open(LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fx->lock_fd < 0 || flock(fx->lock_fd, LOCK_EX) != 0) {
    fprintf(stderr, "%s: %s\n", LOCK_FILE, strerror(errno));
    free(fx);
    return -1;
  }
  nw_test_tmpdir(fx->tmp, sizeof fx->tmp, "journal");
  snprintf(fx->err_path, sizeof fx->err_path, "%s/stderr", fx->tmp);
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fixture *fx = *state;
  if (fx->sock >= 0)
    close(fx->sock);
  if (fx->bound)
    unlink(JOURNAL_SOCKET);
  if (fx->made_dir)
    rmdir(JOURNAL_DIR);
  nw_test_rmdir_flat(fx->tmp);
  close(fx->lock_fd); /* drops the flock */
  free(fx);
  return 0;
}

/* Binds JOURNAL_SOCKET, or skips the test saying why. */
static void bind_journal_or_skip(fixture *fx) {
  struct stat st;
  if (lstat(JOURNAL_SOCKET, &st) == 0) {
    fprintf(stderr,
            "skipped: %s exists (a journald runs here, or a killed test left "
            "it: remove it)\n",
            JOURNAL_SOCKET);
    skip();
  }
  if (mkdir(JOURNAL_DIR, 0755) == 0)
    fx->made_dir = 1;
  else if (errno != EEXIST) {
    fprintf(stderr, "skipped: cannot create %s: %s (run as root)\n",
            JOURNAL_DIR, strerror(errno));
    skip();
  }
  fx->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fx->sock >= 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", JOURNAL_SOCKET);
  if (bind(fx->sock, (struct sockaddr *)&sa, sizeof sa) != 0) {
    fprintf(stderr, "skipped: cannot bind %s: %s\n", JOURNAL_SOCKET,
            strerror(errno));
    skip();
  }
  fx->bound = 1;
}

/* The native protocol (systemd's journal-send.c): "KEY=value\n", or
 * "KEY\n" + little-endian 64-bit size + value + "\n" for a value holding a
 * newline. */
static int parse_record(const char *p, size_t len, record *r) {
  const char *end = p + len;
  r->n = 0;
  while (p < end) {
    if (r->n == MAX_FIELDS)
      return -1;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
      return -1;
    const char *k = p, *v;
    size_t klen, vlen;
    if (eq && eq < nl) {
      klen = (size_t)(eq - p);
      v = eq + 1;
      vlen = (size_t)(nl - v);
      p = nl + 1;
    } else {
      klen = (size_t)(nl - p);
      if ((size_t)(end - nl - 1) < 8)
        return -1;
      uint64_t le = 0;
      for (int i = 7; i >= 0; i--)
        le = le << 8 | (uint8_t)nl[1 + i];
      v = nl + 1 + 8;
      if ((uint64_t)(end - v) < le + 1 || v[le] != '\n')
        return -1;
      vlen = (size_t)le;
      p = v + le + 1;
    }
    if (klen == 0 || klen >= sizeof r->key[0] || vlen >= sizeof r->val[0])
      return -1;
    memcpy(r->key[r->n], k, klen);
    r->key[r->n][klen] = 0;
    memcpy(r->val[r->n], v, vlen);
    r->val[r->n][vlen] = 0;
    r->n++;
  }
  return 0;
}

/* Receives one datagram (the message inline, or a memfd passed with
 * SCM_RIGHTS when it was too large) into the next record. 0, or -1 when
 * nothing is waiting. Fails the test on a malformed datagram. */
static int receive_one(fixture *fx) {
  static char buf[1 << 18];
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {buf, sizeof buf};
  struct msghdr mh = {.msg_iov = &iov,
                      .msg_iovlen = 1,
                      .msg_control = &ctl,
                      .msg_controllen = sizeof ctl};
  ssize_t k = recvmsg(fx->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
    return -1;
  assert_true(k >= 0);
  assert_false(mh.msg_flags & MSG_TRUNC);
  struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
  if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    k = pread(fd, buf, sizeof buf, 0);
    close(fd);
    assert_true(k > 0);
  }
  assert_true(fx->n_records < MAX_RECORDS);
  assert_int_equal(parse_record(buf, (size_t)k, &fx->rec[fx->n_records]), 0);
  fx->n_records++;
  return 0;
}

/* Runs the helper with stderr on fx->err_path and JOURNAL_STREAM as given
 * ("match": the dev:ino of that file; NULL: unset), collecting datagrams
 * while it runs (the socket queue holds only a few: a helper that fills it
 * would block). Returns the helper's exit status. */
static int run_helper(fixture *fx, const char *journal_stream) {
  int efd = open(fx->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  assert_true(efd >= 0);
  char env[64] = "";
  if (journal_stream && !strcmp(journal_stream, "match")) {
    struct stat st;
    assert_int_equal(fstat(efd, &st), 0);
    snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
  } else if (journal_stream) {
    snprintf(env, sizeof env, "%s", journal_stream);
  }
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (dup2(efd, STDERR_FILENO) < 0)
      _exit(126);
    if (journal_stream)
      setenv("JOURNAL_STREAM", env, 1);
    else
      unsetenv("JOURNAL_STREAM");
    execl("/proc/self/exe", "test_journal", "--helper", (char *)NULL);
    _exit(127);
  }
  close(efd);
  int status = 0;
  double deadline = nw_test_now() + 60;
  for (;;) {
    if (fx->sock >= 0) {
      struct pollfd p = {fx->sock, POLLIN, 0};
      if (poll(&p, 1, 50) > 0)
        while (receive_one(fx) == 0)
          ;
    } else {
      nw_test_sleep(0.05);
    }
    pid_t w = waitpid(pid, &status, WNOHANG);
    assert_true(w >= 0);
    if (w == pid)
      break;
    if (nw_test_now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      fail_msg("helper did not finish in 60 s");
    }
  }
  if (fx->sock >= 0)
    while (receive_one(fx) == 0)
      ;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The value of key in r, NULL when absent; a key present twice fails. */
static const char *field(const record *r, const char *key) {
  const char *v = NULL;
  for (int i = 0; i < r->n; i++)
    if (!strcmp(r->key[i], key)) {
      assert_null(v);
      v = r->val[i];
    }
  return v;
}

/* key's value in r is want (NULL: key absent). */
static void expect_field(const record *r, const char *key, const char *want) {
  const char *got = field(r, key);
  if (!want && got)
    fail_msg("%s=%s, expected no %s", key, got, key);
  if (want && (!got || strcmp(got, want) != 0))
    fail_msg("%s=%s, expected %s", key, got ? got : "(absent)", want);
}

static void read_stderr(fixture *fx, char *buf, size_t len) {
  FILE *f = fopen(fx->err_path, "r");
  assert_non_null(f);
  size_t n = fread(buf, 1, len - 1, f);
  buf[n] = 0;
  fclose(f);
}

/* The four lines, timestamped, on stderr, in order. */
static void assert_stderr_lines(fixture *fx) {
  char text[8192];
  read_stderr(fx, text, sizeof text);
  const char *want[] = {
      "Z nw-helper info: plain 1\n",
      "Z nw-helper error: recovered at step 42\n",
      "Z nw-helper warn: two\nlines\n",
      "Z nw-helper debug: debug on\n",
  };
  const char *p = text;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    const char *hit = strstr(p, want[i]);
    if (!hit)
      fail_msg("stderr lacks \"%s\" (in order); it has:\n%s", want[i], text);
    /* "2026-11-23T16:40:01Z": the line starts with the time */
    assert_true(hit - text >= 19);
    assert_memory_equal(hit - 19, "20", 2);
    p = hit + strlen(want[i]);
  }
  assert_null(strstr(text, "not at level info"));
}

static void test_journal_records(void **state) {
  fixture *fx = *state;
  bind_journal_or_skip(fx);
  assert_int_equal(run_helper(fx, "match"), 0);
  assert_int_equal(fx->n_records, 4);
  const record *r = &fx->rec[0];
  expect_field(r, "MESSAGE", "plain 1");
  expect_field(r, "PRIORITY", "6");
  expect_field(r, "SYSLOG_IDENTIFIER", "nw-helper");
  expect_field(r, "RUN", NULL);
  expect_field(r, "STEP", NULL);
  expect_field(r, "CAUSE", NULL);
  expect_field(r, "ACTION", NULL);
  r = &fx->rec[1];
  expect_field(r, "MESSAGE", "recovered at step 42");
  expect_field(r, "PRIORITY", "3");
  expect_field(r, "SYSLOG_IDENTIFIER", "nw-helper");
  expect_field(r, "RUN", "run-7");
  expect_field(r, "STEP", "42");
  expect_field(r, "CAUSE", "activation");
  expect_field(r, "ACTION", "halve-micro-batch");
  r = &fx->rec[2];
  expect_field(r, "MESSAGE", "two\nlines");
  expect_field(r, "PRIORITY", "4");
  expect_field(r, "RUN", "run-7");
  expect_field(r, "STEP", NULL);
  expect_field(r, "CAUSE", NULL);
  r = &fx->rec[3];
  expect_field(r, "MESSAGE", "debug on");
  expect_field(r, "PRIORITY", "7");
  expect_field(r, "CAUSE", NULL);
  expect_field(r, "ACTION", "free-cache");
  /* the journal had every record: nothing on stderr */
  char text[4096];
  read_stderr(fx, text, sizeof text);
  assert_string_equal(text, "");
}

/* JOURNAL_STREAM inherited from a unit but naming another stream (stderr
 * was redirected), malformed, or unset: stderr, and nothing sent. */
static void test_journal_stream_mismatch(void **state) {
  fixture *fx = *state;
  bind_journal_or_skip(fx);
  struct stat st;
  assert_int_equal(stat(fx->tmp, &st), 0);
  char other[64];
  snprintf(other, sizeof other, "%llu:%llu", (unsigned long long)st.st_dev,
           (unsigned long long)st.st_ino);
  const char *values[] = {other, "garbage", "12:", ":34", NULL};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    assert_int_equal(run_helper(fx, values[i]), 0);
    assert_int_equal(fx->n_records, 0);
    assert_stderr_lines(fx);
  }
}

/* The socket exists but nobody reads it (journald stopped): sendmsg fails
 * with ECONNREFUSED, and the line goes to stderr. */
static void test_journal_refused_falls_back(void **state) {
  fixture *fx = *state;
  bind_journal_or_skip(fx);
  close(fx->sock); /* the path stays; connections are refused */
  fx->sock = -1;
  assert_int_equal(run_helper(fx, "match"), 0);
  assert_stderr_lines(fx);
}

/* No socket at all: libsystemd reports success and drops the record
 * ("fail silently if the journal is not available"); log.c must not. Needs
 * no privilege, only that no journald runs here. */
static void test_journal_missing_falls_back(void **state) {
  fixture *fx = *state;
  struct stat st;
  if (lstat(JOURNAL_SOCKET, &st) == 0) {
    fprintf(stderr, "skipped: %s exists\n", JOURNAL_SOCKET);
    skip();
  }
  assert_int_equal(run_helper(fx, "match"), 0);
  assert_stderr_lines(fx);
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--helper"))
    return helper_main();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_journal_records, setup, teardown),
      cmocka_unit_test_setup_teardown(test_journal_stream_mismatch, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_journal_refused_falls_back, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_journal_missing_falls_back, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
