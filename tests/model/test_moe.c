/* tests/model: the sparse mixture of experts (Mixtral) beyond the reference goldens: the
 * load-balancing loss is exact under micro-batching (and only with the whole batch's routing
 * counts), finite differences of the router's and experts' gradients, KV-cache decoding equals the
 * full forward, the three weight layouts (per-expert names, transformers v5's fused experts, and
 * what ftune saves) load bit for bit, and the config's refusals. */
#include <stdlib.h>

#include "ftune/json.h"
#include "ftune/model.h"
#include "ftune/safetensors.h"
#include "model/helpers.h"
#include "test.h"

static ft_model_config moe_config(void) {
    ft_model_config c;
    ft_model_config_default(&c);
    snprintf(c.architecture, sizeof c.architecture, "MixtralForCausalLM");
    snprintf(c.model_type, sizeof c.model_type, "mixtral");
    c.vocab_size = 40;
    c.hidden_size = 16;
    c.intermediate_size = 12;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 4;
    c.rms_norm_eps = 1e-5;
    c.initializer_range = 0.3;
    c.max_position_embeddings = 256;
    c.sliding_window = 7;
    c.num_local_experts = 5;
    c.num_experts_per_tok = 2;
    c.router_aux_loss_coef = 0.1;
    c.output_router_logits = true;
    return c;
}

TEST(moe_micro_batches_equal_the_whole_batch) {
    ft_model_config c = moe_config();
    test_moe_micro_batches(&c, 21, false);
}

TEST(moe_finite_differences_of_router_and_experts) {
    ft_model_config c = moe_config();
    c.num_hidden_layers = 1;
    c.num_experts_per_tok = 3; /* top-3 of 5 (the golden has top-2) */
    ft_model *m = NULL;
    ft_workspace *ws = NULL;
    ft_err err;
    REQUIRE_OK(test_model_new(&c, 5, true, 2, 12, 0, &m, &ws, &err), &err);
    int32_t ids[24], tgt[24], pos[24], sid[24];
    ft_rng r;
    ft_rng_seed(&r, 13);
    test_fill_batch(&r, ids, tgt, pos, sid, 2, 12, c.vocab_size, true);
    ft_batch b = {2, 12, ids, tgt, pos, sid};
    ft_model_zero_grad(m);
    double loss = 0;
    REQUIRE_OK(ft_model_forward_backward(m, ws, &b, 1.0, &loss, NULL, &err), &err);
    int checked = 0;
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *t = ft_model_param(m, i);
        if (!strstr(t->name, "block_sparse_moe"))
            continue;
        double gmax = 0, worst = 0;
        for (int64_t k = 0; k < t->numel; k++)
            gmax = fmax(gmax, fabs(t->grad[k]));
        for (int s = 0; s < 8; s++) {
            int64_t k = (int64_t)ft_rng_below(&r, (uint64_t)t->numel);
            float x0 = t->data[k];
            t->data[k] = x0 + 1e-2f;
            double lp = test_total_loss(m, ws, &b, 1.0);
            t->data[k] = x0 - 1e-2f;
            double lm = test_total_loss(m, ws, &b, 1.0);
            t->data[k] = x0;
            worst = fmax(worst, fabs((lp - lm) / 2e-2 - t->grad[k]));
        }
        checked++;
        if (!(worst <= 2e-2 * gmax + 1e-3))
            ft_test_fail_(__FILE__, __LINE__, "%s: finite differences off by %g (max |grad| %g)", t->name, worst, gmax);
    }
    CHECK_EQ_INT(checked, 1 + 3 * c.num_local_experts);
    ft_workspace_free(ws);
    ft_model_free(m);
}

TEST(moe_decode_matches_full_forward) {
    ft_model_config c = moe_config();
    test_decode_matches_forward(&c);
}

