/* cli/cmd_debug.c: `ftune debug SUBCOMMAND`, tools for checking ftune's numbers by hand.
 *
 *   ftune debug forward --model M --batch FILE [--dtype fp32|bf16|auto] [--logits-out F] [--grads-out F] [--json]
 *     (issue #2 item 7; keep it stable). FILE: {"input_ids": [[..]], "targets": [[..]],
 *     "position_ids"?, "sample_ids"?}. Prints the mean cross-entropy over trainable targets;
 *     --json: {"loss": x, "trainable_tokens": n}. --logits-out: safetensors with "logits"
 *     (B, T, V) F32. --grads-out: safetensors with the F32 gradient of the mean loss for every
 *     parameter under its HF name.
 *   ftune debug train-steps --model M --batch FILE [--steps N] [--optimizer adamw|lion] [--lr X]
 *     N optimizer steps on that one batch (clipping at 1.0, constant lr), printing the loss
 *     before each: a quick way to see a model learn. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ftune/hf.h"
#include "ftune/model.h"
#include "ftune/optim.h"
#include "ftune/safetensors.h"
#include "ftune/train.h"

static const char FWD_SYNOPSIS[] =
    "--model M --batch FILE [--dtype fp32|bf16|auto] [--logits-out F] [--grads-out F] [--json]";
static const cli_opt FWD_OPTS[] = {
    {"model", CLI_STR, "M: model folder, hub id org/name or registered c.s.n"},
    {"batch", CLI_STR, "FILE: {\"input_ids\": [[..]], \"targets\": [[..]], \"position_ids\"?, \"sample_ids\"?}"},
    {"dtype", CLI_STR, "fp32 (default) | bf16 (mixed precision, as training runs it) | auto"},
    {"logits-out", CLI_STR, "F: write the logits (B, T, V) as safetensors tensor \"logits\""},
    {"grads-out", CLI_STR, "F: write d(mean loss)/d(param) for every parameter, HF names, F32"},
    {"router-out", CLI_STR,
     "F: mixture of experts: write each layer's router logits \"router_logits.L\" and probabilities "
     "\"router_probs.L\" (B*T, E) and chosen experts \"routing.L\" (B*T, K), F32"},
    {"threads", CLI_INT, "N: threads (default: all cores)"},
    {NULL, 0, NULL},
};

/* --router-out: every layer's router softmax and routing of the last forward (a training
 * workspace, which keeps all layers). */
static ft_status write_router(const ft_workspace *ws, const ft_model_config *c, const ft_batch *b, const char *path,
                              ft_err *err) {
    const int64_t L = c->num_hidden_layers, E = c->num_local_experts, K = c->num_experts_per_tok, N = b->B * b->T;
    if (E == 0)
        return FT_ERR(err, FT_ERR_INVALID, "--router-out: %s has no router (not a mixture of experts)",
                      c->architecture);
    const size_t n = (size_t)(3 * L); /* per layer: logits, probabilities, routing */
    char(*names)[48] = ft_calloc(n, sizeof *names);
    const char **np = ft_calloc(n, sizeof *np);
    int *nd = ft_calloc(n, sizeof *nd);
    int64_t(*shape)[2] = ft_calloc(n, sizeof *shape);
    const int64_t **sp = ft_calloc(n, sizeof *sp);
    const float **data = ft_calloc(n, sizeof *data);
    float *sel = ft_malloc((size_t)(L * N * K) * sizeof(float)), *lg = ft_malloc((size_t)(L * N * E) * sizeof(float));
    ft_status s =
        names && np && nd && shape && sp && data && sel && lg ? FT_OK : FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    for (int64_t l = 0; s == FT_OK && l < L; l++) {
        const int32_t *si;
        const float *pr;
        s = ft_workspace_routing(ws, l, &si, &pr, lg + l * N * E, N, err);
        if (s != FT_OK)
            break;
        for (int64_t i = 0; i < N * K; i++)
            sel[l * N * K + i] = (float)si[i];
        static const char *const what[3] = {"router_logits", "router_probs", "routing"};
        const float *src[3] = {lg + l * N * E, pr, sel + l * N * K};
        for (int k = 0; k < 3; k++) {
            size_t i = (size_t)(3 * l + k);
            snprintf(names[i], sizeof names[0], "%s.%lld", what[k], (long long)l);
            np[i] = names[i];
            nd[i] = 2;
            shape[i][0] = N;
            shape[i][1] = k < 2 ? E : K;
            sp[i] = shape[i];
            data[i] = src[k];
        }
    }
    if (s == FT_OK)
        s = ft_st_save_f32(path, n, np, nd, sp, data, FT_ST_DTYPE_F32, err);
    ft_free(names);
    ft_free(np);
    ft_free(nd);
    ft_free(shape);
    ft_free(sp);
    ft_free(data);
    ft_free(sel);
    ft_free(lg);
    return s;
}

