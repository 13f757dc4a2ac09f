/* tests/tpl: the Jinja engine feature by feature against Jinja2 (tests/fixtures/tpl/snippets.jsonl,
 * written by tools/reference/tpl_gen.py), plus what only ftune defines: error positions, limits,
 * the chat API (named templates, token objects) and training spans. */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "ftune/tpl.h"
#include "test.h"

static ft_status render_str(const char *src, const json_t *vars, const ft_tpl_render_params *p, ft_buf *out,
                            ft_err *err) {
    ft_tpl *t;
    FT_TRY(ft_tpl_compile("t", src, strlen(src), &t, err));
    ft_status s = ft_tpl_render(t, vars, p, out, err);
    ft_tpl_free(t);
    return s;
}

TEST(tpl_snippets_match_jinja2) {
    ft_err err;
    json_t *vars = NULL;
    REQUIRE_OK(ft_json_load_file(ft_test_fixture("tpl/snippet_vars.json"), &vars, &err), &err);
    char *data;
    size_t len;
    REQUIRE_OK(ft_file_read_all(ft_test_fixture("tpl/snippets.jsonl"), &data, &len, &err), &err);
    ft_tpl_render_params rp = ft_tpl_default_render_params();
    rp.now = 1721995200;
    size_t n = 0, ok = 0, errors = 0;
    for (char *line = data; line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t ln = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        json_t *rec = json_loadb(line, ln, 0, NULL);
        line += ln + 1;
        if (!rec)
            continue;
        n++;
        const char *src = json_string_value(json_object_get(rec, "src"));
        const char *want = json_string_value(json_object_get(rec, "out"));
        const char *etype = json_string_value(json_object_get(rec, "e"));
        ft_buf out = {0};
        ft_err re;
        ft_tpl *t = NULL;
        ft_status s = ft_tpl_compile("snippet", src, strlen(src), &t, &re);
        if (s == FT_OK)
            s = ft_tpl_render(t, vars, &rp, &out, &re);
        ft_tpl_free(t);
        char msg[1600];
        ft_err_format(&re, msg, sizeof msg);
        if (want) {
            if (s == FT_OK && out.len == strlen(want) && memcmp(out.data ? out.data : "", want, out.len) == 0)
                ok++;
            else
                ft_test_fail_(__FILE__, __LINE__, "snippet %s\n    got      %s\n    expected %s", src,
                              s == FT_OK ? ft_buf_cstr(&out) : msg, want);
        } else {
            errors++;
            bool good = s != FT_OK;
            if (good && !strcmp(etype, "TemplateError")) {
                const char *m = strstr(re.msg, "raise_exception: ");
                good = m && !strcmp(m + 17, json_string_value(json_object_get(rec, "m")));
            }
            if (good)
                ok++;
            else
                ft_test_fail_(__FILE__, __LINE__, "snippet %s: Jinja2 raised %s (%s), ftune gave %s", src, etype,
                              json_string_value(json_object_get(rec, "m")), s == FT_OK ? ft_buf_cstr(&out) : msg);
        }
        ft_buf_free(&out);
        json_decref(rec);
    }
    printf("  tpl snippets: %zu/%zu as Jinja2 (%zu of them errors)\n", ok, n, errors);
    CHECK(n >= 100);
    CHECK_EQ_INT(ok, n);
    ft_free(data);
    json_decref(vars);
}

TEST(tpl_errors_carry_line_and_column) {
    ft_err err;
    ft_buf out = {0};
    CHECK(render_str("line1\nline2 {{ 1 +* 2 }}", NULL, NULL, &out, &err) == FT_ERR_PARSE);
    CHECK_EQ_INT(err.line, 2);
    CHECK_EQ_INT(err.column, 13);
    json_t *v1 = json_pack("{s:[i]}", "l", 1), *v0 = json_pack("{s:[]}", "l");
    CHECK(render_str("a\n\n  {% for x in l %}\n{{ x.y.z }}{% endfor %}", v1, NULL, &out, &err) != FT_OK);
    /* runtime error: x.y is undefined (int has no y), so .z fails at line 4 */
    CHECK_EQ_INT(err.line, 4);
    CHECK(err.column >= 1);
    CHECK(strstr(err.msg, "has no attribute 'y'") != NULL);
    CHECK(render_str("{% for x in l %}\nno end", v0, NULL, &out, &err) == FT_ERR_PARSE);
    json_decref(v0);
    json_decref(v1);
    CHECK(strstr(err.msg, "endfor") != NULL);
    CHECK(render_str("{{ raise_exception('bad ' ~ 42) }}", NULL, NULL, &out, &err) == FT_ERR_INVALID);
    CHECK_STR_EQ(err.msg, "raise_exception: bad 42");
    ft_buf_free(&out);
}

