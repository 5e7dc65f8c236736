/* test_device.c — the GPU pieces that run without a GPU: device.type
 * resolution and the trainer's refusal (exit 78), NVML through dlopen (its
 * absence reported as "nvml unavailable: ...", and what is made of its
 * answers, through the test double tests/fakes/fake_nvml.c), and the memory
 * domain over a device that provides its own memory (the path cudaMalloc
 * takes), driven by a host-backed provider with a byte limit. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/config.h"
#include "base/error.h"
#include "device/device.h"
#include "device/gpu_procs.h"
#include "device/mem.h"
#include "protocol/exit_codes.h"
#include "testutil.h"

/* ------------------------------------------------- device selection */

static void test_resolve_cpu_and_bad_type(void **state) {
  (void)state;
  nw_config c;
  nw_config_defaults(&c);
  char err[512] = "";
  nw_device_kind k = NW_DEVICE_CUDA;
  assert_int_equal(nw_device_resolve(&c.device, &k, err, sizeof err), 0);
  assert_int_equal(k, NW_DEVICE_CPU);
  snprintf(c.device.type, sizeof c.device.type, "tpu");
  assert_int_equal(nw_device_resolve(&c.device, &k, err, sizeof err),
                   NW_ECONFIG);
  assert_non_null(strstr(err, "device.type = tpu"));
}

/* auto never fails; cuda succeeds exactly when auto picks the GPU, and
 * otherwise names device.type and says why. */
static void test_resolve_auto_and_cuda_agree(void **state) {
  (void)state;
  nw_config c;
  nw_config_defaults(&c);
  char err[512] = "";
  nw_device_kind kauto, kcuda;
  snprintf(c.device.type, sizeof c.device.type, "auto");
  assert_int_equal(nw_device_resolve(&c.device, &kauto, err, sizeof err), 0);
  snprintf(c.device.type, sizeof c.device.type, "cuda");
  int rc = nw_device_resolve(&c.device, &kcuda, err, sizeof err);
  if (kauto == NW_DEVICE_CUDA) {
    assert_int_equal(rc, 0);
    assert_int_equal(kcuda, NW_DEVICE_CUDA);
  } else {
    assert_int_equal(rc, NW_ECONFIG);
    assert_non_null(strstr(err, "device.type = cuda"));
    assert_non_null(strstr(err, nw_device_built_with_cuda()
                                    ? "no CUDA GPU on this machine"
                                    : "built without the CUDA backend"));
  }
}

/* The trainer program: device.type = cuda without a usable GPU is a
 * configuration error (78, never retried) with the message on stderr. */
static void test_trainer_cuda_without_gpu_exits_78(void **state) {
  (void)state;
  nw_config c;
  nw_config_defaults(&c);
  char err[512];
  nw_device_kind k;
  snprintf(c.device.type, sizeof c.device.type, "auto");
  nw_device_resolve(&c.device, &k, err, sizeof err);
  if (k == NW_DEVICE_CUDA)
    skip(); /* a GPU is here: tests/gpu covers this machine */
  char dir[512], set_dir[600], out[16384];
  nw_test_tmpdir(dir, sizeof dir, "device");
  snprintf(set_dir, sizeof set_dir, "run.dir=%s", dir);
  char *argv[] = {NW_TRAIN_BIN, "--set", "device.type=cuda", "--set",
                  set_dir,      "--set", "train.steps=1",    NULL};
  assert_int_equal(nw_test_run_cmd(argv, out, sizeof out), NW_EXIT_CONFIG);
  assert_non_null(strstr(out, "device.type = cuda"));
  /* auto on the same machine trains on the CPU */
  char *argv2[] = {NW_TRAIN_BIN,    "--set", "device.type=auto", "--set",
                   set_dir,         "--set", "eval.every=0",     "--set",
                   "train.steps=1", NULL};
  int st = nw_test_run_cmd(argv2, out, sizeof out);
  if (st != 0)
    fail_msg("auto on a machine without a GPU: exit %d\n%s", st, out);
  assert_null(strstr(out, "device: cuda"));
  assert_non_null(strstr(out, "step 1/1"));
  nw_test_rmdir_flat(dir);
}

