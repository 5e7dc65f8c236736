/* test_config.c — the INI reader, the key-table engine and the config table:
 * defaults, the shipped default.conf, dump/load round trips, one test per
 * error class with its file:line and key, --set, sizes, cross-key checks,
 * both error dialects of the engine, escaped control bytes, exact doubles,
 * and docs/config.md against the table. */
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

/* ---- ini reader ---- */

typedef struct {
  char log[4096];
  size_t len;
  int sink_calls;
  char sink_log[4096];
  size_t sink_len;
  const char *reject_key; /* handler rejects this key */
  int stop_at;            /* handler returns NW_EDATA on this line */
} ini_rec;

static int rec_handler(void *user, const char *section, const char *key,
                       const char *value, int line, char *err, size_t errlen) {
  ini_rec *r = user;
  r->len += (size_t)snprintf(r->log + r->len, sizeof r->log - r->len,
                             "%d:[%s]%s=<%s>\n", line, section, key, value);
  if (r->stop_at == line) {
    snprintf(err, errlen, "stop here");
    return NW_EDATA;
  }
  if (r->reject_key && !strcmp(key, r->reject_key)) {
    snprintf(err, errlen, "%s.%s: rejected value %s", section, key, value);
    return 1;
  }
  return 0;
}

static void rec_sink(void *user, const char *name, int line, const char *msg) {
  ini_rec *r = user;
  r->sink_calls++;
  r->sink_len += (size_t)snprintf(r->sink_log + r->sink_len,
                                  sizeof r->sink_log - r->sink_len,
                                  "%s|%d|%s\n", name, line, msg);
}

static void test_ini_comments_quotes_whitespace(void **state) {
  (void)state;
  ini_rec r = {0};
  char err[1024];
  const char *text = "\xEF\xBB\xBF# comment\n"
                     "; another\n"
                     "\n"
                     "  [ sec ]   # trailing comment\n"
                     "a = 1\n"
                     "  b\t=  two words   ; inline\n"
                     "c = x#y;z\n"
                     "d = \"  keep # this ; too  \"  # but not this\n"
                     "e = \"esc \\\" and \\\\ and \\n\"\n"
                     "f =\n"
                     "g = # only a comment\r\n"
                     "[other.sec-1]\r\n"
                     "a = 2\r\n";
  assert_int_equal(
      nw_ini_parse_string("mem", text, rec_handler, &r, err, sizeof err), 0);
  assert_string_equal(err, "");
  assert_string_equal(r.log, "5:[sec]a=<1>\n"
                             "6:[sec]b=<two words>\n"
                             "7:[sec]c=<x#y;z>\n"
                             "8:[sec]d=<  keep # this ; too  >\n"
                             "9:[sec]e=<esc \" and \\ and \\n>\n"
                             "10:[sec]f=<>\n"
                             "11:[sec]g=<>\n"
                             "13:[other.sec-1]a=<2>\n");
}

static void test_ini_syntax_errors_with_lines(void **state) {
  (void)state;
  ini_rec r = {0};
  char err[4096];
  const char *text = "orphan = 1\n"     /* 1: outside a section */
                     "[good]\n"         /* 2 */
                     "k = 1\n"          /* 3 */
                     "no equals here\n" /* 4 */
                     " = 5\n"           /* 5: empty key */
                     "k = 2\n"          /* 6: duplicate of 3 */
                     "[broken\n"        /* 7: missing ] */
                     "skipped = 1\n"    /* 8: under a bad header */
                     "[ok] junk\n"      /* 9: text after ] */
                     "q = \"open\n"     /* 10: unterminated */
                     "r = \"x\" y\n"    /* 11: text after quote */
                     "bad key = 1\n"    /* 12: space in key */
                     "[]\n"             /* 13: empty section */
                     "[good]\n"         /* 14: reopened */
                     "k = 3\n"          /* 15: still a duplicate */
                     "fine = yes\n";    /* 16 */
  int n = nw_ini_parse_string("t.ini", text, rec_handler, &r, err, sizeof err);
  static const char *const want[] = {
      "t.ini:1: key \"orphan\" outside any [section]",
      "t.ini:4: expected 'key = value' or '[section]'",
      "t.ini:5: empty key",
      "t.ini:6: good.k: duplicate key (first set on line 3)",
      "t.ini:7: missing ']'",
      "t.ini:9: unexpected text after ']'",
      "t.ini:10: unterminated quoted value",
      "t.ini:11: unexpected text after closing quote",
      "t.ini:12: invalid character ' ' in key",
      "t.ini:13: empty section name",
      "t.ini:15: good.k: duplicate key (first set on line 3)",
  };
  assert_int_equal(n, (int)(sizeof want / sizeof want[0]));
  assert_int_equal(count_lines(err), n);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    assert_contains(err, want[i]);
  /* Line 9's header still opens [ok]; nothing under [broken] is passed on. */
  assert_string_equal(r.log, "3:[good]k=<1>\n16:[good]fine=<yes>\n");
}