static const char STEPS_SYNOPSIS[] =
    "--model M --batch FILE [--steps 10] [--optimizer adamw|lion] [--lr 1e-3] [--json]";
static const cli_opt STEPS_OPTS[] = {
    {"model", CLI_STR, "M: model folder, hub id org/name or registered c.s.n"},
    {"batch", CLI_STR, "FILE: a batch as for `debug forward`"},
    {"steps", CLI_INT, "N: optimizer steps (default 10)"},
    {"optimizer", CLI_STR, "adamw (default) | lion"},
    {"lr", CLI_FLOAT, "X: learning rate (default 1e-3)"},
    {"threads", CLI_INT, "N: threads (default: all cores)"},
    {NULL, 0, NULL},
};

/* Resolve the name, read the batch, load the model and a workspace sized for the batch. */
/* dtype_auto: `--dtype auto` chose dtype; a mixture of experts then runs fp32 (its layers have no
 * bf16 path yet) instead of being refused. */
static ft_status open_model(const char *name, const char *batch_path, bool training, int threads, ft_dtype dtype,
                            bool dtype_auto, ft_batch_owned *bo, ft_model **m, ft_workspace **ws, ft_err *err) {
    char *dir = NULL;
    FT_TRY(ft_hf_resolve(name, &dir, err));
    if (threads > 0)
        ft_tensor_set_threads(threads);
    ft_status s = ft_model_batch_load(batch_path, bo, err);
    if (s == FT_OK) {
        ft_model_params p = ft_model_default_params();
        p.training = training;
        s = ft_model_load(dir, &p, m, err);
    }
    if (s == FT_OK) {
        ft_workspace_params wp = ft_workspace_default_params();
        wp.max_batch = bo->b.B;
        wp.max_seq = bo->b.T;
        wp.training = training;
        wp.dtype = dtype_auto && ft_model_get_config(*m)->num_local_experts > 0 ? FT_DTYPE_FP32 : dtype;
        s = ft_workspace_new(*m, &wp, ws, err);
    }
    if (s != FT_OK) {
        ft_model_free(*m);
        *m = NULL;
        ft_model_batch_free(bo);
    }
    ft_free(dir);
    return s;
}

static ft_status write_grads(ft_model *m, const char *path, ft_err *err) {
    ft_st_writer *w = NULL;
    FT_TRY(ft_st_writer_new(path, NULL, &w, err));
    ft_status s = FT_OK;
    size_t n = ft_model_n_params(m);
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        ft_param *p = ft_model_param(m, i);
        s = ft_st_writer_add(w, p->name, FT_ST_DTYPE_F32, p->ndim, p->shape, err);
    }
    for (size_t i = 0; s == FT_OK && i < n; i++) {
        ft_param *p = ft_model_param(m, i);
        s = ft_st_writer_write_f32(w, p->name, p->grad, p->numel, err);
    }
    if (s == FT_OK)
        s = ft_st_writer_finish(w, err);
    ft_st_writer_free(w);
    return s;
}

