/* model/config.c: Hugging Face config.json for the Llama family (LlamaForCausalLM,
 * MistralForCausalLM, and MixtralForCausalLM's sparse mixture of experts): parsing with transformers' defaults, validation, writing a config.json that
 * transformers loads unchanged, and the list of parameter tensors in HF order and names.
 *
 * Defaults follow transformers' LlamaConfig / MistralConfig, so a config.json that leaves a key out
 * means what it means to transformers. Features ftune does not implement (other RoPE scalings,
 * attention or MLP biases, activations other than SiLU) are refused with FT_ERR_UNSUPPORTED rather
 * than silently computing something else. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/config.h"
#include "ftune/json.h"

static const char *const supported_archs =
    "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, DbrxForCausalLM";

enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_MIXTRAL, ARCH_DBRX };

bool ft_model_config_is_dbrx(const ft_model_config *c) { return !strcmp(c->architecture, "DbrxForCausalLM"); }

void ft_model_config_default(ft_model_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = 32000;
    c->hidden_size = 4096;
    c->intermediate_size = 11008;
    c->num_hidden_layers = 32;
    c->num_attention_heads = 32;
    c->num_key_value_heads = 32;
    c->head_dim = 128;
    c->rms_norm_eps = 1e-6;
    c->rope_theta = 10000.0;
    c->rope_scaling = FT_ROPE_NONE;
    c->tie_word_embeddings = false;
    c->max_position_embeddings = 2048;
    c->sliding_window = 0;
    c->bos_token_id = 1;
    c->eos_token_ids[0] = 2;
    c->n_eos = 1;
    c->pad_token_id = -1;
    c->initializer_range = 0.02;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "float32");
}

/* MistralConfig differs from LlamaConfig in these defaults. */
static void mistral_defaults(ft_model_config *c) {
    snprintf(c->architecture, sizeof c->architecture, "MistralForCausalLM");
    snprintf(c->model_type, sizeof c->model_type, "mistral");
    c->intermediate_size = 14336;
    c->num_key_value_heads = 8;
    c->max_position_embeddings = 4096 * 32;
    c->sliding_window = 4096;
}

/* MixtralConfig's defaults (transformers 4.44: Mixtral-8x7B's shape, rope_theta 1e6, eps 1e-5, no
 * sliding window, 8 experts, top-2, aux coefficient 0.001 used only with output_router_logits). */
static void mixtral_defaults(ft_model_config *c) {
    snprintf(c->architecture, sizeof c->architecture, "MixtralForCausalLM");
    snprintf(c->model_type, sizeof c->model_type, "mixtral");
    c->intermediate_size = 14336;
    c->num_key_value_heads = 8;
    c->max_position_embeddings = 4096 * 32;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 1e6;
    c->sliding_window = 0;
    c->num_local_experts = 8;
    c->num_experts_per_tok = 2;
    c->router_aux_loss_coef = 0.001;
    c->output_router_logits = false;
}

/* DbrxConfig's defaults (transformers 4.40): DbrxConfig, DbrxAttentionConfig, DbrxFFNConfig. Its
 * LayerNorms are nn.LayerNorm's default eps 1e-5; no bos/eos/pad unless the file names them. */
static void dbrx_defaults(ft_model_config *c) {
    snprintf(c->architecture, sizeof c->architecture, "DbrxForCausalLM");
    snprintf(c->model_type, sizeof c->model_type, "dbrx");
    c->hidden_size = 2048;
    c->num_attention_heads = 16;
    c->num_hidden_layers = 24;
    c->max_position_embeddings = 2048;
    c->vocab_size = 32000;
    c->num_key_value_heads = 1;
    c->rope_theta = 10000.0;
    c->clip_qkv = 0;
    c->intermediate_size = 3584;
    c->num_local_experts = 4;
    c->num_experts_per_tok = 1;
    c->router_jitter_noise = 0;
    c->router_aux_loss_coef = 0.01;
    c->moe_normalize_expert_weights = 1.0;
    c->output_router_logits = false;
    c->rms_norm_eps = 1e-5;
    c->tie_word_embeddings = false;
    c->bos_token_id = -1;
    c->n_eos = 0;
    c->pad_token_id = -1;
}

double ft_model_config_aux_coef(const ft_model_config *c) {
    return c->num_local_experts > 0 && c->output_router_logits ? c->router_aux_loss_coef : 0.0;
}

/* Errors from the typed JSON getters carry the path as context; give them the file too. */
static ft_status at_file(ft_status s, const char *path, ft_err *err) {
    if (s != FT_OK && err && !err->file[0]) {
        snprintf(err->file, sizeof err->file, "%s", path);
        /* the getters begin their message with the context they were given, which starts with
         * the path: said once, as the location */
        size_t n = strlen(path);
        if (strncmp(err->msg, path, n) == 0 && err->msg[n] == ':' && err->msg[n + 1] == ' ')
            memmove(err->msg, err->msg + n + 2, strlen(err->msg + n + 2) + 1);
    }
    return s;
}

