/* test_layers.c — the layers as the linker left them: the supervisor
 * (`nightwatch`) carries no CUDA code and needs no GPU or BLAS library,
 * while the trainer (`nightwatch-train`) of a CUDA build does carry the CUDA
 * backend. "The supervisor never touches CUDA" (docs/architecture.md) rests
 * on the build, not on call discipline: this reads both programs' ELF
 * symbol tables (.symtab and .dynsym, defined and undefined names alike)
 * and the supervisor's DT_NEEDED list. Without the CUDA backend the CUDA
 * half skips, saying why. */
#define _GNU_SOURCE
#include <ctype.h>
#include <elf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

/* A program file in memory and what the test found in it. */
typedef struct {
  const char *path;
  char *data; /* the whole file */
  size_t size;
  int n_symbols;       /* names read from .symtab and .dynsym */
  int n_cuda;          /* of them, CUDA/cuBLAS/NCCL names */
  char first[8][96];   /* the first few of those, to show */
  int n_blas;          /* cblas_/openblas_ names */
  char needed[32][96]; /* DT_NEEDED */
  int n_needed;
} program;

/* A name of the CUDA runtime or driver, cuBLAS, NCCL, or of our CUDA
 * backend (the .cu files of cuda/); never one of our own C functions that
 * merely talk about CUDA (nw_device_built_with_cuda). */
static int is_cuda_symbol(const char *n) {
  static const char *const prefixes[] = {
      "cuda",   "__cuda",        "cublas",          "nccl", "__nv", "nw_cuda_",
      "nw_cu_", "nw_coll_nccl_", "nw_backend_cuda", NULL};
  for (int i = 0; prefixes[i]; i++)
    if (!strncmp(n, prefixes[i], strlen(prefixes[i])))
      return 1;
  /* the driver API: cuInit, cuDeviceGet, cuMemAlloc_v2, ... */
  if (!strncmp(n, "cu", 2) && isupper((unsigned char)n[2]))
    return 1;
  /* host stubs of kernels, C++-mangled */
  return strstr(n, "__device_stub__") != NULL;
}

static int is_blas_symbol(const char *n) {
  return !strncmp(n, "cblas_", 6) || !strncmp(n, "openblas_", 9);
}

static void program_load(program *p, const char *path) {
  memset(p, 0, sizeof *p);
  p->path = path;
  p->data = nw_test_slurp(path, &p->size);
  if (!p->data)
    fail_msg("cannot read %s", path);
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)p->data;
  if (p->size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
      eh->e_ident[EI_CLASS] != ELFCLASS64)
    fail_msg("%s is not a 64-bit ELF file", path);
  if (eh->e_shoff == 0 ||
      eh->e_shoff + (size_t)eh->e_shnum * sizeof(Elf64_Shdr) > p->size)
    fail_msg("%s: no section headers", path);
}

static const Elf64_Shdr *section(const program *p, int i) {
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)p->data;
  return (const Elf64_Shdr *)(p->data + eh->e_shoff) + i;
}

/* The NUL-terminated string at off of string table section link. */
static const char *string_at(const program *p, unsigned link, size_t off) {
  const Elf64_Shdr *st = section(p, (int)link);
  if (st->sh_type != SHT_STRTAB || off >= st->sh_size ||
      st->sh_offset + st->sh_size > p->size)
    return "";
  const char *s = p->data + st->sh_offset + off;
  return memchr(s, '\0', st->sh_size - off) ? s : "";
}

static void read_symbols(program *p, const Elf64_Shdr *sh) {
  if (sh->sh_offset + sh->sh_size > p->size)
    fail_msg("%s: a symbol table past the end of the file", p->path);
  const Elf64_Sym *sym = (const Elf64_Sym *)(p->data + sh->sh_offset);
  size_t n = sh->sh_size / sizeof *sym;
  for (size_t i = 1; i < n; i++) {
    const char *name = string_at(p, sh->sh_link, sym[i].st_name);
    if (!*name)
      continue;
    p->n_symbols++;
    p->n_blas += is_blas_symbol(name);
    if (is_cuda_symbol(name)) {
      if (p->n_cuda < 8)
        snprintf(p->first[p->n_cuda], sizeof p->first[0], "%s", name);
      p->n_cuda++;
    }
  }
}

