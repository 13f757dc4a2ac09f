/* tests/gen/test_generate.c: the generator: greedy decoding on the KV cache gives exactly the
 * tokens that argmax over full forward passes gives; streamed text equals the decode of the ids;
 * generation stops at the eos ids of generation_config.json and at tokenizer_config.json's
 * eos_token; sampling is reproducible for a seed. */
#include <stdlib.h>
#include <unistd.h>

#include "ftune/gen.h"
#include "test.h"
#include "train/tiny.h"

typedef struct {
    ft_buf text;
    int calls;
} collect;

static ft_status on_text(void *u, const char *t, size_t n) {
    collect *c = u;
    c->calls++;
    return ft_buf_append(&c->text, t, n);
}

TEST(gen_greedy_matches_full_forward) {
    const char *dir = ft_test_tmpdir();
    ft_err err;
    REQUIRE_OK(tiny_model_write(dir, 4, &err), &err);
    /* Stop ids: only the config's eos 257 (generation_config.json is empty). */
    char p[1200];
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    REQUIRE_OK(ft_file_write_atomic(p, "{}", 2, &err), &err);
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    ft_generator *g = NULL;
    REQUIRE_OK(ft_model_load(dir, &mp, &m, &err), &err);
    REQUIRE_OK(ft_tok_load(dir, &tok, &err), &err);
    REQUIRE_OK(ft_gen_new(m, tok, NULL, 48, &g, &err), &err);
    ft_workspace_params wp = ft_workspace_default_params();
    wp.max_seq = 48;
    ft_workspace *ws = NULL;
    REQUIRE_OK(ft_workspace_new(m, &wp, &ws, &err), &err);
    size_t nstop;
    ft_gen_stop_ids(g, &nstop);
    int32_t prompt[] = {256, 104, 105, 32, 116, 104, 101, 114, 101};
    size_t np = sizeof prompt / sizeof *prompt;
    ft_gen_params gp = ft_gen_default_params();
    gp.sampling.temperature = 0;
    gp.max_new_tokens = 30;
    collect col = {0};
    gp.on_text = on_text;
    gp.user = &col;
    ft_gen_output out;
    REQUIRE_OK(ft_gen_from_ids(g, prompt, np, &gp, &out, &err), &err);
    /* The reference: the whole sequence through ft_model_forward, argmax of the last row. */
    int32_t seq[48];
    memcpy(seq, prompt, sizeof prompt);
    size_t n = np;
    const int64_t V = 259;
    float *logits = malloc(sizeof(float) * 48 * V);
    int32_t tg[48];
    size_t want_n = 0;
    int32_t want[30];
    while (want_n < 30) {
        for (size_t t = 0; t < n; t++)
            tg[t] = -100;
        ft_batch b = {.B = 1, .T = (int64_t)n, .input_ids = seq, .targets = tg};
        double ls;
        int64_t nt;
        REQUIRE_OK(ft_model_forward(m, ws, &b, logits, &ls, &nt, &err), &err);
        const float *l = logits + (n - 1) * V;
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (l[v] > l[best])
                best = v;
        if (nstop == 1 && best == 257)
            break;
        want[want_n++] = best;
        seq[n++] = best;
    }
    free(logits);
    CHECK_EQ_INT(out.n_ids, want_n);
    CHECK(memcmp(out.ids, want, want_n * sizeof(int32_t)) == 0);
    /* Streamed pieces concatenate to the full decode. */
    char *dec = NULL;
    REQUIRE_OK(ft_tok_decode(tok, out.ids, out.n_ids, true, &dec, NULL, &err), &err);
    CHECK_STR_EQ(ft_buf_cstr(&col.text), out.text);
    CHECK_STR_EQ(out.text, dec);
    CHECK(col.calls >= 1);
    ft_free(dec);
    ft_buf_free(&col.text);
    ft_gen_output_free(&out);
    ft_gen_free(g);
    ft_tok_free(tok);
    ft_workspace_free(ws);
    ft_model_free(m);
}

