/* config.c — the settings as one static table: section, key, type, where the
 * value lives in nw_config, its default (as text, read by the same parser as
 * a file), its range and a line of documentation. Loading, --set, checking
 * and dumping are the key-table engine's (base/keytable.h) loops over it;
 * the webhooks ([alert] url..., [alert.NAME]) are parsed by alert_config.c.
 * The checks between keys are in config_validate.c. */
#include "base/config.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/keytable.h"
#include "base/strbuf.h"

#define NW__CFG(sec, f, t, ctype, def_, lo, hi, fl, ch, doc_)                  \
  {                                                                            \
    .section = #sec, .key = #f, .type = t, NW_KT_AT(nw_config, sec.f, ctype),  \
    .def = def_, .min = lo, .max = hi, .flags = fl, .choices = ch, .doc = doc_ \
  }
#define NW__INT(sec, f, def, min, max, doc)                                    \
  NW__CFG(sec, f, NW_KT_INT, int, def, min, max, 0, NULL, doc)
#define NW__U64(sec, f, def, doc)                                              \
  NW__CFG(sec, f, NW_KT_U64, uint64_t, def, 0, 0, 0, NULL, doc)
#define NW__DBL(sec, f, def, min, max, flags, doc)                             \
  NW__CFG(sec, f, NW_KT_DOUBLE, double, def, min, max, flags, NULL, doc)
#define NW__BOOL(sec, f, def, doc)                                             \
  NW__CFG(sec, f, NW_KT_BOOL, int, def, 0, 1, 0, NULL, doc)
#define NW__STR(sec, f, def, flags, ch, doc)                                   \
  NW__CFG(sec, f, NW_KT_STRING, ((nw_config *)0)->sec.f, def, 0, 0, flags, ch, \
          doc)
#define NW__ENUM(sec, f, def, ch, doc)                                         \
  NW__CFG(sec, f, NW_KT_ENUM, int, def, 0, 0, 0, ch, doc)
#define NW__SIZE(sec, f, def, doc)                                             \
  NW__CFG(sec, f, NW_KT_SIZE, uint64_t, def, 0, 0, 0, NULL, doc)

/* Index = nw_data_source value. */
static const char *const nw__cfg_sources[] = {"synthetic", "text", "shards",
                                              NULL};
static const char *const nw__cfg_device_types[] = {"cpu", "cuda", "auto", NULL};
static const char *const nw__cfg_precisions[] = {"tf32", "bf16", "fp32", NULL};

#define NW__BIG (1 << 30)

