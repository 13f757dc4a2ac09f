/* train/eval.c: evaluation at checkpoints (SPEC §4): eval loss and token accuracy over one pass of
 * the eval data in file order, and a sampled completion for each eval prompt (max_new_tokens 100,
 * temperature 1, top_k 50, top_p 0.95, seeded per prompt so that checkpoints compare), through
 * the KV-cache generator. Also the HF export of the final weights. */
#include <math.h>
#include <string.h>

#include "ftune/data.h"
#include "ftune/hf.h"
#include "ftune/json.h"
#include "train_internal.h"

static ft_status eval_loss(train_eval_ctx *ctx, ft_eval_result *r, ft_err *err) {
    int64_t T = ctx->T;
    ft_pack_params pp;
    ft_pack_default_params(&pp, T, ctx->seed);
    pp.shuffle = false;
    ft_epoch_counts ec;
    FT_TRY(ft_dataset_count_epoch(ctx->eval_ds, &pp, 0, &ec, err));
    ft_loader_params lp;
    ft_loader_default_params(&lp, 1, T, ctx->seed);
    lp.pack = pp;
    lp.threads = 1;
    ft_loader *ld = NULL;
    FT_TRY(ft_loader_new(ctx->eval_ds, &lp, NULL, &ld, err));
    /* ft_model_eval runs the LM head on the trainable positions only and never materialises a
     * row's (T, V) logits: with a 128K vocabulary and T = 8192 those alone would be 4 GiB. */
    ft_status s = FT_OK;
    double loss_sum = 0;
    int64_t n_tok = 0, n_correct = 0;
    for (int64_t row = 0; s == FT_OK && row < ec.rows; row++) {
        ft_data_batch *db = NULL;
        s = ft_loader_next(ld, &db, err);
        if (s != FT_OK)
            break;
        double ls = 0;
        int64_t nt = 0, nc = 0;
        s = ft_model_eval(ctx->model, ctx->ws, &db->batch, &ls, &nt, &nc, err);
        if (s == FT_OK) {
            loss_sum += ls;
            n_tok += nt;
            n_correct += nc;
        }
        ft_loader_release(ld, db);
    }
    ft_loader_free(ld);
    if (s == FT_OK && n_tok > 0) {
        r->has_loss = true;
        r->loss = loss_sum / (double)n_tok;
        r->token_accuracy = (double)n_correct / (double)n_tok;
        r->eval_tokens = n_tok;
    }
    return s;
}

ft_status train_evaluate(train_eval_ctx *ctx, int64_t step, int64_t epoch, const ft_train_sink *sink,
                         ft_eval_result *r, ft_err *err) {
    memset(r, 0, sizeof *r);
    r->step = step;
    r->epoch = epoch;
    if (ctx->eval_ds)
        FT_TRY(eval_loss(ctx, r, err));
    if (!ctx->n_prompts || !ctx->tok)
        return FT_OK;
    if (!ctx->gen) {
        const ft_model_config *mc = ft_model_get_config(ctx->model);
        int64_t maxc = ctx->T + ctx->max_new_tokens;
        if (mc->max_position_embeddings > 0 && maxc > mc->max_position_embeddings)
            maxc = mc->max_position_embeddings;
        FT_TRY(ft_gen_new(ctx->model, ctx->tok, ctx->model_dir, maxc, &ctx->gen, err));
    }
    ft_eval_generation *gens = ft_calloc(ctx->n_prompts, sizeof *gens);
    if (!gens)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    r->generations = gens;
    for (size_t i = 0; i < ctx->n_prompts; i++) {
        gens[i].prompt = ctx->prompts[i];
        r->n_generations = i + 1;
        if (sink && sink->should_stop && sink->should_stop(sink->user)) {
            gens[i].completion = ft_strdup("[not generated: the run is stopping]");
            continue;
        }
        ft_gen_params gp = ft_gen_default_params();
        gp.max_new_tokens = ctx->max_new_tokens;
        gp.seed = ctx->seed + i;
        gp.chat = ctx->chat && ft_gen_has_chat_template(ctx->gen);
        ft_gen_output out;
        ft_err e2;
        if (ft_gen_text(ctx->gen, ctx->prompts[i], &gp, &out, &e2) == FT_OK) {
            gens[i].completion = out.text;
            out.text = NULL;
            ft_gen_output_free(&out);
        } else {
            /* One prompt that cannot be generated (too long for the context) does not fail the run. */
            gens[i].completion = ft_asprintf("[generation failed: %s]", e2.msg);
        }
        if (!gens[i].completion)
            return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    }
    return FT_OK;
}

