/* exit_codes.h — the one list of nightwatch's exit codes: what
 * nightwatch-train's exit status means to its supervisor (docs/protocol.md)
 * and what `nightwatch` itself exits with (docs/supervisor.md). Classes as
 * sysexits(3) and s6 name them: the two programs share the values where
 * they share the meaning.
 * defines: NW_EXIT_CODES, NW_EXIT_* */
#ifndef NW_EXIT_CODES_H
#define NW_EXIT_CODES_H

/* X(NAME, code, short name, what nightwatch-train means by it, what
 * `nightwatch` means by it); "" where that program never exits with it. The
 * tables of docs/protocol.md and docs/supervisor.md follow this list. */
#define NW_EXIT_CODES(X)                                                       \
  X(FINISHED, 0, "finished",                                                   \
    "ran to train.steps, or stopped on request after its checkpoint",          \
    "the run finished, or was stopped and the trainer checkpointed")           \
  X(FAILURE, 1, "failure",                                                     \
    "anything else that went wrong (I/O, a numerical failure): worth a "       \
    "restart",                                                                 \
    "gave up, the run directory is locked by another supervisor, or a "        \
    "system failure: systemd's restart logic takes over")                      \
  X(USAGE, 64, "usage", "bad command line: never retried", "bad command line") \
  X(DAMAGED, 65, "no good checkpoint",                                         \
    "the run has checkpoints and none verifies (moved to "                     \
    "checkpoints/damaged/): never starts over by itself; --resume none does",  \
    "")                                                                        \
  X(LOCKED, 73, "run directory in use",                                        \
    "another trainer holds RUN_DIR/trainer.lock: refused at start", "")        \
  X(STORAGE, 74, "storage",                                                    \
    "checkpoint.max_failures checkpoints in a row could not be written: "      \
    "stopped, so that no more work goes unsaved",                              \
    "")                                                                        \
  X(OOM, 75, "out of memory",                                                  \
    "a device allocation failed: classify and recover", "")                    \
  X(PEER, 76, "peer failed",                                                   \
    "a peer rank failed (EX_PROTOCOL): the failing rank explains", "")         \
  X(CONFIG, 78, "config error",                                                \
    "bad config or data, settings that do not divide: never retried",          \
    "a bad config or policy, a trainer that cannot be executed or that "       \
    "exited 64 or 78")

enum {
#define NW_EXIT_ENUM(name, code, short_name, trainer, supervisor)              \
  NW_EXIT_##name = code,
  NW_EXIT_CODES(NW_EXIT_ENUM)
#undef NW_EXIT_ENUM
};

#endif
