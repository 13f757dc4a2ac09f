/* tests/train: ft_train_step, the one training step of the trainer, bench and debug: the same
 * update as its parts run by hand (zero, accumulate, clip, AdamW), micro-batching, the
 * gradient-reduction hook, and skipped updates on non-finite losses. */
#include <math.h>
#include <stdlib.h>

#include "ftune/train.h"
#include "test.h"
#include "tiny.h"

static ft_model_config step_config(void) {
    ft_model_config c;
    ft_model_config_default(&c);
    c.vocab_size = 30, c.hidden_size = 16, c.intermediate_size = 24, c.num_hidden_layers = 2;
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 4, c.max_position_embeddings = 32;
    c.initializer_range = 0.2;
    return c;
}

static ft_status make(uint64_t seed, int64_t B, int64_t T, bool ckpt, ft_model **m, ft_workspace **ws, ft_optim **o,
                      ft_err *err) {
    ft_model_config c = step_config();
    ft_model_params p = ft_model_default_params();
    p.training = true;
    FT_TRY(ft_model_new_random(&c, seed, &p, m, err));
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = B, wp.max_seq = T, wp.training = true, wp.checkpointing = ckpt;
    FT_TRY(ft_workspace_new(*m, &wp, ws, err));
    ft_optim_params op = ft_optim_default_params(FT_OPTIM_ADAMW);
    op.peak_lr = 1e-2;
    op.weight_decay = 0.1;
    return ft_optim_new(*m, &op, o, err);
}

static bool same_weights(ft_model *a, ft_model *b) {
    for (size_t i = 0; i < ft_model_n_params(a); i++)
        if (memcmp(ft_model_param(a, i)->data, ft_model_param(b, i)->data,
                   (size_t)ft_model_param(a, i)->numel * sizeof(float)))
            return false;
    return true;
}

typedef struct hook_ctx {
    int calls;
    double scale;
} hook_ctx;

/* A stand-in for a data-parallel reduction: scales the gradients as an average over ranks would. */
static ft_status hook(void *ctx, ft_model *m, double *loss_sum, int64_t *n, ft_err *err) {
    (void)err;
    hook_ctx *h = ctx;
    h->calls++;
    (void)loss_sum, (void)n;
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *p = ft_model_param(m, i);
        for (int64_t k = 0; k < p->numel; k++)
            p->grad[k] *= (float)h->scale;
    }
    return FT_OK;
}

TEST(train_step_equals_its_parts) {
    enum { B = 4, T = 12 };
    ft_model *a = NULL, *b = NULL;
    ft_workspace *wa = NULL, *wb = NULL;
    ft_optim *oa = NULL, *ob = NULL;
    ft_err err;
    REQUIRE_OK(make(3, B, T, false, &a, &wa, &oa, &err), &err);
    REQUIRE_OK(make(3, 2, T, true, &b, &wb, &ob, &err), &err); /* micro 2, checkpointed */
    int32_t ids[B * T], tgt[B * T];
    int64_t n = 0;
    for (int i = 0; i < B * T; i++) {
        ids[i] = (i * 7 + 3) % 30;
        tgt[i] = i % 5 == 0 ? -100 : (i * 11 + 1) % 30;
        n += tgt[i] != -100;
    }
    ft_batch bt = {B, T, ids, tgt, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        /* by hand, the whole batch at once */
        double ls = 0;
        ft_model_zero_grad(a);
        REQUIRE_OK(ft_model_forward_backward(a, wa, &bt, (double)n, &ls, NULL, &err), &err);
        double norm = ft_optim_clip_grad_norm(a, 0.5);
        REQUIRE_OK(ft_optim_step(oa, 1e-2, &err), &err);
        /* the step: two micro-batches of 2 rows (denom 0: counted from the batch) */
        ft_train_step_params sp = {.micro = 2, .lr = 1e-2, .max_norm = 0.5};
        ft_train_step_result r;
        REQUIRE_OK(ft_train_step(b, wb, ob, &bt, &sp, &r, &err), &err);
        CHECK(r.updated);
        CHECK_EQ_INT(r.n_trainable, n);
        CHECK_NEAR(r.loss, ls / (double)n, 1e-6 * ls / (double)n);
        CHECK_NEAR(r.grad_norm, norm, 1e-5 * norm);
    }
    /* micro-batching changes the order of float sums, so close, not bitwise */
    double worst = 0, mx = 0;
    for (size_t i = 0; i < ft_model_n_params(a); i++)
        for (int64_t k = 0; k < ft_model_param(a, i)->numel; k++) {
            worst = fmax(worst, fabs(ft_model_param(a, i)->data[k] - ft_model_param(b, i)->data[k]));
            mx = fmax(mx, fabs(ft_model_param(a, i)->data[k]));
        }
    CHECK(worst <= 1e-5 * mx);
    ft_optim_free(oa), ft_optim_free(ob);
    ft_workspace_free(wa), ft_workspace_free(wb);
    ft_model_free(a), ft_model_free(b);
}

