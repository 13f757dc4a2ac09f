/* tests/fuzz/fuzz_safetensors.c: libFuzzer target for the safetensors reader. Arbitrary bytes are
 * parsed as a whole file; when they are accepted, every tensor is looked up by name and, for the
 * float dtypes, converted, so a header that validation wrongly accepts shows up as an ASan read
 * past the buffer. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy into an exact-size heap buffer so ASan sees any read past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    ft_st_reader *r = NULL;
    ft_err err;
    if (ft_st_open_buffer("fuzz.safetensors", buf, size, &r, &err) == FT_OK) {
        size_t n = ft_st_count(r);
        for (size_t i = 0; i < n; i++) {
            const ft_st_tensor *t = ft_st_tensor_at(r, i);
            if (ft_st_find(r, t->name) != t)
                __builtin_trap(); /* names are unique, lookup must find this very tensor */
            volatile uint8_t sink = 0;
            const uint8_t *p = t->data;
            for (size_t b = 0; b < t->nbytes; b++) /* touch every byte the reader vouches for */
                sink ^= p[b];
            (void)sink;
            if (t->numel <= (1 << 20)) {
                float *out = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
                if (out) {
                    ft_st_read_f32(t, out, t->numel, &err);
                    free(out);
                }
            }
            int64_t shape[FT_ST_MAX_DIMS] = {0};
            ft_st_check_shape(t, t->ndim, shape, &err);
        }
        ft_st_metadata(r, "format");
        ft_st_close(r);
    } else {
        size_t k = ft_err_format(&err, (char[64]){0}, 64);
        (void)k;
    }
    free(buf);
    return 0;
}
