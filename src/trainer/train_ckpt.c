/* train_ckpt.c — the trainer's checkpoints: background saves, a durable
 * save on stop, end and OOM, and resume from the newest good file. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "trainer/train.h"

/* Copies the trainer's state into the writer's buffers: the only part of a
 * background checkpoint the training loop waits for. */
static int nw_trainer_snapshot(nw_trainer *t, nw_ckpt_state *st) {
  const nw_config *cfg = &t->cfg;
  size_t n = nw_model_num_params(t->model);
  st->step = t->step;
  st->tokens_seen = t->tokens_seen;
  st->data_index = (uint64_t)t->step * (uint64_t)cfg->batch.effective;
  st->data_seed = cfg->data.seed;
  st->init_seed = cfg->train.seed;
  st->effective = cfg->batch.effective;
  st->micro = cfg->batch.micro;
  st->accum = nw_config_accum(&cfg->batch);
  st->world = cfg->batch.world;
  st->max_seq_len = nw_config_max_len(cfg);
  st->eval_batch = cfg->eval.batch;
  st->eval_release_cache = cfg->eval.release_cache;
  st->last_eval_step = t->last_eval_step;
  st->shape = cfg->model;
  st->n_tensors = nw_model_num_tensors(t->model);
  st->tensors = (nw_tensor_info *)nw_model_tensor(t->model, 0);
  size_t need = nw_config_dump(cfg, NULL, 0) + 1;
  st->config_text = malloc(need);
  if (!st->config_text)
    return NW_EHOSTMEM;
  nw_config_dump(cfg, st->config_text, need);
  t->be->to_host(st->params, nw_model_params(t->model), n * sizeof(float));
  float *m = nw_optim_exp_avg(t->optim), *v = nw_optim_exp_avg_sq(t->optim);
  if (m && v) {
    t->be->to_host(st->exp_avg, m, n * sizeof(float));
    t->be->to_host(st->exp_avg_sq, v, n * sizeof(float));
  } else {
    st->exp_avg = st->exp_avg_sq = NULL; /* no step taken yet */
  }
  return t->be->status(); /* a device fault must not reach a checkpoint */
}

/* A finished write: durable and retained, or reported. */
static void nw_trainer_checkpoint_done(nw_trainer *t, const nw_ckpt_result *r) {
  if (r->rc < 0) {
    t->ckpt_failures++;
    nw_error("checkpoint of step %lld failed (%d in a row, %d allowed): %s; "
             "older checkpoints are intact%s",
             r->step, t->ckpt_failures, t->cfg.checkpoint.max_failures, r->err,
             t->ckpt_failures < t->cfg.checkpoint.max_failures
                 ? ", training goes on"
                 : "; training stops here (exit 74) so that no more work "
                   "goes unsaved");
    nw_status_emit(&t->status,
                   json_pack("{s:s, s:I, s:s}", "event", "checkpoint_error",
                             "step", (json_int_t)r->step, "error", r->err));
    return;
  }
  t->ckpt_failures = 0;
  t->durable_step = (int)r->step;
  snprintf(t->durable_path, sizeof t->durable_path, "%s", r->path);
  nw_info("checkpoint step %lld written in %.2fs: %s", r->step, r->seconds,
          r->path);
  nw_status_emit(&t->status,
                 json_pack("{s:s, s:I, s:s, s:f}", "event", "checkpoint",
                           "step", (json_int_t)r->step, "path", r->path,
                           "seconds", r->seconds));
}

static int nw_trainer_ensure_writer(nw_trainer *t) {
  if (t->writer)
    return 0;
  NW_TRY(nw_ckpt_writer_create(&t->writer, nw_model_num_params(t->model)));
  if (t->be->host_pin) {
    /* Page-locked, the copy from a GPU runs at full bus speed and needs no
     * staging; unpinned it still works, only slower. */
    size_t bytes;
    void *buf = nw_ckpt_writer_buffer(t->writer, &bytes);
    if (t->be->host_pin(buf, bytes) == 0)
      t->writer_pinned = 1;
    else
      nw_warn("checkpoint buffer (%zu bytes) not page-locked: checkpoint "
              "copies from the device will be slower",
              bytes);
  }
  return 0;
}

void nw_trainer_writer_destroy(nw_trainer *t) {
  if (!t->writer)
    return;
  nw_ckpt_result r;
  nw_ckpt_writer_wait(t->writer, &r); /* the thread reads the buffer */
  if (t->writer_pinned) {
    size_t bytes;
    t->be->host_unpin(nw_ckpt_writer_buffer(t->writer, &bytes));
    t->writer_pinned = 0;
  }
  nw_ckpt_writer_destroy(t->writer);
  t->writer = NULL;
}

