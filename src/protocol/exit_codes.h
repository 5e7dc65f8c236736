/* exit_codes.h — what nightwatch-train's exit status means to its
 * supervisor (docs/protocol.md). Classes as sysexits(3) names them.
 * defines: NW_EXIT_* */
#ifndef NW_EXIT_CODES_H
#define NW_EXIT_CODES_H

#define NW_EXIT_FINISHED 0 /* ran to the last step (or stopped on request) */
#define NW_EXIT_FAILURE 1  /* any other failure: worth a restart */
#define NW_EXIT_USAGE 64   /* bad command line: never retried */
#define NW_EXIT_OOM 75     /* out of device memory: classify and recover */
#define NW_EXIT_PEER 76    /* a peer rank failed (EX_PROTOCOL): look at it */
#define NW_EXIT_CONFIG 78  /* bad config or data: never retried */

#endif
