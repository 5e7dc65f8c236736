/* trainer_env.h — what a trainer the supervisor starts is told: its
 * arguments (nightwatch-train) and its environment (any trainer), both
 * generated from the settings in force (protocol/settings.h).
 * defines: nw_trainer_args, nw_trainer_argv, nw_trainer_env */
#ifndef NW_TRAINER_ENV_H
#define NW_TRAINER_ENV_H

#include "base/config.h"           // defines: nw_config
#include "protocol/settings.h"     // defines: NW_SETTING_COUNT, ..._TEXT_MAX
#include "supervisor/supervisor.h" // defines: nw_sup_options

/* The storage argv points into; one per start, owned by the caller. */
typedef struct {
  char set[NW_SETTING_COUNT][NW_SETTING_TEXT_MAX];
} nw_trainer_args;

/* argv (at most max entries, NULL-terminated) of rank trainers: the
 * foreign command as given, or nightwatch-train with the user's config and
 * --set options, then the settings in force (the last one wins) and
 * --resume auto (--resume none when fresh: the run's first start under
 * `nightwatch run --resume none`). Pointers into o, cfg's copies in args.
 * The count. */
int nw_trainer_argv(const nw_sup_options *o, const nw_config *cfg, int fresh,
                    nw_trainer_args *args, char **argv, int max);

/* The environment of rank `rank`: ours without systemd's variables and
 * any stale NIGHTWATCH_*, plus the contract of docs/protocol.md
 * ("Supervising a foreign trainer") and docs/multi-gpu.md. NULL when out of
 * memory; free with nw_child_env_free. */
char **nw_trainer_env(const nw_sup_options *o, const nw_config *cfg,
                      const char *run_id, const char *comm, int rank);

#endif
