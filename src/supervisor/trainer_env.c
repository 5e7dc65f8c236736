/* trainer_env.c — the arguments and the environment of a started trainer.
 * The trainer never talks to systemd itself: NOTIFY_SOCKET and WATCHDOG_*
 * are removed. */
#include "supervisor/trainer_env.h"

#include <stdio.h>

#include "base/fsutil.h"          // defines: NW_PATH_MAX
#include "checkpoints/ckpt.h"     // defines: nw_ckpt_find_latest
#include "protocol/world.h"       // defines: NW_WORLD_ENV_*
#include "supervisor/sup_child.h" // defines: nw_child_env_build

int nw_trainer_argv(const nw_sup_options *o, const nw_config *cfg, int fresh,
                    nw_trainer_args *args, char **argv, int max) {
  int n = 0;
  if (o->command) {
    for (int i = 0; o->command[i] && n < max - 1; i++)
      argv[n++] = o->command[i];
    argv[n] = NULL;
    return n;
  }
  nw_settings set;
  nw_settings_of(cfg, &set);
  int n_set = nw_settings_args(&set, args->set, NW_SETTING_COUNT);
  argv[n++] = (char *)o->train_bin;
  if (o->config_path)
    argv[n++] = (char *)o->config_path;
  for (int i = 0; i < o->n_sets && n < max - 2 * n_set - 4; i++) {
    argv[n++] = "--set";
    argv[n++] = o->sets[i];
  }
  for (int i = 0; i < n_set; i++) {
    argv[n++] = "--set";
    argv[n++] = args->set[i];
  }
  argv[n++] = "--resume";
  argv[n++] = fresh ? "none" : "auto";
  argv[n] = NULL;
  return n;
}

/* The variables every start sets, and so removes from what it inherits. */
static const char *const nw_trainer_env_fixed[] = {
    "NOTIFY_SOCKET",     "WATCHDOG_USEC",     "WATCHDOG_PID",
    "NIGHTWATCH_RUN_ID", "NIGHTWATCH_RESUME", "NIGHTWATCH_RUN_DIR",
    NW_WORLD_ENV_RANK,   NW_WORLD_ENV_SIZE,   NW_WORLD_ENV_COMM};
#define NW_TRAINER_ENV_FIXED                                                   \
  (int)(sizeof nw_trainer_env_fixed / sizeof nw_trainer_env_fixed[0])
#define NW_TRAINER_ENV_MAX (NW_TRAINER_ENV_FIXED + NW_SETTING_COUNT)

char **nw_trainer_env(const nw_sup_options *o, const nw_config *cfg,
                      const char *run_id, const char *comm, int rank) {
  const char *unset[NW_TRAINER_ENV_MAX + 1];
  const char *set[NW_TRAINER_ENV_MAX + 1];
  char fixed[6][NW_PATH_MAX + 64];
  char settings[NW_SETTING_COUNT][NW_SETTING_TEXT_MAX];
  int nu = 0, ns = 0;
  for (int i = 0; i < NW_TRAINER_ENV_FIXED; i++)
    unset[nu++] = nw_trainer_env_fixed[i];
  for (int i = 0; i < NW_SETTING_COUNT; i++)
    if (nw_settings_table[i].env)
      unset[nu++] = nw_settings_table[i].env;
  unset[nu] = NULL;

  snprintf(fixed[0], sizeof fixed[0], "NIGHTWATCH_RUN_ID=%s", run_id);
  snprintf(fixed[1], sizeof fixed[1], "%s=%d", NW_WORLD_ENV_RANK, rank);
  snprintf(fixed[2], sizeof fixed[2], "%s=%d", NW_WORLD_ENV_SIZE,
           cfg->batch.world);
  snprintf(fixed[3], sizeof fixed[3], "%s=%s", NW_WORLD_ENV_COMM, comm);
  for (int i = 0; i < 4; i++)
    set[ns++] = fixed[i];
  if (o->command) {
    /* a foreign trainer learns the settings and where to resume from here;
     * nightwatch-train from its arguments */
    char resume[NW_PATH_MAX] = "", err[512];
    if (nw_ckpt_find_latest(cfg->run.dir, cfg->checkpoint.verify_timeout, NULL,
                            resume, sizeof resume, err, sizeof err) < 0)
      resume[0] = '\0';
    snprintf(fixed[4], sizeof fixed[4], "NIGHTWATCH_RESUME=%s", resume);
    snprintf(fixed[5], sizeof fixed[5], "NIGHTWATCH_RUN_DIR=%s", cfg->run.dir);
    set[ns++] = fixed[4];
    set[ns++] = fixed[5];
    nw_settings in_force;
    nw_settings_of(cfg, &in_force);
    int n = nw_settings_env(&in_force, settings, NW_SETTING_COUNT);
    for (int i = 0; i < n; i++)
      set[ns++] = settings[i];
  }
  set[ns] = NULL;
  return nw_child_env_build(unset, set);
}
