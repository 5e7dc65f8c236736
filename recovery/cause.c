/* cause.c — cause names, one table in enum order. */
#include "recovery/cause.h"

#include <string.h>

#include "base/error.h"

static const char *const nw__cause_names[NW_CAUSE_COUNT] = {
    [NW_CAUSE_UNKNOWN] = "unknown",
    [NW_CAUSE_EVAL_CACHE] = "eval-cache",
    [NW_CAUSE_DUPLICATE] = "duplicate-process",
    [NW_CAUSE_ACTIVATION] = "activation",
    [NW_CAUSE_SEQUENCE_LENGTH] = "sequence-length",
};

const char *nw_cause_name(nw_cause c) {
  if ((int)c < 0 || c >= NW_CAUSE_COUNT)
    return "invalid";
  return nw__cause_names[c];
}

int nw_cause_parse(const char *name, nw_cause *out) {
  if (!name)
    return NW_ENOTFOUND;
  for (int c = 0; c < NW_CAUSE_COUNT; c++) {
    if (strcmp(name, nw__cause_names[c]) == 0) {
      *out = (nw_cause)c;
      return 0;
    }
  }
  return NW_ENOTFOUND;
}
