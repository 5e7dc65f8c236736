/* collective_nccl.cu — collective.h over NCCL, for device.type cuda (every
 * world size, one rank too, so that one GPU runs this path).
 *
 * The unique id goes from rank 0 to the others through the run directory:
 * RUN_DIR/<NIGHTWATCH_COMM>.nccl-id, written atomically, polled for by the
 * others against the deadline, removed by rank 0 once the communicator
 * exists (all ranks have read it by then: initialisation is collective).
 *
 * The communicator is non-blocking (ncclConfig_t.blocking = 0): init and
 * every collective return at once, and this file polls
 * ncclCommGetAsyncError and the stream against the deadline, so a dead or
 * hung peer ends in NW_EPEER / NW_ETIMEDOUT and ncclCommAbort, never in a
 * wait without end. All work runs on the backend's one stream (nw_cu), in
 * order with the kernels that produced the gradients. */
#include <errno.h>  // defines: errno
#include <nccl.h>   // defines: ncclCommInitRankConfig, ncclAllReduce, ...
#include <stdio.h>  // defines: snprintf, FILE
#include <stdlib.h> // defines: calloc, free
#include <string.h> // defines: strerror
#include <time.h>   // defines: clock_gettime, nanosleep
#include <unistd.h> // defines: unlink

#include "cuda/cuda_internal.cuh" // defines: nw_cu (the backend's stream)

extern "C" {
#include "base/error.h"                 // defines: NW_E*
#include "base/fsutil.h"                // defines: nw_write_file_atomic
#include "device/collective_internal.h" // defines: struct nw_coll, nw_coll_ops
}

typedef struct {
  nw_coll base; /* first: the common header */
  ncclComm_t comm;
  double *dvals; /* (NW_COLL_MAX_F64) device scratch of allreduce_f64 */
} nw_nccl;

static double nw_nccl_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void nw_nccl_nap(void) {
  struct timespec ts = {0, 200000}; /* 0.2 ms: collectives are short */
  nanosleep(&ts, NULL);
}

/* Fails the communicator: aborted, so that NCCL's own kernels and proxy
 * threads stop waiting for the peer (the peers see it as an error). */
static int nw_nccl_fail(nw_nccl *n, int rc, const char *what, ncclResult_t r) {
  nw_coll_fail(&n->base, rc, "rank %d: %s: %s", n->base.rank, what,
               r == ncclSuccess ? "deadline passed" : ncclGetErrorString(r));
  if (n->comm) {
    ncclCommAbort(n->comm);
    n->comm = NULL;
  }
  return rc;
}

/* Waits until the communicator has no operation in progress (init, or a
 * collective being enqueued). */
static int nw_nccl_settle(nw_nccl *n, double deadline, const char *what) {
  for (;;) {
    ncclResult_t st;
    ncclResult_t r = ncclCommGetAsyncError(n->comm, &st);
    if (r != ncclSuccess)
      return nw_nccl_fail(n, NW_EPEER, what, r);
    if (st == ncclSuccess)
      return 0;
    if (st != ncclInProgress)
      return nw_nccl_fail(n, NW_EPEER, what, st);
    if (nw_nccl_now() >= deadline)
      return nw_nccl_fail(n, NW_ETIMEDOUT, what, ncclSuccess);
    nw_nccl_nap();
  }
}

/* Waits for the stream (the collective and what came before it), watching
 * the communicator's asynchronous error and the deadline. */
static int nw_nccl_wait_stream(nw_nccl *n, double deadline, const char *what) {
  for (;;) {
    cudaError_t e = cudaStreamQuery(nw_cu.stream);
    if (e == cudaSuccess)
      return 0;
    if (e != cudaErrorNotReady) {
      nw_coll_fail(&n->base, NW_EPEER, "rank %d: %s: %s", n->base.rank, what,
                   cudaGetErrorString(e));
      if (n->comm) {
        ncclCommAbort(n->comm);
        n->comm = NULL;
      }
      return NW_EPEER;
    }
    ncclResult_t st;
    ncclResult_t r = ncclCommGetAsyncError(n->comm, &st);
    if (r != ncclSuccess || (st != ncclSuccess && st != ncclInProgress))
      return nw_nccl_fail(n, NW_EPEER, what, r != ncclSuccess ? r : st);
    if (nw_nccl_now() >= deadline)
      return nw_nccl_fail(n, NW_ETIMEDOUT, what, ncclSuccess);
    nw_nccl_nap();
  }
}

