/* cli/cmd_export.c: `ftune export --format gguf [--dtype f32|f16|bf16] [--force] MODEL OUT.gguf`:
 * a model (a registered name "c.s.n" or "c.s.n/VERSION", a model folder, or a hub id in the
 * local cache; ftune/hf.h) as one GGUF file for llama.cpp and Ollama (ftune/gguf.h). An existing
 * OUT is never replaced without --force. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "ftune/gguf.h"
#include "ftune/hf.h"
#include "ftune/json.h"

static const char SYNOPSIS[] = "--format gguf [--dtype f32|f16|bf16] [--force] [--name NAME] MODEL OUT.gguf";

static const cli_opt OPTS[] = {
    {"format", CLI_STR, "gguf: the file format to write (llama.cpp, Ollama, LM Studio)"},
    {"dtype", CLI_STR, "f32 (default) | f16 | bf16: the weight matrices' type (norms stay f32)"},
    {"force", CLI_FLAG, "replace OUT if it exists"},
    {"name", CLI_STR, "NAME: general.name inside the file (default: the model's name)"},
    {NULL, 0, NULL},
};

int cmd_export(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&a, "export", SYNOPSIS, OPTS, argc, argv);
    if (prc)
        return prc < 0 ? CLI_EXIT_OK : prc;
    int rc = CLI_EXIT_OK;
    const char *format = cli_str(&a, "format", NULL), *dt = cli_str(&a, "dtype", "f32");
    ft_gguf_export_params p = ft_gguf_export_default_params();
    if (!format) {
        rc = cli_usage_error("export", "format", "required: --format gguf");
        goto out;
    }
    if (strcasecmp(format, "gguf")) {
        rc = cli_usage_error("export", "format", "%s: the one format ftune exports to is gguf (the model folders "
                                                 "ftune writes are already Hugging Face safetensors)", format);
        goto out;
    }
    if (!strcasecmp(dt, "f32") || !strcasecmp(dt, "float32"))
        p.dtype = FT_ST_DTYPE_F32;
    else if (!strcasecmp(dt, "f16") || !strcasecmp(dt, "float16"))
        p.dtype = FT_ST_DTYPE_F16;
    else if (!strcasecmp(dt, "bf16") || !strcasecmp(dt, "bfloat16"))
        p.dtype = FT_ST_DTYPE_BF16;
    else {
        rc = cli_usage_error("export", "dtype", "%s: expected f32, f16 or bf16", dt);
        goto out;
    }
    if (a.n_pos != 2) {
        rc = cli_usage_error("export", NULL, "expected MODEL and OUT.gguf (e.g. ftune export --format gguf "
                                             "main.demo.model model.gguf)");
        goto out;
    }
    p.overwrite = cli_has(&a, "force");
    const char *model = a.pos[0], *out_path = a.pos[1];
    char *dir = NULL;
    ft_err err;
    ft_status s = ft_hf_resolve(model, &dir, &err);
    char name[256];
    if (s == FT_OK) {
        /* general.name: the name the user gave (a registry name reads better than a version folder). */
        snprintf(name, sizeof name, "%s", model);
        size_t n = strlen(name);
        while (n > 1 && name[n - 1] == '/')
            name[--n] = 0;
        const char *slash = ft_path_is_dir(model) ? strrchr(name, '/') : NULL;
        p.name = cli_str(&a, "name", slash ? slash + 1 : name);
        ft_gguf_export_info info;
        s = ft_gguf_export(dir, out_path, &p, &info, &err);
        if (s == FT_OK) {
            if (cli_has(&a, "json")) {
                json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b}", "model", model, "path", dir,
                                      "out", out_path, "dtype", dt, "tensors", (json_int_t)info.n_tensors,
                                      "tokens", (json_int_t)info.n_tokens, "bytes", (json_int_t)info.bytes,
                                      "tokenizer_model", info.tokenizer_model, "chat_template",
                                      info.has_chat_template);
                char *t = ft_json_dumps(o, 0);
                printf("%s\n", t ? t : "{}");
                ft_free(t);
                json_decref(o);
            } else {
                printf("wrote %s: %lld tensors, %lld tokens (%s tokenizer%s), %.1f MB, %s weights\n", out_path,
                       (long long)info.n_tensors, (long long)info.n_tokens, info.tokenizer_model,
                       info.has_chat_template ? ", chat template" : ", no chat template", (double)info.bytes / 1e6,
                       dt);
            }
        }
    }
    if (s != FT_OK)
        rc = cli_report("export", &err);
    ft_free(dir);
out:
    cli_args_free(&a);
    return rc;
}
