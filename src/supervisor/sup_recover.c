/* sup_recover.c — observe, classify, decide: from a trainer's exit to the
 * policy's decision. Only observe does I/O. */
#define _GNU_SOURCE
#include "supervisor/sup_recover.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"          // defines: NW_E*, nw_strerror
#include "base/log.h"            // defines: nw_info, nw_warn
#include "checkpoints/ckpt.h"    // defines: nw_ckpt_list
#include "protocol/exit_codes.h" // defines: NW_EXIT_*
#include "protocol/world.h"      // defines: nw_world_device_name
#include "supervisor/sup_kill.h" // defines: nw_sup_pid_uid

/* ---- the cgroup's OOM-killer counter ---- */

static int nw_sup_read_key(const char *path, const char *key, uint64_t *out) {
  FILE *f = fopen(path, "re");
  if (!f)
    return NW_ENOTFOUND;
  char name[64];
  unsigned long long v;
  int rc = NW_ENOTFOUND;
  while (fscanf(f, "%63s %llu", name, &v) == 2)
    if (!strcmp(name, key)) {
      *out = v;
      rc = 0;
      break;
    }
  fclose(f);
  return rc;
}

int nw_sup_oom_kill_count(uint64_t *out) {
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (!f)
    return NW_ENOTFOUND;
  char line[4096], v2[4096] = "", v1[4096] = "";
  int have_v2 = 0, have_v1 = 0;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (!strncmp(line, "0::", 3)) {
      snprintf(v2, sizeof v2, "%s", line + 3);
      have_v2 = 1;
    }
    char *m = strstr(line, ":memory:");
    if (m) {
      snprintf(v1, sizeof v1, "%s", m + 8);
      have_v1 = 1;
    }
  }
  fclose(f);
  char path[8400];
  if (have_v1) { /* v1: the cgroup's own file, or the namespace root's */
    snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.oom_control",
             v1);
    if (nw_sup_read_key(path, "oom_kill", out) == 0)
      return 0;
    if (nw_sup_read_key("/sys/fs/cgroup/memory/memory.oom_control", "oom_kill",
                        out) == 0)
      return 0;
  }
  if (have_v2) {
    snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.events", v2);
    if (nw_sup_read_key(path, "oom_kill", out) == 0)
      return 0;
    if (nw_sup_read_key("/sys/fs/cgroup/memory.events", "oom_kill", out) == 0)
      return 0;
  }
  return NW_ENOTFOUND;
}

/* ---- observe ---- */

/* The step a run had reached when a trainer fails before loading its
 * checkpoint (its report says step 0): the newest checkpoint's, which the
 * next trainer resumes from, or the last step line seen. */
static int nw_sup_reached_step(const char *run_dir, int step) {
  char paths[1][NW_PATH_MAX], err[256];
  int n = 0;
  if (nw_ckpt_list(run_dir, paths, 1, &n, err, sizeof err) == 0 && n > 0) {
    const char *base = strrchr(paths[0], '/');
    long long k = -1;
    if (base && sscanf(base + 1, "ckpt-%lld.h5", &k) == 1 && k > step)
      step = (int)k;
  }
  return step;
}

static void nw_sup_describe_exit(int wstatus, char *buf, size_t len) {
  if (WIFEXITED(wstatus))
    snprintf(buf, len, "exit code %d", WEXITSTATUS(wstatus));
  else if (WIFSIGNALED(wstatus))
    snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(wstatus),
             strsignal(WTERMSIG(wstatus)));
  else
    snprintf(buf, len, "wait status %#x", wstatus);
}

/* The trainer's report, if it is this trainer's. */
static void nw_sup_read_report(nw_sup_exit *x, const char *run_dir) {
  char err[512];
  nw_oom_report_path(run_dir, x->rank, x->world, x->report_path,
                     sizeof x->report_path);
  x->have_report = 0;
  if (nw_oom_report_read(x->report_path, &x->report, err, sizeof err) < 0) {
    if (access(x->report_path, F_OK) == 0)
      nw_warn("OOM report: %s", err);
    return;
  }
  if (x->report.pid != x->pid) {
    nw_warn("%s is from pid %d, not from trainer %d: ignored", x->report_path,
            x->report.pid, x->pid);
    return;
  }
  x->have_report = 1;
}

/* What the classifier gets besides the report. */
static void nw_sup_observations(nw_sup_exit *x, const nw_sup_ranks *rk,
                                const char *run_id) {
  nw_observations *o = &x->obs;
  memset(o, 0, sizeof *o);
  o->exit_code = x->code;
  o->signal = x->sig;
  o->stderr_cuda_oom = rk->stderr_oom;
  o->self_uid = (unsigned)getuid();
  snprintf(o->run_id, sizeof o->run_id, "%s", run_id);
  for (int k = 0; k < rk->n && o->n_self_pids < NW_CLASSIFY_MAX_SELF; k++)
    o->self_pids[o->n_self_pids++] = (int)rk->rank[k].child.pid;
  uint64_t after = 0;
  x->oom_kill_known = rk->oom_kill_known;
  if (rk->oom_kill_known && nw_sup_oom_kill_count(&after) == 0 &&
      after > rk->oom_kill_before)
    o->oom_killed_by_kernel = 1;
}

