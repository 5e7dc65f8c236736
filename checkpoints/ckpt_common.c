/* ckpt_common.c — what the checkpoint files share: HDF5 setup and error
 * text, the root-attribute table, the model's tensor table for a shape. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoints/ckpt_internal.h"

void nw_ckpt__h5_init(void) {
  /* The library must not close files at exit: a file whose metadata write
   * failed on a full disk stays open (nw_ckpt_write says why), and closing
   * it again at exit crashes inside HDF5, as does closing a file the
   * background writer still holds. Every file is closed by its owner, so
   * nothing is lost. Only the first call before the library starts counts;
   * later ones are no-ops. */
  H5dont_atexit();
  /* Errors become NW_E* codes with our own messages; the library must not
   * print its stack to stderr on every damaged file or failed write. In a
   * thread-safe HDF5 (Debian's is) this setting belongs to the calling
   * thread, and the background writer runs on a new thread per checkpoint:
   * so every entry point turns it off for its own thread, every time. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

hid_t nw_ckpt__fapl(void) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0)
    return fapl;
  if (H5Pset_fapl_sec2(fapl) < 0 ||
      H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 ||
      H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0 ||
      H5Pset_file_locking(fapl, 0, 1) < 0) {
    H5Pclose(fapl);
    return -1;
  }
  return fapl;
}

typedef struct {
  char desc[512];
  int found;
} nw_ckpt__walk;

static herr_t nw_ckpt__walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  nw_ckpt__walk *w = data;
  if (!w->found && e->desc && e->desc[0]) {
    snprintf(w->desc, sizeof w->desc, "%s", e->desc);
    w->found = 1;
  }
  return 0;
}

void nw_ckpt__h5_reason(char *buf, size_t len, int *disk_full) {
  nw_ckpt__walk w = {.found = 0};
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, nw_ckpt__walk_cb, &w);
  if (disk_full)
    *disk_full = 0;
  if (!w.found) {
    snprintf(buf, len, "HDF5 call failed");
    return;
  }
  /* The sec2 driver's system errors read "..., errno = 28, error message =
   * 'No space left on device', ...": keep the useful part. */
  const char *eno = strstr(w.desc, "errno = ");
  if (eno && disk_full && atoi(eno + 8) == 28)
    *disk_full = 1;
  const char *msg = strstr(w.desc, "error message = '");
  if (msg) {
    msg += strlen("error message = '");
    const char *end = strchr(msg, '\'');
    int n = end ? (int)(end - msg) : (int)strlen(msg);
    snprintf(buf, len, "%.*s", n, msg);
  } else {
    snprintf(buf, len, "%s", w.desc);
  }
}

const char *nw_ckpt__base(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

#define NW_S(name, kind, field)                                                \
  { name, kind, offsetof(nw_ckpt_state, field) }
const nw_ckpt_setting nw_ckpt__settings[] = {
    NW_S("step", NW_CKPT_I64, step),
    NW_S("tokens_seen", NW_CKPT_I64, tokens_seen),
    NW_S("data_index", NW_CKPT_U64, data_index),
    NW_S("data_seed", NW_CKPT_U64, data_seed),
    NW_S("init_seed", NW_CKPT_U64, init_seed),
    NW_S("effective_batch", NW_CKPT_I32, effective),
    NW_S("micro_batch", NW_CKPT_I32, micro),
    NW_S("accumulation", NW_CKPT_I32, accum),
    NW_S("world_size", NW_CKPT_I32, world),
    NW_S("max_seq_len", NW_CKPT_I32, max_seq_len),
    NW_S("eval_batch", NW_CKPT_I32, eval_batch),
    NW_S("eval_release_cache", NW_CKPT_I32, eval_release_cache),
    NW_S("last_eval_step", NW_CKPT_I64, last_eval_step),
    NW_S("n_layer", NW_CKPT_I32, shape.n_layer),
    NW_S("n_head", NW_CKPT_I32, shape.n_head),
    NW_S("n_embd", NW_CKPT_I32, shape.n_embd),
    NW_S("vocab_size", NW_CKPT_I32, shape.vocab_size),
    NW_S("model_max_seq_len", NW_CKPT_I32, shape.max_seq_len),
    NW_S("num_params", NW_CKPT_U64, num_params),
};
#undef NW_S
const int nw_ckpt__n_settings =
    (int)(sizeof nw_ckpt__settings / sizeof nw_ckpt__settings[0]);