static int debug_forward(int argc, char **argv) {
    const char *cmd = "debug forward";
    cli_args a;
    int rc = cli_parse(&a, cmd, FWD_SYNOPSIS, FWD_OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *model = cli_str(&a, "model", NULL), *batch = cli_str(&a, "batch", NULL);
    const char *logits_out = cli_str(&a, "logits-out", NULL), *grads_out = cli_str(&a, "grads-out", NULL);
    const char *router_out = cli_str(&a, "router-out", NULL);
    const char *dts = cli_str(&a, "dtype", "fp32");
    ft_dtype dt = FT_DTYPE_FP32;
    ft_err gerr;
    if (!model || !batch)
        rc = cli_usage_error(cmd, model ? "batch" : "model", "is required");
    else if (ft_tensor_gemm_env_check(&gerr) != FT_OK)
        rc = cli_usage_error(cmd, NULL, "%s", gerr.msg);
    else if (!strcmp(dts, "auto"))
        dt = ft_tensor_auto_dtype(NULL);
    else if (!ft_dtype_parse(dts, &dt))
        rc = cli_usage_error(cmd, "dtype", "must be fp32, bf16 or auto, not \"%s\"", dts);
    if (rc) {
        cli_args_free(&a);
        return rc;
    }
    ft_err err = {0};
    ft_batch_owned bo = {0};
    ft_model *m = NULL;
    ft_workspace *ws = NULL;
    float *logits = NULL;
    ft_status s = open_model(model, batch, grads_out != NULL || router_out != NULL, (int)cli_int(&a, "threads", 0), dt,
                             !strcmp(dts, "auto"), &bo, &m, &ws, &err);
    double loss_sum = 0;
    int64_t n = 0;
    const ft_batch *b = &bo.b;
    if (s == FT_OK && (logits_out || !grads_out)) {
        int64_t V = ft_model_get_config(m)->vocab_size;
        if (logits_out && !(logits = ft_malloc((size_t)(b->B * b->T * V) * sizeof(float))))
            s = FT_ERR(&err, FT_ERR_NOMEM, "logits: out of memory");
        if (s == FT_OK)
            s = ft_model_forward(m, ws, b, logits, &loss_sum, &n, &err);
        if (s == FT_OK && logits_out) {
            const char *names[1] = {"logits"};
            int ndims[1] = {3};
            int64_t shape[3] = {b->B, b->T, V};
            const int64_t *shapes[1] = {shape};
            const float *data[1] = {logits};
            s = ft_st_save_f32(logits_out, 1, names, ndims, shapes, data, FT_ST_DTYPE_F32, &err);
        }
    }
    if (s == FT_OK && grads_out) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < b->B * b->T; i++)
            cnt += b->targets[i] != -100;
        ft_model_zero_grad(m);
        /* gradient of the mean; with no trainable token every gradient is 0 */
        s = ft_model_forward_backward(m, ws, b, cnt > 0 ? (double)cnt : 1.0, &loss_sum, &n, &err);
        if (s == FT_OK)
            s = write_grads(m, grads_out, &err);
    }
    if (s == FT_OK && router_out)
        s = write_router(ws, ft_model_get_config(m), b, router_out, &err);
    if (s != FT_OK) {
        rc = cli_report(cmd, &err);
    } else {
        double loss = n > 0 ? loss_sum / (double)n : 0.0;
        const ft_model_config *mc = ft_model_get_config(m);
        bool moe = mc->num_local_experts > 0;
        /* a mixture of experts: the load-balancing loss of this batch, and the training loss it makes */
        double aux = moe ? ft_workspace_aux_loss(ws) : 0, coef = ft_model_config_aux_coef(mc);
        if (cli_has(&a, "json")) {
            if (moe)
                printf("{\"loss\": %.9g, \"trainable_tokens\": %lld, \"aux_loss\": %.9g, \"aux_coef\": %.9g}\n", loss,
                       (long long)n, aux, coef);
            else
                printf("{\"loss\": %.9g, \"trainable_tokens\": %lld}\n", loss, (long long)n);
        } else {
            printf("loss %.6f over %lld trainable tokens (batch %lld x %lld)\n", loss, (long long)n, (long long)b->B,
                   (long long)b->T);
            if (moe)
                printf("aux loss %.6f (load balancing; coefficient %g, so training minimises %.6f)\n", aux, coef,
                       loss + coef * aux);
        }
        rc = CLI_EXIT_OK;
    }
    ft_free(logits);
    ft_workspace_free(ws);
    ft_model_free(m);
    ft_model_batch_free(&bo);
    cli_args_free(&a);
    return rc;
}

