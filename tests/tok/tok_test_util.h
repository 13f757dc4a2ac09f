/* tests/tok/tok_test_util.h: helpers shared by the tokenizer tests. */
#ifndef FTUNE_TESTS_TOK_UTIL_H
#define FTUNE_TESTS_TOK_UTIL_H

#include <jansson.h>

#include "ftune/tok.h"

/* Do ftune's byte offsets, put through the rule `tokenizers` uses to report code point offsets
 * (BytesToCharOffsetConverter: a byte maps to the index of the char holding it; an end at the
 * text's end maps past the last char), equal the reference's offsets `want` ([[s, e], ...])? */
static inline bool tok_offsets_match(const char *text, size_t n, const ft_tok_encoding *e, const json_t *want) {
    if (json_array_size(want) != e->n)
        return false;
    /* char index of every byte */
    size_t *ci = malloc((n + 1) * sizeof *ci);
    if (!ci)
        return false;
    size_t c = 0;
    for (size_t i = 0; i < n;) {
        size_t l = 1;
        unsigned char b = (unsigned char)text[i];
        if (b >= 0xF0)
            l = 4;
        else if (b >= 0xE0)
            l = 3;
        else if (b >= 0xC0)
            l = 2;
        for (size_t k = 0; k < l && i + k < n; k++)
            ci[i + k] = c;
        i += l;
        c++;
    }
    bool ok = true;
    for (size_t k = 0; k < e->n && ok; k++) {
        size_t s = e->offsets[k].start, t = e->offsets[k].end, cs = s, ct = t;
        if (s < n) {
            cs = ci[s];
            if (t < n)
                ct = ci[t];
            else
                ct = t >= 1 && t - 1 < n ? ci[t - 1] + 1 : cs + 1;
        }
        const json_t *p = json_array_get(want, k);
        ok = (json_int_t)cs == json_integer_value(json_array_get(p, 0)) &&
             (json_int_t)ct == json_integer_value(json_array_get(p, 1));
    }
    free(ci);
    return ok;
}

#endif
