/* blas_setup.h — make OpenBLAS run its best kernels on this CPU, and prove
 * they compute correctly, before the first matrix product.
 * defines: nw_blas_setup, nw_blas_info
 *
 * Debian's OpenBLAS is built with DYNAMIC_ARCH and picks its kernels when the
 * library loads. On AVX-512 CPUs it may pick an AVX2 (Haswell) or generic
 * (Prescott) core and run sgemm at a third of the speed. OpenBLAS reads
 * OPENBLAS_CORETYPE only while loading, so correcting it means re-executing
 * the program with the variable set: the pid, arguments and descriptors stay
 * the same. A user's own OPENBLAS_CORETYPE is never overridden. The same
 * re-exec sets OMP_WAIT_POLICY=PASSIVE unless the user set it (why: see
 * blas_setup.c). */
#ifndef NW_BLAS_SETUP_H
#define NW_BLAS_SETUP_H

#include <stddef.h>

typedef struct {
  char core[32];        /* the core OpenBLAS runs */
  char detected[32];    /* the core it chose by itself, before correction */
  int corrected;        /* 1 when nightwatch set OPENBLAS_CORETYPE */
  int user_set;         /* 1 when the user set OPENBLAS_CORETYPE */
  int cpu_avx512;       /* the CPU and OS support AVX-512 F/CD/BW/DQ/VL */
  double check_rel_err; /* sgemm against a double reference */
  int threads;
} nw_blas_info;

/* Call first in main(), before any BLAS use. May execv(/proc/self/exe) with
 * argv to apply the correction (it returns only when no re-exec happened or
 * it failed). Then sets the thread count (0 = all cores) and checks a small
 * sgemm against a double-precision reference; NW_ENUMERIC when it disagrees
 * by more than 1e-5 relative under a corrected core (the program should then
 * be re-run without the correction: NW_BLAS_NO_CORRECTION=1). */
int nw_blas_setup(char **argv, int threads, nw_blas_info *info);

/* The decision alone, for tests: the core to force ("SkylakeX") or NULL to
 * keep what OpenBLAS runs. user_coretype is OPENBLAS_CORETYPE as the user
 * set it (NULL when unset); a user's choice always stands. */
const char *nw_blas_choose_core(int cpu_avx512, const char *running_core,
                                const char *user_coretype, int no_correction);

/* 1 when the CPU could run faster kernels than the running core: a hint for
 * a user whose own OPENBLAS_CORETYPE holds it back. */
int nw_blas_slower_than_cpu(const nw_blas_info *info);

/* One line for the log: "OpenBLAS core SkylakeX (corrected from Haswell)". */
void nw_blas_describe(const nw_blas_info *info, char *buf, size_t len);

#endif
