/* io/safetensors.c: the safetensors reader (mmap, strict validation, sharded models through
 * model.safetensors.index.json) and the streaming writer (declare, stream, atomic finish,
 * optional sharding). See include/ftune/safetensors.h for the format and the contracts.
 *
 * Validation follows the reference implementation's rules (the Rust crate's `validate`): the
 * header is a JSON object, every tensor has a known dtype, a shape and [begin, end] offsets, its
 * byte size matches dtype x shape, and the tensors tile the data section exactly. Everything is
 * checked once at open, so later accesses need no checks. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/safetensors.h"

/* The Rust crate refuses headers above 100 MB; so do we (a 400B model's header is ~100 KB). */
#define MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)

/* ---------------------------------------------------------------- dtypes and conversions */

static const struct {
    const char *name;
    size_t size;
} dtypes[FT_ST_DTYPE_COUNT] = {
    [FT_ST_DTYPE_BOOL] = {"BOOL", 1},   [FT_ST_DTYPE_U8] = {"U8", 1},
    [FT_ST_DTYPE_I8] = {"I8", 1},       [FT_ST_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [FT_ST_DTYPE_F8_E5M2] = {"F8_E5M2", 1}, [FT_ST_DTYPE_I16] = {"I16", 2},
    [FT_ST_DTYPE_U16] = {"U16", 2},     [FT_ST_DTYPE_F16] = {"F16", 2},
    [FT_ST_DTYPE_BF16] = {"BF16", 2},   [FT_ST_DTYPE_I32] = {"I32", 4},
    [FT_ST_DTYPE_U32] = {"U32", 4},     [FT_ST_DTYPE_F32] = {"F32", 4},
    [FT_ST_DTYPE_I64] = {"I64", 8},     [FT_ST_DTYPE_U64] = {"U64", 8},
    [FT_ST_DTYPE_F64] = {"F64", 8},
};

const char *ft_st_dtype_name(ft_st_dtype d) {
    return (unsigned)d < FT_ST_DTYPE_COUNT ? dtypes[d].name : "?";
}

size_t ft_st_dtype_size(ft_st_dtype d) {
    return (unsigned)d < FT_ST_DTYPE_COUNT ? dtypes[d].size : 0;
}

bool ft_st_dtype_parse(const char *name, ft_st_dtype *out) {
    for (int i = 0; i < FT_ST_DTYPE_COUNT; i++)
        if (!strcmp(name, dtypes[i].name)) {
            *out = (ft_st_dtype)i;
            return true;
        }
    return false;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float ft_st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t ft_st_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep the sign, force a quiet mantissa bit */
        return (uint16_t)((x >> 16) | 0x40);
    /* Round to nearest even on the 16 dropped bits; a carry into the exponent is correct
     * (it rounds up to the next binade, or to infinity). */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float ft_st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f; /* zero or subnormal: exact in fp32 */
        return sign ? -v : v;
    }
    if (e == 31)
        return bits_f32(sign | 0x7f800000u | (m << 13));
    return bits_f32(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t ft_st_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (ax >= 0x477ff000u) /* >= 65520 rounds to infinity (ties to the even 2^16) */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: a half subnormal (or zero), in units of 2^-24 */
        uint32_t e = ax >> 23;
        if (e < 102) /* below 2^-25: rounds to zero */
            return (uint16_t)sign;
        uint32_t mant = (ax & 0x7fffffu) | 0x800000u, s = 126 - e;
        uint32_t r = mant >> s, rem = mant & ((1u << s) - 1), half = 1u << (s - 1);
        if (rem > half || (rem == half && (r & 1u)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t base = ax - (112u << 23); /* rebias the exponent from 127 to 15 */
    uint32_t r = base >> 13, rem = base & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u)))
        r++;
    return (uint16_t)(sign | r);
}

/* ---------------------------------------------------------------- reader */

