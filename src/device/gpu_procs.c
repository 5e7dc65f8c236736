/* gpu_procs.c — NVML through dlopen: the few types and entry points used
 * are declared here, as NVML's ABI defines them (nvml.h, stable since
 * driver 510 for the _v3 process query), so that no NVML header is needed
 * to build and no NVML library to run. */
#define _GNU_SOURCE
#include "device/gpu_procs.h"

#include <dlfcn.h>  // defines: dlopen, dlsym, dlerror, dlclose
#include <errno.h>  // defines: errno
#include <stddef.h> // defines: offsetof
#include <stdio.h>  // defines: snprintf, fopen, fgets
#include <stdlib.h> // defines: getenv, strtol, malloc
#include <string.h> // defines: strncmp, strlen, memcpy

#include "base/error.h" // defines: NW_E*

/* ---- the NVML ABI, as much as is used ---- */
typedef int nw_nvmlReturn; /* nvmlReturn_t; 0 = NVML_SUCCESS */
typedef struct nw_nvmlDevice *nw_nvmlDevice; /* nvmlDevice_t */
#define NW_NVML_ERROR_INSUFFICIENT_SIZE 7
#define NW_NVML_VALUE_NOT_AVAILABLE 0xffffffffffffffffull

/* nvmlProcessInfo_t (the _v2 and _v3 queries share it) */
typedef struct {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
} nw_nvmlProcessInfo;

/* nvmlMemory_t */
typedef struct {
  unsigned long long total, free, used;
} nw_nvmlMemory;

typedef struct {
  void *lib;
  nw_nvmlReturn (*init)(void);
  nw_nvmlReturn (*shutdown)(void);
  const char *(*error_string)(nw_nvmlReturn);
  nw_nvmlReturn (*by_index)(unsigned int, nw_nvmlDevice *);
  nw_nvmlReturn (*by_bus_id)(const char *, nw_nvmlDevice *);
  nw_nvmlReturn (*procs)(nw_nvmlDevice, unsigned int *, nw_nvmlProcessInfo *);
  nw_nvmlReturn (*memory)(nw_nvmlDevice, nw_nvmlMemory *);
} nw_nvml;

static const char *nw_nvml_str(const nw_nvml *v, nw_nvmlReturn r) {
  const char *s = v->error_string ? v->error_string(r) : NULL;
  return s ? s : "unknown NVML error";
}

static void nw_nvml_close(nw_nvml *v) {
  if (v->shutdown)
    v->shutdown();
  if (v->lib)
    dlclose(v->lib);
  memset(v, 0, sizeof *v);
}

/* Loads the library and its symbols and initialises NVML; every failure
 * is "nvml unavailable: ..." so that a report can say why it lists no
 * processes. */
static int nw_nvml_open(nw_nvml *v, char *err, size_t errlen) {
  memset(v, 0, sizeof *v);
  const char *name = getenv("NW_NVML_LIBRARY");
  if (!name || !*name)
    name = "libnvidia-ml.so.1";
  v->lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!v->lib) {
    const char *why = dlerror();
    snprintf(err, errlen, "nvml unavailable: %s", why ? why : name);
    return NW_ENOTFOUND;
  }
  /* dlsym returns void *; POSIX guarantees it converts to a function
   * pointer, which the memcpy spells without a -Wpedantic cast warning. */
  static const struct {
    const char *sym;
    size_t off;
    int optional;
  } syms[] = {
      {"nvmlInit_v2", offsetof(nw_nvml, init), 0},
      {"nvmlShutdown", offsetof(nw_nvml, shutdown), 0},
      {"nvmlErrorString", offsetof(nw_nvml, error_string), 0},
      {"nvmlDeviceGetHandleByIndex_v2", offsetof(nw_nvml, by_index), 0},
      {"nvmlDeviceGetHandleByPciBusId_v2", offsetof(nw_nvml, by_bus_id), 0},
      {"nvmlDeviceGetComputeRunningProcesses_v3", offsetof(nw_nvml, procs), 1},
      {"nvmlDeviceGetMemoryInfo", offsetof(nw_nvml, memory), 0},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *f = dlsym(v->lib, syms[i].sym);
    if (!f && syms[i].optional) /* drivers before 510: the _v2 query */
      f = dlsym(v->lib, "nvmlDeviceGetComputeRunningProcesses_v2");
    if (!f) {
      snprintf(err, errlen, "nvml unavailable: %s: no symbol %s", name,
               syms[i].sym);
      dlclose(v->lib);
      memset(v, 0, sizeof *v);
      return NW_ENOTFOUND;
    }
    memcpy((char *)v + syms[i].off, &f, sizeof f);
  }
  nw_nvmlReturn r = v->init();
  if (r != 0) {
    snprintf(err, errlen, "nvml unavailable: nvmlInit_v2: %s (%d)",
             nw_nvml_str(v, r), r);
    v->shutdown = NULL; /* not initialised: nothing to shut down */
    nw_nvml_close(v);
    return NW_ENOTFOUND;
  }
  return 0;
}

/* ---- what /proc says about a pid ---- */