static int nw_nccl_allreduce(nw_nccl *n, void *buf, size_t count,
                             ncclDataType_t type, const char *what) {
  double deadline = nw_nccl_now() + n->base.timeout_s;
  ncclResult_t r =
      ncclAllReduce(buf, buf, count, type, ncclSum, n->comm, nw_cu.stream);
  if (r != ncclSuccess && r != ncclInProgress)
    return nw_nccl_fail(n, NW_EPEER, what, r);
  NW_TRY(nw_nccl_settle(n, deadline, what));
  return nw_nccl_wait_stream(n, deadline, what);
}

/* NCCL's ring and tree sums are deterministic for a given communicator,
 * size and count, and every rank receives the same reduced bytes. */
static int nw_nccl_allreduce_f32(nw_coll *c, float *buf, size_t count) {
  return nw_nccl_allreduce((nw_nccl *)c, buf, count, ncclFloat32, "all-reduce");
}

static int nw_nccl_allreduce_f64(nw_coll *c, double *vals, int count) {
  nw_nccl *n = (nw_nccl *)c;
  size_t bytes = (size_t)count * sizeof(double);
  if (cudaMemcpyAsync(n->dvals, vals, bytes, cudaMemcpyHostToDevice,
                      nw_cu.stream) != cudaSuccess)
    return nw_coll_fail(c, NW_EPEER, "rank %d: copying %d values: %s", c->rank,
                        count, cudaGetErrorString(cudaGetLastError()));
  NW_TRY(nw_nccl_allreduce(n, n->dvals, (size_t)count, ncclFloat64,
                           "all-reduce of step values"));
  /* the stream is idle now: this copy cannot wait on a peer */
  if (cudaMemcpy(vals, n->dvals, bytes, cudaMemcpyDeviceToHost) != cudaSuccess)
    return nw_coll_fail(c, NW_EPEER, "rank %d: copying %d values back: %s",
                        c->rank, count, cudaGetErrorString(cudaGetLastError()));
  return 0;
}

static int nw_nccl_barrier(nw_coll *c) {
  /* NCCL has no barrier: a one-value sum is one, and also waits */
  double one = 1;
  return nw_nccl_allreduce_f64(c, &one, 1);
}

static void nw_nccl_abort(nw_coll *c) {
  nw_nccl *n = (nw_nccl *)c;
  if (n->comm) {
    ncclCommAbort(n->comm); /* the peers' collectives fail */
    n->comm = NULL;
  }
}

static void nw_nccl_close(nw_coll *c) {
  nw_nccl *n = (nw_nccl *)c;
  if (n->comm) {
    /* a healthy communicator is finalised, which waits for the peers'
     * outstanding work; bounded by the deadline like everything else */
    double deadline = nw_nccl_now() + c->timeout_s;
    if (ncclCommFinalize(n->comm) == ncclSuccess &&
        nw_nccl_settle(n, deadline, "finalising") == 0)
      ncclCommDestroy(n->comm);
    else if (n->comm)
      ncclCommAbort(n->comm);
    n->comm = NULL;
  }
  if (n->dvals)
    cudaFree(n->dvals);
  free(n);
}

static const nw_coll_ops nw_nccl_ops = {
    nw_nccl_allreduce_f32, nw_nccl_allreduce_f64, nw_nccl_barrier,
    nw_nccl_abort,         nw_nccl_close,
};

/* Rank 0's id for the others, or theirs read back: the file holds exactly
 * the id's bytes (written atomically, so a partial file never shows). */
