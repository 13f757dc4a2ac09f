/* tests/fuzz/fuzz_json_schema.c: libFuzzer target for constrained decoding's JSON Schema
 * compiler (src/infer/json_schema.c, regex.c) and grammar matcher (grammar.c). The input up to
 * its first NUL byte is a schema (the byte after the first NUL, when there is one, sets strict
 * mode); the bytes after it steer a walk through the grammar: at each step the next input byte
 * picks among the bytes the state allows. Checked: a compile error is a clean FT_ERR with a
 * message; a compiled grammar's initial state is alive; every byte a state allows leaves a live
 * state; the fewest bytes left is 0 exactly when the text is complete; every complete text parses
 * as JSON (jansson); a walk that follows the shortest completion ends complete. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "infer/infer_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static infer_gstate g_st[3];

static void check_complete(const char *text, size_t n) {
    json_error_t je;
    json_t *v = json_loadb(text, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        __builtin_trap();
    json_decref(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 8192)
        return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t n_schema = nul ? (size_t)(nul - data) : size;
    bool strict = nul && n_schema + 1 < size && (data[n_schema + 1] & 1);
    const uint8_t *walk = nul ? nul + 1 : data + size;
    size_t n_walk = (size_t)(data + size - walk);
    json_t *schema = json_loadb((const char *)data, n_schema, 0, NULL);
    if (!schema)
        return 0;
    infer_grammar *g = NULL;
    ft_err err = {0};
    ft_status s = infer_schema_compile(schema, strict, &g, &err);
    json_decref(schema);
    if (s != FT_OK) {
        if (err.code != s || !err.msg[0])
            __builtin_trap();
        return 0;
    }
    infer_gstate_init(g, &g_st[0]);
    if (g_st[0].n == 0)
        __builtin_trap();
    char text[512];
    size_t len = 0;
    /* the walk: steered by the input, then along the shortest completion */
    for (size_t step = 0; len < sizeof text; step++) {
        int64_t left = infer_gstate_min_left(g, &g_st[0]);
        bool done = infer_gstate_done(&g_st[0]);
        bool exact = !g_st[0].lossy; /* with stacks dropped, the shortest completion may be gone */
        if (exact && (left == 0) != done)
            __builtin_trap();
        if (done)
            check_complete(text, len);
        bool steer = step < n_walk;
        if (!steer && done)
            break;
        uint8_t allowed[256];
        int n_allowed = 0, best = -1;
        int64_t best_left = INT64_MAX;
        for (int c = 0; c < 256; c++) {
            char ch = (char)c;
            if (!infer_gstate_feed(g, &g_st[0], &ch, 1, &g_st[1], &g_st[2]))
                continue;
            allowed[n_allowed++] = (uint8_t)c;
            int64_t l = infer_gstate_min_left(g, &g_st[1]);
            if (l < best_left)
                best_left = l, best = c;
        }
        if (n_allowed == 0) {
            if (!done && exact)
                __builtin_trap(); /* a live, incomplete text must go on */
            break;
        }
        if (!exact && !steer)
            break;
        if (!steer && best_left != left - 1)
            __builtin_trap(); /* the shortest completion shortens by one each byte */
        char ch = (char)(steer ? allowed[walk[step] % n_allowed] : best);
        if (!infer_gstate_feed(g, &g_st[0], &ch, 1, &g_st[1], &g_st[2]))
            __builtin_trap();
        infer_gstate_copy(&g_st[0], &g_st[1]);
        text[len++] = ch;
    }
    infer_grammar_free(g);
    return 0;
}
