/* ledger.h — the recovery ledger: RUN_DIR/ledger.jsonl, one JSON object per
 * line, appended (O_APPEND) and fsynced line by line, so that what the
 * supervisor did survives any crash. docs/supervisor.md lists the fields.
 * defines: nw_ledger, nw_ledger_open, nw_ledger_append, nw_ledger_close,
 *          nw_ledger_settings, nw_ledger_now_iso, nw_ledger_read */
#ifndef NW_LEDGER_H
#define NW_LEDGER_H

#include <stddef.h>

#include <jansson.h>

#include "base/config.h"

#define NW_LEDGER_FILE "ledger.jsonl"

typedef struct {
  int fd; /* -1 when closed */
  char path[4096];
} nw_ledger;

/* Opens (creates) DIR/ledger.jsonl for appending. */
int nw_ledger_open(nw_ledger *l, const char *dir, char *err, size_t errlen);

/* Sets "time" (ISO 8601 UTC) on obj, writes it as one line with one
 * write(2), fsyncs, and steals the reference (NULL obj: NW_EHOSTMEM). A
 * record is whole or absent: a short write (NW_ENOSPC on a full disk) is
 * cut back, and a torn last line of an earlier failure is ended with a
 * newline before the next record, never continued. */
int nw_ledger_append(nw_ledger *l, json_t *obj);

void nw_ledger_close(nw_ledger *l);

/* {micro, accum, effective, world, max_len, eval_batch, release_cache}: the
 * settings recovery changes, as a new reference. */
json_t *nw_ledger_settings(const nw_config *cfg);

/* "2026-11-23T16:40:01.250Z" */
void nw_ledger_now_iso(char *buf, size_t len);

/* Calls fn for each line of the ledger at path that parses as a JSON object
 * (others are skipped and counted in *bad, which may be NULL). fn borrows
 * the object. Returns 0, NW_ENOTFOUND or NW_EIO. */
int nw_ledger_read(const char *path, void (*fn)(void *user, json_t *entry),
                   void *user, int *bad);

#endif
