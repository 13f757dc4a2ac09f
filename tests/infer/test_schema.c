/* tests/infer/test_schema.c: constrained decoding (src/infer/grammar.c, regex.c, json_schema.c).
 * The matcher on hand-written texts (json_object and a schema: valid prefixes kept, invalid ones
 * refused); refusals that name the keyword and its place; then, for each supported keyword,
 * texts sampled from the tiny random model under the schema over several seeds, validated by an
 * independent validator (Ajv 2020-12 with ajv-formats, tests/infer/schema_validate.mjs); the
 * token budget steering: every answer that ends by "stop" is complete and valid, also with few
 * tokens, and one whose budget cannot hold a document ends by "length". */
#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#include "ftune/infer.h"
#include "infer/infer_internal.h"
#include "infer_fixture.h"
#include "test.h"

/* ---------------------------------------------------------------- the matcher */

typedef struct matcher {
    infer_grammar *g;
    infer_gstate *st; /* (3) */
} matcher;

static bool matcher_new(const char *schema_text, bool strict, matcher *m, ft_err *err) {
    memset(m, 0, sizeof *m);
    json_t *s = NULL;
    if (schema_text) {
        s = json_loads(schema_text, 0, NULL);
        if (!s)
            return false;
    }
    ft_status st = infer_schema_compile(s, strict, &m->g, err);
    json_decref(s);
    m->st = ft_malloc(3 * sizeof *m->st);
    return st == FT_OK && m->st;
}

static void matcher_free(matcher *m) {
    infer_grammar_free(m->g);
    ft_free(m->st);
}

/* Whether text is a prefix of a sentence (fed in pieces of `chunk` bytes, as tokens would), and
 * whether it is a complete one. */
static bool accepts(matcher *m, const char *text, size_t chunk, bool *done) {
    if (done)
        *done = false;
    infer_gstate_init(m->g, &m->st[0]);
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += chunk) {
        size_t k = n - i < chunk ? n - i : chunk;
        if (!infer_gstate_feed(m->g, &m->st[0], text + i, k, &m->st[1], &m->st[2]))
            return false;
        infer_gstate_copy(&m->st[0], &m->st[1]);
    }
    if (done)
        *done = infer_gstate_done(&m->st[0]);
    return true;
}

static void check_texts(matcher *m, const char *const *ok, size_t n_ok, const char *const *bad, size_t n_bad) {
    for (size_t i = 0; i < n_ok; i++)
        for (size_t chunk = 1; chunk <= 5; chunk += 4) {
            bool good = accepts(m, ok[i], chunk, NULL);
            if (!good)
                fprintf(stderr, "rejected: %s\n", ok[i]);
            CHECK(good);
        }
    for (size_t i = 0; i < n_bad; i++) {
        bool good = accepts(m, bad[i], 3, NULL);
        if (good)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(!good);
    }
}

TEST(infer_grammar_json_object) {
    matcher m;
    ft_err err;
    REQUIRE(matcher_new(NULL, false, &m, &err));
    const char *ok[] = {"{", "{\"a\"", "{\"a\": 1", "{\"a\": -0.5e+3, \"b\": [1, {\"c\": null}], \"d\": \"\\u00e9\"}",
                        "{\"a\":[]}", "{}", "{\"a\": tr", "{\"a\": \"x\\n", "{\n  \"a\": [\n    1\n  ]\n}",
                        "{\"\xc3\xa9\": \"\xe2\x82\xac\xf0\x9f\x98\x80\"}"};
    const char *bad[] = {"[", "1", " {", "{a", "{\"a\" 1", "{\"a\": 01", "{\"a\": [,", "{\"a\": tx", "{}}", "{} x",
                         "{\"a\": -}", "{\"a\": 1.}", "{\"a\": \"\x01\"}", "{\"a\": [1,]}", "{\"a\": 1e123",
                         "{\"a\": 1234567890123456", "{\"a\": \"\\ud800", "{\"a\": \"\xc3\x28", "{\"a\":          1",
                         "{\"a\": \"\xed\xa0\x80"};
    check_texts(&m, ok, sizeof ok / sizeof *ok, bad, sizeof bad / sizeof *bad);
    bool done;
    CHECK(accepts(&m, "{\"a\": [1, 2]", 1, &done) && !done);
    CHECK(accepts(&m, "{\"a\": [1, 2]}", 1, &done) && done);
    CHECK(!infer_gstate_can_continue(&m.st[0])); /* nothing may follow a complete object */
    /* the shortest completion: "]}" */
    CHECK(accepts(&m, "{\"a\": [1", 1, &done));
    CHECK_EQ_INT(infer_gstate_min_left(m.g, &m.st[0]), 2);
    matcher_free(&m);
}

