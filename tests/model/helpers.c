/* tests/model/helpers.c: the model tests' shared setup (helpers.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "model/helpers.h"
#include "test.h"

ft_status test_model_new(const ft_model_config *c, uint64_t seed, bool training, int64_t B, int64_t T, int threads,
                         ft_model **m, ft_workspace **ws, ft_err *err) {
    ft_model_params p = ft_model_default_params();
    p.training = training;
    FT_TRY(ft_model_new_random(c, seed, &p, m, err));
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = B;
    wp.max_seq = T;
    wp.training = training;
    wp.threads = threads;
    ft_status s = ft_workspace_new(*m, &wp, ws, err);
    if (s != FT_OK) {
        ft_model_free(*m);
        *m = NULL;
    }
    return s;
}

void test_fill_batch(ft_rng *r, int32_t *ids, int32_t *tgt, int32_t *pos, int32_t *sid, int64_t B, int64_t T,
                     int64_t V, bool pad) {
    for (int64_t b = 0; b < B; b++) {
        int64_t cut = T / 2 - 1, first_pad = pad ? T - 3 : T;
        for (int64_t t = 0; t < T; t++) {
            int64_t n = b * T + t;
            ids[n] = (int32_t)ft_rng_below(r, (uint64_t)V);
            sid[n] = t >= first_pad ? -1 : t < cut ? 0 : 1;
            pos[n] = (int32_t)(t >= first_pad ? 0 : t < cut ? t : t - cut);
            tgt[n] = (t % 5 == 0 || t == cut - 1 || (pad && t >= first_pad - 1)) ? -100
                                                                                : (int32_t)ft_rng_below(r, (uint64_t)V);
        }
    }
}

size_t test_n_params(ft_model *m) {
    size_t n = 0;
    for (size_t i = 0; i < ft_model_n_params(m); i++)
        n += (size_t)ft_model_param(m, i)->numel;
    return n;
}

bool test_same_weights(ft_model *a, ft_model *b) {
    if (ft_model_n_params(a) != ft_model_n_params(b))
        return false;
    for (size_t i = 0; i < ft_model_n_params(a); i++) {
        ft_param *pa = ft_model_param(a, i), *pb = ft_model_param(b, i);
        if (strcmp(pa->name, pb->name) || pa->numel != pb->numel || pa->shape[0] != pb->shape[0] ||
            pa->shape[1] != pb->shape[1] || memcmp(pa->data, pb->data, (size_t)pa->numel * sizeof(float)))
            return false;
    }
    return true;
}

double test_decode_vs_forward(ft_model *m, ft_workspace *ws, int64_t T, int64_t prefill, uint64_t seed) {
    const int64_t V = ft_model_get_config(m)->vocab_size;
    int32_t *ids = ft_malloc((size_t)T * sizeof *ids);
    float *full = ft_malloc((size_t)(T * V) * sizeof(float)), *logits = ft_malloc((size_t)V * sizeof(float));
    ft_kv_cache *kv = NULL;
    double worst = NAN;
    ft_err err;
    ft_rng r;
    ft_rng_seed(&r, seed);
    if (!ids || !full || !logits)
        goto done;
    for (int64_t i = 0; i < T; i++)
        ids[i] = (int32_t)ft_rng_below(&r, (uint64_t)V);
    ft_batch b = {1, T, ids, NULL, NULL, NULL};
    if (ft_model_forward(m, ws, &b, full, NULL, NULL, &err) != FT_OK || ft_kv_cache_new(m, T, &kv, &err) != FT_OK ||
        ft_model_decode(m, kv, ids, prefill, logits, &err) != FT_OK)
        goto done;
    worst = 0;
    for (int64_t v = 0; v < V; v++)
        worst = fmax(worst, fabs(logits[v] - full[(prefill - 1) * V + v]));
    for (int64_t t = prefill; t < T; t++) {
        if (ft_model_decode(m, kv, ids + t, 1, logits, &err) != FT_OK) {
            worst = NAN;
            goto done;
        }
        for (int64_t v = 0; v < V; v++)
            worst = fmax(worst, fabs(logits[v] - full[t * V + v]));
    }
done:
    ft_kv_cache_free(kv);
    ft_free(ids);
    ft_free(full);
    ft_free(logits);
    return worst;
}

void test_chat_create_generate(const char *name, const char *arch, const char *init_args) {
    const char *tmp = ft_test_tmpdir(), *bin = ft_test_ftune_bin();
    char model[700], data[700], home[700];
    snprintf(model, sizeof model, "%s/%s", tmp, name);
    snprintf(data, sizeof data, "%s/chat.jsonl", tmp);
    snprintf(home, sizeof home, "%s/home", tmp);
    static const char *const qa[][2] = {
        {"color of the sky?", "blue"}, {"2+2=", "4"}, {"capital of France?", "Paris"}, {"opposite of hot?", "cold"}};
    ft_buf b = {0};
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 4; i++)
            ft_buf_appendf(&b,
                           "{\"messages\": [{\"role\": \"user\", \"content\": \"%s\"}, {\"role\": \"assistant\", "
                           "\"content\": \"%s\"}]}\n",
                           qa[i][0], qa[i][1]);
    ft_err err;
    REQUIRE_OK(ft_file_write_atomic(data, b.data, b.len, &err), &err);
    ft_buf_free(&b);
    char *out = NULL;
    int rc = ft_test_sh(&out, "%s init-model --out '%s' %s --tokenizer '%s' 2>&1", bin, model, init_args,
                     ft_test_fixture("train/tinytok"));
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "init-model: %s", out ? out : "");
    CHECK(out && strstr(out, arch));
    free(out);
    rc = ft_test_sh(&out,
                 "FTUNE_HOME='%s' USER=tester OMP_NUM_THREADS=1 %s create --model '%s' --train-data-path '%s' "
                 "--task-type CHAT_COMPLETION --learning-rate 3e-3 --global-batch-size 4 --micro-batch-size 2 "
                 "--context-length 64 --training-duration 60ba --seed 3 --register-to main.test.%s --name %s "
                 "--threads 1 --eval-max-new-tokens 4 2>&1",
                 home, bin, model, data, name, name);
    if (rc != 0)
        ft_test_fail_(__FILE__, __LINE__, "create: %s", out ? out : "");
    char want[200];
    snprintf(want, sizeof want, "registered as main.test.%s version 1", name);
    CHECK(out && strstr(out, want));
    free(out);
    rc = ft_test_sh(&out, "FTUNE_HOME='%s' USER=tester %s metrics %s --name aux_loss --json 2>&1", home, bin, name);
    CHECK_EQ_INT(rc, 0);
    CHECK(out && strstr(out, "aux_loss"));
    free(out);
    int right = 0;
    for (int i = 0; i < 4; i++) {
        rc = ft_test_sh(&out,
                     "FTUNE_HOME='%s' USER=tester OMP_NUM_THREADS=1 %s generate --model main.test.%s --prompt '%s' "
                     "--chat --temperature 0 --max-new-tokens 8 2>&1",
                     home, bin, name, qa[i][0]);
        CHECK_EQ_INT(rc, 0);
        if (out) {
            char *nl = strchr(out, '\n');
            if (nl)
                *nl = 0;
            right += !strcmp(out, qa[i][1]);
            printf("    %s chat: \"%s\" -> \"%s\"\n", name, qa[i][0], out);
        }
        free(out);
    }
    CHECK(right >= 3);
}

void test_moe_micro_batches(const ft_model_config *c, uint64_t seed, bool checkpointing) {
    ft_model *m = NULL;
    ft_workspace *w4 = NULL, *w1 = NULL, *wck = NULL;
    ft_err err;
    REQUIRE_OK(test_model_new(c, seed, true, 4, 12, 0, &m, &w4, &err), &err);
    ft_workspace_params wp = *ft_workspace_get_params(w4);
    wp.max_batch = 1;
    REQUIRE_OK(ft_workspace_new(m, &wp, &w1, &err), &err);
    int32_t ids[48], tgt[48], pos[48], sid[48];
    ft_rng r;
    ft_rng_seed(&r, 9);
    test_fill_batch(&r, ids, tgt, pos, sid, 4, 12, c->vocab_size, true);
    int64_t nt = 0;
    for (int i = 0; i < 48; i++)
        nt += tgt[i] != -100;
    ft_batch full = {4, 12, ids, tgt, pos, sid};
    size_t n = test_n_params(m);
    float *g_full = ft_malloc(n * sizeof(float));
    double *counts = ft_calloc((size_t)c->num_local_experts, sizeof *counts), tokens = 0;
    REQUIRE(g_full && counts);
    double l_full = 0;
    ft_model_zero_grad(m);
    REQUIRE_OK(ft_model_forward_backward(m, w4, &full, (double)nt, &l_full, NULL, &err), &err);
    double aux_full = ft_workspace_aux_loss(w4);
    CHECK(aux_full > 0);
    memcpy(g_full, ft_model_param(m, 0)->grad, n * sizeof(float));
    if (checkpointing) { /* recomputed layers (norm statistics, clamp masks, routing): bitwise the same */
        wp.max_batch = 4;
        wp.checkpointing = true;
        REQUIRE_OK(ft_workspace_new(m, &wp, &wck, &err), &err);
        double l_ck = 0;
        ft_model_zero_grad(m);
        REQUIRE_OK(ft_model_forward_backward(m, wck, &full, (double)nt, &l_ck, NULL, &err), &err);
        CHECK(l_ck == l_full);
        CHECK(memcmp(g_full, ft_model_param(m, 0)->grad, n * sizeof(float)) == 0);
        ft_workspace_free(wck);
    }

    /* row by row with the whole batch's routing counts: the same loss, aux and gradients */
    for (int64_t b = 0; b < 4; b++) {
        ft_batch row = {1, 12, ids + b * 12, tgt + b * 12, pos + b * 12, sid + b * 12};
        REQUIRE_OK(ft_model_router_counts(m, w1, &row, counts, &tokens, &err), &err);
    }
    CHECK_NEAR(tokens, 4.0 * 9 * (double)c->num_hidden_layers, 0); /* 9 counted tokens a row */
    REQUIRE_OK(ft_workspace_set_router_counts(w1, counts, tokens, &err), &err);
    double l_sum = 0, aux_sum = 0;
    ft_model_zero_grad(m);
    for (int64_t b = 0; b < 4; b++) {
        ft_batch row = {1, 12, ids + b * 12, tgt + b * 12, pos + b * 12, sid + b * 12};
        double l = 0;
        REQUIRE_OK(ft_model_forward_backward(m, w1, &row, (double)nt, &l, NULL, &err), &err);
        l_sum += l;
        aux_sum += ft_workspace_aux_loss(w1);
    }
    CHECK_NEAR(l_sum, l_full, 1e-5 * l_full);
    CHECK_NEAR(aux_sum, aux_full, 1e-6 * aux_full);
    const float *g = ft_model_param(m, 0)->grad;
    double worst = 0, gmax = 0;
    for (size_t k = 0; k < n; k++)
        worst = fmax(worst, fabs(g[k] - g_full[k])), gmax = fmax(gmax, fabs(g_full[k]));
    CHECK(gmax > 0);
    if (!(worst <= 1e-5 * gmax))
        ft_test_fail_(__FILE__, __LINE__, "micro-batches with global counts: gradients off by %g (max %g)", worst, gmax);

    /* each row's own counts (what a per-micro-batch aux loss would do) is a different loss: the
     * check above can tell */
    REQUIRE_OK(ft_workspace_set_router_counts(w1, NULL, 0, &err), &err);
    double aux_own = 0;
    for (int64_t b = 0; b < 4; b++) {
        ft_batch row = {1, 12, ids + b * 12, tgt + b * 12, pos + b * 12, sid + b * 12};
        REQUIRE_OK(ft_model_forward(m, w1, &row, NULL, NULL, NULL, &err), &err);
        aux_own += ft_workspace_aux_loss(w1) / 4;
    }
    CHECK(fabs(aux_own - aux_full) > 1e-4 * aux_full);
    ft_free(counts);
    ft_free(g_full);
    ft_workspace_free(w1);
    ft_workspace_free(w4);
    ft_model_free(m);
}