typedef struct st_file {
    char *path;
    const uint8_t *base; /* the whole file */
    size_t len;
    bool mapped; /* munmap at close (else borrowed) */
} st_file;

struct ft_st_reader {
    st_file *files;
    size_t n_files;
    ft_st_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t *table; /* open addressing over tensor indices + 1 (0 = empty) */
    size_t table_cap;
    char **meta; /* key, value, key, value... of the first file */
    size_t n_meta;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static ft_status build_table(ft_st_reader *r, ft_err *err) {
    size_t cap = 16;
    while (cap < r->n_tensors * 2 + 1)
        cap *= 2;
    r->table = ft_calloc(cap, sizeof *r->table);
    if (!r->table)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    r->table_cap = cap;
    for (size_t i = 0; i < r->n_tensors; i++) {
        size_t j = hash_str(r->tensors[i].name) & (cap - 1);
        while (r->table[j]) {
            const ft_st_tensor *o = &r->tensors[r->table[j] - 1];
            if (!strcmp(o->name, r->tensors[i].name)) {
                if (o->file == r->tensors[i].file)
                    return FT_ERR_AT(err, FT_ERR_PARSE, o->file, 0, 0, "duplicate tensor name \"%s\"", o->name);
                return FT_ERR_AT(err, FT_ERR_INVALID, r->tensors[i].file, 0, 0,
                                 "tensor \"%s\" is also in %s (a tensor may be in one shard only)", o->name, o->file);
            }
            j = (j + 1) & (cap - 1);
        }
        r->table[j] = (uint32_t)(i + 1);
    }
    return FT_OK;
}

const ft_st_tensor *ft_st_find(const ft_st_reader *r, const char *name) {
    if (!r || !r->table)
        return NULL;
    size_t j = hash_str(name) & (r->table_cap - 1);
    while (r->table[j]) {
        const ft_st_tensor *t = &r->tensors[r->table[j] - 1];
        if (!strcmp(t->name, name))
            return t;
        j = (j + 1) & (r->table_cap - 1);
    }
    return NULL;
}

size_t ft_st_count(const ft_st_reader *r) { return r ? r->n_tensors : 0; }

const ft_st_tensor *ft_st_tensor_at(const ft_st_reader *r, size_t i) {
    return r && i < r->n_tensors ? &r->tensors[i] : NULL;
}

const char *ft_st_metadata(const ft_st_reader *r, const char *key) {
    for (size_t i = 0; r && i < r->n_meta; i++)
        if (!strcmp(r->meta[2 * i], key))
            return r->meta[2 * i + 1];
    return NULL;
}

void ft_st_close(ft_st_reader *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->n_files; i++) {
        if (r->files[i].mapped && r->files[i].base)
            munmap((void *)r->files[i].base, r->files[i].len);
        ft_free(r->files[i].path);
    }
    for (size_t i = 0; i < r->n_tensors; i++)
        ft_free((char *)r->tensors[i].name);
    for (size_t i = 0; i < 2 * r->n_meta; i++)
        ft_free(r->meta[i]);
    ft_free(r->meta);
    ft_free(r->files);
    ft_free(r->tensors);
    ft_free(r->table);
    ft_free(r);
}

