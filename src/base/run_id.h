/* run_id.h — the run id every process of one run shares, so that a second
 * trainer of the same run on the same device is provably a duplicate.
 * defines: nw_run_id */
#ifndef NW_RUN_ID_H
#define NW_RUN_ID_H

#include <stddef.h>

#include "base/config.h"

/* config run.id, else $NIGHTWATCH_RUN_ID, else basename(realpath(run.dir))
 * + "-" + 8 hex digits of FNV-1a of the absolute path. The run directory must
 * exist for the derived form. Returns 0, NW_ECONFIG (too long) or NW_EIO
 * (run.dir cannot be resolved), with err naming the key. */
int nw_run_id(const nw_config *cfg, char *out, size_t outlen, char *err,
              size_t errlen);

#endif
