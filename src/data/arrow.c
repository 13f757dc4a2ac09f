/* data/arrow.c: Apache Arrow IPC reader (the columnar format's "Serialization and Interprocess
 * Communication" chapter; Schema.fbs and Message.fbs for the Flatbuffers metadata), for the files
 * Hugging Face `datasets` writes: its cache (`<name>-<split>.arrow`, the stream format) and
 * save_to_disk (`data-00000-of-00001.arrow`). The file format (ARROW1 ... footer ... ARROW1)
 * embeds the same stream after its 8-byte magic, so both are read as a stream.
 *
 * A message is [0xFFFFFFFF] int32 metadata length, a Flatbuffers `Message`, then its body. The
 * Flatbuffers tables are read by hand with every offset bounds-checked: a damaged or hostile
 * file is an error naming the file and the byte offset, never a crash. Record batches are
 * decoded one at a time into data_values (data/table.h) for the selected top-level columns;
 * dictionary batches are kept for the file's life (their values are referenced by later
 * batches). Compressed bodies, unions and view types are refused by name. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/sources.h"

/* ---------------------------------------------------------------- the pool */

typedef struct src_pool_block {
    struct src_pool_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} src_pool_block;

void *src_pool_alloc(src_pool *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    src_pool_block *b = p->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = ft_malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = p->head;
        p->head = b;
    }
    void *r = b->data + b->used;
    b->used += n;
    memset(r, 0, n);
    return r;
}

void src_pool_reset(src_pool *p) {
    /* keep the newest block, drop the rest */
    src_pool_block *b = p->head;
    if (!b)
        return;
    src_pool_block *rest = b->next;
    b->next = NULL;
    b->used = 0;
    while (rest) {
        src_pool_block *n = rest->next;
        ft_free(rest);
        rest = n;
    }
}

void src_pool_free(src_pool *p) {
    src_pool_block *b = p->head;
    while (b) {
        src_pool_block *n = b->next;
        ft_free(b);
        b = n;
    }
    p->head = NULL;
}

/* ---------------------------------------------------------------- Flatbuffers */

typedef struct fb {
    const uint8_t *p;
    size_t n;
} fb;

static bool fb_u32(fb b, size_t at, uint32_t *v) {
    if (at > b.n || b.n - at < 4)
        return false;
    *v = (uint32_t)b.p[at] | (uint32_t)b.p[at + 1] << 8 | (uint32_t)b.p[at + 2] << 16 | (uint32_t)b.p[at + 3] << 24;
    return true;
}
static bool fb_u16(fb b, size_t at, uint16_t *v) {
    if (at > b.n || b.n - at < 2)
        return false;
    *v = (uint16_t)(b.p[at] | b.p[at + 1] << 8);
    return true;
}
static bool fb_i64(fb b, size_t at, int64_t *v) {
    if (at > b.n || b.n - at < 8)
        return false;
    uint64_t x = 0;
    for (int k = 7; k >= 0; k--)
        x = x << 8 | b.p[at + (size_t)k];
    *v = (int64_t)x;
    return true;
}

/* A table at `pos`: the position of field `id`, or 0 when absent (or out of bounds). */
static size_t fb_field(fb b, size_t pos, int id) {
    uint32_t so;
    if (!fb_u32(b, pos, &so))
        return 0;
    int64_t vt = (int64_t)pos - (int64_t)(int32_t)so;
    if (vt < 0 || (size_t)vt >= b.n)
        return 0;
    uint16_t vsize, off;
    if (!fb_u16(b, (size_t)vt, &vsize) || vsize < 4 || (size_t)(4 + 2 * id + 2) > vsize)
        return 0;
    if (!fb_u16(b, (size_t)vt + 4 + 2 * (size_t)id, &off) || off == 0)
        return 0;
    if (pos + off >= b.n)
        return 0;
    return pos + off;
}

static int64_t fb_scalar(fb b, size_t pos, int id, int size, int64_t dflt) {
    size_t at = fb_field(b, pos, id);
    if (!at || at + (size_t)size > b.n)
        return dflt;
    uint64_t x = 0;
    for (int k = size - 1; k >= 0; k--)
        x = x << 8 | b.p[at + (size_t)k];
    if (size < 8 && (x >> (8 * size - 1) & 1)) /* sign-extend */
        x |= ~(uint64_t)0 << (8 * size);
    return (int64_t)x;
}

/* Follow the uoffset stored in field `id` (a table, vector or string): 0 when absent. */
static size_t fb_ref(fb b, size_t pos, int id) {
    size_t at = fb_field(b, pos, id);
    uint32_t off;
    if (!at || !fb_u32(b, at, &off) || off == 0 || at + off >= b.n)
        return 0;
    return at + off;
}

/* A vector at `pos`: its length and the position of element 0. */
static bool fb_vec(fb b, size_t pos, uint32_t *len, size_t *first, size_t elem_size) {
    if (!pos || !fb_u32(b, pos, len))
        return false;
    *first = pos + 4;
    return (uint64_t)*len * elem_size <= b.n - *first;
}

/* Element i of a vector of tables. */
static size_t fb_vec_table(fb b, size_t first, uint32_t i) {
    size_t at = first + 4 * (size_t)i;
    uint32_t off;
    if (!fb_u32(b, at, &off) || off == 0 || at + off >= b.n)
        return 0;
    return at + off;
}

static char *fb_string(fb b, size_t pos) {
    uint32_t len;
    size_t first;
    if (!fb_vec(b, pos, &len, &first, 1))
        return NULL;
    return ft_strndup((const char *)b.p + first, len);
}

/* ---------------------------------------------------------------- schema */

