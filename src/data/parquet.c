/* data/parquet.c: the Apache Parquet reader (data/parquet.h), written from the format's
 * specification (parquet-format: parquet.thrift, Encodings.md, LogicalTypes.md, the Thrift
 * compact protocol). In sections:
 *   Thrift compact protocol   a bounded cursor; unknown fields are skipped
 *   footer                    FileMetaData -> schema tree, row groups, column chunks
 *   codecs                    SNAPPY, GZIP (several members), ZSTD, LZ4_RAW, BROTLI via Debian libraries
 *   encodings                 RLE/bit-packed hybrid, PLAIN, dictionaries, DELTA_*, BYTE_STREAM_SPLIT
 *   pages                     DATA_PAGE v1/v2, DICTIONARY_PAGE (also where Spark puts it)
 *   assembly                  definition/repetition levels -> nested values (LIST/MAP compat rules)
 *
 * Nothing here trusts the file: every length, count and offset is checked against what is
 * really there before it is used, and recursion is bounded by the schema depth limit. */
#include <brotli/decode.h>
#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "data/parquet.h"

#define MAX_DEPTH 64                         /* schema nesting */
#define MAX_FOOTER ((int64_t)256 << 20)      /* footer bytes */
#define MAX_PAGE_VALUES ((int64_t)1 << 24)   /* levels in one page */
#define MAX_CHUNK_VALUES ((int64_t)1 << 28)  /* levels in one column chunk */
#define MAX_PAGE_BYTES ((int64_t)1 << 30)    /* a decompressed page */

/* ---------------------------------------------------------------- Thrift compact protocol */

enum { TT_STOP = 0, TT_TRUE = 1, TT_FALSE = 2, TT_BYTE = 3, TT_I16 = 4, TT_I32 = 5, TT_I64 = 6, TT_DOUBLE = 7,
       TT_BINARY = 8, TT_LIST = 9, TT_SET = 10, TT_MAP = 11, TT_STRUCT = 12 };

typedef struct th {
    const uint8_t *p, *end;
    int depth;
    bool bad;
    const char *why;
} th;

static void th_fail(th *t, const char *why) {
    if (!t->bad)
        t->why = why;
    t->bad = true;
    t->p = t->end;
}

static uint64_t th_varint(th *t) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (t->p >= t->end) {
            th_fail(t, "truncated varint");
            return 0;
        }
        uint8_t b = *t->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    th_fail(t, "varint longer than 10 bytes");
    return 0;
}

