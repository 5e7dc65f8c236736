/* fixture.h — one supervised run for every end-to-end test: `nightwatch
 * run` (the real supervisor, over the real trainer unless a command is
 * given) in a case of its own. A case has a temporary home holding the run
 * directory, the supervisor's log and the config and policy files, and
 * virtual devices named for it. A test adds --set values, starts the run and
 * waits for events — ledger entries, status.json, the exit — never for
 * time; on a failure the log and the ledger are printed, and
 * nw_case_teardown kills whatever a failed test left running.
 * defines: nw_case, nw_case_new, nw_case_free, nw_case_teardown,
 *          nw_case_set, nw_case_arg, nw_case_world, nw_case_env,
 *          nw_case_output, nw_case_policy, nw_case_config,
 *          nw_case_spawn, nw_case_start, nw_case_wait, nw_case_run,
 *          nw_case_run_ok, nw_case_exec, nw_case_ledger,
 *          nw_case_wait_event, nw_case_wait_step, nw_case_wait_state,
 *          nw_case_dump,
 *          nw_case_log_has, nw_case_alive, nw_case_assert_nothing_left,
 *          nw_case_stale_trainer, nw_case_stale_exit */
#ifndef NW_TEST_FIXTURE_H
#define NW_TEST_FIXTURE_H

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

#define NW_CASE_MAX_ARGS 48 /* --set values, and raw arguments */
#define NW_CASE_MAX_ENV 8

typedef struct nw_case {
  char home[256];   /* temporary: everything of the case */
  char dir[300];    /* HOME/run: the run directory */
  char log[300];    /* HOME/sup.log: the supervisor's stdout+stderr */
  char device[64];  /* virtual device; DEVICE.r per rank when world > 1 */
  int world;        /* ranks; world.size is passed when set (> 0) */
  pid_t sup;        /* the running supervisor, 0 when none */
  pid_t stale;      /* a stale trainer of nw_case_stale_trainer, 0: none */
  int out_fd;       /* the supervisor's stdout+stderr when >= 0, else log */
  char config[320]; /* the config file, "" for none */
  char policy[320]; /* the policy file, "" for none */
  char *sets[NW_CASE_MAX_ARGS]; /* --set values of every start */
  int n_sets;
  char *args[NW_CASE_MAX_ARGS]; /* raw arguments after them ("--policy") */
  int n_args;
  char *env[NW_CASE_MAX_ENV][2]; /* NAME, value (NULL: unset) */
  int n_env;
  int done; /* nw_case_free ran: the test got to its end */
} nw_case;

/* A new case: HOME (under $TMPDIR), its empty run directory, a device
 * name unique to this process and case. Tag: a few [a-z0-9-] characters. */
nw_case *nw_case_new(const char *tag);

/* The end of a test that passed: kills a supervisor or stale trainer still
 * running, removes the devices and HOME. */
void nw_case_free(nw_case *c);

/* cmocka teardown: every case a failed test left (its assertion jumped
 * past nw_case_free) has its processes killed and its devices removed; its
 * HOME is kept and named, for the log. */
int nw_case_teardown(void **state);

/* A --set for every start (printf-style). */
void nw_case_set(nw_case *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A raw argument of every start, after the --set values ("--policy", a
 * path; "--" and a command). */
void nw_case_arg(nw_case *c, const char *arg);
/* Ranks: passes world.size=n; devices DEVICE.0 .. DEVICE.n-1. */
void nw_case_world(nw_case *c, int n);
/* An environment variable of the supervisor (value NULL: unset). */
void nw_case_env(nw_case *c, const char *name, const char *value);
/* The supervisor's stdout and stderr go to fd instead of the log. */
void nw_case_output(nw_case *c, int fd);

/* Files of a case (a secret, a policy rewritten for SIGHUP) go to HOME,
 * never into the run directory: nw_test_write_text(c->home, ...). */
/* HOME/policy.conf with text, passed as --policy; its path (c->policy). */
const char *nw_case_policy(nw_case *c, const char *text);
/* HOME/run.conf with text, passed as the CONFIG argument; its path. */
const char *nw_case_config(nw_case *c, const char *text);

/* Starts `nightwatch run CONFIG --run-dir DIR --set device.name=DEVICE
 * [--set world.size=N] SETS... EXTRA... ARGS...` with stdout and stderr
 * appended to log (extra: more --set values for this start only, NULL-
 * terminated, may be NULL). Its pid; the caller waits for it. */
pid_t nw_case_spawn(nw_case *c, const char *const *extra, const char *log);
/* The same with the case's log, recorded as the case's supervisor. */
pid_t nw_case_start(nw_case *c, const char *const *extra);
/* The supervisor's exit code (128+signal), or -1 when it still runs after
 * timeout seconds (then it is left running). */
int nw_case_wait(nw_case *c, double timeout);
/* Starts and waits; a supervisor still running after timeout is killed
 * (-1). Its exit code. */
int nw_case_run(nw_case *c, const char *const *extra, double timeout);
/* nw_case_run that must exit 0: otherwise the test fails with the log. */
void nw_case_run_ok(nw_case *c, const char *const *extra, double timeout);
/* Runs argv (argv[0] a path) with stdout+stderr appended to the log; a
 * command still running after timeout is killed (-1). Its exit code. */
int nw_case_exec(nw_case *c, char *const argv[], double timeout);

/* The ledger (an array of entries; json_decref it). */
json_t *nw_case_ledger(const nw_case *c);
/* Waits until the ledger holds n entries of event and returns it; fails the
 * test with the log after timeout seconds. */
json_t *nw_case_wait_event(nw_case *c, const char *event, int n,
                           double timeout);
/* Waits until status.json says "running" at step >= step with a trainer
 * for every rank; fills pids (world entries; may be NULL) and returns the
 * step. Fails the test with the log after timeout seconds. */
int nw_case_wait_step(nw_case *c, int step, double timeout, int *pids);
/* Waits until status.json's state is `state` ("stopping", "backoff", ...);
 * fails the test with the log after timeout seconds. */
void nw_case_wait_state(nw_case *c, const char *state, double timeout);

/* Prints the log and the ledger to stderr. */
void nw_case_dump(const nw_case *c);
/* 1 when the log contains needle. */
int nw_case_log_has(const nw_case *c, const char *needle);
/* 1 when pid runs and is not a zombie (any process, not only a child). */
int nw_case_alive(int pid);

/* Nothing of the run is left: no trainer of any start in the ledger (every
 * rank) still runs, and no /dev/shm segment names the run id. */
void nw_case_assert_nothing_left(const nw_case *c, json_t *ledger);

/* A stale nightwatch-train of the run, as a user starts one by hand: its
 * own run directory (HOME/stale, log HOME/stale.log), on `device`, with the
 * --set values sets (run.id among them). Returns once it has completed two
 * steps and holds at least `bytes` there (its steady memory: optimizer
 * state allocated, activations cached), then stops it (SIGSTOP) so that
 * its memory holds still, as a hung stale trainer's does: a running one
 * re-reserves activation blocks as lengths vary and can lose the race for
 * memory to the trainer under test. Fails the test when it never does. */
pid_t nw_case_stale_trainer(nw_case *c, const char *device,
                            const char *const *sets, uint64_t bytes);
/* How the stale trainer ended (its exit code, 128+signal), waiting up to
 * timeout seconds; -1 when it still ran (then it is killed). */
int nw_case_stale_exit(nw_case *c, double timeout);

#endif
