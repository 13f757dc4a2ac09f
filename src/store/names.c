/* store/names.c: run names (SPEC §1: "<task>-<model slug>-<6 letters>") and where experiment
 * paths live on disk ($FTUNE_HOME/experiments for workspace paths). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ftune/store.h"

char *ft_model_slug(const char *model) {
    if (!model)
        model = "";
    size_t n = strlen(model);
    while (n > 1 && model[n - 1] == '/')
        n--;
    char *m = ft_strndup(model, n);
    if (!m)
        return NULL;
    const char *part = m;
    /* A registered name "c.s.name[/v]": the slug is its model part. */
    char *slash = strchr(m, '/');
    char *base = slash ? ft_strndup(m, (size_t)(slash - m)) : ft_strdup(m);
    if (base && m[0] != '/' && m[0] != '.' && ft_registry_check_name(base, NULL) == FT_OK) {
        part = strrchr(base, '.') + 1;
    } else {
        const char *last = strrchr(m, '/');
        part = last ? last + 1 : m;
    }
    size_t cap = strlen(part) + 1;
    char *out = ft_malloc(cap > 48 ? 48 : cap < 8 ? 8 : cap);
    size_t o = 0, max = (cap > 48 ? 48 : cap < 8 ? 8 : cap) - 1;
    if (out) {
        for (const char *p = part; *p && o < max; p++) {
            unsigned char c = (unsigned char)*p;
            if (isalnum(c))
                out[o++] = (char)tolower(c);
            else if (o > 0 && out[o - 1] != '-')
                out[o++] = '-';
        }
        while (o > 0 && out[o - 1] == '-')
            o--;
        if (o == 0) {
            strcpy(out, "model");
            o = 5;
        }
        out[o] = 0;
    }
    ft_free(base);
    ft_free(m);
    return out;
}

char *ft_run_name_generate(const char *task_type, const char *model, ft_rng *rng) {
    const char *prefix = "chat";
    if (task_type && !strcasecmp(task_type, "INSTRUCTION_FINETUNE"))
        prefix = "ift";
    else if (task_type && !strcasecmp(task_type, "CONTINUED_PRETRAIN"))
        prefix = "cpt";
    char *slug = ft_model_slug(model);
    if (!slug)
        return NULL;
    char letters[7];
    for (int i = 0; i < 6; i++)
        letters[i] = (char)('a' + ft_rng_below(rng, 26));
    letters[6] = 0;
    char *name = ft_asprintf("%s-%s-%s", prefix, slug, letters);
    ft_free(slug);
    return name;
}

ft_status ft_experiment_dir(const char *experiment_path, char **out, ft_err *err) {
    *out = NULL;
    static const char *const workspace[] = {"/Users/", "/Workspace/", "/Shared/", "/Repos/"};
    for (size_t i = 0; i < sizeof workspace / sizeof *workspace; i++) {
        if (strncmp(experiment_path, workspace[i], strlen(workspace[i])) == 0) {
            char *home = ft_home_dir();
            char *root = home ? ft_path_join(home, "experiments") : NULL;
            ft_status s = root ? ft_path_map_root(experiment_path, root, experiment_path + 1, out, err)
                               : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
            ft_free(home);
            ft_free(root);
            return s;
        }
    }
    return ft_path_map(experiment_path, out, err);
}