static int64_t th_zigzag(th *t) {
    uint64_t u = th_varint(t);
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

static int32_t th_i32(th *t) {
    int64_t v = th_zigzag(t);
    if (v < INT32_MIN || v > INT32_MAX) {
        th_fail(t, "i32 out of range");
        return 0;
    }
    return (int32_t)v;
}

/* A binary/string: pointer into the buffer and its length. */
static const uint8_t *th_binary(th *t, size_t *len) {
    uint64_t n = th_varint(t);
    if (t->bad || n > (uint64_t)(t->end - t->p)) {
        th_fail(t, "string longer than the data");
        *len = 0;
        return NULL;
    }
    const uint8_t *s = t->p;
    t->p += n;
    *len = (size_t)n;
    return s;
}

/* Next field header: false at the struct's stop. */
static bool th_field(th *t, int16_t *id, int *type, int16_t *last) {
    if (t->p >= t->end) {
        th_fail(t, "truncated struct");
        return false;
    }
    uint8_t b = *t->p++;
    if (b == 0)
        return false;
    int delta = b >> 4;
    *type = b & 15;
    if (delta)
        *id = (int16_t)(*last + delta);
    else {
        int64_t v = th_zigzag(t);
        if (v < INT16_MIN || v > INT16_MAX) {
            th_fail(t, "field id out of range");
            return false;
        }
        *id = (int16_t)v;
    }
    *last = *id;
    return !t->bad;
}

/* List/set header: element type and count (bounded by the bytes left: every element takes one). */
static int64_t th_list(th *t, int *etype) {
    if (t->p >= t->end) {
        th_fail(t, "truncated list");
        return 0;
    }
    uint8_t b = *t->p++;
    *etype = b & 15;
    uint64_t n = b >> 4;
    if (n == 15)
        n = th_varint(t);
    if (t->bad || n > (uint64_t)(t->end - t->p)) {
        th_fail(t, "list longer than the data");
        return 0;
    }
    return (int64_t)n;
}

static void th_skip(th *t, int type, bool in_list);

static void th_skip_struct(th *t) {
    if (++t->depth > MAX_DEPTH) {
        th_fail(t, "structures nested too deep");
        return;
    }
    int16_t last = 0, id;
    int type;
    while (th_field(t, &id, &type, &last))
        th_skip(t, type, false);
    t->depth--;
}

static void th_skip(th *t, int type, bool in_list) {
    if (t->bad)
        return;
    switch (type) {
    case TT_TRUE:
    case TT_FALSE:
        if (in_list) { /* list elements of type bool take a byte; field bools live in the header */
            if (t->p >= t->end)
                th_fail(t, "truncated bool");
            else
                t->p++;
        }
        break;
    case TT_BYTE:
        if (t->p >= t->end)
            th_fail(t, "truncated byte");
        else
            t->p++;
        break;
    case TT_I16:
    case TT_I32:
    case TT_I64: th_varint(t); break;
    case TT_DOUBLE:
        if (t->end - t->p < 8)
            th_fail(t, "truncated double");
        else
            t->p += 8;
        break;
    case TT_BINARY: {
        size_t n;
        th_binary(t, &n);
        break;
    }
    case TT_LIST:
    case TT_SET: {
        int et;
        int64_t n = th_list(t, &et);
        if (++t->depth > MAX_DEPTH) {
            th_fail(t, "structures nested too deep");
            return;
        }
        for (int64_t i = 0; i < n && !t->bad; i++)
            th_skip(t, et, true);
        t->depth--;
        break;
    }
    case TT_MAP: {
        uint64_t n = th_varint(t);
        if (n == 0)
            break;
        if (t->bad || n > (uint64_t)(t->end - t->p)) {
            th_fail(t, "map longer than the data");
            return;
        }
        uint8_t kv = *t->p++;
        if (++t->depth > MAX_DEPTH) {
            th_fail(t, "structures nested too deep");
            return;
        }
        for (uint64_t i = 0; i < n && !t->bad; i++) {
            th_skip(t, kv >> 4, true);
            th_skip(t, kv & 15, true);
        }
        t->depth--;
        break;
    }
    case TT_STRUCT: th_skip_struct(t); break;
    default: th_fail(t, "unknown Thrift type"); break;
    }
}

/* A field we expect to have type `want`; skip it (and say so) otherwise. */
static bool th_is(th *t, int type, int want) {
    bool ints = (type == TT_I16 || type == TT_I32 || type == TT_I64 || type == TT_BYTE) &&
                (want == TT_I16 || want == TT_I32 || want == TT_I64);
    if (type == want || ints || ((type == TT_TRUE || type == TT_FALSE) && want == TT_TRUE))
        return true;
    th_skip(t, type, false);
    return false;
}

static int64_t th_int(th *t, int type) {
    if (type == TT_BYTE) {
        if (t->p >= t->end) {
            th_fail(t, "truncated byte");
            return 0;
        }
        return (int8_t)*t->p++;
    }
    return th_zigzag(t);
}

/* ---------------------------------------------------------------- the file model */

typedef struct chunk_meta {
    int32_t physical, codec;
    int64_t num_values, total_compressed, data_page_offset, dict_page_offset;
    bool external, has_meta, encrypted;
} chunk_meta;

typedef struct row_group {
    int64_t num_rows, first_row;
    chunk_meta *chunks;
    int64_t n_chunks;
} row_group;

typedef struct kv_pair {
    char *key, *value;
    size_t value_len;
} kv_pair;

struct pq_file {
    char *name;
    int fd;
    const uint8_t *mem; /* in-memory file (fuzzing), else NULL */
    int64_t size;
    pq_node *nodes;
    size_t n_nodes;
    int32_t *child_index; /* storage of all nodes' children arrays */
    const char ***child_names; /* per node: its children's names (structs' value names) */
    int32_t *first_leaf;  /* per node: node index of its leftmost leaf */
    int32_t *leaf_nodes;  /* node index of each leaf column */
    size_t n_leaves;
    int64_t num_rows;
    row_group *rgs;
    int64_t n_rgs;
    char *created_by;
    kv_pair *kv;
    size_t n_kv;
};

/* Raw SchemaElement. */
typedef struct schema_elem {
    int32_t type, type_length, repetition, num_children, converted, scale, precision;
    bool has_type, has_repetition, has_children, has_converted;
    char *name;
    int8_t logical, unit;
    bool utc, int_signed, has_logical;
    int8_t int_bits;
    int32_t l_scale, l_precision;
    int32_t field_id;
    bool has_field_id;
} schema_elem;

static void parse_time_unit(th *t, int8_t *unit) {
    int16_t last = 0, id;
    int type;
    while (th_field(t, &id, &type, &last)) {
        if (id == 1)
            *unit = DATA_MILLIS;
        else if (id == 2)
            *unit = DATA_MICROS;
        else if (id == 3)
            *unit = DATA_NANOS;
        th_skip(t, type, false);
    }
}

static void parse_logical(th *t, schema_elem *e) {
    int16_t last = 0, id;
    int type;
    e->has_logical = true;
    e->logical = PQ_L_OTHER;
    while (th_field(t, &id, &type, &last)) {
        if (type != TT_STRUCT) {
            th_skip(t, type, false);
            continue;
        }
        switch (id) {
        case 1: e->logical = PQ_L_STRING; break;
        case 2: e->logical = PQ_L_MAP; break;
        case 3: e->logical = PQ_L_LIST; break;
        case 4: e->logical = PQ_L_ENUM; break;
        case 6: e->logical = PQ_L_DATE; break;
        case 11: e->logical = PQ_L_UNKNOWN; break;
        case 12: e->logical = PQ_L_JSON; break;
        case 13: e->logical = PQ_L_BSON; break;
        case 14: e->logical = PQ_L_UUID; break;
        case 15: e->logical = PQ_L_FLOAT16; break;
        case 5: { /* DecimalType {1: scale, 2: precision} */
            e->logical = PQ_L_DECIMAL;
            int16_t l2 = 0, id2;
            int ty2;
            while (th_field(t, &id2, &ty2, &l2)) {
                if (id2 == 1 && th_is(t, ty2, TT_I32))
                    e->l_scale = th_i32(t);
                else if (id2 == 2 && th_is(t, ty2, TT_I32))
                    e->l_precision = th_i32(t);
                else if (id2 > 2)
                    th_skip(t, ty2, false);
            }
            continue;
        }
        case 7:
        case 8: { /* TimeType / TimestampType {1: isAdjustedToUTC, 2: unit} */
            e->logical = id == 7 ? PQ_L_TIME : PQ_L_TIMESTAMP;
            e->unit = DATA_MILLIS;
            int16_t l2 = 0, id2;
            int ty2;
            while (th_field(t, &id2, &ty2, &l2)) {
                if (id2 == 1 && (ty2 == TT_TRUE || ty2 == TT_FALSE))
                    e->utc = ty2 == TT_TRUE;
                else if (id2 == 2 && ty2 == TT_STRUCT)
                    parse_time_unit(t, &e->unit);
                else
                    th_skip(t, ty2, false);
            }
            continue;
        }
        case 10: { /* IntType {1: bitWidth i8, 2: isSigned} */
            e->logical = PQ_L_INT;
            e->int_bits = 64;
            e->int_signed = true;
            int16_t l2 = 0, id2;
            int ty2;
            while (th_field(t, &id2, &ty2, &l2)) {
                if (id2 == 1 && (ty2 == TT_BYTE || ty2 == TT_I32 || ty2 == TT_I16))
                    e->int_bits = (int8_t)th_int(t, ty2);
                else if (id2 == 2 && (ty2 == TT_TRUE || ty2 == TT_FALSE))
                    e->int_signed = ty2 == TT_TRUE;
                else
                    th_skip(t, ty2, false);
            }
            continue;
        }
        default: e->logical = PQ_L_OTHER; break;
        }
        th_skip(t, type, false);
    }
}

static void parse_schema_elem(th *t, schema_elem *e) {
    int16_t last = 0, id;
    int type;
    while (th_field(t, &id, &type, &last)) {
        switch (id) {
        case 1:
            if (th_is(t, type, TT_I32))
                e->type = th_i32(t), e->has_type = true;
            break;
        case 2:
            if (th_is(t, type, TT_I32))
                e->type_length = th_i32(t);
            break;
        case 3:
            if (th_is(t, type, TT_I32))
                e->repetition = th_i32(t), e->has_repetition = true;
            break;
        case 4:
            if (th_is(t, type, TT_BINARY)) {
                size_t n;
                const uint8_t *s = th_binary(t, &n);
                if (!t->bad && !e->name)
                    e->name = ft_strndup((const char *)s, n);
            }
            break;
        case 5:
            if (th_is(t, type, TT_I32))
                e->num_children = th_i32(t), e->has_children = true;
            break;
        case 6:
            if (th_is(t, type, TT_I32))
                e->converted = th_i32(t), e->has_converted = true;
            break;
        case 7:
            if (th_is(t, type, TT_I32))
                e->scale = th_i32(t);
            break;
        case 8:
            if (th_is(t, type, TT_I32))
                e->precision = th_i32(t);
            break;
        case 9:
            if (th_is(t, type, TT_I32))
                e->field_id = th_i32(t), e->has_field_id = true;
            break;
        case 10:
            if (th_is(t, type, TT_STRUCT))
                parse_logical(t, e);
            break;
        default: th_skip(t, type, false); break;
        }
    }
}

static void parse_column_meta(th *t, chunk_meta *c) {
    int16_t last = 0, id;
    int type;
    c->has_meta = true;
    while (th_field(t, &id, &type, &last)) {
        switch (id) {
        case 1:
            if (th_is(t, type, TT_I32))
                c->physical = th_i32(t);
            break;
        case 4:
            if (th_is(t, type, TT_I32))
                c->codec = th_i32(t);
            break;
        case 5:
            if (th_is(t, type, TT_I64))
                c->num_values = th_zigzag(t);
            break;
        case 7:
            if (th_is(t, type, TT_I64))
                c->total_compressed = th_zigzag(t);
            break;
        case 9:
            if (th_is(t, type, TT_I64))
                c->data_page_offset = th_zigzag(t);
            break;
        case 11:
            if (th_is(t, type, TT_I64))
                c->dict_page_offset = th_zigzag(t);
            break;
        default: th_skip(t, type, false); break;
        }
    }
}

static void parse_column_chunk(th *t, chunk_meta *c) {
    int16_t last = 0, id;
    int type;
    while (th_field(t, &id, &type, &last)) {
        if (id == 1 && type == TT_BINARY) {
            size_t n;
            th_binary(t, &n);
            c->external = true;
        } else if (id == 3 && type == TT_STRUCT) {
            parse_column_meta(t, c);
        } else {
            if (id == 8 || id == 9)
                c->encrypted = true;
            th_skip(t, type, false);
        }
    }
}

static ft_status parse_row_group(th *t, row_group *g, ft_err *err) {
    int16_t last = 0, id;
    int type;
    while (th_field(t, &id, &type, &last)) {
        if (id == 1 && type == TT_LIST) {
            int et;
            int64_t n = th_list(t, &et);
            if (t->bad)
                break;
            if (et != TT_STRUCT) {
                th_fail(t, "row group columns are not structs");
                break;
            }
            ft_free(g->chunks);
            g->chunks = ft_calloc((size_t)(n ? n : 1), sizeof *g->chunks);
            if (!g->chunks)
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            g->n_chunks = n;
            for (int64_t i = 0; i < n && !t->bad; i++)
                parse_column_chunk(t, &g->chunks[i]);
        } else if (id == 3 && th_is(t, type, TT_I64)) {
            g->num_rows = th_zigzag(t);
        } else if (id != 3) {
            th_skip(t, type, false);
        }
    }
    return FT_OK;
}

/* ---------------------------------------------------------------- footer */

static void elems_free(schema_elem *e, int64_t n) {
    for (int64_t i = 0; e && i < n; i++)
        ft_free(e[i].name);
    ft_free(e);
}

static void free_row_groups(pq_file *f) {
    for (int64_t i = 0; f->rgs && i < f->n_rgs; i++)
        ft_free(f->rgs[i].chunks);
    ft_free(f->rgs);
    f->rgs = NULL;
    f->n_rgs = 0;
}

static void free_kv(pq_file *f) {
    for (size_t i = 0; i < f->n_kv; i++) {
        ft_free(f->kv[i].key);
        ft_free(f->kv[i].value);
    }
    ft_free(f->kv);
    f->kv = NULL;
    f->n_kv = 0;
}

void pq_close(pq_file *f) {
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    for (size_t i = 0; i < f->n_nodes; i++) {
        ft_free((char *)f->nodes[i].name);
        ft_free((char *)f->nodes[i].path);
        if (f->child_names)
            ft_free(f->child_names[i]);
    }
    ft_free(f->child_names);
    ft_free(f->nodes);
    ft_free(f->child_index);
    ft_free(f->first_leaf);
    ft_free(f->leaf_nodes);
    free_row_groups(f);
    free_kv(f);
    ft_free(f->created_by);
    ft_free(f->name);
    ft_free(f);
}

/* Fold the legacy converted type into the logical type (LogicalTypes.md, backward compatibility). */
static void fold_converted(const schema_elem *e, pq_node *n) {
    if (e->has_logical) {
        n->logical = e->logical;
        n->scale = e->l_scale;
        n->precision = e->l_precision;
        n->unit = e->unit;
        n->utc = e->utc;
        n->int_bits = e->int_bits;
        n->int_signed = e->int_signed;
        if (e->logical != PQ_L_OTHER || !e->has_converted)
            return;
    }
    if (!e->has_converted)
        return;
    n->scale = e->scale;
    n->precision = e->precision;
    switch (e->converted) {
    case 0: n->logical = PQ_L_STRING; break;
    case 1: n->logical = PQ_L_MAP; break;
    case 2: n->logical = PQ_L_NONE; break; /* MAP_KEY_VALUE: the repeated key_value group itself */
    case 3: n->logical = PQ_L_LIST; break;
    case 4: n->logical = PQ_L_ENUM; break;
    case 5: n->logical = PQ_L_DECIMAL; break;
    case 6: n->logical = PQ_L_DATE; break;
    case 7: n->logical = PQ_L_TIME, n->unit = DATA_MILLIS, n->utc = true; break;
    case 8: n->logical = PQ_L_TIME, n->unit = DATA_MICROS, n->utc = true; break;
    case 9: n->logical = PQ_L_TIMESTAMP, n->unit = DATA_MILLIS, n->utc = true; break;
    case 10: n->logical = PQ_L_TIMESTAMP, n->unit = DATA_MICROS, n->utc = true; break;
    case 11: case 12: case 13: case 14:
        n->logical = PQ_L_INT, n->int_signed = false, n->int_bits = (int8_t)(8 << (e->converted - 11));
        break;
    case 15: case 16: case 17: case 18:
        n->logical = PQ_L_INT, n->int_signed = true, n->int_bits = (int8_t)(8 << (e->converted - 15));
        break;
    case 19: n->logical = PQ_L_JSON; break;
    case 20: n->logical = PQ_L_BSON; break;
    case 21: n->logical = PQ_L_INTERVAL; break;
    default: break;
    }
}

typedef struct builder {
    pq_file *f;
    schema_elem *el;
    int64_t n_el, next;
    size_t n_child_used;
    ft_err *err;
} builder;

static ft_status build_node(builder *b, int32_t parent, int depth, int32_t *out) {
    pq_file *f = b->f;
    if (b->next >= b->n_el)
        return FT_ERR_AT(b->err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet footer: the schema has fewer elements than its groups announce");
    if (depth > MAX_DEPTH)
        return FT_ERR_AT(b->err, FT_ERR_LIMIT, f->name, 0, 0, "parquet schema nested more than %d deep", MAX_DEPTH);
    int64_t ei = b->next++;
    schema_elem *e = &b->el[ei];
    int32_t me = (int32_t)f->n_nodes++;
    pq_node *n = &f->nodes[me];
    memset(n, 0, sizeof *n);
    n->index = me;
    n->parent = parent;
    n->leaf = -1;
    n->name = ft_strdup(e->name ? e->name : "");
    n->field_id = e->field_id;
    n->has_field_id = e->has_field_id;
    const pq_node *p = parent >= 0 ? &f->nodes[parent] : NULL;
    n->path = !p || p->parent < 0 ? ft_strdup(n->name ? n->name : "") : ft_asprintf("%s.%s", p->path, n->name ? n->name : "");
    if (!n->name || !n->path)
        return FT_ERR(b->err, FT_ERR_NOMEM, "out of memory");
    n->repetition = (int8_t)(parent < 0 ? PQ_REQUIRED : e->has_repetition ? e->repetition : PQ_OPTIONAL);
    if (n->repetition < 0 || n->repetition > 2)
        return FT_ERR_AT(b->err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet schema: field \"%s\" has repetition %d", n->path,
                         (int)n->repetition);
    n->max_def = (int16_t)((p ? p->max_def : 0) + (parent >= 0 && n->repetition != PQ_REQUIRED));
    n->max_rep = (int16_t)((p ? p->max_rep : 0) + (n->repetition == PQ_REPEATED));
    fold_converted(e, n);
    bool group = e->has_children && (e->num_children > 0 || !e->has_type);
    if (parent < 0)
        group = true;
    if (group) {
        n->physical = PQ_GROUP;
        /* a group's fields are elements after it, and all groups' fields together are at most
         * the elements but the root (a damaged schema may announce more in nested groups) */
        if (e->num_children < 0 || e->num_children > b->n_el - b->next ||
            b->n_child_used + (size_t)e->num_children > (size_t)b->n_el)
            return FT_ERR_AT(b->err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet schema: group \"%s\" announces %d fields",
                             n->path, e->num_children);
        n->n_children = e->num_children;
        int32_t *kids = f->child_index + b->n_child_used;
        b->n_child_used += (size_t)e->num_children;
        n->children = kids;
        for (int32_t k = 0; k < e->num_children; k++) {
            int32_t c;
            FT_TRY(build_node(b, me, depth + 1, &c));
            kids[k] = c;
            n = &f->nodes[me];
        }
        f->first_leaf[me] = n->n_children ? f->first_leaf[kids[0]] : -1;
    } else {
        if (!e->has_type || e->type < 0 || e->type > 7)
            return FT_ERR_AT(b->err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet schema: column \"%s\" has no valid type", n->path);
        n->physical = (int8_t)e->type;
        n->type_length = e->type_length;
        if (n->physical == PQ_FIXED_LEN_BYTE_ARRAY && (n->type_length <= 0 || n->type_length > (1 << 24)))
            return FT_ERR_AT(b->err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet schema: column \"%s\" has fixed length %d", n->path,
                             n->type_length);
        n->leaf = (int32_t)f->n_leaves;
        f->leaf_nodes[f->n_leaves++] = me;
        f->first_leaf[me] = me;
    }
    *out = me;
    return FT_OK;
}

static ft_status parse_footer(pq_file *f, const uint8_t *data, size_t len, ft_err *err) {
    th t = {data, data + len, 0, false, NULL};
    int16_t last = 0, id;
    int type;
    schema_elem *el = NULL;
    int64_t n_el = 0;
    ft_status s = FT_OK;
    while (s == FT_OK && th_field(&t, &id, &type, &last)) {
        if (id == 2 && type == TT_LIST) {
            int et;
            int64_t n = th_list(&t, &et);
            if (t.bad)
                break;
            if (et != TT_STRUCT || n < 1) {
                th_fail(&t, "the schema is not a list of elements");
                break;
            }
            elems_free(el, n_el);
            el = ft_calloc((size_t)n, sizeof *el);
            if (!el) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            n_el = n;
            for (int64_t i = 0; i < n && !t.bad; i++)
                parse_schema_elem(&t, &el[i]);
        } else if (id == 3 && th_is(&t, type, TT_I64)) {
            f->num_rows = th_zigzag(&t);
        } else if (id == 4 && type == TT_LIST) {
            int et;
            int64_t n = th_list(&t, &et);
            if (t.bad)
                break;
            if (et != TT_STRUCT) {
                th_fail(&t, "row groups are not structs");
                break;
            }
            free_row_groups(f); /* a field given twice: the last one counts */
            f->rgs = ft_calloc((size_t)(n ? n : 1), sizeof *f->rgs);
            if (!f->rgs) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            f->n_rgs = n;
            for (int64_t i = 0; i < n && !t.bad && s == FT_OK; i++)
                s = parse_row_group(&t, &f->rgs[i], err);
        } else if (id == 5 && type == TT_LIST) {
            int et;
            int64_t n = th_list(&t, &et);
            if (t.bad || et != TT_STRUCT) {
                th_fail(&t, "key/value metadata is not a list of structs");
                break;
            }
            free_kv(f);
            f->kv = ft_calloc((size_t)(n ? n : 1), sizeof *f->kv);
            if (!f->kv) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            for (int64_t i = 0; i < n && !t.bad; i++) {
                int16_t l2 = 0, id2;
                int ty2;
                kv_pair *kv = &f->kv[f->n_kv++];
                while (th_field(&t, &id2, &ty2, &l2)) {
                    if ((id2 == 1 || id2 == 2) && ty2 == TT_BINARY) {
                        size_t sn;
                        const uint8_t *sp = th_binary(&t, &sn);
                        if (t.bad)
                            break;
                        char *c = ft_strndup((const char *)sp, sn);
                        if (id2 == 1) {
                            ft_free(kv->key);
                            kv->key = c;
                        } else {
                            ft_free(kv->value);
                            kv->value = c;
                            kv->value_len = sn;
                        }
                    } else {
                        th_skip(&t, ty2, false);
                    }
                }
            }
        } else if (id == 6 && type == TT_BINARY) {
            size_t sn;
            const uint8_t *sp = th_binary(&t, &sn);
            if (!t.bad) {
                ft_free(f->created_by);
                f->created_by = ft_strndup((const char *)sp, sn);
            }
        } else {
            th_skip(&t, type, false);
        }
    }
    if (s == FT_OK && t.bad)
        s = FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet footer (%s); the file is damaged or not parquet", t.why);
    if (s == FT_OK && !el)
        s = FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet footer: no schema");
    if (s == FT_OK) {
        f->nodes = ft_calloc((size_t)n_el, sizeof *f->nodes);
        f->child_index = ft_calloc((size_t)n_el, sizeof *f->child_index);
        f->first_leaf = ft_calloc((size_t)n_el, sizeof *f->first_leaf);
        f->leaf_nodes = ft_calloc((size_t)n_el, sizeof *f->leaf_nodes);
        if (!f->nodes || !f->child_index || !f->first_leaf || !f->leaf_nodes)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (s == FT_OK) {
        builder b = {f, el, n_el, 0, 0, err};
        int32_t root;
        s = build_node(&b, -1, 0, &root);
        if (s == FT_OK && b.next != n_el)
            s = FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet schema: %lld elements beyond the root's fields",
                          (long long)(n_el - b.next));
    }
    elems_free(el, n_el);
    if (s != FT_OK)
        return s;
    f->child_names = ft_calloc(f->n_nodes, sizeof *f->child_names);
    if (!f->child_names)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < f->n_nodes; i++) {
        pq_node *n = &f->nodes[i];
        if (n->n_children == 0)
            continue;
        f->child_names[i] = ft_calloc((size_t)n->n_children, sizeof(char *));
        if (!f->child_names[i])
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (int32_t k = 0; k < n->n_children; k++)
            f->child_names[i][k] = f->nodes[n->children[k]].name;
    }
    int64_t first = 0;
    for (int64_t g = 0; g < f->n_rgs; g++) {
        row_group *rg = &f->rgs[g];
        if (rg->num_rows < 0 || rg->num_rows > INT64_MAX / 2 - first)
            return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet footer: row group %lld has %lld rows", (long long)g,
                             (long long)rg->num_rows);
        if (rg->n_chunks != (int64_t)f->n_leaves)
            return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0,
                             "bad parquet footer: row group %lld has %lld column chunks for %zu columns", (long long)g,
                             (long long)rg->n_chunks, f->n_leaves);
        rg->first_row = first;
        first += rg->num_rows;
    }
    return FT_OK;
}