/* ---------------------------------------------------------------- NVML */

static void test_nvml_missing_library(void **state) {
  (void)state;
  setenv("NW_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
  nw_gpu_proc procs[4];
  int n = -1;
  char err[512] = "";
  assert_int_equal(
      nw_gpu_list_processes("", procs, 4, &n, NULL, NULL, err, sizeof err),
      NW_ENOTFOUND);
  assert_int_equal(n, 0);
  assert_true(strncmp(err, "nvml unavailable: ", 18) == 0);
  assert_non_null(strstr(err, "/nonexistent/libnvidia-ml.so.1"));
  /* the supervisor's proof fails closed */
  assert_true(
      nw_gpu_pid_on_device("", getpid(), getuid(), NULL, err, sizeof err) < 0);
  unsetenv("NW_NVML_LIBRARY");
}

static void test_nvml_library_without_symbols(void **state) {
  (void)state;
  setenv("NW_NVML_LIBRARY", "libm.so.6", 1); /* loads, is not NVML */
  nw_gpu_proc procs[4];
  int n = 0;
  char err[512] = "";
  assert_int_equal(
      nw_gpu_list_processes(NULL, procs, 4, &n, NULL, NULL, err, sizeof err),
      NW_ENOTFOUND);
  assert_string_equal(err,
                      "nvml unavailable: libm.so.6: no symbol nvmlInit_v2");
  unsetenv("NW_NVML_LIBRARY");
}

static void test_nvml_init_failure(void **state) {
  (void)state;
  setenv("NW_NVML_LIBRARY", NW_FAKE_NVML, 1);
  setenv("FAKE_NVML_INIT_FAILS", "1", 1);
  nw_gpu_proc procs[4];
  int n = 0;
  char err[512] = "";
  assert_int_equal(
      nw_gpu_list_processes("0", procs, 4, &n, NULL, NULL, err, sizeof err),
      NW_ENOTFOUND);
  assert_string_equal(err, "nvml unavailable: nvmlInit_v2: RM has detected an "
                           "NVML/RM version mismatch (18)");
  unsetenv("FAKE_NVML_INIT_FAILS");
  unsetenv("NW_NVML_LIBRARY");
}

/* A real process with a run id in its environment, as the supervisor
 * starts trainers: the list carries its pid, our uid, its run id and the
 * bytes NVML gives; the proof holds for its run id and not for another. */
static void test_nvml_process_list(void **state) {
  (void)state;
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    char *envp[] = {"NIGHTWATCH_RUN_ID=night-run-7", "PATH=/usr/bin:/bin",
                    NULL};
    char *argv[] = {"/bin/sleep", "30", NULL};
    execve(argv[0], argv, envp);
    _exit(127);
  }
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)child);
  setenv("NW_NVML_LIBRARY", NW_FAKE_NVML, 1);
  setenv("FAKE_NVML_PID", pid, 1);
  /* the environment is the one of exec: wait until it is in place */
  char path[64], buf[64];
  snprintf(path, sizeof path, "/proc/%d/exe", (int)child);
  /* The kernel switches /proc/PID/exe before it lays out the new
   * environment: wait for the environment itself (up to 20 s: a loaded CI
   * machine once showed the old one after /proc/PID/exe had changed). */
  char envpath[64];
  snprintf(envpath, sizeof envpath, "/proc/%d/environ", (int)child);
  int execed = 0;
  for (int i = 0; i < 2000 && !execed; i++) {
    ssize_t len = readlink(path, buf, sizeof buf - 1);
    size_t elen = 0;
    char *env = nw_test_slurp(envpath, &elen);
    execed = len > 0 && (buf[len] = 0, strstr(buf, "sleep") != NULL) && env &&
             memmem(env, elen, "NIGHTWATCH_RUN_ID=night-run-7", 29) != NULL;
    free(env);
    if (!execed)
      nw_test_sleep(0.01);
  }
  if (!execed)
    fail_msg("pid %d did not exec /bin/sleep with its environment within 20 s",
             (int)child);
  nw_gpu_proc procs[4];
  int n = 0;
  uint64_t cap = 0, used = 0;
  char err[512] = "";
  int rc = nw_gpu_list_processes("0000:65:00.0", procs, 4, &n, &cap, &used, err,
                                 sizeof err);
  if (rc != 0)
    fail_msg("%s", err);
  assert_int_equal(n, 1);
  assert_int_equal(procs[0].pid, child);
  assert_int_equal(procs[0].uid, (int)getuid());
  assert_string_equal(procs[0].run_id, "night-run-7");
  assert_int_equal(procs[0].bytes, 12345);
  assert_int_equal(cap, 80ull << 30);
  assert_int_equal(used, 1ull << 30);
  assert_int_equal(nw_gpu_pid_on_device("0", child, getuid(), "night-run-7",
                                        err, sizeof err),
                   1);
  assert_int_equal(
      nw_gpu_pid_on_device("0", child, getuid(), "other-run", err, sizeof err),
      0);
  assert_int_equal(
      nw_gpu_pid_on_device("0", child, getuid() + 1, NULL, err, sizeof err), 0);
  /* a card NVML does not know */
  assert_int_equal(nw_gpu_list_processes("0000:01:00.0", procs, 4, &n, NULL,
                                         NULL, err, sizeof err),
                   NW_ECONFIG);
  assert_int_equal(
      nw_gpu_list_processes("zero", procs, 4, &n, NULL, NULL, err, sizeof err),
      NW_ECONFIG);
  kill(child, SIGKILL);
  waitpid(child, NULL, 0);
  unsetenv("FAKE_NVML_PID");
  unsetenv("NW_NVML_LIBRARY");
}