/* bos_token_id / eos_token_id: an integer, a list of integers, or null. */
static ft_status token_ids(const json_t *root, const char *key, int64_t *ids, int cap, int *n, const char *path,
                           ft_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v)
        return FT_OK; /* keep the default */
    if (json_is_null(v)) {
        *n = 0;
        return FT_OK;
    }
    if (json_is_integer(v)) {
        ids[0] = json_integer_value(v);
        *n = 1;
        return FT_OK;
    }
    if (json_is_array(v)) {
        size_t m = json_array_size(v);
        if (m > (size_t)cap)
            return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0, "\"%s\" lists %zu ids; ftune supports at most %d",
                             key, m, cap);
        for (size_t i = 0; i < m; i++) {
            json_t *e = json_array_get(v, i);
            if (!json_is_integer(e))
                return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"%s\"[%zu] must be an integer", key, i);
            ids[i] = json_integer_value(e);
        }
        *n = (int)m;
        return FT_OK;
    }
    return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"%s\" must be an integer, a list of integers or null", key);
}

static ft_status parse_rope_scaling(const json_t *root, ft_model_config *c, const char *path, ft_err *err) {
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs || json_is_null(rs))
        return FT_OK;
    if (!json_is_object(rs))
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"rope_scaling\" must be an object or null");
    /* transformers >= 4.43 writes "rope_type"; older configs (and Llama 2 era ones) "type". */
    const char *type = NULL;
    json_t *t = json_object_get(rs, "rope_type");
    if (!t || json_is_null(t))
        t = json_object_get(rs, "type");
    if (t && json_is_string(t))
        type = json_string_value(t);
    else if (t && !json_is_null(t))
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"rope_scaling.rope_type\" must be a string");
    if (!type)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"rope_scaling\" has no \"rope_type\" (or \"type\")");
    if (!strcmp(type, "default"))
        return FT_OK;
    if (strcmp(type, "llama3") != 0)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                         "rope_scaling type \"%s\" is not supported (ftune supports \"llama3\" and no scaling)", type);
    c->rope_scaling = FT_ROPE_LLAMA3;
    char ctx[600];
    snprintf(ctx, sizeof ctx, "%s: rope_scaling", path);
    c->rope_factor = 8.0;
    c->rope_low_freq_factor = 1.0;
    c->rope_high_freq_factor = 4.0;
    c->rope_original_max_position_embeddings = 8192;
    FT_TRY(at_file(ft_json_get_double(rs, "factor", true, &c->rope_factor, ctx, err), path, err));
    FT_TRY(at_file(ft_json_get_double(rs, "low_freq_factor", true, &c->rope_low_freq_factor, ctx, err), path, err));
    FT_TRY(at_file(ft_json_get_double(rs, "high_freq_factor", true, &c->rope_high_freq_factor, ctx, err), path, err));
    FT_TRY(at_file(ft_json_get_int(rs, "original_max_position_embeddings", true,
                                   &c->rope_original_max_position_embeddings, ctx, err),
                   path, err));
    return FT_OK;
}

/* What every architecture's config.json ends with: bos/eos/pad token ids (absent: the defaults
 * already in c), initializer_range and the dtype. */
static ft_status parse_ids_and_dtype(const json_t *root, ft_model_config *c, const char *path, ft_err *err) {
    int nb = 1;
    int64_t bos[8];
    bos[0] = c->bos_token_id;
    FT_TRY(token_ids(root, "bos_token_id", bos, 8, &nb, path, err));
    c->bos_token_id = nb > 0 ? bos[0] : -1;
    FT_TRY(token_ids(root, "eos_token_id", c->eos_token_ids, 8, &c->n_eos, path, err));
    int np = 0;
    int64_t pad[8];
    FT_TRY(token_ids(root, "pad_token_id", pad, 8, &np, path, err));
    c->pad_token_id = np > 0 ? pad[0] : -1;
    FT_TRY(at_file(ft_json_get_double(root, "initializer_range", false, &c->initializer_range, path, err), path,
                   err));
    /* transformers >= 4.56 writes "dtype"; earlier versions "torch_dtype". */
    const char *dt = NULL;
    FT_TRY(at_file(ft_json_get_str(root, "torch_dtype", false, &dt, path, err), path, err));
    if (!dt)
        FT_TRY(at_file(ft_json_get_str(root, "dtype", false, &dt, path, err), path, err));
    if (dt) {
        if (strcmp(dt, "float32") && strcmp(dt, "bfloat16") && strcmp(dt, "float16"))
            return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                             "torch_dtype \"%s\" is not supported (float32, bfloat16, float16)", dt);
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt);
    }
    return FT_OK;
}

/* A number or null (null: *out = 0); absent keeps the default. */
static ft_status num_or_null(const json_t *o, const char *key, double *out, const char *ctx, const char *path,
                             ft_err *err) {
    const json_t *v = json_object_get(o, key);
    if (v && json_is_null(v)) {
        *out = 0;
        return FT_OK;
    }
    return at_file(ft_json_get_double(o, key, false, out, ctx, err), path, err);
}

/* DbrxForCausalLM's config.json: top-level d_model, n_heads, n_layers, max_seq_len, vocab_size and
 * the nested attn_config and ffn_config (transformers 4.40's DbrxConfig). */
