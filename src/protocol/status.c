/* status.c — status lines on NIGHTWATCH_STATUS_FD. */
#include "protocol/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void nw_status_open(nw_status *s) {
  s->fd = -1;
  s->rank = -1;
  const char *v = getenv("NIGHTWATCH_STATUS_FD");
  if (!v || !*v)
    return;
  char *end;
  long fd = strtol(v, &end, 10);
  if (*end || fd < 0 || fd > 65535 || fcntl((int)fd, F_GETFD) < 0)
    return;
  s->fd = (int)fd;
}

void nw_status_emit(nw_status *s, json_t *obj) {
  if (!obj)
    return;
  if (s->fd >= 0) {
    if (s->rank >= 0)
      json_object_set_new(obj, "rank", json_integer(s->rank));
    char *text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(9));
    if (text) {
      size_t n = strlen(text);
      char *line = malloc(n + 2);
      if (line) {
        memcpy(line, text, n);
        line[n] = '\n';
        ssize_t w;
        do
          w = write(s->fd, line, n + 1);
        while (w < 0 && errno == EINTR);
        if (w < 0 && errno == EPIPE)
          s->fd = -1; /* the supervisor is gone; stop writing */
        free(line);
      }
      free(text);
    }
  }
  json_decref(obj);
}
