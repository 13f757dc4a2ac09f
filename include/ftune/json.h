/* ftune/json.h: JSON through jansson (strict UTF-8, 64-bit integers), with ftune errors.
 * jansson's json_t is used directly across ftune; these helpers add error locations and the
 * typed getters that config and data code need. */
#ifndef FTUNE_JSON_H
#define FTUNE_JSON_H

#include <jansson.h>

#include "ftune/base.h"

/* Parse a file; on error `err` has the file, line and column jansson reports. New reference. */
ft_status ft_json_load_file(const char *path, json_t **out, ft_err *err);
/* Parse a buffer; `name` labels errors (a path or "<stdin>"). New reference. */
ft_status ft_json_load_buf(const char *name, const char *data, size_t len, json_t **out, ft_err *err);

/* Typed getters for object members. `required` false: a missing or null member leaves *out
 * untouched and returns FT_OK. A wrong type is FT_ERR_INVALID naming `ctx` and the key. */
ft_status ft_json_get_int(const json_t *obj, const char *key, bool required, int64_t *out, const char *ctx,
                          ft_err *err);
ft_status ft_json_get_double(const json_t *obj, const char *key, bool required, double *out, const char *ctx,
                             ft_err *err);
ft_status ft_json_get_bool(const json_t *obj, const char *key, bool required, bool *out, const char *ctx,
                           ft_err *err);
/* *out borrows from obj. */
ft_status ft_json_get_str(const json_t *obj, const char *key, bool required, const char **out, const char *ctx,
                          ft_err *err);

/* Serialize compactly (or indented when indent > 0), owned by the caller (ft_free / free). */
char *ft_json_dumps(const json_t *j, int indent);

#endif