static ft_status parse_dbrx(const json_t *root, ft_model_config *c, const char *path, ft_err *err) {
    dbrx_defaults(c);
    FT_TRY(at_file(ft_json_get_int(root, "d_model", false, &c->hidden_size, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "n_heads", false, &c->num_attention_heads, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "n_layers", false, &c->num_hidden_layers, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "max_seq_len", false, &c->max_position_embeddings, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "vocab_size", false, &c->vocab_size, path, err), path, err));
    FT_TRY(at_file(ft_json_get_bool(root, "output_router_logits", false, &c->output_router_logits, path, err), path,
                   err));
    bool tied = false;
    FT_TRY(at_file(ft_json_get_bool(root, "tie_word_embeddings", false, &tied, path, err), path, err));
    if (tied) /* as DbrxConfig refuses it */
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0, "\"tie_word_embeddings\": true is not supported for DBRX");
    char ctx[600];
    const json_t *a = json_object_get(root, "attn_config");
    if (a && !json_is_null(a)) {
        if (!json_is_object(a))
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"attn_config\" must be an object");
        snprintf(ctx, sizeof ctx, "%s: attn_config", path);
        FT_TRY(num_or_null(a, "clip_qkv", &c->clip_qkv, ctx, path, err));
        FT_TRY(at_file(ft_json_get_int(a, "kv_n_heads", false, &c->num_key_value_heads, ctx, err), path, err));
        FT_TRY(at_file(ft_json_get_double(a, "rope_theta", false, &c->rope_theta, ctx, err), path, err));
        if (!(c->clip_qkv >= 0) || !isfinite(c->clip_qkv))
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"attn_config.clip_qkv\" must be positive or null");
    }
    const json_t *f = json_object_get(root, "ffn_config");
    if (f && !json_is_null(f)) {
        if (!json_is_object(f))
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"ffn_config\" must be an object");
        snprintf(ctx, sizeof ctx, "%s: ffn_config", path);
        const json_t *act = json_object_get(f, "ffn_act_fn");
        if (act && !json_is_null(act)) {
            const json_t *name = json_is_object(act) ? json_object_get(act, "name") : NULL;
            if (!json_is_string(name) || strcmp(json_string_value(name), "silu") != 0 || json_object_size(act) != 1)
                return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                                 "\"ffn_config.ffn_act_fn\" must be {\"name\": \"silu\"} (ftune's experts are SwiGLU)");
        }
        FT_TRY(at_file(ft_json_get_int(f, "ffn_hidden_size", false, &c->intermediate_size, ctx, err), path, err));
        FT_TRY(at_file(ft_json_get_int(f, "moe_num_experts", false, &c->num_local_experts, ctx, err), path, err));
        FT_TRY(at_file(ft_json_get_int(f, "moe_top_k", false, &c->num_experts_per_tok, ctx, err), path, err));
        FT_TRY(num_or_null(f, "moe_jitter_eps", &c->router_jitter_noise, ctx, path, err));
        FT_TRY(at_file(ft_json_get_double(f, "moe_loss_weight", false, &c->router_aux_loss_coef, ctx, err), path,
                       err));
        FT_TRY(num_or_null(f, "moe_normalize_expert_weights", &c->moe_normalize_expert_weights, ctx, path, err));
        if (!(c->moe_normalize_expert_weights >= 0) || !isfinite(c->moe_normalize_expert_weights))
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0,
                             "\"ffn_config.moe_normalize_expert_weights\" must be positive or null");
        if (c->num_local_experts <= 0)
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"ffn_config.moe_num_experts\" must be positive (got %lld)",
                             (long long)c->num_local_experts);
    }
    c->head_dim = c->num_attention_heads > 0 ? c->hidden_size / c->num_attention_heads : 0;
    if (c->num_attention_heads > 0 && c->head_dim * c->num_attention_heads != c->hidden_size)
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"d_model\" (%lld) must be a multiple of \"n_heads\" (%lld)",
                         (long long)c->hidden_size, (long long)c->num_attention_heads);
    return parse_ids_and_dtype(root, c, path, err);
}