static int nw_proc_uid(int pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return -1;
  int uid = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Uid:", 4) == 0) {
      uid = (int)strtol(line + 4, NULL, 10); /* the real uid comes first */
      break;
    }
  fclose(f);
  return uid;
}

/* NIGHTWATCH_RUN_ID from the environment the process started with: the
 * supervisor puts it there for every trainer it starts. Readable only for
 * our own processes, which are the only ones a run id matters for. */
static void nw_proc_run_id(int pid, char *out, size_t outlen) {
  static const char key[] = "NIGHTWATCH_RUN_ID=";
  char path[64];
  out[0] = 0;
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  FILE *f = fopen(path, "re");
  if (!f)
    return;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    int c = fgetc(f);
    if (c == EOF || c == 0) {
      buf[have] = 0;
      if (strncmp(buf, key, sizeof key - 1) == 0) {
        /* a run id is at most 63 characters (run_id.h): longer is cut */
        size_t len = strlen(buf + sizeof key - 1);
        len = len < outlen - 1 ? len : outlen - 1;
        memcpy(out, buf + sizeof key - 1, len);
        out[len] = 0;
        break;
      }
      have = 0;
      if (c == EOF)
        break;
      continue;
    }
    if (have < sizeof buf - 1)
      buf[have++] = (char)c;
  }
  fclose(f);
}

/* ---- the queries ---- */

static int nw_nvml_device(nw_nvml *v, const char *device, nw_nvmlDevice *dev,
                          char *err, size_t errlen) {
  nw_nvmlReturn r;
  if (!device || !*device) {
    r = v->by_index(0, dev);
  } else if (strchr(device, ':')) {
    r = v->by_bus_id(device, dev);
  } else {
    char *end;
    errno = 0;
    long idx = strtol(device, &end, 10);
    if (errno || *end || idx < 0 || idx > 1 << 20) {
      snprintf(err, errlen,
               "GPU \"%s\": neither an NVML index nor a PCI bus id", device);
      return NW_ECONFIG;
    }
    r = v->by_index((unsigned)idx, dev);
  }
  if (r != 0) {
    snprintf(err, errlen, "nvml: GPU \"%s\": %s (%d)", device ? device : "",
             nw_nvml_str(v, r), r);
    return NW_ECONFIG;
  }
  return 0;
}

int nw_gpu_list_processes(const char *device, nw_gpu_proc *procs, int max,
                          int *n, uint64_t *capacity, uint64_t *used, char *err,
                          size_t errlen) {
  *n = 0;
  nw_nvml v;
  NW_TRY(nw_nvml_open(&v, err, errlen));
  nw_nvmlDevice dev;
  int rc = nw_nvml_device(&v, device, &dev, err, errlen);
  if (rc < 0)
    goto out;
  nw_nvmlMemory mi;
  nw_nvmlReturn r = v.memory(dev, &mi);
  if (r != 0) {
    snprintf(err, errlen, "nvml: nvmlDeviceGetMemoryInfo: %s (%d)",
             nw_nvml_str(&v, r), r);
    rc = NW_EIO;
    goto out;
  }
  if (capacity)
    *capacity = mi.total;
  if (used)
    *used = mi.used;
  /* Processes come and go between the size query and the listing: ask
   * with room to spare and again when the table grew. */
  nw_nvmlProcessInfo info[256];
  unsigned int count = sizeof info / sizeof info[0];
  r = v.procs(dev, &count, info);
  if (r == NW_NVML_ERROR_INSUFFICIENT_SIZE) {
    count = sizeof info / sizeof info[0];
    r = 0; /* more than 256 processes: the first 256 are listed */
  }
  if (r != 0) {
    snprintf(err, errlen, "nvml: nvmlDeviceGetComputeRunningProcesses: %s (%d)",
             nw_nvml_str(&v, r), r);
    rc = NW_EIO;
    goto out;
  }
  for (unsigned int i = 0; i < count; i++) {
    if ((int)i < max) {
      nw_gpu_proc *p = &procs[i];
      memset(p, 0, sizeof *p);
      p->pid = (int)info[i].pid;
      p->bytes_unknown = info[i].usedGpuMemory == NW_NVML_VALUE_NOT_AVAILABLE;
      p->bytes = p->bytes_unknown ? 0 : info[i].usedGpuMemory;
      p->uid = nw_proc_uid(p->pid);
      nw_proc_run_id(p->pid, p->run_id, sizeof p->run_id);
    }
  }
  *n = (int)count;
out:
  nw_nvml_close(&v);
  return rc;
}

int nw_gpu_pid_on_device(const char *device, int pid, unsigned uid,
                         const char *run_id, char *err, size_t errlen) {
  nw_gpu_proc procs[NW_GPU_MAX_PROCS];
  int n = 0;
  NW_TRY(nw_gpu_list_processes(device, procs, NW_GPU_MAX_PROCS, &n, NULL, NULL,
                               err, errlen));
  for (int i = 0; i < n && i < NW_GPU_MAX_PROCS; i++)
    if (procs[i].pid == pid && procs[i].uid == (int)uid &&
        (!run_id || strcmp(procs[i].run_id, run_id) == 0))
      return 1;
  return 0;
}
