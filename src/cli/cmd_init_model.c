/* cli/cmd_init_model.c: `ftune init-model`: write a randomly initialised Llama-family model
 * (Llama, Mistral, Mixtral, DBRX in its own layout and names) as an HF folder (config.json, model.safetensors, generation_config.json, tokenizer files). No hub is
 * reachable, so this is how tests, benchmarks and the demo get models.
 *
 * Init as transformers' LlamaPreTrainedModel._init_weights: every matrix normal(0,
 * initializer_range), RMSNorm weights 1. Values come from ft_rng seeded by --seed (see fill_block)
 * and go to disk chunk by chunk, so even a large model needs only a few MiB. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ftune/hf.h"
#include "ftune/json.h"

typedef struct init_ctx {
    uint64_t seed;
    float std;
} init_ctx;

/* Values are drawn in blocks of 64 Ki elements, each from its own generator seeded by (seed,
 * tensor, block): blocks are independent, so they are filled in parallel and the result does
 * not depend on the thread count or on how the export chunks the tensor. Box-Muller gives two
 * normals per pair of uniforms. */
#define INIT_BLOCK ((int64_t)1 << 16)

static void fill_block(uint64_t seed, size_t index, int64_t block, int64_t from, int64_t to, float std, float *out) {
    ft_rng r;
    ft_rng_seed(&r, seed ^ ((uint64_t)index * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)block * 0xd1b54a32d192ed03ull));
    /* from/to: the element range within the block; earlier pairs are generated and dropped. */
    for (int64_t i = 0; i < to; i += 2) {
        double u1 = ft_rng_double(&r), u2 = ft_rng_double(&r);
        if (i + 1 < from)
            continue;
        if (u1 < 1e-300)
            u1 = 1e-300;
        double rad = sqrt(-2.0 * log(u1)) * std, a = 6.283185307179586 * u2;
        if (i >= from)
            out[i - from] = (float)(rad * cos(a));
        if (i + 1 >= from && i + 1 < to)
            out[i + 1 - from] = (float)(rad * sin(a));
    }
}

static ft_status fill_random(void *ctx, size_t index, const ft_tensor_spec *t, int64_t offset, float *out, int64_t n,
                             ft_err *err) {
    (void)err;
    init_ctx *c = ctx;
    if (t->ndim == 1) { /* the RMSNorm weights */
        for (int64_t i = 0; i < n; i++)
            out[i] = 1.0f;
        return FT_OK;
    }
    int64_t b0 = offset / INIT_BLOCK, b1 = (offset + n - 1) / INIT_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t b = b0; b <= b1; b++) {
        int64_t lo = b * INIT_BLOCK > offset ? b * INIT_BLOCK : offset;
        int64_t hi = (b + 1) * INIT_BLOCK < offset + n ? (b + 1) * INIT_BLOCK : offset + n;
        fill_block(c->seed, index, b, lo - b * INIT_BLOCK, hi - b * INIT_BLOCK, c->std, out + (lo - offset));
    }
    return FT_OK;
}

