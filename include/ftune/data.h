/* ftune/data.h: training data. Readers (JSONL files and folders, folders of .txt), validation
 * that reports every problem with file:line:column, sample building for the three task types,
 * packing into fixed-length rows, a serializable data cursor, and a loader that tokenizes and
 * packs ahead of training in worker threads. Implemented in src/data/. Spec: SPEC.md §3, §4.
 *
 * The pipeline:
 *
 *   path --ft_reader--> records --validate + ft_sample_build--> samples (ids, trainable flags)
 *        --scan--> ft_dataset (an index: where each record is, how many tokens it makes)
 *        --ft_loader (workers: fetch + tokenize; packer: best-fit in a shuffle window)--> ft_batch
 *
 * Memory: readers stream (a JSONL line at a time, bounded by max_line_bytes; a .txt file at a
 * time, bounded by max_file_bytes). The dataset index keeps 40 bytes per record, never the
 * text or the tokens; the loader holds two shuffle windows of tokenized samples plus the queue.
 *
 * Table sources (Delta tables `catalog.schema.table`, Hugging Face datasets `org/name/split`
 * as Parquet or Arrow files in the local caches, Parquet and Arrow files and folders) are
 * ft_readers too: they yield records of kind FT_RECORD_JSON_VALUE (a row's task columns as a
 * JSON object: {"messages": [...]} or {"prompt": .., "response": ..}, or {"text": ..} for CPT)
 * located by (data file, 1-based row). Validation, sample building, the index, packing, the
 * cursor and the loader only see records and locations. */
#ifndef FTUNE_DATA_H
#define FTUNE_DATA_H

#include <jansson.h>

#include "ftune/base.h"
#include "ftune/batch.h" /* ft_batch: the packed batch format the loader produces */

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ft_tok ft_tok; /* ftune/tok.h */
typedef struct ft_chat ft_chat; /* ftune/tpl.h */

/* ---------------------------------------------------------------- task types */

typedef enum ft_task_type {
    FT_TASK_CHAT_COMPLETION = 0,
    FT_TASK_INSTRUCTION_FINETUNE,
    FT_TASK_CONTINUED_PRETRAIN,
} ft_task_type;

/* "CHAT_COMPLETION" | "INSTRUCTION_FINETUNE" | "CONTINUED_PRETRAIN" (case-insensitive). */
ft_status ft_task_type_parse(const char *s, ft_task_type *out, ft_err *err);
const char *ft_task_type_name(ft_task_type t);
/* Run-name prefix: "chat" | "ift" | "cpt". */
const char *ft_task_type_prefix(ft_task_type t);

/* training_duration: `Nep` epochs, `Ntok` tokens, `Nba` optimizer steps (SPEC §2). */
typedef enum ft_duration_unit { FT_DURATION_EPOCHS, FT_DURATION_TOKENS, FT_DURATION_BATCHES } ft_duration_unit;
typedef struct ft_data_duration {
    ft_duration_unit unit;
    int64_t value;
} ft_data_duration; /* parsed by ft_duration_parse (ftune/train.h) */

/* ---------------------------------------------------------------- readers
 * A reader yields the records of a data path in a fixed, deterministic order (files sorted by
 * their path bytes), and fetches one record again from its location (random access, used by
 * the loader after a shuffle). */

/* Where a record is. `source` indexes the reader's sources (files); `a` and `b` belong to the
 * reader: JSONL: byte offset and length of the line; .txt: 0 and the file size; table sources
 * (parquet): `line` is the 1-based row in the file, `a`/`b` locate the record's copy in the
 * reader's spill file. */
typedef struct ft_data_loc {
    int32_t source;
    int64_t line; /* 1-based line (JSONL) or row; 0 for a whole file */
    int64_t a, b;
} ft_data_loc;

typedef enum ft_record_kind {
    FT_RECORD_JSON_TEXT,  /* one JSON document as text (a JSONL line, without BOM or line end) */
    FT_RECORD_TEXT,       /* a whole plain-text document (a .txt file, BOM removed) */
    FT_RECORD_JSON_VALUE, /* an already structured row (parquet, Arrow, Delta): `value` */
    FT_RECORD_PROBLEM,    /* the reader could not produce a record here: `problem` says why */
} ft_record_kind;

