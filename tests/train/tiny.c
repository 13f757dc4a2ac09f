/* tests/train/tiny.c: the tiny model and synthetic task of tiny.h. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "tiny.h"

const char *const tiny_prompts[] = {"capital of France?", "capital of Peru?", "color of the sky?",
                                    "color of grass?",   "2+2=",              "3+4=",
                                    "opposite of hot?",  "opposite of up?"};
const char *const tiny_answers[] = {" Paris", " Lima", " blue", " green", "4", "7", " cold", " down"};
const size_t tiny_n_facts = sizeof tiny_prompts / sizeof *tiny_prompts;

ft_status tiny_model_write(const char *dir, uint64_t seed, ft_err *err) {
    ft_model_config c;
    ft_model_config_default(&c);
    snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.vocab_size = 259;
    c.hidden_size = 48;
    c.intermediate_size = 96;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 12;
    c.tie_word_embeddings = true;
    c.max_position_embeddings = 256;
    c.bos_token_id = 256;
    c.eos_token_ids[0] = 257;
    c.n_eos = 1;
    c.initializer_range = 0.05;
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    FT_TRY(ft_model_new_random(&c, seed, &mp, &m, err));
    ft_status s = train_export(m, ft_test_fixture("train/tinytok"), dir, FT_ST_DTYPE_F32, 0, err);
    ft_model_free(m);
    return s;
}

ft_status tiny_write_ift(const char *path, int copies, ft_err *err) {
    ft_buf b = {0};
    for (int k = 0; k < copies; k++)
        for (size_t i = 0; i < tiny_n_facts; i++) {
            json_t *o = json_pack("{s:s, s:s}", "prompt", tiny_prompts[i], "response", tiny_answers[i]);
            char *line = json_dumps(o, JSON_COMPACT);
            ft_buf_appendf(&b, "%s\n", line);
            free(line);
            json_decref(o);
        }
    ft_status s = ft_file_write_atomic(path, b.data, b.len, err);
    ft_buf_free(&b);
    return s;
}

ft_train_config tiny_config(const char *model_dir, const char *data, const char *exp, const char *name) {
    ft_train_config c = ft_train_default_config();
    ft_err err;
    const char *kv[][2] = {{"model", model_dir},
                           {"train_data_path", data},
                           {"experiment_path", exp},
                           {"name", name},
                           {"task_type", "INSTRUCTION_FINETUNE"},
                           {"context_length", "64"},
                           {"learning_rate", "1e-2"},
                           {"global_batch_size", "2"},
                           {"micro_batch_size", "1"},
                           {"threads", "1"},
                           {"seed", "7"},
                           /* only at the end: tiny data ends an epoch every step or two */
                           {"save_interval", "1000ba"}};
    for (size_t i = 0; i < sizeof kv / sizeof *kv; i++)
        FT_ASSERT(ft_train_config_set(&c, kv[i][0], kv[i][1], &err) == FT_OK);
    return c;
}

ft_status tiny_setup(const char *tmp, uint64_t seed, int copies, char *model, char *data, size_t cap, ft_err *err) {
    snprintf(model, cap, "%s/model", tmp);
    snprintf(data, cap, "%s/train.jsonl", tmp);
    FT_TRY(tiny_model_write(model, seed, err));
    return tiny_write_ift(data, copies, err);
}

size_t tiny_read_losses(const char *run_dir, double *loss, size_t cap) {
    char *p = ft_path_join(run_dir, "metrics.jsonl");
    char *data = NULL;
    size_t n = 0;
    if (p && ft_file_read_all(p, &data, NULL, NULL) == FT_OK) {
        for (char *line = data; line && *line;) {
            char *nl = strchr(line, '\n');
            long long step;
            double v;
            if (sscanf(line, "{\"step\": %lld, \"name\": \"loss\", \"value\": %lf", &step, &v) == 2 && step >= 1 &&
                (size_t)step <= cap) {
                loss[step - 1] = v;
                if ((size_t)step > n)
                    n = (size_t)step;
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    ft_free(data);
    ft_free(p);
    return n;
}
