/* tests/tok/test_tok_fast_split.c: the hand scanners for the Llama 3 and Qwen pre-tokenizer
 * regexes (src/tok/fast_split.c) against Oniguruma itself: every Unicode code point in mixed
 * contexts, random strings over a tricky alphabet, and the parity corpus. White-box: it uses the
 * tokenizer's internal pattern API to run the same pattern both ways. */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "test.h"
#include "tok/tok_internal.h"

static const char *PATTERNS[2] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+",
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+",
};

typedef struct pair_re {
    tok_regex fast, onig;
} pair_re;

static bool setup(pair_re *p, int which) {
    ft_err err;
    const char *pat = PATTERNS[which];
    if (tok_regex_compile(&p->fast, pat, strlen(pat), true, &err) || tok_regex_compile(&p->onig, pat, strlen(pat), true, &err))
        return false;
    p->onig.fast = 0;
    return p->fast.fast != 0; /* the loader must recognize the pattern */
}

static void teardown(pair_re *p) {
    tok_regex_free(&p->fast);
    tok_regex_free(&p->onig);
}

/* Same matches both ways? Prints the first difference. */
static bool same(pair_re *p, const char *s, size_t n, int *shown) {
    match_vec a = {0}, b = {0};
    ft_err err;
    bool ok = !tok_find_matches(&p->fast, s, n, &a, &err) && !tok_find_matches(&p->onig, s, n, &b, &err) && a.n == b.n &&
              memcmp(a.v, b.v, 3 * a.n * sizeof *a.v) == 0;
    if (!ok && (*shown)++ < 3) {
        fprintf(stderr, "  fast scanner differs from Oniguruma on \"");
        for (size_t i = 0; i < n && i < 80; i++)
            fprintf(stderr, (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f ? "\\x%02x" : "%c", (unsigned char)s[i]);
        fprintf(stderr, "\"\n    fast:");
        for (size_t i = 0; i < a.n && i < 12; i++)
            fprintf(stderr, " [%zu,%zu)%s", a.v[3 * i], a.v[3 * i + 1], a.v[3 * i + 2] ? "" : "-");
        fprintf(stderr, "\n    onig:");
        for (size_t i = 0; i < b.n && i < 12; i++)
            fprintf(stderr, " [%zu,%zu)%s", b.v[3 * i], b.v[3 * i + 1], b.v[3 * i + 2] ? "" : "-");
        fprintf(stderr, "\n");
    }
    ft_free(a.v);
    ft_free(b.v);
    return ok;
}

TEST(tok_fast_split_every_code_point) {
    /* each code point in strings of 128 with separators cycling through the contexts that
     * matter (apostrophe before, space before, CR/LF after, letters and digits around) */
    static const char *seps[] = {"", " ", "'", "\n", "a", "1", "  ", "\r\n", "''", " '", "\t", ""};
    size_t step = ft_test_sanitized() ? 5 : 1;
    for (int which = 0; which < 2; which++) {
        pair_re p;
        REQUIRE(setup(&p, which));
        ft_buf b = {0};
        size_t strings = 0, bad = 0, k = 0;
        int shown = 0;
        for (uint32_t cp = 0; cp <= 0x10FFFF; cp += (uint32_t)step) {
            if (cp >= 0xD800 && cp <= 0xDFFF)
                continue;
            char u[4];
            int un = ft_utf8_encode(cp, u);
            ft_buf_append(&b, u, (size_t)un);
            const char *sep = seps[k++ % (sizeof seps / sizeof *seps)];
            ft_buf_append(&b, sep, strlen(sep));
            ft_buf_append(&b, u, (size_t)un);
            if (k % 128 == 0 || cp + step > 0x10FFFF) {
                strings++;
                bad += !same(&p, b.data, b.len, &shown);
                b.len = 0;
            }
        }
        fprintf(stderr, "  pattern %d: %zu/%zu strings covering every code point agree\n", which, strings - bad, strings);
        CHECK_EQ_INT(bad, 0);
        ft_buf_free(&b);
        teardown(&p);
    }
}

TEST(tok_fast_split_random_strings) {
    static const char *alpha[] = {"a", "Z", "s", "S", "t", "T", "r", "e", "E", "v", "m", "M", "l", "L", "d", "D", "'", "'", "\xe2\x80\x99",
                                  "0", "7", "42", " ", " ", " ", "  ", "\t", "\r", "\n", "\r\n", "\x0b", "\x0c", "\xc2\xa0",
                                  "\xe3\x80\x80", "\xe2\x80\xa8", "\xc2\x85", "\xc5\xbf", "!", ".", ",", "-", "\"", "(", ")", "_",
                                  "\xc3\xa9", "\xe4\xb8\xad", "\xd9\xa3", "\xc2\xbd", "\xe2\x85\xa0", "\xcc\x81", "\xf0\x9f\x98\x80",
                                  "\xe2\x80\x8d", "\xef\xbc\x91", "\xd0\x96", "\xe0\xa4\x95", "\xe0\xa5\x8d", "\x00", "\x7f"};
    size_t na = sizeof alpha / sizeof *alpha;
    size_t count = ft_test_sanitized() ? 3000 : 20000;
    for (int which = 0; which < 2; which++) {
        pair_re p;
        REQUIRE(setup(&p, which));
        ft_rng r;
        ft_rng_seed(&r, 1234 + (uint64_t)which);
        ft_buf b = {0};
        size_t bad = 0;
        int shown = 0;
        for (size_t i = 0; i < count; i++) {
            b.len = 0;
            size_t len = 1 + ft_rng_below(&r, 24);
            for (size_t k = 0; k < len; k++) {
                const char *x = alpha[ft_rng_below(&r, na)];
                ft_buf_append(&b, x, x[0] ? strlen(x) : 1);
            }
            bad += !same(&p, b.data, b.len, &shown);
        }
        fprintf(stderr, "  pattern %d: %zu/%zu random strings agree\n", which, count - bad, count);
        CHECK_EQ_INT(bad, 0);
        ft_buf_free(&b);
        teardown(&p);
    }
}

TEST(tok_fast_split_corpus) {
    char *data;
    size_t len;
    ft_err err;
    REQUIRE_OK(ft_file_read_all(ft_test_fixture("tok/corpus.jsonl"), &data, &len, &err), &err);
    for (int which = 0; which < 2; which++) {
        pair_re p;
        REQUIRE(setup(&p, which));
        size_t n = 0, bad = 0;
        int shown = 0;
        for (char *q = data, *end = data + len; q < end;) {
            char *nl = memchr(q, '\n', (size_t)(end - q));
            size_t ln = nl ? (size_t)(nl - q) : (size_t)(end - q);
            json_error_t je;
            json_t *j = json_loadb(q, ln, JSON_ALLOW_NUL, &je);
            q += ln + 1;
            if (!j)
                continue;
            const json_t *t = json_object_get(j, "text");
            n++;
            bad += !same(&p, json_string_value(t), json_string_length(t), &shown);
            json_decref(j);
        }
        CHECK(n >= 3000);
        CHECK_EQ_INT(bad, 0);
        teardown(&p);
    }
    ft_free(data);
}
