/* cli/cmd_generate.c: `ftune generate --model M --prompt TEXT [--chat] [--max-new-tokens N]
 * [--temperature T] [--top-k K] [--top-p P] [--seed S] [--threads N] [--dtype D] [--json]`: sample a
 * completion on the KV cache and stream it to stdout as tokens arrive (issue #5 item 4).
 * Temperature 0 is greedy. Generation ends at the EOS / end-of-turn tokens of the model's
 * generation_config.json and tokenizer_config.json, or after N new tokens. --json prints one
 * object at the end instead of streaming. M is a folder, a hub id or a registered model. Runs on
 * the inference engine (ftune/infer.h), the one `ftune serve` uses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ftune/gen.h"
#include "ftune/infer.h"
#include "ftune/hf.h"
#include "ftune/json.h"

static const char SYNOPSIS[] =
    "--model M --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] "
    "[--seed S] [--dtype fp32|bf16|auto]";

static const cli_opt OPTS[] = {
    {"model", CLI_STR, "M: model folder, hub id org/name, or registered catalog.schema.name[/version]"},
    {"prompt", CLI_STR, "TEXT: the prompt"},
    {"chat", CLI_FLAG, "render the prompt as a user message with the chat template's generation prompt"},
    {"max-new-tokens", CLI_INT, "N: most tokens to generate (default 100)"},
    {"temperature", CLI_FLOAT, "T: sampling temperature; 0 is greedy (default 1)"},
    {"top-k", CLI_INT, "K: sample among the K most probable tokens; 0: all (default 50)"},
    {"top-p", CLI_FLOAT, "P: nucleus sampling mass, in (0, 1] (default 0.95)"},
    {"seed", CLI_INT, "S: random seed (default 17)"},
    {"threads", CLI_INT, "N: threads (default: all cores)"},
    {"dtype", CLI_STR, "fp32 (default) | bf16 (weights rounded to bf16, bf16 GEMM operands with fp32 accumulation) | auto (the fastest here)"},
    {NULL, 0, NULL},
};

static ft_status stream_out(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return FT_OK;
}

/* Why generation ended, in the words of Hugging Face's and OpenAI's APIs, plus "context": "stop"
 * (a stop token), "length" (max_new_tokens), "context" (the model's context filled first). */
static const char *finish_reason(const ft_infer_result *o, const ft_gen_params *gp) {
    if (o->finish == FT_INFER_STOP)
        return "stop";
    return (int64_t)o->n_ids >= (int64_t)gp->max_new_tokens ? "length" : "context";
}

