/* sup_progress.h — what the trainer's status lines say (docs/protocol.md,
 * "Status lines"): the run's progress, and when the lines came.
 * defines: nw_sup_line, nw_sup_progress, nw_sup_progress_init,
 *          nw_sup_progress_started, nw_sup_progress_line
 *
 * Every rank's line is a heartbeat; progress is rank 0's (all ranks take
 * the same steps). What a line means for the supervisor's state is the
 * state machine's (sup_machine.c). */
#ifndef NW_SUP_PROGRESS_H
#define NW_SUP_PROGRESS_H

/* What kind of line it was. */
typedef enum {
  NW_SUP_LINE_OTHER,        /* not ours, another rank's, or an event we skip */
  NW_SUP_LINE_START,        /* the trainer is up: "start" */
  NW_SUP_LINE_RESUME,       /* it loaded a checkpoint: "resume" */
  NW_SUP_LINE_STEP,         /* an optimizer step completed: "step" */
  NW_SUP_LINE_STOP,         /* it checkpointed on a stop request: "stop" */
  NW_SUP_LINE_FINISH,       /* it ran to its last step: "finish" */
  NW_SUP_LINE_CKPT_ERROR,   /* a checkpoint write failed: "checkpoint_error"
                               (ckpt_error, ckpt_error_step) */
  NW_SUP_LINE_CKPT_SKIPPED, /* at resume, a checkpoint failed verification:
                               "checkpoint_skipped" (skipped_*) */
} nw_sup_line;

typedef struct {
  int step;           /* the latest completed step */
  int start_step;     /* the step this trainer started at */
  int total_steps;    /* train.steps as the trainer reported it */
  double loss;        /* of the latest step */
  int have_loss;      /* a step line gave one */
  int seq_len;        /* padded length of the latest step's batch */
  double last_line_t; /* of the last line or output of any rank */
  /* of this start: when its start and resume lines came (0: not yet),
   * the step it resumed at (-1: no resume line), and what it said at the
   * end */
  double start_line_t, resume_line_t;
  int resume_step;
  int seen_stop, seen_finish;
  /* storage: the last failed write, and the last checkpoint skipped */
  char ckpt_error[1024];
  int ckpt_error_step;
  int ckpt_errors; /* failed writes of this start */
  char skipped_path[1024], skipped_reason[1024], skipped_moved_to[1024];
  int skipped; /* checkpoints skipped by this start */
} nw_sup_progress;

void nw_sup_progress_init(nw_sup_progress *p);

/* A new start at now: the heartbeat begins at the fork. */
void nw_sup_progress_started(nw_sup_progress *p, double now);

/* A status line of rank r at now. The heartbeat counts every line. */
nw_sup_line nw_sup_progress_line(nw_sup_progress *p, int r, const char *text,
                                 double now);

#endif
