/* world.h — the data-parallel world of a run: how many ranks (world.size,
 * 0 = one per GPU on this host), and what each rank is told. docs/multi-gpu.md.
 * defines: nw_world_gpu_count, nw_world_resolve, nw_world_device_name,
 *          nw_world_from_env, nw_world, NW_WORLD_ENV_*
 *
 * The supervisor starts one trainer per rank with these variables; a
 * trainer started without them is rank 0 of a world of world.size. */
#ifndef NW_WORLD_H
#define NW_WORLD_H

#include <stddef.h>

#include "base/config.h"

#define NW_WORLD_ENV_RANK "NIGHTWATCH_RANK"       /* 0 .. size-1 */
#define NW_WORLD_ENV_SIZE "NIGHTWATCH_WORLD_SIZE" /* == world.size */
/* Names this start of the ranks: the shared-memory segment of the CPU
 * collective, or the file in the run directory holding NCCL's unique id.
 * A new one for every restart, so that nothing of a dead world is reused. */
#define NW_WORLD_ENV_COMM "NIGHTWATCH_COMM"

/* GPUs this process may use, counted without touching CUDA (the supervisor
 * must not create a CUDA context before it forks): the entries of
 * CUDA_VISIBLE_DEVICES when it is set, else the GPUs the NVIDIA driver
 * lists in /proc/driver/nvidia/gpus; 0 when there are none. */
int nw_world_gpu_count(void);

/* world.size 0 becomes one rank per GPU when device.type is cuda or auto
 * and GPUs are present, else 1. Then the cross-key checks apply
 * (nw_config_validate). */
void nw_world_resolve(nw_config *cfg);

/* The device rank uses: on the CPU, the virtual device device.name for a
 * world of 1 and "device.name.RANK" otherwise (one device per rank, as one
 * GPU per rank). */
void nw_world_device_name(const nw_config *cfg, int rank, char *buf,
                          size_t len);

typedef struct {
  int rank, size;
  char comm[256]; /* NW_WORLD_ENV_COMM, "" when unset */
} nw_world;

/* The rank, size and comm name from the environment, checked against
 * cfg's resolved world.size: a mismatch or a bad value is NW_ECONFIG with
 * err naming the variable. Unset: rank 0 of cfg's world.size. */
int nw_world_from_env(const nw_config *cfg, nw_world *w, char *err,
                      size_t errlen);

#endif