static const nw_kt_key nw__cfg_keys[] = {
    NW__INT(model, n_layer, "3", 1, 256, "transformer blocks"),
    NW__INT(model, n_head, "4", 1, 256,
            "attention heads; n_embd must be a multiple"),
    NW__INT(model, n_embd, "128", 8, 16384, "model width C"),
    NW__INT(model, vocab_size, "256", 2, 1000000,
            "vocabulary size; 256 for bytes, 50257 for GPT-2 shards"),
    NW__INT(model, max_seq_len, "96", 4, 65536,
            "maximum sequence length in tokens (positions)"),

    NW__ENUM(data, source, "synthetic", nw__cfg_sources,
             "synthetic (built-in addition task), text (a UTF-8 file, one "
             "example a line) or shards (llm.c uint16 token shards)"),
    NW__STR(data, path, "", 0, NULL,
            "text file or training shard(s), glob allowed; required for text "
            "and shards"),
    NW__STR(data, val_path, "", 0, NULL,
            "held-out shard(s); empty: split off val_fraction"),
    NW__DBL(data, val_fraction, "0.05", 0, 0.5, 0,
            "held-out share when val_path is empty"),
    NW__U64(data, seed, "1337", "data generator and shuffle seed"),
    NW__INT(data, short_max_digits, "2", 1, 1000,
            "synthetic: typical operands have 1..this digits"),
    NW__INT(data, long_max_digits, "24", 1, 10000,
            "synthetic: rare long operands have up to this many digits"),
    NW__DBL(data, long_fraction, "0.01", 0, 1, 0,
            "synthetic: share of long examples"),
    NW__INT(data, max_len, "0", 0, 65536,
            "truncate examples at this many tokens; 0 = model.max_seq_len "
            "(recovery's shorten-sequences lowers it)"),

    NW__INT(batch, effective, "32", 1, 1 << 20,
            "sequences per optimizer step, all ranks together; never changed "
            "by recovery"),
    NW__INT(batch, micro, "8", 1, 1 << 20,
            "sequences per forward/backward on one rank"),
    /* world.size lives in batch.world: the batch arithmetic needs it */
    {.section = "world",
     .key = "size",
     .type = NW_KT_INT,
     NW_KT_AT(nw_config, batch.world, int),
     .def = "0",
     .min = 0,
     .max = 4096,
     .doc = "data-parallel ranks, one per device; 0 = one per GPU on this "
            "host (CUDA_VISIBLE_DEVICES respected) with device.type cuda or "
            "auto, else 1"},

    NW__INT(train, steps, "2000", 0, NW__BIG, "optimizer steps in the run"),
    NW__DBL(train, lr, "0.003", 0, 10, 0, "peak learning rate"),
    NW__DBL(train, min_lr, "0.0003", 0, 10, 0,
            "floor of the cosine decay; at most lr"),
    NW__INT(train, warmup_steps, "30", 0, NW__BIG,
            "steps of linear learning-rate warmup"),
    NW__DBL(train, weight_decay, "0.1", 0, 10, 0,
            "AdamW decoupled weight decay on matrices"),
    NW__DBL(train, beta1, "0.9", 0, 1, NW_KT_MAX_OPEN,
            "AdamW first-moment decay"),
    NW__DBL(train, beta2, "0.95", 0, 1, NW_KT_MAX_OPEN,
            "AdamW second-moment decay"),
    NW__DBL(train, eps, "1e-08", 0, 1, 0, "AdamW epsilon"),
    NW__DBL(train, grad_clip, "1", 0, 1e6, 0,
            "global gradient-norm clip; 0 = off"),
    NW__U64(train, seed, "42", "parameter initialisation seed"),
    NW__INT(train, threads, "0", 0, 1024, "OpenMP/BLAS threads; 0 = all cores"),
    NW__INT(train, log_every, "1", 1, NW__BIG, "a progress line every N steps"),

    NW__INT(eval, every, "200", 0, INT_MAX,
            "evaluate every N steps; 0 = never"),
    NW__INT(eval, batches, "4", 0, INT_MAX, "validation-loss batches"),
    NW__INT(eval, batch, "32", 1, INT_MAX, "sequences per eval batch"),
    NW__INT(eval, generate, "128", 0, INT_MAX,
            "examples answered by generation at each eval"),
    NW__INT(eval, max_new_tokens, "48", 1, INT_MAX,
            "generated tokens per answer at most; below max_seq_len"),
    NW__BOOL(eval, release_cache, "false",
             "free the kv-cache after each generation instead of keeping it"),

    NW__INT(checkpoint, every, "200", 0, INT_MAX,
            "save a checkpoint every N steps; 0 = only on stop and OOM"),
    NW__DBL(checkpoint, every_seconds, "0", 0, 1e9, 0,
            "also save every N seconds; 0 = off"),
    NW__INT(checkpoint, keep_last, "3", 1, 1000000,
            "checkpoints kept in the run directory"),
    NW__INT(checkpoint, max_failures, "3", 1, 1000000,
            "failed writes in a row after which training stops (exit 74)"),
    NW__DBL(checkpoint, verify_timeout, "60", 0.1, 1e6, 0,
            "seconds one checkpoint verification may take before the file "
            "counts as damaged"),

    NW__STR(run, dir, "runs/default", NW_KT_NONEMPTY, NULL,
            "run directory: checkpoints, logs, reports"),
    NW__STR(run, id, "", 0, NULL,
            "run id shared by every process of this run; empty: "
            "NIGHTWATCH_RUN_ID, else the run directory's name and a hash of "
            "its absolute path"),

    NW__STR(device, type, "cpu", 0, nw__cfg_device_types,
            "cpu, cuda, or auto (cuda when built in and present)"),
    NW__STR(device, name, "nw0", NW_KT_NONEMPTY, NULL,
            "virtual device name (CPU): processes naming the same device "
            "share its memory"),
    NW__SIZE(device, memory, "0",
             "device memory in bytes (suffix B, KB, MB, GB, TB, KiB, MiB, "
             "GiB, TiB allowed); CPU: the virtual device's capacity, GPU: a "
             "cap below the card's size; 0 = unlimited (GPU: the card)"),
    NW__STR(device, precision, "tf32", 0, nw__cfg_precisions,
            "GPU matrix products: tf32 (FP32 storage, TF32 tensor cores), "
            "bf16 (BF16 inputs, FP32 accumulation, FP32 master weights and "
            "optimizer state) or fp32; the CPU computes in FP32"),

    NW__DBL(supervisor, hang_timeout, "300", 0.1, 1e7, 0,
            "nightwatch run: seconds without a status line from the trainer "
            "before it counts as hung (SIGTERM, grace, SIGKILL, restart)"),
    NW__DBL(supervisor, kill_grace, "30", 0, 3600, 0,
            "nightwatch run: seconds between SIGTERM and SIGKILL when the "
            "supervisor stops a trainer"),

    /* Delivery of webhook alerts; the hooks themselves (url, format,
     * events, secret_file) are parsed by alert_config.c. */
    NW__DBL(alert, connect_timeout, "5", 0.1, 600, 0,
            "seconds to resolve and connect to a webhook"),
    NW__DBL(alert, timeout, "15", 0.1, 3600, 0,
            "seconds one delivery attempt may take in all"),
    NW__INT(alert, attempts, "5", 1, 100,
            "tries per message, the first included"),
    NW__DBL(alert, max_backoff, "60", 0, 3600, 0,
            "cap of the exponential backoff between tries, seconds"),
    NW__INT(alert, queue, "64", 1, 100000,
            "messages waiting at most; when full the oldest is dropped"),
    NW__DBL(alert, drain_timeout, "10", 0, 3600, 0,
            "seconds at exit to finish delivering what is queued"),
};

