/* train_main.c — nightwatch-train: the trainer program.
 *
 *   nightwatch-train [CONFIG] [--set section.key=value ...]
 *                    [--resume auto|none|FILE] [--estimate | --device-ps]
 *
 * With no CONFIG it trains the embedded default model on the built-in task.
 * Exit codes: exit_codes.h and docs/protocol.md. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "device/blas_setup.h"
#include "device/vdev.h"
#include "model/estimate.h"
#include "protocol/exit_codes.h"
#include "protocol/world.h"
#include "trainer/train.h"

static void nw_usage(FILE *f) {
  fputs(
      "usage: nightwatch-train [CONFIG] [--set section.key=value ...] "
      "[--estimate | --device-ps]\n"
      "  CONFIG         INI file (docs/config.md); embedded defaults if "
      "omitted\n"
      "  --set K=V      override one key, e.g. --set batch.micro=4\n"
      "  --resume R     auto (default: the newest good checkpoint of the run\n"
      "                 directory, if any), none, or a checkpoint file\n"
      "  --estimate     print the memory estimate per category and exit\n"
      "  --device-ps    list the processes on the virtual device and exit\n"
      "exit codes: 0 finished, 1 failure, 64 usage, 75 out of memory, "
      "76 a peer rank failed, 78 config error\n",
      f);
}

/* Set by SIGTERM/SIGINT; the loop checks it at each step boundary. */
static volatile int nw_stop_requested;
static void nw_on_stop_signal(int sig) {
  (void)sig;
  nw_stop_requested = 1;
}

/* The OOM path: an emergency checkpoint of the last completed step when the
 * model is intact (every OOM comes before the optimizer's update, so it
 * is), the report while the state of the failure is still there, then
 * unwind everything (no leak) and exit with the OOM code. */
static int nw_exit_oom(nw_trainer *t) {
  char err[1024];
  if (t->model && t->optim && t->step > 0) {
    nw_phase failed = t->phase;
    if (nw_trainer_checkpoint_now(t, "emergency: out of memory") < 0)
      nw_error("no emergency checkpoint; the previous checkpoint stands");
    t->phase = failed;
  }
  if (nw_trainer_report_oom(t, err, sizeof err) < 0)
    nw_error("could not write the OOM report: %s", err);
  /* Only now: the peers wake (and exit 76) once the evidence is on disk. */
  nw_coll_abort(t->coll);
  nw_trainer_destroy(t);
  return NW_EXIT_OOM;
}

/* Any other failure after the world formed: the peers must not wait for
 * this rank until their deadline. A peer's failure (NW_EPEER, or our own
 * wait ran out: NW_ETIMEDOUT) exits 76 and leaves the explaining to the
 * rank that failed first: no checkpoint, no report. */
static int nw_exit_failed(nw_trainer *t, int rc, int code) {
  if (rc == NW_EPEER || rc == NW_ETIMEDOUT) {
    nw_error("rank %d stops: %s", t->world.rank,
             t->coll && nw_coll_why(t->coll)[0] ? nw_coll_why(t->coll)
                                                : nw_strerror(rc));
    code = NW_EXIT_PEER;
  }
  nw_coll_abort(t->coll);
  nw_trainer_destroy(t);
  return code;
}

/* The command line. sets points into argv (room for argc of them). */
typedef struct {
  const char *config_path; /* NULL: the embedded defaults */
  const char *resume;      /* auto, none or a checkpoint file */
  const char **sets;       /* --set values, applied after the file */
  int n_sets;
  int estimate, device_ps;
} nw_train_args;

/* The value of --NAME=VALUE or --NAME VALUE at argv[*i] (which is --NAME or
 * --NAME=...), moving *i past it; NULL when it is missing. */
static const char *nw_train_value(int argc, char **argv, int *i, size_t len) {
  if (argv[*i][len] == '=')
    return argv[*i] + len + 1;
  return *i + 1 < argc ? argv[++*i] : NULL;
}

