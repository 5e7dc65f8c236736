/* test_config.c — the config table: defaults, the shipped default.conf,
 * dump/load round trips, one test per error class with its file:line and
 * key, --set, sizes, cross-key checks, and docs/config.md against the
 * table. The engine under it (INI reader, key table, escaping, doubles) is
 * test_keytable.c's. */
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <unistd.h>

#include "base/config.h"
#include "base/error.h"
#include "base/ini.h"
#include "base/keytable.h"
#include "base/strbuf.h"
#include "testutil.h"

#ifndef NW_SOURCE_DIR
#error "NW_SOURCE_DIR must name the source tree"
#endif

/* ---- helpers ---- */

/* One temp dir for the whole binary, emptied and removed at the end. */
static char g_dir[512];

static int group_setup(void **state) {
  (void)state;
  nw_test_tmpdir(g_dir, sizeof g_dir, "config");
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  return nw_test_rmdir_flat(g_dir);
}

/* Writes text to the temp dir as name; returns the path in path. */
static void write_file(const char *name, const char *text, char *path,
                       size_t len) {
  nw_test_write_text(g_dir, name, text, path, len);
}

static void assert_contains(const char *hay, const char *needle) {
  if (!strstr(hay, needle))
    fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

static int count_lines(const char *s) {
  if (!*s)
    return 0;
  int n = 1;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* Every key set away from its default; strings carry characters that the
 * dump must quote or escape. */
static const char all_keys_conf[] =
    "[model]\n"
    "n_layer = 6\n"
    "n_head = 8\n"
    "n_embd = 384\n"
    "vocab_size = 50257\n"
    "max_seq_len = 1024\n"
    "[data]\n"
    "source = shards\n"
    "path = \"/data/fineweb/train_*.bin # not a comment\"\n"
    "val_path = \"  /data/q\\\"uote\\\\d ; v.bin  \"\n"
    "val_fraction = 0.125\n"
    "seed = 18446744073709551615\n"
    "short_max_digits = 5\n"
    "long_max_digits = 40\n"
    "long_fraction = 0.1\n"
    "max_len = 80\n"

    "[batch]\n"
    "effective = 512\n"
    "micro = 16\n"
    "[world]\n"
    "size = 4\n"
    "[train]\n"
    "steps = 5000\n"
    "lr = 6e-4\n"
    "min_lr = 0.00006\n"
    "warmup_steps = 700\n"
    "weight_decay = 0.01\n"
    "beta1 = 0.85\n"
    "beta2 = 0.999\n"
    "eps = 1e-10\n"
    "grad_clip = 0.3333333333333333\n"
    "seed = 7\n"
    "threads = 12\n"
    "log_every = 5\n"
    "[eval]\n"
    "every = 250\n"
    "batches = 20\n"
    "batch = 16\n"
    "generate = 0\n"
    "max_new_tokens = 64\n"
    "release_cache = yes\n"
    "[checkpoint]\n"
    "every = 25\n"
    "every_seconds = 1800\n"
    "keep_last = 7\n"
    "max_failures = 5\n"
    "verify_timeout = 12.5\n"
    "[run]\n"
    "dir = /var/lib/nightwatch/run-1\n"
    "id = overnight-7\n"
    "[device]\n"
    "type = auto\n"
    "name = gpu-box_7\n"
    "memory = 80GiB\n"
    "precision = bf16\n"
    "[supervisor]\n"
    "hang_timeout = 2.5\n"
    "kill_grace = 7\n"
    "[alert]\n"
    "connect_timeout = 1.5\n"
    "timeout = 4\n"
    "attempts = 3\n"
    "max_backoff = 0.25\n"
    "queue = 8\n"
    "drain_timeout = 2\n";

static char *dump_alloc(const nw_config *cfg) {
  size_t need = nw_config_dump(cfg, NULL, 0);
  char *buf = malloc(need + 1);
  assert_non_null(buf);
  assert_int_equal(nw_config_dump(cfg, buf, need + 1), need);
  assert_int_equal(strlen(buf), need);
  return buf;
}

/* ---- config: defaults, default.conf, round trip ---- */

static void test_defaults_validate(void **state) {
  (void)state;
  nw_config c;
  char err[1024] = "x";
  nw_config_defaults(&c);
  assert_int_equal(nw_config_validate(&c, err, sizeof err), 0);
  assert_string_equal(err, "");
  assert_int_equal(c.model.n_layer, 3);
  assert_int_equal(c.model.max_seq_len, 96);
  assert_int_equal(c.data.source, NW_DATA_SYNTHETIC);
  assert_string_equal(c.data.path, "");
  assert_true(c.data.val_fraction == 0.05);
  assert_int_equal(c.data.seed, 1337);
  assert_int_equal(c.batch.effective, 32);
  assert_int_equal(nw_config_accum(&c.batch), 4);
  assert_true(c.train.lr == 3e-3);
  assert_true(c.train.min_lr == 3e-4);
  assert_true(c.train.eps == 1e-8);
  assert_true(c.train.grad_clip == 1.0);
  assert_int_equal(c.train.seed, 42);
  assert_int_equal(c.eval.max_new_tokens, 48);
  assert_int_equal(c.eval.release_cache, 0);
  assert_string_equal(c.run.dir, "runs/default");
  assert_string_equal(c.device.type, "cpu");
  assert_string_equal(c.device.name, "nw0");
  assert_int_equal(c.device.memory, 0);
}

static void test_default_conf_equals_defaults(void **state) {
  (void)state;
  char path[1024], err[4096];
  nw_config want, got;
  nw_config_defaults(&want);
  /* Start from every key changed, so a key missing from default.conf would
   * keep a non-default value and fail the comparison. */
  write_file("all.conf", all_keys_conf, path, sizeof path);
  nw_config_defaults(&got);
  assert_int_equal(nw_config_load(&got, path, err, sizeof err), 0);
  assert_memory_not_equal(&got, &want, sizeof want);
  assert_int_equal(nw_config_load(&got, NW_SOURCE_DIR "/configs/default.conf",
                                  err, sizeof err),
                   0);
  assert_memory_equal(&got, &want, sizeof want);
  char *a = dump_alloc(&got), *b = dump_alloc(&want);
  assert_string_equal(a, b);
  free(a);
  free(b);
}

static void test_every_key_round_trips(void **state) {
  (void)state;
  char path[1024], path2[1024], err[4096];
  nw_config a, b, d;
  nw_config_defaults(&a);
  nw_config_defaults(&d);
  write_file("all.conf", all_keys_conf, path, sizeof path);
  assert_int_equal(nw_config_load(&a, path, err, sizeof err), 0);
  assert_int_equal(nw_config_validate(&a, err, sizeof err), 0);
  assert_int_equal(a.data.source, NW_DATA_SHARDS);
  assert_string_equal(a.data.path, "/data/fineweb/train_*.bin # not a comment");
  assert_string_equal(a.data.val_path, "  /data/q\"uote\\d ; v.bin  ");
  assert_int_equal(a.data.seed, UINT64_MAX);
  assert_true(a.train.lr == 6e-4);
  assert_true(a.train.grad_clip == 0.3333333333333333);
  assert_int_equal(a.eval.release_cache, 1);
  assert_string_equal(a.device.type, "auto");
  assert_int_equal(a.device.memory, 80ull << 30);

  char *text = dump_alloc(&a);
  char *deftext = dump_alloc(&d);
  /* The dump names every key, and the file above changed every one. */
  assert_int_equal(count_lines(text), count_lines(deftext));
  char *sa, *sd, *la = strtok_r(text, "\n", &sa);
  char *ld = strtok_r(deftext, "\n", &sd);
  int keys = 0;
  for (; la && ld;
       la = strtok_r(NULL, "\n", &sa), ld = strtok_r(NULL, "\n", &sd)) {
    if (la[0] == '[')
      continue;
    keys++;
    if (!strcmp(la, ld))
      fail_msg("all_keys_conf leaves a key at its default: %s", la);
  }
  assert_int_equal(keys, 54);
  free(text);
  free(deftext);

  text = dump_alloc(&a);
  write_file("dump.conf", text, path2, sizeof path2);
  nw_config_defaults(&b);
  assert_int_equal(nw_config_load(&b, path2, err, sizeof err), 0);
  assert_memory_equal(&a, &b, sizeof a);
  char *text2 = dump_alloc(&b);
  assert_string_equal(text, text2);
  assert_contains(text, "memory = 80GiB\n");
  assert_contains(text, "lr = 0.0006\n");
  free(text);
  free(text2);
}

/* ---- [alert] hooks ---- */

static const char hooks_conf[] =
    "[alert]\n"
    "url = https://hooks.slack.com/services/T000/B000/tok-SECRET123\n"
    "format = slack\n"
    "events = give-up, finish start\n"
    "secret_file = /etc/nightwatch/hook.secret\n"
    "attempts = 2\n"
    "[alert.pager]\n"
    "url = http://user:pw@127.0.0.1:8080/hook?token=tok-SECRET456\n";

static void test_alert_hooks(void **state) {
  (void)state;
  char path[1024], err[4096];
  nw_config c;
  nw_config_defaults(&c);
  assert_int_equal(c.alert.n_hooks, 0);
  write_file("hooks.conf", hooks_conf, path, sizeof path);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), 0);
  assert_int_equal(nw_config_validate(&c, err, sizeof err), 0);
  assert_int_equal(c.alert.n_hooks, 2);
  assert_int_equal(c.alert.attempts, 2);
  const nw_alert_hook *h = &c.alert.hooks[0];
  assert_string_equal(h->name, "default");
  assert_int_equal(h->format, NW_ALERT_SLACK);
  assert_int_equal(h->events, NW_ALERT_EV_RECOVERY | NW_ALERT_EV_GIVE_UP |
                                  NW_ALERT_EV_FINISH | NW_ALERT_EV_START);
  assert_string_equal(h->secret_file, "/etc/nightwatch/hook.secret");
  assert_int_equal(h->line, 2);
  h = &c.alert.hooks[1];
  assert_string_equal(h->name, "pager");
  assert_int_equal(h->format, NW_ALERT_JSON);
  assert_int_equal(h->events, NW_ALERT_EV_DEFAULT);
  char host[128];
  nw_alert_url_host(h->url, host, sizeof host);
  assert_string_equal(host, "127.0.0.1:8080"); /* no user:pw */
  assert_int_equal(nw_alert_event_bit("alert"), NW_ALERT_EV_RECOVERY);
  assert_int_equal(nw_alert_event_bit("config-error"), NW_ALERT_EV_GIVE_UP);
  assert_int_equal(nw_alert_event_bit("resumed"), 0);

  /* The dump (checkpoints, logs) keeps hosts and never the token. */
  char *text = dump_alloc(&c);
  assert_contains(text, "# url = https://hooks.slack.com/... ");
  assert_contains(text, "[alert.pager]\n");
  assert_contains(text, "events = recovery, give-up, finish, start\n");
  assert_null(strstr(text, "SECRET"));
  assert_null(strstr(text, "pw@"));
  free(text);

  /* --set: the default hook and a named one */
  assert_int_equal(
      nw_config_set(&c, "alert.pager.format=discord", err, sizeof err), 0);
  assert_int_equal(c.alert.hooks[1].format, NW_ALERT_DISCORD);
  assert_int_equal(
      nw_config_set(&c, "alert.ops.url=https://example.org/x", err, sizeof err),
      0);
  assert_int_equal(c.alert.n_hooks, 3);
  assert_string_equal(c.alert.hooks[2].name, "ops");
  assert_int_equal(nw_config_set(&c, "alert.format=json", err, sizeof err), 0);
  assert_int_equal(c.alert.hooks[0].format, NW_ALERT_JSON);
}

