/* train.h — the training loop: effective batches of micro-batches, AdamW,
 * periodic evaluation (validation loss and generation accuracy), progress.
 * defines: nw_trainer, nw_trainer_create, nw_trainer_step, nw_trainer_eval,
 *          nw_trainer_run */
#ifndef NW_TRAIN_H
#define NW_TRAIN_H

#include <stdint.h>

#include "base/config.h"
#include "checkpoints/ckpt_writer.h"
#include "device/backend.h"
#include "device/collective.h"
#include "device/mem.h"
#include "device/vdev.h"
#include "protocol/oom_report.h"
#include "protocol/status.h"
#include "protocol/world.h"
#include "trainer/data/data.h"
#include "trainer/model/model.h"
#include "trainer/optim.h"

typedef struct {
  double loss;      /* mean over every target token of the effective batch */
  double grad_norm; /* before clipping */
  double lr;
  int64_t tokens; /* target tokens of the effective batch */
  int max_seq;    /* longest padded micro-batch length of the step */
  double seconds;
} nw_step_result;

typedef struct {
  double val_loss; /* mean per target token */
  int gen_total;   /* answers scored */
  int gen_correct; /* exact matches */
  double seconds;
} nw_eval_result;

typedef struct nw_trainer {
  nw_config cfg;
  char run_id[NW_RUN_ID_MAX];
  const nw_backend *be;
  int device;    /* nw_device_kind: NW_DEVICE_CPU or NW_DEVICE_CUDA */
  nw_vdev *vdev; /* the CPU virtual device; NULL when memory is unlimited */
  nw_mem *mem;
  nw_model *model;
  nw_optim *optim;
  nw_dataset *data;
  nw_batch batch;
  nw_status status;

  /* The data-parallel world (docs/multi-gpu.md): this rank trains its
   * share of every effective batch; gradients, token counts and the stop
   * flag are summed over ranks; rank 0 writes checkpoints and evaluates. */
  nw_world world;
  nw_coll *coll;        /* a world of one has a coll that does nothing */
  char device_name[72]; /* this rank's virtual device (world.h) */
  int64_t step_tokens;  /* target tokens of the whole effective batch of
                           step `tokens_step`, summed over ranks */
  int tokens_step;      /* -1: not counted yet */

  int step;            /* optimizer steps completed */
  int64_t tokens_seen; /* target tokens trained on */

  /* Checkpoints */
  nw_ckpt_writer *writer;
  int writer_pinned; /* its buffer is page-locked by the backend */
  int durable_step;  /* step of the newest durable checkpoint; -1 */
  int ckpt_failures; /* failed writes in a row (checkpoint.max_failures) */
  int lockfd;        /* RUN_DIR/trainer.lock, rank 0 only; -1 */
  char durable_path[NW_PATH_MAX];
  double last_ckpt_time;              /* monotonic seconds of the last save */
  const volatile int *stop_requested; /* set by SIGTERM/SIGINT; may be NULL */

  /* Where the trainer is, for the OOM report. */
  nw_phase phase;
  int micro_step;     /* micro-batch index in the step; -1 outside */
  int seq_len;        /* padded length of the batch in flight */
  uint64_t *len_hist; /* (max_seq_len + 1) padded micro-batch lengths */
  uint64_t len_count; /* micro-batches counted in len_hist */
  int last_eval_step; /* step of the last evaluation; -1 = none yet */
} nw_trainer;

/* Builds everything from a validated config. err receives a message naming
 * the failing file or key; NW_ECONFIG/NW_EDATA/NW_EIO are the user's to fix.
 * NW_ENOMEM means the device could not hold the model: then, and only then,
 * *out is still set (phase init) so that the caller can report the OOM
 * before destroying it. */
int nw_trainer_create(nw_trainer **out, const nw_config *cfg, char *err,
                      size_t errlen);
void nw_trainer_destroy(nw_trainer *t);

/* The start of step t->step, collective: counts this rank's target tokens
 * and sums them, and SIGTERM flags, over ranks. *stop is 1 when any rank
 * was asked to stop: then every rank stops at this step boundary. */
int nw_trainer_step_begin(nw_trainer *t, int *stop);

/* One optimizer step: the effective batch with index t->step (this rank's
 * share of it, then the sum of every rank's gradients). Calls
 * nw_trainer_step_begin itself when the caller did not. */
int nw_trainer_step(nw_trainer *t, nw_step_result *res);

/* Validation loss over eval.batches batches and generation accuracy over
 * eval.generate held-out problems, using the kv-cache. */
int nw_trainer_eval(nw_trainer *t, nw_eval_result *res);

/* Runs from t->step to train.steps with logging and evaluation. Its first
 * collective checks that every rank resumed the same step (NW_EDATA when
 * not). NW_EPEER / NW_ETIMEDOUT: a peer rank failed (nw_coll_why). */
int nw_trainer_run(nw_trainer *t);

/* Checkpoints (train_ckpt.c). Resume: "auto" loads the newest checkpoint
 * of the run directory that verifies (none: a fresh start), "none" starts
 * fresh, anything else is a file that must load. err names the file and,
 * for a shape mismatch, the differing setting. */
int nw_trainer_resume(nw_trainer *t, const char *spec, char *err,
                      size_t errlen);
/* After a step: collects a finished background write and starts the next
 * one when due (every N steps or seconds). A failed write is reported and
 * training goes on, until checkpoint.max_failures writes in a row have
 * failed: then NW_ESTORAGE (the trainer exits 74: every step from here on
 * would be lost too). */
int nw_trainer_checkpoint_tick(nw_trainer *t);
/* Writes a checkpoint of the current step now and waits for it (stop, end
 * of run, OOM). 0 when one is durable for t->step. */
int nw_trainer_checkpoint_now(nw_trainer *t, const char *why);
/* Waits for a write in flight and frees the writer (and unpins it). */
void nw_trainer_writer_destroy(nw_trainer *t);

/* Median padded micro-batch length seen so far (0 before the first). */
int nw_trainer_median_seq_len(const nw_trainer *t);

/* After NW_ENOMEM: the OOM report of the failure, filled from the trainer
 * state and the memory domain's snapshot at the refused allocation, and
 * written to nw_oom_report_path (RUN_DIR/oom-report.json for a world of
 * one) with a status line. t may come from a failed nw_trainer_create
 * (phase init). */
void nw_trainer_fill_oom_report(const nw_trainer *t, nw_oom_report *r);
int nw_trainer_report_oom(nw_trainer *t, char *err, size_t errlen);

#endif