static ft_status read_at(const pq_file *f, int64_t off, size_t len, uint8_t *dst, ft_err *err) {
    if (off < 0 || (uint64_t)off > (uint64_t)f->size || len > (uint64_t)(f->size - off))
        return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet file: a range [%lld, +%zu) past its end (%lld bytes)",
                         (long long)off, len, (long long)f->size);
    if (f->mem) {
        memcpy(dst, f->mem + off, len);
        return FT_OK;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(f->fd, dst + got, len - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return FT_ERR_AT(err, FT_ERR_IO, f->name, 0, 0, "read failed: %s",
                             r < 0 ? strerror(errno) : "unexpected end of file (did it change?)");
        got += (size_t)r;
    }
    return FT_OK;
}

static ft_status open_common(pq_file *f, ft_err *err) {
    if (f->size < 12)
        return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "not a parquet file: %lld bytes, too short", (long long)f->size);
    uint8_t head[4], tail[8];
    FT_TRY(read_at(f, 0, 4, head, err));
    FT_TRY(read_at(f, f->size - 8, 8, tail, err));
    if (memcmp(tail + 4, "PARE", 4) == 0)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, f->name, 0, 0, "encrypted parquet files are not supported");
    if (memcmp(head, "PAR1", 4) == 0 && memcmp(tail + 4, "PAR1", 4) != 0)
        return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0,
                         "truncated parquet file: it starts as one (PAR1) but its last bytes are not a footer "
                         "(%lld bytes: cut short while copying or writing?); copy or write it again",
                         (long long)f->size);
    if (memcmp(head, "PAR1", 4) != 0 || memcmp(tail + 4, "PAR1", 4) != 0)
        return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "not a parquet file (no PAR1 magic at its start and end)");
    int64_t flen = (int64_t)((uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24);
    if (flen <= 0 || flen > f->size - 12 || flen > MAX_FOOTER)
        return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "bad parquet file: footer length %lld in a file of %lld bytes",
                         (long long)flen, (long long)f->size);
    uint8_t *foot = ft_malloc((size_t)flen);
    if (!foot)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s = read_at(f, f->size - 8 - flen, (size_t)flen, foot, err);
    if (s == FT_OK)
        s = parse_footer(f, foot, (size_t)flen, err);
    ft_free(foot);
    return s;
}

static pq_file *file_new(const char *name) {
    pq_file *f = ft_calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->fd = -1;
    f->name = ft_strdup(name ? name : "");
    if (!f->name) {
        ft_free(f);
        return NULL;
    }
    return f;
}

ft_status pq_open(const char *path, const char *name, pq_file **out, ft_err *err) {
    *out = NULL;
    if (!name)
        name = path;
    pq_file *f = file_new(name);
    if (!f)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f->fd < 0 || fstat(f->fd, &st) != 0) {
        ft_status s = FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, name, 0, 0, "cannot open: %s",
                                strerror(errno));
        pq_close(f);
        return s;
    }
    f->size = (int64_t)st.st_size;
    ft_status s = open_common(f, err);
    if (s != FT_OK) {
        pq_close(f);
        return s;
    }
    *out = f;
    return FT_OK;
}

ft_status pq_open_footer_bytes(const uint8_t *data, size_t len, const char *name, pq_file **out, ft_err *err) {
    *out = NULL;
    pq_file *f = file_new(name);
    if (!f)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s = parse_footer(f, data, len, err);
    if (s != FT_OK) {
        pq_close(f);
        return s;
    }
    *out = f;
    return FT_OK;
}

const char *pq_name(const pq_file *f) { return f->name; }
const pq_node *pq_node_at(const pq_file *f, int32_t i) {
    return i >= 0 && (size_t)i < f->n_nodes ? &f->nodes[i] : NULL;
}
size_t pq_num_nodes(const pq_file *f) { return f->n_nodes; }
int64_t pq_num_rows(const pq_file *f) {
    return f->n_rgs ? f->rgs[f->n_rgs - 1].first_row + f->rgs[f->n_rgs - 1].num_rows : 0;
}
int64_t pq_num_row_groups(const pq_file *f) { return f->n_rgs; }
int64_t pq_row_group_rows(const pq_file *f, int64_t rg) { return rg >= 0 && rg < f->n_rgs ? f->rgs[rg].num_rows : 0; }
int64_t pq_row_group_first_row(const pq_file *f, int64_t rg) {
    return rg >= 0 && rg < f->n_rgs ? f->rgs[rg].first_row : 0;
}
const char *pq_created_by(const pq_file *f) { return f->created_by ? f->created_by : ""; }
const char *pq_metadata(const pq_file *f, const char *key, size_t *len) {
    for (size_t i = 0; i < f->n_kv; i++)
        if (f->kv[i].key && !strcmp(f->kv[i].key, key)) {
            if (len)
                *len = f->kv[i].value_len;
            return f->kv[i].value ? f->kv[i].value : "";
        }
    return NULL;
}
int32_t pq_find_column(const pq_file *f, const char *name) {
    const pq_node *root = &f->nodes[0];
    for (int32_t k = 0; k < root->n_children; k++)
        if (!strcmp(f->nodes[root->children[k]].name, name))
            return root->children[k];
    return -1;
}
int32_t pq_find_field_id(const pq_file *f, int32_t parent, int32_t field_id) {
    if (parent < 0 || (size_t)parent >= f->n_nodes)
        return -1;
    const pq_node *p = &f->nodes[parent];
    for (int32_t k = 0; k < p->n_children; k++) {
        const pq_node *c = &f->nodes[p->children[k]];
        if (c->has_field_id && c->field_id == field_id)
            return p->children[k];
    }
    return -1;
}

ft_status pq_rename_node(pq_file *f, int32_t index, const char *name, ft_err *err) {
    if (index <= 0 || (size_t)index >= f->n_nodes)
        return FT_ERR(err, FT_ERR_INVALID, "pq_rename_node: no node %d", (int)index);
    pq_node *n = &f->nodes[index];
    char *copy = ft_strdup(name);
    if (!copy)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    const pq_node *p = &f->nodes[n->parent];
    for (int32_t k = 0; k < p->n_children; k++)
        if (p->children[k] == index && f->child_names && f->child_names[n->parent])
            f->child_names[n->parent][k] = copy;
    ft_free((char *)n->name);
    n->name = copy;
    return FT_OK;
}

