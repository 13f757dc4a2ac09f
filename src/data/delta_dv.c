/* data/delta_dv.c: Delta deletion vectors (PROTOCOL.md "Deletion Vector Format").
 *
 * A deletion vector names the rows of one data file that are deleted. It is stored inline in
 * the log (Z85 text), in a file beside the table named by a Z85-encoded UUID (storage 'u'), or
 * at an absolute path ('p'). In a file, at `offset`: a 4-byte big-endian size, the serialized
 * bitmap, and a 4-byte big-endian CRC-32 of it. The bitmap is a magic number (1681511377,
 * little-endian) and a RoaringBitmapArray in the "portable" format: a 64-bit count of 32-bit
 * Roaring bitmaps, each with a 32-bit key (the high half of the row index) before it. Each
 * Roaring bitmap follows the RoaringFormatSpec (array, bitmap and run containers). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/sources.h"

#define DV_MAGIC 1681511377u

/* ---------------------------------------------------------------- Z85 and CRC-32 */

static const char Z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

bool delta_z85_decode(const char *s, size_t len, uint8_t *out) {
    static int8_t rev[256];
    static bool init;
    if (!init) { /* idempotent: every thread writes the same values */
        memset(rev, -1, sizeof rev);
        for (int i = 0; i < 85; i++)
            rev[(uint8_t)Z85[i]] = (int8_t)i;
        init = true;
    }
    if (len % 5)
        return false;
    for (size_t i = 0; i < len; i += 5) {
        uint64_t v = 0;
        for (int k = 0; k < 5; k++) {
            int d = rev[(uint8_t)s[i + (size_t)k]];
            if (d < 0)
                return false;
            v = v * 85 + (uint64_t)d;
        }
        if (v > 0xFFFFFFFFu)
            return false;
        size_t o = i / 5 * 4;
        out[o] = (uint8_t)(v >> 24);
        out[o + 1] = (uint8_t)(v >> 16);
        out[o + 2] = (uint8_t)(v >> 8);
        out[o + 3] = (uint8_t)v;
    }
    return true;
}

