/* model/batch.c: the JSON batch format of `ftune debug forward` (issue #2 item 7):
 *   {"input_ids": [[...]], "targets": [[...]], "position_ids": [[...]], "sample_ids": [[...]]}
 * B rows of T integers each; position_ids and sample_ids optional (defaults 0..T-1 and one
 * sample per row). Values are checked against the model later (ft_model_check_batch_); here
 * only shape and integer range. */
#include <string.h>

#include "ftune/json.h"
#include "ftune/model.h"

static ft_status read_matrix(const json_t *root, const char *key, bool required, const char *path, int64_t *B,
                             int64_t *T, int32_t **out, ft_err *err) {
    *out = NULL;
    json_t *a = json_object_get(root, key);
    if (!a || json_is_null(a)) {
        if (required)
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "batch: \"%s\" is missing", key);
        return FT_OK;
    }
    if (!json_is_array(a) || json_array_size(a) == 0)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "batch: \"%s\" must be a non-empty list of rows", key);
    int64_t b = (int64_t)json_array_size(a);
    json_t *r0 = json_array_get(a, 0);
    if (!json_is_array(r0) || json_array_size(r0) == 0)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "batch: \"%s\"[0] must be a non-empty list", key);
    int64_t t = (int64_t)json_array_size(r0);
    if (*B == 0) {
        *B = b;
        *T = t;
    }
    if (b != *B || t != *T)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "batch: \"%s\" is %lld x %lld, input_ids is %lld x %lld",
                         key, (long long)b, (long long)t, (long long)*B, (long long)*T);
    if (b > (1 << 20) || t > (1 << 24) || b * t > (1 << 28))
        return FT_ERR_AT(err, FT_ERR_RANGE, path, 0, 0, "batch: \"%s\" is too large", key);
    int32_t *v = ft_malloc((size_t)(b * t) * sizeof(int32_t));
    if (!v)
        return FT_ERR(err, FT_ERR_NOMEM, "batch: out of memory");
    for (int64_t i = 0; i < b; i++) {
        json_t *row = json_array_get(a, (size_t)i);
        if (!json_is_array(row) || (int64_t)json_array_size(row) != t) {
            ft_free(v);
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "batch: \"%s\"[%lld] must be a list of %lld integers",
                             key, (long long)i, (long long)t);
        }
        for (int64_t j = 0; j < t; j++) {
            json_t *x = json_array_get(row, (size_t)j);
            json_int_t val = json_is_integer(x) ? json_integer_value(x) : 0;
            if (!json_is_integer(x) || val < INT32_MIN || val > INT32_MAX) {
                ft_free(v);
                return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "batch: \"%s\"[%lld][%lld] must be a 32-bit integer",
                                 key, (long long)i, (long long)j);
            }
            v[i * t + j] = (int32_t)val;
        }
    }
    *out = v;
    return FT_OK;
}

ft_status ft_model_batch_load(const char *path, ft_batch_owned *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    FT_TRY(ft_file_read_all(path, &text, &len, err));
    ft_status s = ft_model_batch_parse(path, text, len, out, err);
    ft_free(text);
    return s;
}

ft_status ft_model_batch_parse(const char *path, const char *text, size_t len, ft_batch_owned *out, ft_err *err) {
    memset(out, 0, sizeof *out);
    json_t *root;
    FT_TRY(ft_json_load_buf(path, text, len, &root, err));
    ft_status s = FT_OK;
    if (!json_is_object(root))
        s = FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "batch: expected a JSON object");
    int64_t B = 0, T = 0;
    if (s == FT_OK)
        s = read_matrix(root, "input_ids", true, path, &B, &T, &out->input_ids, err);
    if (s == FT_OK)
        s = read_matrix(root, "targets", true, path, &B, &T, &out->targets, err);
    if (s == FT_OK)
        s = read_matrix(root, "position_ids", false, path, &B, &T, &out->position_ids, err);
    if (s == FT_OK)
        s = read_matrix(root, "sample_ids", false, path, &B, &T, &out->sample_ids, err);
    json_decref(root);
    if (s != FT_OK) {
        ft_model_batch_free(out);
        return s;
    }
    out->b = (ft_batch){B, T, out->input_ids, out->targets, out->position_ids, out->sample_ids};
    return FT_OK;
}

void ft_model_batch_free(ft_batch_owned *b) {
    ft_free(b->input_ids);
    ft_free(b->targets);
    ft_free(b->position_ids);
    ft_free(b->sample_ids);
    memset(b, 0, sizeof *b);
}