static ft_status parse(const json_t *root, ft_model_config *c, const char *path, ft_err *err) {
    if (!json_is_object(root))
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "config.json must be a JSON object");

    /* Architecture: the first of "architectures", else the model_type. */
    const char *arch = NULL, *model_type = NULL;
    json_t *archs = json_object_get(root, "architectures");
    if (archs && json_is_array(archs) && json_array_size(archs) > 0 && json_is_string(json_array_get(archs, 0)))
        arch = json_string_value(json_array_get(archs, 0));
    else if (archs && !json_is_null(archs))
        return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"architectures\" must be a non-empty list of strings");
    FT_TRY(at_file(ft_json_get_str(root, "model_type", false, &model_type, path, err), path, err));
    int kind;
    if (arch) {
        if (!strcmp(arch, "LlamaForCausalLM"))
            kind = ARCH_LLAMA;
        else if (!strcmp(arch, "MistralForCausalLM"))
            kind = ARCH_MISTRAL;
        else if (!strcmp(arch, "MixtralForCausalLM"))
            kind = ARCH_MIXTRAL;
        else if (!strcmp(arch, "DbrxForCausalLM"))
            kind = ARCH_DBRX;
        else
            return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                             "architecture \"%s\" is not supported (ftune supports %s)", arch, supported_archs);
    } else if (model_type && !strcmp(model_type, "llama")) {
        kind = ARCH_LLAMA;
    } else if (model_type && !strcmp(model_type, "mistral")) {
        kind = ARCH_MISTRAL;
    } else if (model_type && !strcmp(model_type, "mixtral")) {
        kind = ARCH_MIXTRAL;
    } else if (model_type && !strcmp(model_type, "dbrx")) {
        kind = ARCH_DBRX;
    } else {
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                         "model_type \"%s\" is not supported (ftune supports %s)", model_type ? model_type : "(none)",
                         supported_archs);
    }
    ft_model_config_default(c);
    if (kind == ARCH_DBRX)
        return parse_dbrx(root, c, path, err);
    const bool mistral = kind != ARCH_LLAMA; /* Mixtral is Mistral's decoder with MoE MLPs */
    if (kind == ARCH_MISTRAL)
        mistral_defaults(c);
    if (kind == ARCH_MIXTRAL)
        mixtral_defaults(c);

    /* Features the Llama code path in transformers supports but ftune does not compute. */
    bool b = false;
    FT_TRY(at_file(ft_json_get_bool(root, "attention_bias", false, &b, path, err), path, err));
    if (b)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0, "\"attention_bias\": true is not supported");
    b = false;
    FT_TRY(at_file(ft_json_get_bool(root, "mlp_bias", false, &b, path, err), path, err));
    if (b)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0, "\"mlp_bias\": true is not supported");
    const char *act = "silu";
    FT_TRY(at_file(ft_json_get_str(root, "hidden_act", false, &act, path, err), path, err));
    if (strcmp(act, "silu") != 0)
        return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, path, 0, 0,
                         "\"hidden_act\": \"%s\" is not supported (ftune supports \"silu\")", act);

    FT_TRY(at_file(ft_json_get_int(root, "vocab_size", false, &c->vocab_size, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "hidden_size", false, &c->hidden_size, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "intermediate_size", false, &c->intermediate_size, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "num_hidden_layers", false, &c->num_hidden_layers, path, err), path, err));
    FT_TRY(at_file(ft_json_get_int(root, "num_attention_heads", false, &c->num_attention_heads, path, err), path,
                   err));
    /* num_key_value_heads: absent or null means MHA (as many as the attention heads). */
    c->num_key_value_heads = mistral && !json_object_get(root, "num_key_value_heads") ? 8 : c->num_attention_heads;
    if (kind == ARCH_MIXTRAL) {
        FT_TRY(at_file(ft_json_get_int(root, "num_local_experts", false, &c->num_local_experts, path, err), path, err));
        FT_TRY(at_file(ft_json_get_int(root, "num_experts_per_tok", false, &c->num_experts_per_tok, path, err), path,
                       err));
        FT_TRY(at_file(ft_json_get_double(root, "router_aux_loss_coef", false, &c->router_aux_loss_coef, path, err),
                       path, err));
        FT_TRY(at_file(ft_json_get_bool(root, "output_router_logits", false, &c->output_router_logits, path, err),
                       path, err));
        /* transformers applies it only in training; generation reads such a model as it is */
        FT_TRY(at_file(ft_json_get_double(root, "router_jitter_noise", false, &c->router_jitter_noise, path, err),
                       path, err));
        if (c->num_local_experts <= 0)
            return FT_ERR_AT(err, FT_ERR_INVALID, path, 0, 0, "\"num_local_experts\" must be positive (got %lld)",
                             (long long)c->num_local_experts);
    }
    FT_TRY(at_file(ft_json_get_int(root, "num_key_value_heads", false, &c->num_key_value_heads, path, err), path,
                   err));
    c->head_dim = c->num_attention_heads > 0 ? c->hidden_size / c->num_attention_heads : 0;
    FT_TRY(at_file(ft_json_get_int(root, "head_dim", false, &c->head_dim, path, err), path, err));
    FT_TRY(at_file(ft_json_get_double(root, "rms_norm_eps", false, &c->rms_norm_eps, path, err), path, err));
    FT_TRY(at_file(ft_json_get_double(root, "rope_theta", false, &c->rope_theta, path, err), path, err));
    FT_TRY(parse_rope_scaling(root, c, path, err));
    FT_TRY(at_file(ft_json_get_bool(root, "tie_word_embeddings", false, &c->tie_word_embeddings, path, err), path,
                   err));
    FT_TRY(at_file(ft_json_get_int(root, "max_position_embeddings", false, &c->max_position_embeddings, path, err),
                   path, err));
    json_t *sw = json_object_get(root, "sliding_window");
    if (sw && json_is_null(sw))
        c->sliding_window = 0;
    else
        FT_TRY(at_file(ft_json_get_int(root, "sliding_window", false, &c->sliding_window, path, err), path, err));
    /* LlamaForCausalLM has no sliding window, whatever the file says. */
    if (!mistral)
        c->sliding_window = 0;
    return parse_ids_and_dtype(root, c, path, err);
}