/* ------------------------------------ the domain over its own memory */

/* A device with a fixed number of bytes that hands out host memory: the
 * provider interface as cudaMalloc fills it. */
typedef struct {
  size_t limit, used;
  int allocs, frees, zeros;
} test_dev;

static int td_alloc(void *ctx, size_t bytes, void **out) {
  test_dev *d = ctx;
  if (d->used + bytes > d->limit)
    return NW_ENOMEM;
  size_t *p = malloc(bytes + 16);
  if (!p)
    return NW_EHOSTMEM;
  p[0] = bytes;
  memset(p + 2, 0xab, bytes); /* garbage, as fresh device memory is */
  d->used += bytes;
  d->allocs++;
  *out = p + 2;
  return 0;
}

static void td_free(void *ctx, void *ptr) {
  test_dev *d = ctx;
  size_t *p = (size_t *)ptr - 2;
  d->used -= p[0];
  d->frees++;
  free(p);
}

static int td_zero(void *ctx, void *ptr, size_t bytes) {
  test_dev *d = ctx;
  d->zeros++;
  memset(ptr, 0, bytes);
  return 0;
}

static void attach(nw_mem *m, test_dev *d) {
  nw_mem_device dev = {
      .ctx = d, .alloc = td_alloc, .free = td_free, .zero = td_zero};
  nw_mem_attach_device(m, &dev);
}

static void test_provider_alloc_cache_trim(void **state) {
  (void)state;
  test_dev d = {.limit = 1 << 20};
  nw_mem *m;
  assert_int_equal(nw_mem_create(&m, 0), 0);
  attach(m, &d);
  unsigned char *a, *b;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_PARAMS, 1000, (void **)&a), 0);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ACTIVATIONS, 5000, (void **)&b), 0);
  assert_int_equal(d.allocs, 2);
  assert_int_equal(d.used, 1024 + 5120); /* 256-byte blocks */
  for (int i = 0; i < 1000; i++)
    assert_int_equal(a[i], 0); /* zeroed by the device */
  nw_mem_stats st;
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.live[NW_MEM_PARAMS], 1024);
  assert_int_equal(st.live[NW_MEM_ACTIVATIONS], 5120);
  /* freed: cached, not returned; the same size comes back from the cache */
  nw_mem_free(m, b);
  assert_int_equal(d.frees, 0);
  unsigned char *c;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_ATTENTION, 5000, (void **)&c), 0);
  assert_ptr_equal(c, b);
  assert_int_equal(d.allocs, 2);
  assert_int_equal(d.zeros, 3);
  nw_mem_stats_get(m, &st);
  assert_int_equal(st.live[NW_MEM_ACTIVATIONS], 0);
  assert_int_equal(st.live[NW_MEM_ATTENTION], 5120);
  nw_mem_free(m, c);
  assert_int_equal(nw_mem_trim(m), 5120);
  assert_int_equal(d.frees, 1);
  assert_int_equal(d.used, 1024);
  /* destroy returns what is still live */
  nw_mem_destroy(m);
  assert_int_equal(d.used, 0);
  assert_int_equal(d.frees, 2);
}

