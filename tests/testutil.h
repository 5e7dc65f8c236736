/* testutil.h — helpers shared by the test binaries.
 * defines: nw_test_tmpdir, nw_test_rmdir_flat, nw_test_write_text,
 *          nw_test_rel_diff, nw_test_run_cmd, nw_test_ledger_load,
 *          nw_test_ledger_find, nw_test_ledger_count, nw_test_now,
 *          nw_test_sleep, nw_test_spawn_logged, nw_test_wait_exit,
 *          nw_test_wait_or_kill, nw_test_slurp,
 *          nw_test_wait_step_line, nw_test_json_int, nw_test_json_str,
 *          nw_test_seed */
#ifndef NW_TESTUTIL_H
#define NW_TESTUTIL_H

#include <jansson.h>
#include <stddef.h>

/* Creates a fresh directory under $TMPDIR (or /tmp) and returns its path in
 * buf. Aborts the test process on failure. */
void nw_test_tmpdir(char *buf, size_t len, const char *tag);

/* Removes the files of dir (not subdirectories) and dir itself; 0 or -1. */
int nw_test_rmdir_flat(const char *dir);

/* Writes text to dir/name and returns that path in path. Aborts the test
 * process when it cannot. */
void nw_test_write_text(const char *dir, const char *name, const char *text,
                        char *path, size_t len);

/* max_i |a_i - b_i| / max(max_i |b_i|, tiny): one relative error for a
 * whole tensor. */
double nw_test_rel_diff(const float *a, const float *b, size_t n);

/* Runs argv to completion with stdout+stderr captured into out (NUL
 * terminated, truncated to len). Returns the exit status, or 128+signal
 * when it died of a signal, or -1 when it could not run. */
int nw_test_run_cmd(char *const argv[], char *out, size_t len);

/* Reads a trainer's status lines (docs/protocol.md) from fd until a "step"
 * line with step >= step: 0; -1 at end of file or after timeout seconds.
 * A stale trainer started by a test holds its steady memory (optimizer
 * state allocated, activations cached) once it has completed a step. */
int nw_test_wait_step_line(int fd, int step, double timeout);

/* o's member k as an int (0 when absent or not a number), and as a string
 * ("" when absent or not a string): ledger fields, read without checks. */
int nw_test_json_int(const json_t *o, const char *k);
const char *nw_test_json_str(const json_t *o, const char *k);

/* The whole file at path, NUL-terminated, malloc'd (free it); *len (may be
 * NULL) gets its size. NULL when it cannot be read. */
char *nw_test_slurp(const char *path, size_t *len);

/* The seed of a randomised test: NW_TEST_SEED from the environment (to
 * replay a failure), else one from the clock and the pid. Printed either
 * way, with the line that replays it; what names the test. */
unsigned nw_test_seed(const char *what);

/* Monotonic seconds, and a sleep of fractional seconds. */
double nw_test_now(void);
void nw_test_sleep(double seconds);

/* Starts argv (argv[0] a path) with stdout and stderr appended to log and
 * OMP_NUM_THREADS=1 (tests run beside each other on few cores); returns
 * its pid. Aborts the test process when it cannot fork. */
int nw_test_spawn_logged(char *const argv[], const char *log);

/* Waits up to timeout seconds for pid (a child): its exit code, 128+signal
 * when a signal ended it, or -1 when it still runs (left running). */
int nw_test_wait_exit(int pid, double timeout);
/* The same, but a child still running after timeout is SIGKILLed and
 * reaped (-1): nothing of a failed test keeps running. */
int nw_test_wait_or_kill(int pid, double timeout);

/* RUN_DIR/ledger.jsonl as an array of objects (empty when there is none;
 * lines that do not parse are left out). json_decref it. */
json_t *nw_test_ledger_load(const char *run_dir);
/* The nth (0-based) entry with this event, borrowed from a; NULL if none. */
json_t *nw_test_ledger_find(json_t *a, const char *event, int nth);
/* How many entries have this event. */
int nw_test_ledger_count(json_t *a, const char *event);

#endif
