/* cli_run.c — the command line of `nightwatch run`. Everything is checked
 * before the first trainer starts: a bad config or a malformed policy is
 * refused with every FILE:LINE error. */
#define _GNU_SOURCE
#include "cli/cli_run.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "cli/cli_policy.h"
#include "protocol/exit_codes.h"
#include "protocol/world.h"
#include "recovery/policy.h"
#include "supervisor/sup_child.h"
#include "supervisor/supervisor.h"

static void nw_cli_run_usage(FILE *f) {
  fputs("usage: nightwatch run [CONFIG] [--policy FILE] [--run-dir DIR]\n"
        "                      [--set section.key=value ...] [-- COMMAND "
        "...]\n"
        "  CONFIG         trainer config (docs/config.md); embedded defaults "
        "if omitted\n"
        "  --policy FILE  recovery policy (docs/policies.md); SIGHUP reloads "
        "it\n"
        "  --run-dir DIR  the run directory (same as --set run.dir=DIR)\n"
        "  --resume none  the first start begins at step 0 on purpose (the\n"
        "                 run's checkpoints are moved aside, never deleted);\n"
        "                 later starts resume as always\n"
        "  -- COMMAND     supervise a foreign trainer (docs/protocol.md)\n"
        "exit codes: 0 finished or stopped, 1 gave up or failed, 64 usage, "
        "78 config\n",
        f);
}

/* dirname(/proc/self/exe) + "/nightwatch-train" */
static void nw_cli_run_train_bin(char *out, size_t len) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    snprintf(out, len, "nightwatch-train");
    return;
  }
  exe[n] = '\0';
  snprintf(out, len, "%s/nightwatch-train", dirname(exe));
}

typedef struct {
  const char *config, *policy, *run_dir, *resume;
  char **sets;
  int n_sets;
  char **command;
} nw_cli_run_args;

/* 0, or NW_EXIT_USAGE with the message printed. */
static int nw_cli_run_parse(int argc, char **argv, nw_cli_run_args *a) {
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (!strcmp(arg, "--")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "nightwatch run: -- needs a command\n");
        return NW_EXIT_USAGE;
      }
      a->command = argv + i + 1;
      return 0;
    }
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      nw_cli_run_usage(stdout);
      return -1;
    }
    const char **dst = NULL;
    const char *val = NULL;
    if (!strncmp(arg, "--set", 5) && (arg[5] == '\0' || arg[5] == '='))
      dst = (const char **)&a->sets[a->n_sets];
    else if (!strncmp(arg, "--policy", 8) && (arg[8] == '\0' || arg[8] == '='))
      dst = &a->policy;
    else if (!strncmp(arg, "--run-dir", 9) && (arg[9] == '\0' || arg[9] == '='))
      dst = &a->run_dir;
    else if (!strncmp(arg, "--resume", 8) && (arg[8] == '\0' || arg[8] == '='))
      dst = &a->resume;
    if (dst) {
      const char *eq = strchr(arg, '=');
      if (eq && !strncmp(arg, "--set=", 6))
        val = arg + 6;
      else if (eq && strncmp(arg, "--set", 5))
        val = eq + 1;
      else if (i + 1 < argc)
        val = argv[++i];
      if (!val || !*val) {
        fprintf(stderr, "nightwatch run: %s needs a value\n", arg);
        return NW_EXIT_USAGE;
      }
      *dst = val;
      if (dst == (const char **)&a->sets[a->n_sets])
        a->n_sets++;
      continue;
    }
    if (arg[0] == '-') {
      fprintf(stderr, "nightwatch run: unknown option %s\n", arg);
      nw_cli_run_usage(stderr);
      return NW_EXIT_USAGE;
    }
    if (a->config) {
      fprintf(stderr, "nightwatch run: more than one config: %s and %s\n",
              a->config, arg);
      return NW_EXIT_USAGE;
    }
    a->config = arg;
  }
  if (a->resume && strcmp(a->resume, "none") && strcmp(a->resume, "auto")) {
    fprintf(stderr, "nightwatch run: --resume takes none or auto, not %s\n",
            a->resume);
    return NW_EXIT_USAGE;
  }
  return 0;
}

/* The config (file, then every --set, then the world), validated, and the
 * policy, into o. 0, or NW_EXIT_CONFIG with every error printed. */
