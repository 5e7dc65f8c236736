/* config.c — the settings as one static table: section, key, type, where the
 * value lives in nw_config, its default (as text, read by the same parser as
 * a file), its range and a line of documentation. Loading, --set, checking
 * and dumping are loops over that table. */
#include "base/config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/error.h"
#include "base/ini.h"

typedef enum {
  NW__CFG_INT,    /* int, decimal */
  NW__CFG_U64,    /* uint64_t, decimal */
  NW__CFG_DOUBLE, /* double, strtod syntax, finite */
  NW__CFG_BOOL,   /* int 0/1 from true/false/yes/no/1/0 */
  NW__CFG_STRING, /* char[size], NUL-terminated */
  NW__CFG_ENUM,   /* int-sized enum: the index into choices */
  NW__CFG_SIZE,   /* uint64_t bytes, with an optional unit suffix */
} nw__cfg_type;

enum {
  NW__CFG_MAX_OPEN = 1, /* the range excludes max: [min, max) */
  NW__CFG_NONEMPTY = 2, /* a string that may not be "" */
};

typedef struct {
  const char *section;
  const char *key;
  nw__cfg_type type;
  size_t offset; /* into nw_config */
  size_t size;   /* of the field; a string's capacity including the NUL */
  const char *def;
  double min, max; /* numeric range (ints are exact in a double) */
  unsigned flags;
  const char *const *choices; /* NULL-terminated: enum names or allowed */
  const char *doc;
} nw__cfg_key;

/* Compile-time check inside an initializer: 0, or a negative array size. */
#define NW__CFG_CHECK(cond) (0 * sizeof(char[(cond) ? 1 : -1]))
#define NW__CFG_FIELD(sec, f) (((nw_config *)0)->sec.f)
#define NW__CFG_ENTRY(sec, f, type, ctype, def, min, max, flags, ch, doc)      \
  {                                                                            \
#sec, #f, type, offsetof(nw_config, sec.f),                                \
        sizeof(NW__CFG_FIELD(sec, f)) +                                        \
            NW__CFG_CHECK(sizeof(NW__CFG_FIELD(sec, f)) == sizeof(ctype)),     \
        def, min, max, flags, ch, doc                                          \
  }
#define NW__INT(sec, f, def, min, max, doc)                                    \
  NW__CFG_ENTRY(sec, f, NW__CFG_INT, int, def, min, max, 0, NULL, doc)
#define NW__U64(sec, f, def, doc)                                              \
  NW__CFG_ENTRY(sec, f, NW__CFG_U64, uint64_t, def, 0, 0, 0, NULL, doc)
#define NW__DBL(sec, f, def, min, max, flags, doc)                             \
  NW__CFG_ENTRY(sec, f, NW__CFG_DOUBLE, double, def, min, max, flags, NULL, doc)
#define NW__BOOL(sec, f, def, doc)                                             \
  NW__CFG_ENTRY(sec, f, NW__CFG_BOOL, int, def, 0, 1, 0, NULL, doc)
#define NW__STR(sec, f, def, flags, ch, doc)                                   \
  NW__CFG_ENTRY(sec, f, NW__CFG_STRING, NW__CFG_FIELD(sec, f), def, 0, 0,      \
                flags, ch, doc)
#define NW__ENUM(sec, f, def, ch, doc)                                         \
  NW__CFG_ENTRY(sec, f, NW__CFG_ENUM, int, def, 0, 0, 0, ch, doc)
#define NW__SIZE(sec, f, def, doc)                                             \
  NW__CFG_ENTRY(sec, f, NW__CFG_SIZE, uint64_t, def, 0, 0, 0, NULL, doc)

/* Index = nw_data_source value. */
static const char *const nw__cfg_sources[] = {"synthetic", "text", "shards",
                                              NULL};
static const char *const nw__cfg_device_types[] = {"cpu", "cuda", "auto", NULL};
static const char *const nw__cfg_precisions[] = {"tf32", "bf16", "fp32", NULL};

#define NW__BIG (1 << 30)

