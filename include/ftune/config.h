/* ftune/config.h: a Llama-family model's architecture, read from Hugging Face config.json
 * (LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, DbrxForCausalLM). Implemented in
 * src/model/config.c.
 *
 * Changes since the first draft (additive): the sparse mixture-of-experts fields of Mixtral
 * (num_local_experts > 0 makes every layer's MLP a top-k routed set of SwiGLU experts); DBRX's
 * config (d_model, n_heads, ..., attn_config, ffn_config) read into the same fields plus clip_qkv
 * and moe_normalize_expert_weights. */
#ifndef FTUNE_CONFIG_H
#define FTUNE_CONFIG_H

#include "ftune/base.h"

typedef enum ft_rope_scaling_type { FT_ROPE_NONE = 0, FT_ROPE_LLAMA3 } ft_rope_scaling_type;

typedef struct ft_model_config {
    char architecture[64]; /* "LlamaForCausalLM" | "MistralForCausalLM" | "MixtralForCausalLM" | "DbrxForCausalLM" */
    char model_type[32];   /* "llama" | "mistral" | "mixtral" | "dbrx" */
    int64_t vocab_size;
    int64_t hidden_size;       /* C */
    int64_t intermediate_size; /* F: SwiGLU width */
    int64_t num_hidden_layers; /* L */
    int64_t num_attention_heads; /* NH */
    int64_t num_key_value_heads; /* KVH (== NH: MHA, 1: MQA, else GQA) */
    int64_t head_dim;            /* HD, default hidden_size / num_attention_heads */
    double rms_norm_eps;
    double rope_theta;
    ft_rope_scaling_type rope_scaling;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor; /* llama3 scaling */
    int64_t rope_original_max_position_embeddings;
    bool tie_word_embeddings;
    int64_t max_position_embeddings;
    int64_t sliding_window; /* 0: none */
    int64_t bos_token_id;   /* -1: none */
    int64_t eos_token_ids[8];
    int n_eos;
    int64_t pad_token_id; /* -1: none */
    double initializer_range;
    char torch_dtype[16]; /* "float32" | "bfloat16" | "float16" */
    /* Sparse mixture of experts (Mixtral); num_local_experts 0: a dense SwiGLU MLP. */
    int64_t num_local_experts;   /* E */
    int64_t num_experts_per_tok; /* K: experts each token is routed to */
    double router_aux_loss_coef; /* the load-balancing loss's weight in the training loss ... */
    bool output_router_logits;   /* ... which transformers adds only when this is true */
    double router_jitter_noise;  /* training-time router noise: read, refused for training */
    /* DBRX (DbrxForCausalLM) maps its config onto the fields above: d_model -> hidden_size, n_heads,
     * n_layers, max_seq_len -> max_position_embeddings, attn_config.kv_n_heads -> num_key_value_heads,
     * attn_config.rope_theta, ffn_config.ffn_hidden_size -> intermediate_size, moe_num_experts,
     * moe_top_k, moe_loss_weight -> router_aux_loss_coef, moe_jitter_eps -> router_jitter_noise
     * (null: 0). Its norms are LayerNorm without bias with eps 1e-5 (kept in rms_norm_eps). */
    double clip_qkv;                     /* attn_config.clip_qkv: Wqkv's output clamped to +-it; 0: null */
    double moe_normalize_expert_weights; /* the top-k weights are divided by their p-norm; 0: null (not) */
} ft_model_config;

/* Whether the config is DBRX's architecture (its layout, names and norms). */
bool ft_model_config_is_dbrx(const ft_model_config *c);

/* Defaults as transformers' LlamaConfig has them (eps 1e-6, theta 10000, ...). */
void ft_model_config_default(ft_model_config *c);
/* Parse config.json; errors name the file and the key. Unknown rope_scaling types are
 * FT_ERR_UNSUPPORTED. */
