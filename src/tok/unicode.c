/* tok/unicode.c: the Unicode 16.0 character classes `tokenizers` 0.23.2 works with (see
 * gen_unicode16.mjs): lookups for the hand scanners and the Rust-regex classes, and the rewrite
 * of \p{L} \p{M} \p{N} \p{P} \p{S} in tokenizer.json regexes into explicit classes, so that
 * Debian's Oniguruma (Unicode 14.0 tables) matches as the library's bundled one (16.0) does. */
#include <string.h>

#include "tok/tok_internal.h"
#include "tok/unicode16.h"

static const struct {
    const uint32_t (*r)[2];
    size_t n;
} TABLES[] = {
    [U16_LETTER] = {u16_letter, sizeof u16_letter / sizeof u16_letter[0]},
    [U16_MARK] = {u16_mark, sizeof u16_mark / sizeof u16_mark[0]},
    [U16_NUMBER] = {u16_number, sizeof u16_number / sizeof u16_number[0]},
    [U16_PUNCT] = {u16_punct, sizeof u16_punct / sizeof u16_punct[0]},
    [U16_SYMBOL] = {u16_symbol, sizeof u16_symbol / sizeof u16_symbol[0]},
    [U16_WORD] = {u16_word, sizeof u16_word / sizeof u16_word[0]},
};

bool tok_u16_in(int table, uint32_t c) {
    const uint32_t(*r)[2] = TABLES[table].r;
    size_t lo = 0, hi = TABLES[table].n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < r[mid][0])
            hi = mid;
        else if (c > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

uint32_t tok_u16_lower(uint32_t c) {
    size_t lo = 0, hi = sizeof u16_lower / sizeof u16_lower[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c < u16_lower[mid][0])
            hi = mid;
        else if (c > u16_lower[mid][0])
            lo = mid + 1;
        else
            return u16_lower[mid][1];
    }
    return c;
}

/* Property names Oniguruma accepts for the five classes (it ignores case, spaces, '_' and '-'). */
static int property_table(const char *name, size_t n) {
    char k[32];
    size_t m = 0;
    for (size_t i = 0; i < n && m + 1 < sizeof k; i++) {
        char c = name[i];
        if (c == ' ' || c == '_' || c == '-')
            continue;
        k[m++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    k[m] = 0;
    static const struct {
        const char *name;
        int table;
    } names[] = {{"l", U16_LETTER}, {"letter", U16_LETTER}, {"m", U16_MARK},     {"mark", U16_MARK},
                 {"combiningmark", U16_MARK}, {"n", U16_NUMBER}, {"number", U16_NUMBER}, {"p", U16_PUNCT},
                 {"punctuation", U16_PUNCT}, {"punct", U16_PUNCT}, {"s", U16_SYMBOL}, {"symbol", U16_SYMBOL}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(k, names[i].name))
            return names[i].table;
    return -1;
}

static ft_status append_class(ft_buf *b, int table, bool negate) {
    FT_TRY(ft_buf_append(b, negate ? "[^" : "[", negate ? 2 : 1));
    for (size_t i = 0; i < TABLES[table].n; i++) {
        uint32_t a = TABLES[table].r[i][0], e = TABLES[table].r[i][1];
        if (a == e)
            FT_TRY(ft_buf_appendf(b, "\\x{%X}", a));
        else
            FT_TRY(ft_buf_appendf(b, "\\x{%X}-\\x{%X}", a, e));
    }
    return ft_buf_putc(b, ']');
}

ft_status tok_rewrite_properties(const char *p, size_t n, ft_buf *out) {
    out->len = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] != '\\' || i + 1 >= n) {
            FT_TRY(ft_buf_putc(out, p[i]));
            i++;
            continue;
        }
        char nx = p[i + 1];
        if ((nx == 'p' || nx == 'P') && i + 2 < n) {
            bool neg = nx == 'P';
            const char *name;
            size_t nn, end;
            if (p[i + 2] == '{') {
                const char *close = memchr(p + i + 3, '}', n - i - 3);
                if (close) {
                    name = p + i + 3;
                    nn = (size_t)(close - name);
                    end = (size_t)(close - p) + 1;
                    if (nn && name[0] == '^') {
                        neg = !neg;
                        name++;
                        nn--;
                    }
                } else {
                    name = NULL, nn = 0, end = i + 2;
                }
            } else {
                name = p + i + 2;
                nn = 1;
                end = i + 3;
            }
            int table = name ? property_table(name, nn) : -1;
            if (table >= 0) {
                FT_TRY(append_class(out, table, neg));
                i = end;
                continue;
            }
        }
        /* any other escape is copied whole, so "\\\\p" stays a backslash and a p */
        FT_TRY(ft_buf_append(out, p + i, 2));
        i += 2;
    }
    return FT_OK;
}
