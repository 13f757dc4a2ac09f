/* tests/fuzz/fuzz_batch.c: libFuzzer target for the batch JSON that `ftune debug forward --batch`
 * reads (ft_model_batch_parse). An accepted batch must have B, T >= 1 and readable rows of its
 * shape. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ft_batch_owned b;
    ft_err err;
    if (ft_model_batch_parse("batch.json", (const char *)data, size, &b, &err) != FT_OK) {
        if (b.input_ids || b.targets || b.position_ids || b.sample_ids)
            __builtin_trap(); /* a refused batch owns nothing */
        return 0;
    }
    if (b.b.B < 1 || b.b.T < 1 || !b.b.input_ids || !b.b.targets)
        __builtin_trap();
    int64_t sum = 0;
    for (int64_t i = 0; i < b.b.B * b.b.T; i++) { /* every cell is readable */
        sum += b.b.input_ids[i] + b.b.targets[i];
        if (b.b.position_ids)
            sum += b.b.position_ids[i];
        if (b.b.sample_ids)
            sum += b.b.sample_ids[i];
    }
    (void)sum;
    ft_model_batch_free(&b);
    return 0;
}
