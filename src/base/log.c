/* base/log.c: leveled logging to stderr, wall and monotonic time, durations. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ftune/base.h"

static int log_level = -1; /* -1: not read from $FTUNE_LOG yet */

static ft_log_level level_from_env(void) {
    const char *e = getenv("FTUNE_LOG");
    if (!e)
        return FT_LOG_WARN;
    if (!strcmp(e, "debug"))
        return FT_LOG_DEBUG;
    if (!strcmp(e, "info"))
        return FT_LOG_INFO;
    if (!strcmp(e, "error"))
        return FT_LOG_ERROR;
    if (!strcmp(e, "off"))
        return FT_LOG_OFF;
    return FT_LOG_WARN;
}

void ft_log_set_level(ft_log_level level) { log_level = (int)level; }

ft_log_level ft_log_get_level(void) {
    if (log_level < 0)
        log_level = (int)level_from_env();
    return (ft_log_level)log_level;
}

void ft_log_(ft_log_level level, const char *src_file, int src_line, const char *fmt, ...) {
    if (level < ft_log_get_level())
        return;
    static const char *names[] = {"debug", "info", "warning", "error", ""};
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (level == FT_LOG_DEBUG)
        fprintf(stderr, "ftune %s (%s:%d): %s\n", names[level], src_file, src_line, msg);
    else
        fprintf(stderr, "ftune %s: %s\n", names[level], msg);
}

double ft_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void ft_time_iso8601(char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void ft_format_duration(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e9) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
    else if (t >= 60)
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, cap, "%lds", t);
}