static void test_ini_handler_errors_and_sink(void **state) {
  (void)state;
  ini_rec r = {.reject_key = "bad"};
  char err[4096];
  nw_ini_callbacks cb = {rec_handler, rec_sink, &r};
  const char *text = "[s]\nbad = 1\nok = 2\nbad2 = 3\n[t]\nbad = 4\nnope\n";
  int n = nw_ini_parse_string_cb("x.ini", text, &cb, err, sizeof err);
  assert_int_equal(n, 3);
  assert_string_equal(err, "x.ini:2: s.bad: rejected value 1\n"
                           "x.ini:6: t.bad: rejected value 4\n"
                           "x.ini:7: expected 'key = value' or '[section]', "
                           "got \"nope\"");
  assert_int_equal(r.sink_calls, 3);
  assert_contains(r.sink_log, "x.ini|2|s.bad: rejected value 1\n");
  assert_contains(r.sink_log, "x.ini|7|expected");

  /* A negative return stops the parse with that code. */
  ini_rec r2 = {.stop_at = 3};
  n = nw_ini_parse_string("y.ini", "[s]\na=1\nb=2\nc=3\n", rec_handler, &r2,
                          err, sizeof err);
  assert_int_equal(n, NW_EDATA);
  assert_string_equal(err, "y.ini:3: stop here");
  assert_string_equal(r2.log, "2:[s]a=<1>\n3:[s]b=<2>\n");
}

static void test_ini_small_buffer_counts_dropped(void **state) {
  (void)state;
  char text[4096] = "";
  size_t len = 0;
  for (int i = 0; i < 40; i++)
    len += (size_t)snprintf(text + len, sizeof text - len, "junk line %d\n", i);
  char err[256];
  ini_rec r = {0};
  nw_ini_callbacks cb = {NULL, rec_sink, &r};
  int n = nw_ini_parse_string_cb("big.ini", text, &cb, err, sizeof err);
  assert_int_equal(n, 40);
  assert_int_equal(r.sink_calls, 40);
  assert_true(strlen(err) < sizeof err);
  assert_contains(err, "big.ini:1: ");
  assert_contains(err, "more errors not shown)");
  /* A tiny buffer still holds the start of the first error. */
  char tiny[12];
  n = nw_ini_parse_string("big.ini", text, NULL, NULL, tiny, sizeof tiny);
  assert_int_equal(n, 40);
  assert_string_equal(tiny, "big.ini:1: ");
}

static void test_ini_file(void **state) {
  (void)state;
  char path[1024], err[1024];
  ini_rec r = {0};
  write_file("f.ini", "[a]\nx = 1\n[a\n", path, sizeof path);
  assert_int_equal(nw_ini_parse_file(path, rec_handler, &r, err, sizeof err),
                   1);
  char want[1100];
  snprintf(want, sizeof want, "%s:3: missing ']'", path);
  assert_contains(err, want);
  assert_string_equal(r.log, "2:[a]x=<1>\n");
  assert_int_equal(
      nw_ini_parse_file("/nonexistent/f.ini", NULL, NULL, err, sizeof err),
      NW_ENOTFOUND);
  assert_contains(err, "/nonexistent/f.ini: ");
  assert_int_equal(nw_ini_parse_string("e", "", NULL, NULL, err, sizeof err),
                   0);
}