TEST(infer_grammar_schema) {
    matcher m;
    ft_err err;
    REQUIRE(matcher_new("{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 3}, "
                        "\"n\": {\"type\": \"integer\", \"minimum\": -20, \"maximum\": 300}, \"tags\": {\"type\": "
                        "\"array\", \"items\": {\"enum\": [\"a\", \"bc\", 7]}, \"maxItems\": 2}, \"x\": {\"type\": "
                        "[\"number\", \"null\"]}, \"ok\": {\"type\": \"boolean\"}}, \"required\": [\"name\", \"n\"]}",
                        false, &m, &err));
    const char *full = "{\"name\": \"abc\", \"n\": -12, \"tags\": [\"bc\", 7], \"x\": null, \"ok\": true}";
    bool done;
    CHECK(accepts(&m, full, 1, &done) && done);
    for (size_t k = 0; k < strlen(full); k++) { /* every prefix, none complete before the end */
        char pre[128];
        snprintf(pre, sizeof pre, "%.*s", (int)k, full);
        bool d;
        bool ok = accepts(&m, pre, 1, &d);
        if (!ok || d)
            fprintf(stderr, "prefix %zu: %s (ok %d done %d)\n", k, pre, ok, d);
        CHECK(ok && !d);
    }
    const char *ok[] = {"{\"name\":\"\",\"n\":0,\"tags\":[],\"x\":1.5e3,\"ok\":false}", "{\"name\": \"a\", \"n\": 300}",
                        "{\"name\": \"a\", \"n\": 1, \"ok\": false}", "{\"name\": \"a\", \"n\": -20, \"x\": -0.25}"};
    const char *bad[] = {
        "{\"nab", "{\"n\"",                       /* the first property is name */
        "{\"name\": \"abcd\"",                    /* maxLength */
        "{\"name\": 1",                           /* type */
        "{\"name\": \"a\", \"n\": 1.5",           /* an integer */
        "{\"name\": \"a\", \"n\": 301",           /* maximum */
        "{\"name\": \"a\", \"n\": -21",           /* minimum */
        "{\"name\": \"a\", \"n\": 1, \"tags\": [\"b\"]", /* enum */
        "{\"name\": \"a\", \"n\": 1, \"tags\": [7, 7, 7", /* maxItems */
        "{\"name\": \"a\"}",                      /* required */
        "{\"name\": \"a\", \"n\": 1, \"q\"",      /* no undeclared properties */
        "{\"name\" : \"a\", \"n\": 1} ",          /* nothing after */
        "{ \"na me\"",
    };
    check_texts(&m, ok, sizeof ok / sizeof *ok, bad, sizeof bad / sizeof *bad);
    matcher_free(&m);

    /* $ref recursion, anyOf, patterns and formats */
    REQUIRE(matcher_new("{\"$defs\": {\"node\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": \"string\", "
                        "\"pattern\": \"^[a-c]+-\\\\d{2}$\"}, \"kids\": {\"type\": \"array\", \"items\": {\"$ref\": "
                        "\"#/$defs/node\"}}}, \"required\": [\"v\", \"kids\"]}}, \"anyOf\": [{\"$ref\": "
                        "\"#/$defs/node\"}, {\"type\": \"string\", \"format\": \"date\"}]}",
                        false, &m, &err));
    const char *ok2[] = {"{\"v\": \"ab-12\", \"kids\": [{\"v\": \"c-00\", \"kids\": []}]}", "\"2024-02-28\"",
                         "\"1999-12-31\""};
    const char *bad2[] = {"{\"v\": \"ad", "{\"v\": \"a-1x", "{\"v\": \"a-123", "\"2024-02-30", "\"2024-13",
                          "{\"v\": \"a-12\", \"kids\": [{\"v\": \"\""};
    check_texts(&m, ok2, sizeof ok2 / sizeof *ok2, bad2, sizeof bad2 / sizeof *bad2);
    matcher_free(&m);

    /* an unanchored pattern matches anywhere; escapes are written as JSON writes them */
    REQUIRE(matcher_new("{\"type\": \"string\", \"pattern\": \"x\\\"y\"}", false, &m, &err));
    const char *ok3[] = {"\"x\\\"y\"", "\"aax\\\"ybb\""};
    const char *bad3[] = {"\"xy\"", "\"x\\\"yb\\u00"};
    check_texts(&m, ok3, 2, bad3, 1);
    matcher_free(&m);
}

