/* cli/cmd_metrics.c: `ftune metrics RUN [--name loss]`: the run's recorded metrics by step.
 * --json: a list of {step, name, value}. */
#include <math.h>
#include <string.h>

#include "ftune/json.h"
#include "run_common.h"

static const cli_opt opts[] = {
    {"name", CLI_STR, "NAME: only this metric (loss, lr, grad_norm, tokens_per_s, eval_loss, ...)"},
    {NULL, 0, NULL},
};

int cmd_metrics(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "metrics", "RUN [--name NAME]", opts, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    int rc = run_expect_one_run("metrics", &a);
    if (rc)
        return rc;
    ft_store *s;
    rc = run_open_store_args("metrics", &a, &s);
    if (rc)
        return rc;
    ft_metric *m;
    size_t n;
    ft_err err;
    if (ft_store_metrics_list(s, a.pos[0], cli_str(&a, "name", NULL), &m, &n, &err) != FT_OK) {
        rc = cli_report("metrics", &err);
    } else if (cli_has(&a, "json")) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_object();
            json_object_set_new(o, "step", json_integer(m[i].step));
            json_object_set_new(o, "name", json_string(m[i].name));
            json_object_set_new(o, "value", isfinite(m[i].value) ? json_real(m[i].value) : json_null());
            json_array_append_new(arr, o);
        }
        char *t = ft_json_dumps(arr, 0);
        printf("%s\n", t ? t : "[]");
        free(t);
        json_decref(arr);
        ft_free(m);
    } else {
        if (n == 0)
            printf("no metrics recorded\n");
        else
            printf("%6s  %-22s %s\n", "STEP", "NAME", "VALUE");
        for (size_t i = 0; i < n; i++)
            printf("%6lld  %-22s %.6g\n", (long long)m[i].step, m[i].name, m[i].value);
        ft_free(m);
    }
    ft_store_close(s);
    cli_args_free(&a);
    return rc;
}