TEST(tpl_limits_stop_runaway_templates) {
    ft_err err;
    ft_buf out = {0};
    ft_tpl_render_params p = ft_tpl_default_render_params();
    p.limits.max_iterations = 1000;
    CHECK(render_str("{% for i in range(100) %}{% for j in range(100) %}x{% endfor %}{% endfor %}", NULL, &p, &out,
                     &err) == FT_ERR_LIMIT);
    CHECK(strstr(err.msg, "iterations") != NULL);
    out.len = 0;
    CHECK(render_str("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL, &out, &err) == FT_ERR_LIMIT);
    CHECK(strstr(err.msg, "recursion") != NULL);
    out.len = 0;
    p = ft_tpl_default_render_params();
    p.limits.max_output = 1000;
    CHECK(render_str("{% for i in range(2000) %}ab{% endfor %}", NULL, &p, &out, &err) == FT_ERR_LIMIT);
    out.len = 0;
    CHECK(render_str("{% set ns = namespace(s='x' * 100) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                     "{% endfor %}{{ ns.s|length }}",
                     NULL, &p, &out, &err) == FT_ERR_LIMIT);
    out.len = 0;
    p = ft_tpl_default_render_params();
    p.limits.max_memory = 1 << 20;
    CHECK(render_str("{{ ([1] * 100000000)|length }}", NULL, &p, &out, &err) == FT_ERR_LIMIT);
    out.len = 0;
    /* deep nesting in the source is refused while parsing, without exhausting the C stack */
    char deep[4000];
    size_t k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
    for (int i = 0; i < 1000; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++)
        deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    CHECK(render_str(deep, NULL, NULL, &out, &err) != FT_OK);
    ft_buf_free(&out);
}

TEST(tpl_strftime_now_uses_fake_clock) {
    ft_err err;
    ft_buf out = {0};
    ft_tpl_render_params p = ft_tpl_default_render_params();
    p.now = 0;
    CHECK_OK(render_str("{{ strftime_now('%d %b %Y') }}", NULL, &p, &out, &err), &err);
    CHECK_STR_EQ(ft_buf_cstr(&out), "01 Jan 1970");
    setenv("FTUNE_FAKE_NOW", "1721995200", 1);
    out.len = 0;
    CHECK_OK(render_str("{{ strftime_now('%d %b %Y') }}", NULL, NULL, &out, &err), &err);
    CHECK_STR_EQ(ft_buf_cstr(&out), "26 Jul 2024");
    unsetenv("FTUNE_FAKE_NOW");
    ft_buf_free(&out);
}

TEST(tpl_chat_config_named_templates_and_token_objects) {
    ft_err err;
    json_t *cfg = json_pack("{s:[{s:s,s:s},{s:s,s:s}],s:{s:s,s:b},s:s,s:n,s:b,s:[s]}", "chat_template", "name",
                            "default", "template", "D{{ bos_token }}{{ messages|length }}{{ eos_token }}", "name",
                            "tool_use", "template", "T{{ tools|length }}{{ pad_token is defined }}", "bos_token",
                            "content", "<s>", "lstrip", 0, "eos_token", "</s>", "pad_token", "add_bos_token", 1,
                            "additional_special_tokens", "<x>");
    ft_chat *c;
    REQUIRE_OK(ft_chat_from_config("cfg", cfg, &c, &err), &err);
    CHECK_STR_EQ(ft_chat_token(c, "bos_token"), "<s>");
    CHECK(ft_chat_token(c, "pad_token") == NULL);
    CHECK(ft_chat_token(c, "add_bos_token") == NULL);
    json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "hi");
    json_t *tools = json_pack("[{s:s}]", "type", "function");
    ft_buf out = {0};
    CHECK_OK(ft_chat_render(c, msgs, NULL, false, NULL, NULL, &out, &err), &err);
    CHECK_STR_EQ(ft_buf_cstr(&out), "D<s>1</s>");
    out.len = 0;
    CHECK_OK(ft_chat_render(c, msgs, tools, false, NULL, NULL, &out, &err), &err);
    CHECK_STR_EQ(ft_buf_cstr(&out), "T1False");
    ft_buf_free(&out);
    ft_chat_free(c);
    json_decref(cfg);
    json_decref(msgs);
    json_decref(tools);
}

static void span_texts(const char *tpl, const char *bos, const char *eos, const char *msgs_json, bool last_only,
                       char *got, size_t cap, ft_status *st) {
    ft_err err;
    ft_chat *c;
    got[0] = 0;
    *st = ft_chat_from_template(tpl, bos, eos, &c, &err);
    if (*st != FT_OK)
        return;
    json_t *msgs = json_loads(msgs_json, 0, NULL);
    ft_chat_mask_params mp = ft_chat_default_mask_params();
    mp.last_assistant = last_only;
    ft_buf text = {0};
    ft_chat_span *sp;
    size_t n;
    *st = ft_chat_spans(c, msgs, NULL, NULL, &mp, &text, &sp, &n, &err);
    if (*st == FT_OK) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += (size_t)snprintf(got + k, cap - k, "[%.*s]", (int)(sp[i].end - sp[i].start), text.data + sp[i].start);
        ft_free(sp);
    } else
        snprintf(got, cap, "ERR %s", err.msg);
    ft_buf_free(&text);
    json_decref(msgs);
    ft_chat_free(c);
}

