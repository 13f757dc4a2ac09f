/* data/tables.c: table sources as ft_readers (ftune/data.h): Delta tables, Hugging Face datasets
 * in the local caches, Arrow IPC files and folders of Parquet/Arrow files. What the user wrote
 * resolves to a src_set (the files to read, in order, and for Delta the snapshot that types and
 * filters their rows); a src_cursor walks its rows one record batch / row group at a time; the
 * reader turns each row's task columns into a record (data_row_to_record) and, unless the
 * caller never fetches, spills its JSON so the loader can fetch it again in any order
 * (data/table.h).
 *
 * Rows are located as (file, 1-based row in the file): Delta rows keep their physical row
 * number in the data file even when a deletion vector hides rows before them. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/parquet.h"
#include "data/sources.h"
#include "data/tables.h"

/* ---------------------------------------------------------------- Parquet rows as JSON (checkpoints) */

ft_status src_parquet_each_row(const char *path, const char *name, const char *const *columns, src_row_fn fn,
                               void *ctx, ft_err *err) {
    pq_file *f;
    FT_TRY(pq_open(path, name, &f, err));
    int32_t cols[64];
    const char *names[64];
    size_t n = 0;
    for (size_t i = 0; columns && columns[i] && n < 64; i++) {
        int32_t c = pq_find_column(f, columns[i]);
        if (c >= 0) {
            cols[n] = c;
            names[n++] = columns[i];
        }
    }
    pq_rows rows = {0};
    ft_status s = FT_OK;
    for (int64_t rg = 0; s == FT_OK && rg < pq_num_row_groups(f); rg++) {
        s = pq_read_row_group(f, rg, cols, n, &rows, err);
        for (int64_t r = 0; s == FT_OK && r < rows.n; r++) {
            json_t *o = json_object();
            if (!o)
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            for (size_t k = 0; s == FT_OK && k < n; k++) {
                json_t *v;
                s = data_value_to_json(&rows.cells[r * (int64_t)rows.n_columns + (int64_t)k], &v, err);
                if (s == FT_OK && json_object_set_new(o, names[k], v) != 0)
                    s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            }
            if (s == FT_OK)
                s = fn(ctx, o, rows.first_row + r, err);
            json_decref(o);
        }
    }
    pq_rows_free(&rows);
    pq_close(f);
    if (s != FT_OK && err && !err->file[0])
        snprintf(err->file, sizeof err->file, "%s", name);
    return s;
}

/* ---------------------------------------------------------------- sets of files */