int cmd_generate(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&a, "generate", SYNOPSIS, OPTS, argc, argv);
    if (rc)
        return rc < 0 ? CLI_EXIT_OK : rc;
    const char *name = cli_str(&a, "model", NULL), *prompt = cli_str(&a, "prompt", NULL);
    bool json = cli_has(&a, "json");
    ft_gen_params gp = ft_gen_default_params();
    gp.max_new_tokens = cli_int(&a, "max-new-tokens", 100);
    gp.sampling.temperature = cli_float(&a, "temperature", 1.0);
    gp.sampling.top_k = cli_int(&a, "top-k", 50);
    gp.sampling.top_p = cli_float(&a, "top-p", 0.95);
    gp.seed = (uint64_t)cli_int(&a, "seed", 17);
    gp.chat = cli_has(&a, "chat");
    int64_t threads = cli_int(&a, "threads", 0);
    const char *dts = cli_str(&a, "dtype", "fp32");
    ft_dtype dt = FT_DTYPE_FP32;
    ft_err gerr;
    if (!name)
        rc = cli_usage_error("generate", "model", "required");
    else if (!prompt)
        rc = cli_usage_error("generate", "prompt", "required");
    else if (gp.max_new_tokens < 1 || gp.max_new_tokens > 1000000)
        rc = cli_usage_error("generate", "max-new-tokens", "must be between 1 and 1000000");
    else if (!(gp.sampling.temperature >= 0) || !isfinite(gp.sampling.temperature))
        rc = cli_usage_error("generate", "temperature", "must be a number >= 0");
    else if (gp.sampling.top_k < 0)
        rc = cli_usage_error("generate", "top-k", "must be >= 0");
    else if (!(gp.sampling.top_p > 0 && gp.sampling.top_p <= 1))
        rc = cli_usage_error("generate", "top-p", "must be in (0, 1]");
    else if (cli_int(&a, "seed", 0) < 0)
        rc = cli_usage_error("generate", "seed", "must be >= 0");
    else if (threads < 0 || threads > 4096)
        rc = cli_usage_error("generate", "threads", "must be between 0 and 4096");
    else if (strcmp(dts, "auto") && !ft_dtype_parse(dts, &dt))
        rc = cli_usage_error("generate", "dtype", "must be fp32, bf16 or auto, not \"%s\"", dts);
    else if (ft_tensor_gemm_env_check(&gerr) != FT_OK)
        rc = cli_usage_error("generate", NULL, "%s", gerr.msg);
    if (rc) {
        cli_args_free(&a);
        return rc;
    }
    ft_err err;
    char *dir = NULL;
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    ft_infer *e = NULL;
    ft_infer_result out = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ft_status s = ft_hf_resolve(name, &dir, &err);
    if (s == FT_OK) {
        if (threads > 0)
            ft_tensor_set_threads((int)threads);
        ft_model_params mp = ft_model_default_params(); /* decoding uses the KV pool's own buffers */
        s = ft_model_load(dir, &mp, &m, &err);
    }
    if (s == FT_OK) {
        if (!strcmp(dts, "auto")) /* bf16 is not implemented for mixture-of-experts layers yet */
            dt = ft_model_get_config(m)->num_local_experts > 0 ? FT_DTYPE_FP32 : ft_tensor_auto_dtype(NULL);
        s = ft_model_set_inference_dtype(m, dt, &err);
    }
    if (s == FT_OK)
        s = ft_tok_load(dir, &tok, &err);
    if (s == FT_OK) {
        ft_infer_params ip = ft_infer_default_params();
        ip.max_seqs = 1;
        const ft_model_config *c = ft_model_get_config(m);
        ip.max_context = c->max_position_embeddings > 0 && c->max_position_embeddings < 8192
                             ? c->max_position_embeddings
                             : 8192;
        s = ft_infer_new(m, tok, dir, &ip, &e, &err);
    }
    if (s == FT_OK && gp.chat && !ft_gen_has_chat_template(ft_infer_generator(e))) {
        cli_usage_error("generate", "chat", "the model %s has no chat template", name);
        rc = CLI_EXIT_USAGE;
    }
    if (s == FT_OK && !rc)
        s = ft_gen_prompt_ids(ft_infer_generator(e), prompt, gp.chat, &ids, &n_ids, &err);
    if (s == FT_OK && !rc) {
        ft_infer_request r = ft_infer_default_request();
        r.prompt = ids, r.n_prompt = n_ids;
        r.max_tokens = gp.max_new_tokens;
        r.sampling = gp.sampling;
        r.seed = gp.seed;
        r.turn_stops = gp.chat;
        s = ft_infer_run(e, &r, json ? NULL : stream_out, NULL, &out, &err);
    }
    if (s != FT_OK) {
        if (!json && out.text_len)
            putchar('\n');
        rc = cli_report("generate", &err);
    } else if (!rc && json) {
        double secs = out.total_s;
        json_t *o = json_pack("{s:s%, s:I, s:I, s:b, s:s, s:f, s:f, s:s, s:s}", "text", out.text, out.text_len,
                              "prompt_tokens", (json_int_t)out.prompt_tokens, "new_tokens", (json_int_t)out.n_ids,
                              "stopped", out.finish == FT_INFER_STOP, "finish_reason", finish_reason(&out, &gp),
                              "seconds", secs, "tokens_per_s", secs > 0 ? (double)out.n_ids / secs : 0.0, "dtype",
                              ft_dtype_name(dt), "gemm_route", ft_tensor_gemm_route(dt));
        char *t = ft_json_dumps(o, 0);
        printf("%s\n", t ? t : "{}");
        free(t);
        json_decref(o);
    } else if (!rc) {
        putchar('\n');
        if (!strcmp(finish_reason(&out, &gp), "context"))
            fprintf(stderr, "ftune generate: stopped after %lld tokens: the model's context (%lld tokens with the "
                            "prompt) is full\n",
                    (long long)out.n_ids, (long long)(out.prompt_tokens + (int64_t)out.n_ids));
    }
    ft_free(ids);
    ft_infer_result_free(&out);
    ft_infer_free(e);
    ft_tok_free(tok);
    ft_model_free(m);
    ft_free(dir);
    cli_args_free(&a);
    return rc;
}