TEST(moe_weight_layouts_round_trip_bit_exact) {
    ft_model_config c = moe_config();
    ft_model_params p = ft_model_default_params();
    ft_model *m = NULL, *m2 = NULL, *m3 = NULL;
    ft_err err;
    REQUIRE_OK(ft_model_new_random(&c, 17, &p, &m, &err), &err);
    const char *dir = ft_test_tmpdir();
    char d1[600], d2[600], path[700];
    snprintf(d1, sizeof d1, "%s/per_expert", dir);
    snprintf(d2, sizeof d2, "%s/fused", dir);
    REQUIRE_OK(ft_mkdir_p(d1, &err), &err);
    REQUIRE_OK(ft_mkdir_p(d2, &err), &err);
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/config.json", k ? d2 : d1);
        REQUIRE_OK(ft_model_config_save(&c, path, &err), &err);
    }
    /* per-expert names, as ftune saves */
    snprintf(path, sizeof path, "%s/model.safetensors", d1);
    REQUIRE_OK(ft_model_save_weights(m, path, false, &err), &err);
    REQUIRE_OK(ft_model_load(d1, &p, &m2, &err), &err);
    CHECK(test_same_weights(m, m2));
    CHECK(ft_model_find_param(m2, "model.layers.1.block_sparse_moe.experts.4.w2.weight") != NULL);
    CHECK(ft_model_find_param(m2, "model.layers.1.mlp.down_proj.weight") == NULL);

    /* transformers v5's fused experts: mlp.gate.weight (E, C), mlp.experts.gate_up_proj
     * (E, 2F, C) = [w1_e; w3_e], mlp.experts.down_proj (E, C, F) = w2_e */
    const int64_t E = c.num_local_experts, F = c.intermediate_size, C = c.hidden_size;
    snprintf(path, sizeof path, "%s/model.safetensors", d2);
    ft_st_writer *w = NULL;
    REQUIRE_OK(ft_st_writer_new(path, NULL, &w, &err), &err);
    float *gu = ft_malloc((size_t)(E * 2 * F * C) * sizeof(float)), *dn = ft_malloc((size_t)(E * C * F) * sizeof(float));
    REQUIRE(gu && dn);
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *t = ft_model_param(m, i);
        if (!strstr(t->name, "block_sparse_moe"))
            REQUIRE_OK(ft_st_writer_add(w, t->name, FT_ST_DTYPE_F32, t->ndim, t->shape, &err), &err);
    }
    char name[128];
    for (int64_t l = 0; l < c.num_hidden_layers; l++) {
        int64_t rs[2] = {E, C}, gs[3] = {E, 2 * F, C}, ds[3] = {E, C, F};
        snprintf(name, sizeof name, "model.layers.%lld.mlp.gate.weight", (long long)l);
        REQUIRE_OK(ft_st_writer_add(w, name, FT_ST_DTYPE_F32, 2, rs, &err), &err);
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.gate_up_proj", (long long)l);
        REQUIRE_OK(ft_st_writer_add(w, name, FT_ST_DTYPE_F32, 3, gs, &err), &err);
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.down_proj", (long long)l);
        REQUIRE_OK(ft_st_writer_add(w, name, FT_ST_DTYPE_F32, 3, ds, &err), &err);
    }
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *t = ft_model_param(m, i);
        if (!strstr(t->name, "block_sparse_moe"))
            REQUIRE_OK(ft_st_writer_write_f32(w, t->name, t->data, t->numel, &err), &err);
    }
    for (int64_t l = 0; l < c.num_hidden_layers; l++) {
        char n1[128];
        snprintf(n1, sizeof n1, "model.layers.%lld.block_sparse_moe.gate.weight", (long long)l);
        ft_param *rt = ft_model_find_param(m, n1);
        REQUIRE(rt);
        for (int64_t e = 0; e < E; e++) {
            const char *ws_[3] = {"w1", "w3", "w2"};
            float *dst[3] = {gu + e * 2 * F * C, gu + e * 2 * F * C + F * C, dn + e * C * F};
            for (int k = 0; k < 3; k++) {
                snprintf(n1, sizeof n1, "model.layers.%lld.block_sparse_moe.experts.%lld.%s.weight", (long long)l,
                         (long long)e, ws_[k]);
                ft_param *pt = ft_model_find_param(m, n1);
                REQUIRE(pt);
                memcpy(dst[k], pt->data, (size_t)pt->numel * sizeof(float));
            }
        }
        snprintf(name, sizeof name, "model.layers.%lld.mlp.gate.weight", (long long)l);
        REQUIRE_OK(ft_st_writer_write_f32(w, name, rt->data, rt->numel, &err), &err);
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.gate_up_proj", (long long)l);
        REQUIRE_OK(ft_st_writer_write_f32(w, name, gu, E * 2 * F * C, &err), &err);
        snprintf(name, sizeof name, "model.layers.%lld.mlp.experts.down_proj", (long long)l);
        REQUIRE_OK(ft_st_writer_write_f32(w, name, dn, E * C * F, &err), &err);
    }
    REQUIRE_OK(ft_st_writer_finish(w, &err), &err);
    ft_st_writer_free(w);
    REQUIRE_OK(ft_model_load(d2, &p, &m3, &err), &err);
    CHECK(test_same_weights(m, m3));
    ft_model_free(m3);
    m3 = NULL;
    /* ... and saves in the per-expert names, loading back the same */
    snprintf(path, sizeof path, "%s/model.safetensors", d1);
    REQUIRE_OK(ft_model_load(d2, &p, &m3, &err), &err);
    REQUIRE_OK(ft_model_save_weights(m3, path, false, &err), &err);
    ft_model_free(m2);
    REQUIRE_OK(ft_model_load(d1, &p, &m2, &err), &err);
    CHECK(test_same_weights(m, m2));
    ft_free(gu);
    ft_free(dn);
    ft_model_free(m3);
    ft_model_free(m2);
    ft_model_free(m);
}

