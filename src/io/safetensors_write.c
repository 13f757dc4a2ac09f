/* io/safetensors_write.c: the streaming safetensors writer (include/ftune/safetensors.h).
 *
 * Why declare-then-stream: the header, which holds every tensor's offsets, comes first in the
 * file, so all shapes must be known before any data; the data can then go to disk as it is
 * produced, through a small staging buffer, and a model of any size is written with bounded
 * extra memory. Each output file is written as "<final>.tmp.<pid>" and renamed at finish after
 * fsync, so an interrupted write never leaves a complete-looking file behind. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ftune/json.h"
#include "ftune/safetensors.h"

#define STAGE_ELEMS ((size_t)1 << 18) /* 256 Ki elements: 1 MiB of fp32 staging */

typedef struct wtensor {
    char *name;
    ft_st_dtype dtype;
    int ndim;
    int64_t shape[FT_ST_MAX_DIMS];
    uint64_t nbytes;
    size_t shard;
    uint64_t offset; /* within its shard's data section */
} wtensor;

typedef struct wshard {
    char *final_path;
    char *tmp_path;
    uint64_t data_bytes;
    size_t first, count; /* tensors [first, first + count) */
    int fd;
    bool renamed;
} wshard;

struct ft_st_writer {
    char *path;
    ft_st_write_params p;
    wtensor *t;
    size_t n, cap;
    char **meta; /* key, value pairs */
    size_t n_meta;
    wshard *shards;
    size_t n_shards;
    bool started, finished, failed;
    size_t cur;        /* tensor being written */
    uint64_t cur_done; /* its bytes written so far */
    uint8_t *stage;
};

ft_st_write_params ft_st_write_default_params(void) {
    return (ft_st_write_params){.max_shard_bytes = 0, .durable = true};
}

ft_status ft_st_writer_new(const char *path, const ft_st_write_params *p, ft_st_writer **out, ft_err *err) {
    *out = NULL;
    ft_st_writer *w = ft_calloc(1, sizeof *w);
    if (!w || !(w->path = ft_strdup(path))) {
        ft_free(w);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    w->p = p ? *p : ft_st_write_default_params();
    *out = w;
    return FT_OK;
}

ft_status ft_st_writer_metadata(ft_st_writer *w, const char *key, const char *value, ft_err *err) {
    if (w->started)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: metadata after the first write");
    if (!strcmp(key, "format"))
        return FT_OK; /* always "pt" */
    char **nm = ft_realloc(w->meta, (w->n_meta + 1) * 2 * sizeof *nm);
    if (!nm)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    w->meta = nm;
    nm[2 * w->n_meta] = ft_strdup(key);
    nm[2 * w->n_meta + 1] = ft_strdup(value);
    w->n_meta++;
    if (!nm[2 * w->n_meta - 2] || !nm[2 * w->n_meta - 1])
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    return FT_OK;
}

ft_status ft_st_writer_add(ft_st_writer *w, const char *name, ft_st_dtype dtype, int ndim, const int64_t *shape,
                           ft_err *err) {
    if (w->started)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: tensor \"%s\" declared after the first write", name);
    if (!name[0] || !strcmp(name, "__metadata__"))
        return FT_ERR(err, FT_ERR_INVALID, "safetensors writer: invalid tensor name \"%s\"", name);
    if ((unsigned)dtype >= FT_ST_DTYPE_COUNT || ndim < 0 || ndim > FT_ST_MAX_DIMS)
        return FT_ERR(err, FT_ERR_INVALID, "safetensors writer: tensor \"%s\": bad dtype or ndim %d", name, ndim);
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return FT_ERR(err, FT_ERR_INVALID, "safetensors writer: tensor \"%s\" declared twice", name);
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && numel > (UINT64_MAX >> 4) / (uint64_t)shape[i]))
            return FT_ERR(err, FT_ERR_INVALID, "safetensors writer: tensor \"%s\": bad shape", name);
        numel *= (uint64_t)shape[i];
    }
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        wtensor *nt = ft_realloc(w->t, nc * sizeof *nt);
        if (!nt)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        w->t = nt;
        w->cap = nc;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = ft_strdup(name);
    if (!t->name)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = numel * ft_st_dtype_size(dtype);
    w->n++;
    return FT_OK;
}

