/* tests/fuzz/fuzz_delta_log.c: libFuzzer target for the Delta log reader (src/data/delta.c,
 * delta_dv.c). The first byte chooses: even, the rest is a JSON commit replayed action by
 * action (add/remove keys, deletion vector descriptors, protocol, metaData, sidecars); odd, the
 * rest is a serialized deletion vector (magic + RoaringBitmapArray). Never a crash or a hang;
 * decoded deletion vectors must be sorted and unique. Seeds: tests/fuzz/corpus/delta_log. */
#include <stdint.h>
#include <stdlib.h>

#include "data/sources.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    ft_err err;
    if (data[0] % 2 == 0) {
        (void)delta_check_commit((const char *)data + 1, size - 1, &err);
        return 0;
    }
    uint64_t *rows = NULL;
    size_t n = 0;
    if (delta_dv_decode(data + 1, size - 1, &rows, &n, &err) == FT_OK)
        for (size_t i = 1; i < n; i++)
            if (rows[i] <= rows[i - 1])
                abort();
    ft_free(rows);
    return 0;
}
