/* tests/model: DBRX (DbrxForCausalLM) beyond the reference goldens: its config.json read into the
 * engine's fields and written back, the refusals, finite differences through LayerNorm without
 * bias, the clamped QKV and the p-norm router (r = 1, 2 and null), the load-balancing loss over
 * twice-softmaxed router probabilities recomputed here from the routing the workspace keeps, its
 * exactness under micro-batching, checkpointing, KV-cache decoding, and the save/load round trip
 * in DBRX's own names. */
#include <stdlib.h>

#include "ftune/json.h"
#include "ftune/model.h"
#include "ftune/safetensors.h"
#include "model/helpers.h"
#include "test.h"

/* A small DBRX: 2 layers, d_model 16, 4 heads of 4 (2 KV heads), 5 experts of width 12, top-3,
 * Wqkv clamped at 0.8 (the random init puts about half the q|k|v values beyond it). */
static const char dbrx_json[] =
    "{\"architectures\": [\"DbrxForCausalLM\"], \"model_type\": \"dbrx\", \"d_model\": 16, \"n_heads\": 4, "
    "\"n_layers\": 2, \"max_seq_len\": 256, \"vocab_size\": 40, \"initializer_range\": 0.3, "
    "\"output_router_logits\": true, \"resid_pdrop\": 0.0, \"emb_pdrop\": 0.0, \"tie_word_embeddings\": false, "
    "\"attn_config\": {\"clip_qkv\": 0.8, \"kv_n_heads\": 2, \"rope_theta\": 500000, \"attn_pdrop\": 0.0}, "
    "\"ffn_config\": {\"ffn_hidden_size\": 12, \"moe_num_experts\": 5, \"moe_top_k\": 3, \"moe_jitter_eps\": null, "
    "\"moe_loss_weight\": 0.1, \"moe_normalize_expert_weights\": 1, \"ffn_act_fn\": {\"name\": \"silu\"}}}";

static ft_model_config dbrx_config(void) {
    ft_model_config c;
    ft_err err;
    FT_ASSERT(ft_model_config_load_buf("dbrx.json", dbrx_json, strlen(dbrx_json), &c, &err) == FT_OK);
    return c;
}