void train_eval_free(ft_eval_result *r) {
    if (!r)
        return;
    ft_eval_generation *g = (ft_eval_generation *)r->generations;
    for (size_t i = 0; g && i < r->n_generations; i++)
        ft_free((char *)g[i].completion);
    ft_free(g);
    r->generations = NULL;
    r->n_generations = 0;
}

json_t *train_eval_to_json(const ft_eval_result *r) {
    json_t *o = json_pack("{s:I, s:I}", "step", (json_int_t)r->step, "epoch", (json_int_t)r->epoch);
    if (r->has_loss) {
        json_object_set_new(o, "eval_loss", json_real(r->loss));
        json_object_set_new(o, "eval_token_accuracy", json_real(r->token_accuracy));
        json_object_set_new(o, "eval_tokens", json_integer(r->eval_tokens));
    }
    json_t *g = json_array();
    for (size_t i = 0; i < r->n_generations; i++)
        json_array_append_new(g, json_pack("{s:s?, s:s?}", "prompt", r->generations[i].prompt, "completion",
                                           r->generations[i].completion));
    json_object_set_new(o, "generations", g);
    return o;
}

/* ---------------------------------------------------------------- export */

typedef struct {
    ft_model *m;
} export_ctx;

static ft_status fill_from_model(void *vctx, size_t index, const ft_tensor_spec *t, int64_t offset, float *out,
                                 int64_t n, ft_err *err) {
    (void)index;
    export_ctx *c = vctx;
    ft_param *p = ft_model_find_param(c->m, t->name);
    if (!p || offset < 0 || offset + n > p->numel)
        return FT_ERR(err, FT_ERR_INTERNAL, "export: no parameter %s (or range %lld+%lld)", t->name,
                      (long long)offset, (long long)n);
    memcpy(out, p->data + offset, (size_t)n * sizeof(float));
    return FT_OK;
}

ft_st_dtype train_export_dtype(const char *export_dtype, const ft_model_config *base) {
    const char *d = export_dtype && strcmp(export_dtype, "auto") ? export_dtype : base ? base->torch_dtype : "";
    return !strcmp(d, "bfloat16") ? FT_ST_DTYPE_BF16 : !strcmp(d, "float16") ? FT_ST_DTYPE_F16 : FT_ST_DTYPE_F32;
}

ft_status train_export(ft_model *m, const char *src_model_dir, const char *out_dir, ft_st_dtype dtype,
                       uint64_t max_shard_bytes, ft_err *err) {
    ft_hf_export_params p = ft_hf_export_default_params();
    if (max_shard_bytes)
        p.max_shard_bytes = max_shard_bytes;
    p.dtype = dtype;
    p.tokenizer_dir = src_model_dir;
    export_ctx c = {m};
    FT_TRY(ft_hf_export(out_dir, ft_model_get_config(m), fill_from_model, &c, &p, err));
    /* The source's generation_config.json carries what the config cannot (several eos ids,
     * sampling defaults): keep it when there is one. */
    char *src = src_model_dir ? ft_path_join(src_model_dir, "generation_config.json") : NULL;
    char *dst = ft_path_join(out_dir, "generation_config.json");
    ft_status s = FT_OK;
    if (src && dst && ft_path_exists(src)) {
        char *data = NULL;
        size_t len = 0;
        s = ft_file_read_all(src, &data, &len, err);
        if (s == FT_OK)
            s = ft_file_write_atomic(dst, data, len, err);
        ft_free(data);
    }
    ft_free(src);
    ft_free(dst);
    return s;
}
