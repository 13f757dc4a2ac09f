/* runs/models.c: the model catalogue of SPEC §7 (hub id, architecture, maximum context length,
 * default learning rate) and where each model is in the local Hugging Face cache: `ftune models`
 * and GET /api/models. Any local folder of a supported architecture works too. */
#include <string.h>

#include "ftune/hf.h"
#include "ftune/runs.h"

#define LLAMA "LlamaForCausalLM"
static const ft_catalogue_entry catalogue[] = {
    {"databricks/dbrx-base", "DbrxForCausalLM", 32768, 5e-7},
    {"databricks/dbrx-instruct", "DbrxForCausalLM", 32768, 5e-7},
    {"meta-llama/Meta-Llama-3.1-8B", LLAMA, 131072, 5e-7},
    {"meta-llama/Meta-Llama-3.1-8B-Instruct", LLAMA, 131072, 5e-7},
    {"meta-llama/Meta-Llama-3.1-70B", LLAMA, 131072, 5e-7},
    {"meta-llama/Meta-Llama-3.1-70B-Instruct", LLAMA, 131072, 5e-7},
    {"meta-llama/Meta-Llama-3.1-405B", LLAMA, 131072, 5e-7},
    {"meta-llama/Meta-Llama-3.1-405B-Instruct", LLAMA, 131072, 1e-5},
    {"meta-llama/Llama-3.2-1B", LLAMA, 131072, 5e-7},
    {"meta-llama/Llama-3.2-1B-Instruct", LLAMA, 131072, 5e-7},
    {"meta-llama/Llama-3.2-3B", LLAMA, 131072, 5e-7},
    {"meta-llama/Llama-3.2-3B-Instruct", LLAMA, 131072, 5e-7},
    {"meta-llama/Meta-Llama-3-8B", LLAMA, 8192, 5e-7},
    {"meta-llama/Meta-Llama-3-8B-Instruct", LLAMA, 8192, 5e-7},
    {"meta-llama/Meta-Llama-3-70B", LLAMA, 8192, 5e-7},
    {"meta-llama/Meta-Llama-3-70B-Instruct", LLAMA, 8192, 5e-7},
    {"meta-llama/Llama-2-7b-hf", LLAMA, 4096, 5e-7},
    {"meta-llama/Llama-2-7b-chat-hf", LLAMA, 4096, 5e-7},
    {"meta-llama/Llama-2-13b-hf", LLAMA, 4096, 5e-7},
    {"meta-llama/Llama-2-13b-chat-hf", LLAMA, 4096, 5e-7},
    {"meta-llama/Llama-2-70b-hf", LLAMA, 4096, 5e-7},
    {"meta-llama/Llama-2-70b-chat-hf", LLAMA, 4096, 5e-7},
    {"codellama/CodeLlama-7b-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-7b-Instruct-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-7b-Python-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-13b-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-13b-Instruct-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-13b-Python-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-34b-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-34b-Instruct-hf", LLAMA, 16384, 5e-7},
    {"codellama/CodeLlama-34b-Python-hf", LLAMA, 16384, 5e-7},
    {"mistralai/Mistral-7B-v0.1", "MistralForCausalLM", 32768, 5e-7},
    {"mistralai/Mistral-7B-Instruct-v0.2", "MistralForCausalLM", 32768, 5e-7},
    {"mistralai/Mixtral-8x7B-v0.1", "MixtralForCausalLM", 32768, 5e-7},
    {"mistralai/Mixtral-8x7B-Instruct-v0.1", "MixtralForCausalLM", 32768, 5e-7},
};

const ft_catalogue_entry *ft_runs_catalogue(size_t *n) {
    *n = sizeof catalogue / sizeof *catalogue;
    return catalogue;
}

json_t *ft_runs_models_json(void) {
    json_t *arr = json_array();
    for (size_t i = 0; i < sizeof catalogue / sizeof *catalogue; i++) {
        const ft_catalogue_entry *m = &catalogue[i];
        char *path = NULL;
        if (ft_hf_resolve(m->id, &path, NULL) != FT_OK)
            path = NULL;
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(m->id));
        json_object_set_new(o, "architecture", json_string(m->arch));
        json_object_set_new(o, "max_context_length", json_integer(m->max_context));
        json_object_set_new(o, "default_learning_rate", json_real(m->default_lr));
        json_object_set_new(o, "present", json_boolean(path != NULL));
        json_object_set_new(o, "path", path ? json_string(path) : json_null());
        json_array_append_new(arr, o);
        ft_free(path);
    }
    return arr;
}