static int cmp_by_offset(const void *a, const void *b) {
    const ft_st_tensor *x = a, *y = b;
    const uint8_t *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Shape "[4096, 128]" for messages. */
static void shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

/* Parse one tensor entry of file `f` (header already parsed into `v`). */
static ft_status parse_entry(ft_st_reader *r, const st_file *f, const uint8_t *data, uint64_t data_len,
                             const char *name, json_t *v, ft_err *err) {
    const char *path = f->path;
    if (!json_is_object(v))
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "tensor \"%s\": entry must be an object", name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!jd || !js || !jo)
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "tensor \"%s\": missing \"%s\"", name,
                         !jd ? "dtype" : !js ? "shape" : "data_offsets");
    if (!json_is_string(jd))
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "tensor \"%s\": \"dtype\" must be a string", name);
    ft_st_tensor t = {0};
    if (!ft_st_dtype_parse(json_string_value(jd), &t.dtype))
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0, "tensor \"%s\": unknown dtype \"%s\"", name,
                         json_string_value(jd));
    if (!json_is_array(js))
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "tensor \"%s\": \"shape\" must be a list", name);
    if (json_array_size(js) > FT_ST_MAX_DIMS)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0, "tensor \"%s\": %zu dimensions (at most %d)", name,
                         json_array_size(js), FT_ST_MAX_DIMS);
    t.ndim = (int)json_array_size(js);
    uint64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < t.ndim; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0,
                             "tensor \"%s\": shape[%d] must be a non-negative integer", name, i);
        t.shape[i] = json_integer_value(d);
        if (t.shape[i] && numel > UINT64_MAX / (uint64_t)t.shape[i])
            overflow = true;
        else
            numel *= (uint64_t)t.shape[i];
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "tensor \"%s\": \"data_offsets\" must be [begin, end]",
                         name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "tensor \"%s\": invalid data_offsets [%lld, %lld]", name,
                         (long long)b, (long long)e);
    char sh[256];
    shape_str(t.shape, t.ndim, sh, sizeof sh);
    size_t esz = ft_st_dtype_size(t.dtype);
    if (overflow || numel > (uint64_t)INT64_MAX / esz)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "tensor \"%s\": shape %s is too large", name, sh);
    uint64_t need = numel * esz;
    if ((uint64_t)(e - b) != need)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                         "tensor \"%s\": dtype %s and shape %s need %llu bytes but data_offsets [%lld, %lld] "
                         "span %lld",
                         name, ft_st_dtype_name(t.dtype), sh, (unsigned long long)need, (long long)b, (long long)e,
                         (long long)(e - b));
    if ((uint64_t)e > data_len)
        return FT_ERR_AT(err, FT_ERR_RANGE, path, 0, 0,
                         "tensor \"%s\": data_offsets [%lld, %lld] run past the end of the data (%llu bytes): "
                         "the file is truncated or corrupt",
                         name, (long long)b, (long long)e, (unsigned long long)data_len);
    t.numel = (int64_t)numel;
    t.nbytes = (size_t)need;
    t.data = data + b;
    t.file = path;
    t.name = ft_strdup(name);
    if (!t.name)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (r->n_tensors == r->cap_tensors) {
        size_t nc = r->cap_tensors ? r->cap_tensors * 2 : 64;
        ft_st_tensor *nt = ft_realloc(r->tensors, nc * sizeof *nt);
        if (!nt) {
            ft_free((char *)t.name);
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        r->tensors = nt;
        r->cap_tensors = nc;
    }
    r->tensors[r->n_tensors++] = t;
    return FT_OK;
}

static ft_status parse_metadata(ft_st_reader *r, const char *path, json_t *m, bool keep, ft_err *err) {
    if (!json_is_object(m))
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "\"__metadata__\" must be an object of strings");
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v) {
        if (!json_is_string(v))
            return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "\"__metadata__\": \"%s\" must be a string", k);
    }
    if (!keep)
        return FT_OK;
    size_t n = json_object_size(m);
    r->meta = ft_calloc(2 * n + 1, sizeof *r->meta);
    if (!r->meta)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    json_object_foreach(m, k, v) {
        r->meta[2 * r->n_meta] = ft_strdup(k);
        r->meta[2 * r->n_meta + 1] = ft_strdup(json_string_value(v));
        r->n_meta++;
        if (!r->meta[2 * r->n_meta - 2] || !r->meta[2 * r->n_meta - 1])
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    return FT_OK;
}

