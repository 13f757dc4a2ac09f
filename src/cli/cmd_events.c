/* cli/cmd_events.c: `ftune events RUN [--follow]`: the run's events (SPEC §5) in order; --follow
 * keeps printing new ones until the run ends. --json: a list of {seq, time, type, level, message}
 * (with --follow, one object per line as they come). */
#include <string.h>
#include <time.h>

#include "ftune/json.h"
#include "run_common.h"

static const cli_opt opts[] = {
    {"follow", CLI_FLAG, "keep printing new events until the run ends (with --json: one object a line)"},
    {"json", CLI_FLAG, "a list of {seq, time, type, level, message}; with --follow one such object a line"},
    {"after", CLI_INT, "SEQ: only events after this sequence number"},
    {NULL, 0, NULL},
};

static void print_event(const ft_event *e, bool json) {
    if (json) {
        json_t *j = ft_event_to_json(e);
        char *t = ft_json_dumps(j, 0);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(j);
    } else {
        char when[32];
        run_format_time(e->time, when, sizeof when);
        printf("%4lld  %s  %-18s %-5s ", (long long)e->seq, when, e->type, e->level);
        cli_put_indented(stdout, e->message, 52);
        putchar('\n');
    }
}

int cmd_events(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "events", "RUN [--follow]", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    int rc = run_expect_one_run("events", &a);
    if (rc)
        return rc;
    const char *name = a.pos[0];
    bool json = cli_has(&a, "json"), follow = cli_has(&a, "follow");
    int64_t after = cli_int(&a, "after", 0);
    ft_store *s;
    rc = run_open_store_args("events", &a, &s);
    if (rc)
        return rc;
    ft_err err;
    ft_event *ev;
    size_t n;
    if (!follow) {
        if (ft_store_event_list(s, name, after, &ev, &n, &err) != FT_OK) {
            rc = cli_report("events", &err);
        } else if (json) {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, ft_event_to_json(&ev[i]));
            char *t = ft_json_dumps(arr, 0);
            printf("%s\n", t ? t : "[]");
            free(t);
            json_decref(arr);
            ft_event_list_free(ev, n);
        } else {
            for (size_t i = 0; i < n; i++)
                print_event(&ev[i], false);
            ft_event_list_free(ev, n);
        }
    } else {
        /* Poll: the store is safe to read while the run writes (WAL). Stop once the run is in a
         * final status and every event has been printed. */
        for (;;) {
            ft_run r;
            if (ft_store_run_get(s, name, &r, &err) != FT_OK) {
                rc = cli_report("events", &err);
                break;
            }
            bool final = ft_run_status_is_final(r.status) || run_is_orphaned(&r);
            ft_run_deinit(&r);
            if (ft_store_event_list(s, name, after, &ev, &n, &err) != FT_OK) {
                rc = cli_report("events", &err);
                break;
            }
            for (size_t i = 0; i < n; i++) {
                print_event(&ev[i], json);
                after = ev[i].seq;
            }
            ft_event_list_free(ev, n);
            fflush(stdout);
            if (final)
                break;
            struct timespec ts = {0, 300 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}