enum {
    T_NULL = 1, T_INT = 2, T_FLOAT = 3, T_BINARY = 4, T_UTF8 = 5, T_BOOL = 6, T_DECIMAL = 7, T_DATE = 8,
    T_TIME = 9, T_TIMESTAMP = 10, T_INTERVAL = 11, T_LIST = 12, T_STRUCT = 13, T_UNION = 14, T_FIXED_BINARY = 15,
    T_FIXED_LIST = 16, T_MAP = 17, T_DURATION = 18, T_LARGE_BINARY = 19, T_LARGE_UTF8 = 20, T_LARGE_LIST = 21,
};

static const char *type_name(int t) {
    static const char *const names[] = {"NONE", "Null", "Int", "FloatingPoint", "Binary", "Utf8", "Bool",
                                        "Decimal", "Date", "Time", "Timestamp", "Interval", "List", "Struct",
                                        "Union", "FixedSizeBinary", "FixedSizeList", "Map", "Duration",
                                        "LargeBinary", "LargeUtf8", "LargeList", "RunEndEncoded", "BinaryView",
                                        "Utf8View", "ListView", "LargeListView"};
    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "unknown";
}

typedef struct afield {
    char *name;
    int type;
    int bit_width;   /* Int, Decimal, Time */
    bool is_signed;  /* Int */
    int precision;   /* FloatingPoint: 0 half, 1 single, 2 double */
    int scale;       /* Decimal */
    int unit;        /* Date: 0 day, 1 ms; Time/Timestamp/Duration: 0 s .. 3 ns */
    bool utc;        /* Timestamp with a time zone */
    int32_t byte_width; /* FixedSizeBinary; FixedSizeList: list size */
    bool dict;       /* dictionary-encoded: the buffers hold indexes of dict_index_bits */
    int64_t dict_id;
    int dict_index_bits;
    bool dict_index_signed;
    struct afield *children;
    size_t n_children;
    const char **child_names;
} afield;

static void field_free(afield *f) {
    for (size_t i = 0; i < f->n_children; i++)
        field_free(&f->children[i]);
    ft_free(f->children);
    ft_free(f->child_names);
    ft_free(f->name);
}

typedef struct adict {
    int64_t id;
    const afield *field; /* the value type (the dictionary-encoded field, read as plain) */
    data_value *values;
    int64_t n, cap;
} adict;

struct arrow_file {
    char *path, *name;
    int fd;
    const uint8_t *mem; /* in-memory input (fuzzing) instead of fd */
    int64_t size;
    int64_t start, end; /* the stream's bytes */
    int64_t pos;        /* next message */
    int64_t batch, row;
    afield *fields;
    size_t n_fields;
    bool have_schema;
    adict *dicts;
    size_t n_dicts;
    src_pool dict_pool;
    uint8_t **dict_bodies;
    size_t n_dict_bodies;
};

#define ARROW_MAX_META (64u << 20)
#define ARROW_MAX_BODY ((int64_t)4 << 30)

static ft_status bad(const arrow_file *f, int64_t off, const char *what, ft_err *err) {
    ft_status s = FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "Arrow IPC: %s (at byte %lld)", what, (long long)off);
    if (err)
        err->offset = off;
    return s;
}