/* ---- the key-table engine on a table of its own ---- */

typedef struct {
  int n;
  double x;
  char name[8];
  int mode;
  int pair[2]; /* a custom type: "A-B" */
  int hooks;   /* keys taken by extra */
} kt_obj;

static const char *const kt_modes[] = {"off", "on", NULL};

static int kt_pair_parse(const nw_kt_key *k, const char *v, void *dst,
                         nw_strbuf *why) {
  (void)k;
  int a, b, used = 0;
  if (sscanf(v, "%d-%d%n", &a, &b, &used) != 2 || v[used]) {
    nw_strbuf_printf(why, "expected A-B");
    return NW_ECONFIG;
  }
  int *p = dst;
  p[0] = a;
  p[1] = b;
  return 0;
}

static void kt_pair_format(const nw_kt_key *k, const void *src,
                           nw_strbuf *out) {
  (void)k;
  const int *p = src;
  nw_strbuf_printf(out, "%d-%d", p[0], p[1]);
}

static const nw_kt_ops kt_pair_ops = {kt_pair_parse, kt_pair_format, "pair"};

static const nw_kt_key kt_keys[] = {
    {.section = "a",
     .key = "n",
     .type = NW_KT_INT,
     NW_KT_AT(kt_obj, n, int),
     .def = "5",
     .min = 1,
     .max = 9},
    {.section = "a",
     .key = "x",
     .type = NW_KT_DOUBLE,
     NW_KT_AT(kt_obj, x, double),
     .def = "0.5",
     .min = 0,
     .max = 1,
     .flags = NW_KT_MIN_OPEN},
    {.section = "b.c",
     .key = "name",
     .type = NW_KT_STRING,
     NW_KT_AT(kt_obj, name, char[8]),
     .def = "nm",
     .flags = NW_KT_NONEMPTY},
    {.section = "b.c",
     .key = "mode",
     .type = NW_KT_ENUM,
     NW_KT_AT(kt_obj, mode, int),
     .def = "off",
     .choices = kt_modes},
    {.section = "b.c",
     .key = "pair",
     .type = NW_KT_CUSTOM,
     NW_KT_AT(kt_obj, pair, int[2]),
     .def = "1-2",
     .ops = &kt_pair_ops},
    {.section = "b.c",
     .key = "n",
     .type = NW_KT_INT,
     NW_KT_AT(kt_obj, hooks, int),
     .def = "0",
     .min = 0,
     .max = 5},
};

/* pair means something only when mode is on */
static const char *kt_unused(const void *obj, const nw_kt_key *k) {
  const kt_obj *o = obj;
  return strcmp(k->key, "pair") || o->mode ? NULL : "mode is off";
}

static void kt_check(const void *obj, nw_kt_session *s) {
  const kt_obj *o = obj;
  if (o->x * 10 > o->n)
    nw_kt_report(s, nw_kt_line(s, "a", "x"), "x (%g) is more than n/10", o->x);
}

static int kt_extra(void *obj, const char *section, const char *key,
                    const char *value, int line, char *why, size_t len) {
  (void)line;
  if (strcmp(section, "hook"))
    return 1;
  if (strcmp(key, "url")) {
    snprintf(why, len, "no such hook key");
    return NW_ECONFIG;
  }
  (void)value;
  ((kt_obj *)obj)->hooks++;
  return 0;
}

static nw_keytable kt_table(nw_kt_dialect d) {
  return (nw_keytable){kt_keys,        sizeof kt_keys / sizeof kt_keys[0],
                       sizeof(kt_obj), d,
                       kt_extra,       kt_unused,
                       kt_check};
}

