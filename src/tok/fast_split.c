/* tok/fast_split.c: hand scanners for the pre-tokenizer regexes of Llama 3 and Qwen2/3,
 *
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *   \s*[\r\n]+|\s+(?!\S)|\s+                                   (Qwen: \p{N} instead of \p{N}{1,3})
 *
 * used in place of Oniguruma because they are most of the encoding time. Why they are exact:
 * every character starts a match of some alternative (letters: alt 2, numbers: alt 3, other
 * non-space: alt 4, space: alt 7), so matches tile the text and it is enough to find, at each
 * position, the end Oniguruma's leftmost-first backtracking gives, alternative by alternative:
 *  1. an apostrophe and one of s t m d / re ve ll in any case (Unicode case folding adds only
 *     U+017F LONG S for "s");
 *  2. an optional char that is not CR, LF, letter or number, then the longest letter run (the
 *     optional char is given back when no letter follows it);
 *  3. one to three (Qwen: one) numbers;
 *  4. an optional space, the longest run of chars that are not space, letter or number, then
 *     any CR/LF;
 *  5. within the whitespace run W starting here: up to and including its last CR or LF;
 *  6. W when it reaches the end of the text, else W without its last char if W has two or more;
 *  7. W.
 * Character classes beyond ASCII are the Unicode 16.0 ones the regexes are compiled with
 * (unicode.c), and tests/tok/test_tok_fast_split.c checks the scanners against Oniguruma's
 * matcher on every code point and on random and corpus text. */
#include <string.h>

#include "tok/fast_split.h"
#include "tok/tok_internal.h"

static const char LLAMA3_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
                              "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

void fast_split_detect(tok_regex *re, const char *pattern, size_t len) {
    int which = 0;
    if (len == sizeof LLAMA3_RE - 1 && !memcmp(pattern, LLAMA3_RE, len))
        which = FAST_LLAMA3;
    else if (len == sizeof QWEN_RE - 1 && !memcmp(pattern, QWEN_RE, len))
        which = FAST_QWEN;
    re->fast = which;
}

enum { C_L = 1, C_N = 2, C_S = 4, C_NL = 8 };

static int cls_of(const tok_regex *re, uint32_t c) {
    (void)re;
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return C_L;
        if (c >= '0' && c <= '9')
            return C_N;
        if (c == '\r' || c == '\n')
            return C_S | C_NL;
        if (c == ' ' || (c >= 0x09 && c <= 0x0D))
            return C_S;
        return 0;
    }
    if (tok_is_whitespace(c))
        return C_S;
    if (tok_u16_in(U16_LETTER, c))
        return C_L;
    if (tok_u16_in(U16_NUMBER, c))
        return C_N;
    return 0;
}

/* class and length of the char at s[i] (i < n; valid UTF-8) */
static inline int at(const tok_regex *re, const char *s, size_t n, size_t i, int *len, uint32_t *cp) {
    uint32_t c;
    *len = tok_utf8_next(s + i, n - i, &c);
    if (cp)
        *cp = c;
    return cls_of(re, c);
}

static size_t run_of(const tok_regex *re, const char *s, size_t n, size_t i, int want_mask, int want_value) {
    while (i < n) {
        int l;
        int k = at(re, s, n, i, &l, NULL);
        if ((k & want_mask) != want_value)
            break;
        i += (size_t)l;
    }
    return i;
}

size_t fast_split_next(const tok_regex *re, const char *s, size_t n, size_t pos) {
    int l0;
    uint32_t c0;
    int k0 = at(re, s, n, pos, &l0, &c0);
    size_t p1 = pos + (size_t)l0;
    /* 1. contractions */
    if (c0 == '\'' && p1 < n) {
        uint32_t c1 = (unsigned char)s[p1] | 0x20;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return p1 + 1;
        if ((unsigned char)s[p1] == 0xC5 && p1 + 1 < n && (unsigned char)s[p1 + 1] == 0xBF) /* U+017F */
            return p1 + 2;
        if (p1 + 1 < n) {
            uint32_t c2 = (unsigned char)s[p1 + 1] | 0x20;
            if ((c1 == 'r' || c1 == 'v') && c2 == 'e')
                return p1 + 2;
            if (c1 == 'l' && c2 == 'l')
                return p1 + 2;
        }
    }
    /* 2. letters, with one leading char that is not CR/LF/letter/number */
    if (k0 & C_L)
        return run_of(re, s, n, p1, C_L, C_L);
    if (!(k0 & (C_NL | C_N)) && p1 < n) {
        int l1;
        if (at(re, s, n, p1, &l1, NULL) & C_L)
            return run_of(re, s, n, p1 + (size_t)l1, C_L, C_L);
    }
    /* 3. numbers */
    if (k0 & C_N) {
        if (re->fast == FAST_QWEN)
            return p1;
        size_t e = p1;
        for (int k = 1; k < 3 && e < n; k++) {
            int l;
            if (!(at(re, s, n, e, &l, NULL) & C_N))
                break;
            e += (size_t)l;
        }
        return e;
    }
    /* 4. punctuation run, optionally after one space, then CR/LF */
    size_t j = pos;
    if (c0 == ' ' && p1 < n) {
        int l1;
        if (!(at(re, s, n, p1, &l1, NULL) & (C_S | C_L | C_N)))
            j = p1;
    }
    if (j == p1 || !(k0 & C_S)) {
        size_t e = run_of(re, s, n, j, C_S | C_L | C_N, 0);
        return run_of(re, s, n, e, C_NL, C_NL);
    }
    /* whitespace run W = [pos, w) */
    size_t w = run_of(re, s, n, pos, C_S, C_S);
    /* 5. up to the last CR/LF of W */
    size_t last_nl = 0;
    bool have_nl = false, two = false;
    size_t last_start = pos;
    for (size_t i = pos; i < w;) {
        int l;
        int k = at(re, s, n, i, &l, NULL);
        if (k & C_NL) {
            last_nl = i + (size_t)l;
            have_nl = true;
        }
        if (i != pos)
            two = true;
        last_start = i;
        i += (size_t)l;
    }
    if (have_nl)
        return last_nl;
    /* 6. W at the end of the text, or W less its last char */
    if (w == n)
        return w;
    if (two)
        return last_start;
    /* 7. */
    return w;
}