static ft_status load_json(json_t *root, const char *path, ft_model_config *c, ft_err *err) {
    ft_status s = parse(root, c, path, err);
    json_decref(root);
    if (s == FT_OK) {
        s = ft_model_config_validate(c, err);
        if (s != FT_OK)
            at_file(s, path, err);
    }
    return s;
}

ft_status ft_model_config_load(const char *path, ft_model_config *c, ft_err *err) {
    json_t *root;
    FT_TRY(ft_json_load_file(path, &root, err));
    return load_json(root, path, c, err);
}

ft_status ft_model_config_load_buf(const char *name, const char *data, size_t len, ft_model_config *c, ft_err *err) {
    json_t *root;
    FT_TRY(ft_json_load_buf(name, data, len, &root, err));
    return load_json(root, name, c, err);
}

ft_status ft_model_config_validate(const ft_model_config *c, ft_err *err) {
    struct {
        const char *name;
        int64_t v;
    } pos[] = {
        {"vocab_size", c->vocab_size},
        {"hidden_size", c->hidden_size},
        {"intermediate_size", c->intermediate_size},
        {"num_hidden_layers", c->num_hidden_layers},
        {"num_attention_heads", c->num_attention_heads},
        {"num_key_value_heads", c->num_key_value_heads},
        {"head_dim", c->head_dim},
        {"max_position_embeddings", c->max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof pos / sizeof *pos; i++)
        if (pos[i].v <= 0)
            return FT_ERR(err, FT_ERR_INVALID, "\"%s\" must be positive (got %lld)", pos[i].name, (long long)pos[i].v);
    /* Bounds that keep every product below 2^62 and names below ft_tensor_spec's 96 bytes. */
    if (c->vocab_size > (1 << 24) || c->hidden_size > (1 << 20) || c->intermediate_size > (1 << 22) ||
        c->num_hidden_layers > 100000 || c->num_attention_heads > 4096 || c->head_dim > 65536 ||
        c->max_position_embeddings > ((int64_t)1 << 32))
        return FT_ERR(err, FT_ERR_INVALID, "model dimensions are implausibly large");
    {
        /* The parameter count in double precision, so that no int64 product below can overflow. */
        double C = (double)c->hidden_size, Q = (double)c->num_attention_heads * (double)c->head_dim;
        double KV = (double)c->num_key_value_heads * (double)c->head_dim;
        double E = c->num_local_experts > 0 ? (double)c->num_local_experts : 1;
        double per_layer = 2 * C + 2 * Q * C + 2 * KV * C + 3 * (double)c->intermediate_size * C * E + E * C;
        double total = 2 * (double)c->vocab_size * C + (double)c->num_hidden_layers * per_layer + C;
        if (total > 9e15)
            return FT_ERR(err, FT_ERR_INVALID, "model dimensions are implausibly large (%.3g parameters)", total);
    }
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return FT_ERR(err, FT_ERR_INVALID, "num_attention_heads (%lld) must be a multiple of num_key_value_heads (%lld)",
                      (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    if (c->head_dim % 2 != 0)
        return FT_ERR(err, FT_ERR_INVALID, "head_dim (%lld) must be even for rotary embeddings",
                      (long long)c->head_dim);
    if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps))
        return FT_ERR(err, FT_ERR_INVALID, "\"rms_norm_eps\" must be positive");
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return FT_ERR(err, FT_ERR_INVALID, "\"rope_theta\" must be positive");
    if (c->rope_scaling == FT_ROPE_LLAMA3) {
        if (!(c->rope_factor > 0) || !(c->rope_low_freq_factor > 0) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_original_max_position_embeddings <= 0)
            return FT_ERR(err, FT_ERR_INVALID,
                          "rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                          "original_max_position_embeddings > 0");
    }
    if (c->sliding_window < 0)
        return FT_ERR(err, FT_ERR_INVALID, "\"sliding_window\" must be null or positive");
    if (c->num_local_experts < 0 || c->num_local_experts > 4096)
        return FT_ERR(err, FT_ERR_INVALID, "\"num_local_experts\" must be between 1 and 4096 (got %lld)",
                      (long long)c->num_local_experts);
    if (c->num_local_experts > 0 &&
        (c->num_experts_per_tok < 1 || c->num_experts_per_tok > c->num_local_experts))
        return FT_ERR(err, FT_ERR_INVALID,
                      "\"num_experts_per_tok\" must be between 1 and num_local_experts (%lld); got %lld",
                      (long long)c->num_local_experts, (long long)c->num_experts_per_tok);
    if (!(c->router_jitter_noise >= 0) || !isfinite(c->router_jitter_noise))
        return FT_ERR(err, FT_ERR_INVALID, "\"router_jitter_noise\" must be >= 0");
    if (!(c->router_aux_loss_coef >= 0) || !isfinite(c->router_aux_loss_coef))
        return FT_ERR(err, FT_ERR_INVALID, "\"router_aux_loss_coef\" must be >= 0");
    if (!(c->clip_qkv >= 0) || !isfinite(c->clip_qkv) || !(c->moe_normalize_expert_weights >= 0) ||
        !isfinite(c->moe_normalize_expert_weights))
        return FT_ERR(err, FT_ERR_INVALID, "\"clip_qkv\" and \"moe_normalize_expert_weights\" must be >= 0 (0: null)");
    if (ft_model_config_is_dbrx(c)) {
        if (c->num_local_experts <= 0)
            return FT_ERR(err, FT_ERR_INVALID, "DbrxForCausalLM needs moe_num_experts >= 1");
        if (c->tie_word_embeddings)
            return FT_ERR(err, FT_ERR_UNSUPPORTED, "\"tie_word_embeddings\": true is not supported for DBRX");
        if (c->num_attention_heads * c->head_dim != c->hidden_size)
            return FT_ERR(err, FT_ERR_INVALID, "DBRX's head_dim is d_model / n_heads (%lld / %lld)",
                          (long long)c->hidden_size, (long long)c->num_attention_heads);
        if (c->sliding_window != 0 || c->rope_scaling != FT_ROPE_NONE)
            return FT_ERR(err, FT_ERR_UNSUPPORTED, "DBRX has no sliding window or rope scaling");
    } else if (c->clip_qkv != 0) {
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "\"clip_qkv\" is DBRX's (%s has none)", c->architecture);
    }
    if (c->n_eos < 0 || c->n_eos > 8)
        return FT_ERR(err, FT_ERR_INVALID, "at most 8 eos_token_id values");
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] < 0 || c->eos_token_ids[i] >= c->vocab_size)
            return FT_ERR(err, FT_ERR_INVALID, "eos_token_id %lld is outside the vocabulary (%lld)",
                          (long long)c->eos_token_ids[i], (long long)c->vocab_size);
    if (c->bos_token_id >= c->vocab_size)
        return FT_ERR(err, FT_ERR_INVALID, "bos_token_id %lld is outside the vocabulary (%lld)",
                      (long long)c->bos_token_id, (long long)c->vocab_size);
    if (!(c->initializer_range >= 0) || !isfinite(c->initializer_range))
        return FT_ERR(err, FT_ERR_INVALID, "\"initializer_range\" must be >= 0");
    return FT_OK;
}