/* A record, borrowed from the reader until its next call. */
typedef struct ft_record {
    ft_record_kind kind;
    const char *data; /* JSON_TEXT / TEXT: the bytes (not NUL-terminated) */
    size_t len;
    json_t *value;       /* JSON_VALUE */
    ft_data_loc loc;     /* where it is */
    const char *problem; /* PROBLEM: "over-long line (more than N bytes)", "empty file", ... */
    int64_t problem_column; /* PROBLEM: 1-based column on loc.line (0: none) */
    int64_t problem_offset; /* PROBLEM: 0-based byte offset in the file (-1: none) */
} ft_record;

typedef struct ft_reader_params {
    size_t max_line_bytes; /* a longer JSONL line is a PROBLEM record, not an allocation (default 64 MiB) */
    size_t max_file_bytes; /* a longer .txt file is a PROBLEM record (default 1 GiB) */
    size_t chunk_bytes;    /* read size (default 1 MiB) */
    /* Table sources (parquet, ...): the columns a task reads, NULL for the defaults "prompt",
     * "response" (else "completion"), "messages", "text". Other columns are not decoded. */
    const char *prompt_column, *response_column, *messages_column, *text_column;
    /* The caller reads records in order only and never calls fetch (ft_data_validate without a
     * dataset): table readers then keep no copy of the records for fetch. Default false. */
    bool no_fetch;
} ft_reader_params;
ft_reader_params ft_reader_default_params(void);

typedef struct ft_reader ft_reader;
/* The reader interface; each source kind implements it. */
typedef struct ft_reader_vtable {
    const char *kind; /* "jsonl", "txt" (later "parquet", "delta", "hf") */
    /* Next record in order; *done true (and rec untouched) at the end. */
    ft_status (*next)(ft_reader *r, ft_record *rec, bool *done, ft_err *err);
    /* Read the record at `loc` again into `scratch` (the caller's; rec borrows from it). Must be
     * safe to call from several threads at once, each with its own scratch. */
    ft_status (*fetch)(ft_reader *r, const ft_data_loc *loc, ft_buf *scratch, ft_record *rec, ft_err *err);
    /* Start again from the first record. */
    ft_status (*rewind)(ft_reader *r, ft_err *err);
    void (*free)(ft_reader *r);
    /* Optional (NULL for JSONL and .txt): where a record is, in the reader's words ("row group
     * 2, row 17"), written into buf; validation prefixes the record's problems with it. Called
     * between `next` calls, never concurrently with them. */
    const char *(*where)(ft_reader *r, const ft_data_loc *loc, char *buf, size_t cap);
} ft_reader_vtable;

/* Every reader starts with this header; implementations embed it first. */
struct ft_reader {
    const ft_reader_vtable *vt;
    char **source_names; /* how errors name each source: the path as the user wrote it + relative part */
    char **source_paths; /* the path opened (after dbfs:/Volumes mapping) */
    size_t n_sources;
};

/* Open a data path for a task: a JSONL file or a folder searched recursively for *.jsonl
 * (CHAT_COMPLETION, INSTRUCTION_FINETUNE), a folder searched recursively for *.txt or one .txt
 * file (CONTINUED_PRETRAIN; other files ignored; symlinked folders followed once, loops safe),
 * or, for every task, a .parquet file or a folder of .parquet files (kind "parquet": columns
 * messages | prompt + response/completion | text, see ft_reader_params).
 * `dbfs:/Volumes/...` and `/Volumes/...` map to $FTUNE_HOME/volumes/... A missing path is
 * FT_ERR_NOT_FOUND; a folder without matching files is FT_ERR_INVALID. Table sources
 * (ft_data_path_is_table): a Delta table (`catalog.schema.table` under $FTUNE_HOME/tables, or a
 * folder with _delta_log/; `@N` reads version N), `org/name[/split]` from the local Hugging Face
 * caches, a .parquet or .arrow file, or a folder of them. `p` may be NULL. */
ft_status ft_reader_open(const char *path, ft_task_type task, const ft_reader_params *p, ft_reader **out,
                         ft_err *err);
/* Does ft_reader_open read `path` as a table source (a Delta table or its name, with or without
 * `@N`; an HF dataset id that is not a local path; a .parquet or .arrow file)? Such a path need
 * not exist as a file. */
bool ft_data_path_is_table(const char *path);
/* The version a Delta table source without `@N` reads now (its latest), so that a run can
 * record `path@N` and read that snapshot again on resume and in evaluation; -1 for any other
 * source and for a path that already names a version. Errors are the table's (as reading it). */