static void test_alert_hook_errors(void **state) {
  (void)state;
  char path[1024], err[4096];
  nw_config c, before;
  nw_config_defaults(&c);
  memcpy(&before, &c, sizeof c);
  /* A bad URL is named by its key and line, and never shown. */
  write_file("bad1.conf",
             "[alert]\nurl = ftp://hooks.example.org/tok-SECRET123\n", path,
             sizeof path);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "bad1.conf:2: alert.url: must start with https://");
  assert_null(strstr(err, "SECRET"));
  assert_memory_equal(&c, &before, sizeof c);
  write_file("bad2.conf",
             "[alert.x]\nurl = https://h/tok-SECRET123 x\nevents = "
             "recovery, pager\nformat = teams\nretries = 3\n",
             path, sizeof path);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "bad2.conf:2: alert.x.url: contains a space");
  assert_contains(err, "bad2.conf:3: alert.x.events: \"pager\" is not an "
                       "event");
  assert_contains(err, "bad2.conf:4: alert.x.format: \"teams\" is not json, "
                       "slack or discord");
  assert_contains(err, "bad2.conf:5: alert.x.retries: unknown key");
  assert_null(strstr(err, "SECRET"));
  write_file("bad3.conf", "[alert.default]\nurl = https://h/\n", path,
             sizeof path);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "the default hook lives in [alert]");
  /* a hook without a url: the validator names its section and line */
  write_file("bad4.conf", "[run]\ndir = x\n[alert.pager]\nformat = slack\n",
             path, sizeof path);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), 0);
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "[alert.pager] (line 4) has no url");
  /* at most NW_ALERT_MAX_HOOKS */
  nw_config_defaults(&c);
  char set[128];
  for (int i = 0; i < NW_ALERT_MAX_HOOKS; i++) {
    snprintf(set, sizeof set, "alert.h%d.url=https://example.org/%d", i, i);
    assert_int_equal(nw_config_set(&c, set, err, sizeof err), 0);
  }
  assert_int_equal(
      nw_config_set(&c, "alert.h9.url=https://example.org/9", err, sizeof err),
      NW_ECONFIG);
  assert_contains(err, "more than 4 hooks");
  assert_int_equal(
      nw_config_set(&c, "alert.url=https://h/tok-SECRET123 z", err, sizeof err),
      NW_ECONFIG);
  assert_contains(err, "--set alert.url: contains a space");
  assert_null(strstr(err, "SECRET"));
}

