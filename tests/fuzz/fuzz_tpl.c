/* tests/fuzz/fuzz_tpl.c: libFuzzer target for the Jinja engine: arbitrary bytes are compiled as
 * a chat template and rendered with a small fixed conversation and tight limits (depth,
 * iterations, output, memory), so any input must end in output or a clean error, never a crash
 * or a hang; then the same bytes as a model's template must give well-formed training spans
 * for a fixed conversation (or a clean error). Seeds: tests/fuzz/corpus/tpl (the real templates). Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "ftune/tpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *vars;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!vars)
        vars = json_loads("{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                          "{\"role\":\"user\",\"content\":\"Hi {{ x }} \\u00e9\"},"
                          "{\"role\":\"assistant\",\"content\":\"<think>t</think>Yo\",\"tool_calls\":"
                          "[{\"id\":\"call12345\",\"function\":{\"name\":\"f\",\"arguments\":{\"a\":[1,2.5,null]}}}]},"
                          "{\"role\":\"tool\",\"content\":\"42\"}],"
                          "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                          "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\"}}}}}],"
                          "\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"n\":7}",
                          0, NULL);
    ft_tpl *t = NULL;
    ft_err err;
    if (ft_tpl_compile("fuzz", (const char *)data, size, &t, &err) != FT_OK) {
        if (err.code == FT_OK)
            __builtin_trap(); /* a failure must say why */
        return 0;
    }
    ft_tpl_render_params p = ft_tpl_default_render_params();
    p.now = 0;
    p.limits.max_depth = 64;
    p.limits.max_iterations = 20000;
    p.limits.max_output = 1 << 20;
    p.limits.max_memory = 64 << 20;
    ft_buf out = {0};
    ft_status s = ft_tpl_render(t, vars, &p, &out, &err);
    if (s != FT_OK && err.code != s)
        __builtin_trap();
    if (s == FT_OK && out.len > p.limits.max_output)
        __builtin_trap();
    ft_buf_free(&out);
    ft_tpl_free(t);
    /* the same bytes as a model's chat template: training spans over a fixed conversation must
     * come out ordered and inside the text, or as a clean error */
    if (s == FT_OK && size < 4096 && ft_utf8_valid_prefix((const char *)data, size) == size &&
        !memchr(data, 0, size)) {
        char *src = ft_strndup((const char *)data, size);
        ft_chat *c = NULL;
        if (src && ft_chat_from_template(src, "<s>", "</s>", &c, &err) == FT_OK) {
            ft_chat_mask_params mp = ft_chat_default_mask_params();
            mp.render = p;
            ft_buf text = {0};
            ft_chat_span *sp = NULL;
            size_t n = 0;
            if (ft_chat_spans(c, json_object_get(vars, "messages"), NULL, NULL, &mp, &text, &sp, &n, &err) == FT_OK) {
                for (size_t i = 0; i < n; i++)
                    if (sp[i].start > sp[i].end || sp[i].end > text.len || (i && sp[i].start < sp[i - 1].end))
                        __builtin_trap();
                ft_free(sp);
            }
            ft_buf_free(&text);
            ft_chat_free(c);
        }
        ft_free(src);
    }
    return 0;
}
