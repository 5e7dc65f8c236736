/* ckpt_writer.h — checkpoints written in the background: the trainer copies
 * its state into the writer's host buffers (the only stall) and goes on
 * training while a thread writes the file. At most one write is in flight.
 * defines: nw_ckpt_writer, nw_ckpt_writer_create, nw_ckpt_writer_state,
 *          nw_ckpt_writer_start, nw_ckpt_writer_poll, nw_ckpt_writer_wait */
#ifndef NW_CKPT_WRITER_H
#define NW_CKPT_WRITER_H

#include <stddef.h>

#include "checkpoints/ckpt.h"

typedef struct nw_ckpt_writer nw_ckpt_writer;

/* The outcome of one write. */
typedef struct {
  int rc;                 /* 0 or the NW_E* of nw_ckpt_write */
  char path[NW_PATH_MAX]; /* the file written (or attempted) */
  char err[1024];         /* what failed */
  double seconds;         /* time in the writer thread */
  long long step;
} nw_ckpt_result;

/* Buffers for num_params floats of parameters and each moment. */
int nw_ckpt_writer_create(nw_ckpt_writer **out, size_t num_params);
/* Waits for a write in flight, then frees everything. */
void nw_ckpt_writer_destroy(nw_ckpt_writer *w);

/* The host buffer the state is copied into, and its size: a GPU trainer
 * page-locks it once so that the copy from the device runs at full speed. */
void *nw_ckpt_writer_buffer(nw_ckpt_writer *w, size_t *bytes);

/* 1 while a write is in flight. */
int nw_ckpt_writer_busy(nw_ckpt_writer *w);

/* The state to fill before nw_ckpt_writer_start: its params, exp_avg and
 * exp_avg_sq point at the writer's buffers (set exp_avg NULL when there is
 * no optimizer state). NULL while a write is in flight. */
nw_ckpt_state *nw_ckpt_writer_state(nw_ckpt_writer *w);

/* Starts writing the filled state to path on the writer thread; after a
 * durable write the same thread applies keep-last-N to run_dir (keep > 0),
 * whose verification of the newest file must not stall training. */
int nw_ckpt_writer_start(nw_ckpt_writer *w, const char *path,
                         const char *run_dir, int keep);

/* 1 and the result when a write finished since the last call, else 0. */
int nw_ckpt_writer_poll(nw_ckpt_writer *w, nw_ckpt_result *res);

/* Blocks until no write is in flight; 1 and the result when one finished
 * (by now or earlier, not yet collected), else 0. */
int nw_ckpt_writer_wait(nw_ckpt_writer *w, nw_ckpt_result *res);

#endif
