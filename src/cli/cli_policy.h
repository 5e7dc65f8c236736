/* cli_policy.h — `nightwatch policy check|show`: recovery policies for
 * people (docs/policies.md).
 * defines: nw_cli_policy, nw_cli_policy_print_error */
#ifndef NW_CLI_POLICY_H
#define NW_CLI_POLICY_H

/* argv[0] is "policy".
 *   check FILE   every error as FILE:LINE: reason (stderr), exit 1; or one
 *                line per cause chain and one for the limits, exit 0
 *   show [FILE]  the complete policy (FILE, or the built-in default) as a
 *                policy file
 * Returns the exit code: 0 ok, 1 a bad or unreadable file, 64 usage. */
int nw_cli_policy(int argc, char **argv);

/* An error sink for nw_policy_load_cb: prints "FILE:LINE: reason" on stderr
 * and counts it in *(int *)user. */
void nw_cli_policy_print_error(void *user, const char *name, int line,
                               const char *msg);

#endif