static void test_dump_reports_needed_length(void **state) {
  (void)state;
  nw_config c;
  nw_config_defaults(&c);
  char small[16];
  size_t need = nw_config_dump(&c, small, sizeof small);
  assert_true(need > sizeof small);
  assert_int_equal(strlen(small), sizeof small - 1);
  assert_int_equal(nw_config_dump(&c, NULL, 0), need);
}

/* ---- config: one test per error class ---- */

typedef struct {
  const char *text; /* the file */
  int line;         /* where the error is */
  const char *key;  /* section.key named */
  const char *why;  /* part of the reason */
} error_case;

static const error_case error_cases[] = {
    {"[model]\nn_layer = 3\n[modle]\nn_head = 2\n", 4, "modle.n_head",
     "unknown section [modle]"},
    {"[model]\n\nn_layers = 3\n", 3, "model.n_layers", "n_layer n_head"},
    {"[model]\nn_layer = 12x\n", 2, "model.n_layer", "\"12x\" is not valid"},
    {"[model]\nn_layer = \n", 2, "model.n_layer", "an integer in [1, 256]"},
    {"[model]\nn_embd = 99999999999999999999\n", 2, "model.n_embd",
     "out of range"},
    {"[model]\n# c\nn_layer = 0\n", 3, "model.n_layer",
     "\"0\" is out of range; expected an integer in [1, 256]"},
    {"[model]\nn_layer = 257\n", 2, "model.n_layer", "[1, 256]"},
    {"[data]\nsource = parquet\n", 2, "data.source",
     "\"parquet\" is not one of synthetic, text or shards"},
    {"[data]\nseed = -1\n", 2, "data.seed", "\"-1\" is not valid"},
    {"[data]\nval_fraction = 0.6\n", 2, "data.val_fraction", "[0, 0.5]"},
    {"[train]\nbeta1 = 1\n", 2, "train.beta1", "[0, 1)"},
    {"[train]\nlr = 1e999\n", 2, "train.lr", "out of range"},
    {"[train]\nlr = nan\n", 2, "train.lr", "out of range"},
    {"[train]\nlr = 0.1.2\n", 2, "train.lr", "\"0.1.2\" is not valid"},
    {"[eval]\nrelease_cache = maybe\n", 2, "eval.release_cache",
     "\"maybe\" is not valid; expected true, false"},
    {"[eval]\nevery = -1\n", 2, "eval.every", "an integer >= 0"},
    {"[device]\ntype = gpu\n", 2, "device.type", "one of cpu, cuda or auto"},
    {"[device]\nname = 0123456789012345678901234567890123456789"
     "0123456789012345678901234\n",
     2, "device.name", "the limit is 63"},
    {"[run]\ndir = \"\"\n", 2, "run.dir", "must not be empty"},
    {"[device]\nmemory = 12XB\n", 2, "device.memory", "\"12XB\" is not valid"},
    {"[model]\nn_layer = 2\nn_layer = 3\n", 3, "model.n_layer",
     "duplicate key (first set on line 2)"},
};

