/* error.h — the one list of nightwatch error codes.
 * defines: NW_E* codes, nw_strerror, NW_TRY
 *
 * Functions return int: 0 on success, a negative NW_E* code on failure.
 * Only main() turns an error into an exit code. */
#ifndef NW_ERROR_H
#define NW_ERROR_H

#define NW_ERRNO_MAP(X)                                                        \
  X(NOMEM, "out of device memory")                                             \
  X(HOSTMEM, "out of host memory")                                             \
  X(CONFIG, "configuration error")                                             \
  X(IO, "input/output error")                                                  \
  X(DATA, "malformed data")                                                    \
  X(SHAPE, "shape mismatch")                                                   \
  X(NUMERIC, "numerical check failed")                                         \
  X(BUSY, "resource busy")                                                     \
  X(NOTFOUND, "not found")                                                     \
  X(SYS, "system call failed")                                                 \
  X(INTERNAL, "internal error")                                                \
  X(PEER, "a peer rank failed")                                                \
  X(TIMEDOUT, "timed out")                                                     \
  X(NOSPC, "no space left on device")                                          \
  X(DAMAGED, "checkpoints exist and none verifies")                            \
  X(STORAGE, "checkpoints cannot be written")

enum {
  NW_OK = 0,
#define NW_ERR_ENUM(name, msg) NW_E##name,
  NW__EFIRST = -100,
  NW_ERRNO_MAP(NW_ERR_ENUM)
#undef NW_ERR_ENUM
};

const char *nw_strerror(int err);

/* Propagate an error to the caller. */
#define NW_TRY(expr)                                                           \
  do {                                                                         \
    int nw__rc = (expr);                                                       \
    if (nw__rc < 0)                                                            \
      return nw__rc;                                                           \
  } while (0)

#endif
