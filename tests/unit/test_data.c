/* test_data.c — the synthetic task, text and shard sources, the training
 * order and micro-batches (src/data*.c). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ftw.h>

#include "base/error.h"
#include "testutil.h"
#include "trainer/data/data.h"

#define ERRLEN 2048
#define MAXTOK 4096

static nw_data_config synth_cfg(uint64_t seed) {
  nw_data_config c;
  memset(&c, 0, sizeof c);
  c.source = NW_DATA_SYNTHETIC;
  c.val_fraction = 0.1;
  c.seed = seed;
  c.short_max_digits = 3;
  c.long_max_digits = 20;
  c.long_fraction = 0.05;
  return c;
}

static nw_dataset *open_ok(const nw_data_config *c, int vocab, int T) {
  char err[ERRLEN];
  nw_dataset *d = NULL;
  int rc = nw_data_open(&d, c, vocab, T, err, sizeof err);
  if (rc != NW_OK)
    fail_msg("nw_data_open: %d %s", rc, err);
  assert_non_null(d);
  return d;
}

/* Opens expecting failure rc; returns the message in err. */
static void open_fail(const nw_data_config *c, int vocab, int T, int want_rc,
                      char *err) {
  nw_dataset *d = (nw_dataset *)0x1;
  int rc = nw_data_open(&d, c, vocab, T, err, ERRLEN);
  if (rc != want_rc)
    fail_msg("expected %d, got %d (%s)", want_rc, rc, err);
  assert_null(d);
  assert_true(strlen(err) > 0);
}

