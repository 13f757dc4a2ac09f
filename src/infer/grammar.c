/* infer/grammar.c: the byte-level context-free grammars of constrained decoding, and the
 * incremental matcher that says whether text is a prefix of a sentence.
 *
 * A grammar is rules of alternatives, each a sequence of symbols: a set of bytes (a terminal) or
 * another rule. JSON Schemas (json_schema.c) and their regular expressions (regex.c) compile to
 * one; json_object mode is the grammar of one JSON object.
 *
 * Matching follows a pushdown automaton without backtracking: a state is a set of stacks of
 * positions in the flattened grammar; the top of each stack is a terminal to match next, the
 * positions below are where to go on once the rule above it ends (a rule that ends its
 * alternative leaves no return address: right recursion, the way repetition is written, does not
 * grow the stack). Feeding a byte keeps the stacks whose terminal takes it, advances them and
 * expands rules until every top is a terminal again. An empty stack means a complete sentence.
 * Each alternative's shortest derivation is precomputed, so a state knows the fewest bytes that
 * complete it (the engine closes a document that way when its token budget runs low), and rules
 * that derive no finite sentence are dropped before matching. */
#include <string.h>

#include "infer_internal.h"

enum { END = -1 };
#define INF_LEN ((int64_t)1 << 40)

typedef struct galt {
    int32_t *syms;
    size_t n;
} galt;

typedef struct grule {
    galt *alts;
    size_t n, cap;
} grule;

struct infer_gb {
    grule *rules;
    size_t n_rules, cap_rules;
    uint8_t (*sets)[32];
    size_t n_sets, cap_sets;
    int32_t byte_set[256]; /* the terminal of a single byte, -1 until made */
    int32_t cache[INFER_GB_CACHE]; /* rules shared by their makers (infer_gb_cache), -1 until made */
    size_t n_syms;         /* all alternatives together, against INFER_G_MAX_SYMS */
    bool failed;           /* out of memory or over the limits */
};

struct infer_grammar {
    int32_t *sym;        /* flattened alternatives, each ended by END */
    int64_t *suffix_min; /* (n_sym) fewest bytes from a position to its alternative's end */
    int32_t *alt_start;  /* alternatives' first positions, rule by rule */
    int32_t *rule_alt;   /* (n_rules + 1) each rule's first index in alt_start */
    uint8_t (*sets)[32];
    int32_t root;
};

/* ---------------------------------------------------------------- building */

infer_gb *infer_gb_new(void) {
    infer_gb *b = ft_calloc(1, sizeof *b);
    if (b) {
        memset(b->byte_set, 0xff, sizeof b->byte_set);
        memset(b->cache, 0xff, sizeof b->cache);
    }
    return b;
}

void infer_gb_free(infer_gb *b) {
    if (!b)
        return;
    for (size_t r = 0; r < b->n_rules; r++) {
        for (size_t a = 0; a < b->rules[r].n; a++)
            ft_free(b->rules[r].alts[a].syms);
        ft_free(b->rules[r].alts);
    }
    ft_free(b->rules);
    ft_free(b->sets);
    ft_free(b);
}

bool infer_gb_failed(const infer_gb *b) { return b->failed; }
int32_t *infer_gb_cache(infer_gb *b, int slot) { return &b->cache[slot]; }

