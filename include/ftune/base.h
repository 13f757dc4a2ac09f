/* ftune/base.h: status codes, errors with location, allocation, arenas, string views,
 * files, logging, RNG and the progress bar. Everything else in ftune stands on this.
 *
 * Conventions (../STYLE.md): fallible calls return ft_status and fill an optional ft_err.
 * There is no global error state. Sizes are size_t / int64_t. */
#ifndef FTUNE_BASE_H
#define FTUNE_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status and errors */

typedef enum ft_status {
    FT_OK = 0,
    FT_ERR_NOMEM,       /* allocation failed */
    FT_ERR_IO,          /* a file or system call failed */
    FT_ERR_PARSE,       /* malformed input (JSON, safetensors header, template, ...) */
    FT_ERR_INVALID,     /* well-formed input with a bad value */
    FT_ERR_UNSUPPORTED, /* a feature or component ftune does not implement */
    FT_ERR_NOT_FOUND,   /* a file, tensor, model or run that does not exist */
    FT_ERR_RANGE,       /* an index, size or offset out of bounds */
    FT_ERR_NUMERIC,     /* NaN / Inf where a number was required */
    FT_ERR_CANCELLED,   /* stopped on request */
    FT_ERR_LIMIT,       /* a safety limit (recursion, output size, iterations) was hit */
    FT_ERR_INTERNAL,    /* a bug in ftune */
} ft_status;

/* Where an error came from. For user input `file`, `line` and `column` (1-based) or `offset`
 * (0-based byte offset) locate it; `src_file`/`src_line` say where in ftune it was raised. */
typedef struct ft_err {
    ft_status code;
    char msg[1024];
    char file[512]; /* user file the error is about, "" if none */
    int64_t line;   /* 1-based, 0 if unknown */
    int64_t column; /* 1-based, 0 if unknown */
    int64_t offset; /* 0-based byte offset, -1 if unknown */
    const char *src_file;
    int src_line;
} ft_err;

const char *ft_status_str(ft_status s);

