/* sup_recover.c — what the trainer's exit means, and the recovery: the
 * classifier's cause, the policy's decision, killing provable duplicates,
 * waiting for foreign processes, the backoff. The ledger gets one entry for
 * the failure (evidence) and one for the decision (recovery or give-up). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "checkpoints/ckpt.h"
#include "device/gpu_procs.h"
#include "device/vdev.h"
#include "protocol/exit_codes.h"
#include "protocol/oom_report.h"
#include "protocol/world.h"
#include "recovery/classify.h"
#include "supervisor/supervisor_internal.h"

#define NW_MIB (1024.0 * 1024.0)

/* ---- the cgroup's OOM-killer counter ---- */

/* The step a run had reached when a trainer fails before loading its
 * checkpoint (its report says step 0): the newest checkpoint's, which the
 * next trainer resumes from, or the last step line seen. */
static int nw_sup_reached_step(const nw_sup *s) {
  char paths[1][NW_PATH_MAX], err[256];
  int n = 0, step = s->step;
  if (nw_ckpt_list(s->cfg.run.dir, paths, 1, &n, err, sizeof err) == 0 &&
      n > 0) {
    const char *base = strrchr(paths[0], '/');
    long long k = -1;
    if (base && sscanf(base + 1, "ckpt-%lld.h5", &k) == 1 && k > step)
      step = (int)k;
  }
  return step;
}

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

/* ---- killing provable duplicates ---- */

/* The proof, taken after the pidfd pins the process: it is on the device
 * right now with this uid (and, unless same_user_only, this run id). */
static int nw_sup_still_ours(nw_sup *s, int pid, int same_user_only) {
  if (s->fail_gpu[0]) {
    /* NVML's process table, asked now; a GPU we cannot name or an NVML
     * that cannot answer is no proof, and without proof nothing is killed */
    char err[256];
    int rc = nw_gpu_pid_on_device(s->fail_gpu, pid, (unsigned)getuid(),
                                  same_user_only ? NULL : s->run_id, err,
                                  sizeof err);
    if (rc < 0)
      nw_warn("cannot prove that pid %d is on GPU %s: %s", pid, s->fail_gpu,
              err);
    return rc == 1;
  }
  nw_vdev_proc procs[NW_VDEV_SLOTS];
  int n = 0;
  char err[256];
  if (nw_vdev_list_by_name(s->fail_device, procs, NW_VDEV_SLOTS, &n, NULL, err,
                           sizeof err) < 0)
    return 0;
  for (int i = 0; i < n && i < NW_VDEV_SLOTS; i++)
    if (procs[i].pid == pid && procs[i].uid == (unsigned)getuid() &&
        (same_user_only || !strcmp(procs[i].run_id, s->run_id)))
      return 1;
  return 0;
}

static void nw_sup_kill_start(nw_sup *s, int pid, int same_user_only,
                              json_t *killed) {
  if (pid <= 0 || pid == getpid() || s->n_kill == NW_SUP_MAX_KILL)
    return;
  int fd = nw_pidfd_open(pid);
  if (fd < 0) {
    nw_info("duplicate %d is already gone", pid);
    return;
  }
  if (!nw_sup_still_ours(s, pid, same_user_only)) {
    nw_warn("process %d is no longer provably a duplicate of this run: "
            "not killed",
            pid);
    close(fd);
    return;
  }
  if (nw_pidfd_send(fd, SIGTERM) < 0) {
    close(fd);
    return;
  }
  nw_warn("duplicate of this run, pid %d: SIGTERM (SIGKILL in %.0f s)", pid,
          s->policy.duplicate.grace_seconds);
  json_array_append_new(killed, json_integer(pid));
  s->kill_pidfd[s->n_kill] = fd;
  s->kill_pid[s->n_kill++] = pid;
}

