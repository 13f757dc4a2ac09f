/* cli/cmd_models.c: `ftune models`: the catalogue of SPEC §7 (hub id, architecture, maximum
 * context length, default learning rate) and whether each is present in the local Hugging Face
 * cache. Any local folder of a supported architecture works too. */
#include <stdlib.h>
#include <string.h>

#include "ftune/hf.h"
#include "ftune/json.h"
#include "ftune/runs.h"
#include "run_common.h"


int cmd_models(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "models", "", NULL, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    if (a.n_pos) { /* `ftune models llama` would silently list everything */
        int rc = cli_usage_error("models", NULL, "takes no arguments (got \"%s\"): it lists every model", a.pos[0]);
        cli_args_free(&a);
        return rc;
    }
    bool json = cli_has(&a, "json");
    cli_args_free(&a);
    char *cache = ft_hf_cache_dir();
    json_t *arr = ft_runs_models_json();
    if (json) {
        char *t = ft_json_dumps(arr, 0);
        printf("%s\n", t ? t : "[]");
        free(t);
    } else {
        printf("%-42s %-20s %8s  %-8s %s\n", "MODEL", "ARCHITECTURE", "CONTEXT", "LR", "LOCAL");
        size_t i;
        json_t *m;
        json_array_foreach(arr, i, m) {
            const char *path = json_string_value(json_object_get(m, "path"));
            printf("%-42s %-20s %8lld  %-8g %s\n", json_string_value(json_object_get(m, "name")),
                   json_string_value(json_object_get(m, "architecture")),
                   (long long)json_integer_value(json_object_get(m, "max_context_length")),
                   json_real_value(json_object_get(m, "default_learning_rate")), path ? path : "-");
        }
        printf("\nLOCAL: found in the Hugging Face cache (%s). Any local folder of a supported architecture\n"
               "works as --model too, and so does a registered model (catalog.schema.name[/version]).\n",
               cache ? cache : "?");
    }
    json_decref(arr);
    ft_free(cache);
    return CLI_EXIT_OK;
}