static int nw_nccl_exchange_id(const nw_coll_options *o, ncclUniqueId *id,
                               double deadline, char *path, size_t pathlen,
                               char *err, size_t errlen) {
  snprintf(path, pathlen, "%s/%s.nccl-id", o->run_dir, o->comm);
  if (o->rank == 0) {
    ncclResult_t r = ncclGetUniqueId(id);
    if (r != ncclSuccess) {
      snprintf(err, errlen, "ncclGetUniqueId: %s", ncclGetErrorString(r));
      return NW_ESYS;
    }
    return nw_write_file_atomic(path, id, sizeof *id, err, errlen);
  }
  while (nw_nccl_now() < deadline) {
    FILE *f = fopen(path, "rb");
    if (f) {
      size_t got = fread(id, 1, sizeof *id, f);
      fclose(f);
      if (got == sizeof *id)
        return 0;
    }
    struct timespec ts = {0, 10000000}; /* 10 ms */
    nanosleep(&ts, NULL);
  }
  snprintf(err, errlen, "rank %d: no NCCL id from rank 0 in %s within %.1f s",
           o->rank, path, o->timeout_s);
  return NW_ETIMEDOUT;
}

extern "C" int nw_coll_nccl_open(nw_coll **out, const nw_coll_options *o,
                                 char *err, size_t errlen) {
  *out = NULL;
  if (!o->comm || !o->comm[0] || strchr(o->comm, '/')) {
    if (o->size > 1) {
      snprintf(err, errlen,
               "a world of %d ranks needs NIGHTWATCH_COMM, a file name "
               "(the supervisor sets it)",
               o->size);
      return NW_ECONFIG;
    }
  }
  nw_nccl *n = (nw_nccl *)calloc(1, sizeof *n);
  if (!n) {
    snprintf(err, errlen, "out of host memory");
    return NW_EHOSTMEM;
  }
  n->base.ops = &nw_nccl_ops;
  n->base.rank = o->rank;
  n->base.size = o->size;
  n->base.timeout_s = o->timeout_s;
  double deadline = nw_nccl_now() + o->timeout_s;
  char path[4096] = "";
  ncclUniqueId id;
  int rc;
  if (o->size == 1) {
    /* nobody to tell: the id stays in this process */
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
      snprintf(err, errlen, "ncclGetUniqueId: %s", ncclGetErrorString(r));
      free(n);
      return NW_ESYS;
    }
  } else if ((rc = nw_nccl_exchange_id(o, &id, deadline, path, sizeof path, err,
                                       errlen)) < 0) {
    free(n);
    return rc;
  }
  /* Outside the memory domain: 512 bytes, for the lifetime of the run. */
  if (cudaMalloc((void **)&n->dvals, NW_COLL_MAX_F64 * sizeof(double)) !=
      cudaSuccess) {
    snprintf(err, errlen, "cudaMalloc of the collective's scratch: %s",
             cudaGetErrorString(cudaGetLastError()));
    if (o->rank == 0 && path[0])
      unlink(path);
    free(n);
    return NW_ENOMEM;
  }
  ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
  cfg.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&n->comm, o->size, id, o->rank, &cfg);
  if (r != ncclSuccess && r != ncclInProgress) {
    snprintf(err, errlen, "ncclCommInitRankConfig (rank %d of %d): %s", o->rank,
             o->size, ncclGetErrorString(r));
    if (n->comm)
      ncclCommAbort(n->comm);
    n->comm = NULL;
    rc = NW_EPEER;
  } else {
    rc = nw_nccl_settle(n, deadline, "forming the world");
    if (rc < 0)
      snprintf(err, errlen, "%s", n->base.why);
  }
  if (o->rank == 0 && path[0])
    unlink(path); /* read by everyone, or of no use any more */
  if (rc < 0) {
    nw_nccl_close(&n->base);
    return rc;
  }
  *out = &n->base;
  return 0;
}
