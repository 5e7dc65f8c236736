/* error.c — messages for the NW_E* codes. */
#include "base/error.h"

const char *nw_strerror(int err) {
  switch (err) {
  case NW_OK:
    return "success";
#define NW_ERR_CASE(name, msg)                                                 \
  case NW_E##name:                                                             \
    return msg;
    NW_ERRNO_MAP(NW_ERR_CASE)
#undef NW_ERR_CASE
  default:
    return "unknown error";
  }
}
