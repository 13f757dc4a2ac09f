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
    REQUIRE_OK(train_export(m, src, out, FT_ST_DTYPE_F32, 0, &err), &err);
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
    REQUIRE_OK(train_export(m, src, sharded, FT_ST_DTYPE_F32, 64 * 1024, &err), &err);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", sharded);
    CHECK(ft_path_exists(p));
    snprintf(p, sizeof p, "%s/model.safetensors", sharded);
    CHECK(!ft_path_exists(p));
    REQUIRE_OK(ft_model_load(sharded, &mp, &r, &err), &err);
    check_same_model(m, r);
    ft_model_free(r);
    ft_model_free(m);
}

/* Issue #10: a run exports in its base model's torch_dtype unless export_dtype says otherwise. A
 * bf16 base exports BF16 safetensors with config torch_dtype "bfloat16", and those weights are
 * the fp32 export's (same run, same seed) rounded to nearest-even, bit for bit; export_dtype fp32
 * gives F32 and "float32". */
static void export_of_run(const char *model, const char *data, const char *tmp, const char *name,
                          const char *export_dtype, char *out, size_t cap) {
    ft_err err;
    ft_train_config c = tiny_config(model, data, tmp, name);
    REQUIRE_OK(ft_train_config_set(&c, "training_duration", "2ba", &err), &err);
    if (export_dtype)
        REQUIRE_OK(ft_train_config_set(&c, "export_dtype", export_dtype, &err), &err);
    ft_train_result res;
    REQUIRE_OK(ft_train_run(&c, NULL, &res, &err), &err);
    CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
    snprintf(out, cap, "%s", res.export_dir);
    ft_train_config_deinit(&c);
}

static void check_export_dtype(const char *dir, const char *torch_dtype, ft_st_dtype st) {
    ft_model_config c;
    ft_err err;
    char *cfg = ft_path_join(dir, "config.json");
    REQUIRE_OK(ft_model_config_load(cfg, &c, &err), &err);
    CHECK_STR_EQ(c.torch_dtype, torch_dtype);
    char *w = ft_path_join(dir, "model.safetensors");
    ft_st_reader *r = NULL;
    REQUIRE_OK(ft_st_open(w, &r, &err), &err);
    for (size_t i = 0; i < ft_st_count(r); i++)
        if (ft_st_tensor_at(r, i)->dtype != st)
            ft_test_fail_(__FILE__, __LINE__, "%s: %s is %s", dir, ft_st_tensor_at(r, i)->name,
                          ft_st_dtype_name(ft_st_tensor_at(r, i)->dtype));
    ft_st_close(r);
    ft_free(cfg);
    ft_free(w);
}

TEST(export_keeps_the_base_models_dtype) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024];
    REQUIRE_OK(tiny_setup(tmp, 5, 1, model, data, sizeof model, &err), &err);
    /* the same tiny model as a bf16 checkpoint */
    ft_model *m = NULL;
    ft_model_params mp = ft_model_default_params();
    REQUIRE_OK(ft_model_load(model, &mp, &m, &err), &err);
    char *base16 = ft_path_join(tmp, "base-bf16");
    REQUIRE_OK(train_export(m, ft_test_fixture("train/tinytok"), base16, FT_ST_DTYPE_BF16, 0, &err), &err);
    CHECK(train_export_dtype("auto", ft_model_get_config(m)) == FT_ST_DTYPE_F32);
    ft_model_free(m);
    check_export_dtype(base16, "bfloat16", FT_ST_DTYPE_BF16);
    char e_auto[1024], e_32[1024], e_f32base[1024];
    export_of_run(base16, data, tmp, "auto16", NULL, e_auto, sizeof e_auto);
    export_of_run(base16, data, tmp, "fp32", "fp32", e_32, sizeof e_32);
    export_of_run(model, data, tmp, "auto32", NULL, e_f32base, sizeof e_f32base);
    check_export_dtype(e_auto, "bfloat16", FT_ST_DTYPE_BF16);
    check_export_dtype(e_32, "float32", FT_ST_DTYPE_F32);
    check_export_dtype(e_f32base, "float32", FT_ST_DTYPE_F32);
    /* the round trip: bf16 export == round(fp32 export), every parameter */
    ft_model *a = NULL, *b = NULL;
    REQUIRE_OK(ft_model_load(e_auto, &mp, &a, &err), &err);
    REQUIRE_OK(ft_model_load(e_32, &mp, &b, &err), &err);
    for (size_t i = 0; i < ft_model_n_params(b); i++) {
        ft_param *p = ft_model_param(b, i), *q = ft_model_find_param(a, p->name);
        REQUIRE(q && q->numel == p->numel);
        float *r = ft_malloc((size_t)p->numel * sizeof(float));
        ft_tensor_round_bf16(r, p->data, p->numel);
        if (memcmp(r, q->data, (size_t)p->numel * sizeof(float)))
            ft_test_fail_(__FILE__, __LINE__, "%s: the bf16 export is not the fp32 one rounded", p->name);
        ft_free(r);
    }
    ft_model_free(a);
    ft_model_free(b);
    /* config values */
    ft_train_config c = ft_train_default_config();
    CHECK_STR_EQ(c.export_dtype, "auto");
    CHECK_OK(ft_train_config_set(&c, "export_bf16", "true", &err), &err);
    CHECK_STR_EQ(c.export_dtype, "bfloat16");
    CHECK(ft_train_config_set(&c, "export_dtype", "int8", &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "auto (the base model's torch_dtype), fp32, bf16 or fp16") != NULL);
    ft_free(base16);
}
