/* data/parquet_reader.c: Parquet files as training data (the ft_reader of kind "parquet",
 * ftune/data.h) and `ftune data head` on Parquet sources.
 *
 * The reader streams row group by row group (data/parquet.h), decodes only the columns the task
 * needs (data/table.h: messages | prompt + response/completion | text, renamed by the --*-column
 * options), and yields each row as its record's tree (FT_RECORD_JSON_VALUE, built from the cells
 * by data_row_to_record: no JSON text is written and parsed again; CPT: the text itself,
 * FT_RECORD_TEXT), located by its row in the file: validation checks it as it checks a parsed
 * JSONL line. A file or row group that cannot be read, or a missing column, is a PROBLEM record
 * that names it; reading goes on with the next one, so validation reports every bad place at
 * once. Unless the caller never fetches (ft_reader_params.no_fetch), each record's JSON text (CPT:
 * its text) goes to the record spill for the loader's fetch. */
#include <string.h>

#include "data/data_internal.h"
#include "data/parquet.h"

typedef struct src_groups { /* row group boundaries of each source, for `where` */
    int64_t *first;
    int64_t n;
} src_groups;

typedef struct pq_reader {
    ft_reader base;
    ft_reader_params p;
    ft_task_type task;
    int32_t cur;
    pq_file *f;
    bool file_failed;
    int64_t rg;
    pq_rows rows;
    int64_t row; /* next row of `rows` */
    data_task_columns cols;
    int32_t col_node[3];
    data_spill spill;
    ft_buf text;    /* the current record's JSON text for the spill; scratch of data_row_to_record */
    json_t *value;  /* the current record (chat, IFT), held until the next call */
    src_groups *groups;
    char problem[1024];
} pq_reader;

static bool has_column(void *ctx, const char *name) { return pq_find_column((pq_file *)ctx, name) >= 0; }

static void list_columns(const pq_file *f, char *buf, size_t cap) {
    const pq_node *root = pq_node_at(f, 0);
    size_t o = 0;
    buf[0] = 0;
    for (int32_t k = 0; k < root->n_children && o + 4 < cap; k++) {
        int w = snprintf(buf + o, cap - o, "%s%s", k ? ", " : "", pq_node_at(f, root->children[k])->name);
        if (w < 0 || (size_t)w >= cap - o) {
            snprintf(buf + (cap > 5 ? cap - 5 : 0), 5, "...");
            return;
        }
        o += (size_t)w;
    }
}

static const char *option_of(const char *key) {
    if (!strcmp(key, "messages"))
        return "--messages-column";
    if (!strcmp(key, "prompt"))
        return "--prompt-column";
    if (!strcmp(key, "text"))
        return "--text-column";
    return "--response-column";
}

static void problem(pq_reader *r, ft_record *rec, int64_t line, const char *msg) {
    memset(rec, 0, sizeof *rec);
    rec->kind = FT_RECORD_PROBLEM;
    snprintf(r->problem, sizeof r->problem, "%s", msg);
    rec->problem = r->problem;
    rec->loc = (ft_data_loc){r->cur, line, -1, -1};
    rec->problem_column = 0;
    rec->problem_offset = -1;
}

/* Strip the "file: " the error names, since the issue names the file already. */
static const char *err_msg(const ft_err *e) { return e->msg; }