static void test_error_classes_name_file_line_key(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof error_cases / sizeof error_cases[0]; i++) {
    const error_case *ec = &error_cases[i];
    char path[1024], err[2048], want[1200];
    write_file("bad.conf", ec->text, path, sizeof path);
    nw_config c, before;
    nw_config_defaults(&c);
    c.train.steps = 12345; /* not a default: the load must not reset it */
    memcpy(&before, &c, sizeof c);
    int rc = nw_config_load(&c, path, err, sizeof err);
    if (rc != NW_ECONFIG)
      fail_msg("case %zu: rc %d for:\n%s", i, rc, ec->text);
    snprintf(want, sizeof want, "%s:%d: %s: ", path, ec->line, ec->key);
    assert_contains(err, want);
    assert_contains(err, ec->why);
    assert_int_equal(count_lines(err), 1);
    assert_memory_equal(&c, &before, sizeof c);
  }
}

static void test_failed_load_leaves_struct_untouched(void **state) {
  (void)state;
  char path[1024], err[2048];
  write_file("partial.conf",
             "[model]\nn_layer = 7\nn_head = 2\n[train]\nlr = 0.5\n"
             "[device]\nname = other\nmemory = lots\n",
             path, sizeof path);
  nw_config c, before;
  nw_config_defaults(&c);
  memcpy(&before, &c, sizeof c);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), NW_ECONFIG);
  assert_memory_equal(&c, &before, sizeof c);
  assert_contains(err, ":8: device.memory: \"lots\"");
}

