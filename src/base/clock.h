/* clock.h — the one monotonic clock of both programs, in seconds, and its
 * conversion to the timespec that timed waits take.
 * defines: nw_clock_now, nw_clock_timespec */
#ifndef NW_CLOCK_H
#define NW_CLOCK_H

#include <time.h>

/* CLOCK_MONOTONIC in seconds: durations and deadlines, never dates. */
double nw_clock_now(void);

/* Seconds (>= 0) as a normalised timespec (tv_nsec below 1e9), for
 * deadlines on CLOCK_MONOTONIC and for relative timeouts alike. */
struct timespec nw_clock_timespec(double seconds);

#endif