static ft_status parse_field(const arrow_file *f, fb b, size_t pos, afield *out, int depth, ft_err *err) {
    memset(out, 0, sizeof *out);
    if (depth > 64)
        return bad(f, 0, "fields nested more than 64 deep", err);
    size_t np = fb_ref(b, pos, 0);
    out->name = np ? fb_string(b, np) : ft_strdup("");
    if (!out->name)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    out->type = (int)fb_scalar(b, pos, 2, 1, 0);
    size_t tp = fb_ref(b, pos, 3);
    switch (out->type) {
    case T_INT:
        out->bit_width = (int)fb_scalar(b, tp, 0, 4, 0);
        out->is_signed = fb_scalar(b, tp, 1, 1, 0) != 0;
        if (out->bit_width != 8 && out->bit_width != 16 && out->bit_width != 32 && out->bit_width != 64)
            return bad(f, 0, "Int type with a bit width other than 8, 16, 32, 64", err);
        break;
    case T_FLOAT: out->precision = (int)fb_scalar(b, tp, 0, 2, 0); break;
    case T_DECIMAL:
        out->precision = (int)fb_scalar(b, tp, 0, 4, 0);
        out->scale = (int)fb_scalar(b, tp, 1, 4, 0);
        out->bit_width = (int)fb_scalar(b, tp, 2, 4, 128);
        if (out->bit_width != 32 && out->bit_width != 64 && out->bit_width != 128 && out->bit_width != 256)
            return bad(f, 0, "Decimal type with an unknown bit width", err);
        break;
    case T_DATE: out->unit = (int)fb_scalar(b, tp, 0, 2, 1); break;
    case T_TIME:
        out->unit = (int)fb_scalar(b, tp, 0, 2, 1);
        out->bit_width = (int)fb_scalar(b, tp, 1, 4, 32);
        if (out->bit_width != 32 && out->bit_width != 64)
            return bad(f, 0, "Time type with a bit width other than 32 or 64", err);
        break;
    case T_TIMESTAMP: {
        out->unit = (int)fb_scalar(b, tp, 0, 2, 0);
        size_t tz = fb_ref(b, tp, 1);
        uint32_t len = 0;
        size_t first;
        out->utc = tz && fb_vec(b, tz, &len, &first, 1) && len > 0;
        break;
    }
    case T_DURATION: out->unit = (int)fb_scalar(b, tp, 0, 2, 1); break;
    case T_FIXED_BINARY:
    case T_FIXED_LIST:
        out->byte_width = (int32_t)fb_scalar(b, tp, 0, 4, -1);
        if (out->byte_width < 0)
            return bad(f, 0, "fixed-size type without a size", err);
        break;
    case T_NULL: case T_BINARY: case T_UTF8: case T_BOOL: case T_LIST: case T_STRUCT: case T_MAP:
    case T_LARGE_BINARY: case T_LARGE_UTF8: case T_LARGE_LIST:
        break;
    default: {
        char msg[160];
        snprintf(msg, sizeof msg, "column '%s' has the type %s, which ftune does not read", out->name,
                 type_name(out->type));
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, f->name, 0, 0, "Arrow IPC: %s", msg);
    }
    }
    if (out->unit < 0 || out->unit > 3)
        return bad(f, 0, "unknown time unit", err);
    size_t dp = fb_ref(b, pos, 4);
    if (dp) {
        out->dict = true;
        out->dict_id = fb_scalar(b, dp, 0, 8, 0);
        size_t it = fb_ref(b, dp, 1);
        out->dict_index_bits = it ? (int)fb_scalar(b, it, 0, 4, 32) : 32;
        out->dict_index_signed = it ? fb_scalar(b, it, 1, 1, 0) != 0 : true;
        if (out->dict_index_bits != 8 && out->dict_index_bits != 16 && out->dict_index_bits != 32 &&
            out->dict_index_bits != 64)
            return bad(f, 0, "dictionary index with an unknown bit width", err);
    }
    uint32_t nc = 0;
    size_t first = 0;
    size_t cp = fb_ref(b, pos, 5);
    if (cp && !fb_vec(b, cp, &nc, &first, 4))
        return bad(f, 0, "field children out of bounds", err);
    if (nc > 100000)
        return bad(f, 0, "too many child fields", err);
    if (nc) {
        out->children = ft_calloc(nc, sizeof *out->children);
        out->child_names = ft_calloc(nc, sizeof *out->child_names);
        if (!out->children || !out->child_names)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (uint32_t i = 0; i < nc; i++) {
            size_t c = fb_vec_table(b, first, i);
            if (!c)
                return bad(f, 0, "child field out of bounds", err);
            out->n_children++;
            FT_TRY(parse_field(f, b, c, &out->children[i], depth + 1, err));
            out->child_names[i] = out->children[i].name;
        }
    }
    size_t need = out->type == T_LIST || out->type == T_LARGE_LIST || out->type == T_FIXED_LIST || out->type == T_MAP
                      ? 1
                      : 0;
    if (need && out->n_children != 1)
        return bad(f, 0, "a list or map type without exactly one child", err);
    if (out->type == T_MAP && out->children[0].n_children != 2)
        return bad(f, 0, "a map whose entries are not key/value structs", err);
    return FT_OK;
}

/* ---------------------------------------------------------------- reading bytes */

static ft_status read_at(arrow_file *f, int64_t off, void *buf, size_t n, ft_err *err) {
    if (off < 0 || off > f->size || (int64_t)n > f->size - off)
        return bad(f, off, "truncated file", err);
    if (f->mem) {
        memcpy(buf, f->mem + off, n);
        return FT_OK;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(f->fd, (char *)buf + got, n - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return FT_ERR_AT(err, FT_ERR_IO, f->name, 0, 0, "read failed: %s", r < 0 ? strerror(errno) : "end of file");
        got += (size_t)r;
    }
    return FT_OK;
}

/* The next message: its metadata (owned by the caller) and where its body is. *eos at the end. */
static ft_status next_message(arrow_file *f, uint8_t **meta, size_t *meta_len, int64_t *body_off, bool *eos,
                              ft_err *err) {
    *meta = NULL;
    *eos = false;
    if (f->end - f->pos < 4) {
        *eos = true;
        return FT_OK;
    }
    uint8_t h[8];
    FT_TRY(read_at(f, f->pos, h, 4, err));
    uint32_t len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    int64_t at = f->pos + 4;
    if (len == 0xFFFFFFFFu) {
        if (f->end - at < 4) {
            *eos = true;
            return FT_OK;
        }
        FT_TRY(read_at(f, at, h, 4, err));
        len = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        at += 4;
    }
    if (len == 0) {
        *eos = true;
        return FT_OK;
    }
    if (len > ARROW_MAX_META || (int64_t)len > f->end - at)
        return bad(f, f->pos, "message metadata length out of range", err);
    uint8_t *m = ft_malloc(len);
    if (!m)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s = read_at(f, at, m, len, err);
    if (s != FT_OK) {
        ft_free(m);
        return s;
    }
    *meta = m;
    *meta_len = len;
    *body_off = at + len;
    return FT_OK;
}

/* ---------------------------------------------------------------- batch decoding */

typedef struct bctx {
    arrow_file *f;
    fb meta;
    const uint8_t *body;
    int64_t body_len, body_off; /* file offset of the body, for messages */
    size_t nodes, n_nodes, next_node;
    size_t bufs, n_bufs, next_buf;
    int64_t max_len; /* a node longer than its buffers can describe is corrupt (bounds memory) */
    src_pool *pool;
    ft_err *err;
} bctx;

static bool take_node(bctx *c, int64_t *len, int64_t *nulls) {
    if (c->next_node >= c->n_nodes)
        return false;
    size_t at = c->nodes + 16 * c->next_node++;
    return fb_i64(c->meta, at, len) && fb_i64(c->meta, at + 8, nulls) && *len >= 0 && *len <= c->max_len;
}

static bool take_buf(bctx *c, const uint8_t **p, int64_t *len) {
    if (c->next_buf >= c->n_bufs)
        return false;
    size_t at = c->bufs + 16 * c->next_buf++;
    int64_t off, l;
    if (!fb_i64(c->meta, at, &off) || !fb_i64(c->meta, at + 8, &l))
        return false;
    if (off < 0 || l < 0 || off > c->body_len || l > c->body_len - off)
        return false;
    *p = c->body + off;
    *len = l;
    return true;
}

static ft_status cbad(bctx *c, const char *what) { return bad(c->f, c->body_off, what, c->err); }

static bool valid_at(const uint8_t *v, int64_t vlen, int64_t i) {
    if (vlen == 0)
        return true;
    return (v[i >> 3] >> (i & 7)) & 1;
}

static int64_t rd_int(const uint8_t *p, int bytes, bool sgn) {
    uint64_t x = 0;
    for (int k = bytes - 1; k >= 0; k--)
        x = x << 8 | p[k];
    if (sgn && bytes < 8 && (x >> (8 * bytes - 1) & 1))
        x |= ~(uint64_t)0 << (8 * bytes);
    return (int64_t)x;
}

static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return h >> 15 ? -v : v;
}