static const cli_opt opts[] = {
    {"out", CLI_STR, "DIR: folder to write (created; one that holds a model is refused without --force)"},
    {"force", CLI_FLAG, "replace the model files in an --out folder that already holds a model"},
    {"vocab-size", CLI_INT, "N: vocabulary size (V)"},
    {"hidden-size", CLI_INT, "N: model width (C)"},
    {"intermediate-size", CLI_INT, "N: SwiGLU width (F)"},
    {"layers", CLI_INT, "N: decoder layers (L)"},
    {"heads", CLI_INT, "N: attention heads"},
    {"kv-heads", CLI_INT, "N: key/value heads (default: --heads; 1 = MQA)"},
    {"head-dim", CLI_INT, "N: per-head width (default hidden/heads)"},
    {"tie-embeddings", CLI_FLAG, "share the embedding with the LM head"},
    {"rope-theta", CLI_FLOAT, "X: RoPE base (default 10000)"},
    {"max-position-embeddings", CLI_INT, "N: longest context (default 2048)"},
    {"rope-scaling-llama3", CLI_FLOAT, "FACTOR: llama3 RoPE scaling with this factor"},
    {"rope-low-freq-factor", CLI_FLOAT, "X: llama3 scaling low_freq_factor (default 1)"},
    {"rope-high-freq-factor", CLI_FLOAT, "X: llama3 scaling high_freq_factor (default 4)"},
    {"rope-original-max-position-embeddings", CLI_INT, "N: llama3 scaling original context (default: max positions)"},
    {"rms-norm-eps", CLI_FLOAT, "X: RMSNorm epsilon (default 1e-5)"},
    {"architecture", CLI_STR,
     "NAME: LlamaForCausalLM (default), MistralForCausalLM, MixtralForCausalLM or DbrxForCausalLM"},
    {"arch", CLI_STR, "llama | mistral | mixtral | dbrx: the same as --architecture"},
    {"experts", CLI_INT, "E: experts per layer (num_local_experts; DBRX moe_num_experts) (default 8; DBRX 16)"},
    {"experts-per-tok", CLI_INT, "K: experts each token is routed to (num_experts_per_tok; DBRX moe_top_k) "
                                 "(default 2; DBRX 4)"},
    {"router-aux-loss-coef", CLI_FLOAT,
     "X: the load-balancing loss coefficient (Mixtral router_aux_loss_coef, default 0.001; DBRX moe_loss_weight, "
     "default 0.05)"},
    {"output-router-logits", CLI_FLAG, "Mixtral, DBRX: train with the load-balancing loss (output_router_logits)"},
    {"clip-qkv", CLI_FLOAT, "X: DBRX: clamp Wqkv's output to +-X (attn_config.clip_qkv; default 8, 0: none)"},
    {"moe-normalize-expert-weights", CLI_FLOAT,
     "P: DBRX: divide the top-k weights by their P-norm (default 1; 0: null, not divided)"},
    {"sliding-window", CLI_INT, "N: Mistral attention window (default none)"},
    {"tokenizer", CLI_STR, "DIR: copy the tokenizer files from this folder"},
    {"bos-token-id", CLI_INT, "N: BOS id (default: the tokenizer's, none if it has none; without --tokenizer 1)"},
    {"eos-token-id", CLI_STR_LIST, "N: EOS id(s) when the tokenizer does not say (default 2; repeatable)"},
    {"seed", CLI_INT, "S: random seed (default 0)"},
    {"std", CLI_FLOAT, "X: init standard deviation, initializer_range (default 0.02)"},
    {"dtype", CLI_STR, "float32 (default) | bfloat16"},
    {"shard-size", CLI_INT, "BYTES: shard the weights above this size (default 5000000000)"},
    {NULL, 0, NULL},
};

static const char *synopsis =
    "--out DIR --vocab-size N --hidden-size N --intermediate-size N --layers N --heads N [--kv-heads N] "
    "[--head-dim N] [--tie-embeddings] [--rope-theta X] [--max-position-embeddings N] [--rope-scaling-llama3 F] "
    "[--tokenizer DIR] [--seed S] [--dtype float32|bfloat16]";