void nw_sup_kill_poll(nw_sup *s, double now) {
  for (int k = 0; k < s->n_kill;) {
    struct pollfd p = {.fd = s->kill_pidfd[k], .events = POLLIN};
    if (poll(&p, 1, 0) > 0) {
      nw_info("duplicate %d is gone", s->kill_pid[k]);
      close(s->kill_pidfd[k]);
      s->kill_pidfd[k] = s->kill_pidfd[s->n_kill - 1];
      s->kill_pid[k] = s->kill_pid[s->n_kill - 1];
      s->n_kill--;
      continue;
    }
    k++;
  }
  if (s->n_kill && s->kill_deadline > 0 && now >= s->kill_deadline) {
    for (int k = 0; k < s->n_kill; k++) {
      nw_warn("duplicate %d outlived the grace: SIGKILL", s->kill_pid[k]);
      nw_pidfd_send(s->kill_pidfd[k], SIGKILL);
    }
    s->kill_deadline = -(now + 5); /* then stop waiting for them */
  } else if (s->n_kill && s->kill_deadline < 0 && now >= -s->kill_deadline) {
    for (int k = 0; k < s->n_kill; k++) {
      nw_error("duplicate %d survives SIGKILL; going on", s->kill_pid[k]);
      close(s->kill_pidfd[k]);
    }
    s->n_kill = 0;
  }
}

/* ---- foreign processes: never killed, waited for with an alert ---- */

static json_t *nw_sup_device_others(nw_sup *s, uint64_t *bytes) {
  json_t *a = json_array();
  *bytes = 0;
  char err[256];
  if (s->fail_gpu[0]) {
    nw_gpu_proc gp[NW_CLASSIFY_MAX_PIDS];
    int ng = 0;
    if (nw_gpu_list_processes(s->fail_gpu, gp, NW_CLASSIFY_MAX_PIDS, &ng, NULL,
                              NULL, err, sizeof err) < 0) {
      nw_warn("GPU %s: %s", s->fail_gpu, err);
      return a;
    }
    for (int i = 0; i < ng && i < NW_CLASSIFY_MAX_PIDS; i++) {
      *bytes += gp[i].bytes;
      json_array_append_new(a,
                            json_pack("{s:i, s:i, s:s, s:I}", "pid", gp[i].pid,
                                      "uid", gp[i].uid, "run_id", gp[i].run_id,
                                      "bytes", (json_int_t)gp[i].bytes));
    }
    return a;
  }
  nw_vdev_proc procs[NW_VDEV_SLOTS];
  int n = 0;
  if (nw_vdev_list_by_name(s->fail_device, procs, NW_VDEV_SLOTS, &n, NULL, err,
                           sizeof err) < 0)
    return a;
  for (int i = 0; i < n && i < NW_VDEV_SLOTS; i++) {
    if (!procs[i].bytes)
      continue;
    *bytes += procs[i].bytes;
    json_array_append_new(a, json_pack("{s:i, s:i, s:s, s:I}", "pid",
                                       procs[i].pid, "uid", (int)procs[i].uid,
                                       "run_id", procs[i].run_id, "bytes",
                                       (json_int_t)procs[i].bytes));
  }
  return a;
}

void nw_sup_foreign_recheck(nw_sup *s, double now) {
  uint64_t bytes;
  json_t *others = nw_sup_device_others(s, &bytes);
  size_t left = json_array_size(others);
  char ev[512];
  snprintf(ev, sizeof ev,
           "after waiting %.1f s, %zu other process%s hold%s %.1f MiB of "
           "device %s; restarting %s",
           now - s->fail_t, left, left == 1 ? "" : "es", left == 1 ? "s" : "",
           bytes / NW_MIB, s->fail_device,
           left ? "anyway (the policy decides again if it fails)" : "now");
  nw_warn("%s", ev);
  nw_sup_ledger(s, json_pack("{s:s, s:s, s:s, s:o}", "event", "alert", "cause",
                             "duplicate-process", "evidence", ev, "processes",
                             others));
  if (s->restart_at < now)
    s->restart_at = now;
  nw_sup_set_state(s, NW_SUP_BACKOFF, 0);
}

/* ---- the exit ---- */

static void nw_sup_describe_exit(int wstatus, char *buf, size_t len) {
  if (WIFEXITED(wstatus))
    snprintf(buf, len, "exit code %d", WEXITSTATUS(wstatus));
  else if (WIFSIGNALED(wstatus))
    snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(wstatus),
             strsignal(WTERMSIG(wstatus)));
  else
    snprintf(buf, len, "wait status %#x", wstatus);
}

static void nw_sup_final(nw_sup *s, nw_sup_state st, int code, json_t *e) {
  nw_sup_ledger(s, e);
  s->exit_code = code;
  nw_sup_set_state(s, st, 0);
}

