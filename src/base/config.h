/* config.h — the trainer's settings: one table of keys, types, defaults and
 * ranges; parsed from an INI file plus --set overrides.
 * defines: nw_config, nw_config_defaults, nw_config_load,
 *          nw_config_parse_buffer, nw_config_set, nw_config_validate,
 *          nw_config_dump, nw_config_keytable, nw_config_source_name
 *
 * Errors name the file and line (or the --set argument) and the key. A load
 * parses into the caller's struct only on success: on failure the struct is
 * left as it was, so a reload never half-applies. */
#ifndef NW_CONFIG_H
#define NW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "base/alert_config.h"
#include "base/keytable.h"

#define NW_PATH_MAX 1024

typedef enum {
  NW_DATA_SYNTHETIC = 0, /* built-in addition task */
  NW_DATA_TEXT = 1,   /* a UTF-8 text file read as bytes, one line an example */
  NW_DATA_SHARDS = 2, /* llm.c uint16 .bin token shards, EOT-separated docs */
} nw_data_source;

typedef struct {
  int n_layer;     /* transformer blocks */
  int n_head;      /* attention heads; n_embd % n_head == 0 */
  int n_embd;      /* width C */
  int vocab_size;  /* V; 256 for bytes, 50257 for GPT-2 shards */
  int max_seq_len; /* maximum sequence length (positions) */
} nw_model_config;

typedef struct {
  nw_data_source source;
  char path[NW_PATH_MAX];     /* text file or training shard(s), glob allowed */
  char val_path[NW_PATH_MAX]; /* optional held-out shard(s); "" = split */
  double val_fraction;        /* held-out share when val_path is empty */
  uint64_t seed;              /* generator seed (synthetic) and shuffle seed */
  int short_max_digits;       /* synthetic: typical operands have 1..this */
  int long_max_digits;        /* synthetic: rare long operands up to this */
  double long_fraction;       /* synthetic: share of long examples */
  int max_len; /* truncate examples at this many positions; 0 = model's */
} nw_data_config;

typedef struct {
  int effective; /* sequences per optimizer step, all ranks together */
  int micro;     /* sequences per forward/backward on one rank */
  int world;     /* data-parallel ranks: the key world.size; 0 = auto */
} nw_batch_config;

typedef struct {
  int steps;           /* optimizer steps in the run */
  double lr;           /* peak learning rate */
  double min_lr;       /* floor of the cosine decay */
  int warmup_steps;    /* linear warmup */
  double weight_decay; /* AdamW decoupled weight decay on matrices */
  double beta1, beta2; /* AdamW moments */
  double eps;          /* AdamW epsilon */
  double grad_clip;    /* global-norm clip; 0 = off */
  uint64_t seed;       /* initialisation seed */
  int threads;         /* OpenMP/BLAS threads; 0 = all cores */
  int log_every;       /* human progress line every N steps */
} nw_train_config;

typedef struct {
  int every;          /* evaluate every N steps; 0 = never */
  int batches;        /* validation-loss batches */
  int batch;          /* sequences per eval batch */
  int generate;       /* examples answered by generation */
  int max_new_tokens; /* generation cap per answer */
  int release_cache;  /* 1: free the kv-cache after generation; 0: keep */
} nw_eval_config;

typedef struct {
  int every;             /* save every N steps; 0 = only on stop and OOM */
  double every_seconds;  /* and every N seconds; 0 = off */
  int keep_last;         /* checkpoints kept in the run directory */
  int max_failures;      /* failed writes in a row before training stops */
  double verify_timeout; /* seconds one verification may take */
} nw_checkpoint_config;

typedef struct {
  char dir[NW_PATH_MAX]; /* run directory */
  char id[64]; /* run id; "" = NIGHTWATCH_RUN_ID, else derived from dir */
} nw_run_config;

typedef struct {
  char type[16];     /* cpu, cuda or auto (device.h resolves it) */
  char name[64];     /* virtual device name */
  uint64_t memory;   /* capacity in bytes; 0 = unlimited */
  char precision[8]; /* GPU matrix products: tf32, bf16 or fp32 */
} nw_device_config;

typedef struct {
  double hang_timeout; /* seconds without a status line: the trainer hangs */
  double kill_grace;   /* seconds from SIGTERM to SIGKILL */
} nw_supervisor_config;

typedef struct {
  nw_model_config model;
  nw_data_config data;
  nw_batch_config batch;
  nw_train_config train;
  nw_eval_config eval;
  nw_checkpoint_config checkpoint;
  nw_run_config run;
  nw_device_config device;
  nw_supervisor_config supervisor; /* read by `nightwatch run` only */
  nw_alert_config alert;           /* webhooks; `nightwatch run` only */
} nw_config;

/* Fills every key with its default: the embedded default run. */
void nw_config_defaults(nw_config *cfg);

/* Parses an INI file over cfg. On error writes "FILE:LINE: key: reason" into
 * err and returns NW_ECONFIG without touching cfg. */
int nw_config_load(nw_config *cfg, const char *path, char *err, size_t errlen);

/* The same for len bytes of text in memory (need not be NUL-terminated),
 * named name in messages: a fuzzer's entry point. */
int nw_config_parse_buffer(nw_config *cfg, const char *name, const char *text,
                           size_t len, char *err, size_t errlen);

/* Applies one "section.key=value" override; err names the argument. */
int nw_config_set(nw_config *cfg, const char *assignment, char *err,
                  size_t errlen);

/* Cross-key checks (divisibility, head count, ...); err names the keys. */
int nw_config_validate(const nw_config *cfg, char *err, size_t errlen);

/* Writes the full config as INI text (for checkpoints and logs). Returns the
 * length written, or the length needed when buf is too small. */
size_t nw_config_dump(const nw_config *cfg, char *buf, size_t buflen);

/* The table of keys (base/keytable.h): for docs and their tests. */
const nw_keytable *nw_config_keytable(void);

/* "synthetic", "text", "shards"; "invalid" out of range. */
const char *nw_config_source_name(nw_data_source s);

/* The length examples are truncated at: data.max_len, or the model's
 * position count. Recovery shortens sequences through data.max_len, never
 * through the model's shape. */
static inline int nw_config_max_len(const nw_config *c) {
  return c->data.max_len > 0 ? c->data.max_len : c->model.max_seq_len;
}

/* accumulation = effective / (micro * world); an unresolved world (0,
 * auto: nw_world_resolve) counts as 1 */
static inline int nw_config_accum(const nw_batch_config *b) {
  return b->effective / (b->micro * (b->world > 0 ? b->world : 1));
}

#endif