TEST(gen_stop_ids_from_configs_and_seeding) {
    const char *dir = ft_test_tmpdir();
    ft_err err;
    REQUIRE_OK(tiny_model_write(dir, 4, &err), &err);
    ft_model_params mp = ft_model_default_params();
    ft_tensor_set_threads(1);
    ft_model *m = NULL;
    ft_tok *tok = NULL;
    REQUIRE_OK(ft_model_load(dir, &mp, &m, &err), &err);
    REQUIRE_OK(ft_tok_load(dir, &tok, &err), &err);
    /* generation_config.json lists 258 as a second eos id. */
    char p[1200];
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    const char *gc = "{\"eos_token_id\": [257, 258]}";
    REQUIRE_OK(ft_file_write_atomic(p, gc, strlen(gc), &err), &err);
    ft_generator *g = NULL;
    REQUIRE_OK(ft_gen_new(m, tok, dir, 32, &g, &err), &err);
    size_t n;
    const int32_t *ids = ft_gen_stop_ids(g, &n);
    bool has257 = false, has258 = false;
    for (size_t i = 0; i < n; i++) {
        has257 |= ids[i] == 257;
        has258 |= ids[i] == 258;
    }
    CHECK(has257 && has258);
    ft_gen_free(g);
    /* Without generation_config.json: the config's eos (257) and tokenizer_config's eos_token
     * ("</s>" = 257) only. */
    unlink(p);
    REQUIRE_OK(ft_gen_new(m, tok, dir, 32, &g, &err), &err);
    ids = ft_gen_stop_ids(g, &n);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ids[0], 257);
    /* Seeded sampling: same seed, same text; the run respects max_new_tokens. */
    ft_gen_params gp = ft_gen_default_params();
    gp.max_new_tokens = 12;
    ft_gen_output a, b, c;
    REQUIRE_OK(ft_gen_text(g, "abc", &gp, &a, &err), &err);
    REQUIRE_OK(ft_gen_text(g, "abc", &gp, &b, &err), &err);
    gp.seed = 99;
    REQUIRE_OK(ft_gen_text(g, "abc", &gp, &c, &err), &err);
    CHECK(a.n_ids <= 12 && a.n_prompt == 4);
    CHECK(a.n_ids == b.n_ids && memcmp(a.ids, b.ids, a.n_ids * sizeof(int32_t)) == 0);
    CHECK(a.n_ids != c.n_ids || memcmp(a.ids, c.ids, a.n_ids * sizeof(int32_t)) != 0);
    ft_gen_output_free(&a);
    ft_gen_output_free(&b);
    ft_gen_output_free(&c);
    /* Chat prompts: one user message and the template's generation prompt; the template's
     * end-of-turn token (<|eot|>, 258) stops chat generations. */
    CHECK(ft_gen_has_chat_template(g));
    int32_t *cids = NULL;
    size_t cn = 0;
    REQUIRE_OK(ft_gen_prompt_ids(g, "hi", true, &cids, &cn, &err), &err);
    char *ctext = NULL;
    REQUIRE_OK(ft_tok_decode(tok, cids, cn, false, &ctext, NULL, &err), &err);
    CHECK_STR_EQ(ctext, "<s><user>hi<|eot|><assistant>");
    CHECK_EQ_INT(cids[0], 256);
    ft_free(ctext);
    ft_free(cids);
    const int32_t *turn = ft_gen_turn_stop_ids(g, &n);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(turn[0], 258);
    gp.chat = false;
    /* A prompt that does not fit the context is an error, not a crash. */
    char longp[64];
    memset(longp, 'x', 40);
    longp[40] = 0;
    CHECK(ft_gen_text(g, longp, &gp, &a, &err) == FT_ERR_RANGE);
    ft_gen_free(g);
    ft_tok_free(tok);
    ft_model_free(m);
}
