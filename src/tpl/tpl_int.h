/* tpl/tpl_int.h: internals of the Jinja engine shared by its files: the value model, the AST,
 * the per-render arena and error exits. Not a public header.
 *
 * Values model Python's as Jinja2 sees them: undefined, None, bool, int, float, str, list (and
 * tuple, dict views, generators), dict (insertion-ordered), namespace, macro, builtin callable,
 * loop. A render allocates everything from one arena freed at the end, and leaves through
 * longjmp on any error (the arena makes that leak-free), which keeps the evaluator readable. */
#ifndef FTUNE_TPL_INT_H
#define FTUNE_TPL_INT_H

#include <setjmp.h>

#include "ftune/tpl.h"

/* ---------------------------------------------------------------- values */

typedef enum tv_type {
    TV_UNDEF,
    TV_NONE,
    TV_BOOL,
    TV_INT,
    TV_FLOAT,
    TV_STR,
    TV_LIST,
    TV_DICT,
    TV_NS,
    TV_MACRO,
    TV_FUNC,
    TV_LOOP,
} tv_type;

/* What a list stands for in Python: it changes how it prints and what it supports. */
typedef enum tl_kind {
    LK_LIST,
    LK_TUPLE,
    LK_ITEMS,  /* dict_items([...]) */
    LK_KEYS,   /* dict_keys([...]) */
    LK_VALUES, /* dict_values([...]) */
    LK_GEN,    /* a generator / iterator: no len, no index, always true, one pass */
} tl_kind;

struct tlist;
struct tdict;
struct tmacro;
struct tfunc;
struct tloop;

typedef struct tv {
    uint8_t t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p; /* not NUL-terminated; for TV_UNDEF: the error message or NULL */
            size_t n;
        } s;
        struct tlist *l;
        struct tdict *d; /* TV_DICT and TV_NS */
        struct tmacro *m;
        struct tfunc *fn;
        struct tloop *loop;
    };
} tv;

typedef struct tlist {
    tv *v;
    size_t n;
    uint8_t kind;
    bool consumed; /* LK_GEN after it has been iterated */
    bool is_range; /* a range() object: prints as range(a, b[, c]) */
    int64_t range[3];
} tlist;

typedef struct tdict {
    tv *k, *v;
    size_t n, cap;
} tdict;

/* ---------------------------------------------------------------- AST */

typedef enum nkind {
    /* statements */
    N_BODY,
    N_DATA,
    N_OUTPUT,
    N_IF,
    N_FOR,
    N_SET,
    N_SETBLOCK,
    N_MACRO,
    N_CALLBLOCK,
    N_FILTERBLOCK,
    N_WITH,
    N_BREAK,
    N_CONTINUE,
    /* expressions */
    N_CONST,
    N_NAME,
    N_GETATTR,
    N_GETITEM,
    N_SLICE,
    N_CALL,
    N_FILTER,
    N_TEST,
    N_BINOP,
    N_NEG,
    N_POS,
    N_NOT,
    N_AND,
    N_OR,
    N_CONCAT,
    N_COMPARE,
    N_CONDEXPR,
    N_LIST,
    N_TUPLE,
    N_DICT,
    N_NSREF, /* assignment target ns.attr */
} nkind;

typedef enum op_kind {
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN,
} op_kind;

typedef struct node node;
struct node {
    uint8_t kind;
    uint8_t op;
    bool flag;   /* N_TEST: negated */
    uint32_t pos; /* byte offset in the (newline-normalized) source */
    node *a, *b, *c; /* operands. N_IF: a test, c else (N_IF for elif, or N_BODY). N_FOR: a target, b iterable, c filter */
    node *d;          /* body of a block statement */
    node *e;          /* N_FOR: else body */
    node **list; /* body, elements, positional args, macro params */
    size_t n;
    node **list2; /* else body, keyword values, param defaults, dict values, compare operands */
    size_t n2;
    const char **names; /* keyword argument names (n2 of them) */
    const char *str;    /* name, attribute, filter or test name, data (with slen) */
    size_t slen;
    tv val; /* N_CONST */
    node *dyn_args, *dyn_kwargs;
};