static const adict *find_dict(const arrow_file *f, int64_t id) {
    for (size_t i = 0; i < f->n_dicts; i++)
        if (f->dicts[i].id == id)
            return &f->dicts[i];
    return NULL;
}

/* Skip a field's nodes and buffers (an unselected column). */
static ft_status skip_field(bctx *c, const afield *fd) {
    int64_t len, nulls;
    if (!take_node(c, &len, &nulls))
        return cbad(c, "fewer field nodes than the schema needs");
    int nb;
    if (fd->dict)
        nb = 2;
    else
        switch (fd->type) {
        case T_NULL: nb = 0; break;
        case T_STRUCT: case T_FIXED_LIST: nb = 1; break;
        case T_BINARY: case T_UTF8: case T_LARGE_BINARY: case T_LARGE_UTF8: nb = 3; break;
        default: nb = 2; break;
        }
    const uint8_t *p;
    int64_t l;
    for (int k = 0; k < nb; k++)
        if (!take_buf(c, &p, &l))
            return cbad(c, "fewer buffers than the schema needs");
    if (!fd->dict)
        for (size_t i = 0; i < fd->n_children; i++)
            FT_TRY(skip_field(c, &fd->children[i]));
    return FT_OK;
}

/* Decode one field into out[0..len) (len = its node's length, returned in *n_out). `plain`
 * reads a dictionary-encoded field's value type (for dictionary batches). */