TEST(train_step_hook_and_skips) {
    enum { B = 2, T = 8 };
    ft_model *a = NULL, *b = NULL;
    ft_workspace *wa = NULL, *wb = NULL;
    ft_optim *oa = NULL, *ob = NULL;
    ft_err err;
    REQUIRE_OK(make(4, B, T, false, &a, &wa, &oa, &err), &err);
    REQUIRE_OK(make(4, B, T, false, &b, &wb, &ob, &err), &err);
    int32_t ids[B * T], tgt[B * T], none[B * T];
    for (int i = 0; i < B * T; i++)
        ids[i] = (i * 5 + 2) % 30, tgt[i] = (i * 3 + 1) % 30, none[i] = -100;
    ft_batch bt = {B, T, ids, tgt, NULL, NULL};
    /* a hook that zeroes the gradients: the step runs it (AdamW with zero gradients and no decay
     * would still move nothing, so decay shows the update happened) and reports its norm */
    hook_ctx h = {0, 0.0};
    ft_train_step_params sp = {.lr = 1e-2, .max_norm = 1.0, .reduce = {hook, &h}};
    ft_train_step_result r;
    REQUIRE_OK(ft_train_step(a, wa, oa, &bt, &sp, &r, &err), &err);
    CHECK_EQ_INT(h.calls, 1);
    CHECK(r.updated);
    CHECK(r.grad_norm == 0.0);
    CHECK(!same_weights(a, b)); /* weight decay applied */
    /* nothing trainable: no update, no error, the hook not called */
    ft_batch empty = {B, T, ids, none, NULL, NULL};
    REQUIRE_OK(ft_train_step(b, wb, ob, &empty, &sp, &r, &err), &err);
    CHECK(!r.updated);
    CHECK(isnan(r.loss));
    CHECK_EQ_INT(ft_optim_step_count(ob), 0);
    /* a non-finite loss: skipped, weights untouched */
    ft_param *norm = ft_model_find_param(b, "model.norm.weight");
    REQUIRE(norm);
    float keep = norm->data[0];
    norm->data[0] = NAN;
    ft_train_step_params plain = {.lr = 1e-2, .max_norm = 1.0};
    REQUIRE_OK(ft_train_step(b, wb, ob, &bt, &plain, &r, &err), &err);
    CHECK(!r.updated);
    CHECK(!isfinite(r.loss) || !isfinite(r.grad_norm));
    CHECK_EQ_INT(ft_optim_step_count(ob), 0);
    norm->data[0] = keep;
    ft_optim_free(oa), ft_optim_free(ob);
    ft_workspace_free(wa), ft_workspace_free(wb);
    ft_model_free(a), ft_model_free(b);
}

static ft_status keep_init_message(void *user, ft_train_event type, ft_log_level level, const char *message) {
    (void)level;
    if (type == FT_EVENT_MODEL_INITIALIZED)
        snprintf(user, 1024, "%s", message);
    return FT_OK;
}

/* The test-sized version of a 1B fine-tune's path through the trainer (create runs the same):
 * activation checkpointing gives bitwise the losses of the plain run; bf16 mixed precision with
 * checkpointing learns, stays close to fp32, and the run says what it used. */
TEST(train_run_checkpointing_and_bf16) {
    const char *tmp = ft_test_tmpdir();
    ft_err err;
    char model[1024], data[1024], msg[1024] = "";
    REQUIRE_OK(tiny_setup(tmp, 5, 1, model, data, sizeof model, &err), &err);
    const char *names[3] = {"plain", "ckpt", "bf16"};
    double loss[3][16];
    for (int k = 0; k < 3; k++) {
        ft_train_config c = tiny_config(model, data, tmp, names[k]);
        REQUIRE_OK(ft_train_config_set(&c, "training_duration", "10ba", &err), &err);
        REQUIRE_OK(ft_train_config_set(&c, "activation_checkpointing", k == 0 ? "off" : "on", &err), &err);
        if (k == 2)
            REQUIRE_OK(ft_train_config_set(&c, "dtype", "bf16", &err), &err);
        ft_train_sink sink = {.user = msg, .on_event = keep_init_message};
        ft_train_result res;
        REQUIRE_OK(ft_train_run(&c, &sink, &res, &err), &err);
        CHECK_EQ_INT(res.outcome, FT_TRAIN_COMPLETED);
        CHECK_EQ_INT(tiny_read_losses(res.run_dir, loss[k], 16), 10);
        char want[128];
        snprintf(want, sizeof want, "dtype %s (GEMM route %s", k == 2 ? "bf16" : "fp32",
                 ft_tensor_gemm_route(k == 2 ? FT_DTYPE_BF16 : FT_DTYPE_FP32));
        const char *want2 = k == 0 ? "), activation checkpointing off" : "), activation checkpointing on";
        if (!strstr(msg, want) || !strstr(msg, want2))
            ft_test_fail_(__FILE__, __LINE__, "%s: \"%s\" lacks \"%s\" or \"%s\"", names[k], msg, want, want2);
        ft_train_config_deinit(&c);
    }
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        if (loss[1][i] != loss[0][i])
            ft_test_fail_(__FILE__, __LINE__, "step %d: checkpointed loss %.17g vs %.17g", i + 1, loss[1][i],
                          loss[0][i]);
        worst = fmax(worst, fabs(loss[2][i] - loss[0][i]) / loss[0][i]);
    }
    printf("    bf16 vs fp32 losses over 10 steps: largest relative difference %.2g; %.3f -> %.3f\n", worst,
           loss[2][0], loss[2][9]);
    CHECK(worst > 0);     /* bf16 really rounds */
    CHECK(worst < 2e-2);  /* and stays close */
    CHECK(loss[2][9] < loss[2][0] - 0.5); /* it learns */
}
