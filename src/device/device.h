/* device.h — which device a trainer runs on: device.type resolved to the
 * CPU or a GPU, and the GPU set up under the memory domain. The one place
 * host code dispatches to cuda/; a build without CUDA compiles the same
 * functions, which then say that no GPU backend was built.
 * defines: nw_device_kind, nw_device_resolve, nw_device_open,
 *          nw_device_close, nw_device_usage, nw_device_describe */
#ifndef NW_DEVICE_H
#define NW_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "device/backend.h"
#include "device/mem.h"
#include "device/workspace.h" // defines: NW_GPU_* workspace sizes

typedef enum { NW_DEVICE_CPU = 0, NW_DEVICE_CUDA = 1 } nw_device_kind;

/* cpu -> CPU; cuda -> CUDA, or NW_ECONFIG with a message naming
 * device.type when the binary has no CUDA backend or the machine no GPU;
 * auto -> CUDA when built in and a GPU is present, else CPU (never an
 * error). */
int nw_device_resolve(const nw_device_config *dc, nw_device_kind *kind,
                      char *err, size_t errlen);

/* Sets up the GPU for the trainer (ordinal `ordinal` of what
 * CUDA_VISIBLE_DEVICES shows: the data-parallel rank) with
 * device.precision, attaching it under mem; *be is then the CUDA backend.
 * NW_ENOMEM (an OOM at init), NW_ECONFIG with err. */
int nw_device_open(const nw_device_config *dc, int ordinal, nw_mem *mem,
                   const nw_backend **be, char *err, size_t errlen);
/* Undoes nw_device_open; before the domain is destroyed. */
void nw_device_close(void);

/* The GPU as it stands: bytes in use by all processes and the card's size;
 * desc "cuda:0 NAME" and the PCI bus id (for gpu_procs.h). */
int nw_device_usage(uint64_t *used, uint64_t *capacity);
int nw_device_describe(char *desc, size_t desclen, char *bus_id,
                       size_t bus_id_len);

#endif