/* Parse and validate the file at r->files[fi] (already mapped or borrowed), appending its tensors. */
static ft_status parse_file(ft_st_reader *r, size_t fi, ft_err *err) {
    const st_file *f = &r->files[fi];
    const char *path = f->path;
    if (f->len < 8)
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0,
                         "not a safetensors file: %zu bytes, shorter than the 8-byte header length", f->len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f->base[i];
    if (hlen > f->len - 8)
        return FT_ERR_AT(err, FT_ERR_RANGE, path, 0, 0,
                         "header length %llu runs past the end of the file (%zu bytes): truncated or not a "
                         "safetensors file",
                         (unsigned long long)hlen, f->len);
    if (hlen > MAX_HEADER_BYTES)
        return FT_ERR_AT(err, FT_ERR_LIMIT, path, 0, 0, "header of %llu bytes exceeds the 100 MB limit",
                         (unsigned long long)hlen);
    if (hlen < 2)
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "header is not a JSON object (%llu bytes)",
                         (unsigned long long)hlen);
    json_error_t je;
    json_t *root = json_loadb((const char *)f->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        ft_status s;
        if (strstr(je.text, "duplicate object key"))
            s = FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "duplicate tensor name in the header (%s)", je.text);
        else
            s = FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "header is not valid JSON: %s", je.text);
        if (err && je.position >= 0)
            err->offset = 8 + je.position;
        return s;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return FT_ERR_AT(err, FT_ERR_PARSE, path, 0, 0, "header is not a JSON object");
    }
    const uint8_t *data = f->base + 8 + hlen;
    uint64_t data_len = f->len - 8 - hlen;
    size_t first = r->n_tensors;
    ft_status s = FT_OK;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__"))
            s = parse_metadata(r, path, v, fi == 0, err);
        else
            s = parse_entry(r, f, data, data_len, k, v, err);
        if (s != FT_OK)
            break;
    }
    json_decref(root);
    if (s != FT_OK)
        return s;
    /* The tensors must tile [0, data_len) exactly, in offset order. */
    size_t n = r->n_tensors - first;
    ft_st_tensor *ts = n ? r->tensors + first : NULL;
    if (n)
        qsort(ts, n, sizeof *ts, cmp_by_offset);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t b = (uint64_t)((const uint8_t *)ts[i].data - data);
        if (b < at)
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                             "tensor \"%s\": data [%llu, %llu) overlaps tensor \"%s\" (which ends at %llu)", ts[i].name,
                             (unsigned long long)b, (unsigned long long)(b + ts[i].nbytes), ts[i - 1].name,
                             (unsigned long long)at);
        if (b > at)
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                             "tensor \"%s\": data starts at %llu but the previous data ends at %llu (a gap)",
                             ts[i].name, (unsigned long long)b, (unsigned long long)at);
        at = b + ts[i].nbytes;
    }
    if (at != data_len)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                         "the tensors cover %llu bytes of data but the file holds %llu after the header (%s)",
                         (unsigned long long)at, (unsigned long long)data_len,
                         n ? "trailing bytes" : "no tensors");
    return FT_OK;
}

static ft_status add_file(ft_st_reader *r, const char *path, const void *buf, size_t len, ft_err *err) {
    st_file *nf = ft_realloc(r->files, (r->n_files + 1) * sizeof *nf);
    if (!nf)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    r->files = nf;
    st_file *f = &r->files[r->n_files];
    memset(f, 0, sizeof *f);
    f->path = ft_strdup(path);
    if (!f->path)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    r->n_files++;
    if (buf) {
        f->base = buf;
        f->len = len;
        return FT_OK;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FT_ERR_AT(err, errno == ENOENT ? FT_ERR_NOT_FOUND : FT_ERR_IO, path, 0, 0, "cannot open: %s",
                         strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "not a regular file");
    }
    f->len = (size_t)st.st_size;
    if (f->len >= 8) {
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return FT_ERR_AT(err, FT_ERR_IO, path, 0, 0, "mmap failed: %s", strerror(e));
        }
        f->base = m;
        f->mapped = true;
    } else {
        static const uint8_t none[8];
        f->base = none; /* too short; parse_file reports it */
    }
    close(fd);
    return FT_OK;
}

