/* collective_internal.h — what an implementation of collective.h provides:
 * a table of operations behind the common nw_coll header, which each
 * implementation places first in its own state. C and CUDA C++ include it.
 * defines: nw_coll_ops, struct nw_coll, nw_coll_shm_open, nw_coll_nccl_open,
 *          nw_coll_fail */
#ifndef NW_COLLECTIVE_INTERNAL_H
#define NW_COLLECTIVE_INTERNAL_H

#include "device/collective.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nw_coll_ops {
  int (*allreduce_f32)(nw_coll *c, float *buf, size_t n);
  int (*allreduce_f64)(nw_coll *c, double *vals, int n);
  int (*barrier)(nw_coll *c);
  void (*abort)(nw_coll *c);
  void (*close)(nw_coll *c); /* frees c */
} nw_coll_ops;

struct nw_coll {
  const nw_coll_ops *ops; /* NULL: a world of one, nothing to do */
  int rank, size;
  double timeout_s;
  int failed; /* the first error (sticky); 0 while healthy */
  char why[256];
};

/* Records the first failure with its reason; returns rc. */
int nw_coll_fail(nw_coll *c, int rc, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__((format(printf, 3, 4)))
#endif
    ;

int nw_coll_shm_open(nw_coll **out, const nw_coll_options *o, char *err,
                     size_t errlen);
#ifdef NW_HAVE_NCCL
int nw_coll_nccl_open(nw_coll **out, const nw_coll_options *o, char *err,
                      size_t errlen);
#endif

#ifdef __cplusplus
}
#endif

#endif