int32_t pq_find_path(const pq_file *f, const char *path) {
    for (size_t i = 1; i < f->n_nodes; i++)
        if (!strcmp(f->nodes[i].path, path))
            return (int32_t)i;
    return -1;
}

/* ---------------------------------------------------------------- per-read buffers
 * A pq_rows owns every buffer of one row group: compressed chunks, decompressed pages,
 * values, and the assembled data_value trees. Reading the next row group recycles them. */

typedef struct slot { /* one non-null leaf value as stored */
    union {
        int32_t i32;
        int64_t i64;
        float f32;
        double f64;
        uint8_t b;
        uint8_t i96[12];
        struct {
            const uint8_t *p;
            uint32_t n;
        } s;
    };
} slot;

typedef struct blocks { /* owned allocations, freed together */
    void **p;
    size_t n, cap;
} blocks;

typedef struct leaf_data {
    int32_t node;
    int16_t *def, *rep; /* NULL when the column has no such levels */
    int64_t n_levels, cap_levels;
    slot *vals;
    int64_t n_vals, cap_vals;
    slot *dict;
    int64_t n_dict;
    int64_t pos, vpos; /* assembly cursors */
} leaf_data;

typedef struct rows_impl {
    blocks owned;     /* chunk buffers, pages, dictionary strings, values */
    leaf_data *leaves;
    size_t n_leaves, cap_leaves;
    data_value *stack; /* list elements under construction */
    size_t n_stack, cap_stack;
    char *arena;       /* data_value trees: bump allocated in blocks */
    size_t arena_used, arena_cap;
    blocks arena_old;
    int32_t *columns;
} rows_impl;

static void *own(blocks *b, size_t n) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        void **p = ft_realloc(b->p, cap * sizeof *p);
        if (!p)
            return NULL;
        b->p = p;
        b->cap = cap;
    }
    void *m = ft_malloc(n ? n : 1);
    if (m)
        b->p[b->n++] = m;
    return m;
}

static void blocks_clear(blocks *b) {
    for (size_t i = 0; i < b->n; i++)
        ft_free(b->p[i]);
    b->n = 0;
}

static void *arena_alloc(rows_impl *im, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (im->arena_used + n > im->arena_cap) {
        if (im->arena) {
            if (im->arena_old.n == im->arena_old.cap) {
                size_t cap = im->arena_old.cap ? im->arena_old.cap * 2 : 16;
                void **p = ft_realloc(im->arena_old.p, cap * sizeof *p);
                if (!p)
                    return NULL;
                im->arena_old.p = p;
                im->arena_old.cap = cap;
            }
            im->arena_old.p[im->arena_old.n++] = im->arena;
        }
        size_t cap = im->arena_cap ? im->arena_cap * 2 : (size_t)1 << 16;
        while (cap < n)
            cap *= 2;
        im->arena = ft_malloc(cap);
        im->arena_cap = im->arena ? cap : 0;
        im->arena_used = 0;
        if (!im->arena)
            return NULL;
    }
    void *p = im->arena + im->arena_used;
    im->arena_used += n;
    return p;
}

void pq_rows_free(pq_rows *rows) {
    rows_impl *im = rows->impl_;
    if (im) {
        blocks_clear(&im->owned);
        ft_free(im->owned.p);
        blocks_clear(&im->arena_old);
        ft_free(im->arena_old.p);
        ft_free(im->arena);
        for (size_t i = 0; i < im->cap_leaves; i++) {
            ft_free(im->leaves[i].def);
            ft_free(im->leaves[i].rep);
            ft_free(im->leaves[i].vals);
        }
        ft_free(im->leaves);
        ft_free(im->stack);
        ft_free(im->columns);
        ft_free(im);
    }
    memset(rows, 0, sizeof *rows);
}

/* ---------------------------------------------------------------- error context */

typedef struct ctx {
    const pq_file *f;
    int64_t rg, page, page_off;
    const pq_node *col;
    ft_err *err;
} ctx;

static ft_status bad(const ctx *c, ft_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ft_status bad(const ctx *c, ft_status code, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->page >= 0)
        return FT_ERR_AT(c->err, code, c->f->name, 0, 0, "row group %lld, column \"%s\", page %lld (byte %lld): %s",
                         (long long)c->rg, c->col ? c->col->path : "?", (long long)c->page, (long long)c->page_off, msg);
    return FT_ERR_AT(c->err, code, c->f->name, 0, 0, "row group %lld, column \"%s\": %s", (long long)c->rg,
                     c->col ? c->col->path : "?", msg);
}

/* ---------------------------------------------------------------- codecs */

static const char *codec_name(int32_t c) {
    static const char *names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"};
    return c >= 0 && c < 8 ? names[c] : "unknown";
}

/* Decompress src into a new owned buffer of exactly `want` bytes. */
static ft_status decompress(const ctx *c, rows_impl *im, int32_t codec, const uint8_t *src, size_t n, int64_t want,
                            const uint8_t **out) {
    if (want < 0 || want > MAX_PAGE_BYTES)
        return bad(c, FT_ERR_PARSE, "uncompressed page size %lld out of range", (long long)want);
    if (codec == 0) {
        if ((int64_t)n != want)
            return bad(c, FT_ERR_PARSE, "an uncompressed page of %zu bytes says it has %lld", n, (long long)want);
        *out = src;
        return FT_OK;
    }
    if (codec == 1) { /* check the claimed size before allocating it */
        size_t len;
        if (snappy_uncompressed_length((const char *)src, n, &len) != SNAPPY_OK || (int64_t)len != want)
            return bad(c, FT_ERR_PARSE, "bad SNAPPY page (its length header does not match %lld bytes)", (long long)want);
    } else if (codec == 6) {
        unsigned long long len = ZSTD_getFrameContentSize(src, n);
        if (len != ZSTD_CONTENTSIZE_UNKNOWN && len != ZSTD_CONTENTSIZE_ERROR && len > (unsigned long long)want)
            return bad(c, FT_ERR_PARSE, "bad ZSTD page (its frame says %llu bytes, the page %lld)", len, (long long)want);
    } else if (codec != 2 && codec != 4 && codec != 7) {
        return bad(c, FT_ERR_UNSUPPORTED,
                   "compression codec %s (%d) is not supported (ftune reads UNCOMPRESSED, SNAPPY, GZIP, ZSTD, LZ4_RAW "
                   "and BROTLI; %s): rewrite the file with one of those, e.g. ZSTD",
                   codec_name(codec), (int)codec,
                   codec == 5 ? "LZ4 is the deprecated Hadoop-framed codec" : codec == 3 ? "LZO is deprecated" : "unknown codec");
    }
    uint8_t *dst = own(&im->owned, (size_t)want);
    if (!dst)
        return bad(c, FT_ERR_NOMEM, "out of memory for a %lld-byte page", (long long)want);
    size_t got = 0;
    switch (codec) {
    case 1: {
        size_t len = (size_t)want;
        if (snappy_uncompress((const char *)src, n, (char *)dst, &len) != SNAPPY_OK)
            return bad(c, FT_ERR_PARSE, "bad SNAPPY data");
        got = len;
        break;
    }
    case 2: { /* gzip, possibly several members one after another */
        z_stream z;
        memset(&z, 0, sizeof z);
        if (inflateInit2(&z, 15 + 32) != Z_OK)
            return bad(c, FT_ERR_NOMEM, "zlib init failed");
        z.next_in = (Bytef *)src;
        z.avail_in = (uInt)n;
        z.next_out = dst;
        z.avail_out = (uInt)want;
        int r = Z_OK;
        for (;;) {
            r = inflate(&z, Z_NO_FLUSH);
            if (r == Z_STREAM_END) {
                /* skip zero padding, then another member? */
                while (z.avail_in > 0 && *z.next_in == 0)
                    z.next_in++, z.avail_in--;
                if (z.avail_in == 0)
                    break;
                if (inflateReset(&z) != Z_OK)
                    break;
                continue;
            }
            if (r != Z_OK || (z.avail_out == 0 && z.avail_in > 0) || z.avail_in == 0)
                break;
        }
        got = (size_t)want - z.avail_out;
        inflateEnd(&z);
        if (r != Z_STREAM_END && !(r == Z_OK && z.avail_in == 0 && got == (size_t)want))
            return bad(c, FT_ERR_PARSE, "bad GZIP data (zlib: %s)", z.msg ? z.msg : r == Z_BUF_ERROR ? "truncated" : "error");
        break;
    }
    case 4: {
        size_t avail_in = n, avail_out = (size_t)want;
        const uint8_t *in = src;
        uint8_t *o = dst;
        BrotliDecoderState *st = BrotliDecoderCreateInstance(NULL, NULL, NULL);
        if (!st)
            return bad(c, FT_ERR_NOMEM, "brotli init failed");
        BrotliDecoderResult r = BrotliDecoderDecompressStream(st, &avail_in, &in, &avail_out, &o, NULL);
        BrotliDecoderDestroyInstance(st);
        if (r != BROTLI_DECODER_RESULT_SUCCESS)
            return bad(c, FT_ERR_PARSE, "bad BROTLI data%s",
                       r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT ? " (larger than the page says)" : "");
        got = (size_t)want - avail_out;
        break;
    }
    case 6: {
        size_t r = ZSTD_decompress(dst, (size_t)want, src, n);
        if (ZSTD_isError(r))
            return bad(c, FT_ERR_PARSE, "bad ZSTD data (%s)", ZSTD_getErrorName(r));
        got = r;
        break;
    }
    case 7: {
        if (n > INT32_MAX || want > INT32_MAX)
            return bad(c, FT_ERR_LIMIT, "LZ4_RAW page too large");
        int r = LZ4_decompress_safe((const char *)src, (char *)dst, (int)n, (int)want);
        if (r < 0)
            return bad(c, FT_ERR_PARSE, "bad LZ4_RAW data");
        got = (size_t)r;
        break;
    }
    }
    if ((int64_t)got != want)
        return bad(c, FT_ERR_PARSE, "page decompressed to %zu bytes, its header says %lld", got, (long long)want);
    *out = dst;
    return FT_OK;
}

/* ---------------------------------------------------------------- encodings */

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* `bw` bits (<= 64) at bit position `bit` of p, LSB first; the caller made sure they exist. */
static uint64_t get_bits(const uint8_t *p, uint64_t bit, int bw) {
    if (bw == 0)
        return 0;
    uint64_t v = 0;
    int got = 0;
    const uint8_t *q = p + (bit >> 3);
    int off = (int)(bit & 7);
    while (got < bw) {
        uint64_t byte = (uint64_t)(*q++ >> off);
        int take = 8 - off;
        v |= byte << got;
        got += take;
        off = 0;
    }
    return bw == 64 ? v : v & (((uint64_t)1 << bw) - 1);
}

typedef struct cur {
    const uint8_t *p, *end;
} cur;

static bool varint(cur *c, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end)
            return false;
        uint8_t b = *c->p++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

/* RLE/bit-packed hybrid: `count` values of width bw (<= 32) into out. False if the data ends
 * first or a value is malformed. */
