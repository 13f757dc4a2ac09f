/* data/table.c: what the table readers share (data/table.h): the value -> JSON mapping of
 * `ftune data head`, the conversion of a row's columns into a training record, and the record
 * spill file that lets the loader fetch rows again in any order. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/table.h"

/* ---------------------------------------------------------------- scalars as text */

/* Shortest "%.Ng" that reads back to the same double (or float). */
static void fmt_double(char *buf, size_t cap, double x, bool single) {
    for (int prec = single ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (single ? strtof(buf, NULL) == (float)x : strtod(buf, NULL) == x)
            break;
    }
    if (single) /* shorter forms may exist below 6 digits: try them too */
        for (int prec = 1; prec < 6; prec++) {
            char t[64];
            snprintf(t, sizeof t, "%.*g", prec, x);
            if (strtof(t, NULL) == (float)x) {
                snprintf(buf, cap, "%s", t);
                break;
            }
        }
    else
        for (int prec = 1; prec < 15; prec++) {
            char t[64];
            snprintf(t, sizeof t, "%.*g", prec, x);
            if (strtod(t, NULL) == x) {
                snprintf(buf, cap, "%s", t);
                break;
            }
        }
}

/* Days since 1970-01-01 to a proleptic Gregorian civil date (H. Hinnant's days_from_civil
 * inverse, valid for the whole int64 day range we accept). */
static void civil(int64_t z, int64_t *y, int *m, int *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t yy = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yy + (*m <= 2);
}