TEST(dbrx_config_parse_save_and_refusals) {
    ft_model_config c = dbrx_config(), c2;
    ft_err err;
    CHECK(ft_model_config_is_dbrx(&c));
    CHECK_EQ_INT(c.hidden_size, 16);
    CHECK_EQ_INT(c.num_attention_heads, 4);
    CHECK_EQ_INT(c.head_dim, 4);
    CHECK_EQ_INT(c.num_key_value_heads, 2);
    CHECK_EQ_INT(c.num_hidden_layers, 2);
    CHECK_EQ_INT(c.max_position_embeddings, 256);
    CHECK_EQ_INT(c.intermediate_size, 12);
    CHECK_EQ_INT(c.num_local_experts, 5);
    CHECK_EQ_INT(c.num_experts_per_tok, 3);
    CHECK_NEAR(c.clip_qkv, 0.8, 0);
    CHECK_NEAR(c.rope_theta, 500000, 0);
    CHECK_NEAR(c.rms_norm_eps, 1e-5, 0); /* nn.LayerNorm's default */
    CHECK_NEAR(c.moe_normalize_expert_weights, 1, 0);
    CHECK_NEAR(ft_model_config_aux_coef(&c), 0.1, 0);
    CHECK(!c.tie_word_embeddings && c.bos_token_id == -1 && c.n_eos == 0);
    CHECK_EQ_INT(ft_model_config_tensors(&c, NULL, 0), 3 + 8 * 2);
    ft_tensor_spec sp[19];
    ft_model_config_tensors(&c, sp, 19);
    CHECK_STR_EQ(sp[0].name, "transformer.wte.weight");
    CHECK_STR_EQ(sp[2].name, "transformer.blocks.0.norm_attn_norm.attn.Wqkv.weight");
    CHECK(sp[2].shape[0] == 16 + 2 * 8 && sp[2].shape[1] == 16);
    CHECK_STR_EQ(sp[8].name, "transformer.blocks.0.ffn.experts.mlp.w2");
    CHECK(sp[8].shape[0] == 5 * 12 && sp[8].shape[1] == 16);
    CHECK_STR_EQ(sp[17].name, "transformer.norm_f.weight");
    CHECK_STR_EQ(sp[18].name, "lm_head.weight");
    /* the defaults of DbrxConfig when keys are left out */
    const char *bare = "{\"model_type\": \"dbrx\"}";
    REQUIRE_OK(ft_model_config_load_buf("bare.json", bare, strlen(bare), &c2, &err), &err);
    CHECK(c2.hidden_size == 2048 && c2.num_attention_heads == 16 && c2.num_hidden_layers == 24 &&
          c2.num_key_value_heads == 1 && c2.intermediate_size == 3584 && c2.num_local_experts == 4 &&
          c2.num_experts_per_tok == 1 && c2.clip_qkv == 0 && c2.router_jitter_noise == 0 &&
          c2.moe_normalize_expert_weights == 1.0 && !c2.output_router_logits);
    CHECK_NEAR(c2.router_aux_loss_coef, 0.01, 0);
    CHECK_NEAR(ft_model_config_aux_coef(&c2), 0, 0); /* no output_router_logits: no aux loss */

    /* written as DbrxConfig writes it, and read back the same */
    char path[600];
    snprintf(path, sizeof path, "%s/config.json", ft_test_tmpdir());
    REQUIRE_OK(ft_model_config_save(&c, path, &err), &err);
    char *text = NULL;
    size_t len = 0;
    REQUIRE_OK(ft_file_read_all(path, &text, &len, &err), &err);
    CHECK(strstr(text, "\"d_model\": 16") && strstr(text, "\"kv_n_heads\": 2") && strstr(text, "\"moe_top_k\": 3") &&
          strstr(text, "\"moe_jitter_eps\": null") && strstr(text, "\"model_type\": \"dbrx\""));
    CHECK(!strstr(text, "\"hidden_size\"") && !strstr(text, "num_local_experts"));
    ft_free(text);
    REQUIRE_OK(ft_model_config_load(path, &c2, &err), &err);
    CHECK(!memcmp(&c, &c2, sizeof c) || (c2.hidden_size == c.hidden_size && c2.clip_qkv == c.clip_qkv));
    CHECK(c2.num_local_experts == 5 && c2.num_experts_per_tok == 3 && c2.output_router_logits);
    CHECK_NEAR(c2.clip_qkv, 0.8, 0);
    CHECK_NEAR(c2.router_aux_loss_coef, 0.1, 0);
    CHECK_STR_EQ(c2.architecture, "DbrxForCausalLM");

    char bad[2048];
    test_replace(bad, sizeof bad, dbrx_json, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
    CHECK(ft_model_config_load_buf("tied.json", bad, strlen(bad), &c2, &err) == FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "tie_word_embeddings") != NULL);
    test_replace(bad, sizeof bad, dbrx_json, "\"name\": \"silu\"", "\"name\": \"gelu\"");
    CHECK(ft_model_config_load_buf("act.json", bad, strlen(bad), &c2, &err) == FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "ffn_act_fn") != NULL);
    test_replace(bad, sizeof bad, dbrx_json, "\"n_heads\": 4", "\"n_heads\": 3");
    CHECK(ft_model_config_load_buf("heads.json", bad, strlen(bad), &c2, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "d_model") != NULL);
    test_replace(bad, sizeof bad, dbrx_json, "\"moe_top_k\": 3", "\"moe_top_k\": 6");
    CHECK(ft_model_config_load_buf("topk.json", bad, strlen(bad), &c2, &err) == FT_ERR_INVALID);
    test_replace(bad, sizeof bad, dbrx_json, "\"clip_qkv\": 0.8", "\"clip_qkv\": -1");
    CHECK(ft_model_config_load_buf("clip.json", bad, strlen(bad), &c2, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "clip_qkv") != NULL);
    /* DBRX's own checkpoints set moe_jitter_eps 0.01: read (generation ignores it), refused for
     * training, naming the key to change */
    test_replace(bad, sizeof bad, dbrx_json, "\"moe_jitter_eps\": null", "\"moe_jitter_eps\": 0.01");
    REQUIRE_OK(ft_model_config_load_buf("jitter.json", bad, strlen(bad), &c2, &err), &err);
    CHECK_NEAR(c2.router_jitter_noise, 0.01, 0);
    CHECK_OK(ft_workspace_check_dtype(&c2, FT_DTYPE_FP32, false, &err), &err);
    CHECK(ft_workspace_check_dtype(&c2, FT_DTYPE_FP32, true, &err) == FT_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "moe_jitter_eps") && strstr(err.msg, "null"));
    /* null normalisation: the top-k weights are used as they are */
    test_replace(bad, sizeof bad, dbrx_json, "\"moe_normalize_expert_weights\": 1", "\"moe_normalize_expert_weights\": null");
    REQUIRE_OK(ft_model_config_load_buf("nonorm.json", bad, strlen(bad), &c2, &err), &err);
    CHECK_NEAR(c2.moe_normalize_expert_weights, 0, 0);
    /* clip_qkv is DBRX's alone */
    ft_model_config llama;
    ft_model_config_default(&llama);
    llama.clip_qkv = 8;
    CHECK(ft_model_config_validate(&llama, &err) == FT_ERR_UNSUPPORTED);
}

