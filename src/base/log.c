/* log.c — a journal record through sd_journal_sendv when stderr is the
 * unit's journal stream, else (and whenever the journal does not take it) a
 * timestamped line on stderr. */
#define _GNU_SOURCE
#include "base/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

/* Where sd_journal_sendv sends (hard-coded in libsystemd). */
#define NW_LOG_JOURNAL_SOCKET "/run/systemd/journal/socket"
#define NW_LOG_MSG_MAX 2048

static nw_log_level nw_log_level_now = NW_LOG_INFO;

/* The prefix, run id and step are read by whichever thread logs (the
 * webhook worker logs too) while the supervisor's loop sets them. */
static pthread_mutex_t nw_log_mu = PTHREAD_MUTEX_INITIALIZER;
static char nw_log_prefix[32] = "nightwatch";
static char nw_log_run[128]; /* "" when none */
static long nw_log_step = -1;

/* JOURNAL_STREAM="DEV:INO" of the stream systemd connected to the journal,
 * parsed once: the environment is not read again while threads run. */
static pthread_once_t nw_log_env_once = PTHREAD_ONCE_INIT;
static int nw_log_have_stream;
static unsigned long long nw_log_stream_dev, nw_log_stream_ino;

void nw_log_set_level(nw_log_level level) { nw_log_level_now = level; }

void nw_log_set_prefix(const char *prefix) {
  pthread_mutex_lock(&nw_log_mu);
  snprintf(nw_log_prefix, sizeof nw_log_prefix, "%s", prefix);
  pthread_mutex_unlock(&nw_log_mu);
}

void nw_log_set_run(const char *run_id) {
  pthread_mutex_lock(&nw_log_mu);
  snprintf(nw_log_run, sizeof nw_log_run, "%s", run_id ? run_id : "");
  pthread_mutex_unlock(&nw_log_mu);
}

void nw_log_set_step(long step) {
  pthread_mutex_lock(&nw_log_mu);
  nw_log_step = step < 0 ? -1 : step;
  pthread_mutex_unlock(&nw_log_mu);
}

int nw_log_enabled(nw_log_level level) { return level <= nw_log_level_now; }

static int nw_log_parse_ull(const char *s, char end, unsigned long long *out,
                            const char **next) {
  if (*s < '0' || *s > '9')
    return -1;
  char *e;
  errno = 0;
  *out = strtoull(s, &e, 10);
  if (errno != 0 || *e != end)
    return -1;
  *next = e;
  return 0;
}

static void nw_log_read_env(void) {
  const char *v = getenv("JOURNAL_STREAM");
  const char *p;
  if (v && nw_log_parse_ull(v, ':', &nw_log_stream_dev, &p) == 0 &&
      nw_log_parse_ull(p + 1, '\0', &nw_log_stream_ino, &p) == 0)
    nw_log_have_stream = 1;
}

/* systemd.exec(5): JOURNAL_STREAM is inherited by everything the service
 * starts, and stderr may have been redirected since; only a stderr whose
 * device and inode are the ones named is really the journal. Checked for
 * every record, so a redirection takes effect at once. */
static int nw_log_stderr_is_journal(void) {
  pthread_once(&nw_log_env_once, nw_log_read_env);
  if (!nw_log_have_stream)
    return 0;
  struct stat st;
  if (fstat(STDERR_FILENO, &st) != 0)
    return 0;
  return (unsigned long long)st.st_dev == nw_log_stream_dev &&
         (unsigned long long)st.st_ino == nw_log_stream_ino;
}

typedef struct {
  const char *prefix, *run, *cause, *action;
  long step;
} nw_log_fields;

/* One datagram with every field. 0 when the journal took it. */
static int nw_log_journal(nw_log_level level, const nw_log_fields *f,
                          const char *msg) {
  static const int prio[] = {3, 4, 6, 7}; /* syslog(3) LOG_ERR .. LOG_DEBUG */
  /* libsystemd reports a missing socket as success ("fail silently if the
   * journal is not available"): the record would be lost, so a missing
   * socket sends it to stderr. */
  if (access(NW_LOG_JOURNAL_SOCKET, F_OK) != 0)
    return -1;
  char m[NW_LOG_MSG_MAX + 8], p[16], id[48], run[136], step[32], cause[80],
      action[80];
  struct iovec iov[7];
  int n = 0;
#define NW_LOG_FIELD(buf, ...)                                                 \
  do {                                                                         \
    int len = snprintf(buf, sizeof buf, __VA_ARGS__);                          \
    if (len < 0)                                                               \
      return -1;                                                               \
    if ((size_t)len >= sizeof buf)                                             \
      len = (int)sizeof buf - 1; /* truncated, as the stderr line would be */  \
    iov[n].iov_base = buf;                                                     \
    iov[n++].iov_len = (size_t)len;                                            \
  } while (0)
  NW_LOG_FIELD(m, "MESSAGE=%s", msg);
  NW_LOG_FIELD(p, "PRIORITY=%d", prio[level]);
  NW_LOG_FIELD(id, "SYSLOG_IDENTIFIER=%s", f->prefix);
  if (f->run[0])
    NW_LOG_FIELD(run, "RUN=%s", f->run);
  if (f->step >= 0)
    NW_LOG_FIELD(step, "STEP=%ld", f->step);
  if (f->cause && f->cause[0])
    NW_LOG_FIELD(cause, "CAUSE=%s", f->cause);
  if (f->action && f->action[0])
    NW_LOG_FIELD(action, "ACTION=%s", f->action);
#undef NW_LOG_FIELD
  return sd_journal_sendv(iov, n) < 0 ? -1 : 0;
}

static void nw_log_stderr(nw_log_level level, const char *prefix,
                          const char *msg) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  char line[NW_LOG_MSG_MAX + 96];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  /* One fputs of a whole line: lines from several processes sharing stderr
   * do not interleave mid-line. */
  snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02dZ %s %s: %s\n",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, prefix, names[level], msg);
  fputs(line, stderr);
}

static void nw_log_emit(nw_log_level level, const char *cause,
                        const char *action, const char *fmt, va_list ap) {
  char msg[NW_LOG_MSG_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  char prefix[sizeof nw_log_prefix], run[sizeof nw_log_run];
  nw_log_fields f = {prefix, run, cause, action, -1};
  pthread_mutex_lock(&nw_log_mu);
  memcpy(prefix, nw_log_prefix, sizeof prefix);
  memcpy(run, nw_log_run, sizeof run);
  f.step = nw_log_step;
  pthread_mutex_unlock(&nw_log_mu);
  if (nw_log_stderr_is_journal() && nw_log_journal(level, &f, msg) == 0)
    return;
  nw_log_stderr(level, prefix, msg);
}

void nw_log(nw_log_level level, const char *fmt, ...) {
  if (!nw_log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  nw_log_emit(level, NULL, NULL, fmt, ap);
  va_end(ap);
}

void nw_log_event(nw_log_level level, const char *cause, const char *action,
                  const char *fmt, ...) {
  if (!nw_log_enabled(level))
    return;
  va_list ap;
  va_start(ap, fmt);
  nw_log_emit(level, cause, action, fmt, ap);
  va_end(ap);
}