static bool grow(void **p, size_t *cap, size_t want, size_t size) {
    if (want <= *cap)
        return true;
    size_t c = *cap ? *cap * 2 : 16;
    while (c < want)
        c *= 2;
    void *q = ft_realloc(*p, c * size);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

int32_t infer_gb_rule(infer_gb *b) {
    if (b->failed || b->n_rules >= INFER_G_MAX_RULES ||
        !grow((void **)&b->rules, &b->cap_rules, b->n_rules + 1, sizeof *b->rules)) {
        b->failed = true;
        return 0;
    }
    memset(&b->rules[b->n_rules], 0, sizeof b->rules[0]);
    return (int32_t)b->n_rules++;
}

void infer_gb_alt(infer_gb *b, int32_t rule, const int32_t *syms, size_t n) {
    if (b->failed)
        return;
    grule *r = &b->rules[rule];
    int32_t *copy = ft_malloc((n ? n : 1) * sizeof *copy);
    b->n_syms += n + 1;
    if (!copy || b->n_syms > INFER_G_MAX_SYMS || !grow((void **)&r->alts, &r->cap, r->n + 1, sizeof *r->alts)) {
        ft_free(copy);
        b->failed = true;
        return;
    }
    if (n)
        memcpy(copy, syms, n * sizeof *copy);
    r->alts[r->n++] = (galt){copy, n};
}

int32_t infer_gb_set(infer_gb *b, const uint8_t set[32]) {
    for (size_t i = 0; i < b->n_sets; i++)
        if (!memcmp(b->sets[i], set, 32))
            return (int32_t)i;
    if (b->failed || !grow((void **)&b->sets, &b->cap_sets, b->n_sets + 1, 32)) {
        b->failed = true;
        return 0;
    }
    memcpy(b->sets[b->n_sets], set, 32);
    return (int32_t)b->n_sets++;
}

int32_t infer_gb_byte(infer_gb *b, uint8_t c) {
    if (b->byte_set[c] < 0) {
        uint8_t s[32] = {0};
        s[c >> 3] |= (uint8_t)(1u << (c & 7));
        int32_t t = infer_gb_set(b, s);
        if (b->failed)
            return 0;
        b->byte_set[c] = t;
    }
    return b->byte_set[c];
}

int32_t infer_gb_range(infer_gb *b, uint8_t lo, uint8_t hi) {
    uint8_t s[32] = {0};
    for (unsigned c = lo; c <= hi; c++)
        s[c >> 3] |= (uint8_t)(1u << (c & 7));
    return infer_gb_set(b, s);
}

void infer_syms_push(infer_gb *b, infer_syms *s, int32_t sym) {
    if (b->failed || !grow((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v)) {
        b->failed = true;
        return;
    }
    s->v[s->n++] = sym;
}

void infer_syms_lit(infer_gb *b, infer_syms *s, const char *text, size_t n) {
    for (size_t i = 0; i < n; i++)
        infer_syms_push(b, s, infer_gb_byte(b, (uint8_t)text[i]));
}

void infer_syms_free(infer_syms *s) {
    ft_free(s->v);
    memset(s, 0, sizeof *s);
}

/* x{min,max} (max < 0: unbounded): min copies, then a chain of optional ones (or a right-recursive
 * rule), so that at most one stack is alive per copy. */
int32_t infer_gb_repeat(infer_gb *b, const int32_t *x, size_t nx, int64_t min, int64_t max) {
    int32_t top = infer_gb_rule(b);
    if (b->failed || (max >= 0 && max < min) || (min + (max > 0 ? max : 0)) * (int64_t)(nx + 1) > INFER_G_MAX_SYMS) {
        b->failed = true;
        return top;
    }
    int32_t tail = -1; /* the optional rest */
    if (max < 0) {
        tail = infer_gb_rule(b);
        infer_syms s = {0};
        for (size_t i = 0; i < nx; i++)
            infer_syms_push(b, &s, x[i]);
        infer_syms_push(b, &s, INFER_G_REF(tail));
        infer_gb_alt(b, tail, s.v, s.n);
        infer_gb_alt(b, tail, NULL, 0);
        infer_syms_free(&s);
    } else {
        for (int64_t k = 0; k < max - min && !b->failed; k++) {
            int32_t r = infer_gb_rule(b);
            infer_syms s = {0};
            for (size_t i = 0; i < nx; i++)
                infer_syms_push(b, &s, x[i]);
            if (tail >= 0)
                infer_syms_push(b, &s, INFER_G_REF(tail));
            infer_gb_alt(b, r, s.v, s.n);
            infer_gb_alt(b, r, NULL, 0);
            infer_syms_free(&s);
            tail = r;
        }
    }
    infer_syms s = {0};
    for (int64_t k = 0; k < min; k++)
        for (size_t i = 0; i < nx; i++)
            infer_syms_push(b, &s, x[i]);
    if (tail >= 0)
        infer_syms_push(b, &s, INFER_G_REF(tail));
    infer_gb_alt(b, top, s.v, s.n);
    infer_syms_free(&s);
    return top;
}

/* ---------------------------------------------------------------- the compiled grammar */

void infer_grammar_free(infer_grammar *g) {
    if (!g)
        return;
    ft_free(g->sym);
    ft_free(g->suffix_min);
    ft_free(g->alt_start);
    ft_free(g->rule_alt);
    ft_free(g->sets);
    ft_free(g);
}

static int64_t sym_min(const int64_t *rule_min, int32_t s) { return s >= 0 ? 1 : rule_min[INFER_G_RULE_OF(s)]; }

static int64_t alt_min(const int64_t *rule_min, const galt *a) {
    int64_t t = 0;
    for (size_t i = 0; i < a->n && t < INF_LEN; i++)
        t += sym_min(rule_min, a->syms[i]);
    return t < INF_LEN ? t : INF_LEN;
}

ft_status infer_grammar_build(infer_gb *b, int32_t root, infer_grammar **out, ft_err *err) {
    *out = NULL;
    if (b->failed)
        return FT_ERR(err, FT_ERR_LIMIT, "the schema is too large for constrained decoding (more than %d grammar "
                      "symbols or %d rules)", INFER_G_MAX_SYMS, INFER_G_MAX_RULES);
    size_t R = b->n_rules;
    /* the shortest sentence of each rule: a fixed point from "none" (rules that never reach one
     * derive no finite text and are dropped) */
    int64_t *rule_min = ft_malloc((R ? R : 1) * sizeof *rule_min);
    if (!rule_min)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t r = 0; r < R; r++)
        rule_min[r] = INF_LEN;
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t r = 0; r < R; r++)
            for (size_t a = 0; a < b->rules[r].n; a++) {
                int64_t m = alt_min(rule_min, &b->rules[r].alts[a]);
                if (m < rule_min[r]) {
                    rule_min[r] = m;
                    changed = true;
                }
            }
    }
    if (rule_min[root] >= INF_LEN) {
        ft_free(rule_min);
        return FT_ERR(err, FT_ERR_INVALID, "the schema admits no finite JSON value (a required recursion, or an "
                      "empty set of choices)");
    }
    size_t n_sym = 0, n_alt = 0;
    for (size_t r = 0; r < R; r++)
        for (size_t a = 0; a < b->rules[r].n; a++)
            if (alt_min(rule_min, &b->rules[r].alts[a]) < INF_LEN) {
                n_sym += b->rules[r].alts[a].n + 1;
                n_alt++;
            }
    infer_grammar *g = ft_calloc(1, sizeof *g);
    if (g) {
        g->sym = ft_malloc((n_sym + 1) * sizeof *g->sym);
        g->suffix_min = ft_malloc((n_sym + 1) * sizeof *g->suffix_min);
        g->alt_start = ft_malloc((n_alt + 1) * sizeof *g->alt_start);
        g->rule_alt = ft_malloc((R + 1) * sizeof *g->rule_alt);
        g->sets = ft_malloc((b->n_sets + 1) * 32);
    }
    if (!g || !g->sym || !g->suffix_min || !g->alt_start || !g->rule_alt || !g->sets) {
        infer_grammar_free(g);
        ft_free(rule_min);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    memcpy(g->sets, b->sets, b->n_sets * 32);
    size_t p = 0, k = 0;
    for (size_t r = 0; r < R; r++) {
        g->rule_alt[r] = (int32_t)k;
        for (size_t a = 0; a < b->rules[r].n; a++) {
            const galt *al = &b->rules[r].alts[a];
            if (alt_min(rule_min, al) >= INF_LEN)
                continue;
            g->alt_start[k++] = (int32_t)p;
            for (size_t i = 0; i < al->n; i++)
                g->sym[p++] = al->syms[i];
            g->sym[p++] = END;
        }
    }
    g->rule_alt[R] = (int32_t)k;
    /* suffix minima, right to left within each alternative */
    int64_t acc = 0;
    for (size_t i = p; i-- > 0;) {
        if (g->sym[i] == END)
            acc = 0;
        else
            acc += sym_min(rule_min, g->sym[i]);
        g->suffix_min[i] = acc;
    }
    g->root = root;
    ft_free(rule_min);
    *out = g;
    return FT_OK;
}

