/* tests/train/test_chat_run.c: a CHAT_COMPLETION run: conversations rendered with the model's
 * chat template, loss on the assistant turns and their end-of-turn token; the eval prompts are
 * rendered with the template's generation prompt, and after training the chat answers come back
 * and stop at the template's end-of-turn token. */
#include <stdlib.h>
#include <string.h>

#include "ftune/gen.h"
#include "ftune/json.h"
#include "test.h"
#include "tiny.h"

TEST(train_chat_task_and_eval_prompts) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(data, sizeof data, "%s/chat.jsonl", tmp);
    REQUIRE_OK(tiny_model_write(model, 8, &err), &err);
    ft_buf b = {0};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < tiny_n_facts; i++) {
            json_t *o = json_pack("{s:[{s:s, s:s}, {s:s, s:s}]}", "messages", "role", "user", "content",
                                  tiny_prompts[i], "role", "assistant", "content", tiny_answers[i]);
            char *line = json_dumps(o, JSON_COMPACT);
            ft_buf_appendf(&b, "%s\n", line);
            free(line);
            json_decref(o);
        }
    REQUIRE_OK(ft_file_write_atomic(data, b.data, b.len, &err), &err);
    ft_buf_free(&b);
    ft_train_config c = tiny_config(model, data, tmp, "chat");
    REQUIRE_OK(ft_train_config_set(&c, "task_type", "CHAT_COMPLETION", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "100ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "global_batch_size", "4", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "micro_batch_size", "4", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "eval_prompts", "color of the sky?", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "eval_prompts", "2+2=", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "eval_max_new_tokens", "10", &err), &err);
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
    printf("    chat run: final loss %.4f after %lld steps\n", res.final_loss, (long long)res.steps_done);
    CHECK(res.final_loss < 0.25);
    /* The final evaluation: sampled (temperature 1, top-k 50, top-p 0.95) completions of the
     * rendered prompts, seeded per prompt. */
    char p[1300];
    snprintf(p, sizeof p, "%s/eval/ep%lld-ba100.json", res.run_dir, (long long)res.epochs_done);
    json_t *j = NULL;
    REQUIRE_OK(ft_json_load_file(p, &j, &err), &err);
    json_t *g = json_object_get(j, "generations");
    REQUIRE(json_array_size(g) == 2);
    const char *c0 = json_string_value(json_object_get(json_array_get(g, 0), "completion"));
    const char *c1 = json_string_value(json_object_get(json_array_get(g, 1), "completion"));
    printf("    eval prompts: \"color of the sky?\" -> \"%s\", \"2+2=\" -> \"%s\"\n", c0, c1);
    /* Sampled, so only "an answer of the task, ended at <|eot|>" is certain. */
    int in0 = 0, in1 = 0;
    for (size_t i = 0; i < tiny_n_facts; i++) {
        in0 += c0 && !strcmp(c0, tiny_answers[i]);
        in1 += c1 && !strcmp(c1, tiny_answers[i]);
    }
    CHECK(in0 == 1 && in1 == 1);
    json_decref(j);
    /* Greedy chat answers of the exported model. */
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    ft_generator *gen = NULL;
    REQUIRE_OK(ft_model_load(res.export_dir, &mp, &m, &err), &err);
    REQUIRE_OK(ft_tok_load(res.export_dir, &tok, &err), &err);
    REQUIRE_OK(ft_gen_new(m, tok, res.export_dir, 128, &gen, &err), &err);
    size_t right = 0;
    for (size_t i = 0; i < tiny_n_facts; i++) {
        ft_gen_params gp = ft_gen_default_params();
        gp.chat = true;
        gp.sampling.temperature = 0;
        gp.max_new_tokens = 12;
        ft_gen_output out;
        REQUIRE_OK(ft_gen_text(gen, tiny_prompts[i], &gp, &out, &err), &err);
        right += out.stopped && !strcmp(out.text, tiny_answers[i]);
        ft_gen_output_free(&out);
    }
    printf("    chat greedy answers correct: %zu/%zu\n", right, tiny_n_facts);
    CHECK(right >= tiny_n_facts - 1);
    ft_gen_free(gen);
    ft_tok_free(tok);
    ft_model_free(m);
    ft_train_config_deinit(&c);
}

/* A model whose template lives in chat_template.jinja beside a tokenizer_config.json without
 * one (newer Hub repositories): training and generation find it, as validation does. */
TEST(train_chat_template_from_jinja_file) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(data, sizeof data, "%s/chat.jsonl", tmp);
    REQUIRE_OK(tiny_model_write(model, 8, &err), &err);
    char *tc = ft_path_join(model, "tokenizer_config.json"), *jf = ft_path_join(model, "chat_template.jinja");
    json_t *cfg = NULL;
    REQUIRE_OK(ft_json_load_file(tc, &cfg, &err), &err);
    const char *tpl = json_string_value(json_object_get(cfg, "chat_template"));
    REQUIRE(tpl);
    REQUIRE_OK(ft_file_write_atomic(jf, tpl, strlen(tpl), &err), &err);
    json_object_del(cfg, "chat_template");
    char *txt = json_dumps(cfg, JSON_INDENT(1));
    REQUIRE_OK(ft_file_write_atomic(tc, txt, strlen(txt), &err), &err);
    free(txt);
    json_decref(cfg);
    const char *line = "{\"messages\":[{\"role\":\"user\",\"content\":\"2+2=\"},{\"role\":\"assistant\",\"content\":\"4\"}]}\n";
    REQUIRE_OK(ft_file_write_atomic(data, line, strlen(line), &err), &err);
    ft_train_config c = tiny_config(model, data, tmp, "jinja");
    REQUIRE_OK(ft_train_config_set(&c, "task_type", "CHAT_COMPLETION", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "1ba", &err), &err);
    REQUIRE_OK(ft_train_config_set(&c, "global_batch_size", "1", &err), &err);
    ft_train_result res;
    CHECK_OK(ft_train_run(&c, NULL, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    ft_generator *g = NULL;
    REQUIRE_OK(ft_model_load(model, &mp, &m, &err), &err);
    REQUIRE_OK(ft_tok_load(model, &tok, &err), &err);
    REQUIRE_OK(ft_gen_new(m, tok, model, 0, &g, &err), &err);
    CHECK(ft_gen_has_chat_template(g));
    ft_gen_free(g);
    ft_tok_free(tok);
    ft_model_free(m);
    ft_train_config_deinit(&c);
    ft_free(tc);
    ft_free(jf);
}