/* The device is full of our own cache: the domain returns it and asks
 * again; when even that cannot help, the refusal is an OOM with the
 * request recorded. */
static void test_provider_full_device(void **state) {
  (void)state;
  test_dev d = {.limit = 10240};
  nw_mem *m;
  assert_int_equal(nw_mem_create(&m, 0), 0);
  attach(m, &d);
  void *a, *b, *c;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_WORKSPACE, 4000, &a), 0);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_WORKSPACE, 4000, &b), 0);
  nw_mem_free(m, a);
  nw_mem_trim(m);
  nw_mem_free(m, b); /* cached: 4096 bytes held, below the peak of 8192 */
  assert_int_equal(d.frees, 1);
  d.used += 5120; /* another process takes most of the rest */
  assert_int_equal(nw_mem_alloc(m, NW_MEM_KV_CACHE, 2000, &c), 0);
  assert_int_equal(d.frees, 2); /* refused once, our cache made room */
  d.used += 3072;               /* and then all of it */
  void *e;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_GRADS, 3000, &e), NW_ENOMEM);
  assert_null(e);
  nw_mem_stats st;
  nw_mem_failure_stats(m, &st);
  assert_int_equal(st.failed_request, 3072);
  assert_int_equal(st.failed_category, NW_MEM_GRADS);
  assert_int_equal(st.live[NW_MEM_KV_CACHE], 2048);
  /* a refusal inside a library is recorded the same way */
  nw_mem_note_failure(m, NW_MEM_WORKSPACE, 0);
  nw_mem_failure_stats(m, &st);
  assert_int_equal(st.failed_category, NW_MEM_WORKSPACE);
  assert_int_equal(st.failed_request, 0);
  nw_mem_free(m, c);
  nw_mem_destroy(m);
  assert_int_equal(d.used, 5120 + 3072); /* only the others' bytes */
}

/* The cap (device.memory on a GPU) counts what the domain holds, below
 * what the card has. */
static void test_provider_cap(void **state) {
  (void)state;
  test_dev d = {.limit = 1 << 20};
  nw_mem *m;
  assert_int_equal(nw_mem_create(&m, 4096), 0);
  attach(m, &d);
  void *a, *b;
  assert_int_equal(nw_mem_alloc(m, NW_MEM_PARAMS, 3000, &a), 0);
  assert_int_equal(nw_mem_alloc(m, NW_MEM_OPTIMIZER, 2000, &b), NW_ENOMEM);
  assert_int_equal(d.allocs, 1); /* the device was never asked */
  nw_mem_stats st;
  nw_mem_failure_stats(m, &st);
  assert_int_equal(st.cap, 4096);
  assert_int_equal(st.failed_category, NW_MEM_OPTIMIZER);
  nw_mem_free(m, a);
  nw_mem_destroy(m);
  assert_int_equal(d.used, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resolve_cpu_and_bad_type),
      cmocka_unit_test(test_resolve_auto_and_cuda_agree),
      cmocka_unit_test(test_trainer_cuda_without_gpu_exits_78),
      cmocka_unit_test(test_nvml_missing_library),
      cmocka_unit_test(test_nvml_library_without_symbols),
      cmocka_unit_test(test_nvml_init_failure),
      cmocka_unit_test(test_nvml_process_list),
      cmocka_unit_test(test_provider_alloc_cache_trim),
      cmocka_unit_test(test_provider_full_device),
      cmocka_unit_test(test_provider_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
