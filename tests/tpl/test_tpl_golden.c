/* tests/tpl: every real chat template in tests/fixtures/tpl/templates against Jinja2's renders
 * (tests/fixtures/tpl/golden, written by tools/reference/tpl_gen.py): byte-identical output
 * (FNV-1a 64 and length, full text for the first conversations) and an error wherever Jinja2
 * raised, with the same message for the template's own raise_exception. */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "ftune/tpl.h"
#include "test.h"

static uint64_t fnv1a64(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static json_t *load_lines(const char *path) {
    char *data;
    size_t len;
    ft_err e;
    if (ft_file_read_all(path, &data, &len, &e) != FT_OK)
        return NULL;
    json_t *arr = json_array();
    char *line = data;
    while (line < data + len) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        if (n) {
            json_t *j = json_loadb(line, n, 0, NULL);
            if (!j) {
                json_decref(arr);
                ft_free(data);
                return NULL;
            }
            json_array_append_new(arr, j);
        }
        line += n + 1;
    }
    ft_free(data);
    return arr;
}

TEST(tpl_golden_all_templates_match_jinja2) {
    ft_err err;
    json_t *meta = NULL;
    REQUIRE_OK(ft_json_load_file(ft_test_fixture("tpl/templates.json"), &meta, &err), &err);
    json_t *convs = load_lines(ft_test_fixture("tpl/conversations.jsonl"));
    REQUIRE(convs && json_array_size(convs) >= 200);
    ft_tpl_render_params rp = ft_tpl_default_render_params();
    rp.now = 1721995200; /* the generator's FAKE_NOW */
    size_t total = 0, same = 0, errors_matched = 0, templates = 0;
    const char *name;
    json_t *m;
    json_object_foreach(meta, name, m) {
        templates++;
        char path[512];
        snprintf(path, sizeof path, "tpl/templates/%s.jinja", name);
        char *src;
        size_t srclen;
        REQUIRE_OK(ft_file_read_all(ft_test_fixture(path), &src, &srclen, &err), &err);
        ft_tpl *t = NULL;
        CHECK_OK(ft_tpl_compile(name, src, srclen, &t, &err), &err);
        ft_free(src);
        if (!t)
            continue;
        snprintf(path, sizeof path, "tpl/golden/%s.jsonl", name);
        json_t *gold = load_lines(ft_test_fixture(path));
        REQUIRE(gold && json_array_size(gold) == json_array_size(convs));
        bool uses_tools = json_is_true(json_object_get(m, "uses_tools"));
        json_t *default_tools = json_object_get(m, "default_tools");
        size_t fails_here = 0;
        for (size_t i = 0; i < json_array_size(convs); i++) {
            json_t *c = json_array_get(convs, i), *g = json_array_get(gold, i);
            json_t *vars = json_object();
            json_t *bos = json_object_get(m, "bos_token"), *eos = json_object_get(m, "eos_token");
            if (json_is_string(bos))
                json_object_set(vars, "bos_token", bos);
            if (json_is_string(eos))
                json_object_set(vars, "eos_token", eos);
            json_object_set(vars, "messages", json_object_get(c, "messages"));
            json_t *tools = uses_tools ? json_object_get(c, "tools") : NULL;
            if (default_tools && (!tools || json_is_null(tools)))
                tools = default_tools;
            json_object_set(vars, "tools", tools ? tools : json_null());
            json_object_set_new(vars, "documents", json_null());
            json_object_set(vars, "add_generation_prompt", json_object_get(c, "add_generation_prompt"));
            ft_buf out = {0};
            ft_err re;
            ft_status s = ft_tpl_render(t, vars, &rp, &out, &re);
            json_decref(vars);
            total++;
            const char *gerr = json_string_value(json_object_get(g, "e"));
            bool ok;
            char why[1600] = "";
            if (gerr) {
                ok = s != FT_OK;
                if (ok && !strcmp(gerr, "TemplateError")) {
                    /* raise_exception: the template's own message, verbatim */
                    const char *want = json_string_value(json_object_get(g, "m"));
                    const char *got = strstr(re.msg, "raise_exception: ");
                    ok = got && !strcmp(got + 17, want);
                    snprintf(why, sizeof why, "message \"%s\" vs \"%s\"", re.msg, want);
                } else if (!ok)
                    snprintf(why, sizeof why, "Jinja2 raised %s: %s; ftune rendered %zu bytes", gerr,
                             json_string_value(json_object_get(g, "m")), out.len);
                if (ok)
                    errors_matched++;
            } else {
                if (s != FT_OK) {
                    ok = false;
                    ft_err_format(&re, why, sizeof why);
                } else {
                    char hex[17];
                    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a64(out.data, out.len));
                    ok = !strcmp(hex, json_string_value(json_object_get(g, "h"))) &&
                         (json_int_t)out.len == json_integer_value(json_object_get(g, "n"));
                    const char *full = json_string_value(json_object_get(g, "t"));
                    if (full && strcmp(full, ft_buf_cstr(&out)) != 0)
                        ok = false;
                    if (!ok)
                        snprintf(why, sizeof why, "output differs (%zu bytes vs %lld): %.300s", out.len,
                                 (long long)json_integer_value(json_object_get(g, "n")), ft_buf_cstr(&out));
                }
            }
            if (ok)
                same++;
            else if (fails_here++ < 2)
                ft_test_fail_(__FILE__, __LINE__, "%s, conversation %zu: %s", name, i, why);
            ft_buf_free(&out);
        }
        json_decref(gold);
        ft_tpl_free(t);
    }
    printf("  tpl golden: %zu/%zu renders identical to Jinja2 over %zu templates (%zu of them errors matched)\n", same,
           total, templates, errors_matched);
    CHECK_EQ_INT(same, total);
    CHECK(templates >= 40);
    json_decref(convs);
    json_decref(meta);
}