/* Snapshots and starts a background write of the current step. */
static int nw_trainer_checkpoint_start(nw_trainer *t) {
  NW_TRY(nw_trainer_ensure_writer(t));
  nw_ckpt_state *st = nw_ckpt_writer_state(t->writer);
  if (!st)
    return NW_EBUSY;
  NW_TRY(nw_trainer_snapshot(t, st));
  char path[NW_PATH_MAX];
  nw_ckpt_path(t->cfg.run.dir, t->step, path, sizeof path);
  t->last_ckpt_time = nw_clock_now();
  return nw_ckpt_writer_start(t->writer, path, t->cfg.run.dir,
                              t->cfg.checkpoint.keep_last);
}

int nw_trainer_checkpoint_tick(nw_trainer *t) {
  nw_ckpt_result r;
  if (t->writer && nw_ckpt_writer_poll(t->writer, &r))
    nw_trainer_checkpoint_done(t, &r);
  if (t->ckpt_failures >= t->cfg.checkpoint.max_failures)
    return NW_ESTORAGE;
  const nw_checkpoint_config *cc = &t->cfg.checkpoint;
  int due = (cc->every > 0 && t->step % cc->every == 0) ||
            (cc->every_seconds > 0 &&
             nw_clock_now() - t->last_ckpt_time >= cc->every_seconds);
  if (!due || t->step == t->durable_step)
    return 0;
  if (t->writer && nw_ckpt_writer_busy(t->writer)) {
    /* at most one write in flight: this one waits for the next step */
    nw_debug("checkpoint at step %d deferred: a write is in flight", t->step);
    return 0;
  }
  int rc = nw_trainer_checkpoint_start(t);
  if (rc < 0)
    nw_error("checkpoint at step %d not started: %s", t->step, nw_strerror(rc));
  return 0;
}

int nw_trainer_checkpoint_now(nw_trainer *t, const char *why) {
  nw_ckpt_result r;
  if (t->writer && nw_ckpt_writer_wait(t->writer, &r))
    nw_trainer_checkpoint_done(t, &r);
  if (t->durable_step == t->step)
    return 0;
  nw_info("checkpoint of step %d (%s)", t->step, why);
  NW_TRY(nw_trainer_checkpoint_start(t));
  if (!nw_ckpt_writer_wait(t->writer, &r))
    return NW_EINTERNAL;
  nw_trainer_checkpoint_done(t, &r);
  return r.rc < 0 ? r.rc : 0;
}

static void nw_resume_skipped(void *user, const char *path, const char *why,
                              const char *moved_to) {
  nw_trainer *t = user;
  nw_warn("checkpoint %s is damaged, skipped%s%s: %s", path,
          moved_to[0] ? " and moved to " : " (could not be moved aside)",
          moved_to, why);
  nw_status_emit(&t->status, json_pack("{s:s, s:s, s:s, s:s}", "event",
                                       "checkpoint_skipped", "path", path,
                                       "reason", why, "moved_to", moved_to));
}

/* A status line while a verification runs: the supervisor's hang
 * detection counts silence, and a large checkpoint on a slow disk can take
 * longer than supervisor.hang_timeout to verify. */
static void nw_resume_waiting(void *user, const char *path, double seconds) {
  nw_trainer *t = user;
  nw_status_emit(&t->status, json_pack("{s:s, s:s, s:f}", "event", "verifying",
                                       "path", path, "seconds", seconds));
}

/* --resume none on a run that has checkpoints: they are moved to
 * checkpoints/superseded-<time>/, never overwritten by the fresh start. */
static int nw_resume_none(nw_trainer *t, char *err, size_t errlen) {
  char(*paths)[NW_PATH_MAX] = malloc(256 * sizeof *paths);
  if (!paths)
    return NW_EHOSTMEM;
  int n = 0, rc = 0;
  char sub[64], moved[NW_PATH_MAX + 64];
  snprintf(sub, sizeof sub, "superseded-%lld", (long long)time(NULL));
  while (rc == 0 &&
         (rc = nw_ckpt_list(t->cfg.run.dir, paths, 256, &n, err, errlen)) ==
             0 &&
         n > 0) {
    for (int i = 0; i < n && rc == 0; i++) {
      rc =
          nw_ckpt_set_aside(t->cfg.run.dir, paths[i], sub, moved, sizeof moved);
      if (rc < 0)
        snprintf(err, errlen, "--resume none: cannot move %s aside: %s",
                 paths[i], nw_strerror(rc));
    }
    if (rc == 0)
      nw_warn("--resume none: %d checkpoint%s of this run moved to %s/", n,
              n == 1 ? "" : "s", sub);
  }
  free(paths);
  return rc;
}

