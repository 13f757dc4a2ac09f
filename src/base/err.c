/* base/err.c: status names, ft_err construction and formatting, FT_ASSERT. */
#include <stdlib.h>
#include <string.h>

#include "ftune/base.h"

const char *ft_status_str(ft_status s) {
    switch (s) {
    case FT_OK: return "ok";
    case FT_ERR_NOMEM: return "out of memory";
    case FT_ERR_IO: return "I/O error";
    case FT_ERR_PARSE: return "parse error";
    case FT_ERR_INVALID: return "invalid input";
    case FT_ERR_UNSUPPORTED: return "unsupported";
    case FT_ERR_NOT_FOUND: return "not found";
    case FT_ERR_RANGE: return "out of range";
    case FT_ERR_NUMERIC: return "numeric error";
    case FT_ERR_CANCELLED: return "cancelled";
    case FT_ERR_LIMIT: return "limit exceeded";
    case FT_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

static void fill(ft_err *e, ft_status code, const char *src_file, int src_line, const char *fmt, va_list ap) {
    e->code = code;
    e->src_file = src_file;
    e->src_line = src_line;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

ft_status ft_err_set_(ft_err *e, ft_status code, const char *src_file, int src_line, const char *fmt, ...) {
    if (!e)
        return code;
    e->file[0] = 0;
    e->line = e->column = 0;
    e->offset = -1;
    va_list ap;
    va_start(ap, fmt);
    fill(e, code, src_file, src_line, fmt, ap);
    va_end(ap);
    return code;
}

ft_status ft_err_set_at_(ft_err *e, ft_status code, const char *src_file, int src_line, const char *file,
                         int64_t line, int64_t column, const char *fmt, ...) {
    if (!e)
        return code;
    snprintf(e->file, sizeof e->file, "%s", file ? file : "");
    e->line = line;
    e->column = column;
    e->offset = -1;
    va_list ap;
    va_start(ap, fmt);
    fill(e, code, src_file, src_line, fmt, ap);
    va_end(ap);
    return code;
}

void ft_err_prefix(ft_err *e, const char *fmt, ...) {
    if (!e)
        return;
    char pre[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", pre, old);
}

void ft_err_clear(ft_err *e) {
    if (!e)
        return;
    memset(e, 0, sizeof *e);
    e->offset = -1;
}

size_t ft_err_format(const ft_err *e, char *buf, size_t cap) {
    int n;
    if (!e) /* an optional err the caller did not pass */
        return (size_t)snprintf(buf, cap, "(no error details)");
    if (e->file[0] && e->line > 0 && e->column > 0)
        n = snprintf(buf, cap, "%s:%lld:%lld: %s", e->file, (long long)e->line, (long long)e->column, e->msg);
    else if (e->file[0] && e->line > 0)
        n = snprintf(buf, cap, "%s:%lld: %s", e->file, (long long)e->line, e->msg);
    else if (e->file[0] && e->offset >= 0)
        n = snprintf(buf, cap, "%s: byte %lld: %s", e->file, (long long)e->offset, e->msg);
    else if (e->file[0])
        n = snprintf(buf, cap, "%s: %s", e->file, e->msg);
    else
        n = snprintf(buf, cap, "%s", e->msg);
    return n < 0 ? 0 : (size_t)n;
}

void ft_assert_fail_(const char *expr, const char *file, int line) {
    fprintf(stderr, "ftune: internal invariant broken at %s:%d: %s\n", file, line, expr);
    abort();
}