static bool rle_decode(const uint8_t *p, size_t len, int bw, int64_t count, uint32_t *out) {
    cur c = {p, p + len};
    int64_t i = 0;
    size_t vbytes = (size_t)(bw + 7) / 8;
    while (i < count) {
        uint64_t h;
        if (!varint(&c, &h))
            return false;
        if (h & 1) { /* bit-packed: (h >> 1) groups of 8 values */
            uint64_t groups = h >> 1;
            if (bw > 0 && groups > (uint64_t)(c.end - c.p) + 1)
                return false; /* (width 0 takes no bytes: the count bounds the loop below) */
            uint64_t nbytes = groups * (uint64_t)bw;
            if (nbytes > (uint64_t)(c.end - c.p)) {
                /* a writer may cut the last group's padding: decode what is there */
                nbytes = (uint64_t)(c.end - c.p);
            }
            uint64_t nvals = groups * 8;
            uint64_t avail = bw ? nbytes * 8 / (uint64_t)bw : nvals;
            if (avail < nvals)
                nvals = avail;
            for (uint64_t k = 0; k < nvals && i < count; k++)
                out[i++] = (uint32_t)get_bits(c.p, k * (uint64_t)bw, bw);
            c.p += nbytes;
            if (avail < groups * 8 && i < count)
                return false;
        } else {
            uint64_t run = h >> 1;
            if ((size_t)(c.end - c.p) < vbytes)
                return false;
            uint32_t v = 0;
            for (size_t k = 0; k < vbytes; k++)
                v |= (uint32_t)c.p[k] << (8 * k);
            c.p += vbytes;
            if (bw < 32 && v >> bw)
                return false;
            for (uint64_t k = 0; k < run && i < count; k++)
                out[i++] = v;
        }
    }
    return true;
}

static int bit_width(int64_t max) {
    int w = 0;
    while (max > 0) {
        w++;
        max >>= 1;
    }
    return w;
}

/* DELTA_BINARY_PACKED: exactly `count` values into v64 (wrapping arithmetic as the spec says);
 * c advances past the stream. */
static bool delta_binary(cur *c, int64_t count, bool is32, int64_t *v64) {
    uint64_t block, mbs, total, zz;
    if (!varint(c, &block) || !varint(c, &mbs) || !varint(c, &total) || !varint(c, &zz))
        return false;
    if (block == 0 || block % 128 || mbs == 0 || block % mbs || (block / mbs) % 32 || block > (1u << 20))
        return false;
    if ((int64_t)total != count)
        return false;
    uint64_t per_mb = block / mbs;
    uint64_t last = (zz >> 1) ^ -(zz & 1);
    int64_t i = 0;
    if (count > 0)
        v64[i++] = is32 ? (int64_t)(int32_t)(uint32_t)last : (int64_t)last;
    while (i < count) {
        uint64_t mzz;
        if (!varint(c, &mzz))
            return false;
        uint64_t min_delta = (mzz >> 1) ^ -(mzz & 1);
        if ((uint64_t)(c->end - c->p) < mbs)
            return false;
        const uint8_t *widths = c->p;
        c->p += mbs;
        for (uint64_t m = 0; m < mbs && i < count; m++) {
            int bw = widths[m];
            if (bw > 64)
                return false;
            uint64_t nbytes = per_mb * (uint64_t)bw / 8;
            if (nbytes > (uint64_t)(c->end - c->p))
                return false;
            for (uint64_t k = 0; k < per_mb && i < count; k++) {
                uint64_t d = get_bits(c->p, k * (uint64_t)bw, bw);
                last = last + min_delta + d;
                v64[i++] = is32 ? (int64_t)(int32_t)(uint32_t)last : (int64_t)last;
            }
            c->p += nbytes;
        }
    }
    return true;
}

static bool fixed_width(int physical, int32_t type_length, size_t *w) {
    switch (physical) {
    case PQ_INT32:
    case PQ_FLOAT: *w = 4; return true;
    case PQ_INT64:
    case PQ_DOUBLE: *w = 8; return true;
    case PQ_INT96: *w = 12; return true;
    case PQ_FIXED_LEN_BYTE_ARRAY: *w = (size_t)type_length; return true;
    default: return false;
    }
}

/* PLAIN: n values of the column's type from [p, p+len). */
static ft_status plain(const ctx *c, const pq_node *nd, const uint8_t *p, size_t len, int64_t n, slot *out) {
    if (nd->physical == PQ_BOOLEAN) {
        if ((uint64_t)n > (uint64_t)len * 8)
            return bad(c, FT_ERR_PARSE, "%lld PLAIN booleans in %zu bytes", (long long)n, len);
        for (int64_t i = 0; i < n; i++)
            out[i].b = (p[i >> 3] >> (i & 7)) & 1;
        return FT_OK;
    }
    if (nd->physical == PQ_BYTE_ARRAY) {
        size_t off = 0;
        for (int64_t i = 0; i < n; i++) {
            if (len - off < 4)
                return bad(c, FT_ERR_PARSE, "PLAIN byte array %lld of %lld runs past the page", (long long)i, (long long)n);
            uint32_t l = le32(p + off);
            off += 4;
            if (l > len - off)
                return bad(c, FT_ERR_PARSE, "PLAIN byte array %lld of %lld (%u bytes) runs past the page", (long long)i,
                           (long long)n, l);
            out[i].s.p = p + off;
            out[i].s.n = l;
            off += l;
        }
        return FT_OK;
    }
    size_t w;
    if (!fixed_width(nd->physical, nd->type_length, &w))
        return bad(c, FT_ERR_PARSE, "bad physical type");
    if ((uint64_t)n > len / w)
        return bad(c, FT_ERR_PARSE, "%lld PLAIN values of %zu bytes in %zu bytes", (long long)n, w, len);
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *q = p + (size_t)i * w;
        switch (nd->physical) {
        case PQ_INT32:
        case PQ_FLOAT: memcpy(&out[i].i32, q, 4); break;
        case PQ_INT64:
        case PQ_DOUBLE: memcpy(&out[i].i64, q, 8); break;
        case PQ_INT96: memcpy(out[i].i96, q, 12); break;
        default:
            out[i].s.p = q;
            out[i].s.n = (uint32_t)w;
        }
    }
    return FT_OK;
}

/* The values of one page (n non-null) in `enc` into out. */
static ft_status decode_values(const ctx *c, rows_impl *im, leaf_data *ld, const pq_node *nd, int32_t enc,
                               const uint8_t *p, size_t len, int64_t n, slot *out) {
    switch (enc) {
    case 0: return plain(c, nd, p, len, n, out);
    case 2:
    case 8: { /* PLAIN_DICTIONARY, RLE_DICTIONARY */
        if (!ld->dict)
            return bad(c, FT_ERR_PARSE, "dictionary-encoded page without a dictionary page before it");
        if (n == 0)
            return FT_OK;
        if (len < 1 || p[0] > 32)
            return bad(c, FT_ERR_PARSE, "bad dictionary index bit width");
        uint32_t *idx = ft_malloc((size_t)n * sizeof *idx);
        if (!idx)
            return bad(c, FT_ERR_NOMEM, "out of memory");
        bool ok = rle_decode(p + 1, len - 1, p[0], n, idx);
        ft_status s = FT_OK;
        for (int64_t i = 0; ok && i < n; i++) {
            if (idx[i] >= (uint64_t)ld->n_dict) {
                s = bad(c, FT_ERR_PARSE, "dictionary index %u out of range (the dictionary has %lld values)", idx[i],
                        (long long)ld->n_dict);
                break;
            }
            out[i] = ld->dict[idx[i]];
        }
        ft_free(idx);
        if (!ok)
            return bad(c, FT_ERR_PARSE, "dictionary indices end before %lld values", (long long)n);
        return s;
    }
    case 3: { /* RLE: booleans (4-byte length, then the hybrid at width 1) */
        if (nd->physical != PQ_BOOLEAN)
            return bad(c, FT_ERR_UNSUPPORTED, "RLE encoding for a non-boolean column");
        if (len < 4 || le32(p) > len - 4)
            return bad(c, FT_ERR_PARSE, "bad RLE boolean length");
        uint32_t *v = ft_malloc((size_t)(n ? n : 1) * sizeof *v);
        if (!v)
            return bad(c, FT_ERR_NOMEM, "out of memory");
        bool ok = rle_decode(p + 4, le32(p), 1, n, v);
        for (int64_t i = 0; ok && i < n; i++)
            out[i].b = (uint8_t)v[i];
        ft_free(v);
        return ok ? FT_OK : bad(c, FT_ERR_PARSE, "RLE booleans end before %lld values", (long long)n);
    }
    case 5: { /* DELTA_BINARY_PACKED */
        if (nd->physical != PQ_INT32 && nd->physical != PQ_INT64)
            return bad(c, FT_ERR_PARSE, "DELTA_BINARY_PACKED for a column that is not INT32/INT64");
        int64_t *v = ft_malloc((size_t)(n ? n : 1) * sizeof *v);
        if (!v)
            return bad(c, FT_ERR_NOMEM, "out of memory");
        cur cc = {p, p + len};
        bool ok = delta_binary(&cc, n, nd->physical == PQ_INT32, v);
        for (int64_t i = 0; ok && i < n; i++) {
            if (nd->physical == PQ_INT32)
                out[i].i32 = (int32_t)v[i];
            else
                out[i].i64 = v[i];
        }
        ft_free(v);
        return ok ? FT_OK : bad(c, FT_ERR_PARSE, "bad DELTA_BINARY_PACKED data");
    }
    case 6:
    case 7: { /* DELTA_LENGTH_BYTE_ARRAY, DELTA_BYTE_ARRAY */
        if (nd->physical != PQ_BYTE_ARRAY && !(enc == 7 && nd->physical == PQ_FIXED_LEN_BYTE_ARRAY))
            return bad(c, FT_ERR_PARSE, "%s for a column that is not a byte array",
                       enc == 6 ? "DELTA_LENGTH_BYTE_ARRAY" : "DELTA_BYTE_ARRAY");
        int64_t *pre = NULL, *lens = ft_malloc((size_t)(n ? n : 1) * sizeof *lens);
        if (enc == 7)
            pre = ft_malloc((size_t)(n ? n : 1) * sizeof *pre);
        ft_status s = FT_OK;
        cur cc = {p, p + len};
        if (!lens || (enc == 7 && !pre))
            s = bad(c, FT_ERR_NOMEM, "out of memory");
        else if (enc == 7 && !delta_binary(&cc, n, false, pre))
            s = bad(c, FT_ERR_PARSE, "bad DELTA_BYTE_ARRAY prefix lengths");
        else if (!delta_binary(&cc, n, false, lens))
            s = bad(c, FT_ERR_PARSE, "bad %s lengths", enc == 6 ? "DELTA_LENGTH_BYTE_ARRAY" : "DELTA_BYTE_ARRAY suffix");
        uint64_t total = 0;
        for (int64_t i = 0; s == FT_OK && i < n; i++) {
            if (lens[i] < 0 || (uint64_t)lens[i] > (uint64_t)(cc.end - cc.p))
                s = bad(c, FT_ERR_PARSE, "byte array length %lld out of range", (long long)lens[i]);
            else
                total += (uint64_t)lens[i];
        }
        if (s == FT_OK && total > (uint64_t)(cc.end - cc.p))
            s = bad(c, FT_ERR_PARSE, "byte arrays (%llu bytes) run past the page", (unsigned long long)total);
        if (s == FT_OK && enc == 6) {
            for (int64_t i = 0; i < n; i++) {
                out[i].s.p = cc.p;
                out[i].s.n = (uint32_t)lens[i];
                cc.p += lens[i];
            }
        } else if (s == FT_OK) {
            /* each value is the previous value's first pre[i] bytes + the suffix */
            uint64_t need = 0;
            const uint8_t *prev = NULL;
            uint64_t prev_n = 0;
            for (int64_t i = 0; s == FT_OK && i < n; i++) {
                if (pre[i] < 0 || (uint64_t)pre[i] > prev_n)
                    s = bad(c, FT_ERR_PARSE, "DELTA_BYTE_ARRAY prefix %lld longer than the previous value (%llu)",
                            (long long)pre[i], (unsigned long long)prev_n);
                prev_n = (uint64_t)pre[i] + (uint64_t)lens[i];
                need += prev_n;
                if (need > (uint64_t)MAX_PAGE_BYTES)
                    s = bad(c, FT_ERR_LIMIT, "DELTA_BYTE_ARRAY values exceed %lld bytes", (long long)MAX_PAGE_BYTES);
            }
            uint8_t *buf = s == FT_OK ? own(&im->owned, (size_t)need) : NULL;
            if (s == FT_OK && !buf)
                s = bad(c, FT_ERR_NOMEM, "out of memory");
            uint8_t *w = buf;
            prev_n = 0;
            for (int64_t i = 0; s == FT_OK && i < n; i++) {
                if (pre[i])
                    memcpy(w, prev, (size_t)pre[i]);
                memcpy(w + pre[i], cc.p, (size_t)lens[i]);
                cc.p += lens[i];
                prev = w;
                prev_n = (uint64_t)(pre[i] + lens[i]);
                if (nd->physical == PQ_FIXED_LEN_BYTE_ARRAY && prev_n != (uint64_t)nd->type_length)
                    s = bad(c, FT_ERR_PARSE, "a fixed-length value of %llu bytes, not %d", (unsigned long long)prev_n,
                            nd->type_length);
                out[i].s.p = w;
                out[i].s.n = (uint32_t)prev_n;
                w += prev_n;
            }
        }
        ft_free(pre);
        ft_free(lens);
        return s;
    }
    case 9: { /* BYTE_STREAM_SPLIT */
        size_t w;
        if (!fixed_width(nd->physical, nd->type_length, &w) || nd->physical == PQ_INT96)
            return bad(c, FT_ERR_PARSE, "BYTE_STREAM_SPLIT for a column of variable width");
        if ((uint64_t)n > len / w)
            return bad(c, FT_ERR_PARSE, "BYTE_STREAM_SPLIT page too short for %lld values", (long long)n);
        uint8_t *buf = NULL;
        if (nd->physical == PQ_FIXED_LEN_BYTE_ARRAY && !(buf = own(&im->owned, (size_t)n * w)))
            return bad(c, FT_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; i < n; i++) {
            uint8_t tmp[16];
            uint8_t *dst = buf ? buf + (size_t)i * w : tmp;
            for (size_t k = 0; k < w; k++)
                dst[k] = p[k * (size_t)n + (size_t)i];
            if (buf) {
                out[i].s.p = dst;
                out[i].s.n = (uint32_t)w;
            } else {
                memcpy(&out[i], tmp, w);
            }
        }
        return FT_OK;
    }
    default: return bad(c, FT_ERR_UNSUPPORTED, "value encoding %d is not supported", (int)enc);
    }
}