static void write_file(const char *path, const void *buf, size_t n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(buf, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

/* Removes a test's temporary directory and what it holds. */
static void rm_tree(const char *dir) {
  nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- synthetic ----------------------------------------------------------- */

/* Parses "A+B=S\n"; returns 0 on a malformed example. */
static int parse_sum(const int *tok, int len, char *a, char *b, char *s) {
  char buf[MAXTOK + 1];
  for (int i = 0; i < len; i++)
    buf[i] = (char)tok[i];
  buf[len] = 0;
  const char *plus = strchr(buf, '+'), *eq = strchr(buf, '=');
  if (!plus || !eq || eq < plus || buf[len - 1] != '\n')
    return 0;
  memcpy(a, buf, (size_t)(plus - buf));
  a[plus - buf] = 0;
  memcpy(b, plus + 1, (size_t)(eq - plus - 1));
  b[eq - plus - 1] = 0;
  size_t sl = (size_t)(buf + len - 1 - (eq + 1));
  memcpy(s, eq + 1, sl);
  s[sl] = 0;
  return *a && *b && *s;
}

/* a + b of decimal strings, written least significant digit first. */
static void add_reversed(const char *a, const char *b, char *out) {
  int la = (int)strlen(a), lb = (int)strlen(b), carry = 0, n = 0;
  for (int j = 0; j < la || j < lb; j++) {
    int s = carry + (j < la ? a[la - 1 - j] - '0' : 0) +
            (j < lb ? b[lb - 1 - j] - '0' : 0);
    out[n++] = (char)('0' + s % 10);
    carry = s / 10;
  }
  if (carry)
    out[n++] = '1';
  out[n] = 0;
}

static int all_digits_no_leading_zero(const char *s) {
  for (const char *p = s; *p; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return !(s[0] == '0' && s[1]);
}

static void test_synth_sums(void **state) {
  (void)state;
  nw_data_config c = synth_cfg(7);
  nw_dataset *d = open_ok(&c, 256, 256);
  assert_true(nw_data_count(d, NW_SPLIT_TRAIN) == UINT64_MAX);
  assert_true(nw_data_count(d, NW_SPLIT_VAL) == UINT64_MAX);
  int tok[MAXTOK], len, prompt, saw_carry_out = 0, saw_zero = 0;
  char a[MAXTOK], b[MAXTOK], s[MAXTOK], want[MAXTOK];
  for (nw_split sp = NW_SPLIT_TRAIN; sp <= NW_SPLIT_VAL; sp++) {
    for (uint64_t i = 0; i < 5000; i++) {
      assert_int_equal(nw_data_example(d, sp, i, tok, &len, &prompt), NW_OK);
      assert_true(len >= 6 && len <= 257);
      if (!parse_sum(tok, len, a, b, s))
        fail_msg("example %llu malformed", (unsigned long long)i);
      assert_true(all_digits_no_leading_zero(a));
      assert_true(all_digits_no_leading_zero(b));
      add_reversed(a, b, want);
      assert_string_equal(s, want);
      assert_int_equal(prompt, (int)(strlen(a) + strlen(b) + 2));
      assert_int_equal(tok[prompt - 1], '=');
      assert_int_equal(tok[len - 1], NW_DATA_ANSWER_END);
      saw_carry_out |= strlen(s) > strlen(a) && strlen(s) > strlen(b);
      saw_zero |= !strcmp(a, "0") || !strcmp(b, "0");
    }
  }
  assert_true(saw_carry_out);
  assert_true(saw_zero);
  nw_data_close(d);
}

/* The documented example: 27 + 15 = 42 is written "27+15=24\n". */
static void test_synth_reversed_digits(void **state) {
  (void)state;
  nw_data_config c = synth_cfg(1);
  c.short_max_digits = 2;
  c.long_max_digits = 2;
  nw_dataset *d = open_ok(&c, 256, 64);
  int tok[MAXTOK], len, prompt, found = 0;
  char a[MAXTOK], b[MAXTOK], s[MAXTOK];
  for (uint64_t i = 0; i < 200000 && !found; i++) {
    nw_data_example(d, NW_SPLIT_TRAIN, i, tok, &len, &prompt);
    assert_true(parse_sum(tok, len, a, b, s));
    if (!strcmp(a, "27") && !strcmp(b, "15")) {
      assert_string_equal(s, "24");
      found = 1;
    }
    /* two 2-digit operands at most: an explicit reversal check */
    int sum = atoi(a) + atoi(b), rev = 0;
    for (int k = (int)strlen(s) - 1; k >= 0; k--)
      rev = rev * 10 + (s[k] - '0');
    assert_int_equal(rev, sum);
  }
  assert_true(found);
  nw_data_close(d);
}

static void test_synth_deterministic(void **state) {
  (void)state;
  nw_data_config c = synth_cfg(42);
  nw_dataset *d1 = open_ok(&c, 256, 128), *d2 = open_ok(&c, 256, 128);
  int t1[MAXTOK], t2[MAXTOK], l1, l2, p1, p2;
  /* d2 visits in reverse order: an example depends on its index only. */
  for (int i = 999; i >= 0; i--) {
    nw_data_example(d2, NW_SPLIT_TRAIN, (uint64_t)i * 7919u, t2, &l2, &p2);
    nw_data_example(d1, NW_SPLIT_TRAIN, (uint64_t)i * 7919u, t1, &l1, &p1);
    assert_int_equal(l1, l2);
    assert_int_equal(p1, p2);
    assert_memory_equal(t1, t2, (size_t)l1 * sizeof(int));
  }
  /* A far index in O(1). */
  nw_data_example(d1, NW_SPLIT_TRAIN, UINT64_MAX - 3, t1, &l1, &p1);
  nw_data_example(d2, NW_SPLIT_TRAIN, UINT64_MAX - 3, t2, &l2, &p2);
  assert_int_equal(l1, l2);
  assert_memory_equal(t1, t2, (size_t)l1 * sizeof(int));

  /* Train and val are different streams; another seed another stream. */
  nw_data_config c2 = synth_cfg(43);
  nw_dataset *d3 = open_ok(&c2, 256, 128);
  int same_val = 0, same_seed = 0;
  for (uint64_t i = 0; i < 200; i++) {
    nw_data_example(d1, NW_SPLIT_TRAIN, i, t1, &l1, &p1);
    nw_data_example(d1, NW_SPLIT_VAL, i, t2, &l2, &p2);
    same_val += l1 == l2 && !memcmp(t1, t2, (size_t)l1 * sizeof(int));
    nw_data_example(d3, NW_SPLIT_TRAIN, i, t2, &l2, &p2);
    same_seed += l1 == l2 && !memcmp(t1, t2, (size_t)l1 * sizeof(int));
  }
  assert_true(same_val < 20);
  assert_true(same_seed < 20);
  nw_data_close(d1);
  nw_data_close(d2);
  nw_data_close(d3);
}

static void test_synth_long_tail(void **state) {
  (void)state;
  nw_data_config c = synth_cfg(3);
  nw_dataset *d = open_ok(&c, 256, 256);
  int tok[MAXTOK], len, prompt, n_long = 0, maxlen = 0;
  char a[MAXTOK], b[MAXTOK], s[MAXTOK];
  const int N = 20000;
  for (int i = 0; i < N; i++) {
    nw_data_example(d, NW_SPLIT_TRAIN, (uint64_t)i, tok, &len, &prompt);
    assert_true(parse_sum(tok, len, a, b, s));
    int la = (int)strlen(a), lb = (int)strlen(b);
    int long_a = la > 3, long_b = lb > 3;
    /* Both operands of a pair are long or both short. */
    assert_int_equal(long_a, long_b);
    assert_true(la <= 20 && lb <= 20);
    n_long += long_a;
    if (len > maxlen)
      maxlen = len;
  }
  double frac = (double)n_long / N; /* 0.05 expected; sd 0.0015 */
  assert_true(frac > 0.04 && frac < 0.06);
  assert_true(maxlen > 30); /* the tail reaches well past the short lengths */
  nw_data_close(d);

  /* long_fraction 0: never long; 1: always long. */
  c.long_fraction = 0;
  d = open_ok(&c, 256, 256);
  for (int i = 0; i < 2000; i++) {
    nw_data_example(d, NW_SPLIT_TRAIN, (uint64_t)i, tok, &len, &prompt);
    assert_true(len <= 3 + 1 + 3 + 1 + 4 + 1);
  }
  nw_data_close(d);
  c.long_fraction = 1;
  d = open_ok(&c, 256, 256);
  for (int i = 0; i < 2000; i++) {
    nw_data_example(d, NW_SPLIT_TRAIN, (uint64_t)i, tok, &len, &prompt);
    assert_true(prompt >= 4 + 1 + 4 + 1);
  }
  nw_data_close(d);
}

static void test_synth_truncation(void **state) {
  (void)state;
  nw_data_config c = synth_cfg(5);
  c.long_fraction = 0.5;
  c.long_max_digits = 40;
  const int T = 16;
  nw_dataset *d = open_ok(&c, 256, T);
  int tok[MAXTOK], len, prompt, full = 0, cut = 0;
  for (int i = 0; i < 5000; i++) {
    for (int k = 0; k < MAXTOK; k++)
      tok[k] = -7;
    nw_data_example(d, NW_SPLIT_TRAIN, (uint64_t)i, tok, &len, &prompt);
    assert_true(len >= 2 && len <= T + 1);
    assert_int_equal(tok[T + 1], -7); /* nothing written past the cap */
    assert_true(prompt >= 0 && prompt <= len);
    full += len == T + 1;
    cut += tok[len - 1] != '\n';
  }
  assert_true(full > 0);
  assert_true(cut > 0);
  nw_data_close(d);
}

static void test_synth_config_errors(void **state) {
  (void)state;
  char err[ERRLEN];
  nw_data_config c = synth_cfg(1);
  c.long_max_digits = 2;
  open_fail(&c, 256, 64, NW_ECONFIG, err);
  assert_non_null(strstr(err, "data.long_max_digits"));
  assert_non_null(strstr(err, "data.short_max_digits (3)"));
  c = synth_cfg(1);
  c.short_max_digits = 0;
  open_fail(&c, 256, 64, NW_ECONFIG, err);
  assert_non_null(strstr(err, "data.short_max_digits"));
  c = synth_cfg(1);
  c.long_fraction = 1.5;
  open_fail(&c, 256, 64, NW_ECONFIG, err);
  assert_non_null(strstr(err, "data.long_fraction"));
  c.long_fraction = -0.1;
  open_fail(&c, 256, 64, NW_ECONFIG, err);
  assert_non_null(strstr(err, "data.long_fraction"));
  c = synth_cfg(1);
  open_fail(&c, 256, 4, NW_ECONFIG, err);
  assert_non_null(strstr(err, "model.max_seq_len"));
  open_fail(&c, 128, 64, NW_ECONFIG, err);
  assert_non_null(strstr(err, "model.vocab_size"));
  nw_dataset *d = open_ok(&c, 256, 5); /* "1+2=3\n" just fits */
  nw_data_close(d);
}

/* ---- text ---------------------------------------------------------------- */

static nw_data_config text_cfg(const char *path, double frac) {
  nw_data_config c = synth_cfg(11);
  c.source = NW_DATA_TEXT;
  snprintf(c.path, sizeof c.path, "%s", path);
  c.val_fraction = frac;
  return c;
}

static void example_str(nw_dataset *d, nw_split sp, uint64_t i, char *out) {
  int tok[MAXTOK], len, prompt;
  assert_int_equal(nw_data_example(d, sp, i, tok, &len, &prompt), NW_OK);
  assert_true(len >= 2);
  assert_int_equal(prompt, 0);
  for (int k = 0; k < len; k++)
    out[k] = (char)tok[k];
  out[len] = 0;
}

static void test_text_lines_and_split(void **state) {
  (void)state;
  char dir[512], path[600], s[MAXTOK];
  nw_test_tmpdir(dir, sizeof dir, "data");
  snprintf(path, sizeof path, "%s/t.txt", dir);
  /* 10 usable lines: the empty lines and the 1-byte tail "z" are
   * skipped. */
  const char *text = "l0\n\nl1\nl2\nl3\n\n\nl4\nl5\nl6 a longer line here\n"
                     "l7\nl8\nl9\nz";
  write_file(path, text, strlen(text));
  nw_data_config c = text_cfg(path, 0.25); /* ceil(2.5) = 3 held out */
  nw_dataset *d = open_ok(&c, 256, 64);
  assert_int_equal(nw_data_count(d, NW_SPLIT_TRAIN), 7);
  assert_int_equal(nw_data_count(d, NW_SPLIT_VAL), 3);
  example_str(d, NW_SPLIT_VAL, 0, s);
  assert_string_equal(s, "l7\n");
  example_str(d, NW_SPLIT_VAL, 1, s);
  assert_string_equal(s, "l8\n");
  example_str(d, NW_SPLIT_VAL, 2, s);
  assert_string_equal(s, "l9\n");
  example_str(d, NW_SPLIT_VAL, 5, s); /* wraps, in file order */
  assert_string_equal(s, "l9\n");
  /* Training epoch 0 holds l0..l6 once each. */
  int seen[7] = {0};
  for (uint64_t i = 0; i < 7; i++) {
    example_str(d, NW_SPLIT_TRAIN, i, s);
    assert_true(s[0] == 'l' && s[1] >= '0' && s[1] <= '6');
    seen[s[1] - '0']++;
  }
  for (int k = 0; k < 7; k++)
    assert_int_equal(seen[k], 1);
  nw_data_close(d);

  /* Truncation at max_seq_len + 1 bytes. */
  c.val_fraction = 0.0; /* still one held out */
  d = open_ok(&c, 256, 4);
  assert_int_equal(nw_data_count(d, NW_SPLIT_VAL), 1);
  assert_int_equal(nw_data_count(d, NW_SPLIT_TRAIN), 9);
  int found = 0;
  for (uint64_t i = 0; i < 9; i++) {
    example_str(d, NW_SPLIT_TRAIN, i, s);
    assert_true(strlen(s) <= 5);
    found |= !strcmp(s, "l6 a ");
  }
  assert_true(found);
  nw_data_close(d);

  /* val_path: another file. */
  char vpath[600];
  snprintf(vpath, sizeof vpath, "%s/v.txt", dir);
  write_file(vpath, "va\nvb\n", 6);
  c = text_cfg(path, 0.5);
  snprintf(c.val_path, sizeof c.val_path, "%s", vpath);
  d = open_ok(&c, 256, 64);
  assert_int_equal(nw_data_count(d, NW_SPLIT_TRAIN), 10);
  assert_int_equal(nw_data_count(d, NW_SPLIT_VAL), 2);
  example_str(d, NW_SPLIT_VAL, 1, s);
  assert_string_equal(s, "vb\n");
  nw_data_close(d);
  rm_tree(dir);
}

static void test_text_errors(void **state) {
  (void)state;
  char dir[512], path[600], err[ERRLEN];
  nw_test_tmpdir(dir, sizeof dir, "data");

  snprintf(path, sizeof path, "%s/missing.txt", dir);
  nw_data_config c = text_cfg(path, 0.1);
  open_fail(&c, 256, 64, NW_EIO, err);
  assert_non_null(strstr(err, path));

  snprintf(path, sizeof path, "%s/empty.txt", dir);
  write_file(path, "", 0);
  c = text_cfg(path, 0.1);
  open_fail(&c, 256, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "empty"));

  snprintf(path, sizeof path, "%s/blank.txt", dir);
  write_file(path, "\n\n\nx", 4);
  c = text_cfg(path, 0.1);
  open_fail(&c, 256, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));

  snprintf(path, sizeof path, "%s/one.txt", dir);
  write_file(path, "only\n", 5);
  c = text_cfg(path, 0.1);
  open_fail(&c, 256, 64, NW_EDATA, err); /* nothing left to hold out */
  assert_non_null(strstr(err, path));

  snprintf(path, sizeof path, "%s/ok.txt", dir);
  write_file(path, "ab\ncd\n", 6);
  c = text_cfg(path, 0.1);
  open_fail(&c, 100, 64, NW_ECONFIG, err);
  assert_non_null(strstr(err, "model.vocab_size"));
  c.val_fraction = 1.0;
  open_fail(&c, 256, 64, NW_ECONFIG, err);
  assert_non_null(strstr(err, "data.val_fraction"));
  c = text_cfg(path, 0.1);
  snprintf(c.val_path, sizeof c.val_path, "%s/nope.txt", dir);
  open_fail(&c, 256, 64, NW_EIO, err);
  assert_non_null(strstr(err, "data.val_path"));
  assert_non_null(strstr(err, "nope.txt"));
  rm_tree(dir);
}

/* ---- shards -------------------------------------------------------------- */

/* Writes an llm.c shard; header fields and the written token count may lie
 * to build broken files. */
static void write_shard(const char *path, const uint16_t *tok, int n, int magic,
                        int version, int header_ntok) {
  int32_t header[256] = {0};
  header[0] = magic;
  header[1] = version;
  header[2] = header_ntok;
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  assert_int_equal(fwrite(header, sizeof header, 1, fp), 1);
  if (n)
    assert_int_equal(fwrite(tok, 2, (size_t)n, fp), (size_t)n);
  assert_int_equal(fclose(fp), 0);
}

static nw_data_config shard_cfg(const char *path, double frac) {
  nw_data_config c = text_cfg(path, frac);
  c.source = NW_DATA_SHARDS;
  return c;
}

#define EOT 50256

static void get_doc(nw_dataset *d, nw_split sp, uint64_t i, int *tok,
                    int *len) {
  int prompt;
  assert_int_equal(nw_data_example(d, sp, i, tok, len, &prompt), NW_OK);
  assert_int_equal(prompt, 0);
}

static void test_shards_read(void **state) {
  (void)state;
  char dir[512], p1[600], p2[600], pat[600];
  nw_test_tmpdir(dir, sizeof dir, "data");
  /* Shard b: a fragment continued from a, then documents 100.., 200.. */
  const uint16_t a[] = {EOT, 1, 2, 3, EOT, 10, 11, EOT, EOT, 20, 21, 22, 23};
  const uint16_t b[] = {30, 31, EOT, 100, EOT, 200, 201, 202};
  snprintf(p1, sizeof p1, "%s/x_000.bin", dir);
  snprintf(p2, sizeof p2, "%s/x_001.bin", dir);
  write_shard(p2, b, 8, 20240520, 1, 8); /* written first: order is sorted */
  write_shard(p1, a, 13, 20240520, 1, 13);
  snprintf(pat, sizeof pat, "%s/x_*.bin", dir);

  /* Documents: [EOT 1 2 3] [EOT 10 11] [EOT 20..23] [30 31] [EOT 100]
   * [EOT 200 201 202]; the lone EOT is skipped. 6 docs, 0.3 -> 2 val. */
  nw_data_config c = shard_cfg(pat, 0.3);
  nw_dataset *d = open_ok(&c, 50257, 64);
  assert_int_equal(nw_data_count(d, NW_SPLIT_TRAIN), 4);
  assert_int_equal(nw_data_count(d, NW_SPLIT_VAL), 2);
  int tok[MAXTOK], len;
  get_doc(d, NW_SPLIT_VAL, 0, tok, &len);
  assert_int_equal(len, 2);
  assert_int_equal(tok[0], EOT);
  assert_int_equal(tok[1], 100);
  get_doc(d, NW_SPLIT_VAL, 1, tok, &len);
  int want_last[] = {EOT, 200, 201, 202};
  assert_int_equal(len, 4);
  assert_memory_equal(tok, want_last, sizeof want_last);
  /* The training epoch holds the first four documents, each once. */
  int seen = 0;
  for (uint64_t i = 0; i < 4; i++) {
    get_doc(d, NW_SPLIT_TRAIN, i, tok, &len);
    if (len == 4 && tok[0] == EOT && tok[1] == 1 && tok[3] == 3)
      seen |= 1;
    else if (len == 3 && tok[0] == EOT && tok[1] == 10 && tok[2] == 11)
      seen |= 2;
    else if (len == 5 && tok[0] == EOT && tok[1] == 20 && tok[4] == 23)
      seen |= 4;
    else if (len == 2 && tok[0] == 30 && tok[1] == 31)
      seen |= 8;
    else
      fail_msg("unexpected document of %d tokens starting %d", len, tok[0]);
  }
  assert_int_equal(seen, 15);
  nw_data_close(d);

  /* Truncation; a single plain path; val_path as its own set. */
  c = shard_cfg(p1, 0.3);
  snprintf(c.val_path, sizeof c.val_path, "%s", p2);
  d = open_ok(&c, 50257, 2);
  assert_int_equal(nw_data_count(d, NW_SPLIT_TRAIN), 3);
  assert_int_equal(nw_data_count(d, NW_SPLIT_VAL), 3);
  for (uint64_t i = 0; i < 3; i++) {
    get_doc(d, NW_SPLIT_TRAIN, i, tok, &len);
    assert_true(len >= 2 && len <= 3);
  }
  get_doc(d, NW_SPLIT_VAL, 2, tok, &len);
  assert_int_equal(len, 3);
  assert_int_equal(tok[2], 201);
  nw_data_close(d);
  rm_tree(dir);
}

static void test_shards_errors(void **state) {
  (void)state;
  char dir[512], path[600], err[ERRLEN];
  nw_test_tmpdir(dir, sizeof dir, "data");
  const uint16_t tok[] = {EOT, 5, 6, EOT, 7, 8, 9};

  snprintf(path, sizeof path, "%s/magic.bin", dir);
  write_shard(path, tok, 7, 20240521, 1, 7);
  nw_data_config c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "magic"));

  snprintf(path, sizeof path, "%s/version.bin", dir);
  write_shard(path, tok, 7, 20240520, 2, 7);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "version"));

  snprintf(path, sizeof path, "%s/trunc.bin", dir);
  write_shard(path, tok, 5, 20240520, 1, 7);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));

  snprintf(path, sizeof path, "%s/long.bin", dir);
  write_shard(path, tok, 7, 20240520, 1, 6);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));

  snprintf(path, sizeof path, "%s/tiny.bin", dir);
  write_file(path, "abc", 3);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));

  /* A token >= vocab_size (no EOT: 50256 would be out of this vocab). */
  const uint16_t bad[] = {1, 2, 3, 999, 1000, 4};
  snprintf(path, sizeof path, "%s/vocab.bin", dir);
  write_shard(path, bad, 6, 20240520, 1, 6);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 1000, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "1000"));
  assert_non_null(strstr(err, "index 4"));

  snprintf(path, sizeof path, "%s/missing.bin", dir);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EIO, err);
  assert_non_null(strstr(err, path));

  snprintf(path, sizeof path, "%s/none_*.bin", dir);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EIO, err);
  assert_non_null(strstr(err, path));

  /* A later bad file of a glob is named, not the pattern. */
  snprintf(path, sizeof path, "%s/g_0.bin", dir);
  write_shard(path, tok, 7, 20240520, 1, 7);
  snprintf(path, sizeof path, "%s/g_1.bin", dir);
  write_shard(path, tok, 6, 20240520, 1, 7);
  char pat[600];
  snprintf(pat, sizeof pat, "%s/g_*.bin", dir);
  c = shard_cfg(pat, 0.3);
  open_fail(&c, 50257, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));

  /* Only empty documents. */
  const uint16_t eots[] = {EOT, EOT, EOT};
  snprintf(path, sizeof path, "%s/eots.bin", dir);
  write_shard(path, eots, 3, 20240520, 1, 3);
  c = shard_cfg(path, 0.3);
  open_fail(&c, 50257, 64, NW_EDATA, err);
  assert_non_null(strstr(err, path));
  rm_tree(dir);
}

