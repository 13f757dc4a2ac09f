/* data/tables.h (module-internal): table sources resolved to sets of files and read row by row
 * (data/tables.c). Used by ft_reader_open and by `ftune data head` (through ftune/data.h). */
#ifndef FTUNE_DATA_TABLES_H
#define FTUNE_DATA_TABLES_H

#include "data/sources.h"

typedef enum src_kind { SRC_PARQUET, SRC_ARROW } src_kind;

typedef struct src_file {
    src_kind kind;
    char *path; /* the file to open */
    char *name; /* how errors name it: Delta "table@vN/part-...parquet", HF "org/name/split: data/...". */
    const delta_file *df; /* Delta: its partition values and deletion vector (owned by the snapshot) */
} src_file;

typedef struct src_set {
    src_file *files;
    size_t n;
    delta_snapshot *delta; /* Delta tables only */
    char *hf;              /* HF datasets only: `org/name` or `org/name/split` as given (without @rev) */
    char *hf_rev;          /* HF datasets from the hub cache: the snapshot's commit */
    char *summary;         /* "Delta table a.b.c, version 3: 2 data files", ... */
} src_set;

/* What `spec` names: a Delta table (`catalog.schema.table`, a table folder; `@N` or `version`
 * >= 0 for an older snapshot), an HF dataset `org/name[/split]` in the local caches, a .parquet or
 * .arrow file, or a folder of them (recursive, sorted). */
ft_status src_set_open(const char *spec, int64_t version, src_set **out, ft_err *err);
void src_set_free(src_set *s);
src_kind src_kind_of(const char *path);
bool src_looks_like_table_name(const char *s);
bool src_looks_like_hf_dataset(const char *s);
/* Does ft_reader_open hand `path` to the table reader? (Delta folder or name, `@N`, an .arrow
 * file, an HF dataset id that is not a local path; .parquet files go to the Parquet reader.) */
bool src_is_table_path(const char *path);
/* A folder holding .arrow files (searched recursively). */
bool src_folder_has_arrow(const char *dir);

typedef struct src_pos {
    int32_t file; /* index in the set */
    int64_t row;  /* 0-based row in the file */
} src_pos;

typedef struct src_cursor src_cursor;
/* Rows of the named columns (Delta: logical names; partition columns included). */
ft_status src_cursor_open(src_set *set, const char *const *columns, size_t n_columns, src_cursor **out,
                          ft_err *err);
/* The next row: cells[i] is the value of column i, valid until the next call. */
ft_status src_cursor_next(src_cursor *c, const data_value **cells, src_pos *pos, bool *done, ft_err *err);
ft_status src_cursor_rewind(src_cursor *c, ft_err *err);
void src_cursor_free(src_cursor *c);

/* The ft_reader of a table source (records per task as data_task_columns_get says). */
ft_status src_reader_open(const char *path, ft_task_type task, const ft_reader_params *p, ft_reader **out,
                          ft_err *err);
/* `ftune data head` over a table source (ft_data_head's parameters). */
ft_status src_head(const char *source, const ft_data_head_params *p, ft_data_row_fn fn, void *ctx, ft_err *err);
/* The set's summary when r is a table reader, else NULL. */
const char *src_reader_summary(const ft_reader *r);

#endif