/* Central differences of every parameter tensor (8 sampled elements each) against the backward.
 * The clamp and the top-k are kinks: a sample whose two one-sided slopes disagree straddles one
 * and is skipped (counted; most samples must be smooth). */
static void fd_all(ft_model *m, ft_workspace *ws, const ft_batch *b, ft_rng *r, const char *label) {
    ft_err err;
    ft_model_zero_grad(m);
    double loss = 0;
    REQUIRE_OK(ft_model_forward_backward(m, ws, b, 1.0, &loss, NULL, &err), &err);
    const double l0 = test_total_loss(m, ws, b, 1.0);
    int kinks = 0, samples = 0;
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *t = ft_model_param(m, i);
        double gmax = 0, worst = 0;
        for (int64_t k = 0; k < t->numel; k++)
            gmax = fmax(gmax, fabs(t->grad[k]));
        const float h = 2e-3f;
        for (int s = 0; s < 8; s++) {
            int64_t k = (int64_t)ft_rng_below(r, (uint64_t)t->numel);
            float x0 = t->data[k];
            t->data[k] = x0 + h;
            double lp = test_total_loss(m, ws, b, 1.0);
            t->data[k] = x0 - h;
            double lm = test_total_loss(m, ws, b, 1.0);
            t->data[k] = x0;
            samples++;
            if (fabs((lp - l0) - (l0 - lm)) / h > 2e-2 * gmax + 2e-3) {
                kinks++;
                continue;
            }
            worst = fmax(worst, fabs((lp - lm) / (2.0 * h) - t->grad[k]));
        }
        CHECK(gmax > 0);
        if (!(worst <= 2e-2 * gmax + 1e-3))
            ft_test_fail_(__FILE__, __LINE__, "%s: %s: finite differences off by %g (max |grad| %g)", label, t->name,
                          worst, gmax);
    }
    if (!(kinks * 8 <= samples))
        ft_test_fail_(__FILE__, __LINE__, "%s: %d of %d samples straddled a kink", label, kinks, samples);
}

TEST(dbrx_finite_differences_layernorm_clip_and_p_norm_router) {
    const double ps[3] = {1.0, 2.0, 0.0}; /* the sum, the 2-norm, null (not normalised) */
    for (int v = 0; v < 3; v++) {
        ft_model_config c = dbrx_config();
        c.num_hidden_layers = 1;
        c.moe_normalize_expert_weights = ps[v];
        ft_model *m = NULL;
        ft_workspace *ws = NULL;
        ft_err err;
        REQUIRE_OK(test_model_new(&c, 5 + (uint64_t)v, true, 2, 12, 0, &m, &ws, &err), &err);
        int32_t ids[24], tgt[24], pos[24], sid[24];
        ft_rng r;
        ft_rng_seed(&r, 13);
        test_fill_batch(&r, ids, tgt, pos, sid, 2, 12, c.vocab_size, true);
        ft_batch b = {2, 12, ids, tgt, pos, sid};
        char label[32];
        snprintf(label, sizeof label, "router p-norm %g", ps[v]);
        fd_all(m, ws, &b, &r, label);
        /* the clamp is active: without it the loss differs */
        if (v == 0) {
            double with = test_total_loss(m, ws, &b, 1.0);
            ft_model_config c2 = c;
            c2.clip_qkv = 0;
            ft_model *m2 = NULL;
            ft_workspace *w2 = NULL;
            REQUIRE_OK(test_model_new(&c2, 5, false, 2, 12, 0, &m2, &w2, &err), &err);
            double without = test_total_loss(m2, w2, &b, 1.0);
            CHECK(fabs(with - without) > 1e-3 * fabs(with));
            ft_workspace_free(w2);
            ft_model_free(m2);
        }
        ft_workspace_free(ws);
        ft_model_free(m);
    }
}

