/* fuzz_policy.c — libFuzzer target: the recovery-policy parser on arbitrary
 * bytes; a policy that parses is also printed (the chains' summaries). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "recovery/policy.h"

static void nw_fuzz_ignore(void *user, const char *name, int line,
                           const char *msg) {
  (void)user, (void)name, (void)line, (void)msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nw_policy p;
  char err[4096];
  if (nw_policy_parse_buffer("fuzz.conf", (const char *)data, size, &p,
                             nw_fuzz_ignore, NULL, err, sizeof err) == 0) {
    char buf[4096];
    for (int c = 0; c < NW_CAUSE_COUNT; c++)
      nw_policy_chain_summary(&p, (nw_cause)c, buf, sizeof buf);
  }
  return 0;
}
