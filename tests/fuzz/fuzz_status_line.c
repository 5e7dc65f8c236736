/* fuzz_status_line.c — libFuzzer target: the supervisor's reading of a
 * trainer's status line (docs/protocol.md) on arbitrary bytes, as rank 0
 * and as another rank. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/sup_progress.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *line = malloc(size + 1);
  if (!line)
    return 0;
  memcpy(line, data, size);
  line[size] = '\0'; /* the loop hands over NUL-terminated lines */
  nw_sup_progress p;
  nw_sup_progress_init(&p);
  (void)nw_sup_progress_line(&p, 0, line, 1.0);
  (void)nw_sup_progress_line(&p, 1, line, 2.0);
  free(line);
  return 0;
}