int cmd_init_model(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&a, "init-model", synopsis, opts, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *required[] = {"out", "vocab-size", "hidden-size", "intermediate-size", "layers", "heads"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (!cli_has(&a, required[i])) {
            cli_args_free(&a);
            return cli_usage_error("init-model", required[i], "is required");
        }
    ft_model_config c;
    ft_model_config_default(&c);
    const char *arch = cli_str(&a, "architecture", cli_str(&a, "arch", "LlamaForCausalLM"));
    const bool dbrx = !strcmp(arch, "DbrxForCausalLM") || !strcmp(arch, "dbrx");
    const bool moe = !strcmp(arch, "MixtralForCausalLM") || !strcmp(arch, "mixtral") || dbrx;
    if (dbrx) {
        /* DBRX: LayerNorm (eps 1e-5), no tied head, no window; DBRX-132B's routing shape by default */
        static const char *const not_dbrx[] = {"tie-embeddings", "sliding-window", "rope-scaling-llama3",
                                               "rms-norm-eps", "head-dim"};
        for (size_t i = 0; i < sizeof not_dbrx / sizeof *not_dbrx; i++)
            if (cli_has(&a, not_dbrx[i])) {
                cli_args_free(&a);
                return cli_usage_error("init-model", not_dbrx[i], "does not apply to DbrxForCausalLM");
            }
        snprintf(c.architecture, sizeof c.architecture, "DbrxForCausalLM");
        snprintf(c.model_type, sizeof c.model_type, "dbrx");
        c.num_local_experts = cli_int(&a, "experts", 16);
        c.num_experts_per_tok = cli_int(&a, "experts-per-tok", 4);
        c.router_aux_loss_coef = cli_float(&a, "router-aux-loss-coef", 0.05);
        c.output_router_logits = cli_has(&a, "output-router-logits");
        c.clip_qkv = cli_float(&a, "clip-qkv", 8.0);
        c.moe_normalize_expert_weights = cli_float(&a, "moe-normalize-expert-weights", 1.0);
        if (c.num_local_experts < 1 || c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_local_experts) {
            cli_args_free(&a);
            return cli_usage_error("init-model", "experts-per-tok",
                                   "must be between 1 and --experts (got %lld of %lld experts)",
                                   (long long)c.num_experts_per_tok, (long long)c.num_local_experts);
        }
    } else if (cli_has(&a, "clip-qkv") || cli_has(&a, "moe-normalize-expert-weights")) {
        cli_args_free(&a);
        return cli_usage_error("init-model", cli_has(&a, "clip-qkv") ? "clip-qkv" : "moe-normalize-expert-weights",
                               "only DbrxForCausalLM (--arch dbrx) has it");
    } else if (!strcmp(arch, "MistralForCausalLM") || !strcmp(arch, "mistral")) {
        snprintf(c.architecture, sizeof c.architecture, "MistralForCausalLM");
        snprintf(c.model_type, sizeof c.model_type, "mistral");
    } else if (moe) {
        snprintf(c.architecture, sizeof c.architecture, "MixtralForCausalLM");
        snprintf(c.model_type, sizeof c.model_type, "mixtral");
        c.num_local_experts = cli_int(&a, "experts", 8);
        c.num_experts_per_tok = cli_int(&a, "experts-per-tok", 2);
        c.router_aux_loss_coef = cli_float(&a, "router-aux-loss-coef", 0.001);
        c.output_router_logits = cli_has(&a, "output-router-logits");
        if (c.num_local_experts < 1 || c.num_experts_per_tok < 1 || c.num_experts_per_tok > c.num_local_experts) {
            cli_args_free(&a);
            return cli_usage_error("init-model", "experts-per-tok",
                                   "must be between 1 and --experts (got %lld of %lld experts)",
                                   (long long)c.num_experts_per_tok, (long long)c.num_local_experts);
        }
    } else if (strcmp(arch, "LlamaForCausalLM") != 0 && strcmp(arch, "llama") != 0) {
        cli_args_free(&a);
        return cli_usage_error("init-model", "architecture",
                               "\"%s\" is not supported (LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, "
                               "DbrxForCausalLM)",
                               arch);
    }
    if (!moe && (cli_has(&a, "experts") || cli_has(&a, "experts-per-tok"))) {
        cli_args_free(&a);
        return cli_usage_error("init-model", "experts",
                               "only a mixture of experts (--arch mixtral or dbrx) has experts");
    }
    c.vocab_size = cli_int(&a, "vocab-size", 0);
    c.hidden_size = cli_int(&a, "hidden-size", 0);
    c.intermediate_size = cli_int(&a, "intermediate-size", 0);
    c.num_hidden_layers = cli_int(&a, "layers", 0);
    c.num_attention_heads = cli_int(&a, "heads", 0);
    c.num_key_value_heads = cli_int(&a, "kv-heads", c.num_attention_heads);
    c.head_dim = cli_int(&a, "head-dim", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
    c.tie_word_embeddings = cli_has(&a, "tie-embeddings");
    c.rope_theta = cli_float(&a, "rope-theta", 10000.0);
    c.max_position_embeddings = cli_int(&a, "max-position-embeddings", 2048);
    c.rms_norm_eps = dbrx ? 1e-5 : cli_float(&a, "rms-norm-eps", 1e-5);
    c.sliding_window = cli_int(&a, "sliding-window", 0);
    c.initializer_range = cli_float(&a, "std", 0.02);
    if (c.sliding_window && strcmp(c.architecture, "MistralForCausalLM") != 0 && !moe) {
        cli_args_free(&a);
        return cli_usage_error("init-model", "sliding-window",
                               "only MistralForCausalLM and MixtralForCausalLM have a sliding window");
    }
    if (cli_has(&a, "rope-scaling-llama3")) {
        c.rope_scaling = FT_ROPE_LLAMA3;
        c.rope_factor = cli_float(&a, "rope-scaling-llama3", 8.0);
        c.rope_low_freq_factor = cli_float(&a, "rope-low-freq-factor", 1.0);
        c.rope_high_freq_factor = cli_float(&a, "rope-high-freq-factor", 4.0);
        c.rope_original_max_position_embeddings =
            cli_int(&a, "rope-original-max-position-embeddings", c.max_position_embeddings);
    }
    const char *dtype = cli_str(&a, "dtype", "float32");
    ft_hf_export_params p = ft_hf_export_default_params();
    if (!strcmp(dtype, "float32") || !strcmp(dtype, "fp32"))
        p.dtype = FT_ST_DTYPE_F32;
    else if (!strcmp(dtype, "bfloat16") || !strcmp(dtype, "bf16"))
        p.dtype = FT_ST_DTYPE_BF16;
    else {
        cli_args_free(&a);
        return cli_usage_error("init-model", "dtype", "expected float32 or bfloat16, got \"%s\"", dtype);
    }
    if (cli_has(&a, "shard-size")) {
        if (cli_int(&a, "shard-size", 0) <= 0) {
            cli_args_free(&a);
            return cli_usage_error("init-model", "shard-size", "must be positive");
        }
        p.max_shard_bytes = (uint64_t)cli_int(&a, "shard-size", 0);
    }

    /* Special token ids: the tokenizer's when it names them, else the flags, else Llama's 1/2. */
    ft_err err;
    ft_err_clear(&err);
    const char *tok = cli_str(&a, "tokenizer", NULL);
    int64_t tbos = -1, teos = -1, tvocab = 0;
    if (tok) {
        if (ft_hf_tokenizer_ids(tok, &tbos, &teos, &tvocab, &err) != FT_OK) {
            cli_args_free(&a);
            return cli_report("init-model", &err);
        }
        if (tvocab > c.vocab_size) {
            cli_args_free(&a);
            return cli_usage_error("init-model", "vocab-size",
                                   "%lld is smaller than the tokenizer's %lld tokens (ids up to %lld)",
                                   (long long)c.vocab_size, (long long)tvocab, (long long)tvocab - 1);
        }
        p.tokenizer_dir = tok;
        p.require_tokenizer = true;
    }
    /* A tokenizer without a BOS token (Qwen's "bos_token": null) means the model has none. */
    c.bos_token_id = cli_has(&a, "bos-token-id") ? cli_int(&a, "bos-token-id", 1) : tok ? tbos : dbrx ? -1 : 1;
    size_t n_eos;
    const char **eos = cli_list(&a, "eos-token-id", &n_eos);
    if (n_eos > 8) {
        cli_args_free(&a);
        return cli_usage_error("init-model", "eos-token-id", "at most 8 ids");
    }
    if (n_eos) {
        for (size_t i = 0; i < n_eos; i++) {
            char *end;
            c.eos_token_ids[i] = strtoll(eos[i], &end, 10);
            if (end == eos[i] || *end) {
                cli_args_free(&a);
                return cli_usage_error("init-model", "eos-token-id", "expected an integer, got \"%s\"", eos[i]);
            }
        }
        c.n_eos = (int)n_eos;
    } else {
        c.eos_token_ids[0] = teos >= 0 ? teos : 2;
        c.n_eos = 1;
    }
    if (ft_model_config_validate(&c, &err) != FT_OK) {
        cli_args_free(&a);
        return cli_usage_error("init-model", NULL, "%s", err.msg);
    }

    init_ctx ctx = {.seed = (uint64_t)cli_int(&a, "seed", 0), .std = (float)c.initializer_range};
    const char *out = cli_str(&a, "out", NULL);
    char *dir = NULL;
    ft_status s = ft_path_map(out, &dir, &err);
    /* Random weights written over a real model's files would destroy it: a folder that already
     * holds a model (config.json or weights) is only replaced on request. */
    if (s == FT_OK && !cli_has(&a, "force")) {
        char *cfg = ft_path_join(dir, "config.json"), *w = ft_path_join(dir, "model.safetensors"),
             *wi = ft_path_join(dir, "model.safetensors.index.json");
        bool has = (cfg && ft_path_exists(cfg)) || (w && ft_path_exists(w)) || (wi && ft_path_exists(wi));
        ft_free(cfg);
        ft_free(w);
        ft_free(wi);
        if (has) {
            ft_free(dir);
            cli_args_free(&a);
            return cli_usage_error("init-model", "out",
                                   "%s already holds a model (config.json or model.safetensors): writing random "
                                   "weights there would replace it; choose a new folder, or add --force",
                                   out);
        }
    }
    if (s == FT_OK)
        s = ft_hf_export(dir, &c, fill_random, &ctx, &p, &err);
    ft_free(dir);
    if (s != FT_OK) {
        cli_args_free(&a);
        ft_err_prefix(&err, "writing %s", out);
        return cli_report("init-model", &err);
    }
    int64_t n_params = ft_model_config_n_params(&c);
    if (cli_has(&a, "json")) {
        json_t *j = json_pack("{s:s, s:I}", "out", out, "n_params", (json_int_t)n_params);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(j);
    }
    else
        printf("wrote %s: %lld parameters (%s, %lld layers, hidden %lld)\n", out, (long long)n_params, c.architecture,
               (long long)c.num_hidden_layers, (long long)c.hidden_size);
    cli_args_free(&a);
    return CLI_EXIT_OK;
}