/* ---------------------------------------------------------------- pages */

typedef struct page_hdr {
    int32_t type, usize, csize;
    bool v1, v2, dict;
    int32_t num_values, encoding, def_enc, rep_enc;   /* v1 (and v2's count and encoding) */
    int32_t num_nulls, num_rows, def_len, rep_len;    /* v2 */
    bool is_compressed;                               /* v2 (default true) */
    int32_t dict_num, dict_enc;
} page_hdr;

static void parse_page_header(th *t, page_hdr *h) {
    memset(h, 0, sizeof *h);
    h->type = -1;
    h->is_compressed = true;
    int16_t last = 0, id;
    int type;
    while (th_field(t, &id, &type, &last)) {
        if (id == 1 && th_is(t, type, TT_I32))
            h->type = th_i32(t);
        else if (id == 2 && th_is(t, type, TT_I32))
            h->usize = th_i32(t);
        else if (id == 3 && th_is(t, type, TT_I32))
            h->csize = th_i32(t);
        else if ((id == 5 || id == 7 || id == 8) && type == TT_STRUCT) {
            int16_t l2 = 0, id2;
            int ty2;
            if (id == 5)
                h->v1 = true;
            else if (id == 7)
                h->dict = true;
            else
                h->v2 = true;
            while (th_field(t, &id2, &ty2, &l2)) {
                bool is_int = ty2 == TT_I32 || ty2 == TT_I16 || ty2 == TT_BYTE;
                int32_t v = 0;
                if (is_int)
                    v = (int32_t)th_int(t, ty2);
                else if (id == 8 && id2 == 7 && (ty2 == TT_TRUE || ty2 == TT_FALSE)) {
                    h->is_compressed = ty2 == TT_TRUE;
                    continue;
                } else {
                    th_skip(t, ty2, false);
                    continue;
                }
                if (id == 5) {
                    if (id2 == 1) h->num_values = v;
                    else if (id2 == 2) h->encoding = v;
                    else if (id2 == 3) h->def_enc = v;
                    else if (id2 == 4) h->rep_enc = v;
                } else if (id == 7) {
                    if (id2 == 1) h->dict_num = v;
                    else if (id2 == 2) h->dict_enc = v;
                } else {
                    if (id2 == 1) h->num_values = v;
                    else if (id2 == 2) h->num_nulls = v;
                    else if (id2 == 3) h->num_rows = v;
                    else if (id2 == 4) h->encoding = v;
                    else if (id2 == 5) h->def_len = v;
                    else if (id2 == 6) h->rep_len = v;
                }
            }
        } else
            th_skip(t, type, false);
    }
}

static ft_status grow_levels(const ctx *c, leaf_data *ld, int64_t more) {
    int64_t need = ld->n_levels + more;
    if (need > MAX_CHUNK_VALUES)
        return bad(c, FT_ERR_LIMIT, "more than %lld values in one column chunk", (long long)MAX_CHUNK_VALUES);
    if (need <= ld->cap_levels)
        return FT_OK;
    int64_t cap = ld->cap_levels ? ld->cap_levels : 1024;
    while (cap < need)
        cap *= 2;
    int16_t *d = ft_realloc(ld->def, (size_t)cap * sizeof *d);
    if (d)
        ld->def = d;
    int16_t *r = d ? ft_realloc(ld->rep, (size_t)cap * sizeof *r) : NULL;
    if (r)
        ld->rep = r;
    slot *v = r ? ft_realloc(ld->vals, (size_t)cap * sizeof *v) : NULL;
    if (v)
        ld->vals = v;
    if (!v)
        return bad(c, FT_ERR_NOMEM, "out of memory");
    ld->cap_levels = ld->cap_vals = cap;
    return FT_OK;
}

/* Levels of width bw for n values into out (int16). RLE: the hybrid; BIT_PACKED: MSB first. */
static bool levels(const uint8_t *p, size_t len, int enc, int bw, int64_t n, int16_t max, int16_t *out) {
    uint32_t *tmp = ft_malloc((size_t)(n ? n : 1) * sizeof *tmp);
    if (!tmp)
        return false;
    bool ok = true;
    if (enc == 4) {
        if ((uint64_t)n * (uint64_t)bw > (uint64_t)len * 8)
            ok = false;
        for (int64_t i = 0; ok && i < n; i++) {
            uint32_t v = 0;
            for (int k = 0; k < bw; k++) {
                uint64_t bit = (uint64_t)i * (uint64_t)bw + (uint64_t)k;
                v = v << 1 | ((p[bit >> 3] >> (7 - (bit & 7))) & 1);
            }
            tmp[i] = v;
        }
    } else {
        ok = rle_decode(p, len, bw, n, tmp);
    }
    for (int64_t i = 0; ok && i < n; i++) {
        if (tmp[i] > (uint32_t)max)
            ok = false;
        out[i] = (int16_t)tmp[i];
    }
    ft_free(tmp);
    return ok;
}

/* v1 levels: a 4-byte length and the hybrid (RLE), or the deprecated BIT_PACKED. Advances *p. */
static ft_status levels_v1(const ctx *c, const uint8_t **p, const uint8_t *end, int enc, int16_t max, int64_t n,
                           int16_t *out, const char *what) {
    int bw = bit_width(max);
    size_t len = (size_t)(end - *p);
    if (enc == 4) {
        uint64_t nb = ((uint64_t)n * (uint64_t)bw + 7) / 8;
        if (nb > len || !levels(*p, len, 4, bw, n, max, out))
            return bad(c, FT_ERR_PARSE, "bad BIT_PACKED %s levels", what);
        *p += nb;
        return FT_OK;
    }
    if (len < 4 || le32(*p) > len - 4)
        return bad(c, FT_ERR_PARSE, "bad %s level length", what);
    uint32_t l = le32(*p);
    if (!levels(*p + 4, l, 3, bw, n, max, out))
        return bad(c, FT_ERR_PARSE, "bad %s levels (fewer than %lld, or above the maximum %d)", what, (long long)n, max);
    *p += 4 + l;
    return FT_OK;
}

