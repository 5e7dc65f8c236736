/* ckpt.h — HDF5 checkpoints: one file per checkpoint, written durably,
 * verified before it is ever loaded.
 * defines: nw_ckpt_state, nw_ckpt_write, nw_ckpt_read, nw_ckpt_free,
 *          nw_ckpt_verify, nw_ckpt_verify_isolated, nw_ckpt_list,
 *          nw_ckpt_find_latest, nw_ckpt_retain, nw_ckpt_path
 *
 * Layout (docs/checkpoint-format.md): parameters as model/<state_dict key>,
 * AdamW moments as optimizer/exp_avg/<key> and optimizer/exp_avg_sq/<key>,
 * float32 with the tensor's shape; a CRC-32C of each dataset's bytes as its
 * attribute "crc32c"; the run's position and settings as attributes of the
 * root group; the full config text as the dataset "config". */
#ifndef NW_CKPT_H
#define NW_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "model/size.h" // defines: nw_tensor_info

#define NW_CKPT_FORMAT_VERSION 1
#define NW_CKPT_SUBDIR "checkpoints" /* RUN_DIR/checkpoints/ */

/* Everything an exact continuation needs. Tensors are host memory. */
typedef struct {
  int64_t step;        /* optimizer steps completed */
  int64_t tokens_seen; /* target tokens trained on so far */
  uint64_t data_index; /* next example index of the training stream */
  uint64_t data_seed;  /* data.seed in force (the order's only other input) */
  uint64_t init_seed;  /* train.seed */
  int effective, micro, accum, world; /* batch settings in force */
  int max_seq_len;                    /* model.max_seq_len in force */
  int eval_batch, eval_release_cache; /* eval settings in force */
  int64_t last_eval_step;             /* -1 when none */
  nw_model_config shape;              /* the model's shape */
  char *config_text;                  /* nw_config_dump of the settings */
  int n_tensors;
  nw_tensor_info *tensors; /* (n_tensors): names, offsets, shapes */
  size_t num_params;
  float *params;     /* (num_params) */
  float *exp_avg;    /* (num_params) or NULL: no optimizer state yet */
  float *exp_avg_sq; /* (num_params) or NULL */
} nw_ckpt_state;

/* Writes st to `path` durably: PATH.tmp, close (HDF5 flushes), fsync, rename,
 * fsync of the directory. On any failure (disk full, I/O error) the
 * temporary is removed, nothing at `path` changed, and err says what failed.
 * A write that cannot fit by statvfs is not started (NW_ENOSPC).
 * Test-only fault switches (off by default): NIGHTWATCH_TEST_CKPT_FAIL=write
 * makes it fail after writing half the file, to prove the cleanup;
 * =skip-space-check skips the statvfs check, so that the fault suite can
 * drive the HDF5 write itself into a full disk. */
int nw_ckpt_write(const char *path, const nw_ckpt_state *st, char *err,
                  size_t errlen);

/* Reads and verifies a checkpoint into st (allocates; nw_ckpt_free). Every
 * dataset's checksum, shape and the format version are checked: a file
 * that fails is NW_EDATA with err naming the file and the dataset. */
int nw_ckpt_read(const char *path, nw_ckpt_state *st, char *err, size_t errlen);
void nw_ckpt_free(nw_ckpt_state *st);

/* Full verification without keeping the data. In-process: use only on a
 * file this process wrote; a damaged file can hang HDF5 (HDFGroup/hdf5#1707).
 */
int nw_ckpt_verify(const char *path, char *err, size_t errlen);

/* nw_ckpt_verify in a forked child with a time limit: a hang or crash of
 * the library on a damaged file is a failed verification (NW_EDATA, err
 * says "timed out after N s" or the signal), never a hang of the caller.
 * Anything but a regular file fails at once, unopened (a FIFO would block
 * the reader). */
int nw_ckpt_verify_isolated(const char *path, double timeout_s, char *err,
                            size_t errlen);

/* What a search of a run's checkpoints tells its caller (every member may
 * be NULL). */
typedef struct {
  /* A candidate that failed verification and where it was moved to
   * (RUN_DIR/checkpoints/damaged/NAME; "" when it could not be moved). */
  void (*skipped)(void *user, const char *path, const char *why,
                  const char *moved_to);
  /* About once a second while one verification runs: a heartbeat for a
   * supervisor that counts silence as a hang. */
  void (*waiting)(void *user, const char *path, double seconds);
  void *user;
} nw_ckpt_search;

/* nw_ckpt_verify_isolated that calls search->waiting while it waits. */
int nw_ckpt_verify_watched(const char *path, double timeout_s,
                           const nw_ckpt_search *search, char *err,
                           size_t errlen);

/* RUN_DIR/checkpoints/ckpt-<step, 10 digits>.h5 */
void nw_ckpt_path(const char *run_dir, int64_t step, char *buf, size_t len);

/* Checkpoint files of RUN_DIR, newest (highest step) first; *n entries of
 * paths[max][len]. Temporary files are not listed. */
int nw_ckpt_list(const char *run_dir, char (*paths)[NW_PATH_MAX], int max,
                 int *n, char *err, size_t errlen);

/* The newest checkpoint of RUN_DIR that verifies (isolated), newest by
 * the step in its name; a file whose content holds another step fails
 * verification. Each candidate that fails is moved aside to
 * RUN_DIR/checkpoints/damaged/ (never deleted, never overwritten: a later
 * write of the same step cannot touch it) and reported through search
 * (may be NULL). NW_ENOTFOUND when the run has no checkpoints;
 * NW_EDAMAGED when it has some and none verifies (err lists them and why). */
int nw_ckpt_find_latest(const char *run_dir, double timeout_s,
                        const nw_ckpt_search *search, char *path, size_t len,
                        char *err, size_t errlen);

/* Moves path into RUN_DIR/checkpoints/SUBDIR/ under its own name (NAME.1,
 * NAME.2 ... when taken), durably; moved_to gets the new path. */
int nw_ckpt_set_aside(const char *run_dir, const char *path, const char *subdir,
                      char *moved_to, size_t len);

/* "ckpt-<10 digits>.h5": the step; -1 for any other name. */
int64_t nw_ckpt_name_step(const char *path);

/* Keep-last-N: removes checkpoints of RUN_DIR older than the newest
 * `keep` ones, but never `durable_newest` itself nor anything newer than the
 * newest file that verifies; leftover temporaries of dead writers are
 * removed too. Returns how many files were removed. */
int nw_ckpt_retain(const char *run_dir, int keep, const char *durable_newest);

#endif
