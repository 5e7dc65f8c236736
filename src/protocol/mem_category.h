/* mem_category.h — the categories of device memory: what every allocation
 * of a trainer is for. Part of the protocol: the OOM report's live and peak
 * bytes are per category, and the estimator, the classifier and the
 * supervisor all speak of them by these names (docs/protocol.md).
 * defines: NW_MEM_CATEGORIES, nw_mem_category, NW_MEM_NCAT,
 *          nw_mem_category_name */
#ifndef NW_MEM_CATEGORY_H
#define NW_MEM_CATEGORY_H

/* The one list: enum name, report name. */
#define NW_MEM_CATEGORIES(X)                                                   \
  X(PARAMS, "params")                                                          \
  X(GRADS, "grads")                                                            \
  X(OPTIMIZER, "optimizer")                                                    \
  X(ACTIVATIONS, "activations")                                                \
  X(ATTENTION, "attention")                                                    \
  X(KV_CACHE, "kv-cache")                                                      \
  X(WORKSPACE, "workspace")                                                    \
  X(DATA, "data")

typedef enum {
#define NW_MEM_CAT_ENUM(name, str) NW_MEM_##name,
  NW_MEM_CATEGORIES(NW_MEM_CAT_ENUM)
#undef NW_MEM_CAT_ENUM
      NW_MEM_NCAT
} nw_mem_category;

/* "params" ... "data"; "unknown" outside the list. */
const char *nw_mem_category_name(nw_mem_category cat);

#endif