/* Greedy sharding as transformers does it: start a new shard when the next tensor would push the
 * current one past the limit (a tensor bigger than the limit gets a shard of its own). */
static void plan_shards(ft_st_writer *w, size_t *n_shards) {
    size_t s = 0;
    uint64_t used = 0;
    bool any = false;
    for (size_t i = 0; i < w->n; i++) {
        if (w->p.max_shard_bytes && any && used + w->t[i].nbytes > w->p.max_shard_bytes) {
            s++;
            used = 0;
        }
        w->t[i].shard = s;
        w->t[i].offset = used;
        used += w->t[i].nbytes;
        any = true;
    }
    *n_shards = s + 1;
}

size_t ft_st_writer_n_shards(const ft_st_writer *w) {
    size_t n;
    plan_shards((ft_st_writer *)w, &n);
    return n;
}

/* "dir/model.safetensors" -> "dir/model-00002-of-00005.safetensors". */
static char *shard_name(const char *path, size_t i, size_t n) {
    size_t len = strlen(path);
    size_t stem = len >= 12 && !strcmp(path + len - 12, ".safetensors") ? len - 12 : len;
    return ft_asprintf("%.*s-%05zu-of-%05zu.safetensors", (int)stem, path, i + 1, n);
}

static char *build_header(const ft_st_writer *w, const wshard *sh, size_t *len) {
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta) {
        json_decref(root);
        json_decref(meta);
        return NULL;
    }
    json_object_set_new(meta, "format", json_string("pt"));
    for (size_t i = 0; i < w->n_meta; i++)
        json_object_set_new(meta, w->meta[2 * i], json_string(w->meta[2 * i + 1]));
    json_object_set_new(root, "__metadata__", meta);
    for (size_t i = sh->first; i < sh->first + sh->count; i++) {
        const wtensor *t = &w->t[i];
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_array_append_new(offs, json_integer((json_int_t)t->offset));
        json_array_append_new(offs, json_integer((json_int_t)(t->offset + t->nbytes)));
        json_object_set_new(e, "dtype", json_string(ft_st_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", offs);
        json_object_set_new(root, t->name, e);
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text)
        return NULL;
    /* Pad with spaces so that the data starts 8-byte aligned (8 + header length ≡ 0 mod 8). */
    size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
    char *out = ft_malloc(8 + padded);
    if (out) {
        uint64_t h = padded;
        for (int i = 0; i < 8; i++)
            out[i] = (char)(h >> (8 * i));
        memcpy(out + 8, text, n);
        memset(out + 8 + n, ' ', padded - n);
        *len = 8 + padded;
    }
    free(text);
    return out;
}

static ft_status open_shard(ft_st_writer *w, wshard *sh, ft_err *err) {
    sh->fd = open(sh->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sh->fd < 0)
        return FT_ERR_AT(err, FT_ERR_IO, sh->tmp_path, 0, 0, "cannot create: %s", strerror(errno));
    size_t hl = 0;
    char *h = build_header(w, sh, &hl);
    if (!h)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory building a safetensors header");
    ft_status s = ft_fd_write_all(sh->fd, h, hl, sh->tmp_path, err);
    ft_free(h);
    return s;
}

static ft_status close_shard(ft_st_writer *w, wshard *sh, ft_err *err) {
    if (sh->fd < 0)
        return FT_OK;
    ft_status s = FT_OK;
    if (w->p.durable && fsync(sh->fd) != 0)
        s = FT_ERR_AT(err, FT_ERR_IO, sh->tmp_path, 0, 0, "fsync failed: %s", strerror(errno));
    if (close(sh->fd) != 0 && s == FT_OK)
        s = FT_ERR_AT(err, FT_ERR_IO, sh->tmp_path, 0, 0, "close failed: %s", strerror(errno));
    sh->fd = -1;
    return s;
}

static ft_status start(ft_st_writer *w, ft_err *err) {
    size_t n;
    plan_shards(w, &n);
    w->shards = ft_calloc(n, sizeof *w->shards);
    w->stage = ft_malloc(STAGE_ELEMS * 4);
    if (!w->shards || !w->stage)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    w->n_shards = n;
    for (size_t i = 0; i < n; i++)
        w->shards[i].fd = -1;
    for (size_t i = 0; i < w->n; i++) {
        wshard *sh = &w->shards[w->t[i].shard];
        if (!sh->count)
            sh->first = i;
        sh->count++;
        sh->data_bytes += w->t[i].nbytes;
    }
    for (size_t i = 0; i < n; i++) {
        wshard *sh = &w->shards[i];
        sh->final_path = n == 1 ? ft_strdup(w->path) : shard_name(w->path, i, n);
        sh->tmp_path = sh->final_path ? ft_asprintf("%s.tmp.%ld", sh->final_path, (long)getpid()) : NULL;
        if (!sh->tmp_path)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    w->started = true;
    w->cur = 0;
    w->cur_done = 0;
    /* Zero-byte tensors at the front are complete already; open the first shard eagerly so that
     * an empty model still gets its file. */
    return open_shard(w, &w->shards[0], err);
}

/* Move past completed tensors, opening/closing shards at their boundaries. */
static ft_status advance(ft_st_writer *w, ft_err *err) {
    while (w->cur < w->n && w->cur_done == w->t[w->cur].nbytes) {
        size_t sh = w->t[w->cur].shard;
        w->cur++;
        w->cur_done = 0;
        size_t next = w->cur < w->n ? w->t[w->cur].shard : w->n_shards;
        if (next != sh) {
            FT_TRY(close_shard(w, &w->shards[sh], err));
            if (next < w->n_shards)
                FT_TRY(open_shard(w, &w->shards[next], err));
        }
    }
    return FT_OK;
}

/* Make `name` the tensor being written; *skip is set for an empty write (a zero-size tensor, which
 * is complete from the start and needs no data). */
static ft_status check_current(ft_st_writer *w, const char *name, bool empty, bool *skip, ft_err *err) {
    *skip = false;
    if (w->finished || w->failed)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: write after finish or failure");
    if (!w->started) {
        ft_status s = start(w, err);
        if (s == FT_OK)
            s = advance(w, err);
        if (s != FT_OK) {
            w->failed = true;
            return s;
        }
    }
    if (empty) {
        *skip = true;
        return FT_OK;
    }
    if (w->cur >= w->n)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: tensor \"%s\" written after all tensors were full",
                      name);
    if (strcmp(w->t[w->cur].name, name) != 0)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: wrote \"%s\" while \"%s\" is the next tensor", name,
                      w->t[w->cur].name);
    return FT_OK;
}