/* ---- order --------------------------------------------------------------- */

/* A text file of n lines "100+k\n", k = 0..n-1: the line number is
 * decodable from the example. */
static void numbered_file(const char *path, int n) {
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  for (int k = 0; k < n; k++)
    fprintf(fp, "%d\n", 100 + k);
  assert_int_equal(fclose(fp), 0);
}

static int example_id(nw_dataset *d, nw_split sp, uint64_t i) {
  char s[MAXTOK];
  example_str(d, sp, i, s);
  return atoi(s) - 100;
}

static void test_order(void **state) {
  (void)state;
  char dir[512], path[600];
  nw_test_tmpdir(dir, sizeof dir, "data");
  snprintf(path, sizeof path, "%s/n.txt", dir);
  numbered_file(path, 101); /* ceil(0.01 * 101) = 2 val, 99 train */
  nw_data_config c = text_cfg(path, 0.01);
  nw_dataset *d = open_ok(&c, 256, 64), *same = open_ok(&c, 256, 64);
  c.seed = 12;
  nw_dataset *other = open_ok(&c, 256, 64);
  const int n = 99;
  assert_int_equal(nw_data_count(d, NW_SPLIT_TRAIN), n);
  int order[4][99], diff_seed = 0, diff_epoch = 0, identity = 0;
  for (int e = 0; e < 4; e++) {
    int count[99] = {0};
    for (int p = 0; p < n; p++) {
      uint64_t i = (uint64_t)e * n + (uint64_t)p;
      int id = example_id(d, NW_SPLIT_TRAIN, i);
      assert_true(id >= 0 && id < n);
      count[id]++;
      order[e][p] = id;
      diff_seed += id != example_id(other, NW_SPLIT_TRAIN, i);
      identity += id == p;
      if (e > 0)
        diff_epoch += id != order[0][p];
    }
    for (int k = 0; k < n; k++)
      assert_int_equal(count[k], 1);
  }
  assert_true(diff_seed > n);  /* another seed, another order */
  assert_true(diff_epoch > n); /* each epoch its own shuffle */
  assert_true(identity < 20);  /* actually shuffled (about 4 expected) */
  /* Same seed: same order, whatever the access pattern (backwards, jumping
   * between epochs). */
  for (int k = 4 * n - 1; k >= 0; k -= 3)
    assert_int_equal(example_id(same, NW_SPLIT_TRAIN, (uint64_t)k),
                     order[k / n][k % n]);
  /* Validation: file order, wrapping. */
  assert_int_equal(example_id(d, NW_SPLIT_VAL, 0), 99);
  assert_int_equal(example_id(d, NW_SPLIT_VAL, 1), 100);
  assert_int_equal(example_id(d, NW_SPLIT_VAL, 2), 99);
  nw_data_close(d);
  nw_data_close(same);
  nw_data_close(other);
  rm_tree(dir);
}

