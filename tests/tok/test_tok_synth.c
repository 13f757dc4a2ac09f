/* tests/tok/test_tok_synth.c: parity with Hugging Face `tokenizers` for small synthetic
 * tokenizers that exercise the components the four real ones leave out (Metaspace variants,
 * Digits, Punctuation, Whitespace, WhitespaceSplit, every Split behavior and invert, Lowercase,
 * NFKC/NFD/NFKD, Strip, Replace, added tokens with lstrip/rstrip/single_word/normalized, unk
 * without byte fallback, continuing_subword_prefix, end_of_word_suffix, ignore_merges, merges as
 * pairs, EOS templates, Strip/Replace/Fuse/ByteFallback decoders, added-token ids as `tokenizers`
 * assigns them). Fixtures and goldens come from
 * tools/reference/tok_synth.js. */
#include <stdlib.h>
#include <string.h>

#include "ftune/json.h"
#include "ftune/tok.h"
#include "test.h"
#include "tok/tok_test_util.h"

static bool same_ids(const int32_t *ids, size_t n, const json_t *want) {
    if (n != json_array_size(want))
        return false;
    for (size_t i = 0; i < n; i++)
        if (ids[i] != json_integer_value(json_array_get(want, i)))
            return false;
    return true;
}

static bool same_str(const char *s, size_t n, const json_t *want) {
    return want && n == json_string_length(want) && memcmp(s, json_string_value(want), n) == 0;
}

/* trim_offsets_bytes: the tokenizer's ByteLevel post-processor trims offsets. `tokenizers`
 * trims in whatever unit it reports: bytes for encode(), code points for the npm binding's
 * encode (it converts before post-processing), so the two agree only where bytes are chars:
 * such tokenizers have their offsets compared on ASCII texts. */
static void synth_(const char *name, bool trim_offsets_bytes) {
    char path[256];
    snprintf(path, sizeof path, "tok/synth/%s", name); /* a model folder (with tokenizer_config.json) */
    if (!ft_path_is_dir(ft_test_fixture(path)))
        snprintf(path, sizeof path, "tok/synth/%s.json", name);
    ft_err err;
    ft_tok *t;
    REQUIRE_OK(ft_tok_load(ft_test_fixture(path), &t, &err), &err);
    snprintf(path, sizeof path, "tok/synth/%s.golden.jsonl", name);
    char *data;
    size_t len;
    REQUIRE_OK(ft_file_read_all(ft_test_fixture(path), &data, &len, &err), &err);
    ft_tok_encoding e = {0};
    size_t n = 0, ok = 0, shown = 0, n_off = 0, ok_off = 0;
    for (char *p = data, *end = data + len; p < end;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ln = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_error_t je;
        json_t *g = ln ? json_loadb(p, ln, JSON_ALLOW_NUL, &je) : NULL;
        p += ln + 1;
        if (!g)
            continue;
        n++;
        const json_t *jt = json_object_get(g, "text");
        const char *text = json_string_value(jt);
        size_t tn = json_string_length(jt);
        bool good = true;
        const char *why = "";
        CHECK_OK(ft_tok_encode(t, text, tn, false, &e, &err), &err);
        if (!same_ids(e.ids, e.n, json_object_get(g, "ids")))
            good = false, why = "ids";
        char *dec = NULL;
        size_t dn = 0;
        CHECK_OK(ft_tok_decode(t, e.ids, e.n, false, &dec, &dn, &err), &err);
        if (good && !same_str(dec ? dec : "", dn, json_object_get(g, "dec")))
            good = false, why = "decode";
        ft_free(dec);
        CHECK_OK(ft_tok_encode(t, text, tn, true, &e, &err), &err);
        const json_t *full = json_object_get(g, "sp_full");
        if (full) {
            if (good && !same_ids(e.ids, e.n, full))
                good = false, why = "ids with special tokens";
        } else {
            const json_t *sp = json_object_get(g, "sp");
            size_t nb = json_array_size(json_array_get(sp, 0)), na = json_array_size(json_array_get(sp, 1));
            size_t nm = json_array_size(json_object_get(g, "ids"));
            if (good && (e.n != nb + nm + na || !same_ids(e.ids, nb, json_array_get(sp, 0)) ||
                         !same_ids(e.ids + nb + nm, na, json_array_get(sp, 1))))
                good = false, why = "ids with special tokens";
        }
        const json_t *off = json_object_get(g, "off");
        bool ascii = true;
        for (size_t k = 0; k < tn; k++)
            ascii &= (unsigned char)text[k] < 0x80;
        if (off && (ascii || !trim_offsets_bytes)) {
            n_off++;
            bool same = tok_offsets_match(text, tn, &e, off);
            if (same)
                ok_off++;
            else if (good)
                good = false, why = "offsets";
        }
        CHECK_OK(ft_tok_decode(t, e.ids, e.n, true, &dec, &dn, &err), &err);
        if (good && !same_str(dec ? dec : "", dn, json_object_get(g, "dskip")))
            good = false, why = "decode skipping special tokens";
        ft_free(dec);
        if (good)
            ok++;
        else if (shown++ < 4) {
            char *w = ft_json_dumps(g, 0);
            fprintf(stderr, "  %s: %s mismatch for %.300s\n    got [", name, why, w ? w : "?");
            for (size_t i = 0; i < e.n && i < 40; i++)
                fprintf(stderr, i ? ",%d" : "%d", (int)e.ids[i]);
            fprintf(stderr, "]\n    offsets [");
            for (size_t i = 0; i < e.n && i < 40; i++)
                fprintf(stderr, "[%zu,%zu]", e.offsets[i].start, e.offsets[i].end);
            fprintf(stderr, "]\n");
            free(w);
        }
        json_decref(g);
    }
    fprintf(stderr, "  %s: %zu/%zu identical (ids both ways, decode, decode skipping specials, offsets); offsets %zu/%zu\n",
            name, ok, n, ok_off, n_off);
    CHECK(n >= 500);
    CHECK(n_off >= 100);
    CHECK_EQ_INT(ok, n);
    ft_tok_encoding_free(&e);
    ft_free(data);
    ft_tok_free(t);
}

static void synth(const char *name) { synth_(name, false); }

TEST(tok_synth_sp_metaspace) { synth("sp_metaspace"); }
TEST(tok_synth_sp_metaspace_first) { synth("sp_metaspace_first"); }
TEST(tok_synth_sp_normalizers) { synth("sp_normalizers"); }
TEST(tok_synth_bl_digits_punct) { synth_("bl_digits_punct", true); }
TEST(tok_synth_bl_whitespace) { synth("bl_whitespace"); }
TEST(tok_synth_bl_split_behaviors) { synth("bl_split_behaviors"); }
TEST(tok_synth_bl_wssplit) { synth("bl_wssplit"); }
TEST(tok_synth_wp_prefix) { synth("wp_prefix"); }
TEST(tok_synth_eow_suffix) { synth("eow_suffix"); }
/* added_tokens whose file ids collide, leave gaps, repeat or descend, an empty content, a content
 * listed twice: ids as `tokenizers` assigns them (AddedVocabulary::add_tokens), not the file's. */
TEST(tok_synth_added_ids) { synth("added_ids"); }

/* A folder whose tokenizer_config.json adds tokens (added_tokens_decoder entries with ids that
 * collide, leave a gap or come in another order, changed flags, special tokens it names): the
 * tokenizer transformers' PreTrainedTokenizerFast makes of it, ids from `tokenizers`. */
TEST(tok_synth_added_config) { synth("added_config"); }
