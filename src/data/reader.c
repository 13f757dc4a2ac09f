/* data/reader.c: the readers of training data (ftune/data.h): JSONL files and folders of
 * JSONL, streamed line by line in bounded memory; folders of .txt documents; the source
 * listing (recursive, sorted, symlink-loop safe) and the dbfs:/Volumes mapping (SPEC §1, §3).
 *
 * A JSONL reader holds one read buffer of at most max_line_bytes + chunk_bytes: a line that
 * does not fit is reported as an "over-long line" PROBLEM record and skipped to its newline,
 * so no input can make memory grow without bound. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "data/tables.h"

ft_reader_params ft_reader_default_params(void) {
    return (ft_reader_params){
        .max_line_bytes = (size_t)64 << 20,
        .max_file_bytes = (size_t)1 << 30,
        .chunk_bytes = (size_t)1 << 20,
    };
}

/* ---------------------------------------------------------------- source listing */

typedef struct file_list {
    char **rel; /* relative to the root ("" for a single file) */
    size_t n, cap;
} file_list;

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct walk {
    const char *ext; /* ".jsonl" or ".txt" */
    file_list files;
    dir_id *seen; /* every folder entered: a folder reached twice (symlink loop or alias) is skipped */
    size_t n_seen, cap_seen;
    size_t n_ignored;
} walk;

static ft_status list_push(file_list *l, char *s, ft_err *err) {
    if (!s)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory listing files");
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **p = ft_realloc(l->rel, cap * sizeof *p);
        if (!p) {
            ft_free(s);
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory listing files");
        }
        l->rel = p;
        l->cap = cap;
    }
    l->rel[l->n++] = s;
    return FT_OK;
}

