/* tests/infer/infer_fixture.c: see infer_fixture.h. */
#include "infer_fixture.h"

#include <string.h>

#include "test.h"
#include "train/tiny.h"

bool infer_fixture_load(infer_fixture *f, ft_err *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", ft_test_tmpdir());
    if (tiny_model_write(f->dir, 4, err) != FT_OK)
        return false;
    ft_model_params mp = ft_model_default_params();
    return ft_model_load(f->dir, &mp, &f->m, err) == FT_OK && ft_tok_load(f->dir, &f->tok, err) == FT_OK;
}

void infer_fixture_free(infer_fixture *f) {
    ft_tok_free(f->tok);
    ft_model_free(f->m);
}

void infer_fill_prompt(int32_t *p, size_t n, uint32_t salt) {
    p[0] = 256;
    for (size_t i = 1; i < n; i++)
        p[i] = (int32_t)(32 + (i * 7 + salt * 13 + i * i * salt) % 90);
}