/* All pages of one column chunk into ld. */
static ft_status read_chunk(ctx *c, rows_impl *im, const chunk_meta *cm, const pq_node *nd, leaf_data *ld) {
    const pq_file *f = c->f;
    if (!cm->has_meta)
        return bad(c, FT_ERR_PARSE, "the column chunk has no metadata");
    if (cm->encrypted)
        return bad(c, FT_ERR_UNSUPPORTED, "encrypted columns are not supported");
    if (cm->external)
        return bad(c, FT_ERR_UNSUPPORTED, "the column chunk is in another file (file_path): not supported");
    if (cm->physical != nd->physical)
        return bad(c, FT_ERR_PARSE, "the column chunk's type %d differs from the schema's %d", (int)cm->physical,
                   (int)nd->physical);
    if (cm->num_values < 0 || cm->num_values > MAX_CHUNK_VALUES)
        return bad(c, FT_ERR_PARSE, "%lld values in a column chunk", (long long)cm->num_values);
    int64_t start = cm->data_page_offset;
    if (cm->dict_page_offset > 0 && cm->dict_page_offset < start)
        start = cm->dict_page_offset;
    int64_t len = cm->total_compressed;
    if (start < 4 || len < 0 || start > f->size || len > f->size - start)
        return bad(c, FT_ERR_PARSE, "the column chunk [%lld, +%lld) is not inside the file (%lld bytes)", (long long)start,
                   (long long)len, (long long)f->size);
    uint8_t *buf = own(&im->owned, (size_t)len);
    if (!buf)
        return bad(c, FT_ERR_NOMEM, "out of memory for a %lld-byte column chunk", (long long)len);
    FT_TRY(read_at(f, start, (size_t)len, buf, c->err));
    int bwd = bit_width(nd->max_def), bwr = bit_width(nd->max_rep);
    (void)bwd;
    (void)bwr;
    int64_t pos = 0, seen = 0;
    c->page = 0;
    while (seen < cm->num_values) {
        c->page_off = start + pos;
        if (pos >= len)
            return bad(c, FT_ERR_PARSE, "the column chunk ends after %lld of its %lld values", (long long)seen,
                       (long long)cm->num_values);
        th t = {buf + pos, buf + len, 0, false, NULL};
        page_hdr h;
        parse_page_header(&t, &h);
        if (t.bad)
            return bad(c, FT_ERR_PARSE, "bad page header (%s)", t.why);
        pos = t.p - buf;
        if (h.csize < 0 || h.csize > len - pos)
            return bad(c, FT_ERR_PARSE, "page of %d bytes runs past the column chunk", h.csize);
        const uint8_t *page = buf + pos;
        pos += h.csize;
        if (h.type == 2) { /* DICTIONARY_PAGE */
            if (!h.dict)
                return bad(c, FT_ERR_PARSE, "dictionary page without its header");
            if (ld->dict)
                return bad(c, FT_ERR_PARSE, "a second dictionary page in one column chunk");
            if (h.dict_enc != 0 && h.dict_enc != 2)
                return bad(c, FT_ERR_UNSUPPORTED, "dictionary page encoding %d", (int)h.dict_enc);
            if (h.dict_num < 0 || h.dict_num > MAX_PAGE_VALUES)
                return bad(c, FT_ERR_PARSE, "dictionary of %d values", (int)h.dict_num);
            const uint8_t *d;
            FT_TRY(decompress(c, im, cm->codec, page, (size_t)h.csize, h.usize, &d));
            ld->dict = own(&im->owned, (size_t)(h.dict_num ? h.dict_num : 1) * sizeof(slot));
            if (!ld->dict)
                return bad(c, FT_ERR_NOMEM, "out of memory");
            ld->n_dict = h.dict_num;
            FT_TRY(plain(c, nd, d, (size_t)h.usize, h.dict_num, ld->dict));
            c->page++;
            continue;
        }
        if (h.type != 0 && h.type != 3) { /* INDEX_PAGE or a future type: not data */
            c->page++;
            continue;
        }
        if ((h.type == 0 && !h.v1) || (h.type == 3 && !h.v2))
            return bad(c, FT_ERR_PARSE, "data page without its header");
        int64_t n = h.num_values;
        if (n < 0 || n > MAX_PAGE_VALUES || n > cm->num_values - seen)
            return bad(c, FT_ERR_PARSE, "a page of %lld values (the chunk has %lld left)", (long long)n,
                       (long long)(cm->num_values - seen));
        if (n == 0) { /* an empty data page holds nothing to decode */
            c->page++;
            continue;
        }
        FT_TRY(grow_levels(c, ld, n));
        int16_t *def = ld->def + ld->n_levels, *rep = ld->rep + ld->n_levels;
        const uint8_t *vp, *vend;
        if (h.type == 0) {
            const uint8_t *d;
            FT_TRY(decompress(c, im, cm->codec, page, (size_t)h.csize, h.usize, &d));
            vp = d;
            vend = d + h.usize;
            if (nd->max_rep > 0)
                FT_TRY(levels_v1(c, &vp, vend, h.rep_enc, nd->max_rep, n, rep, "repetition"));
            if (nd->max_def > 0)
                FT_TRY(levels_v1(c, &vp, vend, h.def_enc, nd->max_def, n, def, "definition"));
        } else {
            if (h.def_len < 0 || h.rep_len < 0 || (int64_t)h.def_len + h.rep_len > h.csize ||
                (int64_t)h.def_len + h.rep_len > h.usize)
                return bad(c, FT_ERR_PARSE, "level lengths %d + %d exceed the page", h.rep_len, h.def_len);
            if (nd->max_rep > 0 && !levels(page, (size_t)h.rep_len, 3, bit_width(nd->max_rep), n, nd->max_rep, rep))
                return bad(c, FT_ERR_PARSE, "bad repetition levels");
            if (nd->max_def > 0 &&
                !levels(page + h.rep_len, (size_t)h.def_len, 3, bit_width(nd->max_def), n, nd->max_def, def))
                return bad(c, FT_ERR_PARSE, "bad definition levels");
            size_t lv = (size_t)h.def_len + (size_t)h.rep_len;
            const uint8_t *d = page + lv;
            if (h.is_compressed && cm->codec != 0)
                FT_TRY(decompress(c, im, cm->codec, page + lv, (size_t)h.csize - lv, (int64_t)h.usize - (int64_t)lv, &d));
            else if ((int64_t)h.csize != (int64_t)h.usize)
                return bad(c, FT_ERR_PARSE, "an uncompressed page of %d bytes says it has %d", h.csize, h.usize);
            vp = d;
            vend = d + (h.usize - (int64_t)lv);
        }
        if (nd->max_def == 0)
            memset(def, 0, (size_t)n * sizeof *def);
        if (nd->max_rep == 0)
            memset(rep, 0, (size_t)n * sizeof *rep);
        int64_t nn = 0;
        for (int64_t i = 0; i < n; i++)
            nn += def[i] == nd->max_def;
        FT_TRY(decode_values(c, im, ld, nd, h.encoding, vp, (size_t)(vend - vp), nn, ld->vals + ld->n_vals));
        ld->n_levels += n;
        ld->n_vals += nn;
        seen += n;
        c->page++;
    }
    c->page = -1;
    return FT_OK;
}

/* ---------------------------------------------------------------- assembly
 * Rows are rebuilt from each leaf's (repetition, definition) levels (the Dremel scheme): a node
 * is null when the current definition level is below its own; a repeated node continues while
 * the next entry's repetition level equals its own. Every step consumes at least one level
 * entry, so malformed levels end in an error, never a loop. */

typedef struct asm_ctx {
    ctx c;
    const pq_file *f;
    rows_impl *im;
    leaf_data **by_node; /* leaf data of each node (leaves only) */
    int64_t row;
} asm_ctx;

static leaf_data *leaf_of(asm_ctx *a, int32_t node) { return a->by_node[a->f->first_leaf[node]]; }

static ft_status peek(asm_ctx *a, int32_t node, int16_t *def, int16_t *rep) {
    leaf_data *ld = leaf_of(a, node);
    if (!ld || ld->pos >= ld->n_levels) {
        a->c.col = &a->f->nodes[a->f->first_leaf[node]];
        return bad(&a->c, FT_ERR_PARSE, "row %lld: the column has fewer values than the row group's rows",
                   (long long)a->row);
    }
    *def = ld->def[ld->pos];
    *rep = ld->rep[ld->pos];
    return FT_OK;
}

/* A null or empty node: one level entry of each leaf below it. */
static ft_status skip_entry(asm_ctx *a, int32_t node) {
    const pq_node *n = &a->f->nodes[node];
    if (n->leaf >= 0) {
        leaf_data *ld = a->by_node[node];
        if (ld->pos >= ld->n_levels || ld->def[ld->pos] >= n->max_def) {
            a->c.col = n;
            return bad(&a->c, FT_ERR_PARSE, "row %lld: the levels of the column disagree with its siblings'",
                       (long long)a->row);
        }
        ld->pos++;
        return FT_OK;
    }
    for (int32_t k = 0; k < n->n_children; k++)
        FT_TRY(skip_entry(a, n->children[k]));
    return FT_OK;
}

static ft_status read_field(asm_ctx *a, int32_t node, data_value *out);
static ft_status read_instance(asm_ctx *a, int32_t node, data_value *out);

static ft_status push(asm_ctx *a, const data_value *v) {
    rows_impl *im = a->im;
    if (im->n_stack == im->cap_stack) {
        size_t cap = im->cap_stack ? im->cap_stack * 2 : 256;
        data_value *p = ft_realloc(im->stack, cap * sizeof *p);
        if (!p)
            return FT_ERR(a->c.err, FT_ERR_NOMEM, "out of memory");
        im->stack = p;
        im->cap_stack = cap;
    }
    im->stack[im->n_stack++] = *v;
    return FT_OK;
}

/* The elements of repeated node R (mode 0: each element is an instance of R; mode 1: R's only
 * child; mode 2: a map's key/value pair). */
static ft_status read_repeated(asm_ctx *a, int32_t R, int mode, data_value *out) {
    const pq_node *r = &a->f->nodes[R];
    int16_t def, rep;
    FT_TRY(peek(a, R, &def, &rep));
    size_t base = a->im->n_stack;
    memset(out, 0, sizeof *out);
    out->kind = mode == 2 ? DATA_V_MAP : DATA_V_LIST;
    if (def < r->max_def)
        return skip_entry(a, R); /* an empty list */
    leaf_data *first = leaf_of(a, R);
    for (;;) {
        if (mode == 2) {
            data_value k, v;
            memset(&v, 0, sizeof v);
            FT_TRY(read_field(a, r->children[0], &k));
            if (r->n_children > 1)
                FT_TRY(read_field(a, r->children[1], &v));
            FT_TRY(push(a, &k));
            FT_TRY(push(a, &v));
        } else {
            data_value e;
            FT_TRY(mode == 1 ? read_field(a, r->children[0], &e) : read_instance(a, R, &e));
            FT_TRY(push(a, &e));
        }
        if (first->pos >= first->n_levels || first->rep[first->pos] != r->max_rep)
            break;
        if (first->def[first->pos] < r->max_def)
            return bad(&a->c, FT_ERR_PARSE, "row %lld: a repeated entry below its list's level", (long long)a->row);
    }
    size_t n = a->im->n_stack - base;
    data_value *items = arena_alloc(a->im, n * sizeof *items);
    if (!items)
        return FT_ERR(a->c.err, FT_ERR_NOMEM, "out of memory");
    memcpy(items, a->im->stack + base, n * sizeof *items);
    a->im->n_stack = base;
    out->items = items;
    out->n = (uint32_t)(mode == 2 ? n / 2 : n);
    return FT_OK;
}

static uint32_t bswap_none(uint32_t x) { return x; }

static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0)
            bits = sign;
        else { /* subnormal */
            float f = (float)man / 1024.0f / 16384.0f;
            return sign ? -f : f;
        }
    } else if (exp == 31)
        bits = sign | 0x7f800000 | (man << 13);
    else
        bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* A leaf value as a data_value, by its physical and logical type. */
static ft_status leaf_value(asm_ctx *a, const pq_node *n, const slot *s, data_value *v) {
    memset(v, 0, sizeof *v);
    switch (n->physical) {
    case PQ_BOOLEAN: v->kind = DATA_V_BOOL, v->b = s->b; break;
    case PQ_INT32:
        v->kind = DATA_V_INT, v->i = s->i32;
        if (n->logical == PQ_L_INT && !n->int_signed)
            v->kind = DATA_V_UINT, v->u = (uint32_t)s->i32;
        break;
    case PQ_INT64:
        v->kind = DATA_V_INT, v->i = s->i64;
        if (n->logical == PQ_L_INT && !n->int_signed)
            v->kind = DATA_V_UINT, v->u = (uint64_t)s->i64;
        break;
    case PQ_INT96: {
        int64_t nanos = (int64_t)le64(s->i96);
        int64_t jd = (int32_t)le32(s->i96 + 8);
        __int128 t = (__int128)(jd - 2440588) * 86400000000000LL + nanos;
        v->kind = DATA_V_TIMESTAMP;
        v->unit = DATA_NANOS;
        v->i = t > INT64_MAX ? INT64_MAX : t < INT64_MIN ? INT64_MIN : (int64_t)t;
        return FT_OK;
    }
    case PQ_FLOAT: v->kind = DATA_V_FLOAT, v->f = s->f32; break;
    case PQ_DOUBLE: v->kind = DATA_V_DOUBLE, v->f = s->f64; break;
    default: v->kind = DATA_V_BINARY, v->bytes = s->s.p, v->n = s->s.n; break;
    }
    switch (n->logical) {
    case PQ_L_STRING:
    case PQ_L_ENUM:
    case PQ_L_JSON:
        if (v->kind == DATA_V_BINARY)
            v->kind = DATA_V_STRING;
        break;
    case PQ_L_DECIMAL:
        if (v->kind == DATA_V_INT || (v->kind == DATA_V_BINARY && v->n <= 256)) {
            if (v->kind == DATA_V_BINARY && v->n == 0)
                v->i = 0; /* an empty unscaled value is zero (n == 0 means "in i") */
            v->kind = DATA_V_DECIMAL;
            v->scale = n->scale;
        }
        break;
    case PQ_L_DATE:
        if (v->kind == DATA_V_INT)
            v->kind = DATA_V_DATE;
        break;
    case PQ_L_TIME:
    case PQ_L_TIMESTAMP:
        if (v->kind == DATA_V_INT) {
            v->kind = n->logical == PQ_L_TIME ? DATA_V_TIME : DATA_V_TIMESTAMP;
            v->unit = (uint8_t)n->unit;
            v->utc = n->utc;
        }
        break;
    case PQ_L_UNKNOWN: memset(v, 0, sizeof *v); break;
    case PQ_L_FLOAT16:
        if (v->kind == DATA_V_BINARY && v->n == 2) {
            uint16_t h = (uint16_t)(v->bytes[0] | v->bytes[1] << 8);
            v->kind = DATA_V_FLOAT;
            v->f = half_to_float(h);
        }
        break;
    case PQ_L_UUID:
        if (v->kind == DATA_V_BINARY && v->n == 16) {
            char *t = arena_alloc(a->im, 37);
            if (!t)
                return FT_ERR(a->c.err, FT_ERR_NOMEM, "out of memory");
            const uint8_t *b = v->bytes;
            int o = 0;
            for (int k = 0; k < 16; k++) {
                if (k == 4 || k == 6 || k == 8 || k == 10)
                    t[o++] = '-';
                o += snprintf(t + o, 3, "%02x", b[k]);
            }
            v->kind = DATA_V_STRING;
            v->bytes = (const uint8_t *)t;
            v->n = 36;
        }
        break;
    default: break;
    }
    (void)bswap_none;
    return FT_OK;
}

