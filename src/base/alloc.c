/* base/alloc.c: allocator shims with fault injection, growable buffers, arenas. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "ftune/base.h"

/* ---------------------------------------------------------------- shims */

/* Fault injection for tests (sqlite-style): the n-th allocation from now fails. Thread-local so
 * that a test in one thread never disturbs another. */
static _Thread_local int64_t fail_countdown = -1;

void ft_alloc_fail_after(int64_t n) { fail_countdown = n; }

static bool should_fail(void) {
    if (fail_countdown < 0)
        return false;
    if (fail_countdown == 0) {
        fail_countdown = -1;
        return true;
    }
    fail_countdown--;
    return false;
}

void *ft_malloc(size_t n) { return should_fail() ? NULL : malloc(n ? n : 1); }
void *ft_calloc(size_t count, size_t size) { return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1); }
void *ft_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n ? n : 1); }
void ft_free(void *p) { free(p); }

char *ft_strndup(const char *s, size_t n) {
    char *d = n < SIZE_MAX ? ft_malloc(n + 1) : NULL;
    if (!d)
        return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *ft_strdup(const char *s) { return s ? ft_strndup(s, strlen(s)) : NULL; }

char *ft_asprintf(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? ft_malloc((size_t)n + 1) : NULL;
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

/* ---------------------------------------------------------------- buffers */

/* Why the checks: len + extra + 1 and the doubling of cap must not wrap around SIZE_MAX, or a
 * huge request would "fit" in a small buffer and the append would write past it. */
ft_status ft_buf_reserve(ft_buf *b, size_t extra) {
    if (extra > SIZE_MAX - 1 - b->len)
        return FT_ERR_NOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return FT_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *d = ft_realloc(b->data, cap);
    if (!d)
        return FT_ERR_NOMEM;
    b->data = d;
    b->cap = cap;
    return FT_OK;
}

ft_status ft_buf_append(ft_buf *b, const void *data, size_t n) {
    FT_TRY(ft_buf_reserve(b, n));
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
    return FT_OK;
}

ft_status ft_buf_putc(ft_buf *b, char c) { return ft_buf_append(b, &c, 1); }

ft_status ft_buf_appendf(ft_buf *b, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    ft_status s = n < 0 ? FT_ERR_INTERNAL : ft_buf_reserve(b, (size_t)n);
    if (s == FT_OK) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
    return s;
}

const char *ft_buf_cstr(ft_buf *b) {
    if (!b->data)
        return "";
    b->data[b->len] = 0;
    return b->data;
}

void ft_buf_free(ft_buf *b) {
    ft_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---------------------------------------------------------------- arenas */

#define ARENA_ALIGN 64
#define HUGE_THRESHOLD (4u << 20)

ft_status ft_arena_init(ft_arena *a, const char *name, size_t cap, ft_err *err) {
    memset(a, 0, sizeof *a);
    a->name = name;
    if (cap == 0)
        return FT_OK;
    if (cap > SIZE_MAX - 4095)
        return FT_ERR(err, FT_ERR_NOMEM, "arena %s: cannot reserve %zu bytes", name, cap);
    cap = (cap + 4095) & ~(size_t)4095;
    /* Reserve address space only; pages are committed by first touch. MAP_NORESERVE keeps a
     * generous reservation from failing under strict overcommit. */
    void *p = mmap(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return FT_ERR(err, FT_ERR_NOMEM, "arena %s: cannot reserve %zu bytes", name, cap);
#ifdef MADV_HUGEPAGE
    if (cap >= HUGE_THRESHOLD)
        madvise(p, cap, MADV_HUGEPAGE);
#endif
    a->base = p;
    a->cap = cap;
    return FT_OK;
}

void *ft_arena_alloc(ft_arena *a, size_t n, ft_err *err) {
    size_t start = (a->used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (start > a->cap || n > a->cap - start) {
        FT_ERR(err, FT_ERR_NOMEM, "arena %s is full: %zu of %zu bytes used, %zu more asked", a->name ? a->name : "?",
               a->used, a->cap, n);
        return NULL;
    }
    a->used = start + n;
    if (a->used > a->peak)
        a->peak = a->used;
    return a->base + start;
}

void ft_arena_reset(ft_arena *a) { a->used = 0; }

void ft_arena_deinit(ft_arena *a) {
    if (a->base)
        munmap(a->base, a->cap);
    memset(a, 0, sizeof *a);
}

double ft_peak_rss_mb(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_maxrss / 1024.0; /* ru_maxrss is KiB on Linux */
}
