/* blas_setup.c — CPU feature detection and the OpenBLAS core correction. */
#define _GNU_SOURCE
#include "device/blas_setup.h"

#include <cblas.h>
#include <cpuid.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/error.h"

/* Not in every cblas.h: exported by OpenBLAS itself. */
char *openblas_get_corename(void);
void openblas_set_num_threads(int num_threads);

/* AVX-512 F, DQ, CD, BW and VL: what OpenBLAS's SkylakeX kernels use. The
 * OS must also save the opmask and ZMM state (XCR0 bits 5-7) and AVX state
 * (bits 1-2), or the instructions fault. */
static int nw_cpu_has_avx512(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d))
    return 0;
  if (!(c & (1u << 27))) /* OSXSAVE */
    return 0;
  uint32_t xlo, xhi;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  if ((xlo & 0xe6) != 0xe6)
    return 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
    return 0;
  const unsigned need = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) |
                        (1u << 31); /* F DQ CD BW VL */
  return (b & need) == need;
}

static int nw_core_is_avx512(const char *core) {
  static const char *const fast[] = {"SkylakeX", "Cooperlake",
                                     "SapphireRapids"};
  for (size_t i = 0; i < sizeof fast / sizeof fast[0]; i++)
    if (strcasecmp(core, fast[i]) == 0)
      return 1;
  return 0;
}

/* sgemm of a small odd-shaped product against a double loop: the kernels
 * we switched to must give the same numbers. */
static double nw_blas_check(void) {
  enum { M = 67, N = 45, K = 83 };
  static float a[M * K], b[K * N], c[M * N];
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < M * K; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    a[i] = (float)((s >> 40) / (double)(1 << 24) - 0.5);
  }
  for (int i = 0; i < K * N; i++) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    b[i] = (float)((s >> 40) / (double)(1 << 24) - 0.5);
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b,
              N, 0.0f, c, N);
  double maxerr = 0, maxref = 1e-30;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double ref = 0;
      for (int k = 0; k < K; k++)
        ref += (double)a[i * K + k] * (double)b[k * N + j];
      double e = fabs(ref - (double)c[i * N + j]);
      if (e > maxerr)
        maxerr = e;
      if (fabs(ref) > maxref)
        maxref = fabs(ref);
    }
  return maxerr / maxref;
}

const char *nw_blas_choose_core(int cpu_avx512, const char *running_core,
                                const char *user_coretype, int no_correction) {
  if (user_coretype && *user_coretype)
    return NULL;
  if (no_correction || !cpu_avx512 || nw_core_is_avx512(running_core))
    return NULL;
  return "SkylakeX";
}

int nw_blas_slower_than_cpu(const nw_blas_info *info) {
  return info->cpu_avx512 && !nw_core_is_avx512(info->core);
}

int nw_blas_setup(char **argv, int threads, nw_blas_info *info) {
  memset(info, 0, sizeof *info);
  const char *core = openblas_get_corename();
  snprintf(info->core, sizeof info->core, "%s", core ? core : "unknown");
  info->cpu_avx512 = nw_cpu_has_avx512();

  /* NW_BLAS_DETECTED marks a core we forced before re-exec, NW_RUNTIME_SET
   * a re-exec already done: a program re-executes at most once. */
  const char *ours = getenv("NW_BLAS_DETECTED");
  const char *user = getenv("OPENBLAS_CORETYPE");
  if (ours) {
    info->corrected = 1;
    snprintf(info->detected, sizeof info->detected, "%s", ours);
  } else {
    snprintf(info->detected, sizeof info->detected, "%s", info->core);
    info->user_set = user != NULL && *user;
  }
  if (!getenv("NW_RUNTIME_SET") && argv) {
    int reexec = 0;
    const char *force =
        nw_blas_choose_core(info->cpu_avx512, info->core, user,
                            getenv("NW_BLAS_NO_CORRECTION") != NULL);
    if (force) {
      setenv("NW_BLAS_DETECTED", info->core, 1);
      setenv("OPENBLAS_CORETYPE", force, 1);
      reexec = 1;
    }
    /* libgomp's threads spin while they wait for work. When another process
     * (a second trainer, the test suite, the supervisor's own work) takes a
     * core, a spinning thread waits for one that is not running: each small
     * parallel region then costs a scheduler tick (measured 10x slower
     * evaluation on 2 loaded cores). Passive waiting costs a futex wake per
     * region instead. The user's own OMP_WAIT_POLICY stands. */
    if (!getenv("OMP_WAIT_POLICY")) {
      setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
      reexec = 1;
    }
    if (reexec) {
      setenv("NW_RUNTIME_SET", "1", 1);
      execv("/proc/self/exe", argv);
      /* exec failed: carry on as we are. */
      unsetenv("NW_BLAS_DETECTED");
      if (force)
        unsetenv("OPENBLAS_CORETYPE");
    }
  }
  if (threads > 0) {
    openblas_set_num_threads(threads);
    omp_set_num_threads(threads);
  }
  info->threads = omp_get_max_threads();
  info->check_rel_err = nw_blas_check();
  if (!(info->check_rel_err < 1e-5))
    return NW_ENUMERIC;
  return 0;
}

void nw_blas_describe(const nw_blas_info *info, char *buf, size_t len) {
  const char *how = info->corrected ? " (corrected from "
                    : info->user_set
                        ? (nw_blas_slower_than_cpu(info)
                               ? " (OPENBLAS_CORETYPE set in the environment; "
                                 "this CPU has AVX-512: unset it for the "
                                 "faster SkylakeX kernels"
                               : " (OPENBLAS_CORETYPE set in the environment")
                        : " (chosen by OpenBLAS";
  if (info->corrected)
    snprintf(buf, len,
             "OpenBLAS core %s%s%s: CPU has AVX-512), %d threads, sgemm check "
             "rel err %.1e",
             info->core, how, info->detected, info->threads,
             info->check_rel_err);
  else
    snprintf(buf, len,
             "OpenBLAS core %s%s), %d threads, sgemm check rel err %.1e",
             info->core, how, info->threads, info->check_rel_err);
}