/* What storage failures and a locked run directory leave to look at. */
static void nw_sup_observe_storage(nw_sup_exit *x, const nw_sup_progress *p,
                                   const nw_config *cfg, const char *run_id) {
  snprintf(x->ckpt_error, sizeof x->ckpt_error, "%s",
           p->ckpt_errors ? p->ckpt_error : "");
  x->ckpt_errors = p->ckpt_errors;
  x->skipped = p->skipped;
  snprintf(x->run_dir, sizeof x->run_dir, "%s", cfg->run.dir);
  memset(&x->lock, 0, sizeof x->lock);
  x->lock_uid = -1;
  x->lock_ours = 0;
  if (x->code != NW_EXIT_LOCKED || x->hang || x->stop_requested)
    return;
  nw_runlock_who(cfg->run.dir, NW_TRAINLOCK_FILE, &x->lock);
  if (x->lock.pid > 1)
    x->lock_uid = nw_sup_pid_uid(x->lock.pid);
  x->lock_ours = x->lock.pid > 1 && x->lock_uid == (long)getuid() &&
                 !strcmp(x->lock.run_id, run_id);
}

void nw_sup_observe(nw_sup_exit *x, const nw_sup_ranks *rk,
                    const nw_sup_progress *p, const nw_config *cfg,
                    const char *run_id, int stop_requested, int hang) {
  int r = nw_sup_ranks_primary(rk), wstatus = rk->rank[r].wstatus;
  x->rank = r;
  x->world = rk->n;
  x->pid = (int)rk->rank[r].child.pid;
  x->code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  x->sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  nw_sup_describe_exit(wstatus, x->how, sizeof x->how);
  nw_info("trainer %d: %s", x->pid, x->how);
  x->stop_requested = stop_requested;
  x->hang = hang;
  x->step = p->step;
  x->seen_finish = p->seen_finish;
  x->seen_stop = p->seen_stop;
  nw_world_device_name(cfg, r, x->device, sizeof x->device);
  nw_sup_observations(x, rk, run_id);
  x->have_report = 0;
  x->gpu[0] = '\0';
  x->failed_step = p->step;
  nw_sup_observe_storage(x, p, cfg, run_id);
  if (stop_requested ||
      (!hang && (x->code == NW_EXIT_FINISHED || x->code == NW_EXIT_USAGE ||
                 x->code == NW_EXIT_CONFIG || x->code == NW_EXIT_STORAGE ||
                 x->code == NW_EXIT_DAMAGED || x->code == NW_EXIT_LOCKED)))
    return; /* not an OOM: no report to look at */
  nw_sup_read_report(x, cfg->run.dir);
  if (!x->have_report)
    return;
  /* A GPU report names the card as "cuda:N ...": N is NVML's index only
   * when CUDA_VISIBLE_DEVICES does not renumber the cards; otherwise the
   * GPU stays unnamed and no process on it is ever killed. */
  int gpu_index;
  if (sscanf(x->report.device, "cuda:%d", &gpu_index) == 1 &&
      !getenv("CUDA_VISIBLE_DEVICES"))
    snprintf(x->gpu, sizeof x->gpu, "%d", gpu_index);
  x->failed_step = x->report.step;
  if (x->report.phase == NW_PHASE_INIT)
    x->failed_step = nw_sup_reached_step(cfg->run.dir, p->step);
}

nw_device_ref nw_sup_exit_device(const nw_sup_exit *x) {
  nw_device_ref d = {.gpu = x->gpu[0] != '\0',
                     .name = x->gpu[0] ? x->gpu : x->device};
  return d;
}

/* ---- classify ---- */

/* The supervisor's own words: a hang, or a SIGKILL without a report
 * (the kernel's OOM killer, or someone else). */
static void nw_sup_evidence(const nw_sup_exit *x, const char *cls_evidence,
                            char *buf, size_t len) {
  if (x->hang)
    snprintf(buf, len,
             "no heartbeat for supervisor.hang_timeout; the trainer ended "
             "with %s",
             x->how);
  else if (x->sig == SIGKILL && !x->have_report)
    snprintf(buf, len, "%s %s", cls_evidence,
             x->obs.oom_killed_by_kernel
                 ? "(the cgroup's oom_kill counter rose: the kernel's OOM "
                   "killer, host memory)"
             : x->oom_kill_known ? "(the cgroup's oom_kill counter did "
                                   "not rise: killed from outside)"
                                 : "(no cgroup memory counters to tell "
                                   "the kernel's OOM killer apart)");
  else
    snprintf(buf, len, "%s", cls_evidence);
}

/* Exit 74, 65 and 73: storage, and a run directory another trainer holds.
 * 1 when x was one of them (v filled). */
