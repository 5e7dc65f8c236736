/* settings.h — the settings recovery may change, in one list. Everything
 * else is generated from it: the OOM report's fields, the arguments and the
 * environment of a trainer the supervisor starts, the ledger's before and
 * after, and the table in docs/protocol.md (which test_settings checks).
 * defines: NW_SETTINGS, nw_setting_id, nw_setting_info, nw_settings_table,
 *          nw_settings, nw_settings_of, nw_settings_json,
 *          nw_settings_from_json, nw_settings_args, nw_settings_env
 *
 * Adding one: a row here (its config key must exist in base/config.c), the
 * policy action that changes it (recovery/), and the trainer that honours
 * it. */
#ifndef NW_SETTINGS_H
#define NW_SETTINGS_H

#include <jansson.h>
#include <stddef.h>

#include "base/config.h" // defines: nw_config, nw_config_accum, ..._max_len

typedef enum { NW_SETTING_INT, NW_SETTING_BOOL } nw_setting_type;

/* X(id, config key passed as --set KEY=VALUE (NULL: derived, not passed),
 *   environment variable of a foreign trainer (NULL: none), OOM report
 *   field, ledger key, type, value in force for config c) */
#define NW_SETTINGS(X)                                                         \
  X(micro, "batch.micro", "NIGHTWATCH_MICRO_BATCH", "micro_batch", "micro",    \
    NW_SETTING_INT, (c)->batch.micro)                                          \
  X(accum, NULL, "NIGHTWATCH_ACCUMULATION", "accumulation", "accum",           \
    NW_SETTING_INT, nw_config_accum(&(c)->batch))                              \
  X(effective, NULL, "NIGHTWATCH_EFFECTIVE_BATCH", "effective_batch",          \
    "effective", NW_SETTING_INT, (c)->batch.effective)                         \
  X(world, "world.size", NULL, "world_size", "world", NW_SETTING_INT,          \
    (c)->batch.world)                                                          \
  X(max_len, "data.max_len", "NIGHTWATCH_MAX_SEQ_LEN", "max_len", "max_len",   \
    NW_SETTING_INT, nw_config_max_len(c))                                      \
  X(eval_batch, "eval.batch", "NIGHTWATCH_EVAL_BATCH", "eval_batch",           \
    "eval_batch", NW_SETTING_INT, (c)->eval.batch)                             \
  X(release_cache, "eval.release_cache", "NIGHTWATCH_RELEASE_CACHE",           \
    "eval_release_cache", "release_cache", NW_SETTING_BOOL,                    \
    (c)->eval.release_cache)

typedef enum {
#define NW_SETTING_ENUM(id, key, env, report, ledger, type, value)             \
  NW_SETTING_##id,
  NW_SETTINGS(NW_SETTING_ENUM)
#undef NW_SETTING_ENUM
      NW_SETTING_COUNT
} nw_setting_id;

typedef struct {
  const char *name;   /* the id as a word: "micro" */
  const char *key;    /* config key, NULL when derived */
  const char *env;    /* NIGHTWATCH_* name, NULL when none */
  const char *report; /* OOM report field */
  const char *ledger; /* key in the ledger's settings objects */
  nw_setting_type type;
} nw_setting_info;

extern const nw_setting_info nw_settings_table[NW_SETTING_COUNT];

/* The values in force, by name (s.micro) or by id (s.v[NW_SETTING_micro]). */
typedef union {
  struct {
#define NW_SETTING_FIELD(id, key, env, report, ledger, type, value) int id;
    NW_SETTINGS(NW_SETTING_FIELD)
#undef NW_SETTING_FIELD
  };
  int v[NW_SETTING_COUNT];
} nw_settings;

/* The values in force for config c. */
void nw_settings_of(const nw_config *c, nw_settings *out);

/* {"micro": 8, ...} with the ledger's keys (report 0) or the report's
 * fields (report 1). NULL when out of memory. */
json_t *nw_settings_json(const nw_settings *s, int report);
/* Reads the report's fields from o into *out; 0, or NW_EDATA with err
 * naming the field that is missing or of the wrong type. */
int nw_settings_from_json(json_t *o, nw_settings *out, char *err,
                          size_t errlen);

#define NW_SETTING_TEXT_MAX 96
/* "KEY=VALUE" of every passed setting, for `--set` (at most max); the
 * count. The supervisor puts them after the user's: the last one wins. */
int nw_settings_args(const nw_settings *s, char (*buf)[NW_SETTING_TEXT_MAX],
                     int max);
/* "NIGHTWATCH_...=VALUE" of every setting with a variable (at most max);
 * the count. */
int nw_settings_env(const nw_settings *s, char (*buf)[NW_SETTING_TEXT_MAX],
                    int max);

#endif
