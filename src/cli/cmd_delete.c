/* cli/cmd_delete.c: `ftune delete RUN... [--force]`: remove runs, their records and the files
 * ftune made for them (run_files.c: the run folder's checkpoints, evaluations, export, ...; never
 * a file it did not create). A running run is refused unless --force, which kills its process
 * first. Registered versions are clones and stay. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run_common.h"

static const cli_opt opts[] = {
    {"force", CLI_FLAG, "also delete runs that are running (their process is killed)"},
    {NULL, 0, NULL},
};

int cmd_delete(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "delete", "RUN... [--force]", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    if (a.n_pos == 0) {
        cli_args_free(&a);
        return cli_usage_error("delete", NULL, "expected at least one run name");
    }
    bool force = cli_has(&a, "force"), json = cli_has(&a, "json");
    ft_store *s;
    int rc = run_open_store_args("delete", &a, &s);
    if (rc)
        return rc;
    json_t *done = json_array();
    for (size_t i = 0; i < a.n_pos; i++) {
        const char *name = a.pos[i];
        ft_run r;
        ft_err err;
        if (ft_store_run_get(s, name, &r, &err) != FT_OK) {
            rc = cli_report("delete", &err);
            continue;
        }
        bool active = !ft_run_status_is_final(r.status) && r.status != FT_RUN_PENDING && r.status != FT_RUN_QUEUED;
        if (active && run_process_alive(&r)) {
            if (!force) {
                fprintf(stderr, "ftune delete: %s is %s (pid %lld): cancel it first, or use --force\n", name,
                        ft_run_status_str(r.status), (long long)r.pid);
                rc = CLI_EXIT_FAIL;
                ft_run_deinit(&r);
                continue;
            }
            if (r.host && strcmp(r.host, run_hostname()) != 0) {
                fprintf(stderr, "ftune delete: %s runs on %s; stop it there first\n", name, r.host);
                rc = CLI_EXIT_FAIL;
                ft_run_deinit(&r);
                continue;
            }
            /* TERMINATING first: a worker that sees the process die then records STOPPED instead
             * of resuming the run under our feet. */
            ft_store_run_set_status(s, name, FT_RUN_TERMINATING, NULL, NULL, NULL, "deleted", NULL);
            kill((pid_t)r.pid, SIGKILL);
            for (int k = 0; k < 100 && run_process_alive(&r); k++) {
                struct timespec ts = {0, 50 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        /* Only what ftune created for this run goes (run_files.c); the record goes in any case,
         * even when its folder cannot be reached (a path too long, a folder made unreadable),
         * with a note saying what stayed. */
        ft_buf note = {0};
        int frc = run_dir_remove(r.run_dir, name, &note);
        if (ft_store_run_delete(s, name, &err) != FT_OK) {
            rc = cli_report("delete", &err);
        } else {
            json_array_append_new(done, json_string(name));
            if (!json)
                printf("deleted %s\n", name);
        }
        if (note.len)
            fprintf(stderr, "ftune delete: %s: %s\n", name, ft_buf_cstr(&note));
        if (frc != CLI_EXIT_OK)
            rc = frc;
        ft_buf_free(&note);
        ft_run_deinit(&r);
    }
    if (json && (rc == CLI_EXIT_OK || json_array_size(done) > 0)) { /* all failed: the errors were the output */
        char *t = json_dumps(done, JSON_COMPACT);
        printf("%s\n", t ? t : "[]");
        free(t);
    }
    json_decref(done);
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}
