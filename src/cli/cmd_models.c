/* cli/cmd_models.c: `ftune models`: the catalogue of SPEC §7 (hub id, architecture, maximum
 * context length, default learning rate) and whether each is present in the local Hugging Face
 * cache. Any local folder of a supported architecture works too. */
#include <stdlib.h>
#include <string.h>

#include "ftune/hf.h"
#include "ftune/json.h"
#include "run_common.h"


typedef struct model_entry {
    const char *id;
    const char *arch;
    int64_t context;
} model_entry;

static const model_entry catalogue[] = {
    {"databricks/dbrx-base", "DbrxForCausalLM", 32768},
    {"databricks/dbrx-instruct", "DbrxForCausalLM", 32768},
    {"meta-llama/Meta-Llama-3.1-8B", "LlamaForCausalLM", 131072},
    {"meta-llama/Meta-Llama-3.1-8B-Instruct", "LlamaForCausalLM", 131072},
    {"meta-llama/Meta-Llama-3.1-70B", "LlamaForCausalLM", 131072},
    {"meta-llama/Meta-Llama-3.1-70B-Instruct", "LlamaForCausalLM", 131072},
    {"meta-llama/Meta-Llama-3.1-405B", "LlamaForCausalLM", 131072},
    {"meta-llama/Meta-Llama-3.1-405B-Instruct", "LlamaForCausalLM", 131072},
    {"meta-llama/Llama-3.2-1B", "LlamaForCausalLM", 131072},
    {"meta-llama/Llama-3.2-1B-Instruct", "LlamaForCausalLM", 131072},
    {"meta-llama/Llama-3.2-3B", "LlamaForCausalLM", 131072},
    {"meta-llama/Llama-3.2-3B-Instruct", "LlamaForCausalLM", 131072},
    {"meta-llama/Meta-Llama-3-8B", "LlamaForCausalLM", 8192},
    {"meta-llama/Meta-Llama-3-8B-Instruct", "LlamaForCausalLM", 8192},
    {"meta-llama/Meta-Llama-3-70B", "LlamaForCausalLM", 8192},
    {"meta-llama/Meta-Llama-3-70B-Instruct", "LlamaForCausalLM", 8192},
    {"meta-llama/Llama-2-7b-hf", "LlamaForCausalLM", 4096},
    {"meta-llama/Llama-2-7b-chat-hf", "LlamaForCausalLM", 4096},
    {"meta-llama/Llama-2-13b-hf", "LlamaForCausalLM", 4096},
    {"meta-llama/Llama-2-13b-chat-hf", "LlamaForCausalLM", 4096},
    {"meta-llama/Llama-2-70b-hf", "LlamaForCausalLM", 4096},
    {"meta-llama/Llama-2-70b-chat-hf", "LlamaForCausalLM", 4096},
    {"codellama/CodeLlama-7b-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-7b-Instruct-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-7b-Python-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-13b-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-13b-Instruct-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-13b-Python-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-34b-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-34b-Instruct-hf", "LlamaForCausalLM", 16384},
    {"codellama/CodeLlama-34b-Python-hf", "LlamaForCausalLM", 16384},
    {"mistralai/Mistral-7B-v0.1", "MistralForCausalLM", 32768},
    {"mistralai/Mistral-7B-Instruct-v0.2", "MistralForCausalLM", 32768},
    {"mistralai/Mixtral-8x7B-v0.1", "MixtralForCausalLM", 32768},
};

/* Where the model is on this machine (caller frees), or NULL. */
static char *local_path(const char *id) {
    char *dir = NULL;
    if (ft_hf_resolve(id, &dir, NULL) == FT_OK)
        return dir;
    return NULL;
}

int cmd_models(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "models", "", NULL, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    bool json = cli_has(&a, "json");
    cli_args_free(&a);
    char *cache = ft_hf_cache_dir();
    json_t *arr = json_array();
    if (!json)
        printf("%-42s %-20s %8s  %-8s %s\n", "MODEL", "ARCHITECTURE", "CONTEXT", "LR", "LOCAL");
    for (size_t i = 0; i < sizeof catalogue / sizeof *catalogue; i++) {
        const model_entry *m = &catalogue[i];
        char *path = local_path(m->id);
        double lr = strstr(m->id, "405B-Instruct") ? 1e-5 : 5e-7;
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(m->id));
            json_object_set_new(o, "architecture", json_string(m->arch));
            json_object_set_new(o, "max_context_length", json_integer(m->context));
            json_object_set_new(o, "default_learning_rate", json_real(lr));
            json_object_set_new(o, "present", json_boolean(path != NULL));
            json_object_set_new(o, "path", path ? json_string(path) : json_null());
            json_array_append_new(arr, o);
        } else {
            printf("%-42s %-20s %8lld  %-8g %s\n", m->id, m->arch, (long long)m->context, lr,
                   path ? path : "-");
        }
        ft_free(path);
    }
    if (json) {
        char *t = ft_json_dumps(arr, 0);
        printf("%s\n", t ? t : "[]");
        free(t);
    } else {
        printf("\nLOCAL: found in the Hugging Face cache (%s). Any local folder of a supported architecture\n"
               "works as --model too, and so does a registered model (catalog.schema.name[/version]).\n",
               cache ? cache : "?");
    }
    json_decref(arr);
    ft_free(cache);
    return CLI_EXIT_OK;
}
