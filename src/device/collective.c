/* collective.c — choosing the implementation, the world of one, and what
 * every implementation shares: the sticky first failure. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "device/collective_internal.h"

int nw_coll_fail(nw_coll *c, int rc, const char *fmt, ...) {
  if (c->failed)
    return c->failed; /* the first reason is the one that explains */
  c->failed = rc;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->why, sizeof c->why, fmt, ap);
  va_end(ap);
  return rc;
}

int nw_coll_shm_name(const char *comm, char *buf, size_t len) {
  /* NAME_MAX (255) bounds a name in /dev/shm, the leading '/' excluded */
  static const char prefix[] = "/nw-coll-";
  size_t n = comm ? strlen(comm) : 0;
  if (n == 0 || n + sizeof prefix - 2 > 255 || n + sizeof prefix > len)
    return NW_ECONFIG;
  memcpy(buf, prefix, sizeof prefix - 1);
  for (size_t i = 0; i < n; i++)
    buf[sizeof prefix - 1 + i] = comm[i] == '/' ? '_' : comm[i];
  buf[sizeof prefix - 1 + n] = 0;
  return 0;
}

int nw_coll_open(nw_coll **out, const nw_coll_options *o, char *err,
                 size_t errlen) {
  *out = NULL;
  if (o->size < 1 || o->rank < 0 || o->rank >= o->size) {
    snprintf(err, errlen, "rank %d of a world of %d", o->rank, o->size);
    return NW_ECONFIG;
  }
  if (o->kind == NW_COLL_NCCL) {
#ifdef NW_HAVE_NCCL
    /* every world, one rank too, so that one GPU runs the NCCL path */
    return nw_coll_nccl_open(out, o, err, errlen);
#else
    if (o->size > 1) {
      snprintf(err, errlen,
               "world.size = %d on device.type cuda needs NCCL, and this "
               "build has none (see docs/multi-gpu.md)",
               o->size);
      return NW_ECONFIG;
    }
#endif
  } else if (o->size > 1) {
    return nw_coll_shm_open(out, o, err, errlen);
  }
  /* A world of one: the sum over one rank is its own buffer. */
  nw_coll *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of host memory");
    return NW_EHOSTMEM;
  }
  c->rank = 0;
  c->size = 1;
  c->timeout_s = o->timeout_s;
  *out = c;
  return 0;
}

int nw_coll_allreduce_f32(nw_coll *c, float *buf, size_t n) {
  if (c->failed)
    return c->failed;
  return c->ops ? c->ops->allreduce_f32(c, buf, n) : 0;
}

int nw_coll_allreduce_f64(nw_coll *c, double *vals, int n) {
  if (n < 0 || n > NW_COLL_MAX_F64)
    return NW_EINTERNAL;
  if (c->failed)
    return c->failed;
  return c->ops ? c->ops->allreduce_f64(c, vals, n) : 0;
}

int nw_coll_barrier(nw_coll *c) {
  if (c->failed)
    return c->failed;
  return c->ops ? c->ops->barrier(c) : 0;
}

void nw_coll_abort(nw_coll *c) {
  if (!c)
    return;
  if (c->ops)
    c->ops->abort(c);
  nw_coll_fail(c, NW_EPEER, "rank %d aborted the collective", c->rank);
}

void nw_coll_close(nw_coll *c) {
  if (!c)
    return;
  if (c->ops)
    c->ops->close(c);
  else
    free(c);
}

int nw_coll_rank(const nw_coll *c) { return c->rank; }
int nw_coll_size(const nw_coll *c) { return c->size; }
const char *nw_coll_why(const nw_coll *c) { return c->why; }