/* Parses text (as a buffer without a NUL after it) over *o. */
static int kt_parse(const nw_keytable *t, kt_obj *o, const char *text,
                    char *err, size_t errlen, int *nerr) {
  size_t len = strlen(text);
  char *exact = malloc(len ? len : 1); /* no NUL: ASan sees an overread */
  assert_non_null(exact);
  memcpy(exact, text, len);
  nw_ini_errs errs;
  nw_ini_errs_init(&errs, err, errlen, NULL, NULL);
  int rc = nw_kt_parse_buffer(t, o, "kt", exact, len, &errs);
  free(exact);
  *nerr = errs.count;
  return rc;
}

static void test_keytable_defaults_dump_equal(void **state) {
  (void)state;
  nw_keytable t = kt_table(NW_KT_DOTTED);
  kt_obj a, b;
  nw_kt_defaults(&t, &a);
  assert_int_equal(a.n, 5);
  assert_true(a.x == 0.5);
  assert_string_equal(a.name, "nm");
  assert_int_equal(a.pair[1], 2);
  char buf[512];
  nw_strbuf o = nw_strbuf_init(buf, sizeof buf);
  nw_kt_dump(&t, &a, &o);
  /* pair is unused while mode is off: left out */
  assert_string_equal(buf, "[a]\nn = 5\nx = 0.5\n\n[b.c]\nname = \"nm\"\n"
                           "mode = off\nn = 0\n");
  char err[1024];
  int nerr;
  memcpy(&b, &a, sizeof b);
  assert_int_equal(kt_parse(&t, &b, "[b.c]\nmode = on\npair = 7-8\n", err,
                            sizeof err, &nerr),
                   0);
  assert_false(nw_kt_equal(&t, &a, &b));
  o = nw_strbuf_init(buf, sizeof buf);
  nw_kt_dump(&t, &b, &o);
  assert_contains(buf, "pair = 7-8\n");
  kt_obj c;
  nw_kt_defaults(&t, &c);
  assert_int_equal(kt_parse(&t, &c, buf, err, sizeof err, &nerr), 0);
  assert_true(nw_kt_equal(&t, &b, &c));
  /* the length needed, from a NULL buffer */
  nw_strbuf none = nw_strbuf_init(NULL, 0);
  nw_kt_dump(&t, &b, &none);
  assert_int_equal(none.len, strlen(buf));
}

