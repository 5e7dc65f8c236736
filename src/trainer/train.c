/* train.c — the training loop. */
#define _GNU_SOURCE
#include "trainer/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/run_id.h"
#include "base/runlock.h" // defines: nw_runlock_take, NW_TRAINLOCK_FILE
#include "device/device.h"

/* The run id: every process of one run shares it (run_id.h). */
static int nw_trainer_run_id(nw_trainer *t, char *err, size_t errlen) {
  return nw_run_id(&t->cfg, t->run_id, sizeof t->run_id, err, errlen);
}

static int nw_vdev_reserve_hook(void *ctx, uint64_t bytes) {
  return nw_vdev_reserve(ctx, bytes);
}
static void nw_vdev_release_hook(void *ctx, uint64_t bytes) {
  nw_vdev_release(ctx, bytes);
}

/* The memory domain and the device under it: a GPU, the CPU as a virtual
 * device that processes share (device.memory > 0), or the plain CPU. */
static int nw_trainer_open_device(nw_trainer *t, char *err, size_t errlen) {
  const nw_config *cfg = &t->cfg;
  nw_device_kind kind;
  NW_TRY(nw_device_resolve(&cfg->device, &kind, err, errlen));
  /* On a GPU device.memory caps what the domain holds (the card is shared
   * for real); on the CPU it is the capacity of the virtual device. */
  int rc =
      nw_mem_create(&t->mem, kind == NW_DEVICE_CUDA ? cfg->device.memory : 0);
  if (rc < 0) {
    snprintf(err, errlen, "memory domain: %s", nw_strerror(rc));
    return rc;
  }
  if (kind == NW_DEVICE_CUDA) {
    t->device = NW_DEVICE_CUDA; /* an OOM at open is reported as the GPU's */
    NW_TRY(nw_device_open(&cfg->device, t->world.rank, t->mem, &t->be, err,
                          errlen));
    char desc[128] = "", bus[32] = "";
    nw_device_describe(desc, sizeof desc, bus, sizeof bus);
    nw_info("device: %s (PCI %s), precision %s, cap %llu bytes", desc, bus,
            cfg->device.precision, (unsigned long long)cfg->device.memory);
  } else if (cfg->device.memory > 0) {
    /* A capacity makes the CPU a virtual device that processes share. */
    NW_TRY(nw_vdev_open(&t->vdev, t->device_name, cfg->device.memory, t->run_id,
                        err, errlen));
    nw_mem_device dev = {.ctx = t->vdev,
                         .reserve = nw_vdev_reserve_hook,
                         .release = nw_vdev_release_hook};
    nw_mem_attach_device(t->mem, &dev);
  }
  return 0;
}

/* The world's collectives. It forms before the model is allocated, so that
 * an OOM at init on one rank can abort it and wake the others. */
static int nw_trainer_open_world(nw_trainer *t, char *err, size_t errlen) {
  nw_coll_options co = {
      .kind = t->device == NW_DEVICE_CUDA ? NW_COLL_NCCL : NW_COLL_SHM,
      .rank = t->world.rank,
      .size = t->world.size,
      .comm = t->world.comm,
      .run_dir = t->cfg.run.dir,
      /* no rank outwaits the supervisor's own hang detection */
      .timeout_s = t->cfg.supervisor.hang_timeout,
  };
  char cerr[512];
  int rc = nw_coll_open(&t->coll, &co, cerr, sizeof cerr);
  if (rc < 0)
    snprintf(err, errlen, "world of %d ranks (rank %d): %s", t->world.size,
             t->world.rank, cerr);
  return rc;
}

/* The data, the model and its optimizer. */
static int nw_trainer_open_model(nw_trainer *t, char *err, size_t errlen) {
  const nw_config *cfg = &t->cfg;
  NW_TRY(nw_data_open(&t->data, &cfg->data, cfg->model.vocab_size,
                      nw_config_max_len(cfg), err, errlen));
  int rc =
      nw_model_create(&t->model, &cfg->model, t->be, t->mem, cfg->train.seed);
  if (rc < 0) {
    snprintf(err, errlen, "model: %s", nw_strerror(rc));
    return rc;
  }
  rc = nw_optim_create(&t->optim, t->model, t->be, t->mem);
  if (rc < 0)
    snprintf(err, errlen, "optimizer: %s", nw_strerror(rc));
  return rc;
}