/* ---------------------------------------------------------------- memory */

typedef struct tchunk tchunk;
typedef struct tarena {
    tchunk *head;
    size_t used_total, cap_total; /* cap_total 0: unlimited */
    bool failed;
} tarena;
void *tarena_alloc(tarena *a, size_t n); /* 16-byte aligned, zeroed; NULL when over the cap or OOM */
void tarena_free(tarena *a);

/* A compiled template. */
struct ft_tpl {
    char *name;
    char *src; /* newline-normalized source, for error positions */
    size_t src_len;
    tarena mem; /* the AST */
    node *root;
};

/* Line and column (1-based) of a byte offset in t->src. */
void tpl_line_col(const char *src, size_t len, size_t pos, int64_t *line, int64_t *col);

/* ---------------------------------------------------------------- render state */

typedef struct frame frame;
typedef struct rstate rstate;

/* An arena-backed growable string (renders never call free: the arena goes at once). */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

struct rstate {
    const ft_tpl *t;
    tarena mem;
    ft_tpl_limits lim;
    int64_t now;
    int64_t iterations;
    int64_t depth;
    sbuf *out;
    frame *root;
    ft_err *err;
    jmp_buf jb;
    int ctl; /* 0, CTL_BREAK, CTL_CONTINUE */
    ft_status fallback_code; /* the error's code when the caller passed no ft_err */
};
enum { CTL_NONE, CTL_BREAK, CTL_CONTINUE };