TEST(infer_schema_refusals) {
    static const struct {
        const char *schema, *want[2];
        bool strict;
        ft_status code;
    } cases[] = {
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"oneOf\": [{}]}}}", {"oneOf", "#/properties/a"}, false,
         FT_ERR_UNSUPPORTED},
        {"{\"type\": \"string\", \"pattern\": \"(a)\\\\1\"}", {"back-references", "pattern"}, false, FT_ERR_UNSUPPORTED},
        {"{\"type\": \"string\", \"pattern\": \"(?=a)\"}", {"look-ahead", "#"}, false, FT_ERR_UNSUPPORTED},
        {"{\"type\": \"string\", \"pattern\": \"[a-\"}", {"unterminated", "#"}, false, FT_ERR_INVALID},
        {"{\"type\": \"string\", \"format\": \"ftp-url\"}", {"ftp-url", "not supported"}, false, FT_ERR_UNSUPPORTED},
        {"{\"$ref\": \"https://example.com/s.json\"}", {"$ref", "example.com"}, false, FT_ERR_UNSUPPORTED},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"#\"}}, \"required\": [\"a\"]}",
         {"no finite", "recursion"}, false, FT_ERR_INVALID},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}}", {"additionalProperties", "#"},
         true, FT_ERR_INVALID},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\"}}, \"additionalProperties\": false}",
         {"required", "'a'"}, true, FT_ERR_INVALID},
        {"{\"type\": \"array\"}", {"root", "object"}, true, FT_ERR_INVALID},
        {"{\"type\": \"integer\", \"minimum\": 5, \"maximum\": 4}", {"no integer", "#"}, false, FT_ERR_INVALID},
        {"{\"type\": \"number\", \"minimum\": 0.1, \"maximum\": 0.9}", {"whole unit", "#"}, false, FT_ERR_UNSUPPORTED},
        {"{\"type\": \"integer\", \"multipleOf\": 7, \"minimum\": 1, \"maximum\": 1e12}", {"multipleOf", "#"}, false,
         FT_ERR_UNSUPPORTED},
        {"{\"type\": \"strin\"}", {"strin", "#"}, false, FT_ERR_INVALID},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *s = json_loads(cases[i].schema, 0, NULL);
        REQUIRE(s);
        ft_err err = {0};
        ft_status st = ft_infer_check_schema(s, cases[i].strict, &err);
        bool named = st != FT_OK && strstr(err.msg, cases[i].want[0]) && strstr(err.msg, cases[i].want[1]);
        if (st != cases[i].code || !named)
            fprintf(stderr, "case %zu: status %d: %s\n", i, (int)st, st ? err.msg : "accepted");
        CHECK(st == cases[i].code);
        CHECK(named);
        json_decref(s);
    }
}

/* ---------------------------------------------------------------- sampled, then validated */