/* Returns 0 to go on, else 1 with *code the exit code (--help, or a usage
 * error, reported). */
static int nw_train_parse(int argc, char **argv, nw_train_args *a, int *code) {
  *code = NW_EXIT_USAGE;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--estimate") == 0) {
      a->estimate = 1;
    } else if (strcmp(arg, "--device-ps") == 0) {
      a->device_ps = 1;
    } else if (strcmp(arg, "--resume") == 0 ||
               strncmp(arg, "--resume=", 9) == 0) {
      if (!(a->resume = nw_train_value(argc, argv, &i, 8))) {
        nw_error("--resume needs auto, none or a checkpoint file");
        return 1;
      }
    } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      nw_usage(stdout);
      *code = NW_EXIT_FINISHED;
      return 1;
    } else if (strcmp(arg, "--set") == 0 || strncmp(arg, "--set=", 6) == 0) {
      if (!(a->sets[a->n_sets] = nw_train_value(argc, argv, &i, 5))) {
        nw_error("--set needs section.key=value");
        return 1;
      }
      a->n_sets++;
    } else if (arg[0] == '-') {
      nw_error("unknown option %s", arg);
      nw_usage(stderr);
      return 1;
    } else if (a->config_path) {
      nw_error("more than one config file: %s and %s", a->config_path, arg);
      return 1;
    } else {
      a->config_path = arg;
    }
  }
  return 0;
}

/* The config: the file, then every --set, then the world, validated.
 * Returns 0, or NW_EXIT_CONFIG with the error logged. */
static int nw_train_load_config(const nw_train_args *a, nw_config *cfg) {
  char err[1024] = "";
  nw_config_defaults(cfg);
  if (a->config_path &&
      nw_config_load(cfg, a->config_path, err, sizeof err) < 0) {
    nw_error("%s", err);
    return NW_EXIT_CONFIG;
  }
  for (int i = 0; i < a->n_sets; i++)
    if (nw_config_set(cfg, a->sets[i], err, sizeof err) < 0) {
      nw_error("%s", err);
      return NW_EXIT_CONFIG;
    }
  nw_world_resolve(cfg);
  if (nw_config_validate(cfg, err, sizeof err) < 0) {
    nw_error("%s%s%s", a->config_path ? a->config_path : "",
             a->config_path ? ": " : "", err);
    return NW_EXIT_CONFIG;
  }
  return 0;
}

/* --device-ps: the processes on the configured virtual device. */
static int nw_train_device_ps(const nw_config *cfg) {
  char err[1024] = "";
  int rc = nw_vdev_print(stdout, cfg->device.name, err, sizeof err);
  if (rc < 0) {
    nw_error("%s", err);
    return rc == NW_ENOTFOUND ? NW_EXIT_FAILURE : NW_EXIT_CONFIG;
  }
  return NW_EXIT_FINISHED;
}

/* OpenBLAS threads and its sgemm check. 0, or NW_EXIT_FAILURE. */
static int nw_train_blas(char **argv, const nw_config *cfg) {
  nw_blas_info blas;
  int rc = nw_blas_setup(argv, cfg->train.threads, &blas);
  char desc[256];
  nw_blas_describe(&blas, desc, sizeof desc);
  if (rc < 0) {
    nw_error("%s: the sgemm check failed; run again with "
             "NW_BLAS_NO_CORRECTION=1 or set OPENBLAS_CORETYPE",
             desc);
    return NW_EXIT_FAILURE;
  }
  nw_info("%s", desc);
  return 0;
}

/* SIGTERM and SIGINT ask the loop to stop at the next step boundary. */
static void nw_train_catch_stop(nw_trainer *t) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = nw_on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  t->stop_requested = &nw_stop_requested;
}

/* Creates the trainer and resumes it. Returns 0 with *t ready to run, else
 * the exit code (the trainer, if any, unwound). */