static ft_status decode_field(bctx *c, const afield *fd, bool plain, data_value **out, int64_t *n_out, int depth) {
    if (depth > 64)
        return cbad(c, "values nested more than 64 deep");
    int64_t len, nulls;
    if (!take_node(c, &len, &nulls))
        return cbad(c, "fewer field nodes than the schema needs");
    data_value *v = src_pool_alloc(c->pool, (size_t)(len ? len : 1) * sizeof *v);
    if (!v)
        return FT_ERR(c->err, FT_ERR_NOMEM, "out of memory decoding an Arrow record batch");
    *out = v;
    *n_out = len;
    if (fd->type == T_NULL && !fd->dict)
        return FT_OK; /* no buffers; every value null (zeroed) */
    const uint8_t *valid, *b1 = NULL, *b2 = NULL;
    int64_t vlen, l1 = 0, l2 = 0;
    if (!take_buf(c, &valid, &vlen))
        return cbad(c, "fewer buffers than the schema needs");
    if (vlen && vlen * 8 < len)
        return cbad(c, "validity bitmap shorter than the column");
    if (fd->dict && !plain) {
        if (!take_buf(c, &b1, &l1))
            return cbad(c, "fewer buffers than the schema needs");
        int bytes = fd->dict_index_bits / 8;
        if (l1 / bytes < len)
            return cbad(c, "dictionary index buffer shorter than the column");
        const adict *d = find_dict(c->f, fd->dict_id);
        if (!d)
            return cbad(c, "a dictionary-encoded column before its dictionary batch");
        for (int64_t i = 0; i < len; i++) {
            if (!valid_at(valid, vlen, i))
                continue;
            int64_t k = rd_int(b1 + i * bytes, bytes, fd->dict_index_signed);
            if (k < 0 || k >= d->n)
                return cbad(c, "dictionary index out of range");
            v[i] = d->values[k];
        }
        return FT_OK;
    }
    int t = fd->type;
    bool var = t == T_BINARY || t == T_UTF8 || t == T_LARGE_BINARY || t == T_LARGE_UTF8;
    bool list = t == T_LIST || t == T_LARGE_LIST || t == T_MAP;
    if (t != T_STRUCT && t != T_FIXED_LIST && !take_buf(c, &b1, &l1))
        return cbad(c, "fewer buffers than the schema needs");
    if (var && !take_buf(c, &b2, &l2))
        return cbad(c, "fewer buffers than the schema needs");
    if (var || list) {
        int ob = t == T_LARGE_BINARY || t == T_LARGE_UTF8 || t == T_LARGE_LIST ? 8 : 4;
        if (len > 0 && l1 / ob < len + 1)
            return cbad(c, "offsets buffer shorter than the column");
        data_value *child = NULL;
        int64_t n_child = 0;
        if (list)
            FT_TRY(decode_field(c, &fd->children[0], false, &child, &n_child, depth + 1));
        int64_t limit = var ? l2 : n_child;
        for (int64_t i = 0; i < len; i++) {
            int64_t a = rd_int(b1 + i * ob, ob, true), e = rd_int(b1 + (i + 1) * ob, ob, true);
            if (!valid_at(valid, vlen, i))
                continue;
            if (a < 0 || e < a || e > limit || e - a > UINT32_MAX)
                return cbad(c, "offsets out of range");
            if (var) {
                v[i].kind = t == T_UTF8 || t == T_LARGE_UTF8 ? DATA_V_STRING : DATA_V_BINARY;
                v[i].bytes = b2 + a;
                v[i].n = (uint32_t)(e - a);
            } else if (t == T_MAP) {
                data_value *items = src_pool_alloc(c->pool, (size_t)(2 * (e - a) + 1) * sizeof *items);
                if (!items)
                    return FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
                for (int64_t k = a; k < e; k++) {
                    const data_value *entry = &child[k];
                    if (entry->kind == DATA_V_STRUCT && entry->n == 2) {
                        items[2 * (k - a)] = entry->items[0];
                        items[2 * (k - a) + 1] = entry->items[1];
                    }
                }
                v[i].kind = DATA_V_MAP;
                v[i].items = items;
                v[i].n = (uint32_t)(e - a);
            } else {
                v[i].kind = DATA_V_LIST;
                v[i].items = child + a;
                v[i].n = (uint32_t)(e - a);
            }
        }
        return FT_OK;
    }
    if (t == T_STRUCT) {
        size_t nc = fd->n_children;
        data_value **kids = src_pool_alloc(c->pool, (nc ? nc : 1) * sizeof *kids);
        if (!kids)
            return FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < nc; k++) {
            int64_t n_k;
            FT_TRY(decode_field(c, &fd->children[k], false, &kids[k], &n_k, depth + 1));
            if (n_k < len)
                return cbad(c, "a struct child shorter than the struct");
        }
        for (int64_t i = 0; i < len; i++) {
            if (!valid_at(valid, vlen, i))
                continue;
            data_value *items = src_pool_alloc(c->pool, (nc ? nc : 1) * sizeof *items);
            if (!items)
                return FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
            for (size_t k = 0; k < nc; k++)
                items[k] = kids[k][i];
            v[i].kind = DATA_V_STRUCT;
            v[i].items = items;
            v[i].names = fd->child_names;
            v[i].n = (uint32_t)nc;
        }
        return FT_OK;
    }
    if (t == T_FIXED_LIST) {
        data_value *child = NULL;
        int64_t n_child = 0;
        FT_TRY(decode_field(c, &fd->children[0], false, &child, &n_child, depth + 1));
        int64_t w = fd->byte_width;
        if (w > 0 && n_child / w < len)
            return cbad(c, "fixed-size list child shorter than the list");
        for (int64_t i = 0; i < len; i++)
            if (valid_at(valid, vlen, i)) {
                v[i].kind = DATA_V_LIST;
                v[i].items = child + i * w;
                v[i].n = (uint32_t)w;
            }
        return FT_OK;
    }
    /* fixed-width values in b1 */
    int64_t width_bits;
    switch (t) {
    case T_BOOL: width_bits = 1; break;
    case T_INT: width_bits = fd->bit_width; break;
    case T_FLOAT: width_bits = fd->precision == 0 ? 16 : fd->precision == 1 ? 32 : 64; break;
    case T_DECIMAL: width_bits = fd->bit_width; break;
    case T_DATE: width_bits = fd->unit == 0 ? 32 : 64; break;
    case T_TIME: width_bits = fd->bit_width; break;
    case T_TIMESTAMP: case T_DURATION: width_bits = 64; break;
    case T_FIXED_BINARY: width_bits = (int64_t)fd->byte_width * 8; break;
    default: return cbad(c, "unexpected type");
    }
    if (len > 0 && (width_bits == 1 ? l1 * 8 < len : width_bits > 0 && l1 / (width_bits / 8) < len))
        return cbad(c, "values buffer shorter than the column");
    int64_t wb = width_bits / 8;
    static const uint8_t units[4] = {DATA_SECONDS, DATA_MILLIS, DATA_MICROS, DATA_NANOS};
    for (int64_t i = 0; i < len; i++) {
        if (!valid_at(valid, vlen, i))
            continue;
        const uint8_t *p = b1 + (width_bits == 1 ? 0 : i * wb);
        data_value *x = &v[i];
        switch (t) {
        case T_BOOL: x->kind = DATA_V_BOOL; x->b = (b1[i >> 3] >> (i & 7)) & 1; break;
        case T_INT:
            if (fd->is_signed || fd->bit_width < 64) {
                x->kind = DATA_V_INT;
                x->i = rd_int(p, (int)wb, fd->is_signed);
            } else {
                x->kind = DATA_V_UINT;
                x->u = (uint64_t)rd_int(p, 8, false);
            }
            break;
        case T_FLOAT:
            if (fd->precision == 0) {
                x->kind = DATA_V_FLOAT;
                x->f = half_to_double((uint16_t)rd_int(p, 2, false));
            } else if (fd->precision == 1) {
                float fl;
                memcpy(&fl, p, 4);
                x->kind = DATA_V_FLOAT;
                x->f = fl;
            } else {
                memcpy(&x->f, p, 8);
                x->kind = DATA_V_DOUBLE;
            }
            break;
        case T_DECIMAL: {
            uint8_t *be = src_pool_alloc(c->pool, (size_t)wb);
            if (!be)
                return FT_ERR(c->err, FT_ERR_NOMEM, "out of memory");
            for (int64_t k = 0; k < wb; k++)
                be[k] = p[wb - 1 - k]; /* little-endian in Arrow, big-endian in data_value */
            x->kind = DATA_V_DECIMAL;
            x->bytes = be;
            x->n = (uint32_t)wb;
            x->scale = fd->scale;
            break;
        }
        case T_DATE: {
            int64_t d = rd_int(p, (int)wb, true);
            x->kind = DATA_V_DATE;
            if (fd->unit != 0) { /* date64: milliseconds, floored to days (no negation: d may be INT64_MIN) */
                int64_t q = d / 86400000;
                d = d % 86400000 < 0 ? q - 1 : q;
            }
            x->i = d;
            break;
        }
        case T_TIME:
            x->kind = DATA_V_TIME;
            x->i = rd_int(p, (int)wb, true);
            x->unit = units[fd->unit];
            break;
        case T_TIMESTAMP:
            x->kind = DATA_V_TIMESTAMP;
            x->i = rd_int(p, 8, true);
            x->unit = units[fd->unit];
            x->utc = fd->utc;
            break;
        case T_DURATION: x->kind = DATA_V_INT; x->i = rd_int(p, 8, true); break;
        case T_FIXED_BINARY:
            x->kind = DATA_V_BINARY;
            x->bytes = p;
            x->n = (uint32_t)wb;
            break;
        }
    }
    return FT_OK;
}