static void test_missing_file(void **state) {
  (void)state;
  char err[1024];
  nw_config c, before;
  nw_config_defaults(&c);
  memcpy(&before, &c, sizeof c);
  assert_int_equal(nw_config_load(&c, "/nonexistent/nw.conf", err, sizeof err),
                   NW_ECONFIG);
  assert_contains(err, "/nonexistent/nw.conf: ");
  assert_memory_equal(&c, &before, sizeof c);
}

static void test_all_errors_collected(void **state) {
  (void)state;
  char path[1024], err[4096], want[1200];
  write_file("three.conf",
             "[model]\n"
             "n_layer = zero\n" /* 2 */
             "n_head = 4\n"
             "[train]\n"
             "lr = -1\n" /* 5 */
             "steps = 10\n"
             "[device]\n"
             "colour = blue\n", /* 8 */
             path, sizeof path);
  nw_config c;
  nw_config_defaults(&c);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), NW_ECONFIG);
  assert_int_equal(count_lines(err), 3);
  snprintf(want, sizeof want, "%s:2: model.n_layer: ", path);
  assert_contains(err, want);
  snprintf(want, sizeof want, "%s:5: train.lr: ", path);
  assert_contains(err, want);
  snprintf(want, sizeof want, "%s:8: device.colour: ", path);
  assert_contains(err, want);
  assert_int_equal(c.train.steps, 2000);
}

