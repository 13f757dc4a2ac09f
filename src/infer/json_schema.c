/* infer/json_schema.c: constrained decoding to a JSON Schema (response_format json_schema): the
 * schema is compiled into a tree, and an incremental check says whether text is a prefix of a
 * JSON text that validates. Objects are written with every declared property, in the schema's
 * order (what OpenAI's strict mode asks: all properties required, no others), so a valid
 * prefix always has a valid completion. Supported: type object (properties, required,
 * additionalProperties false), array (items, minItems, maxItems), string (minLength, maxLength,
 * enum), integer, number, boolean, null, enum and const of any JSON values, and a list of types
 * made of null and one other. Anything else is refused when the request arrives, naming it. */
#include <string.h>

#include "ftune/json.h"
#include "infer_internal.h"

typedef enum skind { K_OBJECT, K_ARRAY, K_STRING, K_INTEGER, K_NUMBER, K_LITERALS } skind;

struct infer_schema_node {
    skind kind;
    size_t n_props;
    char **keys;    /* "\"name\"" as it must appear */
    infer_schema_node **props;
    infer_schema_node *items;
    int64_t min_items, max_items, min_len, max_len;
    char **lits; /* K_LITERALS: compact JSON texts (also true/false/null, string enums) */
    size_t n_lits;
    bool nullable; /* a list of types with null: "null" is also a literal choice */
};

enum { P_OPEN, P_KEY, P_COLON, P_VALUE, P_AFTER, P_BODY, P_ESC, P_HEX };
enum { MAX_WS = 2, MAX_LITS = 64 };

void infer_schema_free(infer_schema_node *n) {
    if (!n)
        return;
    for (size_t i = 0; i < n->n_props; i++) {
        ft_free(n->keys[i]);
        infer_schema_free(n->props[i]);
    }
    ft_free(n->keys);
    ft_free(n->props);
    infer_schema_free(n->items);
    for (size_t i = 0; i < n->n_lits; i++)
        ft_free(n->lits[i]);
    ft_free(n->lits);
    ft_free(n);
}

static ft_status add_lit(infer_schema_node *n, const json_t *v, const char *where, ft_err *err) {
    if (n->n_lits >= MAX_LITS)
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: at most %d enum values", where, MAX_LITS);
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!t)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    char **l = ft_realloc(n->lits, (n->n_lits + 1) * sizeof *l);
    if (!l) {
        free(t);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    n->lits = l;
    n->lits[n->n_lits++] = ft_strdup(t);
    free(t);
    return FT_OK;
}

static int64_t int_of(const json_t *s, const char *key, int64_t dflt) {
    json_t *x = json_object_get(s, key);
    return json_is_integer(x) ? json_integer_value(x) : dflt;
}