ft_status ft_st_writer_write_raw(ft_st_writer *w, const char *name, const void *data, size_t n, ft_err *err) {
    bool skip;
    FT_TRY(check_current(w, name, n == 0, &skip, err));
    if (skip)
        return FT_OK;
    wtensor *t = &w->t[w->cur];
    if (n > t->nbytes - w->cur_done)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: tensor \"%s\": %zu bytes exceed its %llu", name, n,
                      (unsigned long long)t->nbytes);
    wshard *sh = &w->shards[t->shard];
    ft_status s = ft_fd_write_all(sh->fd, data, n, sh->tmp_path, err);
    if (s == FT_OK) {
        w->cur_done += n;
        s = advance(w, err);
    }
    if (s != FT_OK)
        w->failed = true;
    return s;
}

ft_status ft_st_writer_write_f32(ft_st_writer *w, const char *name, const float *data, int64_t n, ft_err *err) {
    bool skip;
    FT_TRY(check_current(w, name, n == 0, &skip, err));
    if (skip)
        return FT_OK;
    wtensor *t = &w->t[w->cur];
    size_t esz = ft_st_dtype_size(t->dtype);
    if (t->dtype != FT_ST_DTYPE_F32 && t->dtype != FT_ST_DTYPE_BF16 && t->dtype != FT_ST_DTYPE_F16)
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "safetensors writer: tensor \"%s\": cannot convert floats to %s", name,
                      ft_st_dtype_name(t->dtype));
    if (n < 0 || (uint64_t)n > (t->nbytes - w->cur_done) / esz)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: tensor \"%s\": %lld elements exceed its size", name,
                      (long long)n);
    if (t->dtype == FT_ST_DTYPE_F32) /* little-endian host: the bytes are the format's */
        return ft_st_writer_write_raw(w, name, data, (size_t)n * 4, err);
    for (int64_t at = 0; at < n;) {
        size_t k = (size_t)(n - at) < STAGE_ELEMS * 2 ? (size_t)(n - at) : STAGE_ELEMS * 2;
        uint8_t *o = w->stage;
        for (size_t i = 0; i < k; i++) {
            uint16_t h = t->dtype == FT_ST_DTYPE_BF16 ? ft_st_f32_to_bf16(data[at + (int64_t)i])
                                                      : ft_st_f32_to_f16(data[at + (int64_t)i]);
            o[2 * i] = (uint8_t)h;
            o[2 * i + 1] = (uint8_t)(h >> 8);
        }
        FT_TRY(ft_st_writer_write_raw(w, name, o, k * 2, err));
        at += (int64_t)k;
    }
    return FT_OK;
}

