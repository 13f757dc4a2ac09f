/* tests/fuzz/fuzz_v1_request.c: libFuzzer target for the /v1 request bodies of `ftune serve`
 * (src/server/v1.c). The first byte picks the route (chat completions, completions, models,
 * metrics); the rest is the body, sent as is, or, when it parses as a JSON object, with its
 * `model` set to a tiny registered model and `max_tokens` / `n` kept small so that generation
 * runs every time and stays fast. Any response must be well-formed: a status in 200..599, a JSON
 * body that parses (errors as {"error": {message, type, param, code}}), a stream that ends with
 * `data: [DONE]` or an error line. Build: make fuzz-run (run from the repository root: the tiny
 * tokenizer is tests/fixtures/train/tinytok). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ftune/hf.h"
#include "ftune/model.h"
#include "ftune/store.h"
#include "server/server_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static srv_ctx g_ctx;
static char g_home[64];
static bool g_ready;

static void cleanup(void) {
    srv_ctx_deinit(&g_ctx);
    ft_rm_rf(g_home, NULL);
}

static void setup(void) {
    char home[] = "/tmp/ftune-fuzz-v1-XXXXXX";
    if (!mkdtemp(home))
        abort();
    snprintf(g_home, sizeof g_home, "%s", home);
    /* a tiny random model with the byte tokenizer, registered as main.demo.tiny */
    char *src = ft_path_join(home, "src");
    ft_mkdir_p(src, NULL);
    ft_model_config c;
    ft_model_config_default(&c);
    snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
    snprintf(c.model_type, sizeof c.model_type, "llama");
    c.vocab_size = 259, c.hidden_size = 16, c.intermediate_size = 32, c.num_hidden_layers = 1;
    c.num_attention_heads = 2, c.num_key_value_heads = 1, c.head_dim = 8, c.tie_word_embeddings = true;
    c.max_position_embeddings = 128, c.bos_token_id = 256, c.eos_token_ids[0] = 257, c.n_eos = 1;
    c.initializer_range = 0.5;
    ft_model_params mp = ft_model_default_params();
    ft_model *m = NULL;
    char *cfg = ft_path_join(src, "config.json"), *w = ft_path_join(src, "model.safetensors");
    if (ft_model_new_random(&c, 1, &mp, &m, NULL) != FT_OK || ft_model_save_weights(m, w, false, NULL) != FT_OK ||
        ft_model_config_save(&c, cfg, NULL) != FT_OK ||
        ft_hf_copy_tokenizer("tests/fixtures/train/tinytok", src, NULL, NULL) != FT_OK)
        abort();
    ft_model_free(m);
    ft_free(cfg);
    ft_free(w);
    ft_server_params p;
    ft_server_default_params(&p);
    p.home = home;
    p.max_body = 1 << 16;
    p.infer_slots = 2;
    if (srv_ctx_init(&g_ctx, &p, NULL) != FT_OK)
        abort();
    ft_store *s;
    ft_model_version v;
    if (ft_store_open(g_ctx.db_path, &s, NULL) != FT_OK ||
        ft_registry_register(s, home, "main.demo.tiny", src, NULL, NULL, NULL, &v, NULL) != FT_OK)
        abort();
    ft_model_version_deinit(&v);
    ft_store_close(s);
    ft_free(src);
    atexit(cleanup);
    g_ready = true;
}

static void check_error_object(json_t *out) {
    json_t *e = json_object_get(out, "error");
    if (!json_is_object(e) || !json_is_string(json_object_get(e, "message")) ||
        !json_is_string(json_object_get(e, "type")))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ready)
        setup();
    if (size < 1)
        return 0;
    static const char *paths[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/metrics",
                                  "/v1/models/main.demo.tiny"};
    const char *path = paths[data[0] % 5];
    const char *method = data[0] & 0x80 ? "GET" : "POST";
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *body = NULL;
    json_t *j = json_loadb(in, n, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(j)) {
        if (json_is_string(json_object_get(j, "model")))
            json_object_set_new(j, "model", json_string("main.demo.tiny"));
        json_t *mt = json_object_get(j, "max_tokens");
        if (!mt || (json_is_integer(mt) && json_integer_value(mt) > 4))
            json_object_set_new(j, "max_tokens", json_integer(4));
        json_object_del(j, "max_completion_tokens");
        json_t *nn = json_object_get(j, "n");
        if (json_is_integer(nn) && json_integer_value(nn) > 2)
            json_object_set_new(j, "n", json_integer(2));
        body = json_dumps(j, 0);
    }
    json_decref(j);
    srv_request rq;
    memset(&rq, 0, sizeof rq);
    rq.method = method;
    rq.path = path;
    rq.host_header = "127.0.0.1";
    rq.content_type = "application/json";
    rq.body = body ? body : in;
    rq.body_len = body ? strlen(body) : n;
    rq.fd = -1;
    srv_response rs;
    srv_handle(&g_ctx, &rq, &rs);
    if (rs.status < 200 || rs.status > 599)
        __builtin_trap();
    if (rs.kind == SRV_RESP_STREAM) {
        ft_buf all = {0};
        char buf[512];
        ssize_t k;
        while ((k = rs.stream_read(rs.stream_cls, buf, sizeof buf)) > 0)
            ft_buf_append(&all, buf, (size_t)k);
        if (k != -1 || !all.len ||
            (!strstr(ft_buf_cstr(&all), "data: [DONE]\n\n") && !strstr(ft_buf_cstr(&all), "data: {\"error\"")))
            __builtin_trap();
        ft_buf_free(&all);
    } else if (rs.kind == SRV_RESP_BODY && rs.content_type && !strcmp(rs.content_type, "application/json")) {
        json_t *out = json_loadb(rs.body.data, rs.body.len, JSON_ALLOW_NUL, NULL); /* a model may write U+0000 */
        if (!out) {
            fprintf(stderr, "not JSON (%d): %.*s\n", rs.status, (int)rs.body.len, rs.body.data);
            __builtin_trap();
        }
        if (rs.status >= 400)
            check_error_object(out);
        json_decref(out);
    }
    srv_response_deinit(&rs);
    free(body);
    return 0;
}
