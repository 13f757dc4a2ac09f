/* tests/model/test_config.c: config.json parsing of real models' configs (Llama 2, CodeLlama,
 * Llama 3.1 / 3.2 with llama3 RoPE scaling, Mistral v0.1 / v0.3), unsupported features, validation,
 * writing and re-reading, and the HF tensor list (checked against the published parameter counts). */
#include <stdlib.h>
#include <string.h>

#include "ftune/config.h"
#include "ftune/json.h"
#include "test.h"

static const char *cfg(const char *name) {
    static char b[512];
    snprintf(b, sizeof b, "%s", ft_test_fixture(name));
    return b;
}

TEST(config_llama31) {
    ft_model_config c;
    ft_err err;
    REQUIRE_OK(ft_model_config_load(cfg("io/configs/llama-3.1-8b-instruct.json"), &c, &err), &err);
    CHECK_STR_EQ(c.architecture, "LlamaForCausalLM");
    CHECK_STR_EQ(c.model_type, "llama");
    CHECK_EQ_INT(c.vocab_size, 128256);
    CHECK_EQ_INT(c.hidden_size, 4096);
    CHECK_EQ_INT(c.intermediate_size, 14336);
    CHECK_EQ_INT(c.num_hidden_layers, 32);
    CHECK_EQ_INT(c.num_attention_heads, 32);
    CHECK_EQ_INT(c.num_key_value_heads, 8);
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 0);
    CHECK_NEAR(c.rope_theta, 500000.0, 0);
    CHECK_EQ_INT(c.rope_scaling, FT_ROPE_LLAMA3);
    CHECK_NEAR(c.rope_factor, 8.0, 0);
    CHECK_NEAR(c.rope_low_freq_factor, 1.0, 0);
    CHECK_NEAR(c.rope_high_freq_factor, 4.0, 0);
    CHECK_EQ_INT(c.rope_original_max_position_embeddings, 8192);
    CHECK(!c.tie_word_embeddings);
    CHECK_EQ_INT(c.max_position_embeddings, 131072);
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(c.bos_token_id, 128000);
    CHECK_EQ_INT(c.n_eos, 3);
    CHECK_EQ_INT(c.eos_token_ids[0], 128001);
    CHECK_EQ_INT(c.eos_token_ids[2], 128009);
    CHECK_EQ_INT(c.pad_token_id, -1);
    CHECK_STR_EQ(c.torch_dtype, "bfloat16");
    /* Meta's published count for Llama 3.1 8B. */
    CHECK_EQ_INT(ft_model_config_n_params(&c), 8030261248LL);
}

TEST(config_llama32_tied_head_dim) {
    ft_model_config c;
    ft_err err;
    REQUIRE_OK(ft_model_config_load(cfg("io/configs/llama-3.2-1b.json"), &c, &err), &err);
    CHECK(c.tie_word_embeddings);
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_NEAR(c.rope_factor, 32.0, 0);
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 128001);
    CHECK_EQ_INT(ft_model_config_n_params(&c), 1235814400LL);
    /* Tied: no lm_head.weight in the tensor list. */
    size_t n = ft_model_config_tensors(&c, NULL, 0);
    CHECK_EQ_INT(n, 2 + 9 * 16);
    ft_tensor_spec *ts = calloc(n, sizeof *ts);
    CHECK_EQ_INT(ft_model_config_tensors(&c, ts, n), n);
    int64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(ts[i].name, "lm_head.weight") != 0);
        sum += ft_tensor_spec_numel(&ts[i]);
    }
    CHECK_EQ_INT(sum, ft_model_config_n_params(&c));
    free(ts);
}

TEST(config_llama2_codellama) {
    ft_model_config c;
    ft_err err;
    REQUIRE_OK(ft_model_config_load(cfg("io/configs/llama-2-7b.json"), &c, &err), &err);
    CHECK_EQ_INT(c.rope_scaling, FT_ROPE_NONE);
    CHECK_NEAR(c.rope_theta, 10000.0, 0); /* absent: LlamaConfig's default */
    CHECK_EQ_INT(c.num_key_value_heads, 32);
    CHECK_EQ_INT(c.bos_token_id, 1);
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_token_ids[0], 2);
    CHECK_STR_EQ(c.torch_dtype, "float16");
    CHECK_EQ_INT(ft_model_config_n_params(&c), 6738415616LL);

    REQUIRE_OK(ft_model_config_load(cfg("io/configs/codellama-7b.json"), &c, &err), &err);
    CHECK_NEAR(c.rope_theta, 1e6, 0); /* written as the integer 1000000 */
    CHECK_EQ_INT(c.vocab_size, 32016);
    CHECK_EQ_INT(c.max_position_embeddings, 16384);
}

