/* base/progress.c: a progress bar with rate and ETA on a terminal; plain periodic lines elsewhere
 * (log files, CI), so that nothing is lost to carriage returns. */
#include <string.h>
#include <unistd.h>

#include "ftune/base.h"

void ft_progress_begin(ft_progress *p, FILE *out, const char *label, int64_t total, const char *unit) {
    memset(p, 0, sizeof *p);
    p->out = out;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->t_start = p->t_last_draw = ft_time_now();
    p->plain_every_s = 10.0;
    p->tty = out && isatty(fileno(out));
}

static void draw(ft_progress *p, const char *extra, bool final) {
    double now = ft_time_now(), el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32] = "?", elapsed[32];
    if (p->total > 0 && rate > 0)
        ft_format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
    ft_format_duration(el, elapsed, sizeof elapsed);
    int pct = p->total > 0 ? (int)(100.0 * (double)p->done / (double)p->total) : 0;
    if (p->tty) {
        char bar[3 * 20 + 1];
        size_t k = 0;
        int filled = p->total > 0 ? (int)(20.0 * (double)p->done / (double)p->total) : 0;
        for (int i = 0; i < 20; i++) {
            const char *g = i < filled ? "\xe2\x96\x93" : "\xe2\x96\x91"; /* ▓ ░ */
            memcpy(bar + k, g, 3);
            k += 3;
        }
        bar[k] = 0;
        fprintf(p->out, "\r\033[K%s %s %3d%% %lld/%lld %.3g %s/s %s %s%s%s", p->label, bar, pct,
                (long long)p->done, (long long)p->total, rate, p->unit, final ? "in" : "ETA", final ? elapsed : eta,
                extra ? "  " : "", extra ? extra : "");
        if (final)
            fputc('\n', p->out);
    } else {
        fprintf(p->out, "%s %d%% %lld/%lld %.3g %s/s %s %s%s%s\n", p->label, pct, (long long)p->done,
                (long long)p->total, rate, p->unit, final ? "elapsed" : "ETA", final ? elapsed : eta,
                extra ? "  " : "", extra ? extra : "");
    }
    fflush(p->out);
    p->t_last_draw = now;
}

void ft_progress_update(ft_progress *p, int64_t done, const char *extra) {
    if (!p->out || p->finished)
        return;
    p->done = done;
    double now = ft_time_now();
    double every = p->tty ? 0.1 : p->plain_every_s;
    if (now - p->t_last_draw >= every)
        draw(p, extra, false);
}

void ft_progress_end(ft_progress *p, const char *extra) {
    if (!p->out || p->finished)
        return;
    draw(p, extra, true);
    p->finished = true;
}
