/* data/sources.h: what the table-like sources of src/data/ share (Delta tables, Hugging Face
 * datasets, Arrow IPC files) and nobody else sees.
 *
 *   delta.c     Delta log replay: a table folder and a version -> the live data files, their
 *               partition values and deletion vectors, the schema (with column mapping)
 *   delta_dv.c  deletion vectors: Z85, the RoaringBitmapArray portable format, CRC-32
 *   arrow.c     Arrow IPC stream and file formats, one record batch at a time, rows as JSON
 *   hf.c        Hugging Face hub and datasets caches: `org/name[/split]` -> the split's files
 *
 * Cells are data_values (data/table.h), the representation the Parquet reader produces, so
 * `ftune data head` and the columns-to-record step treat every source alike. */
#ifndef FTUNE_DATA_SOURCES_H
#define FTUNE_DATA_SOURCES_H

#include <jansson.h>

#include "ftune/data.h"
#include "data/table.h"

/* ---------------------------------------------------------------- a bump allocator
 * For values built per row group or batch (renamed structs, partition values): everything is
 * dropped at once by src_pool_reset. */
typedef struct src_pool {
    struct src_pool_block *head;
} src_pool;
void *src_pool_alloc(src_pool *p, size_t n); /* zeroed, 16-byte aligned; NULL when out of memory */
void src_pool_reset(src_pool *p);
void src_pool_free(src_pool *p);

/* ---------------------------------------------------------------- Arrow IPC
 * The stream format and the file format (ARROW1 magic; read through its embedded stream), as
 * Hugging Face `datasets` writes them (cache files, save_to_disk). One record batch is decoded at
 * a time, only the selected top-level columns; dictionaries are kept for the file's life. */
typedef struct arrow_file arrow_file;
ft_status arrow_open(const char *path, const char *name, arrow_file **out, ft_err *err);
void arrow_close(arrow_file *f); /* NULL is a no-op */
size_t arrow_n_columns(const arrow_file *f);
const char *arrow_column_name(const arrow_file *f, size_t i);
int32_t arrow_find_column(const arrow_file *f, const char *name); /* -1 if absent */

typedef struct arrow_rows {
    int64_t batch;     /* 0-based record batch index */
    int64_t n;         /* rows */
    int64_t first_row; /* file row index of row 0 */
    size_t n_columns;
    data_value *cells; /* (n, n_columns) row-major; valid until the next call or arrow_rows_free */
    src_pool pool;
    uint8_t *body;
} arrow_rows;
/* The next record batch's selected columns; *done at the end of the file. */
ft_status arrow_next_batch(arrow_file *f, const int32_t *columns, size_t n_columns, arrow_rows *rows, bool *done,
                           ft_err *err);
ft_status arrow_rewind(arrow_file *f, ft_err *err);
void arrow_rows_free(arrow_rows *rows);
/* Decode every column of every batch of an in-memory IPC buffer (the fuzz target). */
ft_status arrow_decode_memory(const uint8_t *data, size_t len, int64_t *n_rows, ft_err *err);

/* ---------------------------------------------------------------- Delta tables */

typedef struct delta_dv {
    char storage;          /* 'u' relative (UUID), 'i' inline, 'p' absolute path */
    char *path_or_inline;
    int64_t offset;        /* -1: none */
    int64_t size;          /* sizeInBytes */
    int64_t cardinality;
} delta_dv;

typedef struct delta_file {
    char *rel;        /* the path as the log has it, URI-decoded (how errors name the file) */
    char *abs;        /* the file to open */
    json_t *partition; /* physical partition column -> raw string or null */
    bool has_dv;
    delta_dv dv;
    int64_t n_records; /* from stats when known, else -1 */
} delta_file;

typedef struct delta_field {
    char *name;     /* logical */
    char *physical; /* the column's name in the data files */
    json_t *type;   /* the schema's type (a string or an object), borrowed from schema */
    bool partition;
} delta_field;

typedef struct delta_snapshot {
    char *root;    /* the table folder */
    char *display; /* how the user named the table */
    int64_t version;
    json_t *protocol, *metadata, *schema;
    int cm_mode; /* column mapping: 0 none, 1 name, 2 id */
    delta_field *fields;
    size_t n_fields;
    delta_file *files; /* live files, sorted by path */
    size_t n_files;
} delta_snapshot;