static ft_status write_index(ft_st_writer *w, ft_err *err) {
    uint64_t total = 0;
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    if (!root || !meta || !wm) {
        json_decref(root);
        json_decref(meta);
        json_decref(wm);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < w->n; i++) {
        total += w->t[i].nbytes;
        const char *fp = w->shards[w->t[i].shard].final_path;
        const char *base = strrchr(fp, '/');
        json_object_set_new(wm, w->t[i].name, json_string(base ? base + 1 : fp));
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", wm);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    char *ip = ft_asprintf("%s.index.json", w->path);
    char *withnl = text ? ft_asprintf("%s\n", text) : NULL;
    free(text);
    ft_status s = ip && withnl ? ft_file_write_atomic(ip, withnl, strlen(withnl), err)
                               : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(ip);
    ft_free(withnl);
    return s;
}

/* Remove "<stem>-NNNNN-of-NNNNN.safetensors" files that this save did not write: shards of an
 * earlier save with another shard count, which the new index no longer names. */
static ft_status remove_stale_shards(ft_st_writer *w, ft_err *err) {
    const char *slash = strrchr(w->path, '/');
    const char *base = slash ? slash + 1 : w->path;
    size_t blen = strlen(base);
    size_t stem = blen >= 12 && !strcmp(base + blen - 12, ".safetensors") ? blen - 12 : blen;
    char *dir = slash ? ft_strndup(w->path, (size_t)(slash - w->path)) : ft_strdup(".");
    if (!dir)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (!dir[0]) {
        ft_free(dir);
        dir = ft_strdup("/");
        if (!dir)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    DIR *d = opendir(dir);
    ft_status s = FT_OK;
    struct dirent *e;
    while (d && s == FT_OK && (e = readdir(d))) {
        const char *n = e->d_name;
        unsigned a, b;
        int end = 0;
        if (strncmp(n, base, stem) != 0 || sscanf(n + stem, "-%5u-of-%5u.safetensors%n", &a, &b, &end) != 2 ||
            n[stem + (size_t)end] != 0 || strlen(n) != stem + 27)
            continue;
        bool ours = false;
        for (size_t i = 0; i < w->n_shards && !ours; i++) {
            const char *fp = w->shards[i].final_path, *fs = strrchr(fp, '/');
            ours = !strcmp(fs ? fs + 1 : fp, n);
        }
        if (ours)
            continue;
        char *p = ft_path_join(dir, n);
        if (!p)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        else if (unlink(p) != 0 && errno != ENOENT)
            s = FT_ERR_AT(err, FT_ERR_IO, p, 0, 0, "cannot remove a stale shard: %s", strerror(errno));
        ft_free(p);
    }
    if (d)
        closedir(d);
    ft_free(dir);
    return s;
}

ft_status ft_st_writer_finish(ft_st_writer *w, ft_err *err) {
    if (w->finished)
        return FT_OK;
    if (w->failed)
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: finish after a failed write");
    if (!w->started) {
        ft_status s = start(w, err);
        if (s == FT_OK)
            s = advance(w, err);
        if (s != FT_OK) {
            w->failed = true;
            return s;
        }
    }
    if (w->cur < w->n) {
        w->failed = true;
        return FT_ERR(err, FT_ERR_INTERNAL, "safetensors writer: tensor \"%s\" is incomplete (%llu of %llu bytes)",
                      w->t[w->cur].name, (unsigned long long)w->cur_done, (unsigned long long)w->t[w->cur].nbytes);
    }
    ft_status s = FT_OK;
    for (size_t i = 0; i < w->n_shards && s == FT_OK; i++)
        s = close_shard(w, &w->shards[i], err);
    for (size_t i = 0; i < w->n_shards && s == FT_OK; i++) {
        if (rename(w->shards[i].tmp_path, w->shards[i].final_path) != 0)
            s = FT_ERR_AT(err, FT_ERR_IO, w->shards[i].final_path, 0, 0, "rename from %s failed: %s",
                          w->shards[i].tmp_path, strerror(errno));
        else
            w->shards[i].renamed = true;
    }
    /* A stale single file or index from an earlier save would shadow (or contradict) this one:
     * transformers prefers model.safetensors over the index. */
    char *ip = ft_asprintf("%s.index.json", w->path);
    if (!ip && s == FT_OK)
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK && w->n_shards > 1) {
        s = write_index(w, err);
        if (s == FT_OK && unlink(w->path) != 0 && errno != ENOENT)
            s = FT_ERR_AT(err, FT_ERR_IO, w->path, 0, 0, "cannot remove the stale file: %s", strerror(errno));
    } else if (s == FT_OK) {
        if (unlink(ip) != 0 && errno != ENOENT)
            s = FT_ERR_AT(err, FT_ERR_IO, ip, 0, 0, "cannot remove the stale index: %s", strerror(errno));
    }
    ft_free(ip);
    if (s == FT_OK)
        s = remove_stale_shards(w, err);
    if (s == FT_OK && w->p.durable) {
        char *d = ft_path_parent(w->path);
        s = d ? ft_fsync_path(d, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(d);
    }
    if (s != FT_OK)
        w->failed = true;
    else
        w->finished = true;
    return s;
}

void ft_st_writer_free(ft_st_writer *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->n_shards; i++) {
        wshard *sh = &w->shards[i];
        if (sh->fd >= 0)
            close(sh->fd);
        if (!sh->renamed && sh->tmp_path)
            unlink(sh->tmp_path);
        ft_free(sh->final_path);
        ft_free(sh->tmp_path);
    }
    for (size_t i = 0; i < w->n; i++)
        ft_free(w->t[i].name);
    for (size_t i = 0; i < 2 * w->n_meta; i++)
        ft_free(w->meta[i]);
    ft_free(w->meta);
    ft_free(w->shards);
    ft_free(w->t);
    ft_free(w->stage);
    ft_free(w->path);
    ft_free(w);
}

ft_status ft_st_save_f32(const char *path, size_t n, const char *const *names, const int *ndims,
                         const int64_t *const *shapes, const float *const *data, ft_st_dtype dtype, ft_err *err) {
    ft_st_writer *w;
    FT_TRY(ft_st_writer_new(path, NULL, &w, err));
    ft_status s = FT_OK;
    for (size_t i = 0; i < n && s == FT_OK; i++)
        s = ft_st_writer_add(w, names[i], dtype, ndims[i], shapes[i], err);
    for (size_t i = 0; i < n && s == FT_OK; i++) {
        int64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++)
            numel *= shapes[i][d];
        s = ft_st_writer_write_f32(w, names[i], data[i], numel, err);
    }
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    return s;
}
