/* cli_ckpt.c — list, verify and inspect checkpoints. Verification always
 * runs isolated (a child with a time limit): these commands are pointed at
 * files that may be damaged. */
#define _GNU_SOURCE
#include "cli/cli_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/error.h"
#include "checkpoints/ckpt.h"
#include "protocol/exit_codes.h"

#define NW_CLI_VERIFY_TIMEOUT 60.0
#define NW_CLI_MAX_CKPTS 4096

static int nw_is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* paths: room for NW_CLI_MAX_CKPTS of them. */
static int nw_cli_ckpt_ls_in(const char *run_dir, int verify,
                             char (*paths)[NW_PATH_MAX]) {
  int n = 0;
  char err[1024];
  if (nw_ckpt_list(run_dir, paths, NW_CLI_MAX_CKPTS, &n, err, sizeof err) < 0) {
    fprintf(stderr, "nightwatch: %s\n", err);
    return NW_EXIT_FAILURE;
  }
  if (n == 0) {
    printf("no checkpoints in %s/%s\n", run_dir, NW_CKPT_SUBDIR);
    return verify ? NW_EXIT_FAILURE : 0;
  }
  int bad = 0;
  printf("%-12s %10s %-19s  %s\n", "step", "MiB", "written", "file");
  for (int i = 0; i < n && i < NW_CLI_MAX_CKPTS; i++) {
    struct stat st;
    char when[32] = "?";
    double mib = 0;
    if (stat(paths[i], &st) == 0) {
      struct tm tm;
      localtime_r(&st.st_mtime, &tm);
      strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
      mib = st.st_size / (1024.0 * 1024.0);
    }
    const char *base = strrchr(paths[i], '/');
    base = base ? base + 1 : paths[i];
    long long step = -1;
    sscanf(base, "ckpt-%lld.h5", &step);
    printf("%-12lld %10.1f %-19s  %s", step, mib, when, paths[i]);
    if (verify) {
      int rc = nw_ckpt_verify_isolated(paths[i], NW_CLI_VERIFY_TIMEOUT, err,
                                       sizeof err);
      printf("  %s%s", rc == 0 ? "ok" : "DAMAGED: ", rc == 0 ? "" : err);
      bad += rc < 0;
    }
    printf("\n");
  }
  return bad ? NW_EXIT_FAILURE : 0;
}

static int nw_cli_ckpt_ls(const char *run_dir, int verify) {
  /* 4 MiB of names: the heap's, not the stack's */
  char(*paths)[NW_PATH_MAX] = calloc(NW_CLI_MAX_CKPTS, sizeof *paths);
  if (!paths) {
    fprintf(stderr, "nightwatch: out of host memory\n");
    return NW_EXIT_FAILURE;
  }
  int rc = nw_cli_ckpt_ls_in(run_dir, verify, paths);
  free(paths);
  return rc;
}

static int nw_cli_ckpt_inspect(const char *path) {
  char err[1024];
  nw_ckpt_state st;
  if (nw_ckpt_verify_isolated(path, NW_CLI_VERIFY_TIMEOUT, err, sizeof err) <
          0 ||
      nw_ckpt_read(path, &st, err, sizeof err) < 0) {
    fprintf(stderr, "nightwatch: %s\n", err);
    return NW_EXIT_FAILURE;
  }
  printf("file            %s (verified: every dataset's CRC-32C matches)\n",
         path);
  printf("step            %lld\n", (long long)st.step);
  printf("tokens seen     %lld\n", (long long)st.tokens_seen);
  printf("data position   example %llu (seed %llu)\n",
         (unsigned long long)st.data_index, (unsigned long long)st.data_seed);
  printf("model           %d layers, %d heads, width %d, vocabulary %d, "
         "%d positions: %zu parameters in %d tensors\n",
         st.shape.n_layer, st.shape.n_head, st.shape.n_embd,
         st.shape.vocab_size, st.shape.max_seq_len, st.num_params,
         st.n_tensors);
  printf("batch           effective %d = micro %d x accumulation %d x world "
         "%d\n",
         st.effective, st.micro, st.accum, st.world);
  printf("max length      %d\n", st.max_seq_len);
  printf("eval            batch %d, kv-cache %s after generation\n",
         st.eval_batch, st.eval_release_cache ? "released" : "kept");
  printf("optimizer state %s\n",
         st.exp_avg ? "AdamW exp_avg and exp_avg_sq" : "none (no step yet)");
  printf("tensors:\n");
  for (int i = 0; i < st.n_tensors; i++) {
    const nw_tensor_info *t = &st.tensors[i];
    if (t->ndim == 2)
      printf("  %-44s (%d, %d)\n", t->name, t->shape[0], t->shape[1]);
    else
      printf("  %-44s (%d)\n", t->name, t->shape[0]);
  }
  nw_ckpt_free(&st);
  return 0;
}

static void nw_cli_ckpt_usage(FILE *f) {
  fputs("usage: nightwatch ckpt ls RUN_DIR\n"
        "       nightwatch ckpt verify FILE|RUN_DIR\n"
        "       nightwatch ckpt inspect FILE\n",
        f);
}

int nw_cli_ckpt(int argc, char **argv) {
  if (argc != 3) {
    nw_cli_ckpt_usage(stderr);
    return NW_EXIT_USAGE;
  }
  const char *verb = argv[1], *arg = argv[2];
  if (strcmp(verb, "ls") == 0)
    return nw_cli_ckpt_ls(arg, 0);
  if (strcmp(verb, "verify") == 0) {
    if (nw_is_dir(arg))
      return nw_cli_ckpt_ls(arg, 1);
    char err[1024];
    int rc =
        nw_ckpt_verify_isolated(arg, NW_CLI_VERIFY_TIMEOUT, err, sizeof err);
    if (rc < 0) {
      printf("%s: DAMAGED: %s\n", arg, err);
      return NW_EXIT_FAILURE;
    }
    printf("%s: ok\n", arg);
    return 0;
  }
  if (strcmp(verb, "inspect") == 0)
    return nw_cli_ckpt_inspect(arg);
  nw_cli_ckpt_usage(stderr);
  return NW_EXIT_USAGE;
}