void test_debug_forward_golden(const char *fixture, const char *extra, ft_st_reader **got, ft_st_reader **want) {
    *got = *want = NULL;
    const char *dir = ft_test_fixture(fixture);
    char out_path[700];
    snprintf(out_path, sizeof out_path, "%s/router.safetensors", ft_test_tmpdir());
    char *out = NULL;
    int rc = ft_test_sh(&out, "%s debug forward --model '%s' --batch '%s/batch.json' %s --json --router-out '%s' 2>&1",
                     ft_test_ftune_bin(), dir, dir, extra, out_path);
    CHECK_EQ_INT(rc, 0);
    REQUIRE(out);
    ft_err err;
    json_t *j = NULL;
    ft_status s = ft_json_load_buf("debug forward output", out, strlen(out), &j, &err);
    free(out);
    REQUIRE_OK(s, &err);
    char path[800];
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    ft_st_reader *w = NULL, *g = NULL;
    s = ft_st_open(path, &w, &err);
    if (s != FT_OK)
        json_decref(j);
    REQUIRE_OK(s, &err);
    double aux = strtod(ft_st_metadata(w, "aux_f64"), NULL), loss = strtod(ft_st_metadata(w, "loss_f64"), NULL);
    CHECK_NEAR(json_real_value(json_object_get(j, "aux_loss")), aux, 1e-5 * aux);
    CHECK_NEAR(json_real_value(json_object_get(j, "loss")), loss, 1e-5 * loss);
    CHECK_NEAR(json_real_value(json_object_get(j, "aux_coef")), 0.05, 1e-12);
    json_decref(j);
    s = ft_st_open(out_path, &g, &err);
    if (s != FT_OK)
        ft_st_close(w);
    REQUIRE_OK(s, &err);
    *got = g;
    *want = w;
}

double test_total_loss(ft_model *m, ft_workspace *ws, const ft_batch *b, double denom) {
    double ls = 0;
    ft_err err;
    if (ft_model_forward(m, ws, b, NULL, &ls, NULL, &err) != FT_OK)
        return NAN;
    return ls / denom + ft_model_config_aux_coef(ft_model_get_config(m)) * ft_workspace_aux_loss(ws);
}

void test_replace(char *out, size_t cap, const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    FT_ASSERT(at);
    snprintf(out, cap, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
}

void test_decode_matches_forward(const ft_model_config *c) {
    ft_model *m = NULL;
    ft_workspace *ws = NULL;
    ft_err err;
    REQUIRE_OK(test_model_new(c, 7, false, 1, 80, 0, &m, &ws, &err), &err);
    CHECK(test_decode_vs_forward(m, ws, 80, 70, 3) < 1e-4);
    ft_workspace_free(ws);
    ft_model_free(m);
}