ft_status ft_data_table_latest_version(const char *path, int64_t *version, ft_err *err);
/* The snapshot a table source reads now, named so that reading it later gives the same rows even
 * when the source moves on: a Delta table without `@N` -> `path@N` (its latest version); a Hugging
 * Face dataset from the hub cache without `@rev` -> `path@<commit>` (the snapshot refs/main, or
 * refs/convert/parquet, names now). *pinned NULL (nothing to pin) for any other source, a path
 * that names its snapshot already, and a dataset read from the datasets cache (whose folder is
 * its version); owned by the caller. Errors are the source's (as reading it). */
ft_status ft_data_source_pin(const char *path, char **pinned, ft_err *err);
/* "Delta table a.b.c, version 3: 2 data files", "Hugging Face dataset org/name (hub cache, ...)",
 * ... when r reads a table source, else NULL (borrowed from r). */
const char *ft_reader_summary(const ft_reader *r);
static inline ft_status ft_reader_next(ft_reader *r, ft_record *rec, bool *done, ft_err *err) {
    return r->vt->next(r, rec, done, err);
}
static inline ft_status ft_reader_fetch(ft_reader *r, const ft_data_loc *loc, ft_buf *scratch, ft_record *rec,
                                        ft_err *err) {
    return r->vt->fetch(r, loc, scratch, rec, err);
}
static inline ft_status ft_reader_rewind(ft_reader *r, ft_err *err) { return r->vt->rewind(r, err); }
void ft_reader_free(ft_reader *r); /* NULL is a no-op */

/* ---------------------------------------------------------------- looking at table sources
 * `ftune data head`: the rows of a table source (a .parquet file or a folder of them; later
 * Arrow, Delta tables, Hugging Face datasets) as JSON Lines, columns by name, values mapped as
 * docs/data.md "Values as JSON" says (exact integers, decimals as strings with their scale,
 * ISO dates and timestamps, base64 binary, maps as [{"key","value"}]). */
typedef struct ft_data_head_params {
    int64_t limit;              /* rows (default 10; < 0: all) */
    const char *const *columns; /* names of top-level columns to show (NULL: all), in this order */
    size_t n_columns;
    int64_t table_version; /* Delta: the snapshot to read (-1: the latest) */
} ft_data_head_params;
void ft_data_head_default_params(ft_data_head_params *p);
/* Called with each row's JSON text (no newline); return false to stop. */
typedef bool (*ft_data_row_fn)(void *ctx, const char *json, size_t len);
/* Read the first rows of `source` (files in sorted order) and hand each to fn. An unknown
 * column name is FT_ERR_INVALID listing the columns there are. */
ft_status ft_data_head(const char *source, const ft_data_head_params *p, ft_data_row_fn fn, void *ctx,
                       ft_err *err);

/* ---------------------------------------------------------------- samples
 * A sample is a token sequence with a trainable flag per token: trainable[i] = 1 means token i
 * is a loss target (predicted at position i-1), so trainable[0] never counts.
 *   INSTRUCTION_FINETUNE: [BOS if the tokenizer adds one] prompt response EOS; response + EOS trainable.
 *   CHAT_COMPLETION: the model's chat template (ftune/tpl.h) with its loss mask.
 *   CONTINUED_PRETRAIN: [BOS if the tokenizer adds one] text EOS, all trainable; the loader
 *   splits it into pieces of context_length (ft_sample_cpt_pieces). */
typedef struct ft_sample {
    int32_t *ids;
    uint8_t *trainable;
    size_t n, cap;
    size_t n_full;       /* length before truncation */
    bool truncated;      /* chat/IFT: cut at the end to context_length */
    int64_t n_trainable; /* trainable tokens at positions >= 1, after truncation (CPT: over all pieces) */
} ft_sample;
void ft_sample_free(ft_sample *s);

typedef struct ft_sample_params {
    ft_task_type task;
    const ft_tok *tok;     /* required to build samples */
    const ft_chat *chat;   /* CHAT_COMPLETION: the model's chat template (ftune/tpl.h) */
    int64_t context_length; /* T */
    bool last_assistant;    /* chat: loss only on the last assistant turn (loss_on = last_assistant) */
} ft_sample_params;