/* ---------------------------------------------------------------- writing */

static json_t *ids_json(const int64_t *ids, int n) {
    if (n == 0)
        return json_null();
    if (n == 1)
        return json_integer(ids[0]);
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* Digits %g needs for `v` to read back exactly (at most 17). */
static int shortest_digits(double v) {
    char buf[64];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return p;
    }
    return 17;
}

/* The keys transformers' LlamaConfig/MistralConfig.to_json_string() writes, sorted as it sorts them. */
static ft_status write_json(json_t *o, const double *reals, size_t n_reals, const char *path, ft_err *err);

/* DbrxConfig.to_json_string(): the top-level keys and the two nested configs, sorted. */
static ft_status save_dbrx(const ft_model_config *c, const char *path, ft_err *err) {
    json_t *o = json_object();
    if (!o)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    json_t *archs = json_array();
    json_array_append_new(archs, json_string("DbrxForCausalLM"));
    json_object_set_new(o, "architectures", archs);
    json_t *a = json_object();
    json_object_set_new(a, "attn_pdrop", json_real(0.0));
    json_object_set_new(a, "clip_qkv", c->clip_qkv > 0 ? json_real(c->clip_qkv) : json_null());
    json_object_set_new(a, "kv_n_heads", json_integer(c->num_key_value_heads));
    json_object_set_new(a, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "attn_config", a);
    json_object_set_new(o, "d_model", json_integer(c->hidden_size));
    json_object_set_new(o, "emb_pdrop", json_real(0.0));
    json_t *f = json_object();
    json_t *act = json_object();
    json_object_set_new(act, "name", json_string("silu"));
    json_object_set_new(f, "ffn_act_fn", act);
    json_object_set_new(f, "ffn_hidden_size", json_integer(c->intermediate_size));
    json_object_set_new(f, "moe_jitter_eps", c->router_jitter_noise > 0 ? json_real(c->router_jitter_noise) : json_null());
    json_object_set_new(f, "moe_loss_weight", json_real(c->router_aux_loss_coef));
    json_object_set_new(f, "moe_normalize_expert_weights",
                        c->moe_normalize_expert_weights > 0 ? json_real(c->moe_normalize_expert_weights) : json_null());
    json_object_set_new(f, "moe_num_experts", json_integer(c->num_local_experts));
    json_object_set_new(f, "moe_top_k", json_integer(c->num_experts_per_tok));
    json_object_set_new(o, "ffn_config", f);
    if (c->bos_token_id >= 0)
        json_object_set_new(o, "bos_token_id", json_integer(c->bos_token_id));
    if (c->n_eos > 0)
        json_object_set_new(o, "eos_token_id", ids_json(c->eos_token_ids, c->n_eos));
    if (c->pad_token_id >= 0)
        json_object_set_new(o, "pad_token_id", json_integer(c->pad_token_id));
    json_object_set_new(o, "initializer_range", json_real(c->initializer_range));
    json_object_set_new(o, "max_seq_len", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "model_type", json_string("dbrx"));
    json_object_set_new(o, "n_heads", json_integer(c->num_attention_heads));
    json_object_set_new(o, "n_layers", json_integer(c->num_hidden_layers));
    json_object_set_new(o, "output_router_logits", json_boolean(c->output_router_logits));
    json_object_set_new(o, "resid_pdrop", json_real(0.0));
    json_object_set_new(o, "tie_word_embeddings", json_false());
    json_object_set_new(o, "torch_dtype", json_string(c->torch_dtype[0] ? c->torch_dtype : "float32"));
    json_object_set_new(o, "transformers_version", json_string("4.40.0"));
    json_object_set_new(o, "use_cache", json_true());
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    const double reals[] = {c->clip_qkv, c->rope_theta, c->initializer_range, c->router_jitter_noise,
                            c->router_aux_loss_coef, c->moe_normalize_expert_weights};
    return write_json(o, reals, sizeof reals / sizeof *reals, path, err);
}