/* Leave the render with an error at node n (NULL: no position). */
void tpl_fail(rstate *r, const node *n, ft_status code, const char *fmt, ...) __attribute__((format(printf, 4, 5)))
__attribute__((noreturn));
void *ralloc(rstate *r, size_t n);
void sb_put(rstate *r, sbuf *b, const char *s, size_t n);
void sb_putc(rstate *r, sbuf *b, char c);
void sb_printf(rstate *r, sbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---------------------------------------------------------------- value helpers (value.c) */

static inline tv tv_undef(void) { return (tv){.t = TV_UNDEF}; }
static inline tv tv_none(void) { return (tv){.t = TV_NONE}; }
static inline tv tv_bool(bool b) { return (tv){.t = TV_BOOL, .b = b}; }
static inline tv tv_int(int64_t i) { return (tv){.t = TV_INT, .i = i}; }
static inline tv tv_float(double f) { return (tv){.t = TV_FLOAT, .f = f}; }
static inline tv tv_str(const char *p, size_t n) {
    tv v = {.t = TV_STR};
    v.s.p = p;
    v.s.n = n;
    return v;
}
tv tv_cstr(const char *s);
tv tv_strdup(rstate *r, const char *p, size_t n);
tv tv_undef_msg(rstate *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
tv tv_list_new(rstate *r, size_t n, tl_kind kind); /* n elements, all undefined */
tv tv_dict_new(rstate *r);
tv *tdict_get(tdict *d, tv key);
tv *tdict_get_str(tdict *d, const char *k, size_t n);
void tdict_set(rstate *r, tdict *d, tv key, tv val);

bool tv_truthy(tv v);
bool tv_is_num(tv v); /* bool, int or float (Python's numbers.Number) */
double tv_as_double(tv v);
bool tv_eq(tv a, tv b);
/* Python's <: -1, 0, 1, or 2 when the two cannot be ordered. */
int tv_cmp(tv a, tv b);
const char *tv_type_name(tv v);   /* Python's type name: "str", "dict", "NoneType" ... */
void tv_str_into(rstate *r, sbuf *b, tv v);  /* str(v) */
void tv_repr_into(rstate *r, sbuf *b, tv v); /* repr(v) */
tv tv_to_str(rstate *r, tv v);
/* json.dumps(v, ensure_ascii=False, indent, separators, sort_keys); indent NULL: compact.
 * Returns false (and sets *why) when the value is not serializable. */
bool tv_tojson(rstate *r, sbuf *b, tv v, const char *indent, size_t indent_len, int64_t depth, const char *item_sep,
               const char *key_sep, bool sort_keys, const char **why);
void float_repr(double f, char *buf, size_t cap);
tv tv_from_json(rstate *r, const json_t *j);

/* UTF-8 and Python string helpers. */
size_t u8_len(const char *p, size_t n);                   /* code points (invalid bytes count one each) */
size_t u8_next(const char *p, size_t n, size_t i);        /* byte index after the code point at i */
uint32_t u8_cp(const char *p, size_t n, size_t i);        /* code point at i (invalid byte: its value) */
bool py_isspace(uint32_t c);
uint32_t py_upper(uint32_t c);
uint32_t py_lower(uint32_t c);
bool py_isalpha(uint32_t c); /* letters of the scripts py_upper/py_lower know, plus other non-ASCII letters */
void sb_cp(rstate *r, sbuf *b, uint32_t c);

/* ---------------------------------------------------------------- evaluator (eval.c, builtins.c) */

tv eval_expr(rstate *r, frame *f, const node *n);
tv call_value(rstate *r, frame *f, const node *at, tv callee, tv *args, size_t nargs, const char **kwn, tv *kwv,
              size_t nkw);
tv apply_filter(rstate *r, frame *f, const node *at, const char *name, tv v, tv *args, size_t nargs, const char **kwn,
                tv *kwv, size_t nkw);
bool apply_test(rstate *r, frame *f, const node *at, const char *name, tv v, tv *args, size_t nargs);
tv get_attr(rstate *r, const node *at, tv obj, const char *name, size_t n);
tv get_item(rstate *r, const node *at, tv obj, tv key);
/* The elements a for-loop / list() would see. Fails for non-iterables. */
tlist *iterate(rstate *r, const node *at, tv v);
tv builtin_method(rstate *r, tv self, const char *name, size_t n); /* TV_FUNC or TV_UNDEF */
tv builtin_global(rstate *r, const char *name, size_t n);          /* TV_FUNC or TV_UNDEF */
void check_str_size(rstate *r, const node *at, size_t n);
/* Undefined used where a value is needed: the undefined's own message. */
void fail_undefined(rstate *r, const node *at, tv v) __attribute__((noreturn));

typedef struct tfunc {
    int id;  /* builtin id (builtins.c) */
    tv self; /* bound object for methods */
} tfunc;

typedef struct tmacro {
    const node *def; /* N_MACRO (or N_CALLBLOCK for `caller`) */
    frame *closure;
    tv caller; /* TV_MACRO for a macro invoked by {% call %}, else undefined */
} tmacro;

typedef struct tloop {
    tlist *items;
    size_t index0;
    int64_t depth0;
} tloop;

tv call_builtin(rstate *r, const node *at, tfunc *fn, tv *args, size_t nargs, const char **kwn, tv *kwv, size_t nkw);
tv tpl_binop(rstate *r, const node *at, int op, tv a, tv b);
bool tpl_contains(rstate *r, const node *at, tv container, tv item);
tv tpl_str_percent(rstate *r, const node *at, tv fmt, tv args); /* Python's str % args */
size_t tpl_cp_offset(const char *s, size_t n, size_t idx);      /* byte offset of code point idx */
/* Count `work` steps against the iteration limit (quadratic builtins: unique, dict building). */
void tpl_charge(rstate *r, const node *at, int64_t work);

/* Render a macro body with its arguments bound. */
tv call_macro(rstate *r, const node *at, tmacro *m, tv *args, size_t nargs, const char **kwn, tv *kwv, size_t nkw);

#endif
