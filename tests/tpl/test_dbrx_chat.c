/* tests/tpl: DBRX Instruct's chat format end to end. The DBRX-shaped tokenizer (cl100k with
 * <|pad|>, <|im_start|>, <|im_end|>; tools/reference/dbrx_tokenizer.js) and its ChatML template
 * with the default system prompt, loaded from tokenizer_config.json as a model folder has them:
 * each chat sample of tests/fixtures/data/chat.jsonl has the token ids of HF `tokenizers` on the
 * Jinja2 rendering and the loss mask of the prefix rule, both from
 * tools/reference/chat_golden.py + chat_tokens.js (tests/fixtures/tok/dbrx/chat_golden.json),
 * for loss on every assistant turn and on the last only. */
#include <stdlib.h>

#include "ftune/data.h"
#include "ftune/json.h"
#include "ftune/tok.h"
#include "ftune/tpl.h"
#include "test.h"

TEST(tpl_dbrx_chat_tokens_and_mask_equal_the_reference) {
    ft_err err;
    json_t *g = NULL;
    REQUIRE_OK(ft_json_load_file(ft_test_fixture("tok/dbrx/chat_golden.json"), &g, &err), &err);
    ft_tok *tok = NULL;
    ft_chat *chat = NULL;
    REQUIRE_OK(ft_tok_load(ft_test_fixture("tok/dbrx"), &tok, &err), &err);
    REQUIRE_OK(ft_chat_load(ft_test_fixture("tok/dbrx"), &chat, &err), &err);
    CHECK_STR_EQ(ft_chat_token(chat, "eos_token"), "<|endoftext|>");
    CHECK_STR_EQ(ft_chat_token(chat, "pad_token"), "<|pad|>");
    /* DBRX's special ids */
    const char *specials[4] = {"<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"};
    const int32_t want_ids[4] = {100257, 100277, 100278, 100279};
    ft_tok_encoding e = {0};
    for (int k = 0; k < 4; k++) {
        REQUIRE_OK(ft_tok_encode(tok, specials[k], strlen(specials[k]), false, &e, &err), &err);
        CHECK(e.n == 1 && e.ids[0] == want_ids[k]);
    }
    ft_tok_encoding_free(&e);
    const int64_t T = json_integer_value(json_object_get(g, "T"));
    json_t *samples = json_object_get(g, "samples");
    for (int last = 0; last < 2; last++) {
        ft_reader *r = NULL;
        REQUIRE_OK(ft_reader_open(ft_test_fixture("data/chat.jsonl"), FT_TASK_CHAT_COMPLETION, NULL, &r, &err), &err);
        ft_sample_params sp = {.task = FT_TASK_CHAT_COMPLETION, .tok = tok, .chat = chat, .context_length = T,
                               .last_assistant = last};
        ft_sample_scratch sc = {0};
        ft_sample s = {0};
        ft_record rec;
        bool done;
        size_t i = 0;
        while (ft_reader_next(r, &rec, &done, &err) == FT_OK && !done) {
            json_t *want = json_array_get(samples, i);
            REQUIRE(want);
            json_t *parsed = json_loadb(rec.data, rec.len, 0, NULL);
            CHECK_OK(ft_sample_build(&sp, parsed, &rec, &sc, &s, &err), &err);
            json_decref(parsed);
            json_t *ids = json_object_get(want, "ids");
            const char *tr = json_string_value(json_object_get(want, last ? "trainable_last" : "trainable"));
            CHECK_EQ_INT(s.n, json_array_size(ids));
            CHECK_EQ_INT(s.n_full, json_integer_value(json_object_get(want, "n_full")));
            size_t differ = 0, n_tr = 0;
            for (size_t k = 0; k < s.n && k < json_array_size(ids); k++) {
                differ += s.ids[k] != json_integer_value(json_array_get(ids, k)) || s.trainable[k] != (tr[k] == '1');
                n_tr += s.trainable[k];
            }
            if (differ)
                ft_test_fail_(__FILE__, __LINE__, "chat sample %zu (last_assistant %d): %zu tokens differ from the golden",
                              i, last, differ);
            /* the default system prompt when the conversation has none, never trained on; every
             * trained turn ends with <|im_end|> */
            const char *text = json_string_value(json_object_get(want, "text"));
            CHECK(text && strstr(text, "<|im_start|>system\n"));
            CHECK((strstr(text, "You are DBRX, created by Databricks") != NULL) == (i != 1));
            CHECK(n_tr > 0 && s.trainable[s.n - 1] && s.ids[s.n - 1] == 100279);
            CHECK(!s.trainable[0]);
            i++;
        }
        CHECK_EQ_INT(i, 3);
        ft_sample_free(&s);
        ft_sample_scratch_free(&sc);
        ft_reader_free(r);
    }
    ft_chat_free(chat);
    ft_tok_free(tok);
    json_decref(g);
}
