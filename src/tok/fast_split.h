/* tok/fast_split.h: hand-written scanners for the pre-tokenizer regexes of Llama 3 and Qwen2/3,
 * used in place of Oniguruma only where they give exactly its matches (see fast_split.c). */
#ifndef FTUNE_TOK_FAST_SPLIT_H
#define FTUNE_TOK_FAST_SPLIT_H

#include <stddef.h>

/* FAST_* id when `pattern` is one of the known patterns, else 0. */
int fast_split_detect(const char *pattern, size_t len);
/* End of the match that starts at pos (these patterns match at every position of non-empty
 * text, so matches tile the text). */
size_t fast_split_next(int which, const char *s, size_t n, size_t pos);

#endif