TEST(config_mistral) {
    ft_model_config c;
    ft_err err;
    REQUIRE_OK(ft_model_config_load(cfg("io/configs/mistral-7b-v0.1.json"), &c, &err), &err);
    CHECK_STR_EQ(c.architecture, "MistralForCausalLM");
    CHECK_STR_EQ(c.model_type, "mistral");
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(c.num_key_value_heads, 8);
    CHECK_EQ_INT(ft_model_config_n_params(&c), 7241732096LL);
    REQUIRE_OK(ft_model_config_load(cfg("io/configs/mistral-7b-instruct-v0.3.json"), &c, &err), &err);
    CHECK_EQ_INT(c.sliding_window, 0); /* null */
    CHECK_EQ_INT(c.vocab_size, 32768);
    CHECK_NEAR(c.rope_theta, 1e6, 0);
}

TEST(config_unsupported) {
    ft_model_config c;
    ft_err err;
    const char *p = cfg("io/configs/rope-linear.json");
    CHECK_EQ_INT(ft_model_config_load(p, &c, &err), FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "\"linear\"") != NULL);
    CHECK(strstr(err.file, "rope-linear.json") != NULL);
    p = cfg("io/configs/qwen2.json");
    CHECK_EQ_INT(ft_model_config_load(p, &c, &err), FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "Qwen2ForCausalLM") && strstr(err.msg, "LlamaForCausalLM") &&
          strstr(err.msg, "MistralForCausalLM"));
}

/* Write `json` to a temp config.json and load it. */
static ft_status load_text(const char *json, ft_model_config *c, ft_err *err) {
    char *p = ft_path_join(ft_test_tmpdir(), "config.json");
    ft_status s = ft_file_write_atomic(p, json, strlen(json), err);
    if (s == FT_OK)
        s = ft_model_config_load(p, c, err);
    ft_free(p);
    return s;
}

TEST(config_bad_values) {
    ft_model_config c;
    ft_err err;
    struct {
        const char *json;
        ft_status code;
        const char *needle;
    } cases[] = {
        {"{\"model_type\": \"llama\", \"hidden_size\": \"big\"}", FT_ERR_INVALID, "hidden_size"},
        {"{\"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_key_value_heads\": 5}", FT_ERR_INVALID,
         "num_key_value_heads"},
        {"{\"model_type\": \"llama\", \"vocab_size\": 0}", FT_ERR_INVALID, "vocab_size"},
        {"{\"model_type\": \"llama\", \"eos_token_id\": [1, \"x\"]}", FT_ERR_INVALID, "eos_token_id"},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}", FT_ERR_UNSUPPORTED,
         "yarn"},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 2}}",
         FT_ERR_UNSUPPORTED, "dynamic"},
        {"{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}", FT_ERR_INVALID,
         "low_freq_factor"},
        {"{\"model_type\": \"llama\", \"attention_bias\": true}", FT_ERR_UNSUPPORTED, "attention_bias"},
        {"{\"model_type\": \"llama\", \"hidden_act\": \"gelu\"}", FT_ERR_UNSUPPORTED, "gelu"},
        {"{\"model_type\": \"gpt2\"}", FT_ERR_UNSUPPORTED, "gpt2"},
        {"{}", FT_ERR_UNSUPPORTED, "model_type"},
        {"[1]", FT_ERR_INVALID, "object"},
        {"{\"model_type\": \"llama\",", FT_ERR_PARSE, "JSON"},
        {"{\"model_type\": \"llama\", \"hidden_size\": 4096, \"num_attention_heads\": 32, \"head_dim\": 127}",
         FT_ERR_INVALID, "head_dim"},
        {"{\"model_type\": \"llama\", \"torch_dtype\": \"int8\"}", FT_ERR_UNSUPPORTED, "int8"},
        {"{\"model_type\": \"llama\", \"vocab_size\": 100, \"eos_token_id\": 100}", FT_ERR_INVALID, "eos_token_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ft_err_clear(&err);
        ft_status s = load_text(cases[i].json, &c, &err);
        char msg[1600];
        ft_err_format(&err, msg, sizeof msg);
        if (s != cases[i].code || !strstr(msg, cases[i].needle) || !strstr(msg, "config.json"))
            ft_test_fail_(__FILE__, __LINE__, "case %zu (%s): got %s: %s", i, cases[i].json, ft_status_str(s), msg);
    }
    /* Minimal configs take transformers' defaults; "default" rope_type means none; null bos. */
    REQUIRE_OK(load_text("{\"model_type\": \"mistral\", \"rope_scaling\": {\"rope_type\": \"default\"}, "
                         "\"bos_token_id\": null, \"dtype\": \"float32\"}",
                         &c, &err),
               &err);
    CHECK_STR_EQ(c.architecture, "MistralForCausalLM");
    CHECK_EQ_INT(c.num_key_value_heads, 8);
    CHECK_EQ_INT(c.intermediate_size, 14336);
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(c.rope_scaling, FT_ROPE_NONE);
    CHECK_EQ_INT(c.bos_token_id, -1);
    CHECK_STR_EQ(c.torch_dtype, "float32");
    REQUIRE_OK(load_text("{\"architectures\": [\"LlamaForCausalLM\"], \"num_attention_heads\": 16, "
                         "\"num_key_value_heads\": null, \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 2, "
                         "\"low_freq_factor\": 1, \"high_freq_factor\": 2, \"original_max_position_embeddings\": 64}}",
                         &c, &err),
               &err);
    CHECK_EQ_INT(c.num_key_value_heads, 16);
    CHECK_EQ_INT(c.head_dim, 4096 / 16);
    CHECK_EQ_INT(c.rope_scaling, FT_ROPE_LLAMA3);
    CHECK_EQ_INT(c.rope_original_max_position_embeddings, 64);
}

