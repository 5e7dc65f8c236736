/* ckpt_fixture.h — what the checkpoint tests (test_ckpt*.c) share: a
 * small real model whose state is written, files to damage, and the check
 * that a damaged file is refused and passed over for the previous good one.
 * defines: nw_ckfx, nw_ckfx_fixture, nw_ckfx_shape, nw_ckfx_setup,
 *          nw_ckfx_teardown, nw_ckfx_rng, nw_ckfx_uniform, nw_ckfx_state,
 *          nw_ckfx_write_step, nw_ckfx_slurp, nw_ckfx_spill,
 *          nw_ckfx_count_tmp, nw_ckfx_exists, nw_ckfx_rm_rf, nw_ckfx_locate,
 *          nw_ckfx_skips, nw_ckfx_on_skip, nw_ckfx_assert_rejected,
 *          nw_ckfx_flip */
#ifndef NW_TEST_CKPT_FIXTURE_H
#define NW_TEST_CKPT_FIXTURE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "checkpoints/ckpt.h"
#include "device/mem.h"
#include "trainer/model/model.h"

/* A small real model: 2 layers, width 32, vocab 64, 16 positions (28032
 * parameters, a 340 KB checkpoint with both moments). */
extern const nw_model_config nw_ckfx_shape;

typedef struct {
  nw_mem *mem;
  nw_model *model;
  nw_tensor_info *tensors; /* (n) copy of the model's table */
  int n;
  size_t num_params;
  float *exp_avg, *exp_avg_sq; /* (num_params) fake but deterministic */
  char config_text[16384];
} nw_ckfx_fixture;

/* The group's model, made by nw_ckfx_setup (a cmocka group setup) and
 * freed by nw_ckfx_teardown. */
extern nw_ckfx_fixture nw_ckfx;
int nw_ckfx_setup(void **state);
int nw_ckfx_teardown(void **state);

/* A fixed-seed LCG: set nw_ckfx_rng, then uniform values in [0, 1). */
extern uint64_t nw_ckfx_rng;
double nw_ckfx_uniform(void);

/* The state of "step": parameters from the model, moments that differ by
 * step, and distinctive values in every setting (big seeds, a step past
 * 2^32, last_eval_step -1). */
void nw_ckfx_state(nw_ckpt_state *st, int64_t step, int with_opt);
/* That state written as RUN's checkpoint of step; its path into path. */
void nw_ckfx_write_step(const char *run, int64_t step, char *path, size_t len);

/* A whole file (free it), and a file replaced by len bytes of buf (a fresh
 * inode: a FIFO or a read-only file goes too). */
void *nw_ckfx_slurp(const char *path, size_t *len);
void nw_ckfx_spill(const char *path, const void *buf, size_t len);
/* Files in RUN/checkpoints whose names contain ".tmp.". */
int nw_ckfx_count_tmp(const char *run);
int nw_ckfx_exists(const char *path);
void nw_ckfx_rm_rf(const char *dir);
/* The raw-data offset of a dataset (HADDR_UNDEF for a group), and the
 * object header's address. */
void nw_ckfx_locate(const char *path, const char *name, haddr_t *data,
                    haddr_t *header);
/* One bit of the byte at `at` flipped. */
void nw_ckfx_flip(const char *path, size_t at);

/* The files nw_ckpt_find_latest passed over, and why. */
typedef struct {
  int n;
  char path[4][NW_PATH_MAX];
  char why[4][512];
} nw_ckfx_skips;
/* A search's skipped hook: records the file and why, and checks that it
 * was moved to checkpoints/damaged/. */
void nw_ckfx_on_skip(void *user, const char *path, const char *why,
                     const char *moved_to);

/* The damaged file at `bad` fails both verifications with NW_EDATA (the
 * message containing `expect` when not NULL), and the newest good one is
 * `good`. */
void nw_ckfx_assert_rejected(const char *run, const char *bad, const char *good,
                             const char *expect);

#endif