static ft_status compile(const json_t *s, const char *where, int depth, infer_schema_node **out, ft_err *err) {
    *out = NULL;
    if (depth > INFER_JSON_DEPTH - 2)
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: the schema nests too deep", where);
    if (!json_is_object(s))
        return FT_ERR(err, FT_ERR_INVALID, "%s: a schema must be an object", where);
    static const char *refused[] = {"anyOf", "oneOf", "allOf", "not", "$ref", "pattern", "format", "patternProperties",
                                    "if", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                                    NULL};
    for (int i = 0; refused[i]; i++)
        if (json_object_get(s, refused[i]))
            return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: '%s' is not supported in response_format schemas", where,
                          refused[i]);
    infer_schema_node *n = ft_calloc(1, sizeof *n);
    if (!n)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    *out = n;
    n->max_items = n->max_len = -1;
    json_t *en = json_object_get(s, "enum"), *cst = json_object_get(s, "const");
    if (en || cst) {
        n->kind = K_LITERALS;
        if (cst)
            return add_lit(n, cst, where, err);
        if (!json_is_array(en) || !json_array_size(en))
            return FT_ERR(err, FT_ERR_INVALID, "%s: 'enum' must be a non-empty list", where);
        size_t i;
        json_t *v;
        json_array_foreach(en, i, v) FT_TRY(add_lit(n, v, where, err));
        return FT_OK;
    }
    json_t *type = json_object_get(s, "type");
    const char *t = json_string_value(type);
    if (json_is_array(type)) { /* ["string", "null"] */
        t = NULL;
        size_t i;
        json_t *x;
        json_array_foreach(type, i, x) {
            const char *y = json_string_value(x);
            if (y && !strcmp(y, "null"))
                n->nullable = true;
            else if (y && !t)
                t = y;
            else
                return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: a list of types may hold null and one other type", where);
        }
        if (!t)
            t = "null";
    }
    if (!t)
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: the schema needs a 'type' (or 'enum' / 'const')", where);
    if (!strcmp(t, "object")) {
        n->kind = K_OBJECT;
        json_t *props = json_object_get(s, "properties");
        if (props && !json_is_object(props))
            return FT_ERR(err, FT_ERR_INVALID, "%s: 'properties' must be an object", where);
        size_t np = props ? json_object_size(props) : 0;
        n->keys = ft_calloc(np ? np : 1, sizeof *n->keys);
        n->props = ft_calloc(np ? np : 1, sizeof *n->props);
        if (!n->keys || !n->props)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        const char *k;
        json_t *v;
        json_object_foreach(props, k, v) { /* jansson keeps insertion order: the schema's */
            char sub[512];
            snprintf(sub, sizeof sub, "%s.%s", where, k);
            json_t *ks = json_string(k);
            char *kt = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
            json_decref(ks);
            if (!kt)
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            n->keys[n->n_props] = ft_strdup(kt);
            free(kt);
            FT_TRY(compile(v, sub, depth + 1, &n->props[n->n_props++], err));
        }
        return FT_OK;
    }
    if (!strcmp(t, "array")) {
        n->kind = K_ARRAY;
        n->min_items = int_of(s, "minItems", 0);
        n->max_items = int_of(s, "maxItems", -1);
        json_t *items = json_object_get(s, "items");
        if (!items)
            return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: an array schema needs 'items'", where);
        char sub[512];
        snprintf(sub, sizeof sub, "%s[]", where);
        return compile(items, sub, depth + 1, &n->items, err);
    }
    if (!strcmp(t, "string")) {
        n->kind = K_STRING;
        n->min_len = int_of(s, "minLength", 0);
        n->max_len = int_of(s, "maxLength", -1);
        return FT_OK;
    }
    if (!strcmp(t, "integer") || !strcmp(t, "number")) {
        n->kind = t[0] == 'i' ? K_INTEGER : K_NUMBER;
        return FT_OK;
    }
    n->kind = K_LITERALS;
    if (!strcmp(t, "boolean")) {
        json_t *tr = json_true(), *fa = json_false();
        add_lit(n, tr, where, err);
        add_lit(n, fa, where, err);
        return FT_OK;
    }
    if (!strcmp(t, "null")) {
        n->nullable = true;
        return FT_OK;
    }
    return FT_ERR(err, FT_ERR_UNSUPPORTED, "%s: type '%s' is not supported", where, t);
}

ft_status infer_schema_compile(const json_t *schema, infer_schema_node **out, ft_err *err) {
    ft_status s = compile(schema, "schema", 0, out, err);
    if (s != FT_OK) {
        infer_schema_free(*out);
        *out = NULL;
    }
    return s;
}

/* ---------------------------------------------------------------- the incremental check */

void infer_schema_init(infer_schema_state *st, const infer_schema_node *root) {
    memset(st, 0, sizeof *st);
    st->root = root;
}

bool infer_schema_done(const infer_schema_state *st) { return st->started && st->depth == 0; }

static bool ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
static bool digit(char c) { return c >= '0' && c <= '9'; }

static bool push(infer_schema_state *st, const infer_schema_node *n) {
    if (st->depth >= INFER_JSON_DEPTH)
        return false;
    infer_schema_frame *f = &st->f[st->depth++];
    memset(f, 0, sizeof *f);
    f->n = n;
    f->lit_mask = ~(uint64_t)0;
    return true;
}

/* The literal choices of a node (its enum, and "null" when nullable): whether text[0..pos) + c
 * extends one of them; *complete when one is then matched fully. */