static ft_status new_reader(ft_st_reader **out, ft_err *err) {
    *out = ft_calloc(1, sizeof **out);
    return *out ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
}

ft_status ft_st_open_buffer(const char *name, const void *data, size_t len, ft_st_reader **out, ft_err *err) {
    ft_st_reader *r;
    *out = NULL;
    FT_TRY(new_reader(&r, err));
    static const uint8_t none[8];
    ft_status s = add_file(r, name, data ? data : none, data ? len : 0, err);
    if (s == FT_OK)
        s = parse_file(r, 0, err);
    if (s == FT_OK)
        s = build_table(r, err);
    if (s != FT_OK) {
        ft_st_close(r);
        return s;
    }
    *out = r;
    return FT_OK;
}

static ft_status open_single(const char *path, ft_st_reader **out, ft_err *err) {
    ft_st_reader *r;
    FT_TRY(new_reader(&r, err));
    ft_status s = add_file(r, path, NULL, 0, err);
    if (s == FT_OK)
        s = parse_file(r, 0, err);
    if (s == FT_OK)
        s = build_table(r, err);
    if (s != FT_OK) {
        ft_st_close(r);
        return s;
    }
    *out = r;
    return FT_OK;
}

/* A sharded model: the index's weight_map names, for each tensor, the shard that holds it. */
static ft_status open_index(const char *index_path, ft_st_reader **out, ft_err *err) {
    json_t *root;
    FT_TRY(ft_json_load_file(index_path, &root, err));
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        json_decref(root);
        return FT_ERR_AT(err, FT_ERR_PARSE, index_path, 0, 0, "no \"weight_map\" object in the index");
    }
    char *dir = ft_path_parent(index_path);
    ft_st_reader *r = NULL;
    ft_status s = dir ? new_reader(&r, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    const char *k;
    json_t *v;
    /* Open each distinct shard once, in first-mention order. */
    json_object_foreach(wm, k, v) {
        if (s != FT_OK)
            break;
        if (!json_is_string(v)) {
            s = FT_ERR_AT(err, FT_ERR_PARSE, index_path, 0, 0, "weight_map: \"%s\" must name a file", k);
            break;
        }
        const char *shard = json_string_value(v);
        if (!shard[0] || strchr(shard, '/') || !strcmp(shard, ".") || !strcmp(shard, "..")) {
            s = FT_ERR_AT(err, FT_ERR_INVALID, index_path, 0, 0,
                          "weight_map: tensor \"%s\" names \"%s\", which is not a file in the model folder", k, shard);
            break;
        }
        char *sp = ft_path_join(dir, shard);
        if (!sp) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            break;
        }
        bool seen = false;
        for (size_t i = 0; i < r->n_files && !seen; i++)
            seen = !strcmp(r->files[i].path, sp);
        if (!seen) {
            size_t fi = r->n_files;
            s = add_file(r, sp, NULL, 0, err);
            if (s == FT_OK)
                s = parse_file(r, fi, err);
        }
        ft_free(sp);
    }
    if (s == FT_OK)
        s = build_table(r, err);
    /* Every tensor the index names must be in the shard it names. */
    json_object_foreach(wm, k, v) {
        if (s != FT_OK)
            break;
        const ft_st_tensor *t = ft_st_find(r, k);
        char *sp = ft_path_join(dir, json_string_value(v));
        if (!sp)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else if (!t)
            s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, sp, 0, 0, "tensor \"%s\" listed in %s is missing from this shard", k,
                          index_path);
        else if (strcmp(t->file, sp) != 0)
            s = FT_ERR_AT(err, FT_ERR_INVALID, sp, 0, 0, "tensor \"%s\" is in %s, not in the shard %s names", k,
                          t->file, index_path);
        ft_free(sp);
    }
    ft_free(dir);
    json_decref(root);
    if (s != FT_OK) {
        ft_st_close(r);
        return s;
    }
    *out = r;
    return FT_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