static const nw__cfg_key nw__cfg_keys[] = {
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
    {"world", "size", NW__CFG_INT, offsetof(nw_config, batch.world),
     sizeof(int), "0", 0, 4096, 0, NULL,
     "data-parallel ranks, one per device; 0 = one per GPU on this host "
     "(CUDA_VISIBLE_DEVICES respected) with device.type cuda or auto, else "
     "1"},

    NW__INT(train, steps, "2000", 0, NW__BIG, "optimizer steps in the run"),
    NW__DBL(train, lr, "0.003", 0, 10, 0, "peak learning rate"),
    NW__DBL(train, min_lr, "0.0003", 0, 10, 0,
            "floor of the cosine decay; at most lr"),
    NW__INT(train, warmup_steps, "30", 0, NW__BIG,
            "steps of linear learning-rate warmup"),
    NW__DBL(train, weight_decay, "0.1", 0, 10, 0,
            "AdamW decoupled weight decay on matrices"),
    NW__DBL(train, beta1, "0.9", 0, 1, NW__CFG_MAX_OPEN,
            "AdamW first-moment decay"),
    NW__DBL(train, beta2, "0.95", 0, 1, NW__CFG_MAX_OPEN,
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
    NW__DBL(checkpoint, verify_timeout, "60", 0.1, 1e6, 0,
            "seconds one checkpoint verification may take before the file "
            "counts as damaged"),

    NW__STR(run, dir, "runs/default", NW__CFG_NONEMPTY, NULL,
            "run directory: checkpoints, logs, reports"),
    NW__STR(run, id, "", 0, NULL,
            "run id shared by every process of this run; empty: "
            "NIGHTWATCH_RUN_ID, else the run directory's name and a hash of "
            "its absolute path"),

    NW__STR(device, type, "cpu", 0, nw__cfg_device_types,
            "cpu, cuda, or auto (cuda when built in and present)"),
    NW__STR(device, name, "nw0", NW__CFG_NONEMPTY, NULL,
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

#define NW__CFG_NKEYS (sizeof nw__cfg_keys / sizeof nw__cfg_keys[0])

_Static_assert(sizeof(nw_data_source) == sizeof(int),
               "enum keys are stored as int");

static const struct {
  const char *suffix;
  uint64_t mult;
} nw__cfg_units[] = {
    {"B", 1},
    {"KB", 1000ull},
    {"MB", 1000000ull},
    {"GB", 1000000000ull},
    {"TB", 1000000000000ull},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
};

#define NW__CFG_SIZE_HELP                                                      \
  "a byte count with an optional suffix B, KB, MB, GB, TB, KiB, MiB, GiB or "  \
  "TiB"

/* ---- text helpers ---- */

/* Appends to a buffer snprintf-style: len keeps counting past the end so
 * that the caller learns the size needed. */
typedef struct {
  char *buf;
  size_t cap;
  size_t len;
} nw__cfg_out;

static void nw__cfg_printf(nw__cfg_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void nw__cfg_printf(nw__cfg_out *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *dst = o->len < o->cap ? o->buf + o->len : NULL;
  size_t room = o->len < o->cap ? o->cap - o->len : 0;
  int n = vsnprintf(dst, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    o->len += (size_t)n;
}

/* The offending text for a message: quoted, cut at 64 bytes. */
static const char *nw__cfg_show(const char *v, char *buf, size_t len) {
  snprintf(buf, len, "\"%.64s%s\"", v, strlen(v) > 64 ? "..." : "");
  return buf;
}

/* Shortest "%.Ng" that reads back to exactly x; whole numbers plainly. */
static void nw__cfg_fmt_double(double x, char *buf, size_t len) {
  if (x == floor(x) && fabs(x) < 1e15) {
    snprintf(buf, len, "%.0f", x);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, x);
    if (strtod(buf, NULL) == x)
      return;
  }
}

static void nw__cfg_fmt_size(uint64_t bytes, char *buf, size_t len) {
  static const char *const units[] = {"TiB", "GiB", "MiB", "KiB"};
  for (int i = 0; i < 4 && bytes; i++) {
    uint64_t mult = 1ull << (10 * (4 - i));
    if (bytes % mult == 0) {
      snprintf(buf, len, "%" PRIu64 "%s", bytes / mult, units[i]);
      return;
    }
  }
  snprintf(buf, len, "%" PRIu64, bytes);
}

static void nw__cfg_fmt_choices(const char *const *ch, char *buf, size_t len) {
  nw__cfg_out o = {buf, len, 0};
  buf[0] = '\0';
  for (int i = 0; ch[i]; i++)
    nw__cfg_printf(&o, "%s%s", i ? (ch[i + 1] ? ", " : " or ") : "", ch[i]);
}

/* What a key accepts, for messages: "an integer in [1, 256]". */
static void nw__cfg_describe(const nw__cfg_key *k, char *buf, size_t len) {
  char lo[32], hi[32], ch[128];
  switch (k->type) {
  case NW__CFG_INT:
    if (k->max >= INT_MAX)
      snprintf(buf, len, "an integer >= %d", (int)k->min);
    else
      snprintf(buf, len, "an integer in [%d, %d]", (int)k->min, (int)k->max);
    return;
  case NW__CFG_U64:
    snprintf(buf, len, "an integer in [0, %" PRIu64 "]", UINT64_MAX);
    return;
  case NW__CFG_DOUBLE:
    nw__cfg_fmt_double(k->min, lo, sizeof lo);
    nw__cfg_fmt_double(k->max, hi, sizeof hi);
    snprintf(buf, len, "a number in [%s, %s%c", lo, hi,
             k->flags & NW__CFG_MAX_OPEN ? ')' : ']');
    return;
  case NW__CFG_BOOL:
    snprintf(buf, len, "true, false, yes, no, 1 or 0");
    return;
  case NW__CFG_STRING:
    if (k->choices) {
      nw__cfg_fmt_choices(k->choices, ch, sizeof ch);
      snprintf(buf, len, "one of %s", ch);
    } else {
      snprintf(buf, len, "a %sstring of at most %zu bytes",
               k->flags & NW__CFG_NONEMPTY ? "non-empty " : "", k->size - 1);
    }
    return;
  case NW__CFG_ENUM:
    nw__cfg_fmt_choices(k->choices, ch, sizeof ch);
    snprintf(buf, len, "one of %s", ch);
    return;
  case NW__CFG_SIZE:
    snprintf(buf, len, "%s", NW__CFG_SIZE_HELP);
    return;
  }
}

static int nw__cfg_nchoices(const char *const *ch) {
  int n = 0;
  while (ch[n])
    n++;
  return n;
}

/* ---- value parsing ---- */

/* 0: ok; 1: not a number; 2: does not fit. Rejects what strtoll would skip
 * or accept loosely: leading whitespace, an empty string, trailing junk. */
static int nw__cfg_parse_ll(const char *v, long long *out) {
  if (!*v || !((*v >= '0' && *v <= '9') || *v == '-' || *v == '+'))
    return 1;
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end)
    return 1;
  if (errno == ERANGE)
    return 2;
  *out = x;
  return 0;
}

/* As above for unsigned; a '-' is not a number (strtoull would wrap it).
 * *end receives the first unparsed character when end is non-NULL. */
static int nw__cfg_parse_ull(const char *v, uint64_t *out, const char **end) {
  if (*v == '+')
    v++;
  if (!(*v >= '0' && *v <= '9'))
    return 1;
  char *e;
  errno = 0;
  unsigned long long x = strtoull(v, &e, 10);
  if (errno == ERANGE)
    return 2;
  if (end)
    *end = e;
  else if (*e)
    return 1;
  *out = x;
  return 0;
}

static int nw__cfg_parse_size(const char *v, uint64_t *out) {
  const char *end;
  uint64_t n;
  int rc = nw__cfg_parse_ull(v, &n, &end);
  if (rc)
    return rc;
  while (*end == ' ' || *end == '\t')
    end++;
  uint64_t mult = 1;
  if (*end) {
    size_t i, nunits = sizeof nw__cfg_units / sizeof nw__cfg_units[0];
    for (i = 0; i < nunits; i++)
      if (strcmp(end, nw__cfg_units[i].suffix) == 0)
        break;
    if (i == nunits)
      return 1;
    mult = nw__cfg_units[i].mult;
  }
  if (n > UINT64_MAX / mult)
    return 2;
  *out = n * mult;
  return 0;
}

static int nw__cfg_in_range(const nw__cfg_key *k, double x) {
  if (x < k->min)
    return 0;
  return k->flags & NW__CFG_MAX_OPEN ? x < k->max : x <= k->max;
}

/* Parses v for key k and stores it into cfg only when it is valid; otherwise
 * writes the reason (no key prefix) into why and returns NW_ECONFIG. */
static int nw__cfg_apply(nw_config *cfg, const nw__cfg_key *k, const char *v,
                         char *why, size_t whylen) {
  char *dst = (char *)cfg + k->offset;
  char desc[192], shown[80];
  nw__cfg_describe(k, desc, sizeof desc);
  nw__cfg_show(v, shown, sizeof shown);
  switch (k->type) {
  case NW__CFG_INT: {
    long long x = 0;
    int rc = nw__cfg_parse_ll(v, &x);
    if (rc == 1)
      goto fail_syntax;
    if (rc == 2 || !nw__cfg_in_range(k, (double)x))
      goto fail_range;
    int i = (int)x;
    memcpy(dst, &i, sizeof i);
    return 0;
  }
  case NW__CFG_U64: {
    uint64_t x = 0;
    int rc = nw__cfg_parse_ull(v, &x, NULL);
    if (rc == 1)
      goto fail_syntax;
    if (rc == 2)
      goto fail_range;
    memcpy(dst, &x, sizeof x);
    return 0;
  }
  case NW__CFG_DOUBLE: {
    if (!*v || *v == ' ' || *v == '\t')
      goto fail_syntax;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end)
      goto fail_syntax;
    if (errno == ERANGE || !isfinite(x) || !nw__cfg_in_range(k, x))
      goto fail_range;
    memcpy(dst, &x, sizeof x);
    return 0;
  }
  case NW__CFG_BOOL: {
    int b;
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1"))
      b = 1;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcmp(v, "0"))
      b = 0;
    else
      goto fail_syntax;
    memcpy(dst, &b, sizeof b);
    return 0;
  }
  case NW__CFG_STRING: {
    size_t n = strlen(v);
    if (n >= k->size) {
      snprintf(why, whylen, "value is %zu bytes long; the limit is %zu", n,
               k->size - 1);
      return NW_ECONFIG;
    }
    for (const char *p = v; *p; p++) {
      if ((unsigned char)*p < 0x20 || *p == 0x7f) {
        snprintf(why, whylen, "%s contains a control character", shown);
        return NW_ECONFIG;
      }
    }
    if (!n && (k->flags & NW__CFG_NONEMPTY)) {
      snprintf(why, whylen, "must not be empty");
      return NW_ECONFIG;
    }
    if (k->choices) {
      int i;
      for (i = 0; k->choices[i] && strcmp(k->choices[i], v); i++)
        ;
      if (!k->choices[i])
        goto fail_choice;
    }
    /* Zero the whole array so that equal configs are equal bytes. */
    memset(dst, 0, k->size);
    memcpy(dst, v, n);
    return 0;
  }
  case NW__CFG_ENUM: {
    int i;
    for (i = 0; k->choices[i] && strcmp(k->choices[i], v); i++)
      ;
    if (!k->choices[i])
      goto fail_choice;
    memcpy(dst, &i, sizeof i);
    return 0;
  }
  case NW__CFG_SIZE: {
    uint64_t x = 0;
    int rc = nw__cfg_parse_size(v, &x);
    if (rc == 1)
      goto fail_syntax;
    if (rc == 2)
      goto fail_range;
    memcpy(dst, &x, sizeof x);
    return 0;
  }
  }
  snprintf(why, whylen, "internal error: bad key type");
  return NW_EINTERNAL;
fail_syntax:
  snprintf(why, whylen, "%s is not valid; expected %s", shown, desc);
  return NW_ECONFIG;
fail_range:
  snprintf(why, whylen, "%s is out of range; expected %s", shown, desc);
  return NW_ECONFIG;
fail_choice:
  snprintf(why, whylen, "%s is not %s", shown, desc);
  return NW_ECONFIG;
}

/* ---- lookup ---- */

static const nw__cfg_key *nw__cfg_find(const char *section, const char *key) {
  for (size_t i = 0; i < NW__CFG_NKEYS; i++)
    if (!strcmp(nw__cfg_keys[i].section, section) &&
        !strcmp(nw__cfg_keys[i].key, key))
      return &nw__cfg_keys[i];
  return NULL;
}

/* Why section.key is not a key: names the known sections or keys. */
static void nw__cfg_unknown(const char *section, const char *key, char *why,
                            size_t whylen) {
  nw__cfg_out o = {why, whylen, 0};
  int known = 0;
  for (size_t i = 0; i < NW__CFG_NKEYS; i++)
    known |= !strcmp(nw__cfg_keys[i].section, section);
  if (known) {
    nw__cfg_printf(&o, "unknown key \"%.64s\" in [%s]; keys:", key, section);
    for (size_t i = 0; i < NW__CFG_NKEYS; i++)
      if (!strcmp(nw__cfg_keys[i].section, section))
        nw__cfg_printf(&o, " %s", nw__cfg_keys[i].key);
  } else {
    nw__cfg_printf(&o, "unknown section [%.64s]; sections:", section);
    for (size_t i = 0; i < NW__CFG_NKEYS; i++)
      if (i == 0 ||
          strcmp(nw__cfg_keys[i].section, nw__cfg_keys[i - 1].section))
        nw__cfg_printf(&o, " %s", nw__cfg_keys[i].section);
  }
}

/* ---- public API ---- */

void nw_config_defaults(nw_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  char why[256];
  /* The defaults are valid by construction; tests/test_config.c proves it.
   * A typo here would leave that key zero and fail those tests. */
  for (size_t i = 0; i < NW__CFG_NKEYS; i++)
    (void)nw__cfg_apply(cfg, &nw__cfg_keys[i], nw__cfg_keys[i].def, why,
                        sizeof why);
}

/* A hook key: url/format/events/secret_file in [alert] (the hook
 * "default") or any key in [alert.NAME]. 1: not a hook key; 0: set;
 * NW_ECONFIG: why says what is wrong. */
static int nw__cfg_hook_key(nw_config *cfg, const char *section,
                            const char *key, const char *value, int line,
                            char *why, size_t whylen) {
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
  return nw_alert_hook_set(&cfg->alert, name, key, value, line, why, whylen);
}

static int nw__cfg_ini_handler(void *user, const char *section, const char *key,
                               const char *value, int line, char *err,
                               size_t errlen) {
  /* the ini reader puts FILE:LINE in front of err */
  nw_config *cfg = user;
  char why[768];
  int hrc = nw__cfg_hook_key(cfg, section, key, value, line, why, sizeof why);
  if (hrc <= 0) {
    if (hrc < 0)
      snprintf(err, errlen, "%s.%s: %s", section, key, why);
    return hrc < 0 ? 1 : 0;
  }
  const nw__cfg_key *k = nw__cfg_find(section, key);
  if (!k) {
    nw__cfg_unknown(section, key, why, sizeof why);
    snprintf(err, errlen, "%s.%s: %s", section, key, why);
    return 1;
  }
  int rc = nw__cfg_apply(cfg, k, value, why, sizeof why);
  if (rc < 0) {
    snprintf(err, errlen, "%s.%s: %s", section, key, why);
    return rc == NW_ECONFIG ? 1 : rc;
  }
  return 0;
}

int nw_config_load(nw_config *cfg, const char *path, char *err, size_t errlen) {
  /* Parse over a copy; the caller's struct changes only when every line is
   * good, so a reload never half-applies. */
  nw_config tmp;
  memcpy(&tmp, cfg, sizeof tmp);
  int rc = nw_ini_parse_file(path, nw__cfg_ini_handler, &tmp, err, errlen);
  if (rc == 0) {
    memcpy(cfg, &tmp, sizeof tmp);
    return 0;
  }
  return rc == NW_EHOSTMEM || rc == NW_EINTERNAL ? rc : NW_ECONFIG;
}

static char *nw__cfg_trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  char *e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
    *--e = '\0';
  return s;
}

