/* ckpt_internal.h — what the checkpoint files share: HDF5 setup and error
 * text, the root-attribute table, the expected tensor table of a shape.
 * defines: nw_ckpt__h5_init, nw_ckpt__fapl, nw_ckpt__h5_reason,
 *          nw_ckpt__base, nw_ckpt__settings */
#ifndef NW_CKPT_INTERNAL_H
#define NW_CKPT_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>

#include "checkpoints/ckpt.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint checksums are defined over little-endian bytes"
#endif

/* Names inside the file. */
#define NW_CKPT_MODEL "model"
#define NW_CKPT_OPT "optimizer"
#define NW_CKPT_EXP_AVG "optimizer/exp_avg"
#define NW_CKPT_EXP_AVG_SQ "optimizer/exp_avg_sq"
#define NW_CKPT_NAMES "tensor_names"
#define NW_CKPT_CONFIG "config"
#define NW_CKPT_CRC_ATTR "crc32c"
#define NW_CKPT_NAME_LEN 64 /* fixed-length strings of tensor_names */

/* Silences HDF5's own error printing for the calling thread: first thing
 * in every entry point that calls HDF5. */
void nw_ckpt__h5_init(void);

/* File access properties of every checkpoint open/create: sec2 driver,
 * objects closed with the file, v1.8 object formats (checksummed object
 * headers and superblock), no file locking. H5Pclose it. */
hid_t nw_ckpt__fapl(void);

/* The innermost message of HDF5's current error stack (the system error
 * when there is one); *disk_full set when it is ENOSPC. */
void nw_ckpt__h5_reason(char *buf, size_t len, int *disk_full);

/* The file name part of path (no allocation). */
const char *nw_ckpt__base(const char *path);

/* The root attributes that carry settings: name, kind and where the value
 * lives in nw_ckpt_state. */
typedef enum { NW_CKPT_I32, NW_CKPT_I64, NW_CKPT_U64 } nw_ckpt_kind;
typedef struct {
  const char *name;
  nw_ckpt_kind kind;
  size_t offset; /* into nw_ckpt_state */
} nw_ckpt_setting;
extern const nw_ckpt_setting nw_ckpt__settings[];
extern const int nw_ckpt__n_settings;

#endif