static ft_status open_next(pq_reader *r, ft_record *rec, bool *have, ft_err *err) {
    *have = false;
    pq_close(r->f);
    r->f = NULL;
    r->cur++;
    r->rg = -1;
    r->row = 0;
    r->rows.n = 0;
    ft_err e;
    ft_err_clear(&e);
    ft_status s = pq_open(r->base.source_paths[r->cur], r->base.source_names[r->cur], &r->f, &e);
    if (s == FT_ERR_NOMEM || s == FT_ERR_IO) {
        *err = e;
        return s;
    }
    if (s != FT_OK) {
        problem(r, rec, 0, err_msg(&e));
        *have = true;
        return FT_OK;
    }
    src_groups *g = &r->groups[r->cur];
    g->n = pq_num_row_groups(r->f);
    g->first = ft_calloc((size_t)(g->n ? g->n : 1), sizeof *g->first);
    if (!g->first)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < g->n; i++)
        g->first[i] = pq_row_group_first_row(r->f, i);
    data_task_columns_get(r->task, &r->p, has_column, r->f, &r->cols);
    for (size_t i = 0; i < r->cols.n; i++) {
        r->col_node[i] = pq_find_column(r->f, r->cols.column[i]);
        if (r->col_node[i] < 0) {
            char have_cols[600], msg[900];
            list_columns(r->f, have_cols, sizeof have_cols);
            bool renamed = strcmp(r->cols.column[i], r->cols.key[i]) != 0;
            snprintf(msg, sizeof msg, "no column \"%s\"%s (the file has: %s); name the column to read with %s",
                     r->cols.column[i],
                     !renamed && !strcmp(r->cols.key[i], "response") ? " or \"completion\"" : "", have_cols,
                     option_of(r->cols.key[i]));
            problem(r, rec, 0, msg);
            pq_close(r->f);
            r->f = NULL;
            *have = true;
            return FT_OK;
        }
    }
    return FT_OK;
}

static ft_status pqr_next(ft_reader *base, ft_record *rec, bool *done, ft_err *err) {
    pq_reader *r = (pq_reader *)base;
    *done = false;
    for (;;) {
        if (!r->f) {
            if (r->cur + 1 >= (int32_t)base->n_sources) {
                *done = true;
                return FT_OK;
            }
            bool have;
            FT_TRY(open_next(r, rec, &have, err));
            if (have)
                return FT_OK;
            continue;
        }
        if (r->row >= r->rows.n) {
            r->rg++;
            r->row = 0;
            r->rows.n = 0;
            if (r->rg >= pq_num_row_groups(r->f)) {
                pq_close(r->f);
                r->f = NULL;
                continue;
            }
            ft_err e;
            ft_err_clear(&e);
            ft_status s = pq_read_row_group(r->f, r->rg, r->col_node, r->cols.n, &r->rows, &e);
            if (s == FT_ERR_NOMEM || s == FT_ERR_IO) {
                *err = e;
                return s;
            }
            if (s != FT_OK) {
                r->rows.n = 0;
                problem(r, rec, pq_row_group_first_row(r->f, r->rg) + 1, err_msg(&e));
                return FT_OK;
            }
            continue;
        }
        int64_t i = r->row++;
        int64_t file_row = r->rows.first_row + i;
        const data_value *cells = r->rows.cells + i * (int64_t)r->rows.n_columns;
        ft_err e;
        ft_err_clear(&e);
        ft_status s;
        bool cpt = r->task == FT_TASK_CONTINUED_PRETRAIN;
        memset(rec, 0, sizeof *rec);
        rec->loc = (ft_data_loc){r->cur, file_row + 1, -1, 0};
        if (cpt) { /* the document itself, as a .txt file would give it */
            const data_value *v = &cells[0];
            if (v->kind != DATA_V_STRING && v->kind != DATA_V_BINARY) {
                char msg[200];
                snprintf(msg, sizeof msg, "column \"%s\": %s, not text", r->cols.column[0],
                         v->kind == DATA_V_NULL ? "null" : "a value of another type");
                problem(r, rec, file_row + 1, msg);
                return FT_OK;
            }
            size_t ok = ft_utf8_valid_prefix((const char *)v->bytes, v->n);
            if (ok < v->n || v->n == 0) {
                char msg[200];
                if (v->n == 0)
                    snprintf(msg, sizeof msg, "column \"%s\": empty text", r->cols.column[0]);
                else
                    snprintf(msg, sizeof msg, "column \"%s\": invalid UTF-8: byte 0x%02X at byte %zu of the value",
                             r->cols.column[0], v->bytes[ok], ok);
                problem(r, rec, file_row + 1, msg);
                return FT_OK;
            }
            rec->kind = FT_RECORD_TEXT; /* borrowed from the row group's pages until the next call */
            rec->data = (const char *)v->bytes;
            rec->len = v->n;
        } else { /* the record's tree, as validation would parse it from a JSONL line */
            json_decref(r->value);
            r->value = NULL;
            s = data_row_to_record(&r->cols, cells, &r->text, &r->value, &e);
            if (s == FT_ERR_NOMEM)
                return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            if (s != FT_OK) {
                problem(r, rec, file_row + 1, e.msg);
                return FT_OK;
            }
            rec->kind = FT_RECORD_JSON_VALUE;
            rec->value = r->value;
        }
        if (!r->p.no_fetch) { /* the loader fetches the record again later: spill its text */
            const char *data = rec->data;
            size_t len = rec->len;
            if (!cpt) {
                if ((s = data_row_to_record_text(&r->cols, cells, &r->text, &e)) != FT_OK)
                    return FT_ERR(err, s, "%s", e.msg); /* the tree above was built from the same cells */
                data = r->text.data;
                len = r->text.len;
            }
            FT_TRY(data_spill_append(&r->spill, data, len, &rec->loc.a, err));
            rec->loc.b = (int64_t)len;
        }
        return FT_OK;
    }
}