/* ---------------------------------------------------------------- matching */

/* Add a stack (cells s[0..L)) to st unless it is there already. */
static void add_stack(infer_gstate *st, const int32_t *s, int L) {
    for (int i = 0; i < st->n; i++)
        if (st->len[i] == L && !memcmp(st->cell + st->off[i], s, (size_t)L * sizeof *s))
            return;
    if (st->n >= INFER_G_STACKS || st->used + L > INFER_G_CELLS) {
        st->lossy = true; /* too ambiguous: the stacks kept still describe valid continuations */
        return;
    }
    st->off[st->n] = (uint16_t)st->used;
    st->len[st->n] = (uint16_t)L;
    memcpy(st->cell + st->used, s, (size_t)L * sizeof *s);
    st->used += L;
    st->n++;
}

typedef struct expansion {
    int32_t rule[64];
    int L[64];
    int n;
} expansion;

/* Expand s (L cells, a copy owned here) until its top is a terminal, into st. A rule expanded
 * again at the same height without a byte read in between is a cycle that adds no sentence. */
static void normalize(const infer_grammar *g, int32_t *s, int L, infer_gstate *st, expansion *path) {
    while (L > 0) {
        int32_t p = s[L - 1], sym = g->sym[p];
        if (sym == END) {
            L--;
            continue;
        }
        if (sym >= 0) {
            add_stack(st, s, L);
            return;
        }
        int32_t r = INFER_G_RULE_OF(sym);
        if (g->sym[p + 1] == END)
            L--; /* nothing left after the rule: no return address */
        else
            s[L - 1] = p + 1;
        for (int i = 0; i < path->n; i++)
            if (path->rule[i] == r && path->L[i] == L)
                return;
        if (path->n >= 64 || L + 1 > INFER_G_DEPTH) {
            st->lossy = true; /* nested too deep */
            return;
        }
        path->rule[path->n] = r;
        path->L[path->n] = L;
        path->n++;
        int32_t a0 = g->rule_alt[r], a1 = g->rule_alt[r + 1];
        for (int32_t a = a0; a < a1; a++) {
            int32_t copy[INFER_G_DEPTH];
            memcpy(copy, s, (size_t)L * sizeof *s);
            copy[L] = g->alt_start[a];
            expansion sub = *path;
            normalize(g, copy, L + 1, st, &sub);
        }
        return;
    }
    add_stack(st, s, 0);
}