/* Reads the rows of one Parquet file (checkpoints, sidecars, data files): implemented over the
 * Parquet reader. `columns` NULL: all. Calls fn for each row (a borrowed object; 0-based row
 * index); fn's non-OK status stops the read and is returned. */
typedef ft_status (*src_row_fn)(void *ctx, json_t *row, int64_t row_index, ft_err *err);
ft_status src_parquet_each_row(const char *path, const char *name, const char *const *columns, src_row_fn fn,
                               void *ctx, ft_err *err);

/* Is `path` a Delta table folder (has _delta_log/)? */
bool delta_is_table(const char *path);
/* Resolve what the user wrote: `catalog.schema.table` -> $FTUNE_HOME/tables/catalog/schema/table,
 * or a folder path; a `@N` suffix sets *version (else it stays as given). *root owned by the
 * caller; FT_ERR_NOT_FOUND when it names nothing (with where ftune looked). */
ft_status delta_resolve(const char *spec, char **root, int64_t *version, ft_err *err);
/* Load the snapshot at `version` (-1: latest) by log replay. `display` labels errors. */
ft_status delta_snapshot_load(const char *root, const char *display, int64_t version, delta_snapshot **out,
                              ft_err *err);
void delta_snapshot_free(delta_snapshot *s);
/* Check the log of a buffer of JSON commit lines (fuzz target): parses every action. */
ft_status delta_check_commit(const char *data, size_t len, ft_err *err);
/* The typed value of partition column `df` for file f (strings borrowed into `pool`). */
ft_status delta_partition_value(const delta_snapshot *s, const delta_file *f, const delta_field *df,
                                src_pool *pool, data_value *out, ft_err *err);
/* A data file's cell of field `df` with physical nested field names renamed to logical ones
 * (column mapping; a plain copy otherwise). New nodes come from `pool`. */
ft_status delta_rename_value(const delta_snapshot *s, const delta_field *df, const data_value *in, src_pool *pool,
                             data_value *out, ft_err *err);
const delta_field *delta_find_field(const delta_snapshot *s, const char *name);
/* A timestamp cell of a column of Delta primitive type `type`: `timestamp` is UTC-adjusted and
 * `timestamp_ntz` is not, whatever the data file's own annotation (Spark writes INT96). */
void delta_type_timestamp(const char *type, data_value *v);
/* Column mapping in id mode: rename a data file's columns and nested struct fields to the
 * table's physical names by their Parquet field_id (no-op in other modes and for a file
 * without field ids, which is read by physical names). */
struct pq_file;
ft_status delta_map_field_ids(const delta_snapshot *s, struct pq_file *pq, ft_err *err);
/* The deleted row indexes of a file (sorted, unique): *rows owned by the caller; *n 0 and
 * *rows NULL when it has none. Reads and checks (size, CRC) the deletion vector file. */
ft_status delta_dv_rows(const delta_snapshot *s, const delta_file *f, uint64_t **rows, size_t *n, ft_err *err);
/* Decode a deletion vector's serialized bitmap (magic + RoaringBitmapArray, portable) into
 * sorted row indexes. Exposed for tests and the fuzz target. */
ft_status delta_dv_decode(const uint8_t *p, size_t n, uint64_t **rows, size_t *n_rows, ft_err *err);
/* Z85 decode (len a multiple of 5) into out (len/5*4 bytes). false on a bad character. */
bool delta_z85_decode(const char *s, size_t len, uint8_t *out);
uint32_t delta_crc32(const uint8_t *p, size_t n);

void src_strv_free(char **v);

/* ---------------------------------------------------------------- Hugging Face datasets */

typedef struct hf_split_files {
    char **paths;  /* the files of the split, in order */
    char **names;  /* how errors name them: "org/name/split: <file in the repo>" */
    size_t n;
    char *where;   /* what was read: "hub cache snapshot <rev>" / "datasets cache <dir>" */
    char *rev;     /* the hub cache snapshot's commit; NULL for the datasets cache */
} hf_split_files;
/* Resolve `org/name[/split][@rev]` (split default "train") in the local caches (@rev: that
 * revision's hub cache snapshot only). FT_ERR_NOT_FOUND with the places looked at and how to
 * download the dataset when nothing is there. */
ft_status hf_resolve(const char *spec, hf_split_files *out, ft_err *err);
void hf_split_files_free(hf_split_files *f);

#endif
