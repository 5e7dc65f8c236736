/* notify.c — sd_notify(3) through libsystemd, with the watchdog as a
 * deadline of the caller's loop. */
#include "supervisor/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "base/error.h"
#include "base/log.h"

void nw_notify_init(nw_notify *n, double now) {
  memset(n, 0, sizeof *n);
  const char *sock = getenv("NOTIFY_SOCKET");
  n->on = sock && *sock;
  uint64_t usec = 0;
  /* unset_environment 0: the environment stays as systemd gave it; each
   * trainer gets a copy without these names (nw_sup_env). */
  int r = sd_watchdog_enabled(0, &usec);
  if (r < 0) {
    nw_warn("WATCHDOG_USEC: %s; no watchdog pings", strerror(-r));
    return;
  }
  /* without a socket nobody would hear the pings: no wakeups for them */
  if (r > 0 && usec > 0 && n->on) {
    n->watchdog_s = (double)usec * 1e-6;
    n->next_ping = now;
  }
}

int nw_notify_send(nw_notify *n, const char *fmt, ...) {
  if (!n->on)
    return 0;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (len < 0 || (size_t)len >= sizeof msg) {
    nw_warn("notify: message too long, not sent");
    return NW_EINTERNAL;
  }
  int r = sd_notify(0, msg);
  if (r > 0)
    return 1;
  /* r == 0 with NOTIFY_SOCKET set cannot happen; count it as a failure */
  if (n->failed++ == 0)
    nw_warn("notify: cannot send to NOTIFY_SOCKET=%s: %s",
            getenv("NOTIFY_SOCKET") ? getenv("NOTIFY_SOCKET") : "",
            r < 0 ? strerror(-r) : "not sent");
  return NW_ESYS;
}

int nw_notify_ping(nw_notify *n, double now) {
  if (n->watchdog_s <= 0 || now < n->next_ping)
    return 0;
  /* counted from now, not from the due time: after a stall the pings do
   * not burst to catch up (systemd only needs the latest) */
  n->next_ping = now + n->watchdog_s / 2;
  return nw_notify_send(n, "WATCHDOG=1");
}

double nw_notify_next_ping(const nw_notify *n) {
  return n->watchdog_s > 0 ? n->next_ping : 0;
}

uint64_t nw_notify_monotonic_usec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