int nw_config_set(nw_config *cfg, const char *assignment, char *err,
                  size_t errlen) {
  char name[128], value[2 * NW_PATH_MAX], why[768];
  const char *eq = strchr(assignment, '=');
  size_t nlen = eq ? (size_t)(eq - assignment) : 0;
  if (!eq || nlen >= sizeof name) {
    snprintf(err, errlen, "--set %.200s: expected section.key=value",
             assignment);
    return NW_ECONFIG;
  }
  memcpy(name, assignment, nlen);
  name[nlen] = '\0';
  char *section = nw__cfg_trim(name);
  char *dot = strchr(section, '.');
  if (!dot || dot == section || !dot[1]) {
    snprintf(err, errlen, "--set %.200s: expected section.key=value",
             assignment);
    return NW_ECONFIG;
  }
  *dot = '\0';
  char *key = dot + 1;
  if (strlen(eq + 1) >= sizeof value) {
    snprintf(err, errlen, "--set %.200s...: value is too long", assignment);
    return NW_ECONFIG;
  }
  strcpy(value, eq + 1);
  char *v = nw__cfg_trim(value);
  size_t vlen = strlen(v);
  if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
    v[vlen - 1] = '\0';
    v++;
  }
  /* alert.NAME.key: the hook NAME */
  char *hook_dot = strrchr(key, '.');
  if (!strcmp(section, "alert") && hook_dot) {
    *hook_dot = '\0';
    char hsec[160];
    snprintf(hsec, sizeof hsec, "alert.%s", key);
    key = hook_dot + 1;
    section = hsec;
    int hrc = nw__cfg_hook_key(cfg, section, key, v, 0, why, sizeof why);
    if (hrc < 0)
      snprintf(err, errlen, "--set %s.%s: %s", section, key, why);
    return hrc < 0 ? NW_ECONFIG : 0;
  }
  int hrc = nw__cfg_hook_key(cfg, section, key, v, 0, why, sizeof why);
  if (hrc <= 0) {
    /* the value may be a URL with a token: the message names the key */
    if (hrc < 0)
      snprintf(err, errlen, "--set %s.%s: %s", section, key, why);
    return hrc < 0 ? NW_ECONFIG : 0;
  }
  const nw__cfg_key *k = nw__cfg_find(section, key);
  if (!k) {
    nw__cfg_unknown(section, key, why, sizeof why);
    snprintf(err, errlen, "--set %.200s: %s", assignment, why);
    return NW_ECONFIG;
  }
  int rc = nw__cfg_apply(cfg, k, v, why, sizeof why);
  if (rc < 0)
    snprintf(err, errlen, "--set %.200s: %s", assignment, why);
  return rc;
}