/* Per-thread working memory of sample building (tokenizer encodings). Zero-initialize. */
typedef struct ft_sample_scratch {
    void *p_;
} ft_sample_scratch;
void ft_sample_scratch_free(ft_sample_scratch *s);

/* Build the sample of a record. `parsed` is the record's JSON (NULL for TEXT records; for
 * JSON_TEXT records the caller has parsed and validated it). Replaces out's contents. A chat
 * template error is FT_ERR_INVALID / FT_ERR_PARSE with the template's message. */
ft_status ft_sample_build(const ft_sample_params *p, const json_t *parsed, const ft_record *rec,
                          ft_sample_scratch *scratch, ft_sample *out, ft_err *err);
/* CPT: how many pieces of at most T tokens a document of n tokens makes (a last piece of one
 * token has nothing to predict and is dropped). */
int64_t ft_sample_cpt_pieces(int64_t n, int64_t T);

/* ---------------------------------------------------------------- validation */

typedef enum ft_issue_level { FT_ISSUE_ERROR = 0, FT_ISSUE_WARNING = 1 } ft_issue_level;

/* One problem. `file` is the source's name as the user would recognise it. Line and column are
 * 1-based (0 when not applicable); the column is in bytes from the line start (after a BOM) and
 * points at the offending value or key. `offset` is the byte offset in the file (-1 if none).
 * Table sources (Parquet, Arrow, Delta, Hugging Face datasets) have rows, not lines: `row` is the
 * row's 0-based index in its data file (as pandas' df.iloc, pyarrow, DuckDB's file_row_number and
 * datasets' ds[i] count), line and column are 0, and the message starts with the row's place
 * ("row 33 (row group 0, row 33 in it): ..."); `row` is -1 for everything else. */
typedef struct ft_data_issue {
    ft_issue_level level;
    const char *file;
    int64_t line, column, offset;
    const char *message;
    int64_t row;
} ft_data_issue;
/* Where an issue is, as every face prints it: "file:line:column" for a line of text, "file" for a
 * table row or a whole file (the message says the row). Returns buf. */
const char *ft_data_issue_place(const ft_data_issue *is, char *buf, size_t cap);
typedef void (*ft_data_issue_fn)(void *ctx, const ft_data_issue *issue);

/* Token-length histogram buckets: [0,16), [16,32), ..., doubling; the last is open-ended. */
#define FT_DATA_HIST_BUCKETS 16
static inline int64_t ft_data_hist_lower(int i) { return i == 0 ? 0 : (int64_t)8 << i; }

typedef struct ft_validate_params {
    ft_task_type task;
    ft_sample_params sample; /* tok NULL: structure only, no token statistics */
    ft_reader_params reader;
    size_t max_issues;        /* kept in the report (the rest are counted); default 1000 */
    ft_data_issue_fn on_issue; /* every issue as it is found, in file order (may be NULL) */
    void *on_issue_ctx;
    int threads; /* record workers (0: all cores) */
    bool build_dataset; /* also return the index the loader needs */
    ft_data_duration duration; /* for tokens x epochs; default 1 epoch */
    int64_t global_batch_size; /* rows per optimizer step, for Nba durations and the step count */
    uint64_t seed;             /* packing layout of the epoch counts */
    int64_t shuffle_window;    /* records per packing window (0: default) */
} ft_validate_params;
void ft_validate_default_params(ft_validate_params *p, ft_task_type task);

