/* ftune/batch.h: the packed batch, the one type data (which produces batches) and model (which
 * consumes them) share, so neither depends on the other for it. Header only. */
#ifndef FTUNE_BATCH_H
#define FTUNE_BATCH_H

#include <stdint.h>

/* A packed batch, all (B, T) row-major. targets[b][t] is the token to predict at t, -100 = no
 * loss. position_ids / sample_ids may be NULL (0..T-1; one sample per row). A row holds several
 * samples: position ids restart per sample and attention never crosses a sample boundary. */
typedef struct ft_batch {
    int64_t B, T;
    const int32_t *input_ids;
    const int32_t *targets;
    const int32_t *position_ids;
    const int32_t *sample_ids;
} ft_batch;

#endif