int nw_trainer_create(nw_trainer **out, const nw_config *cfg, char *err,
                      size_t errlen) {
  *out = NULL;
  nw_trainer *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of host memory");
    return NW_EHOSTMEM;
  }
  t->cfg = *cfg;
  t->be = &nw_backend_cpu;
  t->device = NW_DEVICE_CPU;
  t->phase = NW_PHASE_INIT;
  t->micro_step = -1;
  t->last_eval_step = -1;
  t->durable_step = -1;
  t->lockfd = -1;
  t->last_ckpt_time = nw_clock_now();
  t->tokens_step = -1;
  nw_status_open(&t->status);
  int rc = nw_world_from_env(cfg, &t->world, err, errlen);
  if (rc < 0)
    goto fail;
  t->status.rank = t->world.rank;
  nw_world_device_name(cfg, t->world.rank, t->device_name,
                       sizeof t->device_name);
  if ((rc = nw_mkdir_p(cfg->run.dir, err, errlen)) < 0)
    goto fail;
  if ((rc = nw_trainer_run_id(t, err, errlen)) < 0)
    goto fail;
  /* one trainer (world) per run directory: a second would write its own
   * checkpoints beside ours. Rank 0 holds it for the world. */
  nw_runlock_holder_info holder;
  if (t->world.rank == 0 && (rc = t->lockfd = nw_runlock_take(
                                 cfg->run.dir, NW_TRAINLOCK_FILE, "trainer",
                                 t->run_id, &holder, err, errlen)) < 0)
    goto fail;
  t->len_hist = calloc((size_t)cfg->model.max_seq_len + 1, sizeof *t->len_hist);
  if (!t->len_hist) {
    rc = NW_EHOSTMEM;
    snprintf(err, errlen, "out of host memory");
    goto fail;
  }
  if ((rc = nw_trainer_open_device(t, err, errlen)) < 0 ||
      (rc = nw_trainer_open_world(t, err, errlen)) < 0 ||
      (rc = nw_trainer_open_model(t, err, errlen)) < 0)
    goto fail;
  *out = t;
  return 0;
fail:
  if (rc == NW_ENOMEM) {
    *out = t; /* the caller reports the OOM, then destroys */
    return rc;
  }
  nw_trainer_destroy(t);
  return rc;
}

void nw_trainer_destroy(nw_trainer *t) {
  if (!t)
    return;
  nw_trainer_writer_destroy(t); /* waits for a write in flight */
  nw_batch_free(&t->batch);
  nw_optim_destroy(t->optim);
  if (t->model)
    nw_model_kv_free(t->model);
  nw_model_destroy(t->model);
  nw_data_close(t->data);
  nw_coll_close(t->coll); /* NCCL's stream work ends before the device */
  t->coll = NULL;
  if (t->device == NW_DEVICE_CUDA)
    nw_device_close();    /* its workspace back to the domain first */
  nw_mem_destroy(t->mem); /* returns its bytes to the device first */
  nw_vdev_close(t->vdev);
  nw_runlock_release(t->lockfd); /* last: nothing of ours writes any more */
  free(t->len_hist);
  free(t);
}

int nw_trainer_median_seq_len(const nw_trainer *t) {
  if (t->len_count == 0)
    return 0;
  uint64_t half = (t->len_count + 1) / 2, seen = 0;
  for (int T = 0; T <= t->cfg.model.max_seq_len; T++) {
    seen += t->len_hist[T];
    if (seen >= half)
      return T;
  }
  return t->cfg.model.max_seq_len;
}

/* This rank's examples of step t->step: [*first, *first + share). The
 * effective batch with index `step` is examples [step*E, step*E+E): which
 * examples go in depends on nothing else; rank r takes the r-th of W equal
 * shares of it. */
static uint64_t nw_trainer_share(const nw_trainer *t, int *share) {
  const nw_batch_config *bc = &t->cfg.batch;
  *share = bc->effective / t->world.size;
  return (uint64_t)t->step * (uint64_t)bc->effective +
         (uint64_t)t->world.rank * (uint64_t)*share;
}

int nw_trainer_step_begin(nw_trainer *t, int *stop) {
  int share;
  uint64_t first = nw_trainer_share(t, &share);
  int64_t ntok = 0;
  NW_TRY(nw_data_count_targets(t->data, NW_SPLIT_TRAIN, first, share, &ntok));
  /* Counts below 2^53 are exact in a double, so the sum is the integer. */
  double v[2] = {(double)ntok,
                 t->stop_requested && *t->stop_requested ? 1.0 : 0.0};
  NW_TRY(nw_coll_allreduce_f64(t->coll, v, 2));
  t->step_tokens = (int64_t)v[0];
  t->tokens_step = t->step;
  *stop = v[1] > 0;
  return 0;
}