static void read_needed(program *p, const Elf64_Shdr *sh) {
  if (sh->sh_offset + sh->sh_size > p->size)
    fail_msg("%s: a dynamic section past the end of the file", p->path);
  const Elf64_Dyn *d = (const Elf64_Dyn *)(p->data + sh->sh_offset);
  size_t n = sh->sh_size / sizeof *d;
  for (size_t i = 0; i < n && d[i].d_tag != DT_NULL; i++)
    if (d[i].d_tag == DT_NEEDED && p->n_needed < 32)
      snprintf(p->needed[p->n_needed++], sizeof p->needed[0], "%s",
               string_at(p, sh->sh_link, d[i].d_un.d_val));
}

/* Loads path and reads its symbol tables and DT_NEEDED list. */
static void program_read(program *p, const char *path) {
  program_load(p, path);
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)p->data;
  for (int i = 0; i < eh->e_shnum; i++) {
    const Elf64_Shdr *sh = section(p, i);
    if (sh->sh_type == SHT_SYMTAB || sh->sh_type == SHT_DYNSYM)
      read_symbols(p, sh);
    else if (sh->sh_type == SHT_DYNAMIC)
      read_needed(p, sh);
  }
  printf("%s: %d symbol names (%d CUDA, %d BLAS), %d libraries needed\n", path,
         p->n_symbols, p->n_cuda, p->n_blas, p->n_needed);
}

static void program_free(program *p) {
  free(p->data);
  p->data = NULL;
}

/* The reader itself: the test binary links cmocka and jansson (needed) and
 * has symbols; a reader that finds nothing would pass everything below. */
static void test_reader_sees_itself(void **state) {
  (void)state;
  program self;
  program_read(&self, "/proc/self/exe");
  assert_true(self.n_symbols > 100);
  int cmocka = 0;
  for (int i = 0; i < self.n_needed; i++)
    cmocka |= strstr(self.needed[i], "cmocka") != NULL;
  assert_true(cmocka);
  assert_true(is_cuda_symbol("cudaMalloc"));
  assert_true(is_cuda_symbol("cuInit"));
  assert_true(is_cuda_symbol("ncclAllReduce"));
  assert_true(is_cuda_symbol("nw_cuda_open"));
  assert_false(is_cuda_symbol("nw_device_built_with_cuda"));
  assert_false(is_cuda_symbol("cur_step")); /* lower case after "cu" */
  program_free(&self);
}

/* Whatever the build: the supervisor needs no GPU, NCCL or BLAS library,
 * and no CUDA or BLAS name appears in it. */
static void test_supervisor_links_no_gpu_or_blas(void **state) {
  (void)state;
  static const char *const banned[] = {"libcuda", "libcudart", "libcublas",
                                       "libnccl", "libnvidia", "libopenblas",
                                       "libblas", NULL};
  program sup;
  program_read(&sup, NW_BIN);
  assert_true(sup.n_symbols > 100); /* not stripped: the check means it */
  for (int i = 0; i < sup.n_needed; i++)
    for (int k = 0; banned[k]; k++)
      if (!strncmp(sup.needed[i], banned[k], strlen(banned[k])))
        fail_msg("%s needs %s", NW_BIN, sup.needed[i]);
  if (sup.n_cuda > 0)
    fail_msg("%s carries %d CUDA symbols, e.g. %s", NW_BIN, sup.n_cuda,
             sup.first[0]);
  assert_int_equal(sup.n_blas, 0);
  program_free(&sup);
}

/* A CUDA build: the trainer carries the CUDA backend, the supervisor none
 * of it. */
static void test_cuda_only_in_trainer(void **state) {
  (void)state;
#ifndef NW_HAVE_CUDA
  printf("skipped: this build has no CUDA backend (CMake found no nvcc, or "
         "NW_CUDA=OFF), so neither program carries CUDA code\n");
  skip();
#else
  program sup, train;
  program_read(&sup, NW_BIN);
  program_read(&train, NW_TRAIN_BIN);
  if (sup.n_cuda > 0)
    fail_msg("%s carries %d CUDA symbols, e.g. %s", NW_BIN, sup.n_cuda,
             sup.first[0]);
  if (train.n_cuda < 10)
    fail_msg("%s carries only %d CUDA symbols: is the backend linked?",
             NW_TRAIN_BIN, train.n_cuda);
  printf("the trainer's CUDA symbols include %s, %s\n", train.first[0],
         train.first[1]);
  program_free(&sup);
  program_free(&train);
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reader_sees_itself),
      cmocka_unit_test(test_supervisor_links_no_gpu_or_blas),
      cmocka_unit_test(test_cuda_only_in_trainer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
