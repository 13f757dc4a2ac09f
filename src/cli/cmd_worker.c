/* cli/cmd_worker.c: `ftune worker`: the background worker. It runs queued runs one at a time
 * (one worker per FTUNE_HOME, held by a lock file) and resumes runs of this machine whose process
 * died. `ftune create --detach` starts one with --until-idle when none is running. */
#include "run_common.h"

static const cli_opt opts[] = {
    {"until-idle", CLI_FLAG, "exit when nothing is queued"},
    {"poll", CLI_FLOAT, "S: seconds between looks at the queue (default 2)"},
    {"quiet", CLI_FLAG, "no progress lines"},
    {NULL, 0, NULL},
};

int cmd_worker(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "worker", "[--until-idle] [--poll S]", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    double poll = cli_float(&a, "poll", 2.0);
    bool until_idle = cli_has(&a, "until-idle"), quiet = cli_has(&a, "quiet");
    cli_args_free(&a);
    if (!(poll > 0 && poll <= 3600))
        return cli_usage_error("worker", "poll", "must be more than 0 and at most 3600 seconds, got %g", poll);
    return run_worker_loop(until_idle, poll, quiet);
}