int nw_trainer_step(nw_trainer *t, nw_step_result *res) {
  const nw_batch_config *bc = &t->cfg.batch;
  int accum = nw_config_accum(bc);
  double t0 = nw_clock_now();
  memset(res, 0, sizeof *res);

  /* The loss is normalised by all target tokens of the effective batch (of
   * every rank), counted before the first backward, so any split into
   * micro-batches and ranks sums to the same gradient. */
  if (t->tokens_step != t->step) {
    int stop; /* a caller that wants to stop asks nw_trainer_step_begin */
    NW_TRY(nw_trainer_step_begin(t, &stop));
  }
  int64_t ntok = t->step_tokens;
  t->tokens_step = -1; /* counted for this step only */
  if (ntok <= 0)
    return NW_EDATA;
  float scale = (float)(1.0 / (double)ntok);
  int share;
  uint64_t index0 = nw_trainer_share(t, &share);

  nw_model_zero_grad(t->model);
  double loss_sum = 0;
  for (int a = 0; a < accum; a++) {
    uint64_t first = index0 + (uint64_t)a * (uint64_t)bc->micro;
    NW_TRY(
        nw_batch_build(&t->batch, t->data, NW_SPLIT_TRAIN, first, bc->micro));
    t->phase = NW_PHASE_TRAIN_FORWARD;
    t->micro_step = a;
    t->seq_len = t->batch.T;
    t->len_hist[t->batch.T]++;
    t->len_count++;
    double ls = 0;
    int rc =
        nw_model_forward_backward(t->model, t->batch.inputs, t->batch.targets,
                                  t->batch.B, t->batch.T, scale, &ls);
    if (rc == NW_ENOMEM && nw_model_failed_in_backward(t->model))
      t->phase = NW_PHASE_TRAIN_BACKWARD;
    if (rc < 0)
      return rc;
    loss_sum += ls;
    if (t->batch.T > res->max_seq)
      res->max_seq = t->batch.T;
  }
  t->phase = NW_PHASE_OPTIMIZER;
  t->micro_step = -1;
  /* Every rank's gradient sum, added in rank order: the same bits on every
   * rank, so every AdamW step below gives the same parameters. */
  NW_TRY(nw_coll_allreduce_f32(t->coll, nw_model_grads(t->model),
                               nw_model_num_params(t->model)));
  NW_TRY(nw_coll_allreduce_f64(t->coll, &loss_sum, 1));
  NW_TRY(nw_optim_step(t->optim, &t->cfg.train, t->step, &res->grad_norm));
  res->lr = nw_optim_lr(&t->cfg.train, t->step);
  res->tokens = ntok;
  res->loss = loss_sum / (double)ntok;
  t->tokens_seen += ntok;
  t->step++;
  res->seconds = nw_clock_now() - t0;
  return 0;
}

/* Greedy answers for problems [first, first+n) of the held-out split, rows
 * of one kv-cache batch of eval.batch rows. Adds to total and correct. */
