/* tok/fast_split.h: hand-written scanners for the pre-tokenizer regexes of Llama 3 and Qwen2/3,
 * used in place of Oniguruma only where they give exactly its matches (see fast_split.c). */
#ifndef FTUNE_TOK_FAST_SPLIT_H
#define FTUNE_TOK_FAST_SPLIT_H

#include <stddef.h>

struct tok_regex;
/* Set re->fast (a FAST_* id) and the character classes it needs when `pattern` is one of the
 * known patterns; leave re->fast 0 otherwise. */
void fast_split_detect(struct tok_regex *re, const char *pattern, size_t len);
/* End of the match that starts at pos (these patterns match at every position of non-empty
 * text, so matches tile the text). */
size_t fast_split_next(const struct tok_regex *re, const char *s, size_t n, size_t pos);

#endif
