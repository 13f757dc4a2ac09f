/* tok/fast_split.c: hand scanners for known pre-tokenizer regexes (not yet enabled). */
#include "tok/fast_split.h"

int fast_split_detect(const char *pattern, size_t len) {
    (void)pattern;
    (void)len;
    return 0;
}

size_t fast_split_next(int which, const char *s, size_t n, size_t pos) {
    (void)which;
    (void)s;
    (void)pos;
    return n;
}
