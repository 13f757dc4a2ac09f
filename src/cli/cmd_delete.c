/* cli/cmd_delete.c: `ftune delete RUN... [--force]`: remove runs, their records and the files
 * ftune made for them (ft_runs_delete: the run folder's checkpoints, evaluations, export, ...;
 * never a file it did not create). A running run is refused unless --force, which kills its process
 * first. Registered versions are clones and stay. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ftune/runs.h"
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
        ft_buf note = {0};
        ft_err err;
        ft_status st = ft_runs_delete(s, name, force, &note, &err);
        if (st == FT_OK || st == FT_ERR_IO) { /* FT_ERR_IO: the record went, some file stayed */
            json_array_append_new(done, json_string(name));
            if (!json)
                printf("deleted %s\n", name);
            if (note.len)
                fprintf(stderr, "ftune delete: %s: %s\n", name, ft_buf_cstr(&note));
            if (st != FT_OK)
                rc = CLI_EXIT_FAIL;
        } else if (st == FT_ERR_INVALID) { /* running: said with what to do */
            fprintf(stderr, "ftune delete: %s\n", err.msg);
            rc = CLI_EXIT_FAIL;
        } else {
            rc = cli_report("delete", &err);
        }
        ft_buf_free(&note);
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