static ft_status pqr_fetch(ft_reader *base, const ft_data_loc *loc, ft_buf *scratch, ft_record *rec, ft_err *err) {
    pq_reader *r = (pq_reader *)base;
    if (loc->source < 0 || (size_t)loc->source >= base->n_sources)
        return FT_ERR(err, FT_ERR_RANGE, "record location names source %d of %zu", (int)loc->source, base->n_sources);
    if (r->p.no_fetch || loc->a < 0)
        return FT_ERR(err, FT_ERR_INTERNAL, "fetch from a Parquet reader opened without fetch (no_fetch)");
    FT_TRY(data_spill_read(&r->spill, loc->a, loc->b, scratch, err));
    memset(rec, 0, sizeof *rec);
    rec->kind = r->task == FT_TASK_CONTINUED_PRETRAIN ? FT_RECORD_TEXT : FT_RECORD_JSON_TEXT;
    rec->data = scratch->data;
    rec->len = scratch->len;
    rec->loc = *loc;
    return FT_OK;
}

static ft_status pqr_rewind(ft_reader *base, ft_err *err) {
    (void)err;
    pq_reader *r = (pq_reader *)base;
    pq_close(r->f);
    r->f = NULL;
    r->cur = -1;
    /* the spill keeps what it has: records already indexed still point into it */
    return FT_OK;
}

static const char *pqr_where(ft_reader *base, const ft_data_loc *loc, char *buf, size_t cap) {
    pq_reader *r = (pq_reader *)base;
    if (loc->source < 0 || (size_t)loc->source >= base->n_sources || loc->line <= 0)
        return NULL;
    const src_groups *g = &r->groups[loc->source];
    int64_t row = loc->line - 1, rg = 0;
    while (rg + 1 < g->n && g->first[rg + 1] <= row)
        rg++;
    if (g->n == 0)
        return NULL;
    /* counted from 0, as pandas, pyarrow and DuckDB's file_row_number count rows and row groups */
    int w = snprintf(buf, cap, "row %lld (row %lld of row group %lld", (long long)row, (long long)(row - g->first[rg]),
                     (long long)rg);
    for (size_t i = 0; i < r->cols.n && w > 0 && (size_t)w < cap; i++) /* say which column a renamed key is */
        if (strcmp(r->cols.column[i], r->cols.key[i]))
            w += snprintf(buf + w, cap - (size_t)w, "; \"%s\" is column \"%s\"", r->cols.key[i], r->cols.column[i]);
    if (w > 0 && (size_t)w + 1 < cap)
        snprintf(buf + w, cap - (size_t)w, ")");
    return buf;
}

