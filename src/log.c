/* log.c — timestamped lines on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static nw_log_level nw_log_level_now = NW_LOG_INFO;
static char nw_log_prefix[32] = "nightwatch";

void nw_log_set_level(nw_log_level level) { nw_log_level_now = level; }

void nw_log_set_prefix(const char *prefix) {
  snprintf(nw_log_prefix, sizeof nw_log_prefix, "%s", prefix);
}

int nw_log_enabled(nw_log_level level) { return level <= nw_log_level_now; }

void nw_log(nw_log_level level, const char *fmt, ...) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  if (!nw_log_enabled(level))
    return;
  char line[2048];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line,
                   "%04d-%02d-%02dT%02d:%02d:%02dZ %s %s: ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   nw_log_prefix, names[level]);
  va_list ap;
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof line)
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  /* One fputs of a whole line: lines from several processes sharing stderr
   * do not interleave mid-line. */
  size_t len = strlen(line);
  if (len + 1 < sizeof line) {
    line[len] = '\n';
    line[len + 1] = 0;
  }
  fputs(line, stderr);
}
