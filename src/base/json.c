/* base/json.c: jansson with ftune errors (file:line:column) and typed member getters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"

static ft_status from_jansson(const char *name, const json_error_t *je, ft_err *err) {
    return FT_ERR_AT(err, FT_ERR_PARSE, name, je->line > 0 ? je->line : 0, je->column > 0 ? je->column : 0,
                     "invalid JSON: %s", je->text);
}

ft_status ft_json_load_file(const char *path, json_t **out, ft_err *err) {
    char *data;
    size_t len;
    FT_TRY(ft_file_read_all(path, &data, &len, err));
    ft_status s = ft_json_load_buf(path, data, len, out, err);
    ft_free(data);
    return s;
}

ft_status ft_json_load_buf(const char *name, const char *data, size_t len, json_t **out, ft_err *err) {
    json_error_t je;
    *out = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    /* Real tokenizer_config.json files carry integers beyond 64 bits (model_max_length is
     * 1e30 written out in full), which jansson refuses. Python reads them; so do we: parse
     * again with every integer as a double (exact for the small integers configs hold, and
     * ft_json_get_int accepts integral reals). */
    if (!*out && je.position >= 0 && strstr(je.text, "too big integer"))
        *out = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!*out)
        return from_jansson(name, &je, err);
    return FT_OK;
}

static ft_status member(const json_t *obj, const char *key, bool required, const char *ctx, json_t **v,
                        ft_err *err) {
    *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    if (!*v || json_is_null(*v)) {
        *v = NULL;
        if (required)
            return FT_ERR(err, FT_ERR_INVALID, "%s: missing required key \"%s\"", ctx, key);
    }
    return FT_OK;
}

ft_status ft_json_get_int(const json_t *obj, const char *key, bool required, int64_t *out, const char *ctx,
                          ft_err *err) {
    json_t *v;
    FT_TRY(member(obj, key, required, ctx, &v, err));
    if (!v)
        return FT_OK;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return FT_OK;
    }
    /* 4096.0 is written by some tools for integers; accept exact integral reals (in range: the
     * cast of an out-of-range double is undefined). */
    if (json_is_real(v) && fabs(json_real_value(v)) < 9.2e18 &&
        json_real_value(v) == (double)(int64_t)json_real_value(v)) {
        *out = (int64_t)json_real_value(v);
        return FT_OK;
    }
    return FT_ERR(err, FT_ERR_INVALID, "%s: \"%s\" must be an integer", ctx, key);
}

ft_status ft_json_get_double(const json_t *obj, const char *key, bool required, double *out, const char *ctx,
                             ft_err *err) {
    json_t *v;
    FT_TRY(member(obj, key, required, ctx, &v, err));
    if (!v)
        return FT_OK;
    if (!json_is_number(v))
        return FT_ERR(err, FT_ERR_INVALID, "%s: \"%s\" must be a number", ctx, key);
    *out = json_number_value(v);
    return FT_OK;
}

ft_status ft_json_get_bool(const json_t *obj, const char *key, bool required, bool *out, const char *ctx,
                           ft_err *err) {
    json_t *v;
    FT_TRY(member(obj, key, required, ctx, &v, err));
    if (!v)
        return FT_OK;
    if (!json_is_boolean(v))
        return FT_ERR(err, FT_ERR_INVALID, "%s: \"%s\" must be true or false", ctx, key);
    *out = json_is_true(v);
    return FT_OK;
}

ft_status ft_json_get_str(const json_t *obj, const char *key, bool required, const char **out, const char *ctx,
                          ft_err *err) {
    json_t *v;
    FT_TRY(member(obj, key, required, ctx, &v, err));
    if (!v)
        return FT_OK;
    if (!json_is_string(v))
        return FT_ERR(err, FT_ERR_INVALID, "%s: \"%s\" must be a string", ctx, key);
    *out = json_string_value(v);
    return FT_OK;
}

char *ft_json_dumps(const json_t *j, int indent) {
    size_t flags = JSON_ENCODE_ANY | (indent > 0 ? JSON_INDENT(indent) : JSON_COMPACT);
    return json_dumps(j, flags);
}