static int64_t floordiv(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

static void fmt_date(char *buf, size_t cap, int64_t days) {
    int64_t y;
    int m, d;
    civil(days, &y, &m, &d);
    if (y >= 0)
        snprintf(buf, cap, "%04lld-%02d-%02d", (long long)y, m, d);
    else
        snprintf(buf, cap, "-%04lld-%02d-%02d", (long long)-y, m, d);
}

/* Microseconds of a TIME/TIMESTAMP value (nanoseconds floor to microseconds; seconds and
 * milliseconds that would overflow int64 microseconds saturate). */
static int64_t to_micros(int64_t v, int unit) {
    switch (unit) {
    case DATA_SECONDS:
        if (v > INT64_MAX / 1000000 || v < INT64_MIN / 1000000)
            return v < 0 ? INT64_MIN : INT64_MAX;
        return v * 1000000;
    case DATA_MILLIS:
        if (v > INT64_MAX / 1000 || v < INT64_MIN / 1000)
            return v < 0 ? INT64_MIN : INT64_MAX;
        return v * 1000;
    case DATA_NANOS: return floordiv(v, 1000);
    default: return v;
    }
}

static void fmt_clock(char *buf, size_t cap, int64_t us_of_day) {
    int64_t s = us_of_day / 1000000, us = us_of_day % 1000000;
    snprintf(buf, cap, "%02lld:%02lld:%02lld.%06lld", (long long)(s / 3600), (long long)(s / 60 % 60),
             (long long)(s % 60), (long long)us);
}

static void fmt_timestamp(char *buf, size_t cap, int64_t v, int unit, bool utc) {
    int64_t us = to_micros(v, unit);
    int64_t day = floordiv(us, 86400000000LL);
    int64_t rem = us % 86400000000LL; /* not us - day * 86400000000: that wraps near INT64_MIN */
    if (rem < 0)
        rem += 86400000000LL;
    char date[40], clock[40];
    fmt_date(date, sizeof date, day);
    fmt_clock(clock, sizeof clock, rem);
    snprintf(buf, cap, "%sT%s%s", date, clock, utc ? "Z" : "");
}

/* The unscaled value's decimal digits with the point `scale` digits from the right. */
static ft_status fmt_decimal(ft_buf *out, const data_value *v, ft_err *err) {
    uint8_t small[8];
    const uint8_t *be = v->bytes;
    size_t n = v->n;
    if (n == 0) {
        uint64_t u = (uint64_t)v->i;
        for (int k = 0; k < 8; k++)
            small[k] = (uint8_t)(u >> (56 - 8 * k));
        be = small;
        n = 8;
    }
    uint8_t *mag = ft_malloc(n ? n : 1);
    char *digits = ft_malloc(n * 3 + 2);
    if (!mag || !digits) {
        ft_free(mag);
        ft_free(digits);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    bool neg = n > 0 && (be[0] & 0x80);
    memcpy(mag, be, n);
    if (neg) { /* two's complement negate */
        for (size_t k = 0; k < n; k++)
            mag[k] = (uint8_t)~mag[k];
        for (size_t k = n; k-- > 0;)
            if (++mag[k] != 0)
                break;
    }
    size_t nd = 0;
    for (;;) { /* repeated division by 10, most significant byte first */
        bool zero = true;
        unsigned rem = 0;
        for (size_t k = 0; k < n; k++) {
            unsigned cur = rem * 256 + mag[k];
            mag[k] = (uint8_t)(cur / 10);
            rem = cur % 10;
            zero = zero && mag[k] == 0;
        }
        digits[nd++] = (char)('0' + rem);
        if (zero)
            break;
    }
    /* digits are least significant first */
    ft_status s = ft_buf_putc(out, '"');
    if (neg && !(nd == 1 && digits[0] == '0'))
        s = s ? s : ft_buf_putc(out, '-');
    int64_t scale = v->scale;
    if (scale <= 0) {
        for (size_t k = nd; k-- > 0;)
            s = s ? s : ft_buf_putc(out, digits[k]);
        if (!(nd == 1 && digits[0] == '0'))
            for (int64_t k = 0; k < -scale; k++)
                s = s ? s : ft_buf_putc(out, '0');
    } else {
        int64_t total = (int64_t)nd > scale ? (int64_t)nd : scale + 1;
        for (int64_t k = total - 1; k >= 0; k--) {
            if (k == scale - 1)
                s = s ? s : ft_buf_putc(out, '.');
            s = s ? s : ft_buf_putc(out, k < (int64_t)nd ? digits[k] : '0');
        }
    }
    s = s ? s : ft_buf_putc(out, '"');
    ft_free(mag);
    ft_free(digits);
    return s ? FT_ERR(err, FT_ERR_NOMEM, "out of memory") : FT_OK;
}

/* A JSON string: runs of bytes that need no escape are copied at once; valid_end is the length of
 * p's valid UTF-8 prefix (an invalid byte becomes U+FFFD and the check resumes after it). */
static ft_status put_string_checked(ft_buf *out, const uint8_t *p, size_t n, size_t valid_end) {
    FT_TRY(ft_buf_reserve(out, n + 2));
    FT_TRY(ft_buf_putc(out, '"'));
    size_t i = 0;
    while (i < n) {
        if (i >= valid_end) { /* an invalid byte */
            FT_TRY(ft_buf_append(out, "\xEF\xBF\xBD", 3));
            i++;
            valid_end = i + ft_utf8_valid_prefix((const char *)p + i, n - i);
            continue;
        }
        size_t j = i;
        while (j < valid_end && (p[j] >= 0x80 || (p[j] >= 0x20 && p[j] != '"' && p[j] != '\\')))
            j++;
        if (j > i) {
            FT_TRY(ft_buf_append(out, p + i, j - i));
            i = j;
            continue;
        }
        uint8_t c = p[i];
        switch (c) {
        case '"': FT_TRY(ft_buf_append(out, "\\\"", 2)); break;
        case '\\': FT_TRY(ft_buf_append(out, "\\\\", 2)); break;
        case '\n': FT_TRY(ft_buf_append(out, "\\n", 2)); break;
        case '\r': FT_TRY(ft_buf_append(out, "\\r", 2)); break;
        case '\t': FT_TRY(ft_buf_append(out, "\\t", 2)); break;
        case '\b': FT_TRY(ft_buf_append(out, "\\b", 2)); break;
        case '\f': FT_TRY(ft_buf_append(out, "\\f", 2)); break;
        default: FT_TRY(ft_buf_appendf(out, "\\u%04x", c)); break;
        }
        i++;
    }
    return ft_buf_putc(out, '"');
}

static ft_status put_string(ft_buf *out, const uint8_t *p, size_t n) {
    return put_string_checked(out, p, n, ft_utf8_valid_prefix((const char *)p, n));
}

static ft_status put_base64(ft_buf *out, const uint8_t *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    FT_TRY(ft_buf_reserve(out, (n + 2) / 3 * 4 + 2));
    char *o = out->data + out->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[x >> 18];
        *o++ = tab[(x >> 12) & 63];
        *o++ = tab[(x >> 6) & 63];
        *o++ = tab[x & 63];
    }
    if (n - i == 1) {
        uint32_t x = (uint32_t)p[i] << 16;
        *o++ = tab[x >> 18];
        *o++ = tab[(x >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t x = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = tab[x >> 18];
        *o++ = tab[(x >> 12) & 63];
        *o++ = tab[(x >> 6) & 63];
        *o++ = '=';
    }
    *o++ = '"';
    out->len = (size_t)(o - out->data);
    return FT_OK;
}

/* A record's text value (a STRING or BINARY cell) must be UTF-8 without NUL bytes: what a JSONL
 * line can hold (jansson refuses "\u0000"). err->offset: the byte of the value at fault. */
static ft_status record_text_check(const data_value *v, ft_err *err) {
    size_t ok = ft_utf8_valid_prefix((const char *)v->bytes, v->n);
    const uint8_t *nul = ok ? memchr(v->bytes, 0, ok) : NULL;
    ft_status e = FT_OK;
    if (nul)
        e = FT_ERR(err, FT_ERR_INVALID, "a NUL byte (U+0000) at byte %zu of the value: text for training cannot hold it",
                   (size_t)(nul - v->bytes));
    else if (ok < v->n)
        e = FT_ERR(err, FT_ERR_INVALID, "%s: byte 0x%02X at byte %zu of the value",
                   v->kind == DATA_V_STRING ? "invalid UTF-8" : "binary value that is not UTF-8 text", v->bytes[ok], ok);
    if (e != FT_OK && err)
        err->offset = nul ? (int64_t)(nul - v->bytes) : (int64_t)ok;
    return e;
}

/* record: the rules of training records (strings must be UTF-8; binary is text when it is UTF-8). */
static ft_status write_json(ft_buf *out, const data_value *v, int depth, bool record, ft_err *err) {
    if (depth > 256)
        return FT_ERR(err, FT_ERR_LIMIT, "values nested more than 256 deep");
    char b[96];
    ft_status s = FT_OK;
    switch (v->kind) {
    case DATA_V_NULL: s = ft_buf_append(out, "null", 4); break;
    case DATA_V_BOOL: s = v->b ? ft_buf_append(out, "true", 4) : ft_buf_append(out, "false", 5); break;
    case DATA_V_INT: s = ft_buf_appendf(out, "%lld", (long long)v->i); break;
    case DATA_V_UINT:
        if (record && v->u > (uint64_t)INT64_MAX) { /* a number JSON readers can hold: as a double */
            fmt_double(b, sizeof b, (double)v->u, false);
            s = ft_buf_append(out, b, strlen(b));
        } else {
            s = ft_buf_appendf(out, "%llu", (unsigned long long)v->u);
        }
        break;
    case DATA_V_FLOAT:
    case DATA_V_DOUBLE:
        if (isnan(v->f))
            s = ft_buf_append(out, "\"NaN\"", 5);
        else if (isinf(v->f))
            s = v->f > 0 ? ft_buf_append(out, "\"Infinity\"", 10) : ft_buf_append(out, "\"-Infinity\"", 11);
        else {
            fmt_double(b, sizeof b, v->f, v->kind == DATA_V_FLOAT);
            s = ft_buf_append(out, b, strlen(b));
        }
        break;
    case DATA_V_STRING:
    case DATA_V_BINARY:
        if (record) {
            FT_TRY(record_text_check(v, err));
            s = put_string_checked(out, v->bytes, v->n, v->n); /* checked just above */
        } else {
            s = v->kind == DATA_V_STRING ? put_string(out, v->bytes, v->n) : put_base64(out, v->bytes, v->n);
        }
        break;
    case DATA_V_DECIMAL: return fmt_decimal(out, v, err);
    case DATA_V_DATE:
        fmt_date(b, sizeof b, v->i);
        s = ft_buf_appendf(out, "\"%s\"", b);
        break;
    case DATA_V_TIME: {
        int64_t us = to_micros(v->i, v->unit);
        fmt_clock(b, sizeof b, us < 0 ? 0 : us);
        s = ft_buf_appendf(out, "\"%s\"", b);
        break;
    }
    case DATA_V_TIMESTAMP:
        fmt_timestamp(b, sizeof b, v->i, v->unit, v->utc);
        s = ft_buf_appendf(out, "\"%s\"", b);
        break;
    case DATA_V_LIST:
        s = ft_buf_putc(out, '[');
        for (uint32_t k = 0; s == FT_OK && k < v->n; k++) {
            if (k)
                s = ft_buf_putc(out, ',');
            if (s == FT_OK && (s = write_json(out, &v->items[k], depth + 1, record, err)) != FT_OK)
                return s;
        }
        s = s ? s : ft_buf_putc(out, ']');
        break;
    case DATA_V_STRUCT:
        s = ft_buf_putc(out, '{');
        for (uint32_t k = 0; s == FT_OK && k < v->n; k++) {
            if (k)
                s = ft_buf_putc(out, ',');
            const char *name = v->names ? v->names[k] : "";
            s = s ? s : put_string(out, (const uint8_t *)name, strlen(name));
            s = s ? s : ft_buf_putc(out, ':');
            if (s == FT_OK && (s = write_json(out, &v->items[k], depth + 1, record, err)) != FT_OK)
                return s;
        }
        s = s ? s : ft_buf_putc(out, '}');
        break;
    case DATA_V_MAP:
        s = ft_buf_putc(out, '[');
        for (uint32_t k = 0; s == FT_OK && k < v->n; k++) {
            s = ft_buf_append(out, k ? ",{\"key\":" : "{\"key\":", k ? 8 : 7);
            if (s == FT_OK && (s = write_json(out, &v->items[2 * k], depth + 1, record, err)) != FT_OK)
                return s;
            s = s ? s : ft_buf_append(out, ",\"value\":", 9);
            if (s == FT_OK && (s = write_json(out, &v->items[2 * k + 1], depth + 1, record, err)) != FT_OK)
                return s;
            s = s ? s : ft_buf_putc(out, '}');
        }
        s = s ? s : ft_buf_putc(out, ']');
        break;
    default: return FT_ERR(err, FT_ERR_INTERNAL, "unknown value kind %d", v->kind);
    }
    return s ? FT_ERR(err, FT_ERR_NOMEM, "out of memory") : FT_OK;
}

ft_status data_value_write_json(ft_buf *out, const data_value *v, ft_err *err) { return write_json(out, v, 0, false, err); }

/* ---------------------------------------------------------------- values as jansson */

/* One walk over a cell tree into jansson, in write_json's two modes.
 * Plain (`data head --json`, tables): floats as they are, integers beyond int64 and the scalar
 * types JSON has no form for as the text `data head` prints, binary as a string when it is UTF-8
 * (else as base64 text), invalid UTF-8 in a string an error, errors inside a struct prefixed with
 * the field's name.
 * Record (training records): the tree equals what parsing data_row_to_record_text's JSON would
 * give, so validation sees the same record either way: strings checked by record_text_check,
 * integers beyond int64 as doubles (a JSON reader cannot hold them as integers), floats by the
 * value their shortest text reads back to (an integral one as an integer, as a JSON parser reads
 * "2"), non-finite ones as "NaN" etc., and two fields of one name refused as a JSONL line with a
 * duplicate key is.
 * Field names that are not UTF-8 get U+FFFD for their bad bytes (as put_string writes them).
 * `tmp` is scratch for formatting. */
static ft_status value_json(const data_value *v, int depth, bool record, ft_buf *tmp, json_t **out, ft_err *err) {
    *out = NULL;
    if (depth > 256)
        return FT_ERR(err, FT_ERR_LIMIT, "values nested more than 256 deep");
    json_t *j = NULL;
    switch (v->kind) {
    case DATA_V_NULL: j = json_null(); break;
    case DATA_V_BOOL: j = json_boolean(v->b); break;
    case DATA_V_INT: j = json_integer(v->i); break;
    case DATA_V_UINT:
        if (v->u <= (uint64_t)INT64_MAX)
            j = json_integer((json_int_t)v->u);
        else if (record) /* a number still (a record's type checks see a number), as a double */
            j = json_real((double)v->u);
        break; /* else below, as text */
    case DATA_V_FLOAT:
    case DATA_V_DOUBLE:
        if (!isfinite(v->f))
            break; /* below, as text */
        if (!record) {
            j = json_real(v->f);
            break;
        }
        char b[64];
        fmt_double(b, sizeof b, v->f, v->kind == DATA_V_FLOAT);
        if (strspn(b, "-0123456789") == strlen(b)) {
            errno = 0;
            long long i = strtoll(b, NULL, 10);
            j = errno ? json_real(strtod(b, NULL)) : json_integer(i);
        } else {
            j = json_real(v->kind == DATA_V_FLOAT ? strtod(b, NULL) : v->f);
        }
        break;
    case DATA_V_STRING:
    case DATA_V_BINARY:
        if (record) {
            FT_TRY(record_text_check(v, err));
        } else {
            size_t ok = ft_utf8_valid_prefix((const char *)v->bytes, v->n);
            if (ok < v->n && v->kind == DATA_V_BINARY)
                break; /* unannotated bytes that are not text: below, as base64 */
            if (ok < v->n) {
                ft_status s = FT_ERR(err, FT_ERR_INVALID, "invalid UTF-8 at byte %zu of the string", ok);
                if (err)
                    err->offset = (int64_t)ok;
                return s;
            }
        }
        j = json_stringn_nocheck(v->n ? (const char *)v->bytes : "", v->n);
        break;
    case DATA_V_LIST:
    case DATA_V_MAP: {
        bool map = v->kind == DATA_V_MAP;
        j = json_array();
        for (uint32_t k = 0; j && k < v->n; k++) {
            json_t *item = NULL, *vj = NULL;
            ft_status s = value_json(&v->items[map ? 2 * k : k], depth + 1, record, tmp, &item, err);
            if (s == FT_OK && map)
                s = value_json(&v->items[2 * k + 1], depth + 1, record, tmp, &vj, err);
            if (s != FT_OK) {
                json_decref(item);
                json_decref(j);
                return s;
            }
            if (map) { /* {"key": k, "value": v}, as write_json writes an entry */
                json_t *kj = item;
                item = json_object();
                if (item && (json_object_set_new_nocheck(item, "key", kj) || json_object_set_new_nocheck(item, "value", vj))) {
                    json_decref(item);
                    item = NULL;
                } else if (!item) {
                    json_decref(kj);
                    json_decref(vj);
                }
            }
            if (!item || json_array_append_new(j, item) != 0) {
                json_decref(j);
                j = NULL;
            }
        }
        break;
    }
    case DATA_V_STRUCT:
        j = json_object();
        for (uint32_t k = 0; j && k < v->n; k++) {
            json_t *item = NULL;
            ft_status s = value_json(&v->items[k], depth + 1, record, tmp, &item, err);
            if (s != FT_OK) {
                json_decref(j);
                if (!record && err && v->names)
                    ft_err_prefix(err, "field \"%s\"", v->names[k]);
                return s;
            }
            /* the name after the field's own walk, which may have used tmp */
            const char *name = v->names ? v->names[k] : "";
            size_t nlen = strlen(name);
            if (ft_utf8_valid_prefix(name, nlen) < nlen) {
                tmp->len = 0;
                if (put_string(tmp, (const uint8_t *)name, nlen) != FT_OK || ft_buf_putc(tmp, 0) != FT_OK) {
                    json_decref(item);
                    json_decref(j);
                    return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                }
                tmp->data[tmp->len - 2] = 0; /* drop the closing quote */
                name = tmp->data + 1;
            }
            if (record && json_object_get(j, name)) {
                json_decref(item);
                json_decref(j);
                return FT_ERR(err, FT_ERR_INVALID, "two fields named \"%s\" in one struct", name);
            }
            if (json_object_set_new_nocheck(j, name, item) != 0) {
                json_decref(j);
                j = NULL;
            }
        }
        break;
    default: break;
    }
    if (!j && (v->kind == DATA_V_UINT || v->kind == DATA_V_FLOAT || v->kind == DATA_V_DOUBLE ||
               v->kind == DATA_V_BINARY || v->kind == DATA_V_DECIMAL || v->kind == DATA_V_DATE ||
               v->kind == DATA_V_TIME || v->kind == DATA_V_TIMESTAMP)) {
        tmp->len = 0; /* the text form of write_json, as a JSON string */
        FT_TRY(write_json(tmp, v, depth, record, err));
        if (tmp->len >= 2 && tmp->data[0] == '"')
            j = json_stringn_nocheck(tmp->data + 1, tmp->len - 2);
        else
            j = json_stringn_nocheck(tmp->data, tmp->len);
    }
    if (!j)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    *out = j;
    return FT_OK;
}

ft_status data_value_to_json(const data_value *v, json_t **out, ft_err *err) {
    ft_buf tmp = {0};
    ft_status s = value_json(v, 0, false, &tmp, out, err);
    ft_buf_free(&tmp);
    return s;
}

/* ---------------------------------------------------------------- columns to records */

void data_task_columns_get(ft_task_type task, const ft_reader_params *p,
                           bool (*has_column)(void *ctx, const char *name), void *ctx, data_task_columns *out) {
    memset(out, 0, sizeof *out);
    switch (task) {
    case FT_TASK_CHAT_COMPLETION:
        out->n = 1;
        out->column[0] = p && p->messages_column ? p->messages_column : "messages";
        out->key[0] = "messages";
        break;
    case FT_TASK_CONTINUED_PRETRAIN:
        out->n = 1;
        out->column[0] = p && p->text_column ? p->text_column : "text";
        out->key[0] = "text";
        break;
    case FT_TASK_INSTRUCTION_FINETUNE:
        out->n = 2;
        out->column[0] = p && p->prompt_column ? p->prompt_column : "prompt";
        out->key[0] = "prompt";
        out->key[1] = "response";
        if (p && p->response_column)
            out->column[1] = p->response_column;
        else if (has_column && !has_column(ctx, "response") && has_column(ctx, "completion")) {
            out->column[1] = "completion";
            out->key[1] = "completion";
        } else if (has_column && has_column(ctx, "response") && has_column(ctx, "completion")) {
            out->n = 3;
            out->column[1] = "response";
            out->column[2] = out->key[2] = "completion";
            out->optional[1] = out->optional[2] = true;
        } else
            out->column[1] = "response";
        break;
    }
}

ft_status data_row_to_record(const data_task_columns *cols, const data_value *cells, ft_buf *tmp, json_t **out,
                             ft_err *err) {
    *out = NULL;
    json_t *o = json_object();
    if (!o)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < cols->n; i++) {
        if (cols->optional[i] && cells[i].kind == DATA_V_NULL)
            continue;
        json_t *v = NULL;
        ft_status s = value_json(&cells[i], 0, true, tmp, &v, err);
        if (s != FT_OK) {
            json_decref(o);
            if (err)
                ft_err_prefix(err, "column \"%s\"", cols->column[i]);
            return s;
        }
        if (json_object_set_new_nocheck(o, cols->key[i], v) != 0) {
            json_decref(o);
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
    }
    *out = o;
    return FT_OK;
}

ft_status data_row_to_record_text(const data_task_columns *cols, const data_value *cells, ft_buf *out, ft_err *err) {
    out->len = 0;
    FT_TRY(ft_buf_putc(out, '{'));
    bool first = true;
    for (size_t i = 0; i < cols->n; i++) {
        if (cols->optional[i] && cells[i].kind == DATA_V_NULL)
            continue;
        if (!first)
            FT_TRY(ft_buf_putc(out, ','));
        first = false;
        FT_TRY(put_string(out, (const uint8_t *)cols->key[i], strlen(cols->key[i])));
        FT_TRY(ft_buf_putc(out, ':'));
        ft_status s = write_json(out, &cells[i], 0, true, err);
        if (s != FT_OK) {
            if (err)
                ft_err_prefix(err, "column \"%s\"", cols->column[i]);
            return s;
        }
    }
    return ft_buf_putc(out, '}');
}

/* ---------------------------------------------------------------- the record spill */

void data_spill_init(data_spill *s) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    pthread_mutex_init(&s->lock, NULL);
}

static int open_tmp(void) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !dir[0])
        dir = "/tmp";
#ifdef O_TMPFILE
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
#endif
    char *tmpl = ft_asprintf("%s/ftune-spill-XXXXXX", dir);
    if (!tmpl)
        return -1;
    int fd2 = mkstemp(tmpl);
    if (fd2 >= 0)
        unlink(tmpl);
    ft_free(tmpl);
    return fd2;
}