/* Validation collects every problem, one per line, like the ini reader. */
static void nw__cfg_problem(nw__cfg_out *o, int *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void nw__cfg_problem(nw__cfg_out *o, int *n, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  nw__cfg_printf(o, "%s%s", *n ? "\n" : "", line);
  (*n)++;
}

int nw_config_validate(const nw_config *cfg, char *err, size_t errlen) {
  nw__cfg_out o = {err, errlen, 0};
  int n = 0;
  if (err && errlen)
    err[0] = '\0';
  /* Per-key ranges again: a config can be edited in code (recovery changes
   * the micro-batch) without passing through the parser. */
  for (size_t i = 0; i < NW__CFG_NKEYS; i++) {
    const nw__cfg_key *k = &nw__cfg_keys[i];
    const char *p = (const char *)cfg + k->offset;
    char desc[192];
    nw__cfg_describe(k, desc, sizeof desc);
    int iv;
    double dv;
    switch (k->type) {
    case NW__CFG_INT:
      memcpy(&iv, p, sizeof iv);
      if (!nw__cfg_in_range(k, iv))
        nw__cfg_problem(&o, &n, "%s.%s (%d) is out of range; expected %s",
                        k->section, k->key, iv, desc);
      break;
    case NW__CFG_DOUBLE:
      memcpy(&dv, p, sizeof dv);
      if (!isfinite(dv) || !nw__cfg_in_range(k, dv))
        nw__cfg_problem(&o, &n, "%s.%s (%g) is out of range; expected %s",
                        k->section, k->key, dv, desc);
      break;
    case NW__CFG_BOOL:
    case NW__CFG_ENUM:
      memcpy(&iv, p, sizeof iv);
      if (iv < 0 || (k->type == NW__CFG_BOOL && iv > 1) ||
          (k->type == NW__CFG_ENUM && iv >= nw__cfg_nchoices(k->choices)))
        nw__cfg_problem(&o, &n, "%s.%s (%d) is not %s", k->section, k->key, iv,
                        desc);
      break;
    case NW__CFG_STRING:
      if (!memchr(p, '\0', k->size))
        nw__cfg_problem(&o, &n, "%s.%s is not NUL-terminated", k->section,
                        k->key);
      else if ((k->flags & NW__CFG_NONEMPTY) && !*p)
        nw__cfg_problem(&o, &n, "%s.%s must not be empty", k->section, k->key);
      else if (k->choices) {
        int j;
        for (j = 0; k->choices[j] && strcmp(k->choices[j], p); j++)
          ;
        if (!k->choices[j])
          nw__cfg_problem(&o, &n, "%s.%s (\"%.64s\") is not %s", k->section,
                          k->key, p, desc);
      }
      break;
    case NW__CFG_U64:
    case NW__CFG_SIZE:
      break;
    }
  }
  if (n)
    return NW_ECONFIG; /* the cross-checks below assume sane ranges */

  const nw_model_config *m = &cfg->model;
  if (m->n_embd % m->n_head)
    nw__cfg_problem(&o, &n,
                    "model.n_embd (%d) is not divisible by model.n_head (%d)",
                    m->n_embd, m->n_head);
  const nw_batch_config *b = &cfg->batch;
  long long per_step = (long long)b->micro * (b->world > 0 ? b->world : 1);
  if (b->effective % per_step)
    nw__cfg_problem(&o, &n,
                    "batch.effective (%d) is not divisible by batch.micro (%d) "
                    "x world.size (%d)",
                    b->effective, b->micro, b->world > 0 ? b->world : 1);
  const nw_train_config *t = &cfg->train;
  if (t->min_lr > t->lr)
    nw__cfg_problem(&o, &n, "train.min_lr (%g) is greater than train.lr (%g)",
                    t->min_lr, t->lr);
  const nw_data_config *d = &cfg->data;
  if (d->max_len > m->max_seq_len)
    nw__cfg_problem(&o, &n,
                    "data.max_len (%d) is greater than model.max_seq_len (%d)",
                    d->max_len, m->max_seq_len);
  const char *src = nw__cfg_sources[d->source];
  if (d->source != NW_DATA_SYNTHETIC && !d->path[0])
    nw__cfg_problem(&o, &n, "data.path is required when data.source = %s", src);
  if (d->source != NW_DATA_SHARDS && m->vocab_size < 256)
    nw__cfg_problem(&o, &n,
                    "model.vocab_size (%d) must be at least 256 for "
                    "data.source = %s (byte tokens)",
                    m->vocab_size, src);
  if (d->source == NW_DATA_SYNTHETIC &&
      d->long_max_digits < d->short_max_digits)
    nw__cfg_problem(&o, &n,
                    "data.long_max_digits (%d) is less than "
                    "data.short_max_digits (%d)",
                    d->long_max_digits, d->short_max_digits);
  const nw_eval_config *e = &cfg->eval;
  if (e->every && e->generate && e->max_new_tokens >= m->max_seq_len)
    nw__cfg_problem(&o, &n,
                    "eval.max_new_tokens (%d) must be less than "
                    "model.max_seq_len (%d) to leave room for the prompt",
                    e->max_new_tokens, m->max_seq_len);
  char alert_err[256];
  if (nw_alert_validate(&cfg->alert, alert_err, sizeof alert_err) < 0)
    nw__cfg_problem(&o, &n, "%s", alert_err);
  for (const char *p = cfg->device.name; *p; p++) {
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.')) {
      nw__cfg_problem(&o, &n,
                      "device.name (\"%.64s\") may hold only letters, digits, "
                      "'_', '-' and '.' (it names a shared-memory segment)",
                      cfg->device.name);
      break;
    }
  }
  return n ? NW_ECONFIG : 0;
}