/* A checkpoint of another model is refused by the setting that differs. */
static int nw_resume_check_shape(const nw_trainer *t, const char *path,
                                 const nw_ckpt_state *st, char *err,
                                 size_t errlen) {
  const nw_model_config *a = &st->shape, *b = &t->cfg.model;
  const struct {
    const char *key;
    int ckpt, cfg;
  } keys[] = {{"model.n_layer", a->n_layer, b->n_layer},
              {"model.n_head", a->n_head, b->n_head},
              {"model.n_embd", a->n_embd, b->n_embd},
              {"model.vocab_size", a->vocab_size, b->vocab_size},
              {"model.max_seq_len", a->max_seq_len, b->max_seq_len},
              {"batch.effective", st->effective, t->cfg.batch.effective}};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (keys[i].ckpt != keys[i].cfg) {
      snprintf(err, errlen,
               "%s: %s is %d in the checkpoint but %d in the config; "
               "refusing to load it",
               path, keys[i].key, keys[i].ckpt, keys[i].cfg);
      return NW_ECONFIG;
    }
  if (st->num_params != nw_model_num_params(t->model)) {
    snprintf(err, errlen, "%s: %zu parameters, the model has %zu", path,
             st->num_params, nw_model_num_params(t->model));
    return NW_ECONFIG;
  }
  if (st->data_index != (uint64_t)st->step * (uint64_t)st->effective) {
    snprintf(err, errlen, "%s: data position %llu is not step %lld x %d", path,
             (unsigned long long)st->data_index, (long long)st->step,
             st->effective);
    return NW_EDATA;
  }
  return 0;
}

int nw_trainer_resume(nw_trainer *t, const char *spec, char *err,
                      size_t errlen) {
  char path[NW_PATH_MAX];
  double timeout = t->cfg.checkpoint.verify_timeout;
  nw_ckpt_search search = {nw_resume_skipped, nw_resume_waiting, t};
  if (strcmp(spec, "none") == 0) /* rank 0 owns the run's checkpoints */
    return t->world.rank == 0 ? nw_resume_none(t, err, errlen) : 0;
  if (strcmp(spec, "auto") == 0) {
    int rc = nw_ckpt_find_latest(t->cfg.run.dir, timeout, &search, path,
                                 sizeof path, err, errlen);
    if (rc == NW_ENOTFOUND) {
      err[0] = 0;
      return 0; /* nothing to resume: a fresh start */
    }
    if (rc < 0)
      return rc; /* NW_EDAMAGED: checkpoints exist, none verifies */
  } else {
    snprintf(path, sizeof path, "%s", spec);
    char why[1024];
    int rc = nw_ckpt_verify_watched(path, timeout, &search, why, sizeof why);
    if (rc < 0) {
      snprintf(err, errlen, "--resume %s: %s", path, why);
      return rc;
    }
  }
  nw_ckpt_state st;
  NW_TRY(nw_ckpt_read(path, &st, err, errlen));
  int rc = nw_resume_check_shape(t, path, &st, err, errlen);
  if (rc < 0)
    goto out;
  size_t n = st.num_params;
  t->be->to_device(nw_model_params(t->model), st.params, n * sizeof(float));
  if (st.exp_avg && st.exp_avg_sq) {
    if ((rc = nw_optim_alloc_state(t->optim)) < 0) {
      snprintf(err, errlen, "%s: no device memory for the optimizer state",
               path);
      goto out;
    }
    t->be->to_device(nw_optim_exp_avg(t->optim), st.exp_avg, n * sizeof(float));
    t->be->to_device(nw_optim_exp_avg_sq(t->optim), st.exp_avg_sq,
                     n * sizeof(float));
  }
  if ((rc = t->be->status()) < 0) {
    snprintf(err, errlen, "%s: copying the state to the device: %s", path,
             nw_strerror(rc));
    goto out;
  }
  t->step = (int)st.step;
  t->tokens_seen = st.tokens_seen;
  t->last_eval_step = (int)st.last_eval_step;
  t->durable_step = t->step;
  snprintf(t->durable_path, sizeof t->durable_path, "%s", path);
  nw_info("resumed from %s at step %lld (micro %d x accum %d then, %d x %d "
          "now; max length %d then, %d now)",
          path, (long long)st.step, st.micro, st.accum, t->cfg.batch.micro,
          nw_config_accum(&t->cfg.batch), st.max_seq_len,
          nw_config_max_len(&t->cfg));
  nw_status_emit(&t->status,
                 json_pack("{s:s, s:I, s:s}", "event", "resume", "step",
                           (json_int_t)st.step, "path", path));
out:
  nw_ckpt_free(&st);
  return rc;
}