uint32_t delta_crc32(const uint8_t *p, size_t n) {
    static uint32_t table[256];
    static bool init;
    if (!init) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        init = true;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---------------------------------------------------------------- Roaring */

typedef struct rd {
    const uint8_t *p;
    size_t n, i;
} rd;

static bool get(rd *r, void *out, size_t k) {
    if (r->n - r->i < k)
        return false;
    memcpy(out, r->p + r->i, k);
    r->i += k;
    return true;
}
static bool u16le(rd *r, uint16_t *v) {
    uint8_t b[2];
    if (!get(r, b, 2))
        return false;
    *v = (uint16_t)(b[0] | b[1] << 8);
    return true;
}
static bool u32le(rd *r, uint32_t *v) {
    uint8_t b[4];
    if (!get(r, b, 4))
        return false;
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return true;
}

typedef struct rows_out {
    uint64_t *v;
    size_t n, cap;
    size_t limit; /* at most this many (bounded by the row count the size allows) */
} rows_out;

static bool push_row(rows_out *o, uint64_t x) {
    if (o->n == o->cap) {
        if (o->n >= o->limit)
            return false;
        size_t cap = o->cap ? o->cap * 2 : 64;
        uint64_t *p = ft_realloc(o->v, cap * sizeof *p);
        if (!p)
            return false;
        o->v = p;
        o->cap = cap;
    }
    o->v[o->n++] = x;
    return true;
}

#define SERIAL_COOKIE_NO_RUN 12346u
#define SERIAL_COOKIE 12347u

/* One 32-bit Roaring bitmap (portable format) with high bits `hi`. */
static bool roaring32(rd *r, uint64_t hi, rows_out *o, const char **why) {
    uint32_t cookie;
    if (!u32le(r, &cookie)) {
        *why = "truncated bitmap header";
        return false;
    }
    uint32_t n;
    const uint8_t *runs = NULL;
    bool has_offsets;
    if ((cookie & 0xFFFF) == SERIAL_COOKIE) {
        n = (cookie >> 16) + 1;
        size_t rb = (n + 7) / 8;
        if (r->n - r->i < rb) {
            *why = "truncated run flags";
            return false;
        }
        runs = r->p + r->i;
        r->i += rb;
        has_offsets = n >= 4;
    } else if (cookie == SERIAL_COOKIE_NO_RUN) {
        if (!u32le(r, &n)) {
            *why = "truncated container count";
            return false;
        }
        has_offsets = true;
    } else {
        *why = "not a Roaring bitmap (unknown cookie)";
        return false;
    }
    if (n > 65536 || (size_t)n * 4 > r->n - r->i) {
        *why = "container count out of range";
        return false;
    }
    const uint8_t *hdr = r->p + r->i;
    r->i += (size_t)n * 4;
    if (has_offsets) {
        if ((size_t)n * 4 > r->n - r->i) {
            *why = "truncated offsets";
            return false;
        }
        r->i += (size_t)n * 4; /* containers follow in order; offsets are not needed */
    }
    int64_t prev_key = -1;
    for (uint32_t c = 0; c < n; c++) {
        uint16_t key = (uint16_t)(hdr[4 * c] | hdr[4 * c + 1] << 8);
        uint32_t card = (uint32_t)(hdr[4 * c + 2] | hdr[4 * c + 3] << 8) + 1;
        if ((int64_t)key <= prev_key) {
            *why = "container keys out of order";
            return false;
        }
        prev_key = key;
        uint64_t base = hi << 32 | (uint64_t)key << 16;
        bool is_run = runs && (runs[c / 8] >> (c % 8) & 1);
        if (is_run) {
            uint16_t nr;
            if (!u16le(r, &nr)) {
                *why = "truncated run container";
                return false;
            }
            int64_t last = -1;
            for (uint16_t k = 0; k < nr; k++) {
                uint16_t start, len;
                if (!u16le(r, &start) || !u16le(r, &len)) {
                    *why = "truncated run container";
                    return false;
                }
                if ((int64_t)start <= last || (uint32_t)start + len > 65535) {
                    *why = "bad run in a run container";
                    return false;
                }
                for (uint32_t x = start; x <= (uint32_t)start + len; x++)
                    if (!push_row(o, base | x)) {
                        *why = "more deleted rows than the deletion vector can hold";
                        return false;
                    }
                last = (int64_t)start + len;
            }
        } else if (card > 4096) {
            if (r->n - r->i < 8192) {
                *why = "truncated bitmap container";
                return false;
            }
            const uint8_t *bm = r->p + r->i;
            r->i += 8192;
            for (uint32_t x = 0; x < 65536; x++)
                if (bm[x / 8] >> (x % 8) & 1)
                    if (!push_row(o, base | x)) {
                        *why = "more deleted rows than the deletion vector can hold";
                        return false;
                    }
        } else {
            int64_t last = -1;
            for (uint32_t k = 0; k < card; k++) {
                uint16_t x;
                if (!u16le(r, &x)) {
                    *why = "truncated array container";
                    return false;
                }
                if ((int64_t)x <= last) {
                    *why = "array container not sorted";
                    return false;
                }
                last = x;
                if (!push_row(o, base | x)) {
                    *why = "more deleted rows than the deletion vector can hold";
                    return false;
                }
            }
        }
    }
    return true;
}

ft_status delta_dv_decode(const uint8_t *p, size_t n, uint64_t **rows, size_t *n_rows, ft_err *err) {
    *rows = NULL;
    *n_rows = 0;
    rd r = {p, n, 0};
    uint32_t magic;
    if (!u32le(&r, &magic) || magic != DV_MAGIC)
        return FT_ERR(err, FT_ERR_PARSE, "deletion vector: bad magic number (not a RoaringBitmapArray)");
    uint8_t b8[8];
    if (!get(&r, b8, 8))
        return FT_ERR(err, FT_ERR_PARSE, "deletion vector: truncated bitmap count");
    uint64_t nb = 0;
    for (int k = 7; k >= 0; k--)
        nb = nb << 8 | b8[k];
    if (nb > (n - r.i) / 8)
        return FT_ERR(err, FT_ERR_PARSE, "deletion vector: bitmap count %llu out of range", (unsigned long long)nb);
    /* a bitmap container of 8 KiB holds at most 65536 rows, a run of 4 bytes as many: bound the
     * output by what the bytes can describe, so a corrupt size cannot exhaust memory */
    rows_out o = {.limit = (n + 1) * 16384};
    int64_t prev = -1;
    for (uint64_t b = 0; b < nb; b++) {
        uint32_t key;
        if (!u32le(&r, &key)) {
            ft_free(o.v);
            return FT_ERR(err, FT_ERR_PARSE, "deletion vector: truncated bitmap key");
        }
        if ((int64_t)key <= prev) {
            ft_free(o.v);
            return FT_ERR(err, FT_ERR_PARSE, "deletion vector: bitmap keys out of order");
        }
        prev = key;
        const char *why = NULL;
        if (!roaring32(&r, key, &o, &why)) {
            ft_free(o.v);
            return FT_ERR(err, FT_ERR_PARSE, "deletion vector: %s", why ? why : "out of memory");
        }
    }
    *rows = o.v;
    *n_rows = o.n;
    return FT_OK;
}

/* ---------------------------------------------------------------- loading */

static ft_status read_at(const char *path, int64_t off, uint8_t *buf, size_t n, const char *display, ft_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, display, 0, 0, "cannot open the deletion vector file %s: %s", path,
                         strerror(errno));
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            return FT_ERR_AT(err, FT_ERR_PARSE, display, 0, 0, "deletion vector file %s is truncated", path);
        }
        got += (size_t)r;
    }
    close(fd);
    return FT_OK;
}