/* The trainer's report, if it is this trainer's. */
static int nw_sup_read_report(nw_sup *s, int rank, int world, int pid,
                              nw_oom_report *rep, char *path, size_t pathlen) {
  char err[512];
  nw_oom_report_path(s->cfg.run.dir, rank, world, path, pathlen);
  if (nw_oom_report_read(path, rep, err, sizeof err) < 0) {
    if (access(path, F_OK) == 0)
      nw_warn("OOM report: %s", err);
    return 0;
  }
  if (rep->pid != pid) {
    nw_warn("%s is from pid %d, not from trainer %d: ignored", path, rep->pid,
            pid);
    return 0;
  }
  return 1;
}

/* Carries out a decision that is not a give-up: kill-duplicate's kills and
 * waits, then the backoff. */
static void nw_sup_carry_out(nw_sup *s, const nw_decision *d,
                             const nw_classification *cls,
                             const nw_oom_report *rep, double now) {
  s->restart_at = now + d->backoff_seconds;
  if (s->restart_at < s->spawn_t + 1.0) /* never two starts within 1 s */
    s->restart_at = s->spawn_t + 1.0;
  if (d->action != NW_ACTION_KILL_DUPLICATE) {
    nw_sup_set_state(s, NW_SUP_BACKOFF, 0);
    return;
  }
  json_t *killed = json_array();
  for (int i = 0; i < cls->n_duplicates; i++)
    nw_sup_kill_start(s, cls->duplicate_pids[i], 0, killed);
  int n_wait = 0;
  json_t *waited = json_array();
  for (int i = 0; i < cls->n_foreign; i++) {
    int pid = cls->foreign_pids[i], same_user = 0;
    for (int j = 0; rep && j < rep->n_procs; j++)
      if (rep->procs[j].pid == pid && rep->procs[j].uid == (unsigned)getuid())
        same_user = 1;
    if (d->foreign == NW_FOREIGN_KILL_SAME_USER && same_user) {
      nw_sup_kill_start(s, pid, 1, killed);
      continue;
    }
    json_array_append_new(waited, json_integer(pid));
    n_wait++;
  }
  s->kill_deadline = s->n_kill ? now + d->grace_seconds : 0;
  if (json_array_size(killed))
    nw_sup_ledger(s, json_pack("{s:s, s:s, s:o, s:f}", "event", "kill", "cause",
                               "duplicate-process", "pids", killed, "grace_s",
                               d->grace_seconds));
  else
    json_decref(killed);
  if (!n_wait) {
    json_decref(waited);
    nw_sup_set_state(s, NW_SUP_BACKOFF, 0);
    return;
  }
  char ev[512];
  snprintf(ev, sizeof ev,
           "%d process%s not of this run hold%s %.1f MiB of the device: never "
           "killed; waiting %.0f s, then the device is checked again",
           n_wait, n_wait == 1 ? "" : "es", n_wait == 1 ? "s" : "",
           cls->foreign_bytes / NW_MIB, d->foreign_wait_seconds);
  nw_warn("%s", ev);
  nw_sup_ledger(s,
                json_pack("{s:s, s:s, s:s, s:o, s:f}", "event", "alert",
                          "cause", "duplicate-process", "evidence", ev, "pids",
                          waited, "wait_s", d->foreign_wait_seconds));
  s->foreign_until = now + d->foreign_wait_seconds;
  nw_sup_set_state(s, NW_SUP_WAITING_FOREIGN, s->foreign_until);
}