/* One schema per supported keyword (and their combinations). */
static const char *const keyword_schemas[] = {
    "{\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\"}, \"i\": {\"type\": \"integer\"}, \"n\": "
    "{\"type\": \"number\"}, \"b\": {\"type\": \"boolean\"}, \"z\": {\"type\": \"null\"}}, \"required\": [\"s\", "
    "\"i\", \"n\", \"b\", \"z\"], \"additionalProperties\": false}",
    "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": [\"string\", \"null\"], \"maxLength\": 4}, \"b\": "
    "{\"type\": [\"integer\", \"boolean\"]}}, \"required\": [\"a\", \"b\"]}",
    "{\"type\": \"object\", \"properties\": {\"opt1\": {\"type\": \"integer\"}, \"req\": {\"const\": \"k\"}, "
    "\"opt2\": {\"type\": \"boolean\"}}, \"required\": [\"req\"]}",
    "{\"enum\": [\"red\", \"green\", 3, null, {\"x\": [1]}]}",
    "{\"anyOf\": [{\"type\": \"object\", \"properties\": {\"kind\": {\"const\": \"circle\"}, \"r\": {\"type\": "
    "\"number\", \"minimum\": 0}}, \"required\": [\"kind\", \"r\"], \"additionalProperties\": false}, {\"type\": "
    "\"object\", \"properties\": {\"kind\": {\"const\": \"square\"}, \"side\": {\"type\": \"integer\"}}, "
    "\"required\": [\"kind\", \"side\"], \"additionalProperties\": false}]}",
    "{\"$defs\": {\"node\": {\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": "
    "3}, \"children\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/node\"}, \"maxItems\": 2}}, "
    "\"required\": [\"name\", \"children\"], \"additionalProperties\": false}}, \"$ref\": \"#/$defs/node\"}",
    "{\"type\": \"object\", \"properties\": {\"v\": {\"type\": \"integer\"}, \"next\": {\"anyOf\": [{\"$ref\": "
    "\"#\"}, {\"type\": \"null\"}]}}, \"required\": [\"v\", \"next\"]}",
    "{\"type\": \"array\", \"items\": {\"type\": \"integer\", \"minimum\": -5, \"maximum\": 5}, \"minItems\": 2, "
    "\"maxItems\": 4}",
    "{\"type\": \"object\", \"properties\": {\"code\": {\"type\": \"string\", \"pattern\": "
    "\"^[A-Z]{2}-\\\\d{3}(-[a-z]+)?$\"}, \"free\": {\"type\": \"string\", \"pattern\": \"q[^\\\\s\\\"]*\\\\.\"}, "
    "\"esc\": {\"type\": \"string\", \"pattern\": \"^(\\\\\\\\|\\\"|\\\\t|[xyz]){1,6}$\"}}, \"required\": [\"code\", "
    "\"free\", \"esc\"]}",
    "{\"type\": \"object\", \"properties\": {\"dt\": {\"type\": \"string\", \"format\": \"date-time\"}, \"d\": "
    "{\"type\": \"string\", \"format\": \"date\"}, \"t\": {\"type\": \"string\", \"format\": \"time\"}, \"du\": "
    "{\"type\": \"string\", \"format\": \"duration\"}}, \"required\": [\"dt\", \"d\", \"t\", \"du\"]}",
    "{\"type\": \"object\", \"properties\": {\"e\": {\"type\": \"string\", \"format\": \"email\"}, \"h\": {\"type\": "
    "\"string\", \"format\": \"hostname\"}, \"u\": {\"type\": \"string\", \"format\": \"uuid\"}}, \"required\": "
    "[\"e\", \"h\", \"u\"]}",
    "{\"type\": \"object\", \"properties\": {\"v4\": {\"type\": \"string\", \"format\": \"ipv4\"}, \"v6\": {\"type\": "
    "\"string\", \"format\": \"ipv6\"}, \"uri\": {\"type\": \"string\", \"format\": \"uri\"}}, \"required\": [\"v4\", "
    "\"v6\", \"uri\"]}",
    "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"exclusiveMinimum\": 10, "
    "\"exclusiveMaximum\": 13}, \"b\": {\"type\": \"integer\", \"minimum\": -1234, \"maximum\": 98765}, \"c\": "
    "{\"type\": \"number\", \"minimum\": -2.5, \"maximum\": 1.5}, \"d\": {\"type\": \"number\", \"exclusiveMinimum\": "
    "0, \"exclusiveMaximum\": 1}}, \"required\": [\"a\", \"b\", \"c\", \"d\"]}",
    "{\"type\": \"object\", \"properties\": {\"m\": {\"type\": \"integer\", \"multipleOf\": 7}, \"k\": {\"type\": "
    "\"integer\", \"multipleOf\": 25, \"minimum\": 0, \"maximum\": 1000}, \"f\": {\"type\": \"number\", "
    "\"multipleOf\": 3, \"minimum\": 0}}, \"required\": [\"m\", \"k\", \"f\"]}",
    "{\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\", \"minLength\": 3, \"maxLength\": 5}, "
    "\"l\": {\"type\": \"array\", \"items\": {\"type\": \"string\", \"minLength\": 1}, \"minItems\": 1}}, "
    "\"required\": [\"s\", \"l\"], \"additionalProperties\": false}",
    "{\"type\": \"object\", \"properties\": {\"any\": {}, \"obj\": {\"type\": \"object\"}, \"one\": {\"allOf\": "
    "[{\"type\": \"string\", \"enum\": [\"x\", \"y\"]}]}}, \"required\": [\"any\", \"obj\", \"one\"]}",
};

static bool node_with_ajv(void) {
    return access("tools/npm/node_modules/ajv/package.json", R_OK) == 0 &&
           access("tools/npm/node_modules/ajv-formats/package.json", R_OK) == 0 &&
           system("node --version >/dev/null 2>&1") == 0;
}

/* Run the validator over the lines written; its last line is the summary. */
static int validate_file(const char *path) {
    char *cmd = ft_asprintf("node tests/infer/schema_validate.mjs '%s' 2>&1", path);
    FILE *p = popen(cmd, "r");
    ft_free(cmd);
    if (!p)
        return -1;
    char line[8192];
    while (fgets(line, sizeof line, p))
        fprintf(stderr, "  %s", line);
    return pclose(p);
}

static void write_line(FILE *out, const char *schema, const ft_infer_result *res) {
    json_t *o = json_pack("{s:o, s:s%, s:s}", "schema", json_loads(schema, 0, NULL), "text", res->text,
                          res->text_len, "finish", ft_infer_finish_name(res->finish));
    char *t = json_dumps(o, JSON_COMPACT);
    fprintf(out, "%s\n", t);
    free(t);
    json_decref(o);
}

/* The sampling tests' setup: the tiny model's engine, a file of JSON lines for the validator,
 * a prompt. */
typedef struct sampler_run {
    infer_fixture f;
    ft_infer *e;
    char *path;
    FILE *out;
    int32_t prompt[8];
} sampler_run;

static bool sampler_start(sampler_run *s, const char *file, uint32_t salt, ft_err *err) {
    memset(s, 0, sizeof *s);
    if (!infer_fixture_load(&s->f, err))
        return false;
    ft_tensor_set_threads(1);
    if (ft_infer_new(s->f.m, s->f.tok, s->f.dir, NULL, &s->e, err) != FT_OK)
        return false;
    s->path = ft_path_join(ft_test_tmpdir(), file);
    s->out = s->path ? fopen(s->path, "w") : NULL;
    infer_fill_prompt(s->prompt, 8, salt);
    return s->out != NULL;
}

/* Close the file, run the validator over it (its exit status), free the rest. */
static int sampler_finish(sampler_run *s) {
    fclose(s->out);
    int rc = validate_file(s->path);
    ft_free(s->path);
    ft_infer_free(s->e);
    infer_fixture_free(&s->f);
    return rc;
}

TEST(infer_schema_keywords_validate) {
    if (!node_with_ajv())
        SKIP("node with npm ajv and ajv-formats is missing: `make deps` installs them into tools/npm");
    sampler_run sr;
    ft_err err;
    REQUIRE(sampler_start(&sr, "sampled.jsonl", 6, &err));
    const size_t n_schemas = sizeof keyword_schemas / sizeof *keyword_schemas;
    const uint64_t seeds = 3;
    int stopped = 0, total = 0;
    for (size_t k = 0; k < n_schemas; k++) {
        json_t *schema = json_loads(keyword_schemas[k], 0, NULL);
        REQUIRE(schema);
        for (uint64_t seed = 0; seed < seeds; seed++) {
            ft_infer_request r = ft_infer_default_request();
            r.prompt = sr.prompt, r.n_prompt = 8;
            r.seed = seed * 1000 + k;
            r.max_tokens = 120;
            r.json = FT_INFER_JSON_SCHEMA;
            r.json_schema = schema;
            ft_infer_result res;
            REQUIRE_OK(ft_infer_run(sr.e, &r, NULL, NULL, &res, &err), &err);
            /* the budget holds every one of these schemas' shortest documents: all finish */
            if (res.finish != FT_INFER_STOP)
                fprintf(stderr, "schema %zu seed %llu ended by %s: %s\n", k, (unsigned long long)seed,
                        ft_infer_finish_name(res.finish), res.text);
            CHECK(res.finish == FT_INFER_STOP);
            stopped += res.finish == FT_INFER_STOP;
            total++;
            write_line(sr.out, keyword_schemas[k], &res);
            ft_infer_result_free(&res);
        }
        json_decref(schema);
    }
    fprintf(stderr, "  %d of %d sampled documents finished\n", stopped, total);
    CHECK_EQ_INT(sampler_finish(&sr), 0);
}

/* Budget steering: with few tokens, json_object and json_schema answers still close (every "stop"
 * is a complete, valid document); a budget below the shortest document ends by "length" with a
 * valid prefix. Validated by Ajv like the rest. */
TEST(infer_schema_budget) {
    if (!node_with_ajv())
        SKIP("node with npm ajv and ajv-formats is missing: `make deps` installs them into tools/npm");
    sampler_run sr;
    ft_err err;
    REQUIRE(sampler_start(&sr, "budget.jsonl", 2, &err));
    const char *object_schema = "{\"type\": \"object\"}"; /* what json_object must produce */
    const char *schema_text = keyword_schemas[0];
    const char *shortest_doc = "{\"s\":\"\",\"i\":0,\"n\":0,\"b\":true,\"z\":null}";
    const int64_t shortest = (int64_t)strlen(shortest_doc);
    json_t *schema = json_loads(schema_text, 0, NULL);
    matcher m, mo;
    REQUIRE(matcher_new(schema_text, false, &m, &err));
    REQUIRE(matcher_new(NULL, false, &mo, &err));
    int stops = 0;
    for (int mode = 0; mode < 2; mode++)
        for (int64_t budget = 2; budget <= 60; budget += 7)
            for (uint64_t seed = 0; seed < 2; seed++) {
                ft_infer_request r = ft_infer_default_request();
                r.prompt = sr.prompt, r.n_prompt = 8;
                r.seed = seed + (uint64_t)budget * 10;
                r.max_tokens = budget;
                r.json = mode ? FT_INFER_JSON_SCHEMA : FT_INFER_JSON_OBJECT;
                r.json_schema = mode ? schema : NULL;
                ft_infer_result res;
                REQUIRE_OK(ft_infer_run(sr.e, &r, NULL, NULL, &res, &err), &err);
                bool done;
                CHECK(accepts(mode ? &m : &mo, res.text, 1, &done)); /* always a valid prefix */
                CHECK(done == (res.finish == FT_INFER_STOP));
                CHECK((int64_t)res.n_ids <= budget);
                /* a budget that holds the shortest document always ends complete */
                if (budget >= (mode ? shortest : 2))
                    CHECK(res.finish == FT_INFER_STOP);
                else
                    CHECK(res.finish == FT_INFER_LENGTH);
                stops += res.finish == FT_INFER_STOP;
                write_line(sr.out, mode ? schema_text : object_schema, &res);
                ft_infer_result_free(&res);
            }
    CHECK(stops > 10);
    CHECK_EQ_INT(sampler_finish(&sr), 0);
    /* the shortest document of schema 0 is the one the test assumes */
    infer_gstate_init(m.g, &m.st[0]);
    CHECK_EQ_INT(infer_gstate_min_left(m.g, &m.st[0]), shortest);
    bool done;
    CHECK(accepts(&m, shortest_doc, 1, &done) && done);
    matcher_free(&m);
    matcher_free(&mo);
    json_decref(schema);
}
