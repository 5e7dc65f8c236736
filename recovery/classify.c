/* classify.c — the rules of docs/recovery.md "Classification", in order:
 * duplicate-process, eval-cache, sequence-length, activation; unknown when
 * the evidence supports none of them. Every number a rule uses goes into
 * the evidence so that a person can check the decision. */
#include "recovery/classify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"
#include "model/estimate.h"

static double nw__mib(uint64_t b) { return (double)b / (1024.0 * 1024.0); }

/* Appends one sentence, whole or not at all, so the evidence never ends in
 * a cut number. */
__attribute__((format(printf, 2, 3))) static void
nw__say(nw_classification *out, const char *fmt, ...) {
  char s[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(s, sizeof s, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof s)
    return;
  size_t len = strlen(out->evidence);
  size_t sep = len > 0 ? 1 : 0;
  if (len + sep + (size_t)n >= sizeof out->evidence)
    return;
  if (sep)
    out->evidence[len++] = ' ';
  memcpy(out->evidence + len, s, (size_t)n + 1);
}

static const char *nw__signal_name(int sig) {
  switch (sig) {
  case 1:
    return "SIGHUP";
  case 2:
    return "SIGINT";
  case 6:
    return "SIGABRT";
  case 7:
    return "SIGBUS";
  case 9:
    return "SIGKILL";
  case 11:
    return "SIGSEGV";
  case 15:
    return "SIGTERM";
  default:
    return "a signal";
  }
}

/* No report: only what the supervisor saw. None of it names a device-memory
 * cause, so the cause is unknown and the evidence says why. */
static void nw__no_report(const nw_observations *obs, nw_classification *out) {
  out->cause = NW_CAUSE_UNKNOWN;
  nw__say(out, "The trainer left no OOM report.");
  if (obs->oom_killed_by_kernel)
    nw__say(out, "The cgroup's oom_kill counter rose: the kernel's OOM killer "
                 "ended the trainer for host memory, not device memory.");
  if (obs->signal > 0)
    nw__say(out, "It was ended by signal %d (%s).", obs->signal,
            nw__signal_name(obs->signal));
  if (obs->stderr_cuda_oom)
    nw__say(out, "The trainer printed a CUDA out-of-memory error; without an "
                 "OOM report the cause (eval cache, duplicate process, "
                 "activations or sequence length) cannot be told apart.");
  if (obs->signal <= 0 && !obs->oom_killed_by_kernel) {
    if (obs->exit_code == 75)
      nw__say(out, "It exited with the OOM code 75 but the report is missing.");
    else if (!obs->stderr_cuda_oom)
      nw__say(out, "It exited with code %d: not an out-of-memory failure.",
              obs->exit_code);
  }
}

static int nw__is_self(const nw_observations *obs, int pid) {
  int n = obs->n_self_pids;
  if (n > NW_CLASSIFY_MAX_SELF)
    n = NW_CLASSIFY_MAX_SELF;
  for (int i = 0; i < n; i++)
    if (obs->self_pids[i] == pid)
      return 1;
  return 0;
}

static int nw__is_train_phase(nw_phase p) {
  return p == NW_PHASE_TRAIN_FORWARD || p == NW_PHASE_TRAIN_BACKWARD ||
         p == NW_PHASE_OPTIMIZER;
}

/* What the processes on the device hold, sorted into ours, duplicates of
 * this run (same uid and run id: killable) and foreign ones. */
typedef struct {
  uint64_t self_bytes;  /* our own other trainers (self_pids) */
  uint64_t dup_bytes;   /* killable duplicates */
  uint64_t other_bytes; /* everything not ours: duplicates and foreign */
  int same_run;         /* processes of this run id holding memory, any uid */
  uint64_t same_run_bytes;
} nw__device;

static void nw__sort_procs(const nw_oom_report *rep, const nw_observations *obs,
                           const char *run_id, nw_classification *out,
                           nw__device *d) {
  memset(d, 0, sizeof *d);
  int n = rep->n_procs;
  if (n < 0)
    n = 0;
  if (n > NW_OOM_MAX_PROCS)
    n = NW_OOM_MAX_PROCS;
  int dup_said = 0, foreign_said = 0, dup_unlisted = 0, foreign_unlisted = 0;
  for (int i = 0; i < n; i++) {
    const nw_device_proc *p = &rep->procs[i];
    if (p->bytes == 0 || p->pid == rep->pid)
      continue;
    if (nw__is_self(obs, p->pid)) {
      d->self_bytes += p->bytes;
      continue;
    }
    d->other_bytes += p->bytes;
    /* memchr: a run id from a report is not trusted to be terminated */
    int run = run_id[0] != '\0' &&
              memchr(p->run_id, '\0', sizeof p->run_id) != NULL &&
              strcmp(p->run_id, run_id) == 0;
    int uid = p->uid == obs->self_uid;
    d->same_run += run;
    if (run)
      d->same_run_bytes += p->bytes;
    if (run && uid) {
      d->dup_bytes += p->bytes;
      if (out->n_duplicates < NW_CLASSIFY_MAX_PIDS)
        out->duplicate_pids[out->n_duplicates++] = p->pid;
      else
        dup_unlisted++;
      if (dup_said++ < 3)
        nw__say(out,
                "Another process of this run (pid %d, same uid) holds %.1f "
                "MiB of device memory.",
                p->pid, nw__mib(p->bytes));
      continue;
    }
    out->foreign_bytes += p->bytes;
    if (out->n_foreign < NW_CLASSIFY_MAX_PIDS)
      out->foreign_pids[out->n_foreign++] = p->pid;
    else
      foreign_unlisted++;
    if (foreign_said++ < 3) {
      const char *why = run   ? "this run id under another uid: not provably "
                                "ours"
                        : uid ? "the same uid but another run"
                              : "another user's process";
      nw__say(out,
              "Process %d (uid %u, %s) holds %.1f MiB; it is never "
              "killed.",
              p->pid, p->uid, why, nw__mib(p->bytes));
    }
  }
  if (dup_said > 3)
    nw__say(out, "%d more processes of this run hold memory.", dup_said - 3);
  if (foreign_said > 3)
    nw__say(out, "%d more foreign processes hold memory.", foreign_said - 3);
  if (dup_unlisted || foreign_unlisted)
    nw__say(out, "%d duplicate and %d foreign pids are not listed.",
            dup_unlisted, foreign_unlisted);
}

/* What is available to this process: the device less the others (and our
 * own other trainers), no more than our cap. `lo`..`hi` when the capacity
 * is unknown: we held `lo` at the refusal, and `lo + requested` was refused. */
typedef struct {
  int known;
  uint64_t capacity; /* the device (0 = unknown) */
  uint64_t avail;    /* known: what a step may use */
  uint64_t lo, hi;   /* unknown: bounds of what was available */
} nw__avail;

static void nw__available(const nw_config *cfg, const nw_oom_report *rep,
                          const nw__device *d, uint64_t held, nw__avail *a) {
  memset(a, 0, sizeof *a);
  a->capacity = rep->device_capacity;
  if (a->capacity == 0 && cfg)
    a->capacity = cfg->device.memory;
  if (a->capacity > 0) {
    uint64_t busy = d->other_bytes + d->self_bytes;
    a->known = 1;
    a->avail = busy < a->capacity ? a->capacity - busy : 0;
  }
  if (rep->cap_bytes > 0 && (!a->known || rep->cap_bytes < a->avail)) {
    a->known = 1;
    a->avail = rep->cap_bytes;
  }
  a->lo = held;
  a->hi = held + rep->requested_bytes;
}

static int nw__fits(const nw__avail *a, uint64_t need) {
  return a->known ? need <= a->avail : need <= a->lo;
}

static int nw__cannot_fit(const nw__avail *a, uint64_t need) {
  return a->known ? need > a->avail : need >= a->hi;
}

static void nw__say_avail(nw_classification *out, const nw__avail *a) {
  if (a->known && a->capacity > 0)
    nw__say(out, "%.1f MiB of the %.1f MiB device are available to this run.",
            nw__mib(a->avail), nw__mib(a->capacity));
  else if (a->known)
    nw__say(out,
            "%.1f MiB are available to this run (its own cap; the device "
            "capacity is unknown).",
            nw__mib(a->avail));
  else
    nw__say(out,
            "The device capacity is unknown; the trainer held %.1f MiB and "
            "was refused at %.1f MiB.",
            nw__mib(a->lo), nw__mib(a->hi));
}

/* Rules 3 and 4 for a training phase. */
static void nw__train_rules(const nw_config *cfg, const nw_oom_report *rep,
                            const nw__avail *a, nw_classification *out) {
  int B = rep->set.micro > 0 ? rep->set.micro : cfg->batch.micro;
  int T = rep->seq_len, med = rep->median_seq_len;
  nw__say_avail(out, a);
  if (med <= 0) {
    out->cause = NW_CAUSE_ACTIVATION;
    nw__say(out, "No median length yet: the failure came on the first "
                 "micro-batches.");
    if (T > 0) {
      nw_estimate e;
      nw_estimate_train(cfg, B, T, 0, &e);
      nw__say(out, "At micro-batch %d and %d tokens the step needs %.1f MiB.",
              B, T, nw__mib(e.total));
    }
    return;
  }
  nw_estimate em;
  nw_estimate_train(cfg, B, med, 0, &em);
  /* "clearly above": at least a quarter longer than the median */
  int clearly = T > med && (int64_t)T * 4 >= (int64_t)med * 5;
  if (!clearly) {
    out->cause = NW_CAUSE_ACTIVATION;
    nw__say(out,
            "The failing micro-batch (micro %d) was padded to %d tokens, "
            "typical for the median %d; at %d tokens the step needs %.1f "
            "MiB: activations of typical batches do not fit.",
            B, T, med, med, nw__mib(em.total));
    return;
  }
  nw_estimate et;
  nw_estimate_train(cfg, B, T, 0, &et);
  if (nw__fits(a, em.total) && nw__cannot_fit(a, et.total)) {
    out->cause = NW_CAUSE_SEQUENCE_LENGTH;
    nw__say(out,
            "The failing micro-batch was padded to %d tokens; the median is "
            "%d; at %d tokens the step needs %.1f MiB, at %d it needs %.1f "
            "MiB.",
            T, med, med, nw__mib(em.total), T, nw__mib(et.total));
    return;
  }
  if (nw__cannot_fit(a, em.total)) {
    out->cause = NW_CAUSE_ACTIVATION;
    nw__say(out,
            "Even at the median length %d (this batch: %d tokens) the step at "
            "micro-batch %d needs %.1f MiB: activations do not fit.",
            med, T, B, nw__mib(em.total));
    return;
  }
  out->cause = NW_CAUSE_UNKNOWN;
  nw__say(out,
          "The batch of %d tokens is long (median %d), but the estimate "
          "(%.1f MiB at %d, %.1f MiB at %d) cannot tell whether the median "
          "length fits and this one does not.",
          T, med, nw__mib(em.total), med, nw__mib(et.total), T);
}

/* What the rules share, resolved once from the report and the
 * observations. */
typedef struct {
  const nw_config *cfg;     /* NULL: the estimator cannot be consulted */
  nw_config ecfg;           /* cfg with the report's eval settings */
  const nw_oom_report *rep; /* a report of this layout and a known phase */
  const char *phase;
  char run_id[NW_RUN_ID_MAX]; /* the supervisor's, else the report's */
  nw__device dev;
  nw__avail avail;
  uint64_t use; /* what this phase needs at its peak, by the estimator */
} nw__case;

/* The report's first sentence, or why it cannot be read: 0 when the rules
 * may go on. */
static int nw__headline(const nw_oom_report *rep, nw_classification *out) {
  if (rep->version != NW_OOM_REPORT_VERSION) {
    nw__say(out, "The OOM report has layout version %d, not %d.", rep->version,
            NW_OOM_REPORT_VERSION);
    return -1;
  }
  if ((int)rep->phase < 0 || rep->phase >= NW_PHASE_COUNT) {
    nw__say(out, "The OOM report names no known phase.");
    return -1;
  }
  int rc = (int)rep->requested_category;
  nw__say(out, "Out of memory in %s after step %d: %.1f MiB of %s refused.",
          nw_phase_name(rep->phase), rep->step, nw__mib(rep->requested_bytes),
          rc >= 0 && rc < NW_MEM_NCAT
              ? nw_mem_category_name((nw_mem_category)rc)
              : "memory");
  return 0;
}

/* Fills k: who holds the device (saying so), what is available, and what
 * this phase needs at its peak: the use rule 1 asks about ("would our use
 * fit without the others?"). */
static void nw__case_init(nw__case *k, const nw_config *cfg,
                          const nw_oom_report *rep, const nw_observations *obs,
                          nw_classification *out) {
  k->cfg = cfg;
  k->rep = rep;
  k->phase = nw_phase_name(rep->phase);
  /* The run id is the supervisor's; the report's only when it has none. */
  k->run_id[0] = '\0';
  const char *rid = obs->run_id[0] ? obs->run_id : rep->run_id;
  if (memchr(rid, '\0', NW_RUN_ID_MAX))
    snprintf(k->run_id, sizeof k->run_id, "%s", rid);
  nw__sort_procs(rep, obs, k->run_id, out, &k->dev);
  uint64_t held = rep->cached_bytes;
  for (int c = 0; c < NW_MEM_NCAT; c++)
    held += rep->live[c];
  nw__available(cfg, rep, &k->dev, held, &k->avail);
  k->use = held + rep->requested_bytes;
  if (!cfg)
    return;
  k->ecfg = *cfg;
  if (rep->set.eval_batch > 0)
    k->ecfg.eval.batch = rep->set.eval_batch;
  k->ecfg.eval.release_cache = rep->set.release_cache;
  int B = rep->set.micro > 0 ? rep->set.micro : cfg->batch.micro;
  int T = rep->seq_len > 0 ? rep->seq_len : cfg->model.max_seq_len;
  nw_estimate e;
  if (nw__is_train_phase(rep->phase))
    nw_estimate_train(&k->ecfg, B, T, rep->kv_cache_bytes, &e);
  else if (rep->phase == NW_PHASE_EVAL_FORWARD ||
           rep->phase == NW_PHASE_EVAL_GENERATE)
    nw_estimate_eval(&k->ecfg, T, &e);
  else
    nw_estimate_static(&k->ecfg, &e);
  if (e.total > k->use)
    k->use = e.total;
}

/* Rule 1, duplicate-process: 1 when it decided. */
static int nw__rule_duplicate(const nw__case *k, nw_classification *out) {
  const nw__device *dev = &k->dev;
  if (dev->same_run > 0) {
    out->cause = NW_CAUSE_DUPLICATE;
    nw__say(out,
            "%d other process(es) of run \"%s\" hold %.1f MiB of the "
            "device.",
            dev->same_run, k->run_id, nw__mib(dev->same_run_bytes));
    return 1;
  }
  uint64_t capacity = k->avail.capacity, ceiling = capacity;
  if (k->rep->cap_bytes > 0 && (ceiling == 0 || k->rep->cap_bytes < ceiling))
    ceiling = k->rep->cap_bytes;
  if (dev->other_bytes > 0 && capacity > 0 &&
      k->use + dev->self_bytes <= ceiling &&
      k->use + dev->self_bytes + dev->other_bytes > capacity) {
    out->cause = NW_CAUSE_DUPLICATE;
    nw__say(out,
            "Other processes hold %.1f MiB of the %.1f MiB device; without "
            "them this %s would fit (it needs %.1f MiB).",
            nw__mib(dev->other_bytes), nw__mib(capacity), k->phase,
            nw__mib(k->use));
    return 1;
  }
  return 0;
}

/* Rule 2, eval-cache: a failure in evaluation, or kv-cache still live in
 * training or at a checkpoint. 1 when it decided. */
static int nw__rule_eval_cache(const nw__case *k, nw_classification *out) {
  const nw_oom_report *rep = k->rep;
  if (rep->phase == NW_PHASE_EVAL_FORWARD ||
      rep->phase == NW_PHASE_EVAL_GENERATE) {
    out->cause = NW_CAUSE_EVAL_CACHE;
    nw__say(out,
            "The failure came during evaluation (%s, eval batch %d, "
            "release_cache %d) with %.1f MiB of kv-cache live.",
            k->phase, rep->set.eval_batch, rep->set.release_cache,
            nw__mib(rep->kv_cache_bytes));
    if (k->cfg) {
      nw__say_avail(out, &k->avail);
      nw__say(out, "An evaluation needs at least %.1f MiB.", nw__mib(k->use));
    }
    return 1;
  }
  if (rep->kv_cache_bytes == 0 ||
      !(nw__is_train_phase(rep->phase) || rep->phase == NW_PHASE_CHECKPOINT))
    return 0;
  out->cause = NW_CAUSE_EVAL_CACHE;
  if (rep->steps_since_eval >= 0)
    nw__say(out,
            "kv-cache held %.1f MiB during %s, %d step%s after the "
            "evaluation at step %d.",
            nw__mib(rep->kv_cache_bytes), k->phase, rep->steps_since_eval,
            rep->steps_since_eval == 1 ? "" : "s",
            rep->step - rep->steps_since_eval);
  else
    nw__say(out, "kv-cache held %.1f MiB during %s.",
            nw__mib(rep->kv_cache_bytes), k->phase);
  if (k->cfg && nw__is_train_phase(rep->phase)) {
    int B = rep->set.micro > 0 ? rep->set.micro : k->cfg->batch.micro;
    int T = rep->seq_len > 0 ? rep->seq_len : k->cfg->model.max_seq_len;
    nw_estimate e;
    nw_estimate_train(&k->ecfg, B, T, 0, &e);
    nw__say_avail(out, &k->avail);
    nw__say(out, "Without the cache the step needs %.1f MiB.",
            nw__mib(e.total));
  }
  return 1;
}

/* Neither batch nor length can help when the model's own state does not
 * fit; nor at init or checkpoint, where no batch is in flight. 1 when that
 * is so (the cause stays unknown). */
static int nw__no_batch_remedy(const nw__case *k, nw_classification *out) {
  nw_estimate st;
  nw_estimate_static(&k->ecfg, &st);
  if (k->avail.known && st.total > k->avail.avail) {
    nw__say(out,
            "Parameters, gradients and optimizer state alone need %.1f MiB "
            "of the %.1f MiB available: no batch or length setting helps.",
            nw__mib(st.total), nw__mib(k->avail.avail));
    return 1;
  }
  if (k->rep->phase == NW_PHASE_INIT || k->rep->phase == NW_PHASE_CHECKPOINT) {
    nw__say_avail(out, &k->avail);
    nw__say(out,
            "Parameters, gradients and optimizer state need %.1f MiB; the "
            "failure in %s is not explained by batch or length settings.",
            nw__mib(st.total), k->phase);
    return 1;
  }
  return 0;
}

void nw_classify(const nw_config *cfg, const nw_oom_report *rep,
                 const nw_observations *obs_in, nw_classification *out) {
  if (!out)
    return;
  memset(out, 0, sizeof *out);
  out->cause = NW_CAUSE_UNKNOWN;
  nw_observations none;
  memset(&none, 0, sizeof none);
  const nw_observations *obs = obs_in ? obs_in : &none;
  if (!rep) {
    nw__no_report(obs, out);
    return;
  }
  if (nw__headline(rep, out) < 0)
    return;
  nw__case k;
  nw__case_init(&k, cfg, rep, obs, out);
  if (nw__rule_duplicate(&k, out) || nw__rule_eval_cache(&k, out))
    return;
  if (cfg && nw__no_batch_remedy(&k, out))
    return;
  if (!nw__is_train_phase(rep->phase)) {
    nw__say(out, "No rule applies to a failure in %s.", k.phase);
    return;
  }
  if (!cfg) {
    nw__say(out, "Without the run's configuration the memory estimate cannot "
                 "be consulted.");
    return;
  }
  /* 3. sequence-length, 4. activation */
  nw__train_rules(&k.ecfg, rep, &k.avail, out);
}