ft_status ft_st_open(const char *path, ft_st_reader **out, ft_err *err) {
    *out = NULL;
    if (!ft_path_is_dir(path)) {
        if (ends_with(path, ".json"))
            return open_index(path, out, err);
        return open_single(path, out, err);
    }
    /* transformers' order: the single file first, then the index. */
    char *p = ft_path_join(path, "model.safetensors");
    if (!p)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_status s;
    if (ft_path_exists(p)) {
        s = open_single(p, out, err);
        ft_free(p);
        return s;
    }
    ft_free(p);
    p = ft_path_join(path, "model.safetensors.index.json");
    if (!p)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (ft_path_exists(p)) {
        s = open_index(p, out, err);
        ft_free(p);
        return s;
    }
    ft_free(p);
    p = ft_path_join(path, "pytorch_model.bin");
    bool bin = p && ft_path_exists(p);
    ft_free(p);
    if (bin)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                         "the folder has PyTorch .bin weights only; ftune reads safetensors (convert with "
                         "transformers' save_pretrained(safe_serialization=True))");
    return FT_ERR_AT(err, FT_ERR_NOT_FOUND, path, 0, 0,
                     "no model.safetensors or model.safetensors.index.json in this folder");
}

/* ---------------------------------------------------------------- typed access */

ft_status ft_st_check_shape(const ft_st_tensor *t, int ndim, const int64_t *shape, ft_err *err) {
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (ok)
        return FT_OK;
    char got[256], want[256];
    shape_str(t->shape, t->ndim, got, sizeof got);
    shape_str(shape, ndim, want, sizeof want);
    return FT_ERR_AT(err, FT_ERR_INVALID, t->file, 0, 0, "tensor \"%s\" has shape %s, expected %s", t->name, got,
                     want);
}

ft_status ft_st_get(const ft_st_reader *r, const char *name, int ndim, const int64_t *shape, const ft_st_tensor **out,
                    ft_err *err) {
    const ft_st_tensor *t = ft_st_find(r, name);
    *out = NULL;
    if (!t)
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, r && r->n_files ? r->files[0].path : "", 0, 0,
                         "tensor \"%s\" is missing%s", name, r && r->n_files > 1 ? " from every shard" : "");
    if (shape)
        FT_TRY(ft_st_check_shape(t, ndim, shape, err));
    *out = t;
    return FT_OK;
}

ft_status ft_st_read_f32(const ft_st_tensor *t, float *out, int64_t n, ft_err *err) {
    if (n != t->numel)
        return FT_ERR_AT(err, FT_ERR_INVALID, t->file, 0, 0, "tensor \"%s\" has %lld elements, the caller expected %lld",
                         t->name, (long long)t->numel, (long long)n);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case FT_ST_DTYPE_F32:
        if (n)
            memcpy(out, p, (size_t)n * 4);
        return FT_OK;
    case FT_ST_DTYPE_BF16:
#pragma omp parallel for schedule(static) if (n >= ((int64_t)1 << 20))
        for (int64_t i = 0; i < n; i++)
            out[i] = ft_st_bf16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return FT_OK;
    case FT_ST_DTYPE_F16:
#pragma omp parallel for schedule(static) if (n >= ((int64_t)1 << 20))
        for (int64_t i = 0; i < n; i++)
            out[i] = ft_st_f16_to_f32((uint16_t)(p[2 * i] | (p[2 * i + 1] << 8)));
        return FT_OK;
    default:
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, t->file, 0, 0,
                         "tensor \"%s\": dtype %s cannot be read as floats (F32, BF16 or F16)", t->name,
                         ft_st_dtype_name(t->dtype));
    }
}