static int nw_train_start(nw_trainer **t, const nw_config *cfg,
                          const char *resume) {
  char err[1024] = "";
  int rc = nw_trainer_create(t, cfg, err, sizeof err);
  if (rc == NW_ENOMEM)
    return nw_exit_oom(*t);
  if (rc == NW_EPEER || rc == NW_ETIMEDOUT) {
    nw_error("%s", err); /* the world did not form */
    return NW_EXIT_PEER;
  }
  if (rc == NW_EBUSY) {
    nw_error("%s", err); /* names the trainer that holds the run directory */
    return NW_EXIT_LOCKED;
  }
  if (rc < 0) {
    nw_error("%s", err);
    return (rc == NW_ECONFIG || rc == NW_EDATA || rc == NW_EIO)
               ? NW_EXIT_CONFIG
               : NW_EXIT_FAILURE;
  }
  /* Before resuming: a checkpoint loads from the step boundary anyway. */
  nw_train_catch_stop(*t);
  rc = nw_trainer_resume(*t, resume, err, sizeof err);
  if (rc == NW_ENOMEM) {
    /* the device could not take the checkpoint's optimizer state: an OOM
     * at init, to classify and recover like any other */
    nw_error("%s", err);
    return nw_exit_oom(*t);
  }
  if (rc == NW_EDAMAGED) {
    /* never a silent start from step 0 over a run that has checkpoints */
    nw_error("%s; refusing to start over: look at them, or pass --resume "
             "none to start from step 0 on purpose",
             err);
    return nw_exit_failed(*t, rc, NW_EXIT_DAMAGED);
  }
  if (rc < 0) {
    nw_error("%s", err);
    return nw_exit_failed(*t, rc,
                          rc == NW_EHOSTMEM || rc == NW_ESYS ? NW_EXIT_FAILURE
                                                             : NW_EXIT_CONFIG);
  }
  return 0;
}

int main(int argc, char **argv) {
  nw_log_set_prefix("train");
  /* the supervisor's run id: the journal's RUN= field on our records too */
  nw_log_set_run(getenv("NIGHTWATCH_RUN_ID"));
  /* A supervisor that went away must not kill us through a status write. */
  signal(SIGPIPE, SIG_IGN);

  const char *sets[argc];
  nw_train_args a = {.resume = "auto", .sets = sets};
  nw_config cfg;
  int code;
  if (nw_train_parse(argc, argv, &a, &code))
    return code;
  if ((code = nw_train_load_config(&a, &cfg)) != 0)
    return code;
  if (a.estimate) {
    nw_estimate_print(stdout, &cfg);
    return NW_EXIT_FINISHED;
  }
  if (a.device_ps)
    return nw_train_device_ps(&cfg);
  char err[1024] = "";
  if (nw_estimate_check_capacity(&cfg, err, sizeof err) < 0) {
    nw_error("%s", err);
    return NW_EXIT_CONFIG;
  }
  if ((code = nw_train_blas(argv, &cfg)) != 0)
    return code;

  nw_trainer *t = NULL;
  if ((code = nw_train_start(&t, &cfg, a.resume)) != 0)
    return code;
  nw_info("model: %d layers, %d heads, width %d, vocabulary %d, max length %d: "
          "%zu parameters; batch %d = micro %d x accum %d x world %d",
          cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd,
          cfg.model.vocab_size, cfg.model.max_seq_len,
          nw_model_num_params(t->model), cfg.batch.effective, cfg.batch.micro,
          nw_config_accum(&cfg.batch), cfg.batch.world);
  int rc = nw_trainer_run(t);
  if (rc == NW_ENOMEM)
    return nw_exit_oom(t);
  if (rc < 0) {
    if (rc != NW_EPEER && rc != NW_ETIMEDOUT)
      nw_error("training failed: %s", nw_strerror(rc));
    int storage =
        rc == NW_ESTORAGE || t->ckpt_failures >= t->cfg.checkpoint.max_failures;
    return nw_exit_failed(t, rc, storage ? NW_EXIT_STORAGE : NW_EXIT_FAILURE);
  }
  nw_trainer_destroy(t);
  return NW_EXIT_FINISHED;
}