ft_status ft_model_config_load(const char *path, ft_model_config *c, ft_err *err);
/* The same from text in memory; `name` labels errors (tests, the fuzzer). */
ft_status ft_model_config_load_buf(const char *name, const char *data, size_t len, ft_model_config *c, ft_err *err);
/* Write config.json as transformers writes it for this architecture (atomic). */
ft_status ft_model_config_save(const ft_model_config *c, const char *path, ft_err *err);
/* Check internal consistency (heads divide, positive sizes). */
ft_status ft_model_config_validate(const ft_model_config *c, ft_err *err);
/* The load-balancing loss's coefficient as the training loss uses it: router_aux_loss_coef (DBRX:
 * moe_loss_weight) when the model is a mixture of experts with output_router_logits, else 0. */
double ft_model_config_aux_coef(const ft_model_config *c);
/* Number of parameters (tied embeddings counted once). */
int64_t ft_model_config_n_params(const ft_model_config *c);

/* The parameter tensors in Hugging Face order, names and shapes (row-major, as PyTorch stores
 * nn.Linear weights: (out_features, in_features)):
 *   model.embed_tokens.weight                          (V, C)
 *   per layer i:
 *   model.layers.i.input_layernorm.weight              (C)
 *   model.layers.i.self_attn.q_proj.weight             (NH*HD, C)
 *   model.layers.i.self_attn.k_proj.weight             (KVH*HD, C)
 *   model.layers.i.self_attn.v_proj.weight             (KVH*HD, C)
 *   model.layers.i.self_attn.o_proj.weight             (C, NH*HD)
 *   model.layers.i.post_attention_layernorm.weight     (C)
 *   model.layers.i.mlp.gate_proj.weight                (F, C)
 *   model.layers.i.mlp.up_proj.weight                  (F, C)
 *   model.layers.i.mlp.down_proj.weight                (C, F)
 *   a mixture of experts (Mixtral) has instead of the three mlp tensors:
 *   model.layers.i.block_sparse_moe.gate.weight        (E, C)  the router
 *   model.layers.i.block_sparse_moe.experts.e.w1.weight (F, C) per expert e: gate,
 *   model.layers.i.block_sparse_moe.experts.e.w3.weight (F, C) up (listed before w2 so that
 *   model.layers.i.block_sparse_moe.experts.e.w2.weight (C, F) w1|w3 lie back to back), down
 *   model.norm.weight                                  (C)
 *   lm_head.weight                                     (V, C)   unless tie_word_embeddings
 * Norm weights (ndim 1) are initialised to 1, all others to normal(0, initializer_range). */
typedef struct ft_tensor_spec {
    char name[96];
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* shape[1] is 0 when ndim == 1 */
} ft_tensor_spec;
/* DBRX has its own names and fused layouts (never tied):
 *   transformer.wte.weight                                   (V, C)
 *   transformer.blocks.i.norm_attn_norm.norm_1.weight        (C)     LayerNorm, no bias
 *   transformer.blocks.i.norm_attn_norm.attn.Wqkv.weight     (Q + 2 KV, C)
 *   transformer.blocks.i.norm_attn_norm.attn.out_proj.weight (C, Q)
 *   transformer.blocks.i.norm_attn_norm.norm_2.weight        (C)
 *   transformer.blocks.i.ffn.router.layer.weight             (E, C)
 *   transformer.blocks.i.ffn.experts.mlp.w1                  (E F, C) gate, expert e's rows e F ..
 *   transformer.blocks.i.ffn.experts.mlp.v1                  (E F, C) up
 *   transformer.blocks.i.ffn.experts.mlp.w2                  (E F, C) down, used untransposed: h w2_e
 *   transformer.norm_f.weight                                (C)
 *   lm_head.weight                                           (V, C)
 * Fill out[0..cap) and return the number of tensors (2 + 9 L + (tied ? 0 : 1), with experts
 * 2 + (7 + 3 E) L + (tied ? 0 : 1), DBRX 3 + 8 L); call with cap 0 to size the array. */
size_t ft_model_config_tensors(const ft_model_config *c, ft_tensor_spec *out, size_t cap);
/* Elements of one spec. */
int64_t ft_tensor_spec_numel(const ft_tensor_spec *t);

#endif
