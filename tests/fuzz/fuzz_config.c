/* tests/fuzz/fuzz_config.c: libFuzzer target for config.json parsing and validation. An accepted
 * config (dense, mixture of experts, DBRX) must give a consistent tensor list and parameter count. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ft_model_config c;
    ft_err err;
    if (ft_model_config_load_buf("config.json", (const char *)data, size, &c, &err) != FT_OK)
        return 0;
    size_t n = ft_model_config_tensors(&c, NULL, 0);
    /* a layer: 2 norms, 4 attention projections, and a dense MLP's 3 or a router plus 3 per expert */
    size_t per_layer = 6 + (c.num_local_experts > 0 ? 1 + 3 * (size_t)c.num_local_experts : 3);
    if (ft_model_config_is_dbrx(&c)) /* DBRX: 2 norms, Wqkv, out_proj, router, fused w1, v1, w2 */
        per_layer = 8;
    if (n != 2 + per_layer * (size_t)c.num_hidden_layers + (c.tie_word_embeddings ? 0 : 1))
        __builtin_trap();
    if (n <= 64) { /* sum the specs of small configs: must equal the parameter count */
        ft_tensor_spec ts[64];
        ft_model_config_tensors(&c, ts, 64);
        int64_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += ft_tensor_spec_numel(&ts[i]);
        if (sum != ft_model_config_n_params(&c))
            __builtin_trap();
    } else {
        ft_tensor_spec ts[3];
        ft_model_config_tensors(&c, ts, 3);
    }
    return 0;
}
