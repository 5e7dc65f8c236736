/* fuzz_config.c — libFuzzer target: the run config parser (and its
 * cross-key validation) on arbitrary bytes. Whatever the input, it returns
 * an error value or a config; it never crashes, hangs or leaks. */
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  nw_config cfg;
  char err[1024];
  nw_config_defaults(&cfg);
  if (nw_config_parse_buffer(&cfg, "fuzz.conf", (const char *)data, size, err,
                             sizeof err) == 0)
    (void)nw_config_validate(&cfg, err, sizeof err);
  return 0;
}