/* ---- config: --set ---- */

static void test_set(void **state) {
  (void)state;
  nw_config c, before;
  char err[2048];
  nw_config_defaults(&c);
  assert_int_equal(nw_config_set(&c, "batch.micro=4", err, sizeof err), 0);
  assert_int_equal(c.batch.micro, 4);
  assert_int_equal(nw_config_accum(&c.batch), 8);
  assert_int_equal(nw_config_set(&c, " train.lr = 1e-3 ", err, sizeof err), 0);
  assert_true(c.train.lr == 1e-3);
  assert_int_equal(nw_config_set(&c, "data.path=a=b.txt", err, sizeof err), 0);
  assert_string_equal(c.data.path, "a=b.txt");
  assert_int_equal(nw_config_set(&c, "run.dir=\"runs/x y\"", err, sizeof err),
                   0);
  assert_string_equal(c.run.dir, "runs/x y");
  assert_int_equal(
      nw_config_set(&c, "eval.release_cache=TRUE", err, sizeof err), 0);
  assert_int_equal(c.eval.release_cache, 1);
  assert_int_equal(nw_config_set(&c, "device.memory=2GiB", err, sizeof err), 0);
  assert_int_equal(c.device.memory, 2ull << 30);

  static const struct {
    const char *arg, *why;
  } bad[] = {
      {"model.n_layer=0", "out of range; expected an integer in [1, 256]"},
      {"model.n_layer", "expected section.key=value"},
      {"n_layer=3", "expected section.key=value"},
      {"model.=3", "expected section.key=value"},
      {"model.layers=3", "unknown key \"layers\" in [model]"},
      {"optim.lr=3", "unknown section [optim]"},
      {"data.source=csv", "not one of synthetic, text or shards"},
      {"data.path=a\tb", "control character"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char want[256];
    memcpy(&before, &c, sizeof c);
    assert_int_equal(nw_config_set(&c, bad[i].arg, err, sizeof err),
                     NW_ECONFIG);
    snprintf(want, sizeof want, "--set %s: ", bad[i].arg);
    assert_contains(err, want);
    assert_contains(err, bad[i].why);
    assert_memory_equal(&c, &before, sizeof c);
  }
}

static void test_sizes(void **state) {
  (void)state;
  static const struct {
    const char *text;
    uint64_t bytes;
  } good[] = {
      {"0", 0},
      {"4096", 4096},
      {"512MiB", 536870912ull},
      {"1GB", 1000000000ull},
      {"1 KiB", 1024},
      {"3KB", 3000},
      {"7B", 7},
      {"2TiB", 2ull << 40},
      {"16777215TiB", 16777215ull << 40},
  };
  nw_config c;
  char arg[128], err[1024];
  nw_config_defaults(&c);
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    snprintf(arg, sizeof arg, "device.memory=%s", good[i].text);
    assert_int_equal(nw_config_set(&c, arg, err, sizeof err), 0);
    assert_int_equal(c.device.memory, good[i].bytes);
  }
  static const char *const bad[] = {
      "12XB",    "-1",   "MiB",         "1.5GiB",
      "1 GiB x", "1mib", "16777216TiB", "18446744073709551616"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(arg, sizeof arg, "device.memory=%s", bad[i]);
    c.device.memory = 99;
    assert_int_equal(nw_config_set(&c, arg, err, sizeof err), NW_ECONFIG);
    assert_contains(err, bad[i]);
    assert_int_equal(c.device.memory, 99);
  }
  /* The dump writes the largest exact binary unit. */
  c.device.memory = 536870912ull;
  char buf[8192];
  nw_config_dump(&c, buf, sizeof buf);
  assert_contains(buf, "memory = 512MiB\n");
  c.device.memory = 1000000000ull;
  nw_config_dump(&c, buf, sizeof buf);
  assert_contains(buf, "memory = 1000000000\n");
}

/* ---- config: cross-key checks ---- */

