/* cli/cmd_bench.c: `ftune bench train-step --config small|medium|1b [--dtype fp32|bf16|auto] [--steps N]
 * [--json]` (issue #2 item 9): times full training steps (ft_train_step, the trainer's step: zero
 * grads, forward + backward, clipping fused into DecoupledAdamW) of a randomly initialised model
 * on random tokens, and prints
 * tokens/s, GFLOP/s by the formula 6 N_matmul + 6 L T d per token (N_matmul: weights used in
 * matrix products, the LM head included; d = heads * head_dim) and peak memory.
 * bench/train_step.bench.sh runs it beside the PyTorch peer (bench/train_step_torch.py). */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "ftune/memplan.h"
#include "ftune/model.h"
#include "ftune/optim.h"
#include "ftune/tensor.h"
#include "ftune/train.h"

static const char SYNOPSIS[] = "--config small|medium|1b [--dtype fp32|bf16|auto] [--activation-checkpointing auto|on|off] "
                               "[--steps N] [--warmup N] [--threads N] [--json]";
static const cli_opt OPTS[] = {
    {"config", CLI_STR,
     "small (V 32000, C 288, L 6, 6/6 heads, F 768, tied, T 256, B 8) | medium (V 32000, C 768, "
     "L 12, 12/4 heads, F 2048, untied, T 512, B 4) | 1b (Llama-3.2-1B's shape: V 128256, C 2048, L 16, 32/8 "
     "heads, F 8192, tied, T 2048, B 1) | moe-small (Mixtral-shaped: V 32000, C 512, L 8, 8/8 heads, 8 experts "
     "of F 1024, top-2, aux loss on, untied, T 512, B 2) | moe-dense (moe-small's active parameters as a dense "
     "Llama: F 2048) | dbrx-small (moe-small's shape as DBRX: LayerNorm, Wqkv clamped at 8, fused w1/v1/w2)"},
    {"dtype", CLI_STR, "fp32 (default) | bf16 (mixed precision: bf16 GEMM operands, fp32 masters) | auto"},
    {"activation-checkpointing", CLI_STR,
     "auto (default: on only when the memory planner says the step does not fit without it) | on | off"},
    {"steps", CLI_INT, "N: timed steps (default 10 small, 4 medium)"},
    {"warmup", CLI_INT, "N: untimed steps first (default 1)"},
    {"threads", CLI_INT, "N: threads (default: all cores)"},
    {"optimizer", CLI_STR, "adamw (default) | lion"},
    {"memory-limit", CLI_STR, "20G | 80%: the predicted peak must fit (default 95% of the available memory)"},
    {NULL, 0, NULL},
};

typedef struct bench_cfg {
    const char *name;
    int64_t V, C, L, NH, KVH, F, T, B;
    bool tied;
    int64_t E, K; /* experts, experts per token (0: dense) */
    bool dbrx;    /* DbrxForCausalLM instead of Mixtral */
} bench_cfg;

static const bench_cfg CONFIGS[] = {
    {"small", 32000, 288, 6, 6, 6, 768, 256, 8, true, 0, 0, false},
    {"medium", 32000, 768, 12, 12, 4, 2048, 512, 4, false, 0, 0, false},
    {"1b", 128256, 2048, 16, 32, 8, 8192, 2048, 1, true, 0, 0, false},
    /* issue #14: a Mixtral-shaped step, and the dense model with its active parameters */
    {"moe-small", 32000, 512, 8, 8, 8, 1024, 512, 2, false, 8, 2, false},
    {"moe-dense", 32000, 512, 8, 8, 8, 2048, 512, 2, false, 0, 0, false},
    {"dbrx-small", 32000, 512, 8, 8, 8, 1024, 512, 2, false, 8, 2, true},
};