void src_set_free(src_set *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        ft_free(s->files[i].path);
        ft_free(s->files[i].name);
    }
    ft_free(s->files);
    ft_free(s->summary);
    ft_free(s->hf);
    ft_free(s->hf_rev);
    delta_snapshot_free(s->delta);
    ft_free(s);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static ft_status set_push(src_set *s, src_kind kind, const char *path, char *name_owned, const delta_file *df,
                          ft_err *err) {
    src_file *nf = ft_realloc(s->files, (s->n + 1) * sizeof *nf);
    if (!nf) {
        ft_free(name_owned);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    s->files = nf;
    src_file *f = &s->files[s->n];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->path = ft_strdup(path);
    f->name = name_owned;
    f->df = df;
    if (!f->path || !f->name) {
        ft_free(f->path);
        ft_free(f->name);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    s->n++;
    return FT_OK;
}

src_kind src_kind_of(const char *path) {
    return ends_with(path, ".arrow") ? SRC_ARROW : SRC_PARQUET;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every *.parquet / *.arrow file under `dir` (recursive, hidden entries skipped), sorted. */
static ft_status list_table_files(const char *dir, const char *rel, int depth, char ***out, size_t *n, size_t *cap,
                                  ft_err *err) {
    if (depth > 32)
        return FT_OK;
    char *full = rel[0] ? ft_path_join(dir, rel) : ft_strdup(dir);
    if (!full)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    DIR *d = opendir(full);
    if (!d) {
        ft_free(full);
        return FT_OK;
    }
    char **names = NULL;
    size_t nn = 0, nc = 0;
    struct dirent *de;
    ft_status s = FT_OK;
    while (s == FT_OK && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || de->d_name[0] == '_')
            continue; /* hidden, _delta_log, _SUCCESS */
        if (nn == nc) {
            nc = nc ? nc * 2 : 16;
            char **p = ft_realloc(names, nc * sizeof *p);
            if (!p) {
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                break;
            }
            names = p;
        }
        if (!(names[nn++] = ft_strdup(de->d_name)))
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    closedir(d);
    if (s == FT_OK && nn)
        qsort(names, nn, sizeof *names, cmp_str);
    for (size_t i = 0; s == FT_OK && i < nn; i++) {
        char *crel = rel[0] ? ft_asprintf("%s/%s", rel, names[i]) : ft_strdup(names[i]);
        char *cfull = crel ? ft_path_join(dir, crel) : NULL;
        struct stat st;
        if (!cfull) {
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        } else if (stat(cfull, &st) == 0 && S_ISDIR(st.st_mode)) {
            s = list_table_files(dir, crel, depth + 1, out, n, cap, err);
        } else if (ends_with(names[i], ".parquet") || ends_with(names[i], ".arrow")) {
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 16;
                char **p = ft_realloc(*out, *cap * sizeof *p);
                if (!p)
                    s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
                else
                    *out = p;
            }
            if (s == FT_OK) {
                (*out)[(*n)++] = crel;
                crel = NULL;
            }
        }
        ft_free(crel);
        ft_free(cfull);
    }
    for (size_t i = 0; i < nn; i++)
        ft_free(names[i]);
    ft_free(names);
    ft_free(full);
    return s;
}

bool src_folder_has_arrow(const char *dir) {
    char **files = NULL;
    size_t n = 0, cap = 0;
    ft_status s = list_table_files(dir, "", 0, &files, &n, &cap, NULL);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        any = any || ends_with(files[i], ".arrow");
        ft_free(files[i]);
    }
    ft_free(files);
    return s == FT_OK && any;
}

static ft_status open_folder(const char *spec, const char *dir, src_set *set, ft_err *err) {
    char **files = NULL;
    size_t n = 0, cap = 0;
    ft_status s = list_table_files(dir, "", 0, &files, &n, &cap, err);
    if (s == FT_OK && n == 0)
        s = FT_ERR_AT(err, FT_ERR_INVALID, spec, 0, 0, "no .parquet or .arrow files in this folder");
    size_t sl = strlen(spec);
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        char *p = ft_path_join(dir, files[i]);
        char *nm = ft_asprintf("%s%s%s", spec, sl && spec[sl - 1] == '/' ? "" : "/", files[i]);
        s = p ? set_push(set, src_kind_of(files[i]), p, nm, NULL, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        ft_free(p);
    }
    for (size_t i = 0; i < n; i++)
        ft_free(files[i]);
    ft_free(files);
    if (s == FT_OK)
        set->summary = ft_asprintf("folder %s: %zu file%s", spec, set->n, set->n == 1 ? "" : "s");
    return s;
}

static ft_status open_delta(const char *spec, const char *root, int64_t version, src_set *set, ft_err *err) {
    char *display = ft_strdup(spec);
    if (!display)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    char *at = strrchr(display, '@');
    if (at && at[1] >= '0' && at[1] <= '9')
        *at = 0;
    ft_status s = delta_snapshot_load(root, display, version, &set->delta, err);
    for (size_t i = 0; s == FT_OK && i < set->delta->n_files; i++) {
        const delta_file *f = &set->delta->files[i];
        char *nm = ft_asprintf("%s@v%lld/%s", display, (long long)set->delta->version, f->rel);
        s = set_push(set, src_kind_of(f->rel), f->abs, nm, f, err);
    }
    if (s == FT_OK)
        set->summary = ft_asprintf("Delta table %s, version %lld: %zu data file%s", display,
                                   (long long)set->delta->version, set->n, set->n == 1 ? "" : "s");
    ft_free(display);
    return s;
}

/* `name@N`: the version suffix, or -1. */
static int64_t version_suffix(const char *spec, size_t *base_len) {
    *base_len = strlen(spec);
    const char *at = strrchr(spec, '@');
    if (!at || !at[1])
        return -1;
    for (const char *p = at + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    *base_len = (size_t)(at - spec);
    return strtoll(at + 1, NULL, 10);
}

ft_status src_set_open(const char *spec, int64_t version, src_set **out, ft_err *err) {
    *out = NULL;
    src_set *set = ft_calloc(1, sizeof *set);
    if (!set)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    size_t blen;
    int64_t sv = version_suffix(spec, &blen);
    char *base = ft_strndup(spec, blen);
    char *mapped = NULL;
    ft_status ms = base ? ft_path_map(base, &mapped, err) : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    if (ms != FT_OK) {
        ft_free(base);
        src_set_free(set);
        return ms;
    }
    if (sv >= 0 && version >= 0 && sv != version) {
        ft_status s = FT_ERR_AT(err, FT_ERR_INVALID, spec, 0, 0,
                                "two table versions given: @%lld in the name and --table-version %lld",
                                (long long)sv, (long long)version);
        ft_free(base);
        ft_free(mapped);
        src_set_free(set);
        return s;
    }
    if (sv >= 0)
        version = sv;
    ft_status s;
    struct stat st;
    bool exists = stat(mapped, &st) == 0;
    if (exists && S_ISDIR(st.st_mode) && delta_is_table(mapped)) {
        s = open_delta(spec, mapped, version, set, err);
    } else if (exists && version >= 0) {
        s = FT_ERR_AT(err, FT_ERR_INVALID, spec, 0, 0,
                      "a table version was given, but this is not a Delta table (no _delta_log folder)");
    } else if (exists && S_ISDIR(st.st_mode)) {
        s = open_folder(spec, mapped, set, err);
    } else if (exists) {
        s = set_push(set, src_kind_of(mapped), mapped, ft_strdup(spec), NULL, err);
        if (s == FT_OK)
            set->summary = ft_asprintf("file %s", spec);
    } else if (src_looks_like_table_name(base)) {
        char *root = NULL;
        int64_t v2 = -1;
        s = delta_resolve(base, &root, &v2, err);
        if (s == FT_OK)
            s = open_delta(spec, root, version, set, err);
        ft_free(root);
    } else if (src_looks_like_hf_dataset(spec) && !(sv < 0 && version >= 0)) {
        /* `@rev` (also an all-digit commit prefix) is the dataset's revision, not a table version */
        hf_split_files hf = {0};
        s = hf_resolve(spec, &hf, err);
        for (size_t i = 0; s == FT_OK && i < hf.n; i++) {
            s = set_push(set, src_kind_of(hf.paths[i]), hf.paths[i], hf.names[i], NULL, err);
            hf.names[i] = NULL;
        }
        const char *at = strrchr(spec, '@');
        if (s == FT_OK) {
            set->hf = at ? ft_strndup(spec, (size_t)(at - spec)) : ft_strdup(spec);
            set->hf_rev = hf.rev ? ft_strdup(hf.rev) : NULL;
            set->summary = ft_asprintf("Hugging Face dataset %s (%s): %zu file%s", set->hf ? set->hf : spec,
                                       hf.where, set->n, set->n == 1 ? "" : "s");
            if (!set->hf || (hf.rev && !set->hf_rev))
                s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        }
        hf_split_files_free(&hf);
    } else if (src_looks_like_hf_dataset(base)) {
        s = FT_ERR_AT(err, FT_ERR_INVALID, spec, 0, 0,
                      "a table version was given, but this names a Hugging Face dataset (name its revision as "
                      "org/name@revision)");
    } else {
        s = FT_ERR_AT(err, FT_ERR_NOT_FOUND, spec, 0, 0, "no such file or folder");
    }
    if (s == FT_OK && !set->summary)
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    ft_free(base);
    ft_free(mapped);
    if (s != FT_OK) {
        src_set_free(set);
        return s;
    }
    *out = set;
    return FT_OK;
}

/* ---------------------------------------------------------------- path kinds */

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '.';
}

bool src_looks_like_table_name(const char *s) {
    int dots = 0;
    size_t seg = 0;
    for (const char *p = s; *p; p++) {
        if (!is_name_char(*p))
            return false;
        if (*p == '.') {
            if (seg == 0)
                return false;
            dots++;
            seg = 0;
        } else {
            seg++;
        }
    }
    return dots == 2 && seg > 0;
}

bool src_looks_like_hf_dataset(const char *s) {
    if (s[0] == '/' || s[0] == '.')
        return false;
    const char *at = strrchr(s, '@'); /* org/name@revision */
    if (at) {
        if (!at[1])
            return false;
        for (const char *p = at + 1; *p; p++)
            if (!is_name_char(*p))
                return false;
    }
    int slashes = 0;
    size_t seg = 0;
    for (const char *p = s; *p && p != at; p++) {
        if (*p == '/') {
            if (seg == 0)
                return false;
            slashes++;
            seg = 0;
        } else if (!is_name_char(*p)) {
            return false;
        } else {
            seg++;
        }
    }
    return (slashes == 1 || slashes == 2) && seg > 0;
}

bool src_is_table_path(const char *path) {
    size_t blen;
    int64_t v = version_suffix(path, &blen);
    char *base = ft_strndup(path, blen);
    char *mapped = base ? ft_path_map_volumes(base) : NULL;
    bool r = false;
    struct stat st;
    if (mapped && stat(mapped, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            r = delta_is_table(mapped) || v >= 0;
        else
            r = ends_with(mapped, ".arrow"); /* .parquet files: the Parquet reader (data/parquet_reader.c) */
    } else if (base) {
        r = src_looks_like_table_name(base) || src_looks_like_hf_dataset(base);
    }
    ft_free(base);
    ft_free(mapped);
    return r;
}

/* ---------------------------------------------------------------- the cursor */

struct src_cursor {
    src_set *set;
    size_t n_cols;
    char **cols;        /* logical names asked for */
    int32_t cur;        /* file index, -1 before the first */
    pq_file *pq;
    arrow_file *af;
    int64_t rg;
    pq_rows prows;
    arrow_rows arows;
    const data_value *batch_cells;
    size_t batch_stride;
    int64_t batch_n, batch_first, r;
    /* per file: where each asked column comes from */
    int32_t *file_col;  /* index into the batch's selection, -1: partition or missing */
    int32_t *sel;       /* columns to decode (file column ids) */
    size_t n_sel;
    data_value *part;   /* partition values (Delta) */
    src_pool part_pool, row_pool;
    uint64_t *dv;
    size_t n_dv, dv_i;
    data_value *row;    /* the current row's cells */
};

void src_cursor_free(src_cursor *c) {
    if (!c)
        return;
    pq_rows_free(&c->prows);
    pq_close(c->pq);
    arrow_rows_free(&c->arows);
    arrow_close(c->af);
    for (size_t i = 0; i < c->n_cols; i++)
        ft_free(c->cols[i]);
    ft_free(c->cols);
    ft_free(c->file_col);
    ft_free(c->sel);
    ft_free(c->part);
    src_pool_free(&c->part_pool);
    src_pool_free(&c->row_pool);
    ft_free(c->dv);
    ft_free(c->row);
    ft_free(c);
}

size_t src_set_n_columns(const src_set *s) {
    return s->delta ? s->delta->n_fields : 0;
}

ft_status src_cursor_open(src_set *set, const char *const *columns, size_t n_columns, src_cursor **out,
                          ft_err *err) {
    *out = NULL;
    src_cursor *c = ft_calloc(1, sizeof *c);
    if (!c)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    c->set = set;
    c->cur = -1;
    c->n_cols = n_columns;
    size_t m = n_columns ? n_columns : 1;
    c->cols = ft_calloc(m, sizeof *c->cols);
    c->file_col = ft_calloc(m, sizeof *c->file_col);
    c->sel = ft_calloc(m, sizeof *c->sel);
    c->part = ft_calloc(m, sizeof *c->part);
    c->row = ft_calloc(m, sizeof *c->row);
    bool ok = c->cols && c->file_col && c->sel && c->part && c->row;
    for (size_t i = 0; ok && i < n_columns; i++)
        ok = (c->cols[i] = ft_strdup(columns[i])) != NULL;
    if (!ok) {
        src_cursor_free(c);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (set->delta)
        for (size_t i = 0; i < n_columns; i++)
            if (!delta_find_field(set->delta, columns[i])) {
                ft_buf names = {0};
                for (size_t k = 0; k < set->delta->n_fields; k++)
                    ft_buf_appendf(&names, "%s%s", k ? ", " : "", set->delta->fields[k].name);
                ft_status s = FT_ERR_AT(err, FT_ERR_INVALID, set->delta->display, 0, 0,
                                        "the table has no column '%s' (its columns: %s)", columns[i],
                                        names.data ? names.data : "none");
                ft_buf_free(&names);
                src_cursor_free(c);
                return s;
            }
    *out = c;
    return FT_OK;
}

static void close_file(src_cursor *c) {
    pq_close(c->pq);
    c->pq = NULL;
    arrow_close(c->af);
    c->af = NULL;
    c->batch_n = c->r = 0;
    ft_free(c->dv);
    c->dv = NULL;
    c->n_dv = c->dv_i = 0;
}

static ft_status missing_column(src_cursor *c, const src_file *f, const char *col, ft_err *err) {
    ft_buf names = {0};
    size_t n = c->pq ? (size_t)(pq_node_at(c->pq, 0) ? pq_node_at(c->pq, 0)->n_children : 0) : arrow_n_columns(c->af);
    for (size_t k = 0; k < n; k++) {
        const char *nm = c->pq ? pq_node_at(c->pq, pq_node_at(c->pq, 0)->children[k])->name : arrow_column_name(c->af, k);
        ft_buf_appendf(&names, "%s%s", k ? ", " : "", nm);
    }
    ft_status s = FT_ERR_AT(err, FT_ERR_INVALID, f->name, 0, 0,
                            "no column '%s' in this file (its columns: %s); name the column with --%s-column", col,
                            names.data ? names.data : "none",
                            !strcmp(col, "messages") ? "messages" : !strcmp(col, "text") ? "text" : "prompt/--response");
    ft_buf_free(&names);
    return s;
}

static ft_status open_file(src_cursor *c, ft_err *err) {
    const src_file *f = &c->set->files[c->cur];
    if (c->set->delta && !ft_path_exists(f->path))
        return FT_ERR_AT(err, FT_ERR_NOT_FOUND, f->name, 0, 0,
                         "data file %s of Delta table %s version %lld is missing (looked at %s): the table's files "
                         "were deleted or not copied with its _delta_log",
                         f->df ? f->df->rel : f->name, c->set->delta->display, (long long)c->set->delta->version,
                         f->path);
    if (f->kind == SRC_ARROW)
        FT_TRY(arrow_open(f->path, f->name, &c->af, err));
    else
        FT_TRY(pq_open(f->path, f->name, &c->pq, err));
    if (c->pq && c->set->delta)
        FT_TRY(delta_map_field_ids(c->set->delta, c->pq, err));
    c->rg = 0;
    c->n_sel = 0;
    src_pool_reset(&c->part_pool);
    const delta_snapshot *ds = c->set->delta;
    for (size_t i = 0; i < c->n_cols; i++) {
        const char *col = c->cols[i];
        c->file_col[i] = -1;
        memset(&c->part[i], 0, sizeof c->part[i]);
        if (ds) {
            const delta_field *df = delta_find_field(ds, col);
            if (df->partition) {
                FT_TRY(delta_partition_value(ds, f->df, df, &c->part_pool, &c->part[i], err));
                continue;
            }
            col = df->physical;
        }
        int32_t id = c->pq ? pq_find_column(c->pq, col) : arrow_find_column(c->af, col);
        if (id < 0) {
            if (ds)
                continue; /* a column added after this file was written: null */
            return missing_column(c, f, col, err);
        }
        c->file_col[i] = (int32_t)c->n_sel;
        c->sel[c->n_sel++] = id;
    }
    if (ds && f->df)
        FT_TRY(delta_dv_rows(ds, f->df, &c->dv, &c->n_dv, err));
    return FT_OK;
}

ft_status src_cursor_next(src_cursor *c, const data_value **cells, src_pos *pos, bool *done, ft_err *err) {
    *done = false;
    for (;;) {
        if (!c->pq && !c->af) {
            if (c->cur + 1 >= (int32_t)c->set->n) {
                *done = true;
                return FT_OK;
            }
            c->cur++;
            ft_status s = open_file(c, err);
            if (s != FT_OK) {
                close_file(c);
                return s;
            }
        }
        if (c->r >= c->batch_n) {
            bool end = false;
            if (c->pq) {
                if (c->rg >= pq_num_row_groups(c->pq)) {
                    end = true;
                } else {
                    FT_TRY(pq_read_row_group(c->pq, c->rg, c->sel, c->n_sel, &c->prows, err));
                    c->rg++;
                    c->batch_cells = c->prows.cells;
                    c->batch_stride = c->prows.n_columns;
                    c->batch_n = c->prows.n;
                    c->batch_first = c->prows.first_row;
                }
            } else {
                FT_TRY(arrow_next_batch(c->af, c->sel, c->n_sel, &c->arows, &end, err));
                if (!end) {
                    c->batch_cells = c->arows.cells;
                    c->batch_stride = c->arows.n_columns;
                    c->batch_n = c->arows.n;
                    c->batch_first = c->arows.first_row;
                }
            }
            c->r = 0;
            if (end) {
                close_file(c);
                continue;
            }
            if (c->batch_n == 0)
                continue;
        }
        int64_t r = c->r++;
        uint64_t file_row = (uint64_t)(c->batch_first + r);
        while (c->dv_i < c->n_dv && c->dv[c->dv_i] < file_row)
            c->dv_i++;
        if (c->dv_i < c->n_dv && c->dv[c->dv_i] == file_row)
            continue; /* deleted by the deletion vector */
        src_pool_reset(&c->row_pool);
        const delta_snapshot *ds = c->set->delta;
        for (size_t i = 0; i < c->n_cols; i++) {
            if (c->file_col[i] < 0) {
                c->row[i] = c->part[i]; /* partition value, or null for a missing column */
                continue;
            }
            const data_value *v = &c->batch_cells[r * (int64_t)c->batch_stride + c->file_col[i]];
            if (ds && ds->cm_mode) {
                FT_TRY(delta_rename_value(ds, delta_find_field(ds, c->cols[i]), v, &c->row_pool, &c->row[i], err));
            } else {
                c->row[i] = *v;
                if (ds && v->kind == DATA_V_TIMESTAMP) {
                    const delta_field *df = delta_find_field(ds, c->cols[i]);
                    delta_type_timestamp(df && json_is_string(df->type) ? json_string_value(df->type) : NULL,
                                         &c->row[i]);
                }
            }
        }
        *cells = c->row;
        pos->file = c->cur;
        pos->row = (int64_t)file_row;
        return FT_OK;
    }
}

ft_status src_cursor_rewind(src_cursor *c, ft_err *err) {
    (void)err;
    close_file(c);
    c->cur = -1;
    return FT_OK;
}

/* ---------------------------------------------------------------- the reader */

typedef struct table_reader {
    ft_reader base;
    src_set *set;
    src_cursor *cur;
    ft_task_type task;
    data_task_columns cols;
    data_spill spill;
    bool no_fetch;  /* ft_reader_params.no_fetch: no spill */
    ft_buf text;    /* the spilled JSON text; scratch of data_row_to_record */
    json_t *value;  /* the current record (chat, IFT), held until the next call */
    char problem[1024];
} table_reader;

static bool has_column_cb(void *ctx, const char *name) {
    src_set *set = ctx;
    if (set->delta)
        return delta_find_field(set->delta, name) != NULL;
    if (set->n == 0)
        return false;
    /* the first file's columns decide */
    bool r = false;
    if (set->files[0].kind == SRC_ARROW) {
        arrow_file *af;
        if (arrow_open(set->files[0].path, set->files[0].name, &af, NULL) == FT_OK) {
            r = arrow_find_column(af, name) >= 0;
            arrow_close(af);
        }
    } else {
        pq_file *pf;
        if (pq_open(set->files[0].path, set->files[0].name, &pf, NULL) == FT_OK) {
            r = pq_find_column(pf, name) >= 0;
            pq_close(pf);
        }
    }
    return r;
}

static void tr_problem(table_reader *t, ft_record *rec, const char *msg) {
    snprintf(t->problem, sizeof t->problem, "%s", msg);
    rec->kind = FT_RECORD_PROBLEM;
    rec->problem = t->problem;
    rec->problem_offset = -1;
}

/* Rows become records as the Parquet reader makes them (data/parquet_reader.c): the record's
 * tree built from the task's columns (CPT: the text itself), and unless the caller never fetches,
 * its JSON text spilled for the loader's fetch. */
static ft_status tr_next(ft_reader *base, ft_record *rec, bool *done, ft_err *err) {
    table_reader *t = (table_reader *)base;
    const data_value *cells;
    src_pos pos;
    FT_TRY(src_cursor_next(t->cur, &cells, &pos, done, err));
    if (*done)
        return FT_OK;
    memset(rec, 0, sizeof *rec);
    rec->loc = (ft_data_loc){pos.file, pos.row + 1, -1, 0};
    ft_err e;
    ft_err_clear(&e);
    ft_status s;
    bool cpt = t->task == FT_TASK_CONTINUED_PRETRAIN;
    if (cpt) {
        const data_value *v = &cells[0];
        char msg[300];
        if (v->kind != DATA_V_STRING && v->kind != DATA_V_BINARY) {
            snprintf(msg, sizeof msg, "column \"%s\": %s, not text", t->cols.column[0],
                     v->kind == DATA_V_NULL ? "null" : "a value of another type");
            tr_problem(t, rec, msg);
            return FT_OK;
        }
        size_t ok = ft_utf8_valid_prefix((const char *)v->bytes, v->n);
        if (ok < v->n || v->n == 0) {
            if (v->n == 0)
                snprintf(msg, sizeof msg, "column \"%s\": empty text", t->cols.column[0]);
            else
                snprintf(msg, sizeof msg, "column \"%s\": invalid UTF-8: byte 0x%02X at byte %zu of the value",
                         t->cols.column[0], v->bytes[ok], ok);
            tr_problem(t, rec, msg);
            return FT_OK;
        }
        rec->kind = FT_RECORD_TEXT; /* borrowed from the cursor's batch until the next call */
        rec->data = (const char *)v->bytes;
        rec->len = v->n;
    } else {
        json_decref(t->value);
        t->value = NULL;
        s = data_row_to_record(&t->cols, cells, &t->text, &t->value, &e);
        if (s == FT_ERR_NOMEM)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        if (s != FT_OK) {
            tr_problem(t, rec, e.msg);
            return FT_OK;
        }
        rec->kind = FT_RECORD_JSON_VALUE;
        rec->value = t->value;
    }
    if (!t->no_fetch) {
        const char *data = rec->data;
        size_t len = rec->len;
        if (!cpt) {
            if ((s = data_row_to_record_text(&t->cols, cells, &t->text, &e)) != FT_OK)
                return FT_ERR(err, s, "%s", e.msg);
            data = t->text.data;
            len = t->text.len;
        }
        FT_TRY(data_spill_append(&t->spill, data, len, &rec->loc.a, err));
        rec->loc.b = (int64_t)len;
    }
    return FT_OK;
}

/* "Delta table a.b.c version 3, data file part-0.parquet, row 17" / "Hugging Face dataset
 * org/name, split train, file data/x.parquet, row 17" / "row 17": the row's 0-based index in its
 * data file (pandas, pyarrow, DuckDB's file_row_number; Delta rows keep theirs in the file). */
static const char *tr_where(ft_reader *base, const ft_data_loc *loc, char *buf, size_t cap) {
    table_reader *t = (table_reader *)base;
    if (loc->source < 0 || (size_t)loc->source >= t->set->n || loc->line <= 0)
        return NULL;
    const src_file *f = &t->set->files[loc->source];
    if (t->set->delta)
        snprintf(buf, cap, "Delta table %s version %lld, data file %s, row %lld", t->set->delta->display,
                 (long long)t->set->delta->version, f->df ? f->df->rel : f->name, (long long)(loc->line - 1));
    else if (t->set->hf) { /* org/name[/split]; files are named "org/name/split: <file in the repo>" */
        const char *slash = strchr(t->set->hf, '/');
        const char *split = slash ? strchr(slash + 1, '/') : NULL;
        const char *file = strstr(f->name, ": ");
        snprintf(buf, cap, "Hugging Face dataset %.*s, split %s, file %s, row %lld",
                 split ? (int)(split - t->set->hf) : (int)strlen(t->set->hf), t->set->hf, split ? split + 1 : "train",
                 file ? file + 2 : f->name, (long long)(loc->line - 1));
    } else
        snprintf(buf, cap, "row %lld", (long long)(loc->line - 1));
    return buf;
}

static ft_status tr_fetch(ft_reader *base, const ft_data_loc *loc, ft_buf *scratch, ft_record *rec, ft_err *err) {
    table_reader *t = (table_reader *)base;
    if (loc->source < 0 || (size_t)loc->source >= base->n_sources)
        return FT_ERR(err, FT_ERR_RANGE, "record location names source %d of %zu", (int)loc->source,
                      base->n_sources);
    if (t->no_fetch || loc->a < 0)
        return FT_ERR(err, FT_ERR_INTERNAL, "fetch from a table reader opened without fetch (no_fetch)");
    FT_TRY(data_spill_read(&t->spill, loc->a, loc->b, scratch, err));
    memset(rec, 0, sizeof *rec);
    rec->kind = t->task == FT_TASK_CONTINUED_PRETRAIN ? FT_RECORD_TEXT : FT_RECORD_JSON_TEXT;
    rec->data = scratch->data;
    rec->len = scratch->len;
    rec->loc = *loc;
    return FT_OK;
}

static ft_status tr_rewind(ft_reader *base, ft_err *err) {
    table_reader *t = (table_reader *)base;
    /* the spill keeps what it has: records already indexed still point into it */
    return src_cursor_rewind(t->cur, err);
}

static void tr_free(ft_reader *base) {
    table_reader *t = (table_reader *)base;
    for (size_t i = 0; i < base->n_sources; i++) {
        ft_free(base->source_names[i]);
        ft_free(base->source_paths[i]);
    }
    ft_free(base->source_names);
    ft_free(base->source_paths);
    src_cursor_free(t->cur);
    src_set_free(t->set);
    data_spill_deinit(&t->spill);
    json_decref(t->value);
    ft_buf_free(&t->text);
    ft_free(t);
}

static const ft_reader_vtable table_vt = {"table", tr_next, tr_fetch, tr_rewind, tr_free, tr_where};

ft_status src_reader_open(const char *path, ft_task_type task, const ft_reader_params *p, ft_reader **out,
                          ft_err *err) {
    *out = NULL;
    src_set *set;
    FT_TRY(src_set_open(path, -1, &set, err));
    table_reader *t = ft_calloc(1, sizeof *t);
    if (!t) {
        src_set_free(set);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    t->base.vt = &table_vt;
    t->set = set;
    t->task = task;
    t->no_fetch = p && p->no_fetch;
    data_spill_init(&t->spill);
    data_task_columns_get(task, p, has_column_cb, set, &t->cols);
    ft_status s = src_cursor_open(set, t->cols.column, t->cols.n, &t->cur, err);
    size_t n = set->n;
    t->base.source_names = ft_calloc(n ? n : 1, sizeof(char *));
    t->base.source_paths = ft_calloc(n ? n : 1, sizeof(char *));
    if (s == FT_OK && (!t->base.source_names || !t->base.source_paths))
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        t->base.source_names[i] = ft_strdup(set->files[i].name);
        t->base.source_paths[i] = ft_strdup(set->files[i].path);
        t->base.n_sources = i + 1;
        if (!t->base.source_names[i] || !t->base.source_paths[i])
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    if (s == FT_OK && n == 0)
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "%s: no data files, so no rows to train on", set->summary);
    if (s != FT_OK) {
        tr_free(&t->base);
        return s;
    }
    *out = &t->base;
    return FT_OK;
}

bool ft_data_path_is_table(const char *path) { return src_is_table_path(path); }

ft_status ft_data_table_latest_version(const char *path, int64_t *version, ft_err *err) {
    *version = -1;
    size_t blen;
    if (!src_is_table_path(path) || version_suffix(path, &blen) >= 0)
        return FT_OK;
    src_set *set;
    FT_TRY(src_set_open(path, -1, &set, err));
    if (set->delta)
        *version = set->delta->version;
    src_set_free(set);
    return FT_OK;
}

ft_status ft_data_source_pin(const char *path, char **pinned, ft_err *err) {
    *pinned = NULL;
    size_t blen;
    if (!src_is_table_path(path) || version_suffix(path, &blen) >= 0)
        return FT_OK; /* not a table, or it names its version already */
    const char *at = strrchr(path, '@');
    char *mapped = ft_path_map_volumes(path);
    bool local = mapped && ft_path_exists(mapped);
    ft_free(mapped);
    if (at && !local && src_looks_like_hf_dataset(path))
        return FT_OK; /* org/name@rev */
    src_set *set;
    FT_TRY(src_set_open(path, -1, &set, err));
    ft_status s = FT_OK;
    if (set->delta)
        *pinned = ft_asprintf("%s@%lld", path, (long long)set->delta->version);
    else if (set->hf && set->hf_rev)
        *pinned = ft_asprintf("%s@%s", path, set->hf_rev);
    if ((set->delta || (set->hf && set->hf_rev)) && !*pinned)
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    src_set_free(set);
    return s;
}

const char *ft_reader_summary(const ft_reader *r) { return src_reader_summary(r); }

const char *src_reader_summary(const ft_reader *r) {
    if (!r || r->vt != &table_vt)
        return NULL;
    return ((const table_reader *)r)->set->summary;
}

/* ---------------------------------------------------------------- data head */

ft_status src_head(const char *source, const ft_data_head_params *p, ft_data_row_fn fn, void *ctx, ft_err *err) {
    src_set *set;
    FT_TRY(src_set_open(source, p->table_version, &set, err));
    /* the columns: as asked, else the Delta schema's, else the first file's */
    const char **cols = NULL;
    size_t nc = 0;
    arrow_file *af = NULL;
    pq_file *pf = NULL;
    ft_status s = FT_OK;
    if (p->columns) {
        nc = p->n_columns;
        cols = ft_calloc(nc ? nc : 1, sizeof *cols);
        for (size_t i = 0; cols && i < nc; i++)
            cols[i] = p->columns[i];
    } else if (set->delta) {
        nc = set->delta->n_fields;
        cols = ft_calloc(nc ? nc : 1, sizeof *cols);
        for (size_t i = 0; cols && i < nc; i++)
            cols[i] = set->delta->fields[i].name;
    } else if (set->n && set->files[0].kind == SRC_ARROW) {
        s = arrow_open(set->files[0].path, set->files[0].name, &af, err);
        nc = s == FT_OK ? arrow_n_columns(af) : 0;
        cols = ft_calloc(nc ? nc : 1, sizeof *cols);
        for (size_t i = 0; cols && i < nc; i++)
            cols[i] = arrow_column_name(af, i);
    } else if (set->n) {
        s = pq_open(set->files[0].path, set->files[0].name, &pf, err);
        const pq_node *root = s == FT_OK ? pq_node_at(pf, 0) : NULL;
        nc = root ? (size_t)root->n_children : 0;
        cols = ft_calloc(nc ? nc : 1, sizeof *cols);
        for (size_t i = 0; cols && i < nc; i++)
            cols[i] = pq_node_at(pf, root->children[i])->name;
    }
    if (s == FT_OK && !cols)
        s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    src_cursor *c = NULL;
    if (s == FT_OK)
        s = src_cursor_open(set, cols, nc, &c, err);
    ft_buf line = {0};
    int64_t left = p->limit < 0 ? INT64_MAX : p->limit;
    while (s == FT_OK && left-- > 0) {
        const data_value *cells;
        src_pos pos;
        bool done;
        s = src_cursor_next(c, &cells, &pos, &done, err);
        if (s != FT_OK || done)
            break;
        data_value row = {.kind = DATA_V_STRUCT, .n = (uint32_t)nc, .items = cells, .names = cols};
        line.len = 0;
        if ((s = data_value_write_json(&line, &row, err)) != FT_OK)
            break;
        if (!fn(ctx, line.data, line.len))
            break;
    }
    ft_buf_free(&line);
    src_cursor_free(c);
    ft_free(cols);
    arrow_close(af);
    pq_close(pf);
    src_set_free(set);
    return s;
}
