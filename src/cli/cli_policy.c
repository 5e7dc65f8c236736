/* cli_policy.c — check a policy file before a supervisor refuses it, and
 * show what a policy means in full. */
#include "cli/cli_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "protocol/exit_codes.h"
#include "recovery/policy.h"

static void nw_cli_policy_usage(FILE *f) {
  fputs("usage: nightwatch policy check FILE   list every error, or the "
        "chains\n"
        "       nightwatch policy show [FILE]  the complete policy (default: "
        "built-in)\n",
        f);
}

/* Every error on its own line, however many the file has. */
void nw_cli_policy_print_error(void *user, const char *name, int line,
                               const char *msg) {
  int *n = user;
  (*n)++;
  if (line > 0)
    fprintf(stderr, "%s:%d: %s\n", name, line, msg);
  else
    fprintf(stderr, "%s: %s\n", name, msg);
}

static int nw_cli_policy_read(const char *path, nw_policy *p) {
  int nerr = 0;
  int rc =
      nw_policy_load_cb(path, p, nw_cli_policy_print_error, &nerr, NULL, 0);
  if (rc < 0) {
    if (nerr == 0) /* out of memory: nothing went through the sink */
      fprintf(stderr, "%s: %s\n", path, nw_strerror(rc));
    else if (rc == NW_ECONFIG)
      fprintf(stderr, "%s: %d error%s, policy refused\n", path, nerr,
              nerr == 1 ? "" : "s");
    return NW_EXIT_FAILURE;
  }
  return 0;
}

static int nw_cli_policy_check(const char *path) {
  nw_policy p;
  if (nw_cli_policy_read(path, &p) != 0)
    return NW_EXIT_FAILURE;
  static const nw_cause order[] = {NW_CAUSE_EVAL_CACHE, NW_CAUSE_DUPLICATE,
                                   NW_CAUSE_ACTIVATION,
                                   NW_CAUSE_SEQUENCE_LENGTH, NW_CAUSE_UNKNOWN};
  char line[1024];
  printf("%s: ok\n", path);
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    nw_policy_chain_summary(&p, order[i], line, sizeof line);
    printf("  %-18s %s\n", nw_cause_name(order[i]), line);
  }
  nw_policy_limits_summary(&p, line, sizeof line);
  printf("  %-18s %s\n", "limits", line);
  return 0;
}

static int nw_cli_policy_show(const char *path) {
  nw_policy p;
  nw_policy_defaults(&p);
  if (path && nw_cli_policy_read(path, &p) != 0)
    return NW_EXIT_FAILURE;
  size_t need = nw_policy_dump(&p, NULL, 0) + 1;
  char *text = malloc(need);
  if (!text) {
    fprintf(stderr, "nightwatch: %s\n", nw_strerror(NW_EHOSTMEM));
    return NW_EXIT_FAILURE;
  }
  nw_policy_dump(&p, text, need);
  fputs(text, stdout);
  free(text);
  return 0;
}

int nw_cli_policy(int argc, char **argv) {
  if (argc >= 2 &&
      (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    nw_cli_policy_usage(stdout);
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "check") == 0)
    return nw_cli_policy_check(argv[2]);
  if ((argc == 2 || argc == 3) && strcmp(argv[1], "show") == 0)
    return nw_cli_policy_show(argc == 3 ? argv[2] : NULL);
  nw_cli_policy_usage(stderr);
  return NW_EXIT_USAGE;
}
