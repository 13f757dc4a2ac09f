/* tests/fuzz/fuzz_train_config.c: libFuzzer target for the run configuration kept in a run folder
 * (train_config.json) and for duration strings. An accepted configuration must survive a JSON
 * round trip unchanged, with the same trajectory hash. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Durations: the raw bytes as a string. */
    char s[64];
    size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
    memcpy(s, data, n);
    s[n] = 0;
    ft_duration d;
    ft_err err;
    if (ft_duration_parse(s, "training_duration", &d, &err) == FT_OK) {
        char back[32];
        ft_duration d2;
        ft_duration_format(d, back, sizeof back);
        if (d.value < 1 || ft_duration_parse(back, "x", &d2, &err) != FT_OK || d2.value != d.value ||
            d2.unit != d.unit)
            __builtin_trap();
    }
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!j)
        return 0;
    ft_train_config c = ft_train_default_config();
    if (ft_train_config_from_json(j, &c, &err) == FT_OK) {
        json_t *a = ft_train_config_to_json(&c);
        ft_train_config c2 = ft_train_default_config();
        if (ft_train_config_from_json(a, &c2, &err) != FT_OK)
            __builtin_trap();
        json_t *b = ft_train_config_to_json(&c2);
        if (!json_equal(a, b) || ft_train_config_hash(&c) != ft_train_config_hash(&c2))
            __builtin_trap();
        ft_train_config_validate(&c, &err);
        json_decref(a);
        json_decref(b);
        ft_train_config_deinit(&c2);
    }
    ft_train_config_deinit(&c);
    json_decref(j);
    return 0;
}
