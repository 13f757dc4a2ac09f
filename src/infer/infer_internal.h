/* infer/infer_internal.h (internal to src/infer/): the JSON prefix check of constrained decoding
 * (json_prefix.c), used by the engine (engine.c). */
#ifndef FTUNE_INFER_INTERNAL_H
#define FTUNE_INFER_INTERNAL_H

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

#endif