static char *dv_file_path(const delta_snapshot *s, const delta_dv *dv) {
    if (dv->storage == 'p') {
        const char *p = dv->path_or_inline;
        if (strncmp(p, "file:", 5) == 0) {
            p += 5;
            if (strncmp(p, "//", 2) == 0) {
                const char *sl = strchr(p + 2, '/');
                p = sl ? sl : p + strlen(p);
            }
        }
        return p[0] == '/' ? ft_strdup(p) : NULL;
    }
    size_t n = strlen(dv->path_or_inline);
    if (n < 20)
        return NULL;
    uint8_t u[16];
    if (!delta_z85_decode(dv->path_or_inline + n - 20, 20, u))
        return NULL;
    char uuid[37];
    snprintf(uuid, sizeof uuid, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
             u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
    if (n > 20)
        return ft_asprintf("%s/%.*s/deletion_vector_%s.bin", s->root, (int)(n - 20), dv->path_or_inline, uuid);
    return ft_asprintf("%s/deletion_vector_%s.bin", s->root, uuid);
}

ft_status delta_dv_rows(const delta_snapshot *s, const delta_file *f, uint64_t **rows, size_t *n, ft_err *err) {
    *rows = NULL;
    *n = 0;
    if (!f->has_dv)
        return FT_OK;
    const delta_dv *dv = &f->dv;
    if (dv->size <= 0 || dv->size > ((int64_t)1 << 31))
        return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0, "deletion vector of %s: size %lld out of range",
                         f->rel, (long long)dv->size);
    size_t size = (size_t)dv->size;
    uint8_t *buf = NULL;
    ft_status st = FT_OK;
    if (dv->storage == 'i') {
        size_t len = strlen(dv->path_or_inline);
        size_t dec = (len + 4) / 5 * 4;
        if (len % 5 || dec < size)
            return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0,
                             "inline deletion vector of %s: %zu Z85 characters cannot hold %zu bytes", f->rel, len,
                             size);
        buf = ft_malloc(dec);
        if (!buf)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        if (!delta_z85_decode(dv->path_or_inline, len, buf))
            st = FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0, "inline deletion vector of %s is not Z85 text",
                           f->rel);
    } else {
        char *path = dv_file_path(s, dv);
        if (!path)
            return FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0, "deletion vector of %s: bad location '%s'", f->rel,
                             dv->path_or_inline);
        int64_t off = dv->offset >= 0 ? dv->offset : 1; /* after the format version byte */
        buf = ft_malloc(size + 8);
        if (!buf) {
            ft_free(path);
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        st = read_at(path, off, buf, size + 8, s->display, err);
        if (st == FT_OK) {
            uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
            uint32_t crc = (uint32_t)buf[4 + size] << 24 | (uint32_t)buf[5 + size] << 16 |
                           (uint32_t)buf[6 + size] << 8 | buf[7 + size];
            if (len != size)
                st = FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0,
                               "deletion vector of %s in %s: stored size %u, the log says %zu", f->rel, path, len,
                               size);
            else if (crc != delta_crc32(buf + 4, size))
                st = FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0,
                               "deletion vector of %s in %s: CRC-32 mismatch (the file is damaged)", f->rel, path);
            else
                memmove(buf, buf + 4, size);
        }
        ft_free(path);
    }
    if (st == FT_OK) {
        st = delta_dv_decode(buf, size, rows, n, err);
        if (st != FT_OK)
            ft_err_prefix(err, "Delta table %s, file %s", s->display, f->rel);
    }
    if (st == FT_OK && dv->cardinality >= 0 && (size_t)dv->cardinality != *n) {
        st = FT_ERR_AT(err, FT_ERR_PARSE, s->display, 0, 0,
                       "deletion vector of %s holds %zu rows, the log says %lld", f->rel, *n,
                       (long long)dv->cardinality);
        ft_free(*rows);
        *rows = NULL;
        *n = 0;
    }
    ft_free(buf);
    return st;
}