/* ---- batches ------------------------------------------------------------- */

static void test_batch_build(void **state) {
  (void)state;
  char dir[512], path[600];
  nw_test_tmpdir(dir, sizeof dir, "data");
  snprintf(path, sizeof path, "%s/b.txt", dir);
  const char *text = "ab\nabcdef\nabcd\nxy\nv1\nv2\n";
  write_file(path, text, strlen(text));
  nw_data_config c = text_cfg(path, 0.3); /* 4 train, 2 val */
  nw_dataset *d = open_ok(&c, 256, 64);
  nw_batch batch;
  memset(&batch, 0, sizeof batch);
  /* Validation is in file order: v1\n v2\n v1\n -> T = 2, no padding. */
  assert_int_equal(nw_batch_build(&batch, d, NW_SPLIT_VAL, 0, 3), NW_OK);
  assert_int_equal(batch.B, 3);
  assert_int_equal(batch.T, 2);
  assert_int_equal(batch.n_targets, 6);
  int want_in[] = {'v', '1', 'v', '2', 'v', '1'};
  int want_tg[] = {'1', '\n', '2', '\n', '1', '\n'};
  assert_memory_equal(batch.inputs, want_in, sizeof want_in);
  assert_memory_equal(batch.targets, want_tg, sizeof want_tg);

  /* A whole training epoch: lengths 3, 7, 5, 3 in some order. */
  assert_int_equal(nw_batch_build(&batch, d, NW_SPLIT_TRAIN, 0, 4), NW_OK);
  assert_int_equal(batch.T, 6);
  assert_int_equal(batch.n_targets, 2 + 6 + 4 + 2);
  assert_true(batch.capacity_bt >= 24);
  int tokens[MAXTOK], len, prompt, counted = 0;
  for (int b = 0; b < 4; b++) {
    nw_data_example(d, NW_SPLIT_TRAIN, (uint64_t)b, tokens, &len, &prompt);
    for (int t = 0; t < batch.T; t++) {
      int in = batch.inputs[b * batch.T + t],
          tg = batch.targets[b * batch.T + t];
      if (t < len - 1) {
        assert_int_equal(in, tokens[t]);
        assert_int_equal(tg, tokens[t + 1]);
        counted++;
      } else {
        assert_int_equal(in, 0);
        assert_int_equal(tg, -1);
      }
    }
  }
  assert_int_equal(counted, batch.n_targets);
  int64_t ct = 0;
  assert_int_equal(nw_data_count_targets(d, NW_SPLIT_TRAIN, 0, 4, &ct), NW_OK);
  assert_int_equal(ct, batch.n_targets);

  /* Micro-batches of 1 over the same indices give the same rows. */
  int cap = batch.capacity_bt;
  nw_batch one;
  memset(&one, 0, sizeof one);
  int64_t sum = 0;
  for (int b = 0; b < 4; b++) {
    assert_int_equal(nw_batch_build(&one, d, NW_SPLIT_TRAIN, (uint64_t)b, 1),
                     NW_OK);
    assert_memory_equal(one.inputs, batch.inputs + b * batch.T,
                        (size_t)one.T * sizeof(int));
    assert_memory_equal(one.targets, batch.targets + b * batch.T,
                        (size_t)one.T * sizeof(int));
    sum += one.n_targets;
  }
  assert_int_equal(sum, ct);
  nw_batch_free(&one);
  assert_null(one.inputs);

  /* A smaller batch reuses the buffers. */
  int *before = batch.inputs;
  assert_int_equal(nw_batch_build(&batch, d, NW_SPLIT_VAL, 0, 1), NW_OK);
  assert_ptr_equal(batch.inputs, before);
  assert_int_equal(batch.capacity_bt, cap);
  assert_int_equal(batch.B, 1);
  assert_int_equal(batch.T, 2);
  nw_batch_free(&batch);
  nw_data_close(d);
  rm_tree(dir);
}

