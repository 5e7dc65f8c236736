/* world.c — resolving world.size and reading a rank's environment. */
#include "protocol/world.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

int nw_world_gpu_count(void) {
  const char *vis = getenv("CUDA_VISIBLE_DEVICES");
  if (vis) {
    /* "0,1,3" -> 3; "" or "-1" hide every GPU */
    int n = 0;
    for (const char *p = vis; *p;) {
      size_t len = strcspn(p, ",");
      if (len && !(len == 2 && !strncmp(p, "-1", 2)))
        n++;
      else if (len) /* "-1" ends the list: CUDA ignores what follows */
        break;
      p += len;
      if (*p == ',')
        p++;
    }
    return n;
  }
  DIR *d = opendir("/proc/driver/nvidia/gpus");
  if (!d)
    return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

void nw_world_resolve(nw_config *cfg) {
  if (cfg->batch.world > 0)
    return;
  int gpus = 0;
  if (!strcmp(cfg->device.type, "cuda") || !strcmp(cfg->device.type, "auto"))
    gpus = nw_world_gpu_count();
  cfg->batch.world = gpus > 0 ? gpus : 1;
}

void nw_world_device_name(const nw_config *cfg, int rank, char *buf,
                          size_t len) {
  if (cfg->batch.world <= 1)
    snprintf(buf, len, "%s", cfg->device.name);
  else
    snprintf(buf, len, "%s.%d", cfg->device.name, rank);
}

static int nw_world_int(const char *name, int *out, char *err, size_t errlen) {
  const char *v = getenv(name);
  if (!v)
    return 1;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (!*v || *end || errno || x < 0 || x > 4096) {
    snprintf(err, errlen, "%s=\"%.32s\" is not an integer in [0, 4096]", name,
             v);
    return NW_ECONFIG;
  }
  *out = (int)x;
  return 0;
}

int nw_world_from_env(const nw_config *cfg, nw_world *w, char *err,
                      size_t errlen) {
  memset(w, 0, sizeof *w);
  w->size = cfg->batch.world > 0 ? cfg->batch.world : 1;
  int size = w->size, rc;
  if ((rc = nw_world_int(NW_WORLD_ENV_RANK, &w->rank, err, errlen)) < 0 ||
      (rc = nw_world_int(NW_WORLD_ENV_SIZE, &size, err, errlen)) < 0)
    return rc;
  if (size != w->size) {
    snprintf(err, errlen, "%s=%d but world.size is %d", NW_WORLD_ENV_SIZE, size,
             w->size);
    return NW_ECONFIG;
  }
  if (w->rank >= w->size) {
    snprintf(err, errlen, "%s=%d is not below world.size %d", NW_WORLD_ENV_RANK,
             w->rank, w->size);
    return NW_ECONFIG;
  }
  const char *comm = getenv(NW_WORLD_ENV_COMM);
  if (comm && strlen(comm) >= sizeof w->comm) {
    snprintf(err, errlen, "%s is longer than %zu bytes", NW_WORLD_ENV_COMM,
             sizeof w->comm - 1);
    return NW_ECONFIG;
  }
  snprintf(w->comm, sizeof w->comm, "%s", comm ? comm : "");
  return 0;
}
