/* tests/model: ftune's model against the PyTorch reference (tests/reference/llama_ref.py,
 * float64), on the committed goldens in tests/fixtures/reference/ (or $FT_REFERENCE_DIR, which
 * tools/reference/model.sh points at freshly regenerated ones). Tolerances of issue #2 item 8:
 * loss relative error <= 1e-5; logits max abs error <= 1e-4 max|logit|; per parameter, max abs
 * gradient error <= 1e-4 max|grad|; 10-step loss trajectories (AdamW, Lion) <= 1e-4 relative. */
#include <stdlib.h>

#include "ftune/model.h"
#include "ftune/optim.h"
#include "ftune/safetensors.h"
#include "ftune/train.h"
#include "test.h"

static const char *ref_dir(const char *name, char *buf, size_t cap) {
    const char *env = getenv("FT_REFERENCE_DIR");
    if (env && *env)
        snprintf(buf, cap, "%s/%s", env, name);
    else
        snprintf(buf, cap, "%s", ft_test_fixture(name[0] ? name : "reference"));
    return buf;
}

static float *read_tensor(const ft_st_reader *r, const char *name, int64_t *n) {
    const ft_st_tensor *t = ft_st_find(r, name);
    if (!t)
        return NULL;
    float *x = ft_malloc((size_t)t->numel * sizeof(float));
    ft_err err;
    if (ft_st_read_f32(t, x, t->numel, &err) != FT_OK) {
        ft_free(x);
        return NULL;
    }
    *n = t->numel;
    return x;
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* Ten steps on the golden batch, as gen_goldens.py does them, through ft_train_step (the
 * trainer's step); returns the losses. */
static void trajectory(ft_model *m, ft_workspace *ws, const ft_batch *b, ft_optim_kind kind, double peak, double wd,
                       double clip, double *losses) {
    ft_err err;
    ft_optim_params op = ft_optim_default_params(kind);
    op.peak_lr = peak;
    op.weight_decay = wd;
    ft_optim *o = NULL;
    REQUIRE_OK(ft_optim_new(m, &op, &o, &err), &err);
    int64_t N = b->B * b->T, n = 0;
    for (int64_t i = 0; i < N; i++)
        n += b->targets[i] != -100;
    for (int k = 0; k < 10; k++) {
        ft_train_step_params sp = {.micro = b->B, .denom = (double)n, .lr = peak * (1.0 - k / 10.0), .max_norm = clip};
        ft_train_step_result sr;
        CHECK_OK(ft_train_step(m, ws, o, b, &sp, &sr, &err), &err);
        CHECK(sr.updated);
        losses[k] = sr.loss;
    }
    CHECK_EQ_INT(ft_optim_step_count(o), 10);
    ft_optim_free(o);
}

static void check_config(const char *name) {
    char sub[600], dir[700], path[800];
    snprintf(sub, sizeof sub, "reference/%s", name);
    ref_dir(getenv("FT_REFERENCE_DIR") ? name : sub, dir, sizeof dir);
    ft_err err;
    ft_batch_owned bo;
    snprintf(path, sizeof path, "%s/batch.json", dir);
    REQUIRE_OK(ft_model_batch_load(path, &bo, &err), &err);
    const ft_batch *b = &bo.b;
    ft_model_params mp = ft_model_default_params();
    mp.training = true;
    ft_model *m = NULL;
    REQUIRE_OK(ft_model_load(dir, &mp, &m, &err), &err);
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = b->B;
    wp.max_seq = b->T;
    wp.training = true;
    ft_workspace *ws = NULL, *wck = NULL;
    REQUIRE_OK(ft_workspace_new(m, &wp, &ws, &err), &err);
    wp.checkpointing = true;
    REQUIRE_OK(ft_workspace_new(m, &wp, &wck, &err), &err);
    ft_st_reader *r = NULL;
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    REQUIRE_OK(ft_st_open(path, &r, &err), &err);
    const int64_t V = ft_model_get_config(m)->vocab_size, N = b->B * b->T;

    /* forward: logits and loss */
    int64_t nl = 0, one = 0;
    float *want_logits = read_tensor(r, "logits", &nl);
    float *want_loss = read_tensor(r, "loss", &one);
    REQUIRE(want_logits && want_loss && nl == N * V);
    const char *lf64 = ft_st_metadata(r, "loss_f64");
    double wl = lf64 ? strtod(lf64, NULL) : want_loss[0];
    float *logits = ft_malloc((size_t)(N * V) * sizeof(float));
    double ls = 0;
    int64_t nt = 0;
    CHECK_OK(ft_model_forward(m, ws, b, logits, &ls, &nt, &err), &err);
    double logit_err = max_diff(logits, want_logits, N * V) / max_abs(want_logits, N * V);
    double loss_err = fabs(ls / (double)nt - wl) / fabs(wl);
    CHECK(logit_err <= 1e-4);
    CHECK(loss_err <= 1e-5);
    /* mixture of experts: every layer's routing exactly, the load-balancing loss at the loss's
     * tolerance (read after the training workspace's forward, which keeps every layer) */
    const ft_model_config mcv = *ft_model_get_config(m), *mc = &mcv; /* m is freed before the end */
    double aux_err = 0;
    if (mc->num_local_experts > 0) {
        double a0 = 0;
        CHECK_OK(ft_model_forward(m, ws, b, NULL, &a0, NULL, &err), &err);
        const char *af = ft_st_metadata(r, "aux_f64");
        REQUIRE(af);
        double want_aux = strtod(af, NULL), got_aux = ft_workspace_aux_loss(ws);
        aux_err = fabs(got_aux - want_aux) / fabs(want_aux);
        if (!(aux_err <= 1e-5))
            ft_test_fail_(__FILE__, __LINE__, "%s: aux loss %.9g, reference %.9g", name, got_aux, want_aux);
        const int64_t K = mc->num_experts_per_tok;
        for (int64_t l = 0; l < mc->num_hidden_layers; l++) {
            char key[32];
            snprintf(key, sizeof key, "routing.%lld", (long long)l);
            int64_t nr = 0;
            float *want = read_tensor(r, key, &nr);
            REQUIRE(want && nr == N * K);
            const int32_t *sel;
            const float *probs;
            REQUIRE_OK(ft_workspace_routing(ws, l, &sel, &probs, NULL, 0, &err), &err);
            int64_t differ = 0;
            for (int64_t i = 0; i < N * K; i++)
                differ += sel[i] != (int32_t)want[i];
            if (differ)
                ft_test_fail_(__FILE__, __LINE__, "%s: layer %lld routes %lld (token, slot) pairs differently", name,
                              (long long)l, (long long)differ);
            ft_free(want);
        }
    }
    /* the loss-only path (LM head on trainable rows) agrees */
    double ls2 = 0;
    CHECK_OK(ft_model_forward(m, ws, b, NULL, &ls2, NULL, &err), &err);
    CHECK_NEAR(ls2, ls, 1e-6 * fabs(ls));

    /* backward: every gradient of the mean loss */
    /* activation checkpointing first: its gradients must be bitwise those of the plain path */
    size_t n_par = ft_model_n_params(m), n_all = 0;
    for (size_t i = 0; i < n_par; i++)
        n_all += (size_t)ft_model_param(m, i)->numel;
    ft_model_zero_grad(m);
    double ls_ck = 0;
    CHECK_OK(ft_model_forward_backward(m, wck, b, (double)nt, &ls_ck, NULL, &err), &err);
    float *g_ck = ft_malloc(n_all * sizeof(float));
    REQUIRE(g_ck);
    memcpy(g_ck, ft_model_param(m, 0)->grad, n_all * sizeof(float));
    ft_model_zero_grad(m);
    CHECK_OK(ft_model_forward_backward(m, ws, b, (double)nt, &ls2, NULL, &err), &err);
    CHECK_NEAR(ls2 / nt, wl, 1e-5 * fabs(wl));
    CHECK(ls_ck == ls2);
    if (memcmp(g_ck, ft_model_param(m, 0)->grad, n_all * sizeof(float)) != 0)
        ft_test_fail_(__FILE__, __LINE__, "%s: checkpointed gradients differ from the plain path's", name);
    ft_free(g_ck);
    double grad_err = 0;
    char worst[128] = "";
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *p = ft_model_param(m, i);
        char gname[160];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        int64_t ng = 0;
        float *want = read_tensor(r, gname, &ng);
        if (!want || ng != p->numel) {
            ft_test_fail_(__FILE__, __LINE__, "%s: %s missing or mis-sized", name, gname);
            ft_free(want);
            continue;
        }
        double e = max_diff(p->grad, want, ng) / fmax(max_abs(want, ng), 1e-30);
        if (e > grad_err)
            grad_err = e, snprintf(worst, sizeof worst, "%s", p->name);
        if (!(e <= 1e-4))
            ft_test_fail_(__FILE__, __LINE__, "%s: gradient of %s off by %.3g relative", name, p->name, e);
        ft_free(want);
    }
    ft_workspace_free(wck);
    ft_workspace_free(ws);
    ft_model_free(m);

    /* trajectories, each from the saved weights */
    double traj_err[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        const char *key = k == 0 ? "traj_adamw" : "traj_lion";
        int64_t n10 = 0;
        float *want = read_tensor(r, key, &n10);
        REQUIRE(want && n10 == 10);
        const char *pl = ft_st_metadata(r, k == 0 ? "adamw_peak_lr" : "lion_peak_lr");
        const char *wd = ft_st_metadata(r, k == 0 ? "adamw_weight_decay" : "lion_weight_decay");
        const char *clip = ft_st_metadata(r, "grad_clip");
        REQUIRE(pl && wd && clip);
        REQUIRE_OK(ft_model_load(dir, &mp, &m, &err), &err);
        wp.checkpointing = false;
        REQUIRE_OK(ft_workspace_new(m, &wp, &ws, &err), &err);
        double got[10];
        trajectory(m, ws, b, k == 0 ? FT_OPTIM_ADAMW : FT_OPTIM_LION, strtod(pl, NULL), strtod(wd, NULL),
                   strtod(clip, NULL), got);
        for (int s = 0; s < 10; s++) {
            double e = fabs(got[s] - want[s]) / fabs(want[s]);
            traj_err[k] = fmax(traj_err[k], e);
            if (!(e <= 1e-4))
                ft_test_fail_(__FILE__, __LINE__, "%s: %s step %d: loss %.7f, reference %.7f", name, key, s, got[s],
                              want[s]);
        }
        CHECK(got[9] < got[0]); /* it learns */
        ft_workspace_free(ws);
        ft_model_free(m);
        ft_free(want);
    }
    printf("  reference %-18s loss %.2e  logits %.2e  grad %.2e (%s)  adamw %.2e  lion %.2e", name, loss_err,
           logit_err, grad_err, worst, traj_err[0], traj_err[1]);
    if (mc->num_local_experts > 0)
        printf("  aux %.2e", aux_err);
    printf("\n");
    ft_free(want_logits);
    ft_free(want_loss);
    ft_free(logits);
    ft_st_close(r);
    ft_model_batch_free(&bo);
}

TEST(model_reference_gqa_llama3_untied) { check_config("gqa_llama3_untied"); }
TEST(model_reference_mqa_tied_hd12) { check_config("mqa_tied_hd12"); }
TEST(model_reference_mha_untied) { check_config("mha_untied"); }
TEST(model_reference_mistral_window) { check_config("mistral_window"); }
TEST(model_reference_mixtral_gqa_window) { check_config("mixtral_gqa_window"); }
TEST(model_reference_mixtral_top3) { check_config("mixtral_top3"); }
TEST(model_reference_dbrx_top3_clip) { check_config("dbrx_top3_clip"); }
TEST(model_reference_dbrx_pnorm2) { check_config("dbrx_pnorm2"); }

/* ---------------------------------------------------------------- bf16 mixed precision
 * Against expected_bf16.safetensors (llama_ref.py's bf16 mode, the same roundings at the same
 * points, float64 between them). Issue #10 item 4's tolerances: loss 1e-3 relative; logits
 * 1e-2 x max|logit|; each gradient 2e-2 x its max and cosine similarity >= 0.999. The goldens'
 * metadata records that plain float64 results lie outside these, so the test tells bf16 from
 * fp32. Checkpointed bf16 gradients must equal the plain bf16 path's bit for bit. */
static double cosine(const float *a, const float *b, int64_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < n; i++)
        ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

static void check_config_bf16_on(const char *name, ft_gemm_route route) {
    ft_tensor_bf16_route_set(route);
    const char *rname = ft_tensor_gemm_route(FT_DTYPE_BF16);
    int64_t calls0 = 0, calls1 = 0;
    ft_tensor_gemm_bf16_stats(NULL, &calls0);
    char sub[600], dir[700], path[800];
    snprintf(sub, sizeof sub, "reference/%s", name);
    ref_dir(getenv("FT_REFERENCE_DIR") ? name : sub, dir, sizeof dir);
    ft_err err;
    ft_batch_owned bo;
    snprintf(path, sizeof path, "%s/batch.json", dir);
    REQUIRE_OK(ft_model_batch_load(path, &bo, &err), &err);
    const ft_batch *b = &bo.b;
    ft_model_params mp = ft_model_default_params();
    mp.training = true;
    ft_model *m = NULL;
    REQUIRE_OK(ft_model_load(dir, &mp, &m, &err), &err);
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = b->B;
    wp.max_seq = b->T;
    wp.training = true;
    wp.dtype = FT_DTYPE_BF16;
    ft_workspace *ws = NULL, *wck = NULL;
    REQUIRE_OK(ft_workspace_new(m, &wp, &ws, &err), &err);
    wp.checkpointing = true;
    REQUIRE_OK(ft_workspace_new(m, &wp, &wck, &err), &err);
    ft_st_reader *r = NULL;
    snprintf(path, sizeof path, "%s/expected_bf16.safetensors", dir);
    REQUIRE_OK(ft_st_open(path, &r, &err), &err);
    const int64_t V = ft_model_get_config(m)->vocab_size, N = b->B * b->T;
    int64_t nl = 0;
    float *want_logits = read_tensor(r, "logits", &nl);
    REQUIRE(want_logits && nl == N * V);
    const char *lf64 = ft_st_metadata(r, "loss_f64");
    REQUIRE(lf64);
    double wl = strtod(lf64, NULL);
    float *logits = ft_malloc((size_t)(N * V) * sizeof(float));
    double ls = 0, ls2 = 0, ls3 = 0;
    int64_t nt = 0;
    CHECK_OK(ft_model_forward(m, ws, b, logits, &ls, &nt, &err), &err);
    double logit_err = max_diff(logits, want_logits, N * V) / max_abs(want_logits, N * V);
    double loss_err = fabs(ls / (double)nt - wl) / fabs(wl);
    CHECK(logit_err <= 1e-2);
    CHECK(loss_err <= 1e-3);

    size_t n_all = 0;
    for (size_t i = 0; i < ft_model_n_params(m); i++)
        n_all += (size_t)ft_model_param(m, i)->numel;
    ft_model_zero_grad(m);
    CHECK_OK(ft_model_forward_backward(m, wck, b, (double)nt, &ls3, NULL, &err), &err);
    float *g_ck = ft_malloc(n_all * sizeof(float));
    REQUIRE(g_ck);
    memcpy(g_ck, ft_model_param(m, 0)->grad, n_all * sizeof(float));
    ft_model_zero_grad(m);
    CHECK_OK(ft_model_forward_backward(m, ws, b, (double)nt, &ls2, NULL, &err), &err);
    CHECK(ls2 == ls3);
    if (memcmp(g_ck, ft_model_param(m, 0)->grad, n_all * sizeof(float)) != 0)
        ft_test_fail_(__FILE__, __LINE__, "%s bf16: checkpointed gradients differ from the plain path's", name);
    ft_free(g_ck);
    CHECK_NEAR(ls2 / nt, wl, 1e-3 * fabs(wl));
    double grad_err = 0, worst_cos = 1;
    char worst[128] = "";
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *p = ft_model_param(m, i);
        char gname[160];
        snprintf(gname, sizeof gname, "grad.%s", p->name);
        int64_t ng = 0;
        float *want = read_tensor(r, gname, &ng);
        if (!want || ng != p->numel) {
            ft_test_fail_(__FILE__, __LINE__, "%s: %s missing or mis-sized", name, gname);
            ft_free(want);
            continue;
        }
        double e = max_diff(p->grad, want, ng) / fmax(max_abs(want, ng), 1e-30), c = cosine(p->grad, want, ng);
        if (e > grad_err)
            grad_err = e, snprintf(worst, sizeof worst, "%s", p->name);
        worst_cos = fmin(worst_cos, c);
        if (!(e <= 2e-2) || !(c >= 0.999))
            ft_test_fail_(__FILE__, __LINE__, "%s bf16: gradient of %s off by %.3g of its max, cosine %.6f", name,
                          p->name, e, c);
        ft_free(want);
    }
    printf("  bf16 reference %-13s %-11s loss %.2e  logits %.2e  grad %.2e (%s)  min cosine %.6f\n", name, rname,
           loss_err, logit_err, grad_err, worst, worst_cos);
    /* the oneDNN route really ran oneDNN (it falls back to sgemm only where oneDNN cannot) */
    ft_tensor_gemm_bf16_stats(NULL, &calls1);
    if (route == FT_GEMM_ONEDNN)
        CHECK(calls1 > calls0);
    else
        CHECK(calls1 == calls0);
    ft_free(logits);
    ft_free(want_logits);
    ft_st_close(r);
    ft_workspace_free(wck);
    ft_workspace_free(ws);
    ft_model_free(m);
    ft_model_batch_free(&bo);
}

/* Both bf16 GEMM routes against the same reference, whichever the process would choose. */
static void check_config_bf16(const char *name) {
    ft_gemm_route was = ft_tensor_bf16_route(NULL);
    check_config_bf16_on(name, FT_GEMM_SGEMM);
    check_config_bf16_on(name, FT_GEMM_ONEDNN);
    ft_tensor_bf16_route_set(was);
}

TEST(model_reference_bf16_gqa_llama3_untied) { check_config_bf16("gqa_llama3_untied"); }
TEST(model_reference_bf16_mqa_tied_hd12) { check_config_bf16("mqa_tied_hd12"); }
TEST(model_reference_bf16_mha_untied) { check_config_bf16("mha_untied"); }
TEST(model_reference_bf16_mistral_window) { check_config_bf16("mistral_window"); }
