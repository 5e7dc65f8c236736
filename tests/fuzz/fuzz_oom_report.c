/* fuzz_oom_report.c — libFuzzer target: the OOM report reader on arbitrary
 * bytes (the supervisor reads a file any process could have written). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "protocol/oom_report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nw_oom_report *r = malloc(sizeof *r); /* large for the stack */
  char err[512];
  if (r)
    (void)nw_oom_report_parse("fuzz.json", (const char *)data, size, r, err,
                              sizeof err);
  free(r);
  return 0;
}