static void test_validate_cross_checks(void **state) {
  (void)state;
  nw_config c;
  char err[4096];
  nw_config_defaults(&c);
  c.batch.effective = 30;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_string_equal(err, "batch.effective (30) is not divisible by "
                           "batch.micro (8) x world.size (1)");

  nw_config_defaults(&c);
  c.model.n_embd = 130;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "model.n_embd (130) is not divisible by model.n_head");

  nw_config_defaults(&c);
  c.train.min_lr = 0.01;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "train.min_lr");
  assert_contains(err, "train.lr");

  nw_config_defaults(&c);
  c.data.source = NW_DATA_TEXT;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "data.path is required when data.source = text");
  strcpy(c.data.path, "corpus.txt");
  assert_int_equal(nw_config_validate(&c, err, sizeof err), 0);
  c.model.vocab_size = 100;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "model.vocab_size (100)");
  c.data.source = NW_DATA_SHARDS;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), 0);

  /* Values edited in code are range-checked too. */
  nw_config_defaults(&c);
  c.batch.micro = 0;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "batch.micro (0) is out of range");

  /* Several problems: all of them, one per line. */
  nw_config_defaults(&c);
  c.batch.effective = 30;
  c.model.n_embd = 130;
  c.eval.max_new_tokens = 96;
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_int_equal(count_lines(err), 3);
  assert_contains(err, "eval.max_new_tokens (96)");

  nw_config_defaults(&c);
  strcpy(c.device.name, "a/b");
  assert_int_equal(nw_config_validate(&c, err, sizeof err), NW_ECONFIG);
  assert_contains(err, "device.name");
}

/* docs/config.md has a row per key: name, type, default, and what it
 * accepts (the table's words, maybe followed by more). */
static void test_docs_list_every_key(void **state) {
  (void)state;
  char *doc = nw_test_slurp(NW_SOURCE_DIR "/docs/config.md", NULL);
  assert_non_null(doc);
  const nw_keytable *t = nw_config_keytable();
  char bad[600] = ""; /* the first problem; doc is freed before failing */
  for (size_t i = 0; i < t->n_keys && !bad[0]; i++) {
    const nw_kt_key *k = &t->keys[i];
    char want[512], desc[256];
    nw_strbuf d = nw_strbuf_init(desc, sizeof desc);
    nw_kt_describe(k, &d);
    const char *q = k->type == NW_KT_STRING ? "\"" : "";
    snprintf(want, sizeof want, "\n| `%s.%s` | %s | `%s%s%s` | %s", k->section,
             k->key, nw_kt_type_name(k), q, k->def, q, desc);
    if (!strstr(doc, want))
      snprintf(bad, sizeof bad, "docs/config.md lacks the row\n%s", want + 1);
  }
  /* and no row for a key that is gone */
  int rows = 0;
  for (const char *p = strstr(doc, "\n| `"); p && !bad[0];
       p = strstr(p + 1, "\n| `")) {
    char name[128] = "", sec[64], key[64];
    if (sscanf(p, "\n| `%127[a-z0-9_.]`", name) != 1 || !strchr(name, '.') ||
        sscanf(name, "%63[a-z0-9_].%63[a-z0-9_]", sec, key) != 2)
      continue;
    rows++;
    if (!nw_kt_find(t, sec, key))
      snprintf(bad, sizeof bad, "docs/config.md documents %s, no key", name);
  }
  free(doc);
  if (bad[0])
    fail_msg("%s", bad);
  assert_int_equal(rows, (int)t->n_keys);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_validate),
      cmocka_unit_test(test_default_conf_equals_defaults),
      cmocka_unit_test(test_every_key_round_trips),
      cmocka_unit_test(test_dump_reports_needed_length),
      cmocka_unit_test(test_error_classes_name_file_line_key),
      cmocka_unit_test(test_failed_load_leaves_struct_untouched),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_all_errors_collected),
      cmocka_unit_test(test_set),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_validate_cross_checks),
      cmocka_unit_test(test_alert_hooks),
      cmocka_unit_test(test_alert_hook_errors),
      cmocka_unit_test(test_docs_list_every_key),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
