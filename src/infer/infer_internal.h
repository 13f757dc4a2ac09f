/* infer/infer_internal.h (internal to src/infer/): the JSON prefix check of constrained decoding
 * (json_prefix.c), used by the engine (engine.c). */
#ifndef FTUNE_INFER_INTERNAL_H
#define FTUNE_INFER_INTERNAL_H

#include <jansson.h>

#include "ftune/infer.h"

enum { INFER_JSON_DEPTH = 32 };

/* Where a JSON text stands after the characters fed so far (a plain value: copy it to try). */
typedef struct infer_json {
    int mode, num, hex, depth, ws_run, num_len, exp_len;
    bool is_key, empty_ok;
    const char *lit;
    int lit_at;
    char stack[INFER_JSON_DEPTH];
} infer_json;
void infer_json_init(infer_json *j);
/* Feed n characters; false when they make the text no prefix of a JSON object (j is then
 * undefined: feed a copy). */
bool infer_json_feed(infer_json *j, const char *s, size_t n);
/* Whether the object is complete. */
bool infer_json_done(const infer_json *j);

/* JSON Schema constrained decoding (json_schema.c): a compiled schema, and where a text stands
 * in it (a plain value: copy it to try a continuation). */
typedef struct infer_schema_node infer_schema_node;
ft_status infer_schema_compile(const json_t *schema, infer_schema_node **out, ft_err *err);
void infer_schema_free(infer_schema_node *n);
typedef struct infer_schema_frame {
    const infer_schema_node *n;
    int phase, num, exp;
    int64_t idx, pos, len, digits;
    bool sign, in_lit, lit_done;
    uint64_t lit_mask;
} infer_schema_frame;
typedef struct infer_schema_state {
    const infer_schema_node *root;
    int depth, ws_run;
    bool started;
    infer_schema_frame f[INFER_JSON_DEPTH];
} infer_schema_state;
void infer_schema_init(infer_schema_state *st, const infer_schema_node *root);
/* false when the characters make the text no prefix of a valid document (st is then undefined) */
bool infer_schema_feed(infer_schema_state *st, const char *s, size_t n);
bool infer_schema_done(const infer_schema_state *st);

#endif