TEST(moe_config_parse_save_and_refusals) {
    ft_model_config c;
    ft_err err;
    const char *ok = "{\"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\", \"vocab_size\": 32, "
                     "\"hidden_size\": 16, \"intermediate_size\": 8, \"num_hidden_layers\": 1, "
                     "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"num_local_experts\": 3, "
                     "\"num_experts_per_tok\": 2, \"router_aux_loss_coef\": 0.02, \"output_router_logits\": true, "
                     "\"router_jitter_noise\": 0.0, \"sliding_window\": null}";
    REQUIRE_OK(ft_model_config_load_buf("ok.json", ok, strlen(ok), &c, &err), &err);
    CHECK_EQ_INT(c.num_local_experts, 3);
    CHECK_EQ_INT(c.num_experts_per_tok, 2);
    CHECK_NEAR(ft_model_config_aux_coef(&c), 0.02, 0);
    CHECK_NEAR(c.rope_theta, 1e6, 0); /* MixtralConfig's default */
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(ft_model_config_tensors(&c, NULL, 0), 2 + 7 + 3 * 3 + 1);
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", ft_test_tmpdir());
    REQUIRE_OK(ft_model_config_save(&c, path, &err), &err);
    ft_model_config c2;
    REQUIRE_OK(ft_model_config_load(path, &c2, &err), &err);
    CHECK(c2.num_local_experts == 3 && c2.num_experts_per_tok == 2 && c2.output_router_logits);
    CHECK_NEAR(c2.router_aux_loss_coef, 0.02, 0);
    CHECK_STR_EQ(c2.architecture, "MixtralForCausalLM");
    /* without output_router_logits transformers adds no aux loss */
    c2.output_router_logits = false;
    CHECK_NEAR(ft_model_config_aux_coef(&c2), 0, 0);

    char bad[1024];
    /* router jitter: read (generation is unaffected), refused for training */
    test_replace(bad, sizeof bad, ok, "\"router_jitter_noise\": 0.0", "\"router_jitter_noise\": 0.01");
    REQUIRE_OK(ft_model_config_load_buf("jitter.json", bad, strlen(bad), &c, &err), &err);
    CHECK_NEAR(c.router_jitter_noise, 0.01, 0);
    CHECK_OK(ft_workspace_check_dtype(&c, FT_DTYPE_FP32, false, &err), &err);
    CHECK(ft_workspace_check_dtype(&c, FT_DTYPE_FP32, true, &err) == FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "router_jitter_noise") && strstr(err.msg, "exact resume"));
    test_replace(bad, sizeof bad, ok, "\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 4");
    CHECK(ft_model_config_load_buf("topk.json", bad, strlen(bad), &c, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "num_experts_per_tok") != NULL);
    /* bf16 workspaces are refused for now, saying so */
    ft_model_config mc = moe_config();
    CHECK(ft_workspace_check_dtype(&mc, FT_DTYPE_BF16, false, &err) == FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "mixture-of-experts") != NULL);
}

