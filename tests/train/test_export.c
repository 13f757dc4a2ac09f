/* tests/train/test_export.c: the exported HF folder has every file transformers reads, reloads
 * into exactly the weights that were exported (every parameter bit for bit, the same logits),
 * also when sharded with an index, and keeps the source's generation_config.json. */
#include <stdlib.h>

#include "ftune/json.h"
#include "test.h"
#include "tiny.h"

static void check_same_model(ft_model *a, ft_model *b) {
    size_t n = ft_model_n_params(a);
    CHECK_EQ_INT(ft_model_n_params(b), n);
    for (size_t i = 0; i < n; i++) {
        ft_param *p = ft_model_param(a, i), *q = ft_model_find_param(b, p->name);
        REQUIRE(q && q->numel == p->numel);
        if (memcmp(p->data, q->data, (size_t)p->numel * sizeof(float)))
            ft_test_fail_(__FILE__, __LINE__, "%s differs after export and reload", p->name);
    }
    enum { T = 10 };
    int32_t ids[T] = {256, 72, 101, 108, 108, 111, 32, 119, 111, 114};
    int32_t tg[T];
    for (int t = 0; t < T; t++)
        tg[t] = t + 1 < T ? ids[t + 1] : -100;
    ft_batch bt = {.B = 1, .T = T, .input_ids = ids, .targets = tg};
    int64_t V = ft_model_get_config(a)->vocab_size, na, nb;
    float *la = malloc(sizeof(float) * T * V), *lb = malloc(sizeof(float) * T * V);
    double sa, sb;
    ft_err err;
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_seq = T;
    ft_workspace *wa = NULL, *wb = NULL;
    REQUIRE_OK(ft_workspace_new(a, &wp, &wa, &err), &err);
    REQUIRE_OK(ft_workspace_new(b, &wp, &wb, &err), &err);
    REQUIRE_OK(ft_model_forward(a, wa, &bt, la, &sa, &na, &err), &err);
    REQUIRE_OK(ft_model_forward(b, wb, &bt, lb, &sb, &nb, &err), &err);
    CHECK(memcmp(la, lb, sizeof(float) * T * V) == 0);
    CHECK(sa == sb);
    ft_workspace_free(wa);
    ft_workspace_free(wb);
    free(la);
    free(lb);
}

TEST(train_export_reloads_exactly) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char src[1024], out[1024], sharded[1024], p[1300];
    snprintf(src, sizeof src, "%s/src", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    snprintf(sharded, sizeof sharded, "%s/sharded", tmp);
    REQUIRE_OK(tiny_model_write(src, 9, &err), &err);
    /* A generation_config.json with what the model config cannot say (a list of eos ids). */
    snprintf(p, sizeof p, "%s/generation_config.json", src);
    const char *gc = "{\"bos_token_id\": 256, \"eos_token_id\": [257, 258], \"do_sample\": true}\n";
    REQUIRE_OK(ft_file_write_atomic(p, gc, strlen(gc), &err), &err);
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL, *r = NULL;
    REQUIRE_OK(ft_model_load(src, &mp, &m, &err), &err);
    /* Nudge the weights so the export is not just a copy of the source files. */
    for (size_t i = 0; i < ft_model_n_params(m); i++)
        ft_model_param(m, i)->data[0] += 0.25f;
    REQUIRE_OK(train_export(m, src, out, false, 0, &err), &err);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                           "generation_config.json"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        if (!ft_path_exists(p))
            ft_test_fail_(__FILE__, __LINE__, "export lacks %s", files[i]);
    }
    snprintf(p, sizeof p, "%s/generation_config.json", out);
    char *text = NULL;
    REQUIRE_OK(ft_file_read_all(p, &text, NULL, &err), &err);
    CHECK_STR_EQ(text, gc);
    ft_free(text);
    snprintf(p, sizeof p, "%s/config.json", out);
    json_t *cj = NULL;
    REQUIRE_OK(ft_json_load_file(p, &cj, &err), &err);
    CHECK_STR_EQ(json_string_value(json_array_get(json_object_get(cj, "architectures"), 0)), "LlamaForCausalLM");
    CHECK_STR_EQ(json_string_value(json_object_get(cj, "torch_dtype")), "float32");
    json_decref(cj);
    REQUIRE_OK(ft_model_load(out, &mp, &r, &err), &err);
    check_same_model(m, r);
    ft_model_free(r);
    r = NULL;
    /* Sharded (shards of at most 64 KB here, 5 GB by default): an index and several files. */
    REQUIRE_OK(train_export(m, src, sharded, false, 64 * 1024, &err), &err);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", sharded);
    CHECK(ft_path_exists(p));
    snprintf(p, sizeof p, "%s/model.safetensors", sharded);
    CHECK(!ft_path_exists(p));
    REQUIRE_OK(ft_model_load(sharded, &mp, &r, &err), &err);
    check_same_model(m, r);
    ft_model_free(r);
    ft_model_free(m);
}