TEST(config_save_roundtrip) {
    ft_err err;
    const char *srcs[] = {"io/configs/llama-3.1-8b-instruct.json", "io/configs/llama-3.2-1b.json",
                          "io/configs/mistral-7b-v0.1.json", "io/configs/mistral-7b-instruct-v0.3.json",
                          "io/configs/llama-2-7b.json"};
    for (size_t k = 0; k < sizeof srcs / sizeof *srcs; k++) {
        ft_model_config a, b;
        REQUIRE_OK(ft_model_config_load(cfg(srcs[k]), &a, &err), &err);
        char *p = ft_path_join(ft_test_tmpdir(), "config.json");
        REQUIRE_OK(ft_model_config_save(&a, p, &err), &err);
        REQUIRE_OK(ft_model_config_load(p, &b, &err), &err);
        CHECK_EQ_INT(b.vocab_size, a.vocab_size);
        CHECK_EQ_INT(b.head_dim, a.head_dim);
        CHECK_EQ_INT(b.n_eos, a.n_eos);
        CHECK_EQ_INT(b.eos_token_ids[b.n_eos - 1], a.eos_token_ids[a.n_eos - 1]);
        CHECK_EQ_INT(b.sliding_window, a.sliding_window);
        CHECK_EQ_INT(b.rope_scaling, a.rope_scaling);
        CHECK_NEAR(b.rms_norm_eps, a.rms_norm_eps, 0);
        CHECK_NEAR(b.rope_theta, a.rope_theta, 0);
        /* The keys transformers needs to pick the class. */
        json_t *j;
        REQUIRE_OK(ft_json_load_file(p, &j, &err), &err);
        const char *mt = NULL;
        CHECK_OK(ft_json_get_str(j, "model_type", true, &mt, "config", &err), &err);
        CHECK_STR_EQ(mt, a.model_type);
        CHECK(json_is_array(json_object_get(j, "architectures")));
        CHECK(json_is_string(json_object_get(j, "transformers_version")));
        CHECK(json_is_string(json_object_get(j, "torch_dtype")));
        json_decref(j);
        ft_free(p);
    }
}