static void test_keytable_dialects(void **state) {
  (void)state;
  const char *text = "[a]\n"
                     "n = 12\n"       /* 2: range */
                     "x = 0\n"        /* 3: open minimum */
                     "[b.c]\n"        /* 4 */
                     "mode = maybe\n" /* 5: choice */
                     "pair = 1:2\n"   /* 6: custom */
                     "x = 1\n"        /* 7: belongs in [a] */
                     "[zz]\n"         /* 8 */
                     "p = 1\n"        /* 9: unknown section */
                     "q = 2\n"        /* 10: the same section again */
                     "[hook]\n"       /* 11 */
                     "url = x\n"      /* 12: taken by extra */
                     "port = 1\n";    /* 13: refused by extra */
  char err[4096];
  int nerr;
  kt_obj o, before;
  nw_keytable t = kt_table(NW_KT_DOTTED);
  nw_kt_defaults(&t, &o);
  memcpy(&before, &o, sizeof o);
  assert_int_equal(kt_parse(&t, &o, text, err, sizeof err, &nerr), NW_ECONFIG);
  assert_memory_equal(&o, &before, sizeof o);
  assert_int_equal(nerr, 8);
  assert_contains(err, "kt:2: a.n: \"12\" is out of range; expected an "
                       "integer in [1, 9]");
  assert_contains(err, "kt:3: a.x: \"0\" is out of range; expected a number "
                       "in (0, 1]");
  assert_contains(err, "kt:5: b.c.mode: \"maybe\" is not one of off or on");
  assert_contains(err, "kt:6: b.c.pair: expected A-B");
  assert_contains(err, "kt:7: b.c.x: unknown key \"x\" in [b.c]; keys: name "
                       "mode pair n");
  assert_contains(err, "kt:9: zz.p: unknown section [zz]; sections: a b.c");
  assert_contains(err, "kt:10: zz.q: unknown section");
  assert_contains(err, "kt:13: hook.port: no such hook key");

  t = kt_table(NW_KT_BRACKETED);
  assert_int_equal(kt_parse(&t, &o, text, err, sizeof err, &nerr), NW_ECONFIG);
  assert_memory_equal(&o, &before, sizeof o);
  assert_int_equal(nerr, 7); /* [zz] once */
  assert_contains(err, "kt:2: [a] n: 12 is out of range: must be >= 1 and "
                       "<= 9");
  assert_contains(err, "kt:3: [a] x: 0 is out of range: must be > 0 and <= "
                       "1");
  assert_contains(err, "kt:5: [b.c] mode: 'maybe' is not off or on");
  assert_contains(err, "kt:7: unknown key 'x' here: it belongs in [a]");
  assert_contains(err, "kt:9: unknown section [zz] (sections: a, b.c)");
  assert_null(strstr(err, "kt:10:"));
  assert_contains(err, "kt:13: [hook] port: no such hook key");
  assert_int_equal(
      kt_parse(&t, &o, "[a]\nn=x\n[b.c]\nn = 1.5\n", err, sizeof err, &nerr),
      NW_ECONFIG);
  assert_contains(err, "kt:2: [a] n: 'x' is not an integer");
  assert_contains(err, "kt:4: [b.c] n: '1.5' is not an integer");
  assert_int_equal(kt_parse(&t, &o, "[a]\nx = nan\n", err, sizeof err, &nerr),
                   NW_ECONFIG);
  assert_string_equal(err, "kt:2: [a] x: 'nan' is not a number");
}

static void test_keytable_after_file_checks(void **state) {
  (void)state;
  nw_keytable t = kt_table(NW_KT_BRACKETED);
  kt_obj o, before;
  nw_kt_defaults(&t, &o);
  memcpy(&before, &o, sizeof o);
  char err[1024];
  int nerr;
  /* a key that has no effect, at its line; a check between keys, at the
   * line of the key it names */
  assert_int_equal(kt_parse(&t, &o, "[b.c]\npair = 3-4\n[a]\n\nx = 0.9\n", err,
                            sizeof err, &nerr),
                   NW_ECONFIG);
  assert_int_equal(nerr, 2);
  assert_string_equal(err, "kt:2: [b.c] pair has no effect: mode is off\n"
                           "kt:5: x (0.9) is more than n/10");
  assert_memory_equal(&o, &before, sizeof o);
  assert_int_equal(
      kt_parse(&t, &o, "[a]\nn = 9\nx = 0.9\n", err, sizeof err, &nerr), 0);
  assert_int_equal(o.n, 9);
  assert_true(o.x == 0.9);
}

static void test_keytable_set(void **state) {
  (void)state;
  nw_keytable t = kt_table(NW_KT_DOTTED);
  kt_obj o, before;
  nw_kt_defaults(&t, &o);
  char err[512];
  /* a section name with a dot: the key is after the last one */
  assert_int_equal(nw_kt_set(&t, &o, " b.c.name = \"x y\" ", err, sizeof err),
                   0);
  assert_string_equal(o.name, "x y");
  assert_int_equal(nw_kt_set(&t, &o, "b.c.n=4", err, sizeof err), 0);
  assert_int_equal(o.hooks, 4);
  assert_int_equal(nw_kt_set(&t, &o, "hook.url=https://h/tok", err, sizeof err),
                   0);
  assert_int_equal(o.hooks, 5);
  memcpy(&before, &o, sizeof o);
  assert_int_equal(nw_kt_set(&t, &o, "hook.port=tok", err, sizeof err),
                   NW_ECONFIG);
  assert_string_equal(err, "--set hook.port: no such hook key");
  assert_int_equal(nw_kt_set(&t, &o, "b.c.name=123456789", err, sizeof err),
                   NW_ECONFIG);
  assert_string_equal(err, "--set b.c.name=123456789: value is 9 bytes long; "
                           "the limit is 7");
  assert_int_equal(nw_kt_set(&t, &o, "a.", err, sizeof err), NW_ECONFIG);
  assert_contains(err, "expected section.key=value");
  assert_memory_equal(&o, &before, sizeof o);
}