static void pqr_free(ft_reader *base) {
    pq_reader *r = (pq_reader *)base;
    pq_close(r->f);
    pq_rows_free(&r->rows);
    json_decref(r->value);
    ft_buf_free(&r->text);
    data_spill_deinit(&r->spill);
    for (size_t i = 0; r->groups && i < base->n_sources; i++)
        ft_free(r->groups[i].first);
    ft_free(r->groups);
    data_reader_names_free(base);
    ft_free(r);
}

static const ft_reader_vtable pq_vt = {"parquet", pqr_next, pqr_fetch, pqr_rewind, pqr_free, pqr_where};

ft_status data_parquet_reader_new(char **names, char **paths, size_t n, ft_task_type task, const ft_reader_params *p,
                                  ft_reader **out, ft_err *err) {
    pq_reader *r = ft_calloc(1, sizeof *r);
    src_groups *g = ft_calloc(n ? n : 1, sizeof *g);
    if (!r || !g) {
        ft_free(r);
        ft_free(g);
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    r->base.vt = &pq_vt;
    r->base.source_names = names;
    r->base.source_paths = paths;
    r->base.n_sources = n;
    r->p = *p;
    r->task = task;
    r->cur = -1;
    r->groups = g;
    data_spill_init(&r->spill);
    *out = &r->base;
    return FT_OK;
}

/* ---------------------------------------------------------------- data head */

void ft_data_head_default_params(ft_data_head_params *p) {
    memset(p, 0, sizeof *p);
    p->limit = 10;
    p->table_version = -1;
}

ft_status data_parquet_head(char **names, char **paths, size_t n, const ft_data_head_params *p, ft_data_row_fn fn,
                            void *ctx, ft_err *err) {
    int64_t left = p->limit < 0 ? INT64_MAX : p->limit;
    ft_status s = FT_OK;
    pq_rows rows = {0};
    ft_buf line = {0};
    int32_t *cols = NULL;
    const char **col_names = NULL;
    bool stop = false;
    for (size_t fi = 0; s == FT_OK && fi < n && left > 0 && !stop; fi++) {
        pq_file *f = NULL;
        if ((s = pq_open(paths[fi], names[fi], &f, err)) != FT_OK)
            break;
        const pq_node *root = pq_node_at(f, 0);
        size_t nc = p->columns ? p->n_columns : (size_t)root->n_children;
        ft_free(cols);
        ft_free(col_names);
        cols = ft_calloc(nc ? nc : 1, sizeof *cols);
        col_names = ft_calloc(nc ? nc : 1, sizeof *col_names);
        if (!cols || !col_names)
            s = FT_ERR(err, FT_ERR_NOMEM, "out of memory");
        for (size_t k = 0; s == FT_OK && k < nc; k++) {
            cols[k] = p->columns ? pq_find_column(f, p->columns[k]) : root->children[k];
            if (cols[k] < 0) {
                char have[600];
                list_columns(f, have, sizeof have);
                s = FT_ERR_AT(err, FT_ERR_INVALID, names[fi], 0, 0, "no column \"%s\" (the file has: %s)", p->columns[k],
                              have);
                break;
            }
            col_names[k] = pq_node_at(f, cols[k])->name;
        }
        for (int64_t g = 0; s == FT_OK && g < pq_num_row_groups(f) && left > 0 && !stop; g++) {
            if ((s = pq_read_row_group(f, g, cols, nc, &rows, err)) != FT_OK)
                break;
            for (int64_t r = 0; s == FT_OK && r < rows.n && left > 0; r++, left--) {
                data_value row = {.kind = DATA_V_STRUCT, .n = (uint32_t)nc};
                row.items = nc ? rows.cells + r * (int64_t)nc : NULL;
                row.names = col_names;
                line.len = 0;
                if ((s = data_value_write_json(&line, &row, err)) != FT_OK)
                    break;
                if (!fn(ctx, line.data, line.len)) {
                    stop = true;
                    break;
                }
            }
        }
        pq_close(f);
    }
    ft_free(cols);
    ft_free(col_names);
    ft_buf_free(&line);
    pq_rows_free(&rows);
    return s;
}
