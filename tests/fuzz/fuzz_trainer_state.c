/* tests/fuzz/fuzz_trainer_state.c: libFuzzer target for a checkpoint's trainer_state.json
 * (ft_train_state_parse), which resume trusts for its counters and batch plan. An accepted state
 * must be one a resume can continue from. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ft_train_state st;
    ft_err err;
    if (ft_train_state_parse("trainer_state.json", (const char *)data, size, &st, &err) != FT_OK) {
        if (!err.msg[0])
            __builtin_trap(); /* a refusal says why */
        ft_train_state_deinit(&st);
        return 0;
    }
    if (st.step < 0 || st.epoch < 0 || st.micro_batch_size < 1 || st.global_batch_size < st.micro_batch_size ||
        st.context_length < 1 || st.total_steps < 1 || st.warmup_steps < 0 || st.step > st.total_steps ||
        st.tokens_seen < 0 || st.n_loss_window < 0 || (st.n_loss_window && !st.loss_window))
        __builtin_trap();
    double sum = 0;
    for (int64_t i = 0; i < st.n_loss_window; i++)
        sum += st.loss_window[i];
    (void)sum;
    ft_train_state_deinit(&st);
    return 0;
}