static int debug_train_steps(int argc, char **argv) {
    const char *cmd = "debug train-steps";
    cli_args a;
    int rc = cli_parse(&a, cmd, STEPS_SYNOPSIS, STEPS_OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *model = cli_str(&a, "model", NULL), *batch = cli_str(&a, "batch", NULL);
    int64_t steps = cli_int(&a, "steps", 10);
    double lr = cli_float(&a, "lr", 1e-3);
    ft_optim_kind kind;
    if (!model || !batch)
        rc = cli_usage_error(cmd, model ? "batch" : "model", "is required");
    else if (steps <= 0 || steps > 1000000)
        rc = cli_usage_error(cmd, "steps", "must be between 1 and 1000000");
    else if (!(lr > 0) || !isfinite(lr))
        rc = cli_usage_error(cmd, "lr", "must be a positive number");
    else if (!ft_optim_kind_parse(cli_str(&a, "optimizer", "adamw"), &kind))
        rc = cli_usage_error(cmd, "optimizer", "must be adamw or lion");
    if (rc) {
        cli_args_free(&a);
        return rc;
    }
    bool json = cli_has(&a, "json");
    ft_err err = {0};
    ft_batch_owned bo = {0};
    ft_model *m = NULL;
    ft_workspace *ws = NULL;
    ft_optim *o = NULL;
    ft_status s =
        open_model(model, batch, true, (int)cli_int(&a, "threads", 0), FT_DTYPE_FP32, false, &bo, &m, &ws, &err);
    if (s == FT_OK) {
        ft_optim_params op = ft_optim_default_params(kind);
        op.peak_lr = lr;
        s = ft_optim_new(m, &op, &o, &err);
    }
    int64_t cnt = 0;
    for (int64_t i = 0; s == FT_OK && i < bo.b.B * bo.b.T; i++)
        cnt += bo.b.targets[i] != -100;
    if (s == FT_OK && cnt == 0)
        s = FT_ERR(&err, FT_ERR_INVALID, "%s: the batch has no trainable target", batch);
    if (json && s == FT_OK)
        printf("{\"losses\": [");
    /* The trainer's step (ft_train_step): the whole batch, the mean loss, clipping at 1.0. */
    ft_train_step_params sp = {.micro = bo.b.B, .denom = (double)cnt, .lr = lr, .max_norm = 1.0};
    for (int64_t k = 0; s == FT_OK && k < steps; k++) {
        double t0 = ft_time_now();
        ft_train_step_result sr;
        s = ft_train_step(m, ws, o, &bo.b, &sp, &sr, &err);
        if (s != FT_OK)
            break;
        if (!sr.updated)
            s = FT_ERR(&err, FT_ERR_NUMERIC, "step %lld: the loss (%g) or the gradient norm (%g) is not finite",
                       (long long)k + 1, sr.loss, sr.grad_norm);
        if (json)
            printf(k ? ", %.9g" : "%.9g", sr.loss);
        else
            printf("step %3lld  loss %.6f  grad-norm %.4f  %.0f ms\n", (long long)k + 1, sr.loss, sr.grad_norm,
                   (ft_time_now() - t0) * 1e3);
        fflush(stdout);
    }
    if (json && s == FT_OK)
        printf("], \"optimizer\": \"%s\", \"lr\": %g}\n", ft_optim_kind_name(kind), lr);
    rc = s == FT_OK ? CLI_EXIT_OK : cli_report(cmd, &err);
    ft_optim_free(o);
    ft_workspace_free(ws);
    ft_model_free(m);
    ft_model_batch_free(&bo);
    cli_args_free(&a);
    return rc;
}

int cmd_debug(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "forward"))
        return debug_forward(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "train-steps"))
        return debug_train_steps(argc - 1, argv + 1);
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: ftune debug forward %s\n       ftune debug train-steps %s\n", FWD_SYNOPSIS, STEPS_SYNOPSIS);
        return CLI_EXIT_OK;
    }
    if (argc >= 1 && argv[0][0] != '-')
        return cli_usage_error("debug", NULL, "unknown subcommand \"%s\": forward or train-steps (`ftune debug --help`)",
                               argv[0]);
    return cli_usage_error("debug", NULL, "expected a subcommand: forward or train-steps (`ftune debug --help`)");
}