static bool lit_step(infer_schema_frame *f, char c, bool *complete) {
    const infer_schema_node *n = f->n;
    uint64_t mask = 0;
    *complete = false;
    size_t nl = n->kind == K_LITERALS ? n->n_lits : 0;
    for (size_t i = 0; i <= nl && i < 64; i++) {
        const char *l = i < nl ? n->lits[i] : (n->nullable ? "null" : NULL);
        if (!l || !(f->lit_mask >> i & 1) || strlen(l) <= (size_t)f->pos || l[f->pos] != c)
            continue;
        mask |= (uint64_t)1 << i;
        if (!l[f->pos + 1])
            *complete = true;
    }
    if (!mask)
        return false;
    f->lit_mask = mask;
    f->pos++;
    return true;
}

/* Whether the frame's value could end here (a number, or a literal fully matched). */
static bool can_end(const infer_schema_frame *f) {
    if (f->lit_done)
        return true;
    if (f->n->kind == K_INTEGER || f->n->kind == K_NUMBER)
        return f->num == 1 || f->num == 2 || f->num == 4 || f->num == 7;
    return false;
}

static bool step(infer_schema_state *st, char c);

/* The top frame's value is complete: pop it and advance its parent. */
static void value_done(infer_schema_state *st) {
    st->depth--;
    if (st->depth > 0) {
        infer_schema_frame *p = &st->f[st->depth - 1];
        p->phase = P_AFTER;
        p->idx++;
    }
}

/* numbers: 0 start, 1 after 0, 2 int digits, 3 '-', 4 frac digits, 5 '.', 6 e/sign pending, 7 exp digits */
static bool num_step(infer_schema_frame *f, char c) {
    bool integer = f->n->kind == K_INTEGER;
    switch (f->num) {
    case 0:
        if (c == '-') {
            f->num = 3;
            return true;
        }
        /* fall through */
    case 3:
        if (!digit(c))
            return false;
        f->num = c == '0' ? 1 : 2;
        f->digits = 1;
        return true;
    case 1:
    case 2:
        if (digit(c) && f->num == 2)
            return ++f->digits <= 15;
        if (integer)
            return false;
        if (c == '.') {
            f->num = 5;
            return true;
        }
        if (c == 'e' || c == 'E') {
            f->num = 6, f->exp = 0, f->sign = false;
            return true;
        }
        return false;
    case 5:
        if (!digit(c))
            return false;
        f->num = 4;
        return ++f->digits <= 15;
    case 4:
        if (digit(c))
            return ++f->digits <= 15;
        if (c == 'e' || c == 'E') {
            f->num = 6, f->exp = 0, f->sign = false;
            return true;
        }
        return false;
    case 6:
        if ((c == '+' || c == '-') && !f->sign) {
            f->sign = true;
            return true;
        }
        if (!digit(c))
            return false;
        f->num = 7, f->exp = 1;
        return true;
    case 7:
        return digit(c) && ++f->exp <= 2;
    }
    return false;
}

