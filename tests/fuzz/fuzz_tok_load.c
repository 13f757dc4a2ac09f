/* tests/fuzz/fuzz_tok_load.c: libFuzzer target for tokenizer.json loading. Arbitrary bytes are
 * loaded as a tokenizer.json (the first line, when it is a JSON object, as tokenizer_config.json
 * too); an accepted tokenizer must then encode, decode and stream-decode a few texts and the
 * input itself without a crash, with offsets inside the text. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(ft_tok *t, const char *text, size_t n) {
    ft_tok_encoding e = {0};
    ft_err err;
    for (int sp = 0; sp < 2; sp++) {
        if (ft_tok_encode(t, text, n, sp, &e, &err) != FT_OK)
            continue;
        for (size_t i = 0; i < e.n; i++)
            if (e.offsets[i].start > e.offsets[i].end || e.offsets[i].end > n)
                __builtin_trap();
        char *s = NULL;
        size_t sn = 0;
        if (ft_tok_decode(t, e.ids, e.n, sp, &s, &sn, &err) == FT_OK) {
            if (ft_utf8_valid_prefix(s, sn) != sn)
                __builtin_trap(); /* decode always yields valid UTF-8 */
            ft_free(s);
        }
        ft_tok_stream *st;
        if (ft_tok_stream_new(t, sp, &st, &err) == FT_OK) {
            ft_buf out = {0};
            for (size_t i = 0; i < e.n; i++)
                if (ft_tok_stream_push(st, e.ids[i], &out, &err) != FT_OK)
                    break;
            ft_buf_free(&out);
            ft_tok_stream_free(st);
        }
    }
    ft_tok_encoding_free(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    ft_tok *t = NULL;
    ft_err err;
    if (ft_tok_load_buf("fuzz.json", buf, size, NULL, 0, &t, &err) == FT_OK) {
        static const char *texts[] = {"", "Hello world! it's 123 <s> </s>", "  \t\n\r x  ", "\xe4\xb8\xad\xf0\x9f\x98\x80 e\xcc\x81",
                                      "\xff\xfe\xc0 bad"};
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++)
            exercise(t, texts[i], strlen(texts[i]));
        exercise(t, buf, size < 512 ? size : 512);
        for (int32_t id = -2; id < 300; id++) {
            (void)ft_tok_id_to_token(t, id);
            (void)ft_tok_is_special(t, id);
        }
        ft_tok_info info;
        ft_tok_get_info(t, &info);
        ft_tok_free(t);
    }
    free(buf);
    return 0;
}