static void list_free(file_list *l) {
    for (size_t i = 0; i < l->n; i++)
        ft_free(l->rel[i]);
    ft_free(l->rel);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static ft_status walk_dir(walk *w, const char *root, const char *rel, int depth, ft_err *err) {
    char *dir = rel[0] ? ft_path_join(root, rel) : ft_strdup(root);
    if (!dir)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    struct stat st;
    if (stat(dir, &st) != 0) {
        ft_free(dir);
        return FT_OK; /* vanished or dangling: nothing to read */
    }
    for (size_t i = 0; i < w->n_seen; i++)
        if (w->seen[i].dev == st.st_dev && w->seen[i].ino == st.st_ino) {
            ft_free(dir);
            return FT_OK;
        }
    if (depth > 64) {
        ft_free(dir);
        return FT_ERR_AT(err, FT_ERR_LIMIT, root, 0, 0, "folders nested more than 64 deep");
    }
    if (w->n_seen == w->cap_seen) {
        size_t cap = w->cap_seen ? w->cap_seen * 2 : 16;
        dir_id *p = ft_realloc(w->seen, cap * sizeof *p);
        if (!p) {
            ft_free(dir);
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        w->seen = p;
        w->cap_seen = cap;
    }
    w->seen[w->n_seen++] = (dir_id){st.st_dev, st.st_ino};

    DIR *d = opendir(dir);
    if (!d) {
        ft_status s = FT_ERR_AT(err, FT_ERR_IO, dir, 0, 0, "cannot open folder: %s", strerror(errno));
        ft_free(dir);
        return s;
    }
    /* Read all names first and sort them, so that which alias of a folder is entered first
     * (and so every listing) does not depend on readdir order. */
    file_list names = {0};
    ft_status s = FT_OK;
    struct dirent *de;
    while (s == FT_OK && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') /* ., .., hidden files and folders (.git, .ipynb_checkpoints) */
            continue;
        s = list_push(&names, ft_strdup(de->d_name), err);
    }
    closedir(d);
    if (s == FT_OK && names.n > 1)
        qsort(names.rel, names.n, sizeof *names.rel, cmp_str);
    for (size_t i = 0; s == FT_OK && i < names.n; i++) {
        char *child_rel = rel[0] ? ft_asprintf("%s/%s", rel, names.rel[i]) : ft_strdup(names.rel[i]);
        char *child = child_rel ? ft_path_join(root, child_rel) : NULL;
        if (!child) {
            ft_free(child_rel);
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            break;
        }
        struct stat cs;
        if (stat(child, &cs) != 0) {
            /* A data file that cannot be reached (a dangling symlink, say) must not silently
             * shrink the data set; anything else that vanished is not data. */
            int e = errno;
            if (ends_with(names.rel[i], w->ext)) {
                struct stat ls;
                bool link = lstat(child, &ls) == 0 && S_ISLNK(ls.st_mode);
                s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, child, 0, 0, "%s: %s; fix or remove it",
                              link ? "a symbolic link whose target does not exist" : "cannot read", strerror(e));
            }
            ft_free(child);
            ft_free(child_rel);
            continue;
        }
        if (S_ISDIR(cs.st_mode)) {
            s = walk_dir(w, root, child_rel, depth + 1, err);
            ft_free(child_rel);
        } else if (S_ISREG(cs.st_mode) && ends_with(names.rel[i], w->ext)) {
            s = list_push(&w->files, child_rel, err);
        } else {
            w->n_ignored++;
            ft_free(child_rel);
        }
        ft_free(child);
    }
    list_free(&names);
    ft_free(dir);
    return s;
}

/* ---------------------------------------------------------------- path kinds */

/* Table names and HF dataset ids are recognised by data/tables.c (src_looks_like_*). */

/* ---------------------------------------------------------------- the reader common part */

void data_reader_names_free(ft_reader *r) {
    for (size_t i = 0; i < r->n_sources; i++) {
        ft_free(r->source_names[i]);
        ft_free(r->source_paths[i]);
    }
    ft_free(r->source_names);
    ft_free(r->source_paths);
}

void ft_reader_free(ft_reader *r) {
    if (r)
        r->vt->free(r);
}

ft_status data_list_files(const char *path, const char *ext, char ***names_out, char ***paths_out, size_t *n_out,
                          ft_err *err) {
    *names_out = *paths_out = NULL;
    *n_out = 0;
    char *mapped = NULL;
    FT_TRY(ft_path_map(path, &mapped, err));
    struct stat st;
    if (stat(mapped, &st) != 0) {
        ft_free(mapped);
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, path, 0, 0, "no such file or folder");
    }
    walk w = {.ext = ext};
    ft_status s = FT_OK;
    if (S_ISDIR(st.st_mode))
        s = walk_dir(&w, mapped, "", 0, err);
    else
        s = list_push(&w.files, ft_strdup(""), err);
    ft_free(w.seen);
    if (s == FT_OK && w.files.n > 1)
        qsort(w.files.rel, w.files.n, sizeof *w.files.rel, cmp_str);
    char **names = NULL, **paths = NULL;
    if (s == FT_OK && w.files.n) {
        names = ft_calloc(w.files.n, sizeof *names);
        paths = ft_calloc(w.files.n, sizeof *paths);
        if (!names || !paths)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    size_t plen = strlen(path);
    bool slash = plen > 0 && path[plen - 1] == '/';
    for (size_t i = 0; s == FT_OK && i < w.files.n; i++) {
        const char *rel = w.files.rel[i];
        names[i] = rel[0] ? ft_asprintf("%s%s%s", path, slash ? "" : "/", rel) : ft_strdup(path);
        paths[i] = rel[0] ? ft_path_join(mapped, rel) : ft_strdup(mapped);
        if (!names[i] || !paths[i])
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    size_t n = w.files.n;
    list_free(&w.files);
    ft_free(mapped);
    if (s != FT_OK) {
        for (size_t i = 0; i < n && names; i++) {
            ft_free(names[i]);
            ft_free(paths[i]);
        }
        ft_free(names);
        ft_free(paths);
        return s;
    }
    *names_out = names;
    *paths_out = paths;
    *n_out = n;
    return FT_OK;
}

/* A .parquet file, or a folder with .parquet files and none of the task's own kind. */
static ft_status try_parquet(const char *path, const char *mapped, bool is_dir, const char *own_ext, ft_task_type task,
                             const ft_reader_params *rp, ft_reader **out, bool *taken, ft_err *err) {
    *taken = false;
    struct stat st;
    if (!is_dir && (!ends_with(mapped, ".parquet") || stat(mapped, &st) != 0 || !S_ISREG(st.st_mode)))
        return FT_OK; /* not parquet, or a device/pipe named *.parquet: refused below */
    char **names, **paths;
    size_t n;
    FT_TRY(data_list_files(path, ".parquet", &names, &paths, &n, err));
    if (n == 0)
        return FT_OK;
    ft_status s = FT_OK;
    if (is_dir) {
        char **on, **op;
        size_t m;
        s = data_list_files(path, own_ext, &on, &op, &m, err);
        if (s == FT_OK && m > 0)
            s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                          "this folder has both %s and .parquet files (%zu and %zu): point at a folder with one kind",
                          own_ext, m, n);
        for (size_t i = 0; i < m; i++) {
            ft_free(on[i]);
            ft_free(op[i]);
        }
        if (m) {
            ft_free(on);
            ft_free(op);
        }
    }
    if (s == FT_OK) {
        s = data_parquet_reader_new(names, paths, n, task, rp, out, err);
        *taken = s == FT_OK;
    }
    if (s != FT_OK) {
        for (size_t i = 0; i < n; i++) {
            ft_free(names[i]);
            ft_free(paths[i]);
        }
        ft_free(names);
        ft_free(paths);
    }
    return s;
}

/* Read [off, off+len) of a file into scratch (NUL-terminated). */
static ft_status pread_range(const char *path, const char *name, int64_t off, int64_t len, ft_buf *scratch,
                             ft_err *err) {
    scratch->len = 0;
    if (len < 0 || off < 0)
        return FT_ERR_AT(err, FT_ERR_RANGE, name, 0, 0, "bad record location");
    FT_TRY(ft_buf_reserve(scratch, (size_t)len + 1));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FT_ERR_AT(err, FT_ERR_IO, name, 0, 0, "cannot open: %s", strerror(errno));
    size_t got = 0;
    while (got < (size_t)len) {
        ssize_t r = pread(fd, scratch->data + got, (size_t)len - got, (off_t)(off + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            return FT_ERR_AT(err, FT_ERR_IO, name, 0, 0, "%s (the file changed since it was validated?)",
                             r < 0 ? strerror(e) : "unexpected end of file");
        }
        got += (size_t)r;
    }
    close(fd);
    scratch->len = (size_t)len;
    scratch->data[len] = 0;
    return FT_OK;
}

/* ---------------------------------------------------------------- JSONL */

typedef struct jsonl_reader {
    ft_reader base;
    ft_reader_params p;
    int32_t cur; /* source being read, -1 before the first */
    int fd;
    char *buf;
    size_t cap, pos, end; /* unread bytes are buf[pos, end) */
    int64_t buf_off;      /* file offset of buf[0] */
    int64_t line;         /* lines consumed so far in this file */
    bool eof, skipping, any_record;
    char problem[160];
} jsonl_reader;

static void jsonl_close_file(jsonl_reader *r) {
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

static ft_status jsonl_open_file(jsonl_reader *r, ft_err *err) {
    const char *path = r->base.source_paths[r->cur];
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return FT_ERR_AT(err, FT_ERR_IO, r->base.source_names[r->cur], 0, 0, "cannot open: %s", strerror(errno));
    r->pos = r->end = 0;
    r->buf_off = 0;
    r->line = 0;
    r->eof = r->skipping = r->any_record = false;
    return FT_OK;
}

/* Make room and read one more chunk after the unread bytes. */
static ft_status jsonl_fill(jsonl_reader *r, ft_err *err) {
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->end - r->pos);
        r->buf_off += (int64_t)r->pos;
        r->end -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->end < r->p.chunk_bytes) {
        size_t cap = r->cap ? r->cap : r->p.chunk_bytes;
        while (cap - r->end < r->p.chunk_bytes)
            cap *= 2;
        char *nb = ft_realloc(r->buf, cap);
        if (!nb)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory reading %s", r->base.source_names[r->cur]);
        r->buf = nb;
        r->cap = cap;
    }
    for (;;) {
        ssize_t n = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return FT_ERR_AT(err, FT_ERR_IO, r->base.source_names[r->cur], 0, 0, "read failed: %s",
                             strerror(errno));
        if (n == 0)
            r->eof = true;
        r->end += (size_t)n;
        return FT_OK;
    }
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v')
            return false;
    return true;
}

static ft_status jsonl_next(ft_reader *base, ft_record *rec, bool *done, ft_err *err) {
    jsonl_reader *r = (jsonl_reader *)base;
    *done = false;
    for (;;) {
        if (r->fd < 0) {
            if (r->cur + 1 >= (int32_t)r->base.n_sources) {
                *done = true;
                return FT_OK;
            }
            r->cur++;
            FT_TRY(jsonl_open_file(r, err));
        }
        char *start = r->buf ? r->buf + r->pos : NULL;
        char *nl = r->end > r->pos ? memchr(start, '\n', r->end - r->pos) : NULL;
        if (r->skipping) {
            /* the rest of an over-long line: drop it without keeping it */
            if (nl) {
                r->pos = (size_t)(nl - r->buf) + 1;
                r->skipping = false;
                continue;
            }
            r->pos = r->end;
            if (r->eof) {
                r->skipping = false;
                continue;
            }
            FT_TRY(jsonl_fill(r, err));
            continue;
        }
        size_t len;
        if (nl) {
            len = (size_t)(nl - start);
        } else if (r->eof) {
            if (r->pos == r->end) { /* end of this file */
                jsonl_close_file(r);
                if (!r->any_record) {
                    memset(rec, 0, sizeof *rec);
                    rec->kind = FT_RECORD_PROBLEM;
                    rec->loc = (ft_data_loc){r->cur, 1, 0, 0};
                    rec->problem = "empty file: no records";
                    rec->problem_column = 1;
                    rec->problem_offset = 0;
                    return FT_OK;
                }
                continue;
            }
            len = r->end - r->pos; /* last line without a newline */
        } else if (r->end - r->pos > r->p.max_line_bytes) {
            r->line++;
            memset(rec, 0, sizeof *rec);
            rec->kind = FT_RECORD_PROBLEM;
            rec->loc = (ft_data_loc){r->cur, r->line, r->buf_off + (int64_t)r->pos, 0};
            snprintf(r->problem, sizeof r->problem, "over-long line: more than %zu bytes", r->p.max_line_bytes);
            rec->problem = r->problem;
            rec->problem_column = 1;
            rec->problem_offset = r->buf_off + (int64_t)r->pos;
            r->any_record = true;
            r->skipping = true;
            r->pos = r->end;
            return FT_OK;
        } else {
            FT_TRY(jsonl_fill(r, err));
            continue;
        }
        int64_t off = r->buf_off + (int64_t)r->pos;
        r->pos += len + (nl ? 1 : 0);
        r->line++;
        if (len > r->p.max_line_bytes) { /* found its end in the same fill: still too long */
            memset(rec, 0, sizeof *rec);
            rec->kind = FT_RECORD_PROBLEM;
            rec->loc = (ft_data_loc){r->cur, r->line, off, 0};
            snprintf(r->problem, sizeof r->problem, "over-long line: more than %zu bytes", r->p.max_line_bytes);
            rec->problem = r->problem;
            rec->problem_column = 1;
            rec->problem_offset = off;
            r->any_record = true;
            return FT_OK;
        }
        if (r->line == 1 && len >= 3 && memcmp(start, "\xEF\xBB\xBF", 3) == 0) {
            start += 3;
            len -= 3;
            off += 3;
        }
        if (len > 0 && start[len - 1] == '\r')
            len--;
        if (blank(start, len))
            continue;
        r->any_record = true;
        memset(rec, 0, sizeof *rec);
        rec->kind = FT_RECORD_JSON_TEXT;
        rec->data = start;
        rec->len = len;
        rec->loc = (ft_data_loc){r->cur, r->line, off, (int64_t)len};
        return FT_OK;
    }
}

/* Fetch one record by location: both file readers keep (source, byte range) locations. */
static ft_status fetch_range(ft_reader *base, const ft_data_loc *loc, ft_buf *scratch, ft_record_kind kind,
                             ft_record *rec, ft_err *err) {
    if (loc->source < 0 || (size_t)loc->source >= base->n_sources)
        return FT_ERR(err, FT_ERR_RANGE, "record location names source %d of %zu", (int)loc->source,
                      base->n_sources);
    FT_TRY(pread_range(base->source_paths[loc->source], base->source_names[loc->source], loc->a, loc->b, scratch,
                       err));
    memset(rec, 0, sizeof *rec);
    rec->kind = kind;
    rec->data = scratch->data;
    rec->len = scratch->len;
    rec->loc = *loc;
    return FT_OK;
}

static ft_status jsonl_fetch(ft_reader *base, const ft_data_loc *loc, ft_buf *scratch, ft_record *rec,
                             ft_err *err) {
    return fetch_range(base, loc, scratch, FT_RECORD_JSON_TEXT, rec, err);
}

static ft_status jsonl_rewind(ft_reader *base, ft_err *err) {
    (void)err;
    jsonl_reader *r = (jsonl_reader *)base;
    jsonl_close_file(r);
    r->cur = -1;
    return FT_OK;
}

static void jsonl_free(ft_reader *base) {
    jsonl_reader *r = (jsonl_reader *)base;
    jsonl_close_file(r);
    ft_free(r->buf);
    data_reader_names_free(base);
    ft_free(r);
}

static const ft_reader_vtable jsonl_vt = {"jsonl", jsonl_next, jsonl_fetch, jsonl_rewind, jsonl_free, NULL};

/* ---------------------------------------------------------------- .txt documents */

typedef struct txt_reader {
    ft_reader base;
    ft_reader_params p;
    int32_t cur;
    ft_buf buf;
    char problem[160];
} txt_reader;

static ft_status txt_read(txt_reader *r, int32_t i, ft_buf *into, ft_record *rec, ft_err *err) {
    const char *path = r->base.source_paths[i], *name = r->base.source_names[i];
    struct stat st;
    memset(rec, 0, sizeof *rec);
    rec->loc = (ft_data_loc){i, 0, 0, 0};
    if (stat(path, &st) != 0)
        return FT_ERR_AT(err, FT_ERR_IO, name, 0, 0, "cannot stat: %s", strerror(errno));
    if ((uint64_t)st.st_size > r->p.max_file_bytes) {
        rec->kind = FT_RECORD_PROBLEM;
        snprintf(r->problem, sizeof r->problem, "file too large: %lld bytes, the limit is %zu",
                 (long long)st.st_size, r->p.max_file_bytes);
        rec->problem = r->problem;
        rec->loc.line = 1;
        rec->problem_column = 1;
        rec->problem_offset = 0;
        return FT_OK;
    }
    FT_TRY(pread_range(path, name, 0, (int64_t)st.st_size, into, err));
    int64_t skip = into->len >= 3 && memcmp(into->data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    if ((int64_t)into->len == skip) {
        rec->kind = FT_RECORD_PROBLEM;
        rec->problem = "empty file";
        rec->loc.line = 1;
        rec->problem_column = 1;
        rec->problem_offset = 0;
        return FT_OK;
    }
    rec->kind = FT_RECORD_TEXT;
    rec->data = into->data + skip;
    rec->len = into->len - (size_t)skip;
    rec->loc.a = skip;
    rec->loc.b = (int64_t)rec->len;
    return FT_OK;
}

static ft_status txt_next(ft_reader *base, ft_record *rec, bool *done, ft_err *err) {
    txt_reader *r = (txt_reader *)base;
    if (r->cur + 1 >= (int32_t)base->n_sources) {
        *done = true;
        return FT_OK;
    }
    *done = false;
    r->cur++;
    return txt_read(r, r->cur, &r->buf, rec, err);
}

static ft_status txt_fetch(ft_reader *base, const ft_data_loc *loc, ft_buf *scratch, ft_record *rec, ft_err *err) {
    return fetch_range(base, loc, scratch, FT_RECORD_TEXT, rec, err);
}

static ft_status txt_rewind(ft_reader *base, ft_err *err) {
    (void)err;
    ((txt_reader *)base)->cur = -1;
    return FT_OK;
}

static void txt_free(ft_reader *base) {
    txt_reader *r = (txt_reader *)base;
    ft_buf_free(&r->buf);
    data_reader_names_free(base);
    ft_free(r);
}

static const ft_reader_vtable txt_vt = {"txt", txt_next, txt_fetch, txt_rewind, txt_free, NULL};

/* ---------------------------------------------------------------- open */

ft_status ft_reader_open(const char *path, ft_task_type task, const ft_reader_params *p, ft_reader **out,
                         ft_err *err) {
    *out = NULL;
    ft_reader_params rp = p ? *p : ft_reader_default_params();
    ft_reader_params dp = ft_reader_default_params();
    if (!rp.max_line_bytes)
        rp.max_line_bytes = dp.max_line_bytes;
    if (!rp.max_file_bytes)
        rp.max_file_bytes = dp.max_file_bytes;
    if (!rp.chunk_bytes)
        rp.chunk_bytes = dp.chunk_bytes;
    bool cpt = task == FT_TASK_CONTINUED_PRETRAIN;

    /* Delta tables, Hugging Face datasets, Arrow and Parquet files (data/tables.c) */
    if (src_is_table_path(path))
        return src_reader_open(path, task, &rp, out, err);
    char *mapped = NULL;
    FT_TRY(ft_path_map(path, &mapped, err));
    struct stat st;
    if (stat(mapped, &st) != 0) {
        ft_status s;
        if (src_looks_like_table_name(path))
            s = FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                          "reading Delta tables (catalog.schema.table) is not implemented yet; export the table "
                          "to JSONL under /Volumes");
        else if (src_looks_like_hf_dataset(path))
            s = FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                          "no such file or folder, and reading Hugging Face datasets (org/name/split) is not "
                          "implemented yet");
        else
            s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, path, 0, 0, "no such file or folder%s%s%s",
                          strcmp(mapped, path) ? " (looked at " : "", strcmp(mapped, path) ? mapped : "",
                          strcmp(mapped, path) ? ")" : "");
        ft_free(mapped);
        return s;
    }

    walk w = {.ext = cpt ? ".txt" : ".jsonl"};
    ft_status s = FT_OK;
    bool is_dir = S_ISDIR(st.st_mode);
    bool taken = false;
    if (is_dir && src_folder_has_arrow(mapped)) { /* Arrow files (and Parquet beside them): data/tables.c */
        ft_free(mapped);
        return src_reader_open(path, task, &rp, out, err);
    }
    s = try_parquet(path, mapped, is_dir, w.ext, task, &rp, out, &taken, err);
    if (s != FT_OK || taken) {
        ft_free(mapped);
        return s;
    }
    if (is_dir) {
        s = walk_dir(&w, mapped, "", 0, err);
        if (s == FT_OK && w.files.n == 0)
            s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                          "no %s, .parquet or .arrow files in this folder (searched recursively)%s", w.ext,
                          cpt ? "" : "; CONTINUED_PRETRAIN reads .txt files, chat and instruction data .jsonl");
    } else if (!S_ISREG(st.st_mode)) {
        /* A device (/dev/zero), pipe or socket: validation reads the data once and training
         * reads records again by their byte offsets, and such a stream may never end. */
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                      "not a regular file (a %s): training data must be a file or a folder of files, which "
                      "ftune reads more than once; copy the stream to a file first",
                      S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "device" : S_ISFIFO(st.st_mode) ? "pipe" : "socket");
    } else if (ends_with(mapped, ".arrow")) {
        s = FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0, "reading Arrow files is not implemented yet");
    } else if (cpt && !ends_with(mapped, ".txt")) {
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                      "CONTINUED_PRETRAIN reads a folder of .txt files (or one .txt file)");
    } else {
        s = list_push(&w.files, ft_strdup(""), err);
    }
    ft_free(w.seen);
    if (s != FT_OK) {
        list_free(&w.files);
        ft_free(mapped);
        return s;
    }
    qsort(w.files.rel, w.files.n, sizeof *w.files.rel, cmp_str);

    ft_reader *r = cpt ? ft_calloc(1, sizeof(txt_reader)) : ft_calloc(1, sizeof(jsonl_reader));
    char **names = ft_calloc(w.files.n, sizeof *names), **paths = ft_calloc(w.files.n, sizeof *paths);
    if (!r || !names || !paths) {
        ft_free(r);
        ft_free(names);
        ft_free(paths);
        list_free(&w.files);
        ft_free(mapped);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    r->source_names = names;
    r->source_paths = paths;
    r->n_sources = w.files.n;
    size_t plen = strlen(path);
    bool slash = plen > 0 && path[plen - 1] == '/';
    for (size_t i = 0; i < w.files.n; i++) {
        const char *rel = w.files.rel[i];
        names[i] = rel[0] ? ft_asprintf("%s%s%s", path, slash ? "" : "/", rel) : ft_strdup(path);
        paths[i] = rel[0] ? ft_path_join(mapped, rel) : ft_strdup(mapped);
        if (!names[i] || !paths[i])
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    list_free(&w.files);
    ft_free(mapped);
    if (cpt) {
        txt_reader *t = (txt_reader *)r;
        r->vt = &txt_vt;
        t->p = rp;
        t->cur = -1;
    } else {
        jsonl_reader *j = (jsonl_reader *)r;
        r->vt = &jsonl_vt;
        j->p = rp;
        j->cur = -1;
        j->fd = -1;
    }
    if (s != FT_OK) {
        ft_reader_free(r);
        return s;
    }
    *out = r;
    return FT_OK;
}

/* ---------------------------------------------------------------- data head */

ft_status ft_data_head(const char *source, const ft_data_head_params *p, ft_data_row_fn fn, void *ctx, ft_err *err) {
    ft_data_head_params dp;
    if (!p) {
        ft_data_head_default_params(&dp);
        p = &dp;
    }
    /* Delta tables, HF datasets, Arrow files and folders holding them (data/tables.c) */
    if (src_is_table_path(source) || p->table_version >= 0)
        return src_head(source, p, fn, ctx, err);
    char *mapped = NULL;
    FT_TRY(ft_path_map(source, &mapped, err));
    struct stat st;
    bool exists = stat(mapped, &st) == 0;
    if (exists && S_ISDIR(st.st_mode) && src_folder_has_arrow(mapped)) {
        ft_free(mapped);
        return src_head(source, p, fn, ctx, err);
    }
    ft_free(mapped);
    if (!exists) /* table names and HF ids went to src_head above */
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, source, 0, 0, "no such file or folder");
    char **names, **paths;
    size_t n;
    FT_TRY(data_list_files(source, ".parquet", &names, &paths, &n, err));
    ft_status s;
    if (n == 0)
        s = FT_ERR_AT(err, FT_ERR_INVALID, source, 0, 0, "not a .parquet file or a folder with .parquet files");
    else
        s = data_parquet_head(names, paths, n, p, fn, ctx, err);
    for (size_t i = 0; i < n; i++) {
        ft_free(names[i]);
        ft_free(paths[i]);
    }
    ft_free(names);
    ft_free(paths);
    return s;
}
