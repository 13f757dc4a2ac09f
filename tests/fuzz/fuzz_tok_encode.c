/* tests/fuzz/fuzz_tok_encode.c: libFuzzer target encoding arbitrary bytes with the real
 * tokenizers of tests/fixtures/tok (loaded once; run from the repository root). The first byte
 * picks the tokenizer. Checks: encode never fails on any bytes, offsets stay inside the text,
 * decode yields valid UTF-8, and for Llama 3 (byte-level, no normalizer) decode(encode(x))
 * gives back x with ill-formed sequences as U+FFFD. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/tok.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *names[] = {"tests/fixtures/tok/llama3-instruct-rev2", "tests/fixtures/tok/mistral-7b-v0.1",
                              "tests/fixtures/tok/qwen3"};
static ft_tok *toks[3];

/* x with ill-formed UTF-8 replaced as Rust's from_utf8_lossy does (via the Llama 3 decoder is
 * what we test, so compute it independently here). */
static size_t lossy(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t v = ft_utf8_valid_prefix(s + i, n - i);
        memcpy(out + o, s + i, v);
        o += v;
        i += v;
        if (i >= n)
            break;
        const unsigned char *u = (const unsigned char *)s + i;
        size_t k = 1, need = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (u[0] >= 0xC2 && u[0] <= 0xDF) need = 1;
        else if (u[0] >= 0xE0 && u[0] <= 0xEF) { need = 2; if (u[0] == 0xE0) lo = 0xA0; if (u[0] == 0xED) hi = 0x9F; }
        else if (u[0] >= 0xF0 && u[0] <= 0xF4) { need = 3; if (u[0] == 0xF0) lo = 0x90; if (u[0] == 0xF4) hi = 0x8F; }
        for (; need && k <= need && i + k < n; k++) {
            unsigned c = u[k];
            if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF))
                break;
        }
        memcpy(out + o, "\xef\xbf\xbd", 3);
        o += 3;
        i += k;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    int which = data[0] % 3;
    if (!toks[which]) {
        ft_err err;
        if (ft_tok_load(names[which], &toks[which], &err) != FT_OK)
            __builtin_trap(); /* run from the repository root */
    }
    ft_tok *t = toks[which];
    size_t n = size - 1;
    char *text = malloc(n ? n : 1);
    if (!text)
        return 0;
    memcpy(text, data + 1, n);
    ft_tok_encoding e = {0};
    ft_err err;
    for (int sp = 0; sp < 2; sp++) {
        if (ft_tok_encode(t, text, n, sp, &e, &err) != FT_OK)
            __builtin_trap();
        for (size_t i = 0; i < e.n; i++)
            if (e.offsets[i].start > e.offsets[i].end || e.offsets[i].end > n)
                __builtin_trap();
        char *s;
        size_t sn;
        if (ft_tok_decode(t, e.ids, e.n, false, &s, &sn, &err) != FT_OK)
            __builtin_trap();
        if (ft_utf8_valid_prefix(s, sn) != sn)
            __builtin_trap();
        if (which == 0 && !sp) {
            char *want = malloc(3 * n + 1);
            size_t wn = lossy(text, n, want);
            if (wn != sn || memcmp(want, s, sn) != 0)
                __builtin_trap();
            free(want);
        }
        ft_free(s);
    }
    ft_tok_encoding_free(&e);
    free(text);
    return 0;
}