/* The hooks after the table's [alert] keys (the last section). A URL is
 * written as a comment with its host only: a dump goes into checkpoints and
 * logs, and Slack and Discord keep the webhook's token in the path. */
static void nw__cfg_dump_hooks(const nw_alert_config *a, nw__cfg_out *o) {
  for (int i = 0; i < a->n_hooks; i++) {
    const nw_alert_hook *h = &a->hooks[i];
    char host[256];
    nw_alert_url_host(h->url, host, sizeof host);
    if (strcmp(h->name, "default"))
      nw__cfg_printf(o, "\n[alert.%s]\n", h->name);
    nw__cfg_printf(o, "# url = %s://%s/... (only the host is shown)\n",
                   strncasecmp(h->url, "https:", 6) ? "http" : "https", host);
    nw__cfg_printf(o, "format = %s\n", nw_alert_format_name(h->format));
    nw__cfg_printf(o, "events = recovery");
    static const char *const names[] = {"give-up", "finish", "start", "stop"};
    for (int b = 0; b < 4; b++)
      if (h->events & (NW_ALERT_EV_GIVE_UP << b))
        nw__cfg_printf(o, ", %s", names[b]);
    nw__cfg_printf(o, "\n");
    if (h->secret_file[0])
      nw__cfg_printf(o, "secret_file = \"%s\"\n", h->secret_file);
  }
}