static int nw_trainer_generate(nw_trainer *t, uint64_t first, int n, int *total,
                               int *correct) {
  const nw_eval_config *ec = &t->cfg.eval;
  int B = ec->batch, Tmax = t->cfg.model.max_seq_len, W = Tmax + 1;
  int rc = 0;
  int *ex = calloc((size_t)B * W, sizeof *ex); /* (B, W) examples */
  int *len = calloc((size_t)B, sizeof *len);
  int *plen = calloc((size_t)B, sizeof *plen);
  int *ngen = calloc((size_t)B, sizeof *ngen); /* answer tokens so far */
  int *done = calloc((size_t)B, sizeof *done);
  int *ok = calloc((size_t)B, sizeof *ok);
  int *tok = calloc((size_t)B, sizeof *tok);
  int *next = calloc((size_t)B, sizeof *next);
  if (!ex || !len || !plen || !ngen || !done || !ok || !tok || !next) {
    rc = NW_EHOSTMEM;
    goto out;
  }
  for (int b = 0; b < B; b++) {
    done[b] = 1;
    if (b >= n)
      continue;
    rc = nw_data_example(t->data, NW_SPLIT_VAL, first + (uint64_t)b, ex + b * W,
                         &len[b], &plen[b]);
    if (rc < 0)
      goto out;
    /* A problem cut short by max_seq_len has no complete answer to score. */
    if (plen[b] <= 0 || plen[b] >= len[b] ||
        ex[b * W + len[b] - 1] != NW_DATA_ANSWER_END)
      continue;
    done[b] = 0;
    ok[b] = 1;
    (*total)++;
  }
  for (int pos = 0; pos < Tmax - 1; pos++) {
    int active = 0;
    for (int b = 0; b < B; b++) {
      active |= !done[b];
      /* position pos holds the prompt, then the row's own answer so far */
      tok[b] =
          pos < len[b] && (pos < plen[b] || !done[b]) ? ex[b * W + pos] : 0;
    }
    if (!active)
      break;
    rc = nw_model_decode_step(t->model, tok, pos, next);
    if (rc < 0)
      goto out;
    for (int b = 0; b < B; b++) {
      if (done[b] || pos + 1 < plen[b])
        continue;
      /* next is the prediction for position pos+1, an answer token */
      int want = ex[b * W + pos + 1];
      if (next[b] != want)
        ok[b] = 0;
      /* Teacher-forcing stops mattering once a row is wrong: feed its own
       * tokens only while it is still right, then it is decided. */
      ngen[b]++;
      if (!ok[b] || want == NW_DATA_ANSWER_END ||
          ngen[b] >= ec->max_new_tokens || pos + 2 >= len[b]) {
        if (ok[b] && want != NW_DATA_ANSWER_END)
          ok[b] = 0; /* ran out of room before the end of the answer */
        done[b] = 1;
      }
    }
  }
  for (int b = 0; b < B; b++)
    if (b < n && ok[b])
      (*correct)++;
out:
  free(ex);
  free(len);
  free(plen);
  free(ngen);
  free(done);
  free(ok);
  free(tok);
  free(next);
  return rc;
}

int nw_trainer_eval(nw_trainer *t, nw_eval_result *res) {
  const nw_eval_config *ec = &t->cfg.eval;
  double t0 = nw_clock_now();
  memset(res, 0, sizeof *res);
  double loss_sum = 0;
  int64_t ntok = 0;
  t->phase = NW_PHASE_EVAL_FORWARD;
  for (int i = 0; i < ec->batches; i++) {
    NW_TRY(nw_batch_build(&t->batch, t->data, NW_SPLIT_VAL,
                          (uint64_t)i * ec->batch, ec->batch));
    t->seq_len = t->batch.T;
    double ls = 0;
    NW_TRY(nw_model_forward_loss(t->model, t->batch.inputs, t->batch.targets,
                                 t->batch.B, t->batch.T, &ls));
    loss_sum += ls;
    ntok += t->batch.n_targets;
  }
  res->val_loss = ntok ? loss_sum / (double)ntok : NAN;

  /* Generation scores problems after those used for the loss. */
  if (ec->generate > 0) {
    t->phase = NW_PHASE_EVAL_GENERATE;
    t->seq_len = t->cfg.model.max_seq_len;
    if (nw_model_kv_bytes(t->model) == 0)
      NW_TRY(nw_model_kv_alloc(t->model, ec->batch, t->cfg.model.max_seq_len));
    uint64_t first = (uint64_t)ec->batches * ec->batch;
    for (int done = 0; done < ec->generate; done += ec->batch) {
      int n = ec->generate - done < ec->batch ? ec->generate - done : ec->batch;
      NW_TRY(nw_trainer_generate(t, first + (uint64_t)done, n, &res->gen_total,
                                 &res->gen_correct));
    }
    /* Keeping the cache saves its allocation at the next eval but holds its
     * bytes through training: eval.release_cache chooses. */
    if (ec->release_cache) {
      nw_model_kv_free(t->model);
      nw_mem_trim(t->mem);
    }
  }
  t->last_eval_step = t->step;
  res->seconds = nw_clock_now() - t0;
  return 0;
}

static void nw_trainer_report_step(nw_trainer *t, const nw_step_result *r) {
  const nw_batch_config *bc = &t->cfg.batch;
  double tps = r->seconds > 0 ? (double)r->tokens / r->seconds : 0;
  if (t->step == 1 || t->step % t->cfg.train.log_every == 0 ||
      t->step == t->cfg.train.steps)
    nw_info("step %d/%d loss %.4f tok/s %.0f lr %.2e micro %d accum %d seq %d "
            "norm %.3f",
            t->step, t->cfg.train.steps, r->loss, tps, r->lr, bc->micro,
            nw_config_accum(bc), r->max_seq, r->grad_norm);
  nw_status_emit(&t->status,
                 json_pack("{s:s, s:i, s:f, s:f, s:f, s:i, s:i, s:i, s:I}",
                           "event", "step", "step", t->step, "loss", r->loss,
                           "lr", r->lr, "tokens_per_s", tps, "micro", bc->micro,
                           "accum", nw_config_accum(bc), "seq_len", r->max_seq,
                           "tokens", (json_int_t)r->tokens));
}