/* Set up a bctx over a RecordBatch table at `rb`. */
static ft_status batch_ctx(arrow_file *f, fb meta, size_t rb, const uint8_t *body, int64_t body_len,
                           int64_t body_off, src_pool *pool, bctx *c, int64_t *length, ft_err *err) {
    memset(c, 0, sizeof *c);
    c->f = f;
    c->meta = meta;
    c->body = body;
    c->body_len = body_len;
    c->body_off = body_off;
    c->pool = pool;
    c->err = err;
    if (fb_ref(meta, rb, 3))
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, f->name, 0, 0,
                         "Arrow IPC: compressed record batches (LZ4/ZSTD buffers) are not supported; write the file "
                         "uncompressed (as Hugging Face datasets does)");
    *length = fb_scalar(meta, rb, 0, 8, 0);
    uint32_t nn, nb;
    size_t np = fb_ref(meta, rb, 1), bp = fb_ref(meta, rb, 2);
    if ((np && !fb_vec(meta, np, &nn, &c->nodes, 16)) || (bp && !fb_vec(meta, bp, &nb, &c->bufs, 16)))
        return bad(f, body_off, "record batch metadata out of bounds", err);
    c->n_nodes = np ? nn : 0;
    c->n_bufs = bp ? nb : 0;
    /* every value takes at least a bit of the body, except in all-null columns of the batch's
     * length; 16M rows of nothing is the most a batch may claim beyond its bytes */
    if (*length < 0 || *length > body_len * 8 + ((int64_t)1 << 24))
        return bad(f, body_off, "record batch length out of range", err);
    c->max_len = body_len * 8 + 2 * *length + 64;
    return FT_OK;
}

static const afield *find_dict_field(const afield *fs, size_t n, int64_t id) {
    for (size_t i = 0; i < n; i++) {
        if (fs[i].dict && fs[i].dict_id == id)
            return &fs[i];
        const afield *r = find_dict_field(fs[i].children, fs[i].n_children, id);
        if (r)
            return r;
    }
    return NULL;
}

static ft_status read_body(arrow_file *f, int64_t off, int64_t len, uint8_t **out, ft_err *err) {
    *out = NULL;
    if (len < 0 || len > ARROW_MAX_BODY || len > f->end - off)
        return bad(f, off, "message body length out of range", err);
    uint8_t *b = ft_malloc((size_t)(len ? len : 1));
    if (!b)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory reading an Arrow record batch of %lld bytes", (long long)len);
    ft_status s = read_at(f, off, b, (size_t)len, err);
    if (s != FT_OK) {
        ft_free(b);
        return s;
    }
    *out = b;
    return FT_OK;
}

static ft_status handle_dictionary(arrow_file *f, fb meta, size_t db, int64_t body_off, int64_t body_len,
                                   ft_err *err) {
    int64_t id = fb_scalar(meta, db, 0, 8, 0);
    bool is_delta = fb_scalar(meta, db, 2, 1, 0) != 0;
    size_t rb = fb_ref(meta, db, 1);
    const afield *fd = find_dict_field(f->fields, f->n_fields, id);
    if (!rb || !fd)
        return bad(f, body_off, "dictionary batch for an unknown dictionary id", err);
    uint8_t *body;
    FT_TRY(read_body(f, body_off, body_len, &body, err));
    uint8_t **nb = ft_realloc(f->dict_bodies, (f->n_dict_bodies + 1) * sizeof *nb);
    if (!nb) {
        ft_free(body);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    f->dict_bodies = nb;
    f->dict_bodies[f->n_dict_bodies++] = body;
    bctx c;
    int64_t length;
    FT_TRY(batch_ctx(f, meta, rb, body, body_len, body_off, &f->dict_pool, &c, &length, err));
    /* the dictionary's values have the field's type, without the dictionary encoding */
    afield plainf = *fd;
    plainf.dict = false;
    data_value *vals;
    int64_t n;
    FT_TRY(decode_field(&c, &plainf, true, &vals, &n, 0));
    adict *d = NULL;
    for (size_t i = 0; i < f->n_dicts; i++)
        if (f->dicts[i].id == id)
            d = &f->dicts[i];
    if (!d) {
        adict *nd = ft_realloc(f->dicts, (f->n_dicts + 1) * sizeof *nd);
        if (!nd)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        f->dicts = nd;
        d = &f->dicts[f->n_dicts++];
        memset(d, 0, sizeof *d);
        d->id = id;
    }
    if (!is_delta)
        d->n = 0;
    if (d->n + n > d->cap) {
        int64_t cap = d->n + n;
        data_value *nv = ft_realloc(d->values, (size_t)(cap ? cap : 1) * sizeof *nv);
        if (!nv)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        d->values = nv;
        d->cap = cap;
    }
    if (n > 0) /* an empty dictionary batch: no copy (values may still be NULL) */
        memcpy(d->values + d->n, vals, (size_t)n * sizeof *vals);
    d->n += n;
    return FT_OK;
}

/* ---------------------------------------------------------------- the file */

static ft_status read_schema(arrow_file *f, fb meta, size_t sp, ft_err *err) {
    if (fb_scalar(meta, sp, 0, 2, 0) != 0)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, f->name, 0, 0, "Arrow IPC: big-endian files are not supported");
    uint32_t n = 0;
    size_t first;
    size_t fp = fb_ref(meta, sp, 1);
    if (fp && !fb_vec(meta, fp, &n, &first, 4))
        return bad(f, 0, "schema fields out of bounds", err);
    f->fields = ft_calloc(n ? n : 1, sizeof *f->fields);
    if (!f->fields)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        size_t p = fb_vec_table(meta, first, i);
        if (!p)
            return bad(f, 0, "schema field out of bounds", err);
        f->n_fields++;
        FT_TRY(parse_field(f, meta, p, &f->fields[i], 0, err));
    }
    f->have_schema = true;
    return FT_OK;
}

