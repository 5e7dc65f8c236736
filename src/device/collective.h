/* collective.h — the data-parallel ranks of one run working together:
 * all-reduce (sum) and barrier. On the CPU device the ranks are processes on
 * this host and meet in a POSIX shared-memory segment (collective_shm.c, as
 * NCCL's shared-memory transport does within a host); on a GPU they go
 * through NCCL (cuda/collective_nccl.cu). docs/multi-gpu.md.
 * defines: nw_coll, nw_coll_kind, nw_coll_options, nw_coll_open,
 *          nw_coll_allreduce_f32, nw_coll_allreduce_f64, nw_coll_barrier,
 *          nw_coll_abort, nw_coll_close, nw_coll_why, nw_coll_shm_name,
 *          NW_COLL_MAX_F64
 *
 * Every call is collective: all ranks make the same calls in the same order.
 * Every wait has a deadline (options.timeout_s, counted from the start of
 * each call) and ends early when a peer aborts, dies or leaves: then the
 * call returns NW_EPEER (a peer failed) or NW_ETIMEDOUT (this rank waited
 * too long), nw_coll_why says which rank and why, and every later call
 * fails the same way at once. A communicator that failed is aborted for
 * everyone: peers blocked in it wake. */
#ifndef NW_COLLECTIVE_H
#define NW_COLLECTIVE_H

#include <stddef.h>

typedef struct nw_coll nw_coll;

typedef enum {
  NW_COLL_SHM = 0,  /* processes on this host, host memory buffers */
  NW_COLL_NCCL = 1, /* NCCL, buffers in the CUDA backend's device memory */
} nw_coll_kind;

typedef struct {
  nw_coll_kind kind;
  int rank, size;
  const char *comm;    /* NIGHTWATCH_COMM: names the segment or id file */
  const char *run_dir; /* NCCL: RUN_DIR/<comm>.nccl-id carries the id */
  double timeout_s;    /* the deadline of every wait (hang_timeout) */
  size_t chunk_bytes;  /* shm: the slot per rank; 0 = 1 MiB. Memory is
                          size x chunk, whatever the buffer */
} nw_coll_options;

/* At most this many doubles per nw_coll_allreduce_f64. */
#define NW_COLL_MAX_F64 64

/* Forms the communicator: returns when all o->size ranks have joined, or
 * with NW_ETIMEDOUT / NW_EPEER when they do not within the deadline.
 * NW_ECONFIG with err for options that cannot work (an empty or too long
 * comm name for a world > 1, NCCL asked for in a build without it). A
 * world of one needs no peers: no segment, every call returns at once. */
int nw_coll_open(nw_coll **out, const nw_coll_options *o, char *err,
                 size_t errlen);

/* buf (n) = the sum over ranks of every rank's buf, added in rank order so
 * that the result is bitwise the same on every rank. buf is memory of the
 * backend the kind implies (host for shm, device for NCCL). */
int nw_coll_allreduce_f32(nw_coll *c, float *buf, size_t n);
/* The same for n <= NW_COLL_MAX_F64 doubles in host memory. */
int nw_coll_allreduce_f64(nw_coll *c, double *vals, int n);
int nw_coll_barrier(nw_coll *c);

/* Fails the communicator for every rank (peers blocked in it wake with
 * NW_EPEER); for a rank that is about to exit on an error of its own. */
void nw_coll_abort(nw_coll *c);
/* Leaves and frees; NULL is fine. */
void nw_coll_close(nw_coll *c);

int nw_coll_rank(const nw_coll *c);
int nw_coll_size(const nw_coll *c);
/* Why the last failed call failed ("rank 1 died", ...); "" when none did. */
const char *nw_coll_why(const nw_coll *c);

/* The shared-memory name of the segment for comm ("/nw-coll-COMM", '/'
 * in comm made '_'): NW_ECONFIG when comm is empty or too long. */
int nw_coll_shm_name(const char *comm, char *buf, size_t len);

#endif
