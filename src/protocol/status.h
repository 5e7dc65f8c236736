/* status.h — machine-readable progress for the supervisor: one JSON object
 * per line on the descriptor named by NIGHTWATCH_STATUS_FD (docs/protocol.md).
 * defines: nw_status_open, nw_status_emit */
#ifndef NW_STATUS_H
#define NW_STATUS_H

#include <jansson.h>

typedef struct {
  int fd;   /* -1 when no supervisor listens */
  int rank; /* added to every line as "rank" when >= 0 (the trainer's
               data-parallel rank); -1 leaves lines as they are */
} nw_status;

/* Reads NIGHTWATCH_STATUS_FD; fd = -1 when unset or invalid; rank -1. */
void nw_status_open(nw_status *s);

/* Writes obj plus "\n" with one write() (lines stay whole on a pipe) and
 * steals the reference. A reader that went away is not an error: progress
 * lines are advisory. */
void nw_status_emit(nw_status *s, json_t *obj);

#endif