/* LIST-annotated group: which node is the element (LogicalTypes.md backward-compatibility rules). */
static int list_mode(const pq_file *f, const pq_node *list, const pq_node *r) {
    if (r->physical != PQ_GROUP || r->n_children != 1)
        return 0; /* a repeated primitive, or a repeated group of several fields: the element itself */
    char tuple[600];
    snprintf(tuple, sizeof tuple, "%s_tuple", list->name);
    if (!strcmp(r->name, "array") || !strcmp(r->name, tuple))
        return 0;
    (void)f;
    return 1; /* 3-level: the repeated group's only child is the element */
}

static ft_status read_instance(asm_ctx *a, int32_t node, data_value *out) {
    const pq_node *n = &a->f->nodes[node];
    memset(out, 0, sizeof *out);
    if (n->leaf >= 0) {
        leaf_data *ld = a->by_node[node];
        if (ld->pos >= ld->n_levels || ld->def[ld->pos] != n->max_def) {
            a->c.col = n;
            return bad(&a->c, FT_ERR_PARSE, "row %lld: a value is missing where the levels say there is one",
                       (long long)a->row);
        }
        if (ld->vpos >= ld->n_vals)
            return bad(&a->c, FT_ERR_PARSE, "row %lld: fewer values than levels", (long long)a->row);
        ld->pos++;
        return leaf_value(a, n, &ld->vals[ld->vpos++], out);
    }
    if ((n->logical == PQ_L_LIST || n->logical == PQ_L_MAP) && n->n_children == 1) {
        const pq_node *r = &a->f->nodes[n->children[0]];
        if (r->repetition == PQ_REPEATED) {
            if (n->logical == PQ_L_MAP && r->physical == PQ_GROUP && r->n_children >= 1 && r->n_children <= 2)
                return read_repeated(a, r->index, 2, out);
            if (n->logical == PQ_L_LIST)
                return read_repeated(a, r->index, list_mode(a->f, n, r), out);
        }
    }
    /* a struct */
    data_value *items = arena_alloc(a->im, (size_t)(n->n_children ? n->n_children : 1) * sizeof *items);
    if (!items)
        return FT_ERR(a->c.err, FT_ERR_NOMEM, "out of memory");
    for (int32_t k = 0; k < n->n_children; k++)
        FT_TRY(read_field(a, n->children[k], &items[k]));
    out->kind = DATA_V_STRUCT;
    out->n = (uint32_t)n->n_children;
    out->items = items;
    out->names = a->f->child_names[node];
    return FT_OK;
}

static ft_status read_field(asm_ctx *a, int32_t node, data_value *out) {
    const pq_node *n = &a->f->nodes[node];
    memset(out, 0, sizeof *out);
    if (n->repetition == PQ_REPEATED) /* a bare repeated field: a list of its instances */
        return read_repeated(a, node, 0, out);
    if (n->repetition == PQ_OPTIONAL) {
        int16_t def, rep;
        FT_TRY(peek(a, node, &def, &rep));
        if (def < n->max_def)
            return skip_entry(a, node); /* null */
    }
    return read_instance(a, node, out);
}

static void mark_leaves(const pq_file *f, int32_t node, bool *want) {
    const pq_node *n = &f->nodes[node];
    if (n->leaf >= 0)
        want[n->leaf] = true;
    for (int32_t k = 0; k < n->n_children; k++)
        mark_leaves(f, n->children[k], want);
}

ft_status pq_read_row_group(pq_file *f, int64_t rg, const int32_t *columns, size_t n_columns, pq_rows *rows,
                            ft_err *err) {
    if (rg < 0 || rg >= f->n_rgs)
        return FT_ERR_AT(err, FT_ERR_RANGE, f->name, 0, 0, "row group %lld of %lld", (long long)rg, (long long)f->n_rgs);
    rows_impl *im = rows->impl_;
    if (!im) {
        im = rows->impl_ = ft_calloc(1, sizeof *im);
        if (!im)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    blocks_clear(&im->owned);
    blocks_clear(&im->arena_old);
    im->arena_used = 0;
    im->n_stack = 0;
    rows->n = 0;
    rows->row_group = rg;
    rows->first_row = f->rgs[rg].first_row;
    rows->cells = NULL;
    int32_t *cols = ft_realloc(im->columns, (n_columns ? n_columns : 1) * sizeof *cols);
    if (!cols)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    im->columns = cols;
    memcpy(cols, columns, n_columns * sizeof *cols);
    rows->columns = cols;
    rows->n_columns = n_columns;
    for (size_t i = 0; i < n_columns; i++) {
        const pq_node *n = pq_node_at(f, columns[i]);
        if (!n || n->parent < 0)
            return FT_ERR_AT(err, FT_ERR_RANGE, f->name, 0, 0, "no such column (node %d)", (int)columns[i]);
        for (const pq_node *p = &f->nodes[n->parent]; p->parent >= 0; p = &f->nodes[p->parent])
            if (p->repetition == PQ_REPEATED)
                return FT_ERR_AT(err, FT_ERR_INVALID, f->name, 0, 0,
                                 "column \"%s\" is inside a repeated field: select the enclosing column", n->path);
        if (f->first_leaf[n->index] < 0)
            return FT_ERR_AT(err, FT_ERR_PARSE, f->name, 0, 0, "column \"%s\" is a group without fields", n->path);
    }
    bool *want = ft_calloc(f->n_leaves ? f->n_leaves : 1, sizeof *want);
    leaf_data **by_node = ft_calloc(f->n_nodes, sizeof *by_node);
    ft_status s = FT_OK;
    if (!want || !by_node)
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; s == FT_OK && i < n_columns; i++)
        mark_leaves(f, columns[i], want);
    if (s == FT_OK && im->cap_leaves < f->n_leaves) {
        leaf_data *l = ft_realloc(im->leaves, f->n_leaves * sizeof *l);
        if (!l)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else {
            memset(l + im->cap_leaves, 0, (f->n_leaves - im->cap_leaves) * sizeof *l);
            im->leaves = l;
            im->cap_leaves = f->n_leaves;
        }
    }
    ctx c = {f, rg, -1, 0, NULL, err};
    for (size_t L = 0; s == FT_OK && L < f->n_leaves; L++) {
        if (!want[L])
            continue;
        leaf_data *ld = &im->leaves[L];
        ld->node = f->leaf_nodes[L];
        ld->n_levels = ld->n_vals = ld->pos = ld->vpos = ld->n_dict = 0;
        ld->dict = NULL;
        by_node[ld->node] = ld;
        c.col = &f->nodes[ld->node];
        c.page = -1;
        s = read_chunk(&c, im, &f->rgs[rg].chunks[L], c.col, ld);
    }
    int64_t nrows = f->rgs[rg].num_rows;
    data_value *cells = NULL;
    if (s == FT_OK && n_columns && nrows) {
        if ((uint64_t)nrows > (uint64_t)MAX_CHUNK_VALUES)
            s = FT_ERR_AT(err, FT_ERR_LIMIT, f->name, 0, 0, "row group %lld has %lld rows", (long long)rg, (long long)nrows);
        else if (!(cells = arena_alloc(im, (size_t)nrows * n_columns * sizeof *cells)))
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    asm_ctx a = {c, f, im, by_node, 0};
    a.c.page = -1;
    for (int64_t r = 0; s == FT_OK && r < nrows && n_columns; r++) {
        a.row = r;
        for (size_t k = 0; s == FT_OK && k < n_columns; k++) {
            const pq_node *n = &f->nodes[columns[k]];
            data_value *cell = &cells[(size_t)r * n_columns + k];
            size_t same = 0; /* a column selected twice is assembled once */
            while (same < k && columns[same] != columns[k])
                same++;
            if (same < k) {
                *cell = cells[(size_t)r * n_columns + same];
                continue;
            }
            int16_t def, rep;
            a.c.col = n;
            s = peek(&a, columns[k], &def, &rep);
            if (s == FT_OK && rep != 0)
                s = bad(&a.c, FT_ERR_PARSE, "row %lld does not start a new record (repetition level %d)", (long long)r, rep);
            if (s != FT_OK)
                break;
            if (n->repetition != PQ_REPEATED && def < n->max_def) {
                memset(cell, 0, sizeof *cell); /* it or an enclosing struct is null */
                s = skip_entry(&a, columns[k]);
            } else {
                s = read_field(&a, columns[k], cell);
            }
        }
    }
    for (size_t L = 0; s == FT_OK && L < f->n_leaves; L++) {
        if (!want[L])
            continue;
        leaf_data *ld = &im->leaves[L];
        if (ld->pos != ld->n_levels) {
            a.c.col = &f->nodes[ld->node];
            s = bad(&a.c, FT_ERR_PARSE, "the column has more values than the row group's %lld rows", (long long)nrows);
        }
    }
    ft_free(want);
    ft_free(by_node);
    if (s != FT_OK)
        return s;
    rows->n = nrows;
    rows->cells = cells;
    return FT_OK;
}

ft_status pq_decode_memory(const uint8_t *data, size_t len, ft_err *err) {
    pq_file *f = file_new("fuzz.parquet");
    if (!f)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    f->mem = data;
    f->size = (int64_t)len;
    ft_status s = open_common(f, err);
    pq_rows rows = {0};
    if (s == FT_OK) {
        const pq_node *root = &f->nodes[0];
        for (int64_t g = 0; s == FT_OK && g < f->n_rgs; g++)
            s = pq_read_row_group(f, g, root->children, (size_t)root->n_children, &rows, err);
        ft_buf b = {0};
        for (int64_t r = 0; s == FT_OK && r < rows.n; r++)
            for (size_t k = 0; s == FT_OK && k < rows.n_columns; k++)
                s = data_value_write_json(&b, &rows.cells[r * (int64_t)rows.n_columns + (int64_t)k], err);
        ft_buf_free(&b);
    }
    pq_rows_free(&rows);
    pq_close(f);
    return s;
}