ft_status ft_model_config_save(const ft_model_config *c, const char *path, ft_err *err) {
    FT_TRY(ft_model_config_validate(c, err));
    if (ft_model_config_is_dbrx(c))
        return save_dbrx(c, path, err);
    const bool moe = !strcmp(c->architecture, "MixtralForCausalLM");
    const bool mistral = moe || !strcmp(c->architecture, "MistralForCausalLM");
    if (!mistral && strcmp(c->architecture, "LlamaForCausalLM") != 0)
        return FT_ERR(err, FT_ERR_UNSUPPORTED, "architecture \"%s\" is not supported (ftune supports %s)",
                      c->architecture, supported_archs);
    if (moe != (c->num_local_experts > 0))
        return FT_ERR(err, FT_ERR_INVALID, "%s %s experts", c->architecture, moe ? "needs" : "has no");
    json_t *o = json_object();
    if (!o)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    json_t *archs = json_array();
    json_array_append_new(archs, json_string(c->architecture));
    json_object_set_new(o, "architectures", archs);
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    if (!mistral) {
        json_object_set_new(o, "attention_bias", json_false());
        json_object_set_new(o, "mlp_bias", json_false());
        json_object_set_new(o, "pretraining_tp", json_integer(1));
    }
    json_object_set_new(o, "bos_token_id", c->bos_token_id >= 0 ? json_integer(c->bos_token_id) : json_null());
    json_object_set_new(o, "eos_token_id", ids_json(c->eos_token_ids, c->n_eos));
    if (c->pad_token_id >= 0)
        json_object_set_new(o, "pad_token_id", json_integer(c->pad_token_id));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "initializer_range", json_real(c->initializer_range));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "model_type", json_string(moe ? "mixtral" : mistral ? "mistral" : "llama"));
    if (moe) {
        json_object_set_new(o, "num_experts_per_tok", json_integer(c->num_experts_per_tok));
        json_object_set_new(o, "num_local_experts", json_integer(c->num_local_experts));
        json_object_set_new(o, "output_router_logits", json_boolean(c->output_router_logits));
        json_object_set_new(o, "router_aux_loss_coef", json_real(c->router_aux_loss_coef));
        json_object_set_new(o, "router_jitter_noise", json_real(c->router_jitter_noise));
    }
    json_object_set_new(o, "num_attention_heads", json_integer(c->num_attention_heads));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->num_hidden_layers));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->num_key_value_heads));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
    if (c->rope_scaling == FT_ROPE_LLAMA3) {
        json_t *rs = json_object();
        json_object_set_new(rs, "factor", json_real(c->rope_factor));
        json_object_set_new(rs, "high_freq_factor", json_real(c->rope_high_freq_factor));
        json_object_set_new(rs, "low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(rs, "original_max_position_embeddings",
                            json_integer(c->rope_original_max_position_embeddings));
        json_object_set_new(rs, "rope_type", json_string("llama3"));
        json_object_set_new(o, "rope_scaling", rs);
    } else {
        json_object_set_new(o, "rope_scaling", json_null());
    }
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    if (mistral)
        json_object_set_new(o, "sliding_window", c->sliding_window > 0 ? json_integer(c->sliding_window) : json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_word_embeddings));
    json_object_set_new(o, "torch_dtype", json_string(c->torch_dtype[0] ? c->torch_dtype : "float32"));
    json_object_set_new(o, "transformers_version", json_string("4.44.2"));
    json_object_set_new(o, "use_cache", json_true());
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    /* Print reals with as many digits as the least round one needs (so 1e-05 is written "1e-5"
     * rather than "1.0000000000000001e-05"), which is exact for all of them. */
    const double reals[] = {c->rms_norm_eps,         c->rope_theta,           c->initializer_range,
                            c->rope_factor,          c->rope_low_freq_factor, c->rope_high_freq_factor,
                            c->router_aux_loss_coef, c->router_jitter_noise};
    return write_json(o, reals, sizeof reals / sizeof *reals, path, err);
}

/* Write o (consumed) to path, atomically, its reals with as many digits as `reals` need. */
static ft_status write_json(json_t *o, const double *reals, size_t n_reals, const char *path, ft_err *err) {
    int digits = 7; /* at least 7, so that 500000.0 is not written 5e5 */
    for (size_t i = 0; i < n_reals; i++)
        if (shortest_digits(reals[i]) > digits)
            digits = shortest_digits(reals[i]);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(digits));
    json_decref(o);
    if (!text)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    ft_status s = FT_OK;
    char *withnl = ft_asprintf("%s\n", text);
    free(text);
    if (!withnl)
        return FT_ERR(err, FT_ERR_NOMEM, "out of memory");
    s = ft_file_write_atomic(path, withnl, n + 1, err);
    ft_free(withnl);
    return s;
}

