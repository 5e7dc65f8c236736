/* data_synthetic.c — the built-in task: multi-digit addition as byte tokens.
 *
 * Example i of a split is "A+B=S\n" with S written least significant digit
 * first ("27+15=24\n" for 27 + 15 = 42): the model then produces the sum in
 * the order a carry propagates. Every random choice of example i is a hash
 * of (seed, split, i, what is drawn), so any example is produced in time
 * proportional to its length without generating the ones before it. */
#include <stdio.h>

#include "base/error.h"
#include "trainer/data/data_internal.h"

/* Separate streams for the two splits. */
static const uint64_t nw__synth_split_key[2] = {0x747261696e5f7631ull,
                                                0x76616c5f5f5f7631ull};

/* What is drawn for an example: slot numbers of the hash counter. */
enum {
  NW__DRAW_LONG = 0,
  NW__DRAW_NA = 1,
  NW__DRAW_NB = 2,
  NW__DRAW_DIGIT = 8
};

static uint64_t nw__synth_draw(uint64_t key, uint64_t slot) {
  return nw__mix64(key + (slot + 1) * NW__GOLDEN);
}

/* Digit j (0 = least significant) of an operand with n digits: the top
 * digit of a number with more than one digit is never 0. */
static int nw__synth_digit(uint64_t key, int operand, int n, int j) {
  if (j >= n)
    return 0;
  uint64_t r = nw__synth_draw(key, NW__DRAW_DIGIT + 2 * (uint64_t)j + operand);
  if (j == n - 1 && n > 1)
    return 1 + (int)(r % 9);
  return (int)(r % 10);
}

/* Uniform in [lo, hi]. */
static int nw__synth_uniform(uint64_t r, int lo, int hi) {
  return lo + (int)(r % (uint64_t)(hi - lo + 1));
}

int nw__synth_check(const nw_data_config *cfg, int vocab_size, int max_seq_len,
                    char *err, size_t errlen) {
  if (cfg->short_max_digits < 1) {
    snprintf(err, errlen, "data.short_max_digits: must be >= 1, got %d",
             cfg->short_max_digits);
    return NW_ECONFIG;
  }
  if (cfg->long_max_digits < cfg->short_max_digits) {
    snprintf(err, errlen,
             "data.long_max_digits: must be >= data.short_max_digits (%d), "
             "got %d",
             cfg->short_max_digits, cfg->long_max_digits);
    return NW_ECONFIG;
  }
  if (!(cfg->long_fraction >= 0.0 && cfg->long_fraction <= 1.0)) {
    snprintf(err, errlen, "data.long_fraction: must be in [0, 1], got %g",
             cfg->long_fraction);
    return NW_ECONFIG;
  }
  if (vocab_size < 256) {
    snprintf(err, errlen,
             "model.vocab_size: must be >= 256 for the synthetic task (byte "
             "tokens), got %d",
             vocab_size);
    return NW_ECONFIG;
  }
  /* The shortest example, "1+2=3\n", must fit whole. */
  if (max_seq_len < 5) {
    snprintf(err, errlen,
             "model.max_seq_len: must be >= 5 for the synthetic task (the "
             "shortest example has 6 tokens), got %d",
             max_seq_len);
    return NW_ECONFIG;
  }
  return NW_OK;
}

void nw__synth_example(const nw_data_config *cfg, nw_split split,
                       uint64_t index, int cap, int *tokens, int *len,
                       int *prompt_len) {
  /* mix64 is a bijection, so distinct indices give distinct keys. */
  uint64_t key =
      nw__mix64(nw__mix64(cfg->seed ^ nw__synth_split_key[split]) ^ index);
  double u = (double)(nw__synth_draw(key, NW__DRAW_LONG) >> 11) * 0x1.0p-53;
  int lo = 1, hi = cfg->short_max_digits;
  if (u < cfg->long_fraction && cfg->long_max_digits > cfg->short_max_digits) {
    lo = cfg->short_max_digits + 1;
    hi = cfg->long_max_digits;
  }
  int na = nw__synth_uniform(nw__synth_draw(key, NW__DRAW_NA), lo, hi);
  int nb = nw__synth_uniform(nw__synth_draw(key, NW__DRAW_NB), lo, hi);

  /* Every loop stops once cap tokens are written: a truncated example
   * costs no more than its kept tokens. */
  int pos = 0;
  for (int j = na - 1; j >= 0 && pos < cap; j--)
    tokens[pos++] = '0' + nw__synth_digit(key, 0, na, j);
  if (pos < cap)
    tokens[pos++] = '+';
  for (int j = nb - 1; j >= 0 && pos < cap; j--)
    tokens[pos++] = '0' + nw__synth_digit(key, 1, nb, j);
  if (pos < cap)
    tokens[pos++] = '=';
  *prompt_len = pos;
  int nmax = na > nb ? na : nb, carry = 0;
  for (int j = 0; j < nmax && pos < cap; j++) {
    int s =
        nw__synth_digit(key, 0, na, j) + nw__synth_digit(key, 1, nb, j) + carry;
    tokens[pos++] = '0' + s % 10;
    carry = s / 10;
  }
  if (carry && pos < cap)
    tokens[pos++] = '1';
  if (pos < cap)
    tokens[pos++] = NW_DATA_ANSWER_END;
  *len = pos;
}