static bool step(infer_schema_state *st, char c) {
    if (st->depth == 0) {
        if (st->started)
            return false; /* nothing after the value */
        if (ws(c))
            return ++st->ws_run <= MAX_WS;
        st->started = true;
        if (!push(st, st->root))
            return false;
    }
    infer_schema_frame *f = &st->f[st->depth - 1];
    const infer_schema_node *n = f->n;
    bool between = (f->phase == P_KEY && f->pos == 0) || f->phase == P_COLON || f->phase == P_VALUE ||
                   f->phase == P_AFTER;
    if (ws(c) && between && (n->kind == K_OBJECT || n->kind == K_ARRAY))
        return ++st->ws_run <= MAX_WS;
    if (!(n->kind == K_STRING && f->phase >= P_BODY))
        st->ws_run = 0;
    /* a literal choice ("null" of a nullable node, enums, booleans) at a value's start or within */
    if (f->in_lit || (f->phase == P_OPEN && !f->pos && (n->kind == K_LITERALS || n->nullable) &&
                      (n->kind == K_LITERALS || c == 'n'))) {
        bool complete;
        if (f->in_lit && f->lit_done) {
            /* matched fully; does c extend a longer one? */
            if (lit_step(f, c, &complete)) {
                f->lit_done = complete;
                return true;
            }
            value_done(st);
            return step(st, c);
        }
        if (!lit_step(f, c, &complete))
            return false;
        f->in_lit = true;
        f->lit_done = complete;
        /* a literal that no longer one can extend ends at once, except numbers, which end on the
         * next character */
        if (complete) {
            bool longer = false;
            size_t nl = n->kind == K_LITERALS ? n->n_lits : 0;
            for (size_t i = 0; i <= nl && i < 64; i++) {
                const char *l = i < nl ? n->lits[i] : (n->nullable ? "null" : NULL);
                if (l && (f->lit_mask >> i & 1) && strlen(l) > (size_t)f->pos)
                    longer = true;
            }
            if (!longer)
                value_done(st);
        }
        return true;
    }
    switch (n->kind) {
    case K_LITERALS:
        return false;
    case K_INTEGER:
    case K_NUMBER:
        if (num_step(f, c))
            return true;
        if (!can_end(f))
            return false;
        value_done(st);
        return step(st, c);
    case K_STRING:
        switch (f->phase) {
        case P_OPEN:
            if (c != '"')
                return false;
            f->phase = P_BODY;
            return true;
        case P_BODY:
            if (c == '"') {
                if (f->len < n->min_len)
                    return false;
                value_done(st);
                return true;
            }
            if ((unsigned char)c < 0x20)
                return false;
            if (((unsigned char)c & 0xC0) != 0x80) { /* a new character */
                if (n->max_len >= 0 && f->len >= n->max_len)
                    return false;
                f->len++;
            }
            if (c == '\\')
                f->phase = P_ESC;
            return true;
        case P_ESC:
            if (c == 'u') {
                f->phase = P_HEX, f->pos = 4;
                return true;
            }
            if (!c || !strchr("\"\\/bfnrt", c))
                return false;
            f->phase = P_BODY;
            return true;
        case P_HEX:
            if (!(digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
                return false;
            if (--f->pos == 0)
                f->phase = P_BODY;
            return true;
        }
        return false;
    case K_OBJECT:
        switch (f->phase) {
        case P_OPEN:
            if (c != '{')
                return false;
            f->phase = n->n_props ? P_KEY : P_AFTER;
            f->pos = 0;
            return true;
        case P_KEY: { /* the key of property idx, exactly */
            const char *k = n->keys[f->idx];
            if (k[f->pos] != c)
                return false;
            if (!k[++f->pos])
                f->phase = P_COLON;
            return true;
        }
        case P_COLON:
            if (c != ':')
                return false;
            f->phase = P_VALUE;
            return true;
        case P_VALUE:
            f->phase = P_AFTER; /* where value_done leaves it too */
            if (!push(st, n->props[f->idx]))
                return false;
            return step(st, c);
        case P_AFTER:
            if ((size_t)f->idx < n->n_props) {
                if (c != ',')
                    return false;
                f->phase = P_KEY, f->pos = 0;
                return true;
            }
            if (c != '}')
                return false;
            value_done(st);
            return true;
        }
        return false;
    case K_ARRAY:
        switch (f->phase) {
        case P_OPEN:
            if (c != '[')
                return false;
            f->phase = P_VALUE;
            return true;
        case P_VALUE:
            if (c == ']' && f->idx == 0 && n->min_items <= 0) {
                value_done(st);
                return true;
            }
            if (n->max_items >= 0 && f->idx >= n->max_items)
                return false;
            f->phase = P_AFTER;
            if (!push(st, n->items))
                return false;
            return step(st, c);
        case P_AFTER:
            if (c == ',' && (n->max_items < 0 || f->idx < n->max_items)) {
                f->phase = P_VALUE;
                return true;
            }
            if (c == ']' && f->idx >= n->min_items) {
                value_done(st);
                return true;
            }
            return false;
        }
        return false;
    }
    return false;
}

bool infer_schema_feed(infer_schema_state *st, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!step(st, s[i]))
            return false;
    return true;
}
