/* tests/fuzz/fuzz_ckpt_manifest.c: libFuzzer target for checkpoint manifests (MANIFEST.json, read
 * by ft_ckpt_verify) and the `latest` pointer (latest.txt, read by ft_ckpt_find_latest and
 * ft_ckpt_prune). The first input byte picks which file the rest becomes, in a checkpoint folder
 * under $TMPDIR that holds two small files. A manifest must never make verify read outside its
 * folder. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char run_dir[512], ckpt_dir[600], manifest[700], latest[700];

static void setup(void) {
    if (run_dir[0])
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(run_dir, sizeof run_dir, "%s/fuzz-ckpt-%ld", tmp ? tmp : "/tmp", (long)getpid());
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints/ep1-ba4", run_dir);
    snprintf(manifest, sizeof manifest, "%s/MANIFEST.json", ckpt_dir);
    snprintf(latest, sizeof latest, "%s/checkpoints/latest.txt", run_dir);
    ft_err err;
    if (ft_mkdir_p(ckpt_dir, &err) != FT_OK)
        abort();
    char p[800];
    snprintf(p, sizeof p, "%s/a.bin", ckpt_dir);
    if (ft_file_write_atomic(p, "hello", 5, &err) != FT_OK)
        abort();
    snprintf(p, sizeof p, "%s/b.json", ckpt_dir);
    if (ft_file_write_atomic(p, "{}", 2, &err) != FT_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size < 1)
        return 0;
    ft_err err;
    bool is_latest = data[0] & 1;
    /* a plain write: the atomic writer's fsync would make each run a thousand times slower */
    FILE *f = fopen(is_latest ? latest : manifest, "wb");
    if (!f || fwrite(data + 1, 1, size - 1, f) != size - 1 || fclose(f) != 0)
        abort();
    if (is_latest) {
        char *found = NULL;
        ft_buf notes = {0};
        if (ft_ckpt_find_latest(run_dir, true, &found, &notes, &err) == FT_OK)
            ft_free(found);
        found = NULL;
        if (ft_ckpt_find_latest(run_dir, false, &found, NULL, NULL) == FT_OK)
            ft_free(found);
        ft_buf_free(&notes);
        ft_ckpt_prune(run_dir, 5, NULL);
    } else {
        ft_ckpt_verify(ckpt_dir, true, &err);
        ft_ckpt_verify(ckpt_dir, false, NULL);
    }
    return 0;
}