/* The aux loss of transformers 4.40's DBRX, from the router probabilities the workspace keeps:
 * E * sum_e (count_e / M) * (sum of softmax(p)_e / M) over the counted tokens of both layers. */
TEST(dbrx_aux_loss_softmaxes_router_probabilities_again) {
    ft_model_config c = dbrx_config();
    ft_model *m = NULL;
    ft_workspace *ws = NULL;
    ft_err err;
    REQUIRE_OK(test_model_new(&c, 8, true, 2, 12, 0, &m, &ws, &err), &err);
    int32_t ids[24], tgt[24], pos[24], sid[24];
    ft_rng r;
    ft_rng_seed(&r, 4);
    test_fill_batch(&r, ids, tgt, pos, sid, 2, 12, c.vocab_size, true);
    ft_batch b = {2, 12, ids, tgt, pos, sid};
    REQUIRE_OK(ft_model_forward(m, ws, &b, NULL, NULL, NULL, &err), &err);
    const int64_t E = 5, K = 3;
    double count[5] = {0}, qsum[5] = {0}, psum[5] = {0}, M = 0;
    for (int64_t l = 0; l < 2; l++) {
        const int32_t *sel;
        const float *probs;
        REQUIRE_OK(ft_workspace_routing(ws, l, &sel, &probs, NULL, 0, &err), &err);
        for (int64_t t = 0; t < 24; t++) {
            if (sid[t] < 0)
                continue;
            M += 1;
            double z = 0;
            for (int64_t e = 0; e < E; e++)
                z += exp(probs[t * E + e]);
            for (int64_t e = 0; e < E; e++)
                qsum[e] += exp(probs[t * E + e]) / z, psum[e] += probs[t * E + e];
            for (int64_t k = 0; k < K; k++)
                count[sel[t * K + k]] += 1;
        }
    }
    double want = 0, mixtral_way = 0;
    for (int64_t e = 0; e < E; e++)
        want += (double)E * count[e] / M * qsum[e] / M, mixtral_way += (double)E * count[e] / M * psum[e] / M;
    CHECK_NEAR(ft_workspace_aux_loss(ws), want, 1e-6 * want);
    CHECK(fabs(want - mixtral_way) > 1e-3 * want); /* the two definitions are told apart */
    ft_workspace_free(ws);
    ft_model_free(m);
}

TEST(dbrx_micro_batches_and_checkpointing_equal_the_whole_batch) {
    ft_model_config c = dbrx_config();
    test_moe_micro_batches(&c, 21, true);
}

TEST(dbrx_decode_matches_full_forward) {
    ft_model_config c = dbrx_config();
    test_decode_matches_forward(&c);
}

TEST(dbrx_weights_round_trip_bit_exact_in_dbrx_names) {
    ft_model_config c = dbrx_config();
    ft_model_params p = ft_model_default_params();
    ft_model *m = NULL, *m2 = NULL;
    ft_err err;
    REQUIRE_OK(ft_model_new_random(&c, 17, &p, &m, &err), &err);
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/dbrx", ft_test_tmpdir());
    REQUIRE_OK(ft_mkdir_p(dir, &err), &err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    REQUIRE_OK(ft_model_config_save(&c, path, &err), &err);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    REQUIRE_OK(ft_model_save_weights(m, path, false, &err), &err);
    ft_st_reader *rd = NULL;
    REQUIRE_OK(ft_st_open(path, &rd, &err), &err);
    const ft_st_tensor *w2 = ft_st_find(rd, "transformer.blocks.1.ffn.experts.mlp.w2");
    CHECK(w2 && w2->ndim == 2 && w2->shape[0] == 60 && w2->shape[1] == 16);
    CHECK(ft_st_find(rd, "transformer.blocks.1.ffn.router.layer.weight") != NULL);
    CHECK(ft_st_find(rd, "model.embed_tokens.weight") == NULL);
    ft_st_close(rd);
    REQUIRE_OK(ft_model_load(dir, &p, &m2, &err), &err);
    CHECK(test_same_weights(m, m2));
    CHECK(ft_model_layer(m2, 1)->norm == FT_NORM_LAYER && ft_model_layer(m2, 1)->qkv_clip == 0.8f &&
          ft_model_layer(m2, 1)->experts_fused && ft_model_layer(m2, 1)->aux_of_probs &&
          ft_model_layer(m2, 1)->router_p == 1.0);
    ft_model_free(m2);
    /* a missing expert tensor is named */
    ft_st_writer *w = NULL;
    REQUIRE_OK(ft_st_writer_new(path, NULL, &w, &err), &err);
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *t = ft_model_param(m, i);
        if (strcmp(t->name, "transformer.blocks.0.ffn.experts.mlp.v1"))
            REQUIRE_OK(ft_st_writer_add(w, t->name, FT_ST_DTYPE_F32, t->ndim, t->shape, &err), &err);
    }
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *t = ft_model_param(m, i);
        if (strcmp(t->name, "transformer.blocks.0.ffn.experts.mlp.v1"))
            REQUIRE_OK(ft_st_writer_write_f32(w, t->name, t->data, t->numel, &err), &err);
    }
    REQUIRE_OK(ft_st_writer_finish(w, &err), &err);
    ft_st_writer_free(w);
    CHECK(ft_model_load(dir, &p, &m2, &err) != FT_OK);
    CHECK(m2 == NULL && strstr(err.msg, "transformer.blocks.0.ffn.experts.mlp.v1") != NULL);
    ft_model_free(m);
}

