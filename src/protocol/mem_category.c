/* mem_category.c — the names of the device memory categories. */
#include "protocol/mem_category.h"

static const char *const nw_mem_cat_names[NW_MEM_NCAT] = {
#define NW_MEM_CAT_NAME(name, str) str,
    NW_MEM_CATEGORIES(NW_MEM_CAT_NAME)
#undef NW_MEM_CAT_NAME
};

const char *nw_mem_category_name(nw_mem_category cat) {
  if ((int)cat < 0 || cat >= NW_MEM_NCAT)
    return "unknown";
  return nw_mem_cat_names[cat];
}