typedef struct ft_data_report {
    bool valid;         /* no errors */
    int64_t n_sources;  /* files read */
    char **sources;     /* their names (issues' `file` points here) */
    char *source_summary; /* table sources: what was read ("Delta table a.b.c, version 3: ..."), else NULL */
    int64_t n_records;  /* records seen (lines that are not blank, files for CPT) */
    int64_t n_valid_records;
    int64_t n_errors, n_warnings;
    ft_data_issue *issues; /* the first max_issues issues, in file order */
    size_t n_issues;
    int64_t n_issues_omitted;
    /* token statistics (when a tokenizer was given): */
    bool has_tokens;
    int64_t n_samples;        /* training samples (CPT: pieces) */
    int64_t n_tokens;         /* tokens in the samples, after truncation */
    int64_t n_tokens_full;    /* before truncation */
    int64_t n_trainable;      /* trainable tokens */
    int64_t n_truncated;      /* samples cut at the end (chat/IFT) */
    int64_t n_no_trainable;   /* samples with no trainable token (each also an error) */
    int64_t max_len;          /* longest sample before truncation */
    int64_t hist[FT_DATA_HIST_BUCKETS]; /* samples by length before truncation (CPT: by document) */
    /* the plan (when token statistics exist): */
    int64_t context_length;
    int64_t rows_per_epoch;      /* packed rows of context_length in epoch 0 */
    double padding_pct;          /* padding / (rows * T) in epoch 0 */
    double epochs;               /* how many epochs the duration means (may be fractional for tok/ba) */
    int64_t tokens_per_epoch;    /* = n_tokens */
    int64_t tokens_total;        /* tokens_per_epoch x epochs */
    int64_t steps_total;         /* optimizer steps at global_batch_size rows (0 if not given) */
    /* filled by the caller that measured a training step (the CLI), else est_seconds < 0 and
     * est_note says why (room for a whole formatted ft_err, location included, and its prefix): */
    double est_seconds;
    char est_note[2048];
} ft_data_report;
void ft_data_report_free(ft_data_report *r);
/* {"valid", "errors": [{"file","line","column","level","message"}...], "errors_omitted",
 * "summary": {...}}; at most `max_list` issues listed (new reference). */
json_t *ft_data_report_to_json(const ft_data_report *r, size_t max_list);

typedef struct ft_dataset ft_dataset;

/* Validate every record of `path` (SPEC §3): returns FT_OK whenever the data could be read to
 * the end, valid or not (*report says which and why); an error status only when the run itself
 * failed (missing path, I/O error, out of memory). With p->build_dataset and valid data,
 * *dataset gets the index the loader reads (else NULL). Free both. */
ft_status ft_data_validate(const char *path, const ft_validate_params *p, ft_data_report **report,
                           ft_dataset **dataset, ft_err *err);

/* Check one JSON record text (no tokenizer): the structural checks of `task`, reporting each
 * issue through `fn` with columns relative to `data` (line number `line`). Returns the number
 * of errors found. Used by validation and by the fuzz target. */
int64_t ft_data_check_record(ft_task_type task, const char *file, int64_t line, const char *data, size_t len,
                             json_t **parsed, ft_data_issue_fn fn, void *ctx);

/* ---------------------------------------------------------------- fingerprints
 * What a data path is made of now: {"path": path, "files": [{"path", "size", "mtime" (seconds
 * since the epoch), "sha256"}]}, one entry per file its reader opens, in reading order. A run
 * records it when it starts so that a resume can tell whether the data changed (issue #9). */
ft_status ft_data_fingerprint(const char *path, ft_task_type task, json_t **out, ft_err *err);
/* Describe every difference between two fingerprints in `changes`, one line per file (size,
 * modification time, content hash; files gone or new). Returns how many files differ in content
 * (size or hash, or gone or new); a file only touched (same content, new time) is described but
 * not counted. */
int ft_data_fingerprint_compare(const json_t *before, const json_t *now, ft_buf *changes);

/* ---------------------------------------------------------------- dataset index */

int64_t ft_dataset_n_records(const ft_dataset *ds); /* records that make samples */
int64_t ft_dataset_n_tokens(const ft_dataset *ds);   /* tokens of one epoch */
const ft_sample_params *ft_dataset_sample_params(const ft_dataset *ds);
void ft_dataset_free(ft_dataset *ds);

/* ---------------------------------------------------------------- packing and the cursor
 * Each epoch visits every record once in an order that is a pseudo-random permutation of the
 * record indices, keyed by (seed, epoch) and computable at any position in O(1). Consecutive
 * `window` records of that order form a shuffle window: their samples (CPT: all pieces of each
 * document, in order) are packed best-fit decreasing into rows of T tokens, and the rows are
 * shuffled with the cursor's RNG. Positions restart at 0 for each sample; sample_ids number
 * the samples of a row 0, 1, ...; padding has input id pad (0 when the tokenizer has none),
 * target -100, position 0 and sample id -1. targets[t] = input_ids[t+1] of the same sample
 * when that token is trainable, else -100 (every sample's last position, padding). */
typedef struct ft_pack_params {
    int64_t T;      /* row length = context_length */
    int64_t window; /* records per shuffle window (default 2048) */
    uint64_t seed;
    bool shuffle; /* false: records in file order, rows in packing order (for tests and eval) */
} ft_pack_params;
void ft_pack_default_params(ft_pack_params *p, int64_t T, uint64_t seed);