_Static_assert(sizeof(nw_data_source) == sizeof(int),
               "enum keys are stored as int");

const char *nw_config_source_name(nw_data_source s) {
  if ((int)s < 0 || s > NW_DATA_SHARDS)
    return "invalid";
  return nw__cfg_sources[s];
}

/* A hook key: url/format/events/secret_file in [alert] (the hook
 * "default") or any key in [alert.NAME]. 1: not a hook key; 0: set;
 * NW_ECONFIG: why says what is wrong. */
static int nw__cfg_hook_key(void *obj, const char *section, const char *key,
                            const char *value, int line, char *why,
                            size_t whylen) {
  nw_config *cfg = obj;
  const char *name;
  if (!strcmp(section, "alert")) {
    if (strcmp(key, "url") && strcmp(key, "format") && strcmp(key, "events") &&
        strcmp(key, "secret_file"))
      return 1;
    name = "default";
  } else if (!strncmp(section, "alert.", 6)) {
    name = section + 6;
    if (!*name || !strcmp(name, "default")) {
      snprintf(why, whylen,
               "[%.64s] is not a hook name; the default hook lives in [alert]",
               section);
      return NW_ECONFIG;
    }
  } else {
    return 1;
  }
  int rc = nw_alert_hook_set(&cfg->alert, name, key, value, line, why, whylen);
  return rc < 0 ? NW_ECONFIG : rc;
}

static const nw_keytable nw__cfg_table = {
    .keys = nw__cfg_keys,
    .n_keys = sizeof nw__cfg_keys / sizeof nw__cfg_keys[0],
    .obj_size = sizeof(nw_config),
    .dialect = NW_KT_DOTTED,
    .extra = nw__cfg_hook_key,
};

const nw_keytable *nw_config_keytable(void) { return &nw__cfg_table; }

void nw_config_defaults(nw_config *cfg) { nw_kt_defaults(&nw__cfg_table, cfg); }

/* An unreadable file is a config error too: the programs exit 78 for it. */
static int nw__cfg_rc(int rc) {
  return rc == NW_EHOSTMEM || rc == NW_EINTERNAL || rc == 0 ? rc : NW_ECONFIG;
}

int nw_config_load(nw_config *cfg, const char *path, char *err, size_t errlen) {
  nw_ini_errs errs;
  nw_ini_errs_init(&errs, err, errlen, NULL, NULL);
  return nw__cfg_rc(nw_kt_parse_file(&nw__cfg_table, cfg, path, &errs));
}

int nw_config_parse_buffer(nw_config *cfg, const char *name, const char *text,
                           size_t len, char *err, size_t errlen) {
  nw_ini_errs errs;
  nw_ini_errs_init(&errs, err, errlen, NULL, NULL);
  return nw__cfg_rc(
      nw_kt_parse_buffer(&nw__cfg_table, cfg, name, text, len, &errs));
}

int nw_config_set(nw_config *cfg, const char *assignment, char *err,
                  size_t errlen) {
  return nw_kt_set(&nw__cfg_table, cfg, assignment, err, errlen);
}

/* The hooks after the table's [alert] keys (the last section). A URL is
 * written as a comment with its host only: a dump goes into checkpoints and
 * logs, and Slack and Discord keep the webhook's token in the path. */
static void nw__cfg_dump_hooks(const nw_alert_config *a, nw_strbuf *o) {
  static const char *const names[] = {"give-up", "finish", "start", "stop"};
  for (int i = 0; i < a->n_hooks; i++) {
    const nw_alert_hook *h = &a->hooks[i];
    char host[256];
    nw_alert_url_host(h->url, host, sizeof host);
    if (strcmp(h->name, "default"))
      nw_strbuf_printf(o, "\n[alert.%s]\n", h->name);
    nw_strbuf_printf(o, "# url = %s://%s/... (only the host is shown)\n",
                     strncasecmp(h->url, "https:", 6) ? "http" : "https", host);
    nw_strbuf_printf(o, "format = %s\n", nw_alert_format_name(h->format));
    nw_strbuf_printf(o, "events = recovery");
    for (int b = 0; b < 4; b++)
      if (h->events & (NW_ALERT_EV_GIVE_UP << b))
        nw_strbuf_printf(o, ", %s", names[b]);
    nw_strbuf_printf(o, "\n");
    if (h->secret_file[0])
      nw_strbuf_printf(o, "secret_file = \"%s\"\n", h->secret_file);
  }
}

size_t nw_config_dump(const nw_config *cfg, char *buf, size_t buflen) {
  nw_strbuf o = nw_strbuf_init(buf, buflen);
  nw_kt_dump(&nw__cfg_table, cfg, &o);
  nw__cfg_dump_hooks(&cfg->alert, &o);
  return o.len;
}