size_t nw_config_dump(const nw_config *cfg, char *buf, size_t buflen) {
  nw__cfg_out o = {buf, buflen, 0};
  if (buf && buflen)
    buf[0] = '\0';
  for (size_t i = 0; i < NW__CFG_NKEYS; i++) {
    const nw__cfg_key *k = &nw__cfg_keys[i];
    const char *p = (const char *)cfg + k->offset;
    if (i == 0 || strcmp(k->section, nw__cfg_keys[i - 1].section))
      nw__cfg_printf(&o, "%s[%s]\n", i ? "\n" : "", k->section);
    nw__cfg_printf(&o, "%s = ", k->key);
    char num[64];
    int iv;
    uint64_t uv;
    double dv;
    switch (k->type) {
    case NW__CFG_INT:
      memcpy(&iv, p, sizeof iv);
      nw__cfg_printf(&o, "%d\n", iv);
      break;
    case NW__CFG_U64:
      memcpy(&uv, p, sizeof uv);
      nw__cfg_printf(&o, "%" PRIu64 "\n", uv);
      break;
    case NW__CFG_DOUBLE:
      memcpy(&dv, p, sizeof dv);
      nw__cfg_fmt_double(dv, num, sizeof num);
      nw__cfg_printf(&o, "%s\n", num);
      break;
    case NW__CFG_BOOL:
      memcpy(&iv, p, sizeof iv);
      nw__cfg_printf(&o, "%s\n", iv ? "true" : "false");
      break;
    case NW__CFG_ENUM:
      memcpy(&iv, p, sizeof iv);
      if (iv >= 0 && iv < nw__cfg_nchoices(k->choices))
        nw__cfg_printf(&o, "%s\n", k->choices[iv]);
      else
        nw__cfg_printf(&o, "%d\n", iv);
      break;
    case NW__CFG_SIZE:
      memcpy(&uv, p, sizeof uv);
      nw__cfg_fmt_size(uv, num, sizeof num);
      nw__cfg_printf(&o, "%s\n", num);
      break;
    case NW__CFG_STRING:
      /* Always quoted, so that '#', ';' and edge spaces survive. */
      nw__cfg_printf(&o, "\"");
      for (size_t j = 0; j < k->size && p[j]; j++)
        nw__cfg_printf(&o, "%s%c", p[j] == '"' || p[j] == '\\' ? "\\" : "",
                       p[j]);
      nw__cfg_printf(&o, "\"\n");
      break;
    }
  }
  nw__cfg_dump_hooks(&cfg->alert, &o);
  return o.len;
}