/* Header type and table of a message. */
static int message_header(fb meta, size_t *hdr, int64_t *body_len) {
    uint32_t root;
    if (!fb_u32(meta, 0, &root) || root >= meta.n)
        return -1;
    int type = (int)fb_scalar(meta, root, 1, 1, 0);
    *hdr = fb_ref(meta, root, 2);
    *body_len = fb_scalar(meta, root, 3, 8, 0);
    return *hdr ? type : -1;
}

static ft_status open_common(arrow_file *f, ft_err *err) {
    uint8_t magic[8];
    f->start = 0;
    f->end = f->size;
    if (f->size >= 8) {
        FT_TRY(read_at(f, 0, magic, 8, err));
        if (memcmp(magic, "ARROW1", 6) == 0) {
            uint8_t tail[10];
            if (f->size < 18)
                return bad(f, 0, "file too short for the Arrow file format", err);
            FT_TRY(read_at(f, f->size - 10, tail, 10, err));
            if (memcmp(tail + 4, "ARROW1", 6) != 0)
                return bad(f, f->size - 6, "Arrow file format without its closing ARROW1 magic (truncated?)", err);
            uint32_t flen = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 |
                            (uint32_t)tail[3] << 24;
            if ((int64_t)flen > f->size - 18)
                return bad(f, f->size - 10, "footer length out of range", err);
            f->start = 8;
            f->end = f->size - 10 - flen;
            /* the schema is in the footer (writers need not repeat it as the stream's first
             * message); dictionaries and batches follow one another after the magic */
            uint8_t *foot = ft_malloc(flen ? flen : 1);
            if (!foot)
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            ft_status s = read_at(f, f->end, foot, flen, err);
            fb fm = {foot, flen};
            uint32_t root;
            size_t sp = 0;
            if (s == FT_OK && fb_u32(fm, 0, &root) && root < flen)
                sp = fb_ref(fm, root, 1);
            if (s == FT_OK)
                s = sp ? read_schema(f, fm, sp, err) : bad(f, f->end, "Arrow file footer without a schema", err);
            ft_free(foot);
            FT_TRY(s);
            f->pos = f->start;
            /* skip a leading schema message if there is one */
            uint8_t *m;
            size_t ml;
            int64_t body_off;
            bool eos;
            FT_TRY(next_message(f, &m, &ml, &body_off, &eos, err));
            if (!eos) {
                fb meta = {m, ml};
                size_t hdr;
                int64_t blen;
                if (message_header(meta, &hdr, &blen) == 1 && blen >= 0 && blen <= f->end - body_off)
                    f->start = body_off + blen;
                ft_free(m);
            }
            f->pos = f->start;
            return FT_OK;
        }
    }
    f->pos = f->start;
    /* the schema comes first */
    uint8_t *m;
    size_t ml;
    int64_t body_off;
    bool eos;
    FT_TRY(next_message(f, &m, &ml, &body_off, &eos, err));
    if (eos)
        return bad(f, f->pos, "no schema message (empty or not an Arrow IPC file)", err);
    fb meta = {m, ml};
    size_t hdr;
    int64_t blen;
    int type = message_header(meta, &hdr, &blen);
    ft_status s = type == 1 ? read_schema(f, meta, hdr, err)
                            : bad(f, f->pos, "the first message is not a schema (not an Arrow IPC file?)", err);
    ft_free(m);
    if (s == FT_OK) {
        if (blen < 0 || blen > f->end - body_off)
            return bad(f, f->pos, "schema body length out of range", err);
        f->pos = body_off + blen;
        f->start = f->pos; /* rewind to the first batch */
    }
    return s;
}

ft_status arrow_open(const char *path, const char *name, arrow_file **out, ft_err *err) {
    *out = NULL;
    arrow_file *f = ft_calloc(1, sizeof *f);
    if (!f)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    f->fd = -1;
    f->path = ft_strdup(path);
    f->name = ft_strdup(name);
    if (!f->path || !f->name) {
        arrow_close(f);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st) != 0) {
        ft_status s = FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, name, 0, 0, "cannot open: %s",
                                strerror(errno));
        arrow_close(f);
        return s;
    }
    f->size = st.st_size;
    ft_status s = open_common(f, err);
    if (s != FT_OK) {
        arrow_close(f);
        return s;
    }
    *out = f;
    return FT_OK;
}

void arrow_close(arrow_file *f) {
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    for (size_t i = 0; i < f->n_fields; i++)
        field_free(&f->fields[i]);
    ft_free(f->fields);
    for (size_t i = 0; i < f->n_dicts; i++)
        ft_free(f->dicts[i].values);
    ft_free(f->dicts);
    for (size_t i = 0; i < f->n_dict_bodies; i++)
        ft_free(f->dict_bodies[i]);
    ft_free(f->dict_bodies);
    src_pool_free(&f->dict_pool);
    ft_free(f->path);
    ft_free(f->name);
    ft_free(f);
}