TEST(tpl_spans_cover_content_and_end_of_turn) {
    char got[2000];
    ft_status st;
    const char *conv = "[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U1\"},"
                       "{\"role\":\"assistant\",\"content\":\"A1\"},{\"role\":\"user\",\"content\":\"U2\"},"
                       "{\"role\":\"assistant\",\"content\":\"A2\"}]";
    char *src;
    size_t len;
    ft_err err;
    struct {
        const char *file, *bos, *eos, *want;
    } cases[] = {
        {"Meta-Llama-3-8B-Instruct", "<|begin_of_text|>", "<|eot_id|>", "[A1<|eot_id|>][A2<|eot_id|>]"},
        {"Meta-Llama-3-8B-Instruct-original", "<|begin_of_text|>", "<|end_of_text|>", "[A1<|eot_id|>][A2<|eot_id|>]"},
        {"Qwen2-7B-Instruct", NULL, "<|im_end|>", "[A1<|im_end|>\n][A2<|im_end|>\n]"},
        {"Qwen1.5-72B-Chat", NULL, "<|im_end|>", "[A1<|im_end|>\n][A2]"},
        {"Qwen3-0.6B", NULL, "<|im_end|>", "[A1<|im_end|>\n][<think>\n\n</think>\n\nA2<|im_end|>\n]"},
        {"Mistral-7B-Instruct-v0.1", "<s>", "</s>", "[ A1</s>][ A2</s>]"},
        {"Llama-2-7b-chat-hf", "<s>", "</s>", "[ A1 </s>][ A2 </s>]"},
        {"zephyr-7b-beta", "<s>", "</s>", "[A1</s>\n][A2</s>\n]"},
        {"Phi-3-mini-4k-instruct", "<s>", "<|endoftext|>", "[A1<|end|>\n][A2<|end|>\n<|endoftext|>]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256];
        snprintf(path, sizeof path, "tpl/templates/%s.jinja", cases[i].file);
        REQUIRE_OK(ft_file_read_all(ft_test_fixture(path), &src, &len, &err), &err);
        span_texts(src, cases[i].bos, cases[i].eos, conv, false, got, sizeof got, &st);
        CHECK(st == FT_OK);
        if (strcmp(got, cases[i].want))
            ft_test_fail_(__FILE__, __LINE__, "%s: spans %s, expected %s", cases[i].file, got, cases[i].want);
        ft_free(src);
    }
    /* last_assistant: only the final turn */
    span_texts("{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
               "{% if add_generation_prompt %}<assistant>{% endif %}",
               NULL, NULL, conv, true, got, sizeof got, &st);
    CHECK_STR_EQ(got, "[A2</assistant>]");
    /* a template that rewrites earlier turns is refused, naming the message */
    span_texts("{% for m in messages|reverse %}{{ m.content }}{% endfor %}",
               NULL, NULL, conv, false, got, sizeof got, &st);
    CHECK(st == FT_ERR_INVALID);
    CHECK(strstr(got, "prefix-stable") != NULL);
}

TEST(tpl_chat_load_prefers_chat_template_jinja) {
    const char *dir = ft_test_tmpdir();
    char path[600];
    ft_err err;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    const char *cfg = "{\"chat_template\": \"cfg\", \"eos_token\": {\"content\": \"</s>\"}, \"model_max_length\": "
                      "1000000000000000019884624838656}";
    REQUIRE_OK(ft_file_write_atomic(path, cfg, strlen(cfg), &err), &err);
    ft_chat *c;
    REQUIRE_OK(ft_chat_load(dir, &c, &err), &err); /* a beyond-64-bit integer in the config is fine */
    json_t *msgs = json_pack("[]");
    ft_buf out = {0};
    CHECK_OK(ft_chat_render(c, msgs, NULL, false, NULL, NULL, &out, &err), &err);
    CHECK_STR_EQ(ft_buf_cstr(&out), "cfg");
    ft_chat_free(c);
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    const char *j = "jinja{{ eos_token }}\n";
    REQUIRE_OK(ft_file_write_atomic(path, j, strlen(j), &err), &err);
    REQUIRE_OK(ft_chat_load(dir, &c, &err), &err);
    out.len = 0;
    CHECK_OK(ft_chat_render(c, msgs, NULL, false, NULL, NULL, &out, &err), &err);
    CHECK_STR_EQ(ft_buf_cstr(&out), "jinja</s>");
    ft_chat_free(c);
    ft_buf_free(&out);
    json_decref(msgs);
}