static int nw_cli_run_load(const nw_cli_run_args *a, nw_sup_options *o,
                           char *err, size_t errlen) {
  nw_config_defaults(&o->cfg);
  if (a->config && nw_config_load(&o->cfg, a->config, err, errlen) < 0) {
    fprintf(stderr, "nightwatch run: %s\n", err);
    return NW_EXIT_CONFIG;
  }
  for (int i = 0; i < a->n_sets; i++)
    if (nw_config_set(&o->cfg, a->sets[i], err, errlen) < 0) {
      fprintf(stderr, "nightwatch run: %s\n", err);
      return NW_EXIT_CONFIG;
    }
  nw_world_resolve(&o->cfg);
  if (nw_config_validate(&o->cfg, err, errlen) < 0) {
    fprintf(stderr, "nightwatch run: %s%s%s\n", a->config ? a->config : "",
            a->config ? ": " : "", err);
    return NW_EXIT_CONFIG;
  }
  if (o->cfg.batch.world > NW_SUP_MAX_RANKS) {
    fprintf(stderr,
            "nightwatch run: world.size (%d) is more than the %d ranks one "
            "supervisor runs: run one supervisor per node "
            "(docs/multi-gpu.md)\n",
            o->cfg.batch.world, NW_SUP_MAX_RANKS);
    return NW_EXIT_CONFIG;
  }
  nw_policy_defaults(&o->policy);
  if (a->policy) {
    int nerr = 0;
    int prc = nw_policy_load_cb(a->policy, &o->policy,
                                nw_cli_policy_print_error, &nerr, NULL, 0);
    if (prc < 0) {
      fprintf(stderr, "nightwatch run: %s: %s; refused (%d error%s)\n",
              a->policy, nw_strerror(prc), nerr, nerr == 1 ? "" : "s");
      return NW_EXIT_CONFIG;
    }
  }
  return 0;
}

/* A copy of the foreign command whose program is resolved here into cmd0
 * (execve in the child takes a path). NULL when out of host memory. */
static char **nw_cli_run_command(char **command, char *cmd0, size_t len) {
  int n = 0;
  while (command[n])
    n++;
  char **copy = calloc((size_t)n + 1, sizeof *copy);
  if (!copy)
    return NULL;
  memcpy(copy, command, (size_t)n * sizeof *copy);
  if (nw_which(command[0], cmd0, len) == 0)
    copy[0] = cmd0;
  return copy;
}

int nw_cli_run(int argc, char **argv) {
  nw_log_set_prefix("nightwatch");
  nw_cli_run_args a = {0};
  char run_dir_set[NW_PATH_MAX + 16], err[8192] = "", train_bin[PATH_MAX];
  char cmd0[PATH_MAX];
  int rc = NW_EXIT_FAILURE;
  /* room for every --set plus --run-dir; the options (config and policy)
   * are large, so they live on the heap */
  a.sets = calloc((size_t)argc + 1, sizeof *a.sets);
  nw_sup_options *o = calloc(1, sizeof *o);
  char **command = NULL;
  if (!a.sets || !o) {
    fprintf(stderr, "nightwatch run: out of host memory\n");
    goto out;
  }
  int prc = nw_cli_run_parse(argc, argv, &a);
  if (prc != 0) {
    rc = prc < 0 ? 0 : prc;
    goto out;
  }
  if (a.run_dir) {
    snprintf(run_dir_set, sizeof run_dir_set, "run.dir=%s", a.run_dir);
    a.sets[a.n_sets++] = run_dir_set;
  }
  rc = nw_cli_run_load(&a, o, err, sizeof err);
  if (rc != 0)
    goto out;
  nw_cli_run_train_bin(train_bin, sizeof train_bin);
  if (a.command &&
      !(command = nw_cli_run_command(a.command, cmd0, sizeof cmd0))) {
    rc = NW_EXIT_FAILURE;
    goto out;
  }
  o->config_path = a.config;
  o->sets = a.sets;
  o->n_sets = a.n_sets;
  o->policy_path = a.policy;
  o->resume_none = a.resume && !strcmp(a.resume, "none");
  o->command = command;
  o->train_bin = train_bin;
  rc = nw_supervisor_run(o, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "nightwatch run: %s\n", err);
out:
  free(command);
  free(o);
  free(a.sets);
  return rc;
}