TEST(config_save_exact_reals) {
    /* Reals that need all 17 digits still read back bit-exactly; round ones stay short. */
    ft_err err;
    ft_model_config a, b;
    REQUIRE_OK(ft_model_config_load(cfg("io/configs/llama-3.1-8b-instruct.json"), &a, &err), &err);
    char *p = ft_path_join(ft_test_tmpdir(), "config.json");
    REQUIRE_OK(ft_model_config_save(&a, p, &err), &err);
    char *text;
    REQUIRE_OK(ft_file_read_all(p, &text, NULL, &err), &err);
    CHECK(strstr(text, "\"rms_norm_eps\": 1e-5,") != NULL);
    CHECK(strstr(text, "\"rope_theta\": 500000.0,") != NULL);
    ft_free(text);
    a.rms_norm_eps = 1.2345678901234567e-5;
    a.initializer_range = 0.1 + 0.2;
    REQUIRE_OK(ft_model_config_save(&a, p, &err), &err);
    REQUIRE_OK(ft_model_config_load(p, &b, &err), &err);
    CHECK(b.rms_norm_eps == a.rms_norm_eps);
    CHECK(b.initializer_range == a.initializer_range);
    CHECK(b.rope_theta == a.rope_theta);
    ft_free(p);
}

TEST(config_tensor_list) {
    ft_model_config c;
    ft_model_config_default(&c);
    c.vocab_size = 100;
    c.hidden_size = 32;
    c.intermediate_size = 48;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 16; /* != hidden / heads */
    ft_err err;
    REQUIRE_OK(ft_model_config_validate(&c, &err), &err);
    ft_tensor_spec ts[32];
    size_t n = ft_model_config_tensors(&c, ts, 32);
    CHECK_EQ_INT(n, 21);
    CHECK_STR_EQ(ts[0].name, "model.embed_tokens.weight");
    CHECK_EQ_INT(ts[0].shape[0], 100);
    CHECK_STR_EQ(ts[1].name, "model.layers.0.input_layernorm.weight");
    CHECK_EQ_INT(ts[1].ndim, 1);
    CHECK_STR_EQ(ts[2].name, "model.layers.0.self_attn.q_proj.weight");
    CHECK_EQ_INT(ts[2].shape[0], 64);
    CHECK_EQ_INT(ts[2].shape[1], 32);
    CHECK_STR_EQ(ts[3].name, "model.layers.0.self_attn.k_proj.weight");
    CHECK_EQ_INT(ts[3].shape[0], 32);
    CHECK_STR_EQ(ts[5].name, "model.layers.0.self_attn.o_proj.weight");
    CHECK_EQ_INT(ts[5].shape[0], 32);
    CHECK_EQ_INT(ts[5].shape[1], 64);
    CHECK_STR_EQ(ts[9].name, "model.layers.0.mlp.down_proj.weight");
    CHECK_EQ_INT(ts[9].shape[0], 32);
    CHECK_EQ_INT(ts[9].shape[1], 48);
    CHECK_STR_EQ(ts[10].name, "model.layers.1.input_layernorm.weight");
    CHECK_STR_EQ(ts[19].name, "model.norm.weight");
    CHECK_STR_EQ(ts[20].name, "lm_head.weight");
    /* A short array: the count is still the full one, nothing past cap is written. */
    CHECK_EQ_INT(ft_model_config_tensors(&c, ts, 3), 21);
    c.num_attention_heads = 3;
    CHECK_EQ_INT(ft_model_config_validate(&c, &err), FT_ERR_INVALID);
}

/* The message shape of a bad value in config.json: the file once, as the location, then what is
 * wrong (the JSON getters' context used to repeat the path inside the message). */
TEST(config_bad_value_message_shape) {
    ft_model_config c;
    ft_err err;
    ft_err_clear(&err);
    const char *j = "{\"model_type\": \"llama\", \"hidden_size\": \"big\"}";
    CHECK(ft_model_config_load_buf("m/config.json", j, strlen(j), &c, &err) == FT_ERR_INVALID);
    char m[2048];
    ft_err_format(&err, m, sizeof m);
    CHECK_STR_EQ(m, "m/config.json: \"hidden_size\" must be an integer");
    const char *r = "{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": \"x\"}}";
    ft_err_clear(&err);
    CHECK(ft_model_config_load_buf("m/config.json", r, strlen(r), &c, &err) == FT_ERR_INVALID);
    ft_err_format(&err, m, sizeof m);
    CHECK_STR_EQ(m, "m/config.json: rope_scaling: \"factor\" must be a number");
}