/* Set `e` (may be NULL) and return `code`. Use the FT_ERR / FT_ERR_AT macros. */
ft_status ft_err_set_(ft_err *e, ft_status code, const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
ft_status ft_err_set_at_(ft_err *e, ft_status code, const char *src_file, int src_line, const char *file,
                         int64_t line, int64_t column, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
#define FT_ERR(e, code, ...) ft_err_set_((e), (code), __FILE__, __LINE__, __VA_ARGS__)
#define FT_ERR_AT(e, code, file, line, col, ...) \
    ft_err_set_at_((e), (code), __FILE__, __LINE__, (file), (line), (col), __VA_ARGS__)

/* Prefix the message of an already-set error with context: "loading model X: <old msg>". */
void ft_err_prefix(ft_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clear to FT_OK. */
void ft_err_clear(ft_err *e);
/* Render as "file:line:column: message" (or just the message when there is no location).
 * Returns the length it needed, as snprintf does. */
size_t ft_err_format(const ft_err *e, char *buf, size_t cap);

/* Return early on failure. */
#define FT_TRY(expr)                     \
    do {                                 \
        ft_status ft_try_s_ = (expr);    \
        if (ft_try_s_ != FT_OK)          \
            return ft_try_s_;            \
    } while (0)

/* Broken invariants: always checked, even in release builds. Aborts with a message. */
void ft_assert_fail_(const char *expr, const char *file, int line) __attribute__((noreturn));
#define FT_ASSERT(x) ((x) ? (void)0 : ft_assert_fail_(#x, __FILE__, __LINE__))

/* ---------------------------------------------------------------- allocation */

/* Allocator shims. They never abort: NULL means out of memory. For fault-injection tests,
 * ft_alloc_fail_after(n) makes the n-th following allocation fail (-1 disables). */
void *ft_malloc(size_t n);
void *ft_calloc(size_t count, size_t size);
void *ft_realloc(void *p, size_t n);
void ft_free(void *p);
char *ft_strdup(const char *s);
char *ft_strndup(const char *s, size_t n);
char *ft_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ft_alloc_fail_after(int64_t n);

/* Growable byte buffer. */
typedef struct ft_buf {
    char *data;
    size_t len, cap;
} ft_buf;
ft_status ft_buf_reserve(ft_buf *b, size_t extra);
ft_status ft_buf_append(ft_buf *b, const void *data, size_t n);
ft_status ft_buf_appendf(ft_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
ft_status ft_buf_putc(ft_buf *b, char c);
void ft_buf_free(ft_buf *b);
/* NUL-terminate (without counting it in len) and return data; "" for an empty buffer. */
const char *ft_buf_cstr(ft_buf *b);

/* ---------------------------------------------------------------- arenas
 * One mapping per tensor family (parameters, gradients, optimizer state, activations), reserved
 * once and bump-allocated, so that a training step allocates nothing. Large arenas ask the kernel
 * for transparent huge pages (first-touch faults cost ~11 us per 4 KiB page). */
typedef struct ft_arena {
    const char *name;
    uint8_t *base;
    size_t cap;  /* bytes reserved */
    size_t used; /* bytes handed out */
    size_t peak;
} ft_arena;

ft_status ft_arena_init(ft_arena *a, const char *name, size_t cap, ft_err *err);
/* 64-byte aligned, zero-filled on first use (fresh pages). NULL and an error when full. */
void *ft_arena_alloc(ft_arena *a, size_t n, ft_err *err);
void ft_arena_reset(ft_arena *a);
void ft_arena_deinit(ft_arena *a);

/* Peak resident set of this process, in MiB. */
double ft_peak_rss_mb(void);

/* ---------------------------------------------------------------- string views */

typedef struct ft_sv {
    const char *p;
    size_t n;
} ft_sv;

static inline ft_sv ft_sv_from(const char *s, size_t n) { return (ft_sv){s, n}; }
ft_sv ft_sv_cstr(const char *s);
bool ft_sv_eq(ft_sv a, ft_sv b);
bool ft_sv_eq_cstr(ft_sv a, const char *s);
bool ft_sv_starts_with(ft_sv a, ft_sv prefix);
bool ft_sv_ends_with(ft_sv a, ft_sv suffix);
ft_sv ft_sv_trim(ft_sv a);
/* Index of the first `c`, or -1. */
int64_t ft_sv_find_char(ft_sv a, char c);

/* ---------------------------------------------------------------- UTF-8 */

/* Length of the valid UTF-8 prefix of s[0..n); equals n when all is valid. Rejects overlongs,
 * surrogates (U+D800..U+DFFF) and code points above U+10FFFF. */
size_t ft_utf8_valid_prefix(const char *s, size_t n);
/* Decode one code point at s (n > 0); returns its byte length, or 0 if invalid. */
int ft_utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encode cp into out (at least 4 bytes); returns the byte count. */
int ft_utf8_encode(uint32_t cp, char *out);

/* ---------------------------------------------------------------- files and paths */

/* Read a whole file; *data is NUL-terminated and owned by the caller (ft_free). */
ft_status ft_file_read_all(const char *path, char **data, size_t *len, ft_err *err);
/* Write all of data to fd, retrying short writes and EINTR; `path` labels errors. */
ft_status ft_fd_write_all(int fd, const void *data, size_t len, const char *path, ft_err *err);
/* Write atomically: a temporary file beside `path`, fsync, rename, fsync the folder. */
ft_status ft_file_write_atomic(const char *path, const void *data, size_t len, ft_err *err);
/* The folder part of a path, as a new string: "." for a bare name, "/" for a file at the root; NULL when out of memory. */
char *ft_path_parent(const char *path);
ft_status ft_fsync_path(const char *path, ft_err *err);
ft_status ft_mkdir_p(const char *path, ft_err *err);
/* Remove a file or a whole folder tree (does not follow symlinks). Missing is not an error. */
ft_status ft_rm_rf(const char *path, ft_err *err);
/* Copy a file (the bytes, then fsync). */
ft_status ft_file_copy(const char *src, const char *dst, ft_err *err);
bool ft_path_exists(const char *path);
bool ft_path_is_dir(const char *path);
/* "a" + "b" -> "a/b" (owned by the caller). */
char *ft_path_join(const char *a, const char *b);
/* The absolute, canonical form of `path` (relative to the working folder): symbolic links in the
 * part that exists are resolved, "." and ".." removed. The path need not exist. NULL on a
 * symlink loop or out of memory. Owned by the caller. */
char *ft_path_canonical(const char *path);
/* Whether canonical `path` is `root` or inside it (both canonical). */
bool ft_path_within(const char *path, const char *root);
/* $FTUNE_HOME (made absolute and canonical), else ~/.ftune (owned by the caller). */
char *ft_home_dir(void);
/* Make the home folder `home` (and its parents); an error says it is ftune's home and that
 * FTUNE_HOME names it, so that the user knows which setting to change. */
ft_status ft_home_make(const char *home, ft_err *err);
/* The canonical local path of a user path: dbfs:/Volumes/... and /Volumes/... map to
 * $FTUNE_HOME/volumes/..., other paths are made absolute. A mapped path that leaves its root
 * (through "..", or a symbolic link) is refused with FT_ERR_INVALID; other dbfs: paths are
 * FT_ERR_UNSUPPORTED. *out is owned by the caller. */
ft_status ft_path_map(const char *path, char **out, ft_err *err);
/* `rest` under `root`, canonical; refused with FT_ERR_INVALID (naming `path`) when it leaves root
 * or is root itself. */
ft_status ft_path_map_root(const char *path, const char *root, const char *rest, char **out, ft_err *err);
/* ft_path_map without the reason: NULL when refused or out of memory. */
char *ft_path_map_volumes(const char *path);

/* ---------------------------------------------------------------- SHA-256 */

typedef struct ft_sha256 {
    uint32_t h[8];
    uint64_t n; /* bytes hashed */
    uint8_t buf[64];
    size_t fill;
} ft_sha256;
void ft_sha256_init(ft_sha256 *c);
void ft_sha256_update(ft_sha256 *c, const void *data, size_t len);
/* The digest as 64 lowercase hex digits (what `sha256sum` prints). */
void ft_sha256_final(ft_sha256 *c, char hex[65]);
/* A whole file's digest; *size (may be NULL) gets the bytes read. */
ft_status ft_sha256_file(const char *path, char hex[65], int64_t *size, ft_err *err);

/* ---------------------------------------------------------------- logging */

typedef enum ft_log_level { FT_LOG_DEBUG, FT_LOG_INFO, FT_LOG_WARN, FT_LOG_ERROR, FT_LOG_OFF } ft_log_level;
/* Messages at or above the level go to stderr. The default is FT_LOG_WARN, or $FTUNE_LOG
 * (debug|info|warn|error|off). */
void ft_log_set_level(ft_log_level level);
ft_log_level ft_log_get_level(void);
void ft_log_(ft_log_level level, const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define FT_LOG_DEBUG(...) ft_log_(FT_LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__)
#define FT_LOG_INFO(...) ft_log_(FT_LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define FT_LOG_WARN(...) ft_log_(FT_LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define FT_LOG_ERROR(...) ft_log_(FT_LOG_ERROR, __FILE__, __LINE__, __VA_ARGS__)

/* ---------------------------------------------------------------- time */

/* Monotonic seconds. */
double ft_time_now(void);
/* Wall-clock time as ISO 8601 UTC "2026-11-22T10:11:12Z" into buf (>= 32 bytes). */
void ft_time_iso8601(char *buf, size_t cap);
/* "3m12s", "1h04m", "45s" into buf. */
void ft_format_duration(double seconds, char *buf, size_t cap);

/* ---------------------------------------------------------------- random numbers
 * A small, fast, serializable generator (xoshiro256**, seeded through splitmix64). Its whole
 * state is the struct, so checkpoints save and restore it exactly. */
typedef struct ft_rng {
    uint64_t s[4];
} ft_rng;
void ft_rng_seed(ft_rng *r, uint64_t seed);
uint64_t ft_rng_next(ft_rng *r);
/* Uniform in [0, 1) with 24 bits (float) or 53 bits (double). */
float ft_rng_float(ft_rng *r);
double ft_rng_double(ft_rng *r);
/* Uniform integer in [0, n). */
uint64_t ft_rng_below(ft_rng *r, uint64_t n);
/* Standard normal (Box-Muller; deterministic for a given state). */
double ft_rng_normal(ft_rng *r);

/* ---------------------------------------------------------------- progress bar
 * On a terminal: one redrawn line "label ▓▓▓▓░░░░ 45% 120/264 12.3 it/s ETA 3m12s". Elsewhere:
 * a plain line every `plain_every_s` seconds (and at the end), so logs stay readable. */
typedef struct ft_progress {
    FILE *out;
    char label[64];
    char unit[16];
    int64_t total, done;
    double t_start, t_last_draw;
    double plain_every_s;
    bool tty;
    bool finished;
} ft_progress;
void ft_progress_begin(ft_progress *p, FILE *out, const char *label, int64_t total, const char *unit);
/* Set the count done; `extra` (may be NULL) is appended to the line ("loss 2.31"). */
void ft_progress_update(ft_progress *p, int64_t done, const char *extra);
void ft_progress_end(ft_progress *p, const char *extra);

#ifdef __cplusplus
}
#endif
#endif