/* ---------------------------------------------------------------- end to end through the binary
 * A Mixtral-shaped random model (init-model --arch mixtral) fine-tuned on a chat task with
 * `ftune create`, registered, and answering with `ftune generate`; the run records aux_loss
 * beside the loss. */
TEST(moe_mixtral_create_register_generate) {
    test_chat_create_generate("mixtral", "MixtralForCausalLM",
                              "--arch mixtral --experts 4 --experts-per-tok 2 --vocab-size 259 --hidden-size 48 "
                              "--intermediate-size 64 --layers 2 --heads 4 --kv-heads 2 --sliding-window 16 "
                              "--output-router-logits --std 0.05");
}

/* `ftune debug forward` on the Mixtral golden: the aux loss beside the loss (--json), --dtype auto
 * runs fp32 for MoE layers, and --router-out writes every layer's router logits (whose softmax is
 * the probabilities written beside them) and the golden's routing. */
TEST(moe_debug_forward_aux_and_router_out) {
    ft_st_reader *got, *want;
    test_debug_forward_golden("reference/mixtral_gqa_window", "--dtype auto", &got, &want);
    REQUIRE(got && want);
    ft_err err;
    for (int l = 0; l < 2; l++) {
        char k1[64], k2[64], k3[64];
        snprintf(k1, sizeof k1, "router_logits.%d", l);
        snprintf(k2, sizeof k2, "router_probs.%d", l);
        snprintf(k3, sizeof k3, "routing.%d", l);
        const ft_st_tensor *tl = ft_st_find(got, k1), *tp = ft_st_find(got, k2), *tr = ft_st_find(got, k3),
                           *tw = ft_st_find(want, k3);
        REQUIRE(tl && tp && tr && tw && tl->numel == 32 * 4 && tp->numel == 32 * 4 && tr->numel == 32 * 2 &&
                tw->numel == 32 * 2);
        float lg[128], pr[128], sel[64], ws_[64];
        REQUIRE_OK(ft_st_read_f32(tl, lg, 128, &err), &err);
        REQUIRE_OK(ft_st_read_f32(tp, pr, 128, &err), &err);
        REQUIRE_OK(ft_st_read_f32(tr, sel, 64, &err), &err);
        REQUIRE_OK(ft_st_read_f32(tw, ws_, 64, &err), &err);
        CHECK(memcmp(sel, ws_, sizeof sel) == 0);
        double worst = 0;
        for (int t = 0; t < 32; t++) {
            double mx = lg[t * 4], z = 0;
            for (int e = 1; e < 4; e++)
                mx = fmax(mx, lg[t * 4 + e]);
            for (int e = 0; e < 4; e++)
                z += exp(lg[t * 4 + e] - mx);
            for (int e = 0; e < 4; e++)
                worst = fmax(worst, fabs(exp(lg[t * 4 + e] - mx) / z - pr[t * 4 + e]));
        }
        CHECK(worst < 1e-6);
    }
    ft_st_close(got);
    ft_st_close(want);
}