static int nw_sup_classify_storage(const nw_sup_exit *x, nw_sup_verdict *v) {
  if (x->code == NW_EXIT_STORAGE) {
    v->end = NW_SUP_END_STORAGE;
    snprintf(
        v->evidence, sizeof v->evidence,
        "%d checkpoint%s in a row could not be written (the last: %.500s); "
        "the trainer stopped so that no more work goes unsaved. Free "
        "space where %.300s/checkpoints lives, then start the run again: it "
        "resumes from the newest good checkpoint",
        x->ckpt_errors, x->ckpt_errors == 1 ? "" : "s",
        x->ckpt_error[0] ? x->ckpt_error : "see the trainer's log", x->run_dir);
  } else if (x->code == NW_EXIT_DAMAGED) {
    v->end = NW_SUP_END_STORAGE;
    snprintf(v->evidence, sizeof v->evidence,
             "the run has checkpoints and none verifies (%d skipped; each "
             "was moved to %.300s/checkpoints/damaged/, see the "
             "checkpoint-skipped entries); nothing was trained from step 0. "
             "Look at them; `nightwatch run --resume none` starts over on "
             "purpose",
             x->skipped, x->run_dir);
  } else if (x->code == NW_EXIT_LOCKED && !x->lock_ours) {
    v->end = NW_SUP_END_LOCKED;
    v->event = "config-error";
    snprintf(
        v->evidence, sizeof v->evidence,
        "%.300s/%s is held by pid %d (uid %ld, run \"%s\"): not provably a "
        "duplicate of this run, so never killed; stop it, or give this "
        "run its own run.dir",
        x->run_dir, NW_TRAINLOCK_FILE, x->lock.pid, x->lock_uid,
        x->lock.run_id);
    return 1;
  } else if (x->code == NW_EXIT_LOCKED) {
    /* our uid and our run id in the lock: a duplicate, whatever its device */
    v->end = NW_SUP_END_FAILED;
    v->event = "duplicate";
    v->cause = NW_CAUSE_DUPLICATE;
    v->cause_name = nw_cause_name(NW_CAUSE_DUPLICATE);
    v->cls.cause = NW_CAUSE_DUPLICATE;
    v->cls.n_duplicates = 1;
    v->cls.duplicate_pids[0] = x->lock.pid;
    snprintf(v->evidence, sizeof v->evidence,
             "the trainer could not lock %.300s/%s: pid %d holds it, with this "
             "user and this run's id (%s) in it: a duplicate of this run",
             x->run_dir, NW_TRAINLOCK_FILE, x->lock.pid, x->lock.run_id);
    snprintf(v->cls.evidence, sizeof v->cls.evidence, "%.1000s", v->evidence);
    return 1;
  } else {
    return 0;
  }
  v->event = "storage";
  v->cause_name = "storage";
  return 1;
}

void nw_sup_classify(const nw_config *cfg, const nw_sup_exit *x,
                     nw_sup_verdict *v) {
  memset(v, 0, sizeof *v);
  v->cause = NW_CAUSE_UNKNOWN;
  v->cause_name = nw_cause_name(NW_CAUSE_UNKNOWN);
  if (x->stop_requested) {
    v->end = NW_SUP_END_STOPPED;
    v->event = "stop";
    snprintf(v->evidence, sizeof v->evidence, "%s", x->how);
    return;
  }
  if (x->code == 0 && !x->hang) {
    v->end = NW_SUP_END_FINISHED;
    v->event = x->seen_finish ? "finish" : "stop";
    snprintf(v->evidence, sizeof v->evidence, "%s",
             x->seen_finish ? "ran to the last step"
                            : "the trainer was stopped by a signal from "
                              "elsewhere");
    return;
  }
  if ((x->code == NW_EXIT_USAGE || x->code == NW_EXIT_CONFIG) && !x->hang) {
    v->end = NW_SUP_END_REFUSED;
    v->event = "config-error";
    snprintf(v->evidence, sizeof v->evidence, "%s", x->how);
    return;
  }
  if (!x->hang && nw_sup_classify_storage(x, v))
    return;
  v->end = NW_SUP_END_FAILED;
  nw_classify(cfg, x->have_report ? &x->report : NULL, &x->obs, &v->cls);
  v->event =
      x->hang ? "hang"
      : x->code == NW_EXIT_OOM || x->obs.stderr_cuda_oom || x->have_report
          ? "oom"
          : "crash";
  v->cause = x->hang ? NW_CAUSE_UNKNOWN : v->cls.cause;
  v->cause_name = x->hang ? "hang" : nw_cause_name(v->cls.cause);
  nw_sup_evidence(x, v->cls.evidence, v->evidence, sizeof v->evidence);
}

/* ---- decide ---- */

int nw_sup_decide(const nw_policy *p, const nw_config *cfg,
                  nw_recovery_history *h, const nw_sup_verdict *v, double now,
                  nw_decision *d, char *reason, size_t reasonlen) {
  int rc = nw_policy_decide(p, v->cause, cfg, h, now, d);
  char verr[1024] = "";
  if (rc == 0 && !d->give_up &&
      nw_config_validate(&d->after, verr, sizeof verr) < 0)
    rc = NW_ECONFIG;
  if (rc == 0 && !d->give_up)
    return 0;
  snprintf(reason, reasonlen, "%s",
           rc < 0 ? (verr[0] ? verr : nw_strerror(rc)) : d->reason);
  return 1;
}