/* Control bytes of the input never reach a message raw. */
static int has_raw_control(const char *s) {
  for (; *s; s++)
    if (((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') || *s == 0x7f)
      return 1;
  return 0;
}

static void test_control_bytes_escaped(void **state) {
  (void)state;
  char path[1024], err[4096];
  write_file("ctl.conf",
             "[model]\nn_layer = \x1b[31m3\n[x\x02y]\n[train]\nlr\x7f = 1\n"
             "[data]\npath = \"a\x01\"\n",
             path, sizeof path);
  nw_config c;
  nw_config_defaults(&c);
  assert_int_equal(nw_config_load(&c, path, err, sizeof err), NW_ECONFIG);
  assert_int_equal(count_lines(err), 4);
  assert_contains(err, ":2: model.n_layer: \"\\x1b[31m3\" is not valid");
  assert_contains(err, ":3: invalid character '\\x02' in section name "
                       "[x\\x02y]");
  assert_contains(err, ":5: invalid character '\\x7f' in key");
  assert_contains(err, ":7: data.path: \"a\\x01\" contains a control");
  assert_false(has_raw_control(err));
  assert_int_equal(nw_config_set(&c, "model.n\x1b=1", err, sizeof err),
                   NW_ECONFIG);
  assert_contains(err, "--set model.n\\x1b=1: unknown key \"n\\x1b\"");
  assert_false(has_raw_control(err));
}

static void test_strbuf_double_round_trips(void **state) {
  (void)state;
  static const struct {
    double x;
    const char *text;
  } fixed[] = {{3600, "3600"},    {0.1, "0.1"},
               {1e-8, "1e-08"},   {1e7, "10000000"},
               {-2.5, "-2.5"},    {6e-4, "0.0006"},
               {1e300, "1e+300"}, {1.0 / 3, "0.3333333333333333"}};
  char buf[64];
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    nw_strbuf b = nw_strbuf_init(buf, sizeof buf);
    nw_strbuf_double(&b, fixed[i].x);
    assert_string_equal(buf, fixed[i].text);
  }
  /* random bit patterns: every finite one reads back exactly */
  uint64_t seed = (uint64_t)nw_test_seed("test_strbuf_double_round_trips");
  uint64_t s = seed | 1;
  int n = 0;
  for (int i = 0; i < 20000; i++) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
    double x;
    memcpy(&x, &s, sizeof x);
    if (!isfinite(x))
      continue;
    nw_strbuf b = nw_strbuf_init(buf, sizeof buf);
    nw_strbuf_double(&b, x);
    if (strtod(buf, NULL) != x)
      fail_msg("seed %" PRIu64 ": %a printed as %s", seed, x, buf);
    n++;
  }
  assert_true(n > 15000);
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
      cmocka_unit_test(test_ini_comments_quotes_whitespace),
      cmocka_unit_test(test_ini_syntax_errors_with_lines),
      cmocka_unit_test(test_ini_handler_errors_and_sink),
      cmocka_unit_test(test_ini_small_buffer_counts_dropped),
      cmocka_unit_test(test_ini_file),
      cmocka_unit_test(test_alert_hooks),
      cmocka_unit_test(test_alert_hook_errors),
      cmocka_unit_test(test_keytable_defaults_dump_equal),
      cmocka_unit_test(test_keytable_dialects),
      cmocka_unit_test(test_keytable_after_file_checks),
      cmocka_unit_test(test_keytable_set),
      cmocka_unit_test(test_control_bytes_escaped),
      cmocka_unit_test(test_strbuf_double_round_trips),
      cmocka_unit_test(test_docs_list_every_key),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
