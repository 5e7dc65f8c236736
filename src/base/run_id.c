/* run_id.c — the run id shared by the trainer and its supervisor. */
#define _GNU_SOURCE
#include "base/run_id.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

int nw_run_id(const nw_config *cfg, char *out, size_t outlen, char *err,
              size_t errlen) {
  const char *env = getenv("NIGHTWATCH_RUN_ID");
  const char *id = cfg->run.id[0] ? cfg->run.id : env;
  if (id && *id) {
    if (strlen(id) >= outlen) {
      snprintf(err, errlen, "run.id: \"%s\" is longer than %zu bytes", id,
               outlen - 1);
      return NW_ECONFIG;
    }
    snprintf(out, outlen, "%s", id);
    return 0;
  }
  char abs[PATH_MAX];
  if (!realpath(cfg->run.dir, abs)) {
    snprintf(err, errlen, "run.dir: %s: cannot resolve", cfg->run.dir);
    return NW_EIO;
  }
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (const char *p = abs; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  const char *base = strrchr(abs, '/');
  base = base && base[1] ? base + 1 : abs;
  snprintf(out, outlen, "%.40s-%08x", base, (unsigned)(h ^ (h >> 32)));
  return 0;
}
