/* tests/infer/infer_fixture.h: the tiny model (train/tiny.h) loaded with its byte tokenizer from
 * a test's temporary folder, and made-up prompts: the setup the engine's tests share. */
#ifndef FTUNE_TESTS_INFER_FIXTURE_H
#define FTUNE_TESTS_INFER_FIXTURE_H

#include "ftune/model.h"
#include "ftune/tok.h"

typedef struct infer_fixture {
    ft_model *m;
    ft_tok *tok;
    char dir[1024];
} infer_fixture;

/* Write the tiny model (seed 4) into ft_test_tmpdir() and load it and its tokenizer. */
bool infer_fixture_load(infer_fixture *f, ft_err *err);
void infer_fixture_free(infer_fixture *f);
/* A prompt of n ids: BOS-like 256, then printable bytes that depend on salt. */
void infer_fill_prompt(int32_t *p, size_t n, uint32_t salt);

#endif
