/* sup_notify.h — what `nightwatch run` tells systemd, and when
 * (docs/operations.md has the message table).
 * defines: nw_sup_summary, nw_sup_notify, nw_sup_notify_init,
 *          nw_sup_notify_step, nw_sup_notify_state, nw_sup_notify_stop,
 *          nw_sup_notify_reload, nw_sup_notify_tick, nw_sup_notify_deadline
 *
 * Every message is sent by the supervisor's loop thread; none of these
 * ever blocks the loop for long (a datagram) or fails the run. They read
 * the supervisor through a summary the state machine fills, never its
 * state itself. */
#ifndef NW_SUP_NOTIFY_H
#define NW_SUP_NOTIFY_H

#include "supervisor/notify.h"     // defines: nw_notify
#include "supervisor/supervisor.h" // defines: nw_sup_state

/* What a STATUS line says, and what the stop extension needs. */
typedef struct {
  nw_sup_state state;
  int hang;              /* stopping a trainer that hangs */
  int stop_requested;    /* stopping on a stop request */
  double kill_at;        /* then: when SIGKILL is due; 0 when sent */
  int step, total_steps; /* progress */
  int have_loss;         /* loss is a step's */
  double loss;           /* of the latest step */
  int micro, accum, seq; /* the settings in force */
  int recoveries;        /* so far */
} nw_sup_summary;

typedef struct {
  nw_notify n;
  int ready;           /* READY=1 sent: once per run, at the first step */
  int stopping;        /* STOPPING=1 sent */
  int shown_state;     /* nw_sup_state of the last STATUS; -1: none yet */
  int dirty;           /* progress newer than the last STATUS */
  double status_t;     /* when the last STATUS went */
  double extend_every; /* EXTEND_TIMEOUT_USEC period while stopping */
  double extend_at;    /* next EXTEND_TIMEOUT_USEC; 0: none */
} nw_sup_notify;

/* kill_grace: supervisor.kill_grace, which the extensions cover. */
void nw_sup_notify_init(nw_sup_notify *m, double kill_grace, double now);
/* A step line arrived: READY=1 the first time, else a STATUS is due. */
void nw_sup_notify_step(nw_sup_notify *m, const nw_sup_summary *v, double now);
/* The state changed: a STATUS now, STOPPING=1 when the supervisor is about
 * to exit. */
void nw_sup_notify_state(nw_sup_notify *m, const nw_sup_summary *v, double now);
/* A stop request (SIGTERM/SIGINT), after its transition: STOPPING=1 and,
 * while a trainer writes its stop checkpoint, EXTEND_TIMEOUT_USEC. */
void nw_sup_notify_stop(nw_sup_notify *m, const nw_sup_summary *v, double now);
/* Around a SIGHUP reload: RELOADING=1 (begin 1), READY=1 (begin 0). */
void nw_sup_notify_reload(nw_sup_notify *m, const nw_sup_summary *v, int begin);
/* End of every loop iteration: a due STATUS, the extension, the ping. */
void nw_sup_notify_tick(nw_sup_notify *m, const nw_sup_summary *v, double now);
/* Earliest notify deadline (monotonic), 0 when none: part of the loop's
 * ppoll timeout. */
double nw_sup_notify_deadline(const nw_sup_notify *m);

#endif
