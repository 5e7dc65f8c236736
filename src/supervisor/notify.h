/* notify.h — the systemd notify protocol (sd_notify(3)) as `nightwatch run`
 * speaks it: READY, STATUS, WATCHDOG, STOPPING, RELOADING and
 * EXTEND_TIMEOUT_USEC, through libsystemd.
 * defines: nw_notify, nw_notify_init, nw_notify_send, nw_notify_ping,
 *          nw_notify_next_ping, nw_notify_monotonic_usec
 *
 * Why a module: under Type=notify systemd knows the run is up, what it is
 * doing and that it is alive only from these datagrams. Without
 * NOTIFY_SOCKET (not under systemd) every call is a cheap no-op, so the
 * supervisor calls it unconditionally. The watchdog is a deadline like the
 * loop's others: nw_notify_next_ping goes into the loop's ppoll timeout and
 * nw_notify_ping is called from the loop itself, never from a thread, so a
 * stuck loop stops the pings and systemd notices. */
#ifndef NW_NOTIFY_H
#define NW_NOTIFY_H

#include <stdint.h>

typedef struct {
  int on;               /* NOTIFY_SOCKET is set: messages go somewhere */
  double watchdog_s;    /* WATCHDOG_USEC in seconds; 0: no watchdog */
  double next_ping;     /* monotonic time of the next WATCHDOG=1; 0: none */
  unsigned long failed; /* sends that failed (the first one is logged) */
} nw_notify;

/* Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID (sd_watchdog_enabled)
 * without unsetting them: the supervisor removes them from each trainer's
 * environment itself. The first ping is due at now. A malformed
 * WATCHDOG_USEC is logged and means no watchdog; never an error. */
void nw_notify_init(nw_notify *n, double now);

/* One datagram of "KEY=value" lines (printf format). Returns 1 when sent,
 * 0 when there is no socket, NW_ESYS when the send failed (logged the first
 * time; a notify failure never stops a run). */
int nw_notify_send(nw_notify *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* WATCHDOG=1 when one is due at now; the next is due half of WATCHDOG_USEC
 * later. Returns 1 when a ping was sent, 0 when none was due, NW_ESYS. */
int nw_notify_ping(nw_notify *n, double now);

/* Monotonic time of the next ping, 0 without a watchdog. */
double nw_notify_next_ping(const nw_notify *n);

/* CLOCK_MONOTONIC in microseconds, for MONOTONIC_USEC=. */
uint64_t nw_notify_monotonic_usec(void);

#endif
