/* tests/train: DecoupledAdamW / DecoupledLionW against the formulas of SPEC §2 computed here in
 * double, clipping, and state save/restore giving identical continuations. (The 10-step
 * trajectories against PyTorch are in tests/model/test_reference.c.) */
#include "ftune/optim.h"
#include "test.h"

static ft_model *tiny(uint64_t seed) {
    ft_model_config c;
    ft_model_config_default(&c);
    c.vocab_size = 20, c.hidden_size = 8, c.intermediate_size = 12, c.num_hidden_layers = 1;
    c.num_attention_heads = 2, c.num_key_value_heads = 1, c.head_dim = 4, c.max_position_embeddings = 16;
    ft_model_params p = ft_model_default_params();
    p.training = true;
    ft_model *m = NULL;
    ft_err err;
    if (ft_model_new_random(&c, seed, &p, &m, &err) != FT_OK)
        return NULL;
    return m;
}

static void set_grads(ft_model *m, uint64_t seed) {
    ft_rng r;
    ft_rng_seed(&r, seed);
    for (size_t i = 0; i < ft_model_n_params(m); i++) {
        ft_param *p = ft_model_param(m, i);
        for (int64_t k = 0; k < p->numel; k++)
            p->grad[k] = (float)ft_rng_normal(&r) * 0.1f;
    }
}

TEST(optim_adamw_matches_formula) {
    ft_model *m = tiny(1);
    REQUIRE(m);
    ft_err err;
    ft_optim_params op = ft_optim_default_params(FT_OPTIM_ADAMW);
    op.peak_lr = 1e-2, op.weight_decay = 0.1;
    ft_optim *o = NULL;
    REQUIRE_OK(ft_optim_new(m, &op, &o, &err), &err);
    ft_param *p = ft_model_param(m, 1);
    double w = p->data[3], mm = 0, vv = 0;
    for (int t = 1; t <= 3; t++) {
        set_grads(m, (uint64_t)t);
        double g = p->grad[3], lr = 1e-2 * (t == 3 ? 0.5 : 1.0);
        REQUIRE_OK(ft_optim_step(o, lr, &err), &err);
        w *= 1 - lr / 1e-2 * 0.1;
        mm = 0.9 * mm + 0.1 * g;
        vv = 0.95 * vv + 0.05 * g * g;
        w -= lr / (1 - pow(0.9, t)) * mm / (sqrt(vv) / sqrt(1 - pow(0.95, t)) + 1e-8);
        CHECK_NEAR(p->data[3], w, 1e-6 * fabs(w) + 1e-7);
    }
    CHECK_EQ_INT(ft_optim_step_count(o), 3);
    CHECK_EQ_INT(ft_optim_n_state(o), 2 * ft_model_n_params(m) + 1);
    char name[200];
    snprintf(name, sizeof name, "%s.exp_avg_sq", p->name);
    ft_optim_state *s = ft_optim_find_state(o, name);
    REQUIRE(s);
    CHECK_NEAR(s->data[3], vv, 1e-6 * vv);
    CHECK(ft_optim_find_state(o, "step")->data[0] == 3.0f);
    CHECK(ft_optim_step(o, NAN, &err) == FT_ERR_INVALID);
    ft_optim_free(o);
    ft_model_free(m);
}

TEST(optim_lion_matches_formula) {
    ft_model *m = tiny(2);
    REQUIRE(m);
    ft_err err;
    ft_optim_params op = ft_optim_default_params(FT_OPTIM_LION);
    CHECK_NEAR(op.beta1, 0.99, 0);
    CHECK_NEAR(op.beta2, 0.95, 0);
    op.peak_lr = 1e-3, op.weight_decay = 0.2;
    ft_optim *o = NULL;
    REQUIRE_OK(ft_optim_new(m, &op, &o, &err), &err);
    CHECK_EQ_INT(ft_optim_n_state(o), ft_model_n_params(m) + 1); /* exp_avg only */
    ft_param *p = ft_model_param(m, 0);
    double w = p->data[5], mm = 0;
    for (int t = 1; t <= 4; t++) {
        set_grads(m, (uint64_t)t + 10);
        double g = p->grad[5], lr = 1e-3 / t;
        REQUIRE_OK(ft_optim_step(o, lr, &err), &err);
        w *= 1 - lr / 1e-3 * 0.2;
        double c = mm + 0.01 * (g - mm);
        w -= lr * (c > 0 ? 1 : c < 0 ? -1 : 0);
        mm = mm + 0.05 * (g - mm);
        CHECK_NEAR(p->data[5], w, 1e-6 * fabs(w) + 1e-7);
    }
    ft_optim_free(o);
    ft_model_free(m);
}