/* A DBRX-shaped random model (top-3 of 4 experts, active clamp) fine-tunes on a chat task with
 * `ftune create`, registers (in DBRX's names), records aux_loss and answers with `ftune generate`
 * (the inference engine). */
TEST(dbrx_create_register_generate) {
    test_chat_create_generate("dbrx", "DbrxForCausalLM",
                              "--arch dbrx --experts 4 --experts-per-tok 3 --vocab-size 259 --hidden-size 48 "
                              "--intermediate-size 64 --layers 2 --heads 4 --kv-heads 2 --clip-qkv 0.1 "
                              "--output-router-logits --std 0.05");
    char path[800];
    snprintf(path, sizeof path, "%s/home/registry/main/test/dbrx/1/model.safetensors", ft_test_tmpdir());
    ft_st_reader *r = NULL;
    ft_err err;
    REQUIRE_OK(ft_st_open(path, &r, &err), &err);
    CHECK(ft_st_find(r, "transformer.blocks.1.ffn.experts.mlp.v1") != NULL);
    CHECK(ft_st_find(r, "model.embed_tokens.weight") == NULL);
    ft_st_close(r);
}

/* `ftune debug forward` on the DBRX golden: loss and aux loss beside it (--json) equal the
 * reference's, and --router-out writes each layer's routing, equal to the golden's. */
TEST(dbrx_debug_forward_aux_and_routing) {
    ft_st_reader *got, *want;
    test_debug_forward_golden("reference/dbrx_top3_clip", "", &got, &want);
    REQUIRE(got && want);
    ft_err err;
    for (int l = 0; l < 2; l++) {
        char key[64];
        snprintf(key, sizeof key, "routing.%d", l);
        const ft_st_tensor *tr = ft_st_find(got, key), *tw = ft_st_find(want, key);
        REQUIRE(tr && tw && tr->numel == tw->numel && tr->numel == 32 * 3);
        float a[96], b[96];
        REQUIRE_OK(ft_st_read_f32(tr, a, 96, &err), &err);
        REQUIRE_OK(ft_st_read_f32(tw, b, 96, &err), &err);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    ft_st_close(got);
    ft_st_close(want);
}

/* `ftune models` lists DBRX base and instruct as DbrxForCausalLM, an architecture ftune loads. */
TEST(dbrx_models_lists_base_and_instruct) {
    char *out = NULL;
    int rc = ft_test_sh(&out, "%s models --json 2>&1", ft_test_ftune_bin());
    CHECK_EQ_INT(rc, 0);
    REQUIRE(out);
    json_t *j = NULL;
    ft_err err;
    REQUIRE_OK(ft_json_load_buf("models", out, strlen(out), &j, &err), &err);
    free(out);
    int found = 0;
    size_t i;
    json_t *m;
    json_array_foreach(j, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name && (!strcmp(name, "databricks/dbrx-base") || !strcmp(name, "databricks/dbrx-instruct"))) {
            found++;
            CHECK_STR_EQ(json_string_value(json_object_get(m, "architecture")), "DbrxForCausalLM");
            CHECK_EQ_INT(json_integer_value(json_object_get(m, "max_context_length")), 32768);
        }
    }
    CHECK_EQ_INT(found, 2);
    json_decref(j);
    /* and the architecture named there is one config.json can declare */
    ft_model_config c;
    const char *cfg = "{\"architectures\": [\"DbrxForCausalLM\"]}";
    CHECK_OK(ft_model_config_load_buf("cfg.json", cfg, strlen(cfg), &c, &err), &err);
}
