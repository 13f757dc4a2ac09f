/* data/table.h (module-internal): typed cell values shared by the table readers (Parquet, Arrow
 * IPC, Delta, Hugging Face datasets), their one JSON writer (`ftune data head`), and the step
 * that turns a row's selected columns into the JSON record the reader interface yields
 * (ftune/data.h: FT_RECORD_JSON_VALUE).
 *
 * A data_value keeps the exact type a file stored, so `data head` can print integers of any
 * width, decimals with their digits and scale, dates and timestamps as the mapping says
 * (docs/data.md "Values as JSON"). Values borrow their bytes and children from whoever decoded
 * them (a pq_rows, an Arrow batch): they live as long as it does. */
#ifndef FTUNE_DATA_TABLE_H
#define FTUNE_DATA_TABLE_H

#include <jansson.h>
#include <pthread.h>

#include "ftune/data.h"

/* ---------------------------------------------------------------- values */

typedef enum data_vkind {
    DATA_V_NULL = 0,
    DATA_V_BOOL,
    DATA_V_INT,       /* i: any signed integer up to 64 bits */
    DATA_V_UINT,      /* u: unsigned integers (UINT_64 up to 2^64-1) */
    DATA_V_FLOAT,     /* f: a float32 value (widened exactly; printed as the shortest float32 form) */
    DATA_V_DOUBLE,    /* f */
    DATA_V_STRING,    /* bytes, n: UTF-8 text (not checked here) */
    DATA_V_BINARY,    /* bytes, n: printed as base64 */
    DATA_V_DECIMAL,   /* unscaled value: n == 0: i; else bytes[n], big-endian two's complement; scale */
    DATA_V_DATE,      /* i: days since 1970-01-01 */
    DATA_V_TIME,      /* i: units since midnight; unit, utc */
    DATA_V_TIMESTAMP, /* i: units since 1970-01-01T00:00:00; unit, utc */
    DATA_V_LIST,      /* items[n] */
    DATA_V_STRUCT,    /* items[n], names[n] */
    DATA_V_MAP,       /* items[2n]: key0, value0, key1, value1, ... */
} data_vkind;

typedef enum data_time_unit { DATA_SECONDS = 0, DATA_MILLIS, DATA_MICROS, DATA_NANOS } data_time_unit;

typedef struct data_value {
    uint8_t kind; /* data_vkind */
    uint8_t unit; /* TIME, TIMESTAMP: data_time_unit */
    bool utc;     /* TIME, TIMESTAMP: isAdjustedToUTC (printed with a trailing Z) */
    int32_t scale; /* DECIMAL */
    uint32_t n;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double f;
        const uint8_t *bytes;
        const struct data_value *items;
    };
    const char *const *names; /* STRUCT */
} data_value;

/* Append v as JSON (the stable mapping of `ftune data head`): booleans, integers (exact, any
 * width) and floats as JSON numbers (NaN, Infinity, -Infinity as strings); strings as JSON
 * strings (invalid UTF-8 replaced by U+FFFD); binary as base64; DECIMAL as a string with its
 * exact digits and scale ("123.450"); DATE "YYYY-MM-DD"; TIME "HH:MM:SS.ffffff"; TIMESTAMP ISO
 * 8601 with microseconds ("2021-09-08T11:11:11.000000", + "Z" when UTC-adjusted; nanoseconds
 * truncated toward the past); lists as arrays, structs as objects, maps as arrays of
 * {"key": k, "value": v}; null as null. */
ft_status data_value_write_json(ft_buf *out, const data_value *v, ft_err *err);

/* Convert v to a jansson value for a record: strings must be valid UTF-8 (else FT_ERR_INVALID
 * with the byte offset of the first bad byte in err->offset); integers beyond int64 and
 * decimals become strings as in data_value_write_json, as do dates, times and timestamps.
 * The caller owns *out. */
ft_status data_value_to_json(const data_value *v, json_t **out, ft_err *err);

/* ---------------------------------------------------------------- columns to records
 * Which columns a task reads, and under which record key: CHAT_COMPLETION: "messages";
 * INSTRUCTION_FINETUNE: "prompt" and "response" (or "completion" when the table has no response
 * column); CONTINUED_PRETRAIN: "text". The --*-column options rename them (ft_reader_params). */
typedef struct data_task_columns {
    size_t n;
    const char *column[3]; /* column names in the table */
    const char *key[3];    /* record keys: "messages", "prompt", "response", "completion", "text" */
    bool optional[3];      /* a null value leaves the key out of the record (IFT tables with both
                              response and completion columns: each row uses the one it has) */
} data_task_columns;

/* The columns of `task` given `p` (column names may be NULL for the defaults). `has_column`
 * (may be NULL) says whether the table has a column, to choose between response and completion
 * (a table with both reads both, as optional columns). */
void data_task_columns_get(ft_task_type task, const ft_reader_params *p,
                           bool (*has_column)(void *ctx, const char *name), void *ctx, data_task_columns *out);

/* The record of one row: {key: value, ...} for the task's columns (cells[i] is the value of
 * cols->column[i]), built straight from the cells: the tree validation checks and samples are
 * built from, equal to what parsing data_row_to_record_text's text gives (so a row reads the same
 * whether validation sees it here or the loader fetches its spilled text). A string that is not
 * UTF-8 or holds a NUL byte, or a struct with two fields of one name, is a problem for the row:
 * FT_ERR_INVALID with a message naming the column. `tmp` is the caller's scratch. */
ft_status data_row_to_record(const data_task_columns *cols, const data_value *cells, ft_buf *tmp, json_t **out,
                             ft_err *err);
/* The same record as compact JSON text in *out (replaced): what table readers spill for the
 * loader's fetch. */
ft_status data_row_to_record_text(const data_task_columns *cols, const data_value *cells, ft_buf *out, ft_err *err);

/* ---------------------------------------------------------------- the record spill
 * A table reader's records are fetched again later in shuffled order (the loader). Decoding a
 * whole row group or file again for one row would be quadratic, so table readers write each
 * record's JSON text (CPT: the text) to an unlinked temporary file as `next` yields it, and
 * `fetch` reads that range back with pread (thread-safe). Disk, not memory, grows with the data. */
typedef struct data_spill {
    int fd;          /* -1 until the first flush */
    int64_t end;     /* bytes appended */
    int64_t flushed; /* bytes written to the file; the rest wait in `pending` (1 MiB at most) */
    ft_buf pending;
    pthread_mutex_t lock;
} data_spill;
void data_spill_init(data_spill *s);
/* Append bytes; *off gets where they start. */
ft_status data_spill_append(data_spill *s, const void *data, size_t len, int64_t *off, ft_err *err);
/* Read [off, off+len) into scratch (NUL-terminated); safe from several threads at once. */
ft_status data_spill_read(data_spill *s, int64_t off, int64_t len, ft_buf *scratch, ft_err *err);
void data_spill_deinit(data_spill *s);

#endif