TEST(optim_clip_grad_norm) {
    ft_model *m = tiny(3);
    REQUIRE(m);
    set_grads(m, 1);
    double n0 = ft_model_grad_norm(m);
    CHECK(n0 > 1.0);
    CHECK_NEAR(ft_optim_clip_grad_norm(m, 0), n0, 0); /* no clipping */
    CHECK_NEAR(ft_optim_clip_grad_norm(m, 1.0), n0, 1e-9);
    CHECK_NEAR(ft_model_grad_norm(m), 1.0, 1e-5);
    CHECK_NEAR(ft_optim_clip_grad_norm(m, 10.0), 1.0, 1e-5); /* below: untouched */
    CHECK_NEAR(ft_model_grad_norm(m), 1.0, 1e-5);
    ft_model_free(m);
}

TEST(optim_state_restore_continues_identically) {
    ft_err err;
    ft_model *a = tiny(4), *b = tiny(4);
    REQUIRE(a && b);
    ft_optim_params op = ft_optim_default_params(FT_OPTIM_ADAMW);
    op.peak_lr = 1e-3;
    ft_optim *oa = NULL, *ob = NULL;
    REQUIRE_OK(ft_optim_new(a, &op, &oa, &err), &err);
    REQUIRE_OK(ft_optim_new(b, &op, &ob, &err), &err);
    for (int t = 0; t < 2; t++) {
        set_grads(a, (uint64_t)t);
        REQUIRE_OK(ft_optim_step(oa, 1e-3, &err), &err);
    }
    /* "checkpoint": copy weights and every state tensor (step included) into b */
    for (size_t i = 0; i < ft_model_n_params(a); i++)
        memcpy(ft_model_param(b, i)->data, ft_model_param(a, i)->data,
               (size_t)ft_model_param(a, i)->numel * sizeof(float));
    for (size_t i = 0; i < ft_optim_n_state(oa); i++) {
        ft_optim_state *s = ft_optim_state_at(oa, i), *d = ft_optim_find_state(ob, s->name);
        REQUIRE(d && d->numel == s->numel);
        memcpy(d->data, s->data, (size_t)s->numel * sizeof(float));
    }
    CHECK_EQ_INT(ft_optim_step_count(ob), 2);
    set_grads(a, 9);
    set_grads(b, 9);
    REQUIRE_OK(ft_optim_step(oa, 5e-4, &err), &err);
    REQUIRE_OK(ft_optim_step(ob, 5e-4, &err), &err);
    for (size_t i = 0; i < ft_model_n_params(a); i++)
        CHECK(memcmp(ft_model_param(b, i)->data, ft_model_param(a, i)->data,
                     (size_t)ft_model_param(a, i)->numel * sizeof(float)) == 0);
    ft_optim_kind k;
    CHECK(ft_optim_kind_parse("lion", &k) && k == FT_OPTIM_LION);
    CHECK(!ft_optim_kind_parse("sgd", &k));
    ft_optim_free(oa);
    ft_optim_free(ob);
    ft_model_free(a);
    ft_model_free(b);
}

TEST(optim_fused_clipping_equals_clip_then_step) {
    ft_err err;
    for (int kind = 0; kind < 2; kind++) {
        ft_model *a = tiny(5), *b = tiny(5);
        REQUIRE(a && b);
        ft_optim_params op = ft_optim_default_params(kind ? FT_OPTIM_LION : FT_OPTIM_ADAMW);
        op.peak_lr = 1e-3;
        op.weight_decay = 0.01;
        ft_optim *oa = NULL, *ob = NULL;
        REQUIRE_OK(ft_optim_new(a, &op, &oa, &err), &err);
        REQUIRE_OK(ft_optim_new(b, &op, &ob, &err), &err);
        for (int t = 0; t < 3; t++) {
            set_grads(a, (uint64_t)t + 20);
            set_grads(b, (uint64_t)t + 20);
            double na = ft_optim_clip_grad_norm(a, 0.5), nb = 0;
            REQUIRE_OK(ft_optim_step(oa, 1e-3, &err), &err);
            REQUIRE_OK(ft_optim_step_clipped(ob, 1e-3, 0.5, &nb, &err), &err);
            CHECK(na == nb);
        }
        for (size_t i = 0; i < ft_model_n_params(a); i++)
            CHECK(memcmp(ft_model_param(b, i)->data, ft_model_param(a, i)->data,
                         (size_t)ft_model_param(a, i)->numel * sizeof(float)) == 0);
        ft_model_param(b, 0)->grad[0] = NAN;
        CHECK(ft_optim_step_clipped(ob, 1e-3, 0.5, NULL, &err) == FT_ERR_NUMERIC);
        CHECK_EQ_INT(ft_optim_step_count(ob), 3);
        ft_optim_free(oa);
        ft_optim_free(ob);
        ft_model_free(a);
        ft_model_free(b);
    }
}