size_t arrow_n_columns(const arrow_file *f) { return f->n_fields; }
const char *arrow_column_name(const arrow_file *f, size_t i) { return i < f->n_fields ? f->fields[i].name : NULL; }
int32_t arrow_find_column(const arrow_file *f, const char *name) {
    for (size_t i = 0; i < f->n_fields; i++)
        if (strcmp(f->fields[i].name, name) == 0)
            return (int32_t)i;
    return -1;
}

ft_status arrow_rewind(arrow_file *f, ft_err *err) {
    (void)err;
    f->pos = f->start;
    f->batch = 0;
    f->row = 0;
    /* dictionaries are rebuilt from the batches as they come again */
    for (size_t i = 0; i < f->n_dicts; i++)
        ft_free(f->dicts[i].values);
    ft_free(f->dicts);
    f->dicts = NULL;
    f->n_dicts = 0;
    for (size_t i = 0; i < f->n_dict_bodies; i++)
        ft_free(f->dict_bodies[i]);
    ft_free(f->dict_bodies);
    f->dict_bodies = NULL;
    f->n_dict_bodies = 0;
    src_pool_free(&f->dict_pool);
    return FT_OK;
}

void arrow_rows_free(arrow_rows *rows) {
    src_pool_free(&rows->pool);
    ft_free(rows->body);
    memset(rows, 0, sizeof *rows);
}

ft_status arrow_next_batch(arrow_file *f, const int32_t *columns, size_t n_columns, arrow_rows *rows, bool *done,
                           ft_err *err) {
    *done = false;
    for (;;) {
        uint8_t *m;
        size_t ml;
        int64_t body_off;
        bool eos;
        FT_TRY(next_message(f, &m, &ml, &body_off, &eos, err));
        if (eos) {
            *done = true;
            return FT_OK;
        }
        fb meta = {m, ml};
        size_t hdr;
        int64_t blen;
        int type = message_header(meta, &hdr, &blen);
        ft_status s = FT_OK;
        if (type < 0 || blen < 0 || blen > f->end - body_off)
            s = bad(f, f->pos, "malformed message header", err);
        else if (type == 2)
            s = handle_dictionary(f, meta, hdr, body_off, blen, err);
        else if (type == 3) {
            src_pool_reset(&rows->pool);
            ft_free(rows->body);
            rows->body = NULL;
            s = read_body(f, body_off, blen, &rows->body, err);
            bctx c;
            int64_t length = 0;
            if (s == FT_OK)
                s = batch_ctx(f, meta, hdr, rows->body, blen, body_off, &rows->pool, &c, &length, err);
            data_value **cols = NULL;
            if (s == FT_OK) {
                cols = src_pool_alloc(&rows->pool, (f->n_fields ? f->n_fields : 1) * sizeof *cols);
                if (!cols)
                    s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            }
            for (size_t i = 0; s == FT_OK && i < f->n_fields; i++) {
                bool sel = false;
                for (size_t k = 0; k < n_columns; k++)
                    sel = sel || columns[k] == (int32_t)i;
                if (!sel) {
                    s = skip_field(&c, &f->fields[i]);
                    continue;
                }
                int64_t n;
                s = decode_field(&c, &f->fields[i], false, &cols[i], &n, 0);
                if (s == FT_OK && n < length)
                    s = bad(f, body_off, "a column shorter than its record batch", err);
            }
            if (s == FT_OK) {
                rows->cells = src_pool_alloc(&rows->pool, (size_t)(length * (int64_t)n_columns + 1) * sizeof(data_value));
                if (!rows->cells)
                    s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            }
            if (s == FT_OK) {
                for (int64_t r = 0; r < length; r++)
                    for (size_t k = 0; k < n_columns; k++)
                        rows->cells[r * (int64_t)n_columns + (int64_t)k] = cols[columns[k]][r];
                rows->batch = f->batch++;
                rows->n = length;
                rows->first_row = f->row;
                rows->n_columns = n_columns;
                f->row += length;
            }
        }
        /* other messages (tensors) are skipped */
        ft_free(m);
        if (s != FT_OK)
            return s;
        f->pos = body_off + blen;
        if (type == 3)
            return FT_OK;
    }
}

ft_status arrow_decode_memory(const uint8_t *data, size_t len, int64_t *n_rows, ft_err *err) {
    arrow_file *f = ft_calloc(1, sizeof *f);
    if (!f)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    f->fd = -1;
    f->mem = data;
    f->size = (int64_t)len;
    f->name = ft_strdup("memory");
    *n_rows = 0;
    ft_status s = f->name ? open_common(f, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    int32_t *cols = NULL;
    if (s == FT_OK) {
        cols = ft_calloc(f->n_fields + 1, sizeof *cols);
        if (!cols)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t i = 0; cols && i < f->n_fields; i++)
            cols[i] = (int32_t)i;
    }
    arrow_rows rows = {0};
    ft_buf out = {0};
    while (s == FT_OK) {
        bool done;
        s = arrow_next_batch(f, cols, f->n_fields, &rows, &done, err);
        if (s != FT_OK || done)
            break;
        for (int64_t r = 0; s == FT_OK && r < rows.n; r++)
            for (size_t k = 0; s == FT_OK && k < rows.n_columns; k++) {
                out.len = 0;
                s = data_value_write_json(&out, &rows.cells[r * (int64_t)rows.n_columns + (int64_t)k], err);
            }
        *n_rows += rows.n;
    }
    ft_buf_free(&out);
    arrow_rows_free(&rows);
    ft_free(cols);
    arrow_close(f);
    return s;
}
