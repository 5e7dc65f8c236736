/* data.h — training and held-out examples, their order, and micro-batches.
 * defines: nw_dataset, nw_data_open, nw_data_example, nw_data_count,
 *          nw_batch, nw_batch_build
 *
 * An example is one token sequence (one synthetic problem, one line of a
 * text file, one document of a token shard), truncated at max_seq_len + 1
 * tokens (inputs are tokens[0..n-2], targets tokens[1..n-1]). The order of
 * training examples depends only on the seed and the example's index in the
 * stream (effective-batch index * effective + row), never on micro-batches
 * or threads. */
#ifndef NW_DATA_H
#define NW_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"

typedef enum { NW_SPLIT_TRAIN = 0, NW_SPLIT_VAL = 1 } nw_split;

typedef struct nw_dataset nw_dataset;

/* Opens the configured source. err names the file and what is wrong
 * (missing, bad magic, token id >= vocab_size, empty, ...). Returns
 * NW_ECONFIG for a bad setting or NW_EDATA/NW_EIO for a bad file. */
int nw_data_open(nw_dataset **out, const nw_data_config *cfg, int vocab_size,
                 int max_seq_len, char *err, size_t errlen);
void nw_data_close(nw_dataset *d);

/* The example at position `index` of the split's stream (training: shuffled
 * per epoch from the seed; validation: in file order, wrapping). Writes up
 * to max_seq_len + 1 tokens into tokens and their number into *len (>= 2).
 * prompt_len receives how many leading tokens form the question that
 * generation is given (synthetic task: through '='), 0 when the source has
 * no answers to score. */
int nw_data_example(nw_dataset *d, nw_split split, uint64_t index, int *tokens,
                    int *len, int *prompt_len);

/* Number of distinct examples in the split; UINT64_MAX for the generated
 * synthetic stream. */
uint64_t nw_data_count(const nw_dataset *d, nw_split split);

/* Tokens in the answer of a synthetic example end with this token. */
#define NW_DATA_ANSWER_END '\n'

/* A padded micro-batch. inputs and targets (B, T), T = longest example - 1
 * of this micro-batch; targets are -1 at padding. */
typedef struct {
  int B, T;
  int *inputs;     /* (B, T) */
  int *targets;    /* (B, T) */
  int n_targets;   /* counted (non-padding) targets */
  int capacity_bt; /* allocated B*T */
} nw_batch;

/* Fills batch with examples index0 .. index0+B-1 of the split. Grows the
 * host buffers as needed (NW_EHOSTMEM on failure). */
int nw_batch_build(nw_batch *batch, nw_dataset *d, nw_split split,
                   uint64_t index0, int B);
void nw_batch_free(nw_batch *batch);

/* Counted targets of examples index0 .. index0+n-1 without building a batch
 * (the loss normaliser of an effective batch). */
int nw_data_count_targets(nw_dataset *d, nw_split split, uint64_t index0, int n,
                          int64_t *count);

#endif