static void test_batch_synthetic(void **state) {
  (void)state;
  nw_data_config c = synth_cfg(9);
  nw_dataset *d = open_ok(&c, 256, 128);
  nw_batch batch;
  memset(&batch, 0, sizeof batch);
  for (uint64_t step = 0; step < 50; step++) {
    assert_int_equal(nw_batch_build(&batch, d, NW_SPLIT_TRAIN, step * 16, 16),
                     NW_OK);
    int tokens[MAXTOK], len, prompt, longest = 0;
    int64_t n = 0, ct;
    for (int b = 0; b < 16; b++) {
      nw_data_example(d, NW_SPLIT_TRAIN, step * 16 + (uint64_t)b, tokens, &len,
                      &prompt);
      longest = len > longest ? len : longest;
      n += len - 1;
      int *tg = batch.targets + b * batch.T;
      assert_int_equal(tg[len - 2], '\n');
      if (len - 1 < batch.T)
        assert_int_equal(tg[len - 1], -1);
    }
    assert_int_equal(batch.T, longest - 1);
    assert_int_equal(batch.n_targets, n);
    assert_int_equal(
        nw_data_count_targets(d, NW_SPLIT_TRAIN, step * 16, 16, &ct), NW_OK);
    assert_int_equal(ct, n);
  }
  nw_batch_free(&batch);
  nw_data_close(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_synth_sums),
      cmocka_unit_test(test_synth_reversed_digits),
      cmocka_unit_test(test_synth_deterministic),
      cmocka_unit_test(test_synth_long_tail),
      cmocka_unit_test(test_synth_truncation),
      cmocka_unit_test(test_synth_config_errors),
      cmocka_unit_test(test_text_lines_and_split),
      cmocka_unit_test(test_text_errors),
      cmocka_unit_test(test_shards_read),
      cmocka_unit_test(test_shards_errors),
      cmocka_unit_test(test_order),
      cmocka_unit_test(test_batch_build),
      cmocka_unit_test(test_batch_synthetic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