void nw_sup_on_exit(nw_sup *s, int r, int wstatus) {
  double now = nw_clock_now();
  int pid = (int)s->rank[r].child.pid, world = s->n_ranks;
  int self_pids[NW_SUP_MAX_RANKS];
  for (int k = 0; k < world; k++)
    self_pids[k] = (int)s->rank[k].child.pid;
  nw_sup_ranks_close(s);
  /* what the recovery looks at: the failing rank's device and report */
  nw_world_device_name(&s->cfg, r, s->fail_device, sizeof s->fail_device);
  int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
  int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
  char how[128];
  nw_sup_describe_exit(wstatus, how, sizeof how);
  nw_info("trainer %d: %s", pid, how);

  if (s->stop_reason == NW_SUP_STOP_REQUESTED) {
    nw_sup_final(s, NW_SUP_FINISHED, code == 0 ? 0 : NW_SUP_EXIT_FAILURE,
                 json_pack("{s:s, s:s, s:i, s:i, s:i, s:b}", "event", "stop",
                           "evidence", how, "pid", pid, "exit_code", code,
                           "step", s->step, "checkpoint", s->seen_stop));
    return;
  }
  if (code == 0 && s->stop_reason != NW_SUP_STOP_HANG) {
    const char *ev = s->seen_finish ? "finish" : "stop";
    nw_sup_final(s, NW_SUP_FINISHED, 0,
                 json_pack("{s:s, s:s, s:i, s:i, s:i}", "event", ev, "evidence",
                           s->seen_finish ? "ran to the last step"
                                          : "the trainer was stopped by a "
                                            "signal from elsewhere",
                           "pid", pid, "exit_code", 0, "step", s->step));
    return;
  }
  if ((code == NW_EXIT_USAGE || code == NW_EXIT_CONFIG) &&
      s->stop_reason != NW_SUP_STOP_HANG) {
    nw_error("the trainer refused its settings (%s): never retried", how);
    nw_sup_final(s, NW_SUP_GAVE_UP, NW_SUP_EXIT_CONFIG,
                 json_pack("{s:s, s:s, s:i, s:i, s:s}", "event", "config-error",
                           "evidence", how, "pid", pid, "exit_code", code,
                           "action", "give up"));
    return;
  }

  /* A failure: observations, cause, decision. */
  int hang = s->stop_reason == NW_SUP_STOP_HANG;
  s->stop_reason = NW_SUP_STOP_NONE;
  static nw_oom_report rep; /* large; one exit at a time */
  char report_path[NW_PATH_MAX + 32];
  int have_rep = nw_sup_read_report(s, r, world, pid, &rep, report_path,
                                    sizeof report_path);
  /* A GPU report names the card as "cuda:N ...": N is NVML's index only
   * when CUDA_VISIBLE_DEVICES does not renumber the cards; otherwise the
   * GPU stays unnamed and no process on it is ever killed. */
  s->fail_gpu[0] = '\0';
  int gpu_index;
  if (have_rep && sscanf(rep.device, "cuda:%d", &gpu_index) == 1 &&
      !getenv("CUDA_VISIBLE_DEVICES"))
    snprintf(s->fail_gpu, sizeof s->fail_gpu, "%d", gpu_index);
  nw_observations obs;
  memset(&obs, 0, sizeof obs);
  obs.exit_code = code;
  obs.signal = sig;
  obs.stderr_cuda_oom = s->stderr_oom;
  obs.self_uid = (unsigned)getuid();
  snprintf(obs.run_id, sizeof obs.run_id, "%s", s->run_id);
  for (int k = 0; k < world && obs.n_self_pids < NW_CLASSIFY_MAX_SELF; k++)
    obs.self_pids[obs.n_self_pids++] = self_pids[k];
  uint64_t after = 0;
  if (s->oom_kill_known && nw_sup_oom_kill_count(&after) == 0 &&
      after > s->oom_kill_before)
    obs.oom_killed_by_kernel = 1;
  nw_classification cls;
  nw_classify(&s->cfg, have_rep ? &rep : NULL, &obs, &cls);
  const char *event = "crash";
  if (hang)
    event = "hang";
  else if (code == NW_EXIT_OOM || s->stderr_oom || have_rep)
    event = "oom";
  nw_cause cause = hang ? NW_CAUSE_UNKNOWN : cls.cause;
  const char *cause_name = hang ? "hang" : nw_cause_name(cls.cause);
  char evidence[1400];
  if (hang)
    snprintf(evidence, sizeof evidence,
             "no heartbeat for supervisor.hang_timeout; the trainer ended "
             "with %s",
             how);
  else if (sig == SIGKILL && !have_rep)
    snprintf(evidence, sizeof evidence, "%s %s", cls.evidence,
             obs.oom_killed_by_kernel
                 ? "(the cgroup's oom_kill counter rose: the kernel's OOM "
                   "killer, host memory)"
             : s->oom_kill_known ? "(the cgroup's oom_kill counter did "
                                   "not rise: killed from outside)"
                                 : "(no cgroup memory counters to tell "
                                   "the kernel's OOM killer apart)");
  else
    snprintf(evidence, sizeof evidence, "%s", cls.evidence);
  s->failed_step = have_rep ? rep.step : s->step;
  if (have_rep && rep.phase == NW_PHASE_INIT)
    s->failed_step = nw_sup_reached_step(s);
  nw_log_event(NW_LOG_WARN, cause_name, NULL, "%s: cause %s: %s", event,
               cause_name, evidence);
  json_t *fe =
      json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:b}", "event", event,
                "cause", cause_name, "evidence", evidence, "pid", pid,
                "exit_code", code, "signal", sig, "failed_step", s->failed_step,
                "oom_killed_by_kernel", obs.oom_killed_by_kernel);
  if (fe && world > 1) {
    /* which rank failed first; its peers were killed, not failed */
    json_object_set_new(fe, "rank", json_integer(r));
    json_object_set_new(fe, "world", json_integer(world));
    json_object_set_new(fe, "device", json_string(s->fail_device));
  }
  if (fe && have_rep) {
    json_object_set_new(fe, "report", json_string(report_path));
    json_object_set_new(fe, "phase", json_string(nw_phase_name(rep.phase)));
    json_object_set_new(fe, "emergency_checkpoint",
                        json_boolean(rep.emergency_checkpoint));
  }
  if (fe && (cls.n_duplicates || cls.n_foreign)) {
    json_t *dup = json_array(), *fo = json_array();
    for (int i = 0; i < cls.n_duplicates; i++)
      json_array_append_new(dup, json_integer(cls.duplicate_pids[i]));
    for (int i = 0; i < cls.n_foreign; i++)
      json_array_append_new(fo, json_integer(cls.foreign_pids[i]));
    json_object_set_new(fe, "duplicate_pids", dup);
    json_object_set_new(fe, "foreign_pids", fo);
  }
  nw_sup_ledger(s, fe);

  nw_decision d;
  int rc = nw_policy_decide(&s->policy, cause, &s->cfg, &s->hist, now, &d);
  char verr[1024] = "";
  if (rc == 0 && !d.give_up &&
      nw_config_validate(&d.after, verr, sizeof verr) < 0)
    rc = NW_ECONFIG;
  if (rc < 0 || d.give_up) {
    char reason[1200];
    snprintf(reason, sizeof reason, "%s",
             rc < 0 ? (verr[0] ? verr : nw_strerror(rc)) : d.reason);
    nw_log_event(NW_LOG_ERROR, cause_name, "give-up", "giving up: %s", reason);
    nw_sup_final(
        s, NW_SUP_GAVE_UP, NW_SUP_EXIT_FAILURE,
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:i, s:i}", "event", "give-up",
                  "cause", cause_name, "action", "give-up", "evidence", reason,
                  "settings", nw_ledger_settings(&s->cfg), "effective",
                  s->cfg.batch.effective, "recoveries", s->recoveries));
    return;
  }
  json_t *before = nw_ledger_settings(&s->cfg);
  s->cfg = d.after;
  s->recoveries++;
  if (!s->pending_resume) {
    /* A chain of failures before a step (micro 32 -> 16 -> 8) is one
     * outage: "resumed" measures from its first failure. */
    s->pending_resume = 1;
    s->fail_t = now;
    s->resume_failed_step = s->failed_step;
  }
  nw_log_event(NW_LOG_INFO, cause_name, nw_action_name(d.action),
               "recovery %d: %s %s (%s); restart in %.1f s", s->recoveries,
               cause_name, nw_action_name(d.action), d.summary,
               d.backoff_seconds);
  nw_sup_ledger(s, json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:i, s:f, "
                             "s:i, s:b}",
                             "event", "recovery", "cause", cause_name, "action",
                             nw_action_name(d.action), "summary", d.summary,
                             "attempt", d.attempt, "before", before, "after",
                             nw_ledger_settings(&s->cfg), "effective",
                             s->cfg.batch.effective, "backoff_s",
                             d.backoff_seconds, "failed_step", s->failed_step,
                             "trim_after_eval", d.trim_after_eval));
  nw_sup_carry_out(s, &d, &cls, have_rep ? &rep : NULL, now);
}
