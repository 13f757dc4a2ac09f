/* infer/infer_internal.h (internal to src/infer/): constrained decoding's grammars and matcher
 * (grammar.c), the regular expressions of JSON Schema patterns and formats (regex.c) and the
 * JSON Schemas of response_format (json_schema.c), used by the engine (engine.c). */
#ifndef FTUNE_INFER_INTERNAL_H
#define FTUNE_INFER_INTERNAL_H

#include <jansson.h>

#include "ftune/infer.h"

/* ---------------------------------------------------------------- grammars (grammar.c) */

enum {
    INFER_G_STACKS = 64,        /* stacks alive in a state; more (a very ambiguous grammar) are dropped */
    INFER_G_DEPTH = 128,        /* positions per stack: bounds the nesting of a document */
    INFER_G_CELLS = 4096,       /* positions of all stacks of a state */
    INFER_G_MAX_SYMS = 1 << 20, /* a compiled grammar's size limits */
    INFER_G_MAX_RULES = 1 << 18,
};

/* A symbol: a terminal (a set of bytes, >= 0) or a reference to a rule. */
#define INFER_G_REF(rule) (-(int32_t)(rule)-2)
#define INFER_G_RULE_OF(sym) (-(sym)-2)

typedef struct infer_gb infer_gb; /* a grammar being built; errors are sticky (infer_gb_failed) */
typedef struct infer_syms {       /* a sequence of symbols being built */
    int32_t *v;
    size_t n, cap;
} infer_syms;
infer_gb *infer_gb_new(void);
void infer_gb_free(infer_gb *b);
bool infer_gb_failed(const infer_gb *b);
/* A slot for a rule its maker shares within one grammar: -1 until set. */
enum { INFER_GB_CACHE = 16 };
int32_t *infer_gb_cache(infer_gb *b, int slot);
int32_t infer_gb_rule(infer_gb *b); /* a new rule without alternatives yet: its id */
void infer_gb_alt(infer_gb *b, int32_t rule, const int32_t *syms, size_t n); /* copied */
int32_t infer_gb_set(infer_gb *b, const uint8_t set[32]);                   /* a terminal: bit c = byte c */
int32_t infer_gb_byte(infer_gb *b, uint8_t c);
int32_t infer_gb_range(infer_gb *b, uint8_t lo, uint8_t hi);
/* A rule for x{min,max} (max < 0: no bound). */
int32_t infer_gb_repeat(infer_gb *b, const int32_t *x, size_t nx, int64_t min, int64_t max);
void infer_syms_push(infer_gb *b, infer_syms *s, int32_t sym);
void infer_syms_lit(infer_gb *b, infer_syms *s, const char *text, size_t n);
void infer_syms_free(infer_syms *s);

typedef struct infer_grammar infer_grammar;
/* Compile b (still owned by the caller) with start rule `root`: FT_ERR_LIMIT when b failed,
 * FT_ERR_INVALID when root derives no finite text. */
ft_status infer_grammar_build(infer_gb *b, int32_t root, infer_grammar **out, ft_err *err);
void infer_grammar_free(infer_grammar *g);

/* Where a text stands in a grammar: a plain value (copy with infer_gstate_copy). */
typedef struct infer_gstate {
    int n, used;
    bool lossy; /* stacks were dropped on the way (too ambiguous or too deep): still valid, maybe not all */
    uint16_t off[INFER_G_STACKS], len[INFER_G_STACKS];
    int32_t cell[INFER_G_CELLS];
} infer_gstate;
void infer_gstate_init(const infer_grammar *g, infer_gstate *st);
/* Feed n bytes to `in` into `out` (tmp: scratch; all three distinct): false when they make the
 * text no prefix of a sentence (out is then undefined). */
bool infer_gstate_feed(const infer_grammar *g, const infer_gstate *in, const char *s, size_t n,
                       infer_gstate *out, infer_gstate *tmp);
void infer_gstate_copy(infer_gstate *dst, const infer_gstate *src);
bool infer_gstate_done(const infer_gstate *st);         /* the text is a sentence */
bool infer_gstate_can_continue(const infer_gstate *st); /* some longer text is one too */
/* The fewest bytes that make the text a sentence (0 when it is one). */
int64_t infer_gstate_min_left(const infer_grammar *g, const infer_gstate *st);

/* ---------------------------------------------------------------- regular expressions (regex.c) */

/* The ECMAScript regular expression `re` (a JSON Schema "pattern": a match anywhere in the
 * string unless anchored by ^ and $) as a rule over the bytes of a JSON string's contents
 * (between the quotes, characters escaped as JSON writes them). FT_ERR_UNSUPPORTED names what
 * it cannot compile (back-references, look-around, word boundaries, non-ASCII class ranges). */
ft_status infer_regex_compile(infer_gb *b, const char *re, int32_t *rule, ft_err *err);
/* One character of a JSON string, any (the bytes of its JSON form). */
int32_t infer_json_char_rule(infer_gb *b);

/* ---------------------------------------------------------------- JSON Schemas (json_schema.c) */

/* The grammar of the JSON texts valid under `schema` (strict: OpenAI's strict mode rules are
 * checked too), or with schema NULL of one JSON object (json_object mode). */
ft_status infer_schema_compile(const json_t *schema, bool strict, infer_grammar **out, ft_err *err);

#endif