/* User + system CPU seconds of this process: with the wall time it shows how much of the machine
 * the run actually had (the bench machine may be shared). */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static int train_step(int argc, char **argv) {
    const char *cmd = "bench train-step";
    cli_args a;
    int rc = cli_parse(&a, cmd, SYNOPSIS, OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *name = cli_str(&a, "config", NULL), *dtype = cli_str(&a, "dtype", "fp32");
    const bench_cfg *bc = NULL;
    for (size_t i = 0; name && i < sizeof CONFIGS / sizeof *CONFIGS; i++)
        if (!strcmp(name, CONFIGS[i].name))
            bc = &CONFIGS[i];
    ft_optim_kind kind = FT_OPTIM_ADAMW;
    ft_dtype dt = FT_DTYPE_FP32;
    int64_t steps = 0, warmup = cli_int(&a, "warmup", 1);
    const char *ckpt = cli_str(&a, "activation-checkpointing", "auto");
    if (!bc)
        rc = cli_usage_error(cmd, "config", "must be small, medium, 1b, moe-small, moe-dense or dbrx-small");
    else if (strcmp(ckpt, "auto") && strcmp(ckpt, "on") && strcmp(ckpt, "off"))
        rc = cli_usage_error(cmd, "activation-checkpointing", "must be auto, on or off");
    else if (strcmp(dtype, "auto") && !ft_dtype_parse(dtype, &dt))
        rc = cli_usage_error(cmd, "dtype", "must be fp32, bf16 or auto, not \"%s\"", dtype);
    else if ((steps = cli_int(&a, "steps", !strcmp(bc->name, "small") ? 10 : !strcmp(bc->name, "1b") ? 2 : 4)) <= 0 ||
             steps > 100000)
        rc = cli_usage_error(cmd, "steps", "must be between 1 and 100000");
    else if (warmup < 0 || warmup > 1000)
        rc = cli_usage_error(cmd, "warmup", "must be between 0 and 1000");
    else if (!ft_optim_kind_parse(cli_str(&a, "optimizer", "adamw"), &kind))
        rc = cli_usage_error(cmd, "optimizer", "must be adamw or lion");
    if (rc) {
        cli_args_free(&a);
        return rc;
    }
    bool json = cli_has(&a, "json");
    ft_err gerr;
    if (ft_tensor_gemm_env_check(&gerr) != FT_OK) {
        cli_args_free(&a);
        return cli_usage_error(cmd, NULL, "%s", gerr.msg);
    }
    const char *dtype_why = "";
    if (!strcmp(dtype, "auto"))
        dt = ft_tensor_auto_dtype(&dtype_why);
    else if (dt == FT_DTYPE_BF16)
        ft_tensor_bf16_route(&dtype_why);

    ft_model_config c;
    ft_model_config_default(&c);
    c.vocab_size = bc->V;
    c.hidden_size = bc->C;
    c.num_hidden_layers = bc->L;
    c.num_attention_heads = bc->NH;
    c.num_key_value_heads = bc->KVH;
    c.head_dim = bc->C / bc->NH;
    c.intermediate_size = bc->F;
    c.tie_word_embeddings = bc->tied;
    c.max_position_embeddings = bc->T;
    c.rms_norm_eps = 1e-5;
    if (bc->E > 0) {
        snprintf(c.architecture, sizeof c.architecture, "MixtralForCausalLM");
        snprintf(c.model_type, sizeof c.model_type, "mixtral");
        c.num_local_experts = bc->E;
        c.num_experts_per_tok = bc->K;
        c.router_aux_loss_coef = 0.001;
        c.output_router_logits = true;
    }
    if (bc->dbrx) {
        snprintf(c.architecture, sizeof c.architecture, "DbrxForCausalLM");
        snprintf(c.model_type, sizeof c.model_type, "dbrx");
        c.clip_qkv = 8.0;
        c.moe_normalize_expert_weights = 1.0;
        c.router_aux_loss_coef = 0.05;
        c.bos_token_id = -1;
        c.n_eos = 0;
    }
    ft_model_params p = ft_model_default_params();
    p.training = true;
    int threads = (int)cli_int(&a, "threads", 0);
    if (threads > 0)
        ft_tensor_set_threads(threads);
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_batch = bc->B;
    wp.max_seq = bc->T;
    wp.training = true;
    wp.dtype = dt;
    ft_err err = {0};
    /* The memory planner: checkpointing (auto: only if needed) within the limit; a step that
     * cannot fit is refused before anything is allocated. */
    ft_memplan_machine mm;
    ft_memplan_machine_read(&mm);
    uint64_t limit = mm.available ? ft_memplan_default_limit(&mm) : UINT64_MAX / 2;
    if (cli_has(&a, "memory-limit") &&
        ft_memplan_parse_limit(cli_str(&a, "memory-limit", ""), &mm, &limit, &err) != FT_OK) {
        cli_args_free(&a);
        return cli_usage_error(cmd, "memory-limit", "%s", err.msg);
    }
    ft_memplan_params mpp = ft_memplan_default_params(&c);
    mpp.optimizer = kind;
    mpp.dtype = dt;
    mpp.micro_batch = bc->B;
    mpp.context_length = bc->T;
    mpp.threads = threads;
    ft_memplan_ckpt mck = FT_MEMPLAN_CKPT_AUTO;
    ft_memplan_ckpt_parse(ckpt, &mck);
    ft_memplan_choice plan;
    if (ft_memplan_fit(&mpp, 0, mck, limit, &plan, &err) != FT_OK) {
        cli_args_free(&a);
        return cli_usage_error(cmd, NULL, "%s", err.msg);
    }
    wp.checkpointing = plan.checkpointing;
    ft_model *m = NULL;
    ft_workspace *ws = NULL;
    ft_optim *o = NULL;
    int64_t N = bc->B * bc->T;
    int32_t *ids = ft_malloc((size_t)N * sizeof(int32_t)), *tgt = ft_malloc((size_t)N * sizeof(int32_t));
    ft_status s = ids && tgt ? FT_OK : FT_ERR(&err, FT_ERR_NOMEM, "out of memory");
    if (s == FT_OK)
        s = ft_model_new_random(&c, 1234, &p, &m, &err);
    if (s == FT_OK)
        s = ft_workspace_new(m, &wp, &ws, &err);
    if (s == FT_OK) {
        ft_optim_params op = ft_optim_default_params(kind);
        op.peak_lr = 1e-4;
        s = ft_optim_new(m, &op, &o, &err);
    }
    ft_rng r;
    ft_rng_seed(&r, 42);
    for (int64_t i = 0; i < N; i++)
        ids[i] = (int32_t)ft_rng_below(&r, (uint64_t)bc->V);
    for (int64_t i = 0; i < N; i++) /* next token; the last of each row a random one */
        tgt[i] = (i + 1) % bc->T ? ids[i + 1] : (int32_t)ft_rng_below(&r, (uint64_t)bc->V);
    ft_batch b = {bc->B, bc->T, ids, tgt, NULL, NULL};
    double loss_first = 0, loss_last = 0, t_all = 0, cpu_all = 0;
    ft_train_step_params sp = {.micro = bc->B, .denom = (double)N, .lr = 1e-4, .max_norm = 1.0};
    for (int64_t k = 0; s == FT_OK && k < warmup + steps; k++) {
        double t0 = ft_time_now(), c0 = cpu_seconds();
        ft_train_step_result sr;
        s = ft_train_step(m, ws, o, &b, &sp, &sr, &err);
        double t2 = ft_time_now();
        if (k == 0)
            loss_first = sr.loss;
        loss_last = sr.loss;
        if (k >= warmup) {
            t_all += t2 - t0;
            cpu_all += cpu_seconds() - c0;
        }
        if (!json)
            fprintf(stderr, "%s step %lld/%lld: loss %.4f, %.2f s\n", k < warmup ? "warmup" : "timed",
                    (long long)(k < warmup ? k + 1 : k - warmup + 1), (long long)(k < warmup ? warmup : steps),
                    sr.loss, t2 - t0);
    }
    if (s != FT_OK) {
        rc = cli_report(cmd, &err);
    } else {
        int64_t Q = c.num_attention_heads * c.head_dim, KV = c.num_key_value_heads * c.head_dim;
        /* a mixture of experts counts the weights a token uses: K experts and the router */
        int64_t mlp = bc->E > 0 ? 3 * c.hidden_size * c.intermediate_size * bc->K + bc->E * c.hidden_size
                                : 3 * c.hidden_size * c.intermediate_size;
        double n_matmul = (double)c.num_hidden_layers * (double)(c.hidden_size * (Q + 2 * KV) + Q * c.hidden_size + mlp) +
                          (double)c.vocab_size * (double)c.hidden_size;
        double flops_tok = 6.0 * n_matmul + 6.0 * (double)c.num_hidden_layers * (double)bc->T * (double)Q;
        double tps = (double)(N * steps) / t_all;
        size_t mp, mg, ma = ft_workspace_size(ws);
        ft_model_memory(m, &mp, &mg);
        double mo = (double)(ft_optim_n_state(o) > 1 ? (kind == FT_OPTIM_ADAMW ? 2 : 1) * mp : 0);
        if (json)
            printf("{\"config\": \"%s\", \"dtype\": \"%s\", \"gemm_route\": \"%s\", \"activation_checkpointing\": %s, "
                   "\"tokens_per_s\": %.2f, "
                   "\"gflops\": %.2f, \"peak_rss_mb\": %.1f, \"step_s\": %.4f, \"steps\": %lld, "
                   "\"tokens_per_step\": %lld, \"flops_per_token\": %.0f, \"threads\": %d, \"blas_core\": \"%s\", "
                   "\"params_mb\": %.1f, \"grads_mb\": %.1f, \"optim_mb\": %.1f, \"activations_mb\": %.1f, "
                   "\"loss_first\": %.6f, \"loss_last\": %.6f, \"cpu_s_per_step\": %.3f, \"predicted_peak_mb\": %.1f, "
                   "\"memory_limit_mb\": %.1f, \"gemm_route_why\": \"%s\"}\n",
                   bc->name, ft_dtype_name(dt), ft_tensor_gemm_route(dt), wp.checkpointing ? "true" : "false", tps,
                   tps * flops_tok / 1e9, ft_peak_rss_mb(),
                   t_all / (double)steps, (long long)steps, (long long)N, flops_tok, ft_tensor_threads(),
                   ft_tensor_blas_core(), mp / 1048576.0, mg / 1048576.0, mo / 1048576.0, ma / 1048576.0, loss_first,
                   loss_last, cpu_all / (double)steps, (double)plan.plan.total / 1048576.0, (double)limit / 1048576.0, dtype_why);
        else
            printf("train-step %s %s (GEMM %s)%s: %.1f tokens/s, %.1f GFLOP/s, %.3f s/step (%.2f CPU-s/step)\n  peak RSS "
                   "%.0f MiB, predicted %.0f MiB (weights %.0f, gradients %.0f, optimizer %.0f, activations %.0f MiB); "
                   "%d threads, OpenBLAS %s; loss %.4f -> %.4f%s%s\n",
                   bc->name, ft_dtype_name(dt), ft_tensor_gemm_route(dt),
                   wp.checkpointing ? ", activation checkpointing" : "", tps, tps * flops_tok / 1e9,
                   t_all / (double)steps, cpu_all / (double)steps, ft_peak_rss_mb(), (double)plan.plan.total / 1048576.0,
                   mp / 1048576.0, mg / 1048576.0,
                   mo / 1048576.0, ma / 1048576.0, ft_tensor_threads(), ft_tensor_blas_core(), loss_first, loss_last,
                   *dtype_why ? "\n  " : "", dtype_why);
        rc = CLI_EXIT_OK;
    }
    ft_optim_free(o);
    ft_workspace_free(ws);
    ft_model_free(m);
    ft_free(ids);
    ft_free(tgt);
    cli_args_free(&a);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "train-step"))
        return train_step(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "decode"))
        return cmd_bench_decode(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "serve"))
        return cmd_bench_serve(argc - 1, argv + 1);
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("usage: ftune bench train-step %s\n       ftune bench decode --model M [--prompt-tokens N] [--gen N] "
               "[--threads N]\n       ftune bench serve --config small|medium|1b | --model DIR [--streams N] "
               "[--json]\n", SYNOPSIS);
        return CLI_EXIT_OK;
    }
    if (argc >= 1 && argv[0][0] != '-')
        return cli_usage_error("bench", NULL, "unknown subcommand \"%s\": train-step, decode or serve (`ftune bench --help`)",
                               argv[0]);
    return cli_usage_error("bench", NULL, "expected a subcommand: train-step, decode or serve (`ftune bench --help`)");
}