static void state_clear(infer_gstate *st) {
    st->n = st->used = 0;
    st->lossy = false;
}

void infer_gstate_init(const infer_grammar *g, infer_gstate *st) {
    state_clear(st);
    int32_t s[INFER_G_DEPTH];
    int32_t a0 = g->rule_alt[g->root], a1 = g->rule_alt[g->root + 1];
    for (int32_t a = a0; a < a1; a++) {
        s[0] = g->alt_start[a];
        expansion path = {.n = 0};
        normalize(g, s, 1, st, &path);
    }
}

static void step(const infer_grammar *g, const infer_gstate *in, uint8_t c, infer_gstate *out) {
    state_clear(out);
    for (int i = 0; i < in->n; i++) {
        int L = in->len[i];
        if (L == 0)
            continue;
        const int32_t *s = in->cell + in->off[i];
        int32_t p = s[L - 1];
        const uint8_t *set = g->sets[g->sym[p]];
        if (!(set[c >> 3] >> (c & 7) & 1))
            continue;
        int32_t copy[INFER_G_DEPTH];
        memcpy(copy, s, (size_t)L * sizeof *s);
        copy[L - 1] = p + 1;
        expansion path = {.n = 0};
        normalize(g, copy, L, out, &path);
    }
}

bool infer_gstate_feed(const infer_grammar *g, const infer_gstate *in, const char *text, size_t n,
                       infer_gstate *out, infer_gstate *tmp) {
    if (n == 0) {
        if (out != in)
            infer_gstate_copy(out, in);
        return in->n > 0;
    }
    /* ping-pong so that the last step writes into out */
    const infer_gstate *cur = in;
    for (size_t i = 0; i < n; i++) {
        infer_gstate *dst = ((n - i) & 1) ? out : tmp;
        step(g, cur, (uint8_t)text[i], dst);
        dst->lossy |= cur->lossy;
        if (dst->n == 0)
            return false;
        cur = dst;
    }
    return true;
}

void infer_gstate_copy(infer_gstate *dst, const infer_gstate *src) {
    dst->n = src->n;
    dst->used = src->used;
    dst->lossy = src->lossy;
    memcpy(dst->off, src->off, (size_t)src->n * sizeof *src->off);
    memcpy(dst->len, src->len, (size_t)src->n * sizeof *src->len);
    memcpy(dst->cell, src->cell, (size_t)src->used * sizeof *src->cell);
}

bool infer_gstate_done(const infer_gstate *st) {
    for (int i = 0; i < st->n; i++)
        if (st->len[i] == 0)
            return true;
    return false;
}

bool infer_gstate_can_continue(const infer_gstate *st) {
    for (int i = 0; i < st->n; i++)
        if (st->len[i] > 0)
            return true;
    return false;
}

int64_t infer_gstate_min_left(const infer_grammar *g, const infer_gstate *st) {
    int64_t best = INF_LEN;
    for (int i = 0; i < st->n; i++) {
        int64_t t = 0;
        for (int k = 0; k < st->len[i]; k++)
            t += g->suffix_min[st->cell[st->off[i] + k]];
        if (t < best)
            best = t;
    }
    return best;
}