static void nw_trainer_report_eval(nw_trainer *t, const nw_eval_result *e) {
  double acc = e->gen_total ? 100.0 * e->gen_correct / e->gen_total : 0;
  nw_info("eval step %d val_loss %.4f accuracy %.1f%% (%d/%d exact answers) "
          "%.1fs",
          t->step, e->val_loss, acc, e->gen_correct, e->gen_total, e->seconds);
  nw_status_emit(&t->status,
                 json_pack("{s:s, s:i, s:f, s:i, s:i}", "event", "eval", "step",
                           t->step, "val_loss", e->val_loss, "gen_correct",
                           e->gen_correct, "gen_total", e->gen_total));
}

/* The first collective of a run: every rank must continue from the same
 * step, or their sums would mix different batches. Equal steps are the
 * only case where sum^2 == W * sum of squares (exact in doubles). */
static int nw_trainer_check_world(nw_trainer *t) {
  double s = t->step, v[2] = {s, s * s}, W = t->world.size;
  NW_TRY(nw_coll_allreduce_f64(t->coll, v, 2));
  if (v[0] * v[0] != W * v[1]) {
    nw_error("rank %d is at step %d but the ranks' mean step is %.2f: they "
             "resumed different checkpoints; every rank must see the same "
             "run directory",
             t->world.rank, t->step, v[0] / W);
    return NW_EDATA;
  }
  return 0;
}

/* Evaluation on rank 0 only (its numbers are every rank's: the parameters
 * are the same); the others wait for it. */
static int nw_trainer_eval_world(nw_trainer *t) {
  if (t->world.rank == 0) {
    nw_eval_result ev;
    NW_TRY(nw_trainer_eval(t, &ev));
    nw_trainer_report_eval(t, &ev);
  } else {
    t->last_eval_step = t->step; /* as rank 0 has it, for an OOM report */
  }
  return nw_coll_barrier(t->coll);
}

/* A checkpoint now by rank 0 (stop, end of run); every rank learns whether
 * it is durable. Rank 0 returns its own error, the others NW_EIO. */
static int nw_trainer_checkpoint_world(nw_trainer *t, const char *why) {
  int rc = t->world.rank == 0 ? nw_trainer_checkpoint_now(t, why) : 0;
  double failed = rc < 0;
  NW_TRY(nw_coll_allreduce_f64(t->coll, &failed, 1));
  return rc < 0 ? rc : failed > 0 ? NW_EIO : 0;
}

int nw_trainer_run(nw_trainer *t) {
  const nw_config *cfg = &t->cfg;
  nw_status_emit(&t->status,
                 json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i}", "event",
                           "start", "step", t->step, "steps", cfg->train.steps,
                           "micro", cfg->batch.micro, "accum",
                           nw_config_accum(&cfg->batch), "max_seq_len",
                           cfg->model.max_seq_len, "world", t->world.size));
  NW_TRY(nw_trainer_check_world(t));
  if (cfg->eval.every > 0 && t->step == 0)
    NW_TRY(nw_trainer_eval_world(t));
  while (t->step < cfg->train.steps) {
    int stop;
    NW_TRY(nw_trainer_step_begin(t, &stop));
    if (stop) {
      /* SIGTERM/SIGINT on some rank: the step in progress finished on
       * every rank; save and leave, all at this boundary */
      int rc = nw_trainer_checkpoint_world(t, "stop requested");
      if (rc == NW_EPEER || rc == NW_ETIMEDOUT)
        return rc;
      nw_status_emit(&t->status,
                     json_pack("{s:s, s:i, s:b}", "event", "stop", "step",
                               t->step, "checkpoint", rc == 0));
      return rc;
    }
    nw_step_result r;
    NW_TRY(nw_trainer_step(t, &r));
    nw_trainer_report_step(t, &r);
    if (t->world.rank == 0)
      NW_TRY(nw_trainer_checkpoint_tick(t));
    if (cfg->eval.every > 0 &&
        (t->step % cfg->eval.every == 0 || t->step == cfg->train.steps))
      NW_TRY(nw_trainer_eval_world(t));
  }
  NW_TRY(nw_trainer_checkpoint_world(t, "end of run"));
  nw_status_emit(&t->status,
                 json_pack("{s:s, s:i}", "event", "finish", "step", t->step));
  return 0;
}