/* ---------------------------------------------------------------- parameters */

size_t ft_model_config_tensors(const ft_model_config *c, ft_tensor_spec *out, size_t cap) {
    size_t n = 0;
    int64_t C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
    int64_t Q = c->num_attention_heads * c->head_dim, KV = c->num_key_value_heads * c->head_dim;
#define SPEC(nd, a, b, ...)                                                   \
    do {                                                                      \
        if (n < cap) {                                                        \
            snprintf(out[n].name, sizeof out[n].name, __VA_ARGS__);           \
            out[n].ndim = (nd);                                               \
            out[n].shape[0] = (a);                                            \
            out[n].shape[1] = (nd) == 2 ? (b) : 0;                            \
        }                                                                     \
        n++;                                                                  \
    } while (0)
    if (ft_model_config_is_dbrx(c)) {
        const int64_t E = c->num_local_experts;
        SPEC(2, V, C, "transformer.wte.weight");
        for (int64_t i = 0; i < c->num_hidden_layers; i++) {
            long long l = (long long)i;
            SPEC(1, C, 0, "transformer.blocks.%lld.norm_attn_norm.norm_1.weight", l);
            SPEC(2, Q + 2 * KV, C, "transformer.blocks.%lld.norm_attn_norm.attn.Wqkv.weight", l);
            SPEC(2, C, Q, "transformer.blocks.%lld.norm_attn_norm.attn.out_proj.weight", l);
            SPEC(1, C, 0, "transformer.blocks.%lld.norm_attn_norm.norm_2.weight", l);
            SPEC(2, E, C, "transformer.blocks.%lld.ffn.router.layer.weight", l);
            SPEC(2, E * F, C, "transformer.blocks.%lld.ffn.experts.mlp.w1", l);
            SPEC(2, E * F, C, "transformer.blocks.%lld.ffn.experts.mlp.v1", l);
            SPEC(2, E * F, C, "transformer.blocks.%lld.ffn.experts.mlp.w2", l);
        }
        SPEC(1, C, 0, "transformer.norm_f.weight");
        SPEC(2, V, C, "lm_head.weight");
        return n;
    }
    SPEC(2, V, C, "model.embed_tokens.weight");
    for (int64_t i = 0; i < c->num_hidden_layers; i++) {
        long long l = (long long)i;
        SPEC(1, C, 0, "model.layers.%lld.input_layernorm.weight", l);
        SPEC(2, Q, C, "model.layers.%lld.self_attn.q_proj.weight", l);
        SPEC(2, KV, C, "model.layers.%lld.self_attn.k_proj.weight", l);
        SPEC(2, KV, C, "model.layers.%lld.self_attn.v_proj.weight", l);
        SPEC(2, C, Q, "model.layers.%lld.self_attn.o_proj.weight", l);
        SPEC(1, C, 0, "model.layers.%lld.post_attention_layernorm.weight", l);
        if (c->num_local_experts > 0) {
            SPEC(2, c->num_local_experts, C, "model.layers.%lld.block_sparse_moe.gate.weight", l);
            for (int64_t e = 0; e < c->num_local_experts; e++) {
                SPEC(2, F, C, "model.layers.%lld.block_sparse_moe.experts.%lld.w1.weight", l, (long long)e);
                SPEC(2, F, C, "model.layers.%lld.block_sparse_moe.experts.%lld.w3.weight", l, (long long)e);
                SPEC(2, C, F, "model.layers.%lld.block_sparse_moe.experts.%lld.w2.weight", l, (long long)e);
            }
            continue;
        }
        SPEC(2, F, C, "model.layers.%lld.mlp.gate_proj.weight", l);
        SPEC(2, F, C, "model.layers.%lld.mlp.up_proj.weight", l);
        SPEC(2, C, F, "model.layers.%lld.mlp.down_proj.weight", l);
    }
    SPEC(1, C, 0, "model.norm.weight");
    if (!c->tie_word_embeddings)
        SPEC(2, V, C, "lm_head.weight");
#undef SPEC
    return n;
}

int64_t ft_tensor_spec_numel(const ft_tensor_spec *t) {
    return t->ndim == 2 ? t->shape[0] * t->shape[1] : t->shape[0];
}

int64_t ft_model_config_n_params(const ft_model_config *c) {
    int64_t C = c->hidden_size, V = c->vocab_size, F = c->intermediate_size;
    int64_t Q = c->num_attention_heads * c->head_dim, KV = c->num_key_value_heads * c->head_dim;
    int64_t E = c->num_local_experts;
    int64_t per_layer = 2 * C + Q * C + 2 * KV * C + C * Q + (E > 0 ? 3 * F * C * E + E * C : 3 * F * C);
    return V * C + c->num_hidden_layers * per_layer + C + (c->tie_word_embeddings ? 0 : V * C);
}