/* Best-fit decreasing of `n` lengths (each in 1..T) into rows: row_of[i] gets the row of item
 * i, *n_rows the count. Items are placed longest first (equal lengths by index), each into the
 * open row with the least free space that still fits it (among equals, the row that reached
 * that free space last), else into a new row. Inside a row, items keep their placement order.
 * tools/reference/pack_golden.py implements the same rule independently. */
ft_status ft_pack_best_fit(const int64_t *lengths, size_t n, int64_t T, int64_t *row_of, int64_t *n_rows,
                           ft_err *err);
/* Position of record `i` of epoch `epoch` in [0, n): the permutation (identity when !shuffle). */
int64_t ft_pack_permute(const ft_pack_params *p, int64_t epoch, int64_t i, int64_t n);

/* Where the loader is: the next row to hand out is row `row` of window `window` of epoch
 * `epoch`; `rng` is the generator state at the start of that window (it shuffles the window's
 * rows). Resuming re-packs one window (no replay of earlier data). */
typedef struct ft_data_cursor {
    int64_t epoch, window, row;
    ft_rng rng;
    int64_t rows_done; /* rows handed out since the start of training (information) */
} ft_data_cursor;
void ft_data_cursor_init(ft_data_cursor *c, uint64_t seed);
/* {"epoch","window","row","rng":["hex",x4],"rows_done"} (new reference). */
json_t *ft_data_cursor_to_json(const ft_data_cursor *c);
ft_status ft_data_cursor_from_json(const json_t *j, ft_data_cursor *c, ft_err *err);

/* Rows, tokens and trainable tokens of epoch `epoch` with these packing parameters (from the
 * index only, no text is read). The trainer turns `Nep`/`Ntok` durations into steps with it. */
typedef struct ft_epoch_counts {
    int64_t rows, tokens, trainable, samples;
} ft_epoch_counts;
ft_status ft_dataset_count_epoch(const ft_dataset *ds, const ft_pack_params *p, int64_t epoch,
                                 ft_epoch_counts *out, ft_err *err);

/* ---------------------------------------------------------------- loader
 * Tokenization and packing run in worker threads ahead of training: a builder thread prepares
 * the next shuffle window (fetch, tokenize on `threads` threads, pack) while an emitter hands
 * out the current one; ready batches wait in a bounded queue. Output depends only on the
 * dataset, the parameters and the start cursor, never on thread timing. Batches follow each
 * other across epochs without end; the trainer decides when to stop. Memory: two windows of
 * tokenized samples plus `prefetch` batches. */
typedef struct ft_loader_params {
    ft_pack_params pack;
    int64_t B;        /* rows per batch */
    int64_t prefetch; /* batches kept ready (default 4) */
    int threads;      /* tokenizing threads (0: all cores) */
} ft_loader_params;
void ft_loader_default_params(ft_loader_params *p, int64_t B, int64_t T, uint64_t seed);

typedef struct ft_data_batch {
    ft_batch batch;           /* (B, T): input_ids, targets, position_ids, sample_ids */
    int64_t epoch;            /* epoch of the first row */
    int64_t n_tokens;         /* non-padding tokens */
    int64_t n_trainable;      /* targets != -100 */
    int64_t n_samples;        /* sample pieces in the batch */
    bool epoch_ended;         /* an epoch ended inside this batch (after its row epoch_end_row) */
    int64_t epoch_end_row;
    ft_data_cursor cursor;    /* where the loader is after this batch (save it in checkpoints) */
} ft_data_batch;

typedef struct ft_loader ft_loader;
/* Start the loader at `start` (NULL: the beginning, ft_data_cursor_init(seed)). The dataset
 * must outlive the loader. */
ft_status ft_loader_new(ft_dataset *ds, const ft_loader_params *p, const ft_data_cursor *start, ft_loader **out,
                        ft_err *err);
/* The next batch (blocks until ready). It stays valid until ft_loader_release. A worker's
 * failure (file changed since validation, out of memory) comes back here. */
ft_status ft_loader_next(ft_loader *l, ft_data_batch **out, ft_err *err);
void ft_loader_release(ft_loader *l, ft_data_batch *b);
/* Seconds ft_loader_next spent waiting for a batch (the trainer should see ~0). */
double ft_loader_wait_seconds(const ft_loader *l);
void ft_loader_free(ft_loader *l); /* stops the threads; NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
