/* data/data_internal.h: what the files of src/data/ share and nobody else sees: the JSON
 * position locator and the dataset index. */
#ifndef FTUNE_DATA_INTERNAL_H
#define FTUNE_DATA_INTERNAL_H

#include "ftune/data.h"

/* ---------------------------------------------------------------- JSON locator
 * jansson is the parser of record but keeps no positions. When a record has a problem, this
 * small scanner walks the same (already accepted) text once and records where each value and
 * object key starts, so errors can point at the offending value. Nodes are in document order;
 * node 0 is the top-level value. */
typedef struct json_loc_node {
    int64_t start, end;       /* the value's bytes [start, end) */
    int64_t key_start;        /* object members: offset of the key's opening quote, else -1 */
    int64_t key_off, key_len; /* decoded key in json_loc.keys */
    int32_t parent;
    int32_t first_child; /* into json_loc.children */
    int32_t n_children;
    char type; /* '{', '[', '"', 'n' (number), 'l' (literal true/false/null) */
} json_loc_node;

typedef struct json_loc {
    json_loc_node *nodes;
    int32_t n, cap;
    int32_t *children; /* children of node k: children[nodes[k].first_child ...] */
    ft_buf keys;
    bool ok;
} json_loc;

/* Scan text; false (and loc->ok false) if it is not JSON the scanner understands. */
bool json_loc_build(json_loc *loc, const char *text, size_t len);
void json_loc_free(json_loc *loc);
/* Child of an object node by decoded key, or -1. */
int32_t json_loc_member(const json_loc *loc, int32_t node, const char *key);
/* i-th child of an array or object node, or -1. */
int32_t json_loc_child(const json_loc *loc, int32_t node, int64_t i);
/* Start of the token of `text` that holds byte pos-1 (jansson reports positions just past the
 * token it stopped at). */
int64_t json_loc_token_start(const char *text, size_t len, int64_t pos);

/* ---------------------------------------------------------------- readers */

/* Free a reader's source_names and source_paths. */
void data_reader_names_free(ft_reader *r);
/* The files under `path` (a file or a folder searched recursively, hidden entries skipped,
 * sorted) whose names end with `ext`: *names as the user would write them (path + relative
 * part), *paths as opened (dbfs:/Volumes mapped). An empty folder gives *n = 0. Free each and
 * the arrays. */
ft_status data_list_files(const char *path, const char *ext, char ***names, char ***paths, size_t *n, ft_err *err);
/* The parquet reader over these files (takes the arrays). */
ft_status data_parquet_reader_new(char **names, char **paths, size_t n, ft_task_type task, const ft_reader_params *p,
                                  ft_reader **out, ft_err *err);
/* `data head` over these parquet files. */
ft_status data_parquet_head(char **names, char **paths, size_t n, const ft_data_head_params *p, ft_data_row_fn fn,
                            void *ctx, ft_err *err);

/* ---------------------------------------------------------------- the dataset index */

typedef struct ds_entry {
    ft_data_loc loc;
    int32_t n_tokens;    /* sample length after truncation (CPT: the whole document) */
    int32_t n_trainable; /* over all pieces for CPT */
} ds_entry;

struct ft_dataset {
    ft_reader *reader;
    ft_sample_params sp;
    ds_entry *e;
    int64_t n, cap;
    int64_t n_tokens;
    int32_t pad_id;
};

ft_status ds_push(ft_dataset *ds, const ds_entry *e, ft_err *err);

/* Lengths of the pieces a record makes (1 for chat/IFT; CPT: pieces of T). */
int64_t ds_pieces(const ft_dataset *ds, int64_t rec);

#endif
