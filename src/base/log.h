/* log.h — one record per event, level checked before formatting: to the
 * journal with structured fields when stderr is the unit's journal stream
 * (JOURNAL_STREAM), else a timestamped line on stderr.
 * defines: nw_log, nw_log_event, nw_log_set_level, nw_log_set_prefix,
 *          nw_log_set_run, nw_log_set_step, nw_log_enabled, NW_LOG_* levels
 *
 * Journal records carry MESSAGE, PRIORITY (error 3, warn 4, info 6,
 * debug 7), SYSLOG_IDENTIFIER (the prefix) and, when known, RUN, STEP,
 * CAUSE and ACTION (docs/operations.md). A record the journal does not
 * take goes to stderr instead: no line is ever lost. Safe to call from
 * several threads; never from a signal handler. */
#ifndef NW_LOG_H
#define NW_LOG_H

typedef enum {
  NW_LOG_ERROR = 0,
  NW_LOG_WARN = 1,
  NW_LOG_INFO = 2,
  NW_LOG_DEBUG = 3,
} nw_log_level;

void nw_log_set_level(nw_log_level level);
void nw_log_set_prefix(const char *prefix); /* program name, e.g. "train" */
int nw_log_enabled(nw_log_level level);

/* Fields added to every journal record from now on: RUN= (NULL: none) and STEP=
 * (< 0: none). */
void nw_log_set_run(const char *run_id);
void nw_log_set_step(long step);

/* "2026-11-23T16:40:01Z train info: message" on stderr, or a journal
 * record with MESSAGE=message. */
void nw_log(nw_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A record with CAUSE= and ACTION= journal fields (either may be NULL); on
 * stderr the same line as nw_log. */
void nw_log_event(nw_log_level level, const char *cause, const char *action,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define nw_error(...) nw_log(NW_LOG_ERROR, __VA_ARGS__)
#define nw_warn(...) nw_log(NW_LOG_WARN, __VA_ARGS__)
#define nw_info(...) nw_log(NW_LOG_INFO, __VA_ARGS__)
#define nw_debug(...) nw_log(NW_LOG_DEBUG, __VA_ARGS__)

#endif
