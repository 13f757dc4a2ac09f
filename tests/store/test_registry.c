/* tests/store: the model registry: names, versions numbered 1, 2, ..., files cloned (not linked)
 * under $FTUNE_HOME/registry/<catalog>/<schema>/<name>/<version>/; a version folder is never
 * overwritten, not even by a store that was emptied (issue #9); deleted numbers are not reused;
 * temporary folders of dead processes are cleaned. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ftune/store.h"
#include "test.h"

static void write_file(const char *dir, const char *name, const char *text) {
    char *p = ft_path_join(dir, name);
    ft_file_write_atomic(p, text, strlen(text), NULL);
    ft_free(p);
}

TEST(registry_versions_are_clones) {
    ft_err err;
    const char *tmp = ft_test_tmpdir();
    char *home = ft_path_join(tmp, "home"), *src = ft_path_join(tmp, "export"), *db = NULL;
    REQUIRE_OK(ft_mkdir_p(src, &err), &err);
    write_file(src, "config.json", "{\"architectures\":[\"LlamaForCausalLM\"]}");
    write_file(src, "tokenizer.json", "{}");
    write_file(src, "model.safetensors", "weights-v1");
    db = ft_path_join(home, "ftune.db");
    REQUIRE_OK(ft_mkdir_p(home, &err), &err);
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);

    CHECK(ft_registry_check_name("main.demo.m", &err) == FT_OK);
    CHECK(ft_registry_check_name("main.demo", &err) == FT_ERR_INVALID);
    CHECK(ft_registry_check_name("a.b.c.d", &err) == FT_ERR_INVALID);
    CHECK(ft_registry_check_name("a..c", &err) == FT_ERR_INVALID);
    CHECK(ft_registry_check_name("a.b/c.d", &err) == FT_ERR_INVALID);

    ft_model_version v;
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, "chat-x-abcdef", NULL, "{\"eval_loss\":1.5}", &v,
                                    &err),
               &err);
    CHECK_EQ_INT(v.version, 1);
    char *expect = ft_asprintf("%s/registry/main/demo/m/1", home);
    CHECK_STR_EQ(v.path, expect);
    ft_free(expect);
    CHECK(v.tokenizer_hash && strncmp(v.tokenizer_hash, "fnv1a64:", 8) == 0);
    ft_model_version_deinit(&v);

    /* The source changes; version 1 keeps its own bytes. */
    write_file(src, "model.safetensors", "weights-v2");
    /* A "2" folder the store does not know (a crash after the rename, a lost store) is kept: the
     * next registration is 3. */
    char *stale = ft_asprintf("%s/registry/main/demo/m/2", home);
    REQUIRE_OK(ft_mkdir_p(stale, &err), &err);
    write_file(stale, "junk", "x");
    /* ... and gains a chat_template.jinja (which replaces the config's template): another hash */
    char *h1 = NULL;
    {
        ft_model_version *vv;
        size_t nn;
        REQUIRE_OK(ft_registry_show(s, "main.demo.m/1", &vv, &nn, &err), &err);
        h1 = nn ? ft_strdup(vv[0].tokenizer_hash) : NULL;
        ft_model_version_list_free(vv, nn);
    }
    write_file(src, "chat_template.jinja", "{{ messages[0].content }}");
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, "chat-x-ghijkl", NULL, NULL, &v, &err), &err);
    CHECK_EQ_INT(v.version, 3);
    CHECK(h1 && v.tokenizer_hash && strcmp(h1, v.tokenizer_hash) != 0);
    ft_free(h1);
    ft_model_version_deinit(&v);
    char *junk = ft_path_join(stale, "junk");
    CHECK(ft_path_exists(junk));
    ft_free(junk);
    ft_free(stale);

    char *p1 = ft_asprintf("%s/registry/main/demo/m/1/model.safetensors", home), *data = NULL;
    REQUIRE_OK(ft_file_read_all(p1, &data, NULL, &err), &err);
    CHECK_STR_EQ(data, "weights-v1");
    struct stat sb;
    CHECK(lstat(p1, &sb) == 0 && S_ISREG(sb.st_mode));
    ft_free(data);
    ft_free(p1);

    ft_model_version *vs;
    size_t n;
    REQUIRE_OK(ft_registry_show(s, "main.demo.m", &vs, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    CHECK_STR_EQ(n == 2 ? vs[0].run : "", "chat-x-abcdef");
    CHECK_EQ_INT(n == 2 ? vs[1].version : 0, 3);
    json_t *j = n ? ft_model_version_to_json(&vs[0]) : json_object();
    CHECK_NEAR(json_real_value(json_object_get(json_object_get(j, "metrics"), "eval_loss")), 1.5, 0);
    json_decref(j);
    ft_model_version_list_free(vs, n);
    REQUIRE_OK(ft_registry_show(s, "main.demo.m/1", &vs, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    ft_model_version_list_free(vs, n);
    CHECK(ft_registry_show(s, "main.demo.m/9", &vs, &n, &err) == FT_ERR_NOT_FOUND);
    CHECK(ft_registry_show(s, "main.demo.m/x", &vs, &n, &err) == FT_ERR_INVALID);
    CHECK(ft_registry_show(s, "main.demo.other", &vs, &n, &err) == FT_ERR_NOT_FOUND);

    REQUIRE_OK(ft_registry_register(s, home, "main.other.z", src, NULL, NULL, NULL, NULL, &err), &err);
    REQUIRE_OK(ft_registry_list(s, &vs, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    CHECK_STR_EQ(n == 2 ? vs[0].name : "", "main.demo.m");
    CHECK_EQ_INT(n == 2 ? vs[0].version : 0, 3);
    ft_model_version_list_free(vs, n);
    /* a missing source is an error and records nothing */
    CHECK(ft_registry_register(s, home, "main.demo.m", "/nonexistent/x", NULL, NULL, NULL, NULL, &err) ==
          FT_ERR_NOT_FOUND);
    REQUIRE_OK(ft_registry_show(s, "main.demo.m", &vs, &n, &err), &err);
    CHECK_EQ_INT(n, 2);
    ft_model_version_list_free(vs, n);
    ft_store_close(s);
    ft_free(db);
    ft_free(home);
    ft_free(src);
}

static void reopen_empty(ft_store **s, const char *db) {
    ft_store_close(*s);
    static const char *const sfx[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char *p = ft_asprintf("%s%s", db, sfx[i]);
        unlink(p);
        ft_free(p);
    }
    ft_err err;
    if (ft_store_open(db, s, &err) != FT_OK)
        ft_test_fail_(__FILE__, __LINE__, "reopen: %s", err.msg);
}

static char *version_file(const char *home, int v) {
    char *p = ft_asprintf("%s/registry/main/demo/m/%d/model.safetensors", home, v), *data = NULL;
    ft_file_read_all(p, &data, NULL, NULL);
    ft_free(p);
    return data;
}

TEST(registry_emptied_store_never_overwrites_a_version) {
    ft_err err;
    const char *tmp = ft_test_tmpdir();
    char *home = ft_path_join(tmp, "home"), *src = ft_path_join(tmp, "export"), *db = ft_path_join(home, "ftune.db");
    REQUIRE_OK(ft_mkdir_p(src, &err), &err);
    REQUIRE_OK(ft_mkdir_p(home, &err), &err);
    write_file(src, "config.json", "{}");
    write_file(src, "model.safetensors", "weights-1");
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    ft_model_version v;
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, NULL, NULL, NULL, &v, &err), &err);
    CHECK_EQ_INT(v.version, 1);
    ft_model_version_deinit(&v);
    /* ftune.db deleted (or emptied): the next registration is 2, version 1 keeps its bytes */
    reopen_empty(&s, db);
    REQUIRE(s);
    write_file(src, "model.safetensors", "weights-2");
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, NULL, NULL, NULL, &v, &err), &err);
    CHECK_EQ_INT(v.version, 2);
    ft_model_version_deinit(&v);
    char *d1 = version_file(home, 1), *d2 = version_file(home, 2);
    CHECK_STR_EQ(d1, "weights-1");
    CHECK_STR_EQ(d2, "weights-2");
    ft_free(d1);
    ft_free(d2);
    ft_store_close(s);
    ft_free(db);
    ft_free(src);
    ft_free(home);
}

TEST(registry_delete_and_leftovers_of_dead_processes) {
    ft_err err;
    const char *tmp = ft_test_tmpdir();
    char *home = ft_path_join(tmp, "home"), *src = ft_path_join(tmp, "export"), *db = ft_path_join(home, "ftune.db");
    REQUIRE_OK(ft_mkdir_p(src, &err), &err);
    REQUIRE_OK(ft_mkdir_p(home, &err), &err);
    write_file(src, "config.json", "{}");
    write_file(src, "model.safetensors", "w");
    ft_store *s;
    REQUIRE_OK(ft_store_open(db, &s, &err), &err);
    for (int i = 0; i < 2; i++)
        REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, NULL, NULL, NULL, NULL, &err), &err);
    /* a registration killed half-way (its process is gone) and one in progress (this process) */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    REQUIRE(child > 0);
    waitpid(child, NULL, 0);
    char *dead = ft_asprintf("%s/registry/main/demo/m/.incoming-%ld-123", home, (long)child);
    char *live = ft_asprintf("%s/registry/main/demo/m/.incoming-%ld-456", home, (long)getpid());
    REQUIRE_OK(ft_mkdir_p(dead, &err), &err);
    REQUIRE_OK(ft_mkdir_p(live, &err), &err);
    write_file(dead, "model.safetensors", "half");
    REQUIRE_OK(ft_registry_clean_incoming(home, &err), &err);
    CHECK(!ft_path_exists(dead));
    CHECK(ft_path_exists(live));
    /* a version cannot be deleted while its model is being registered, unless forced */
    CHECK(ft_registry_delete(s, home, "main.demo.m/1", false, &err) == FT_ERR_INVALID);
    CHECK(strstr(err.msg, "being registered") != NULL);
    char *v1 = ft_asprintf("%s/registry/main/demo/m/1", home);
    CHECK(ft_path_is_dir(v1));
    REQUIRE_OK(ft_rm_rf(live, &err), &err);
    REQUIRE_OK(ft_registry_delete(s, home, "main.demo.m/1", false, &err), &err);
    CHECK(!ft_path_exists(v1));
    ft_model_version *vs;
    size_t n;
    CHECK(ft_registry_show(s, "main.demo.m/1", &vs, &n, &err) == FT_ERR_NOT_FOUND);
    CHECK(ft_registry_delete(s, home, "main.demo.m/1", false, &err) == FT_ERR_NOT_FOUND);
    CHECK(ft_registry_delete(s, home, "main.demo.m", false, &err) == FT_ERR_INVALID);
    CHECK(ft_registry_delete(s, home, "main.demo.m/0", false, &err) == FT_ERR_INVALID);
    CHECK(ft_registry_delete(s, home, "../../x/1", false, &err) == FT_ERR_INVALID);
    /* the latest deleted: its number is not given again */
    REQUIRE_OK(ft_registry_delete(s, home, "main.demo.m/2", true, &err), &err);
    ft_model_version v;
    REQUIRE_OK(ft_registry_register(s, home, "main.demo.m", src, NULL, NULL, NULL, &v, &err), &err);
    CHECK_EQ_INT(v.version, 3);
    ft_model_version_deinit(&v);
    REQUIRE_OK(ft_registry_show(s, "main.demo.m", &vs, &n, &err), &err);
    CHECK_EQ_INT(n, 1);
    ft_model_version_list_free(vs, n);
    ft_free(v1);
    ft_free(dead);
    ft_free(live);
    ft_store_close(s);
    ft_free(db);
    ft_free(src);
    ft_free(home);
}
