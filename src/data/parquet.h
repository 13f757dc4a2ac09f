/* data/parquet.h (module-internal): an Apache Parquet file reader, row group by row group.
 * Spec: https://github.com/apache/parquet-format (Thrift compact protocol footer, pages,
 * encodings, LogicalTypes.md including its backward-compatibility rules for LIST and MAP).
 *
 *   pq_file *f;  pq_open(path, name, &f, err);           footer + schema, nothing else read
 *   int32_t col = pq_find_column(f, "messages");           top-level column (or pq_find_path)
 *   pq_rows rows = {0};
 *   for (rg = 0; rg < pq_num_row_groups(f); rg++) {
 *       pq_read_row_group(f, rg, &col, 1, &rows, err);     decodes only the selected columns
 *       rows.cells[r * rows.n_columns + c]  is a data_value (data/table.h); file row = first_row + r
 *   }
 *   pq_rows_free(&rows); pq_close(f);
 *
 * Memory is bounded by one row group of the selected columns (compressed chunk, its pages
 * decompressed, and the values). Every malformed input is an error naming the file, row group,
 * column and page; nothing in a file can make the reader crash, hang or allocate without
 * bound. pq_read_row_group is safe to call from several threads on one pq_file, each with its
 * own pq_rows (the file is read with pread). */
#ifndef FTUNE_DATA_PARQUET_H
#define FTUNE_DATA_PARQUET_H

#include "data/table.h"

typedef struct pq_file pq_file;

typedef enum pq_repetition { PQ_REQUIRED = 0, PQ_OPTIONAL = 1, PQ_REPEATED = 2 } pq_repetition;

/* Physical types (parquet.thrift Type); PQ_GROUP for an inner node. */
typedef enum pq_physical {
    PQ_GROUP = -1,
    PQ_BOOLEAN = 0,
    PQ_INT32 = 1,
    PQ_INT64 = 2,
    PQ_INT96 = 3,
    PQ_FLOAT = 4,
    PQ_DOUBLE = 5,
    PQ_BYTE_ARRAY = 6,
    PQ_FIXED_LEN_BYTE_ARRAY = 7,
} pq_physical;

/* Logical types; legacy converted types are folded in (UTF8 -> STRING, TIMESTAMP_MICROS ->
 * TIMESTAMP micros UTC-adjusted, UINT_32 -> INT 32 unsigned, MAP_KEY_VALUE -> MAP, ...). */
typedef enum pq_logical {
    PQ_L_NONE = 0,
    PQ_L_STRING,
    PQ_L_ENUM,
    PQ_L_JSON,
    PQ_L_BSON,
    PQ_L_UUID,
    PQ_L_DECIMAL,
    PQ_L_DATE,
    PQ_L_TIME,
    PQ_L_TIMESTAMP,
    PQ_L_INT,
    PQ_L_FLOAT16,
    PQ_L_INTERVAL,
    PQ_L_LIST,
    PQ_L_MAP,
    PQ_L_UNKNOWN, /* the NULL type: always null */
    PQ_L_OTHER,   /* a logical type this reader does not know: read as its physical type */
} pq_logical;

typedef struct pq_node {
    const char *name;
    const char *path; /* dotted from the top-level column: "messages.list.element.role" */
    int32_t index;    /* in the schema's pre-order; 0 is the root */
    int32_t parent;   /* -1 for the root */
    int32_t n_children;
    const int32_t *children; /* node indices, in schema order */
    int8_t repetition;       /* pq_repetition */
    int8_t physical;         /* pq_physical */
    int32_t type_length;     /* FIXED_LEN_BYTE_ARRAY */
    int8_t logical;          /* pq_logical */
    int32_t scale, precision; /* DECIMAL */
    int8_t unit;              /* TIME, TIMESTAMP: data_time_unit */
    bool utc;                 /* TIME, TIMESTAMP: isAdjustedToUTC */
    int8_t int_bits;          /* INT: 8, 16, 32, 64 */
    bool int_signed;          /* INT */
    int32_t leaf;             /* leaf column index (schema order), -1 for groups */
    int16_t max_def, max_rep; /* levels of this node (for a leaf: of its column) */
    int32_t field_id;         /* SchemaElement.field_id (Iceberg/Delta id column mapping) */
    bool has_field_id;
} pq_node;

/* Open a file and read its footer. `name` is how errors name the file (the user's spelling). */
ft_status pq_open(const char *path, const char *name, pq_file **out, ft_err *err);
void pq_close(pq_file *f); /* NULL is a no-op */

const char *pq_name(const pq_file *f);
const pq_node *pq_node_at(const pq_file *f, int32_t index); /* 0: the root; NULL out of range */
size_t pq_num_nodes(const pq_file *f);
int64_t pq_num_rows(const pq_file *f);
int64_t pq_num_row_groups(const pq_file *f);
int64_t pq_row_group_rows(const pq_file *f, int64_t rg);
int64_t pq_row_group_first_row(const pq_file *f, int64_t rg); /* file row index of its first row */
const char *pq_created_by(const pq_file *f);                  /* "" when absent */
/* The footer's key/value metadata ("ARROW:schema", "pandas", ...): value or NULL. */
const char *pq_metadata(const pq_file *f, const char *key, size_t *len);

/* A top-level column by name (node index), or -1. */
int32_t pq_find_column(const pq_file *f, const char *name);
/* A child of node `parent` (0: the top-level columns) by its field_id, or -1. */
int32_t pq_find_field_id(const pq_file *f, int32_t parent, int32_t field_id);
/* Give node `index` another name (its path stays): what pq_find_column and the names of struct
 * values see from then on. Delta's id column mapping names nodes by the table's physical names. */
ft_status pq_rename_node(pq_file *f, int32_t index, const char *name, ft_err *err);
/* Any node by dotted path ("a.b.c"), or -1. */
int32_t pq_find_path(const pq_file *f, const char *path);

/* One row group's decoded rows. Zero-initialize before the first pq_read_row_group; reuse it
 * for the next row group (its memory is recycled); pq_rows_free at the end. */
typedef struct pq_rows {
    int64_t row_group;
    int64_t n;         /* rows */
    int64_t first_row; /* file row index of row 0: row r of this group is row first_row + r of the file */
    size_t n_columns;  /* selected columns */
    const int32_t *columns; /* their node indices (a copy of the selection) */
    data_value *cells; /* (n, n_columns), row-major */
    void *impl_;       /* buffers owned by the rows */
} pq_rows;

/* Decode the selected columns of row group `rg`. A selected node is a top-level column or a
 * node nested only in structs (no repeated ancestor); its value is a whole subtree (lists,
 * structs, maps assembled from definition and repetition levels). Unselected columns are not
 * read. */
ft_status pq_read_row_group(pq_file *f, int64_t rg, const int32_t *columns, size_t n_columns, pq_rows *rows,
                            ft_err *err);
void pq_rows_free(pq_rows *rows);

/* ---------------------------------------------------------------- for tests and fuzzing */

/* Parse a FileMetaData from `data` (the footer without its length and magic). */
ft_status pq_open_footer_bytes(const uint8_t *data, size_t len, const char *name, pq_file **out, ft_err *err);
/* Decode a whole in-memory file (every column of every row group) and drop the rows: the fuzz
 * target's entry. */
ft_status pq_decode_memory(const uint8_t *data, size_t len, ft_err *err);

#endif
