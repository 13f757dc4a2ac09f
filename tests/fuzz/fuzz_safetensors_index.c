/* tests/fuzz/fuzz_safetensors_index.c: libFuzzer target for sharded models: arbitrary bytes as
 * model.safetensors.index.json beside two valid shards (s1: "a", "b"; s2: "c"). Whatever the
 * index says, opening must either fail cleanly or give tensors that are all readable. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256], index_path[300];

static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/ftune-fuzz-index-%ld", (long)getpid());
    ft_mkdir_p(dir, NULL);
    float v[4] = {1, 2, 3, 4};
    const float *d[2] = {v, v};
    const char *n1[2] = {"a", "b"}, *n2[1] = {"c"};
    int nd[2] = {1, 2};
    int64_t s1[1] = {4}, s2[2] = {2, 2};
    const int64_t *sh[2] = {s1, s2};
    char p[300];
    snprintf(p, sizeof p, "%s/s1.safetensors", dir);
    ft_st_save_f32(p, 2, n1, nd, sh, d, FT_ST_DTYPE_BF16, NULL);
    snprintf(p, sizeof p, "%s/s2.safetensors", dir);
    ft_st_save_f32(p, 1, n2, nd, sh, d, FT_ST_DTYPE_F32, NULL);
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0])
        setup();
    FILE *f = fopen(index_path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    ft_st_reader *r = NULL;
    ft_err err;
    if (ft_st_open(index_path, &r, &err) == FT_OK) {
        for (size_t i = 0; i < ft_st_count(r); i++) {
            const ft_st_tensor *t = ft_st_tensor_at(r, i);
            float out[4];
            if (t->numel > 4 || ft_st_find(r, t->name) != t)
                __builtin_trap();
            ft_st_read_f32(t, out, t->numel, &err);
        }
        ft_st_close(r);
    }
    return 0;
}
