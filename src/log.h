/* log.h — one line per event, level checked before formatting.
 * defines: nw_log, nw_log_set_level, NW_LOG_* levels */
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

/* "2026-11-23T16:40:01Z train info: message" on stderr. Never call from a
 * signal handler. */
void nw_log(nw_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define nw_error(...) nw_log(NW_LOG_ERROR, __VA_ARGS__)
#define nw_warn(...) nw_log(NW_LOG_WARN, __VA_ARGS__)
#define nw_info(...) nw_log(NW_LOG_INFO, __VA_ARGS__)
#define nw_debug(...) nw_log(NW_LOG_DEBUG, __VA_ARGS__)

#endif