/* Write the buffered bytes (caller holds the lock). */
static ft_status spill_flush_locked(data_spill *s, ft_err *err) {
    if (s->pending.len == 0)
        return FT_OK;
    if (s->fd < 0 && (s->fd = open_tmp()) < 0)
        return FT_ERR(err, FT_ERR_IO, "cannot create a temporary file for table records (TMPDIR): %s",
                      strerror(errno));
    size_t done = 0;
    while (done < s->pending.len) {
        ssize_t w = pwrite(s->fd, s->pending.data + done, s->pending.len - done, (off_t)(s->flushed + (int64_t)done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return FT_ERR(err, FT_ERR_IO, "writing the temporary record file (TMPDIR): %s",
                          w < 0 ? strerror(errno) : "no space");
        done += (size_t)w;
    }
    s->flushed += (int64_t)s->pending.len;
    s->pending.len = 0;
    return FT_OK;
}

ft_status data_spill_append(data_spill *s, const void *data, size_t len, int64_t *off, ft_err *err) {
    pthread_mutex_lock(&s->lock);
    *off = s->end;
    ft_status st = FT_OK;
    if (s->pending.len + len > ((size_t)1 << 20))
        st = spill_flush_locked(s, err);
    if (st == FT_OK && ft_buf_append(&s->pending, data, len) != FT_OK)
        st = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (st == FT_OK)
        s->end += (int64_t)len;
    pthread_mutex_unlock(&s->lock);
    return st;
}

ft_status data_spill_read(data_spill *s, int64_t off, int64_t len, ft_buf *scratch, ft_err *err) {
    scratch->len = 0;
    if (off < 0 || len < 0 || off + len > s->end)
        return FT_ERR(err, FT_ERR_RANGE, "bad record location");
    if (off + len > s->flushed) { /* still buffered: write it out once */
        pthread_mutex_lock(&s->lock);
        ft_status st = spill_flush_locked(s, err);
        pthread_mutex_unlock(&s->lock);
        FT_TRY(st);
    }
    FT_TRY(ft_buf_reserve(scratch, (size_t)len + 1));
    size_t got = 0;
    while (got < (size_t)len) {
        ssize_t r = pread(s->fd, scratch->data + got, (size_t)len - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return FT_ERR(err, FT_ERR_IO, "reading the temporary record file: %s",
                          r < 0 ? strerror(errno) : "unexpected end");
        got += (size_t)r;
    }
    scratch->len = (size_t)len;
    scratch->data[len] = 0;
    return FT_OK;
}

void data_spill_deinit(data_spill *s) {
    if (s->fd >= 0)
        close(s->fd);
    ft_buf_free(&s->pending);
    pthread_mutex_destroy(&s->lock);
    s->fd = -1;
    s->end = s->flushed = 0;
}
