/* tests/data: data fingerprints (issue #9): what changed between two looks at a data path, file by
 * file; a file only touched is described but not counted; a non-regular file is refused at once
 * rather than hashed forever. */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "ftune/data.h"
#include "test.h"

TEST(data_fingerprint_names_what_changed) {
    const char *tmp = ft_test_tmpdir();
    char *dir = ft_path_join(tmp, "d"), *a = ft_path_join(tmp, "d/a.jsonl"), *b = ft_path_join(tmp, "d/b.jsonl");
    ft_mkdir_p(dir, NULL);
    ft_file_write_atomic(a, "{}\n", 3, NULL);
    ft_file_write_atomic(b, "{}\n{}\n", 6, NULL);
    json_t *f0 = NULL, *f1 = NULL, *f2 = NULL, *f3 = NULL;
    ft_err err;
    REQUIRE_OK(ft_data_fingerprint(dir, FT_TASK_CHAT_COMPLETION, &f0, &err), &err);
    CHECK_EQ_INT(json_array_size(json_object_get(f0, "files")), 2);
    REQUIRE_OK(ft_data_fingerprint(dir, FT_TASK_CHAT_COMPLETION, &f1, &err), &err);
    ft_buf c = {0};
    CHECK_EQ_INT(ft_data_fingerprint_compare(f0, f1, &c), 0);
    CHECK_EQ_INT(c.len, 0);
    /* touched: described, not counted */
    struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
    REQUIRE(utimes(a, tv) == 0);
    REQUIRE_OK(ft_data_fingerprint(dir, FT_TASK_CHAT_COMPLETION, &f2, &err), &err);
    CHECK_EQ_INT(ft_data_fingerprint_compare(f0, f2, &c), 0);
    CHECK(strstr(ft_buf_cstr(&c), "a.jsonl") && strstr(ft_buf_cstr(&c), "same content"));
    ft_buf_free(&c);
    /* same size, other bytes: the hash tells; a new file counts too */
    ft_file_write_atomic(b, "[]\n[]\n", 6, NULL);
    char *n = ft_path_join(tmp, "d/c.jsonl");
    ft_file_write_atomic(n, "{}\n", 3, NULL);
    REQUIRE_OK(ft_data_fingerprint(dir, FT_TASK_CHAT_COMPLETION, &f3, &err), &err);
    CHECK_EQ_INT(ft_data_fingerprint_compare(f0, f3, &c), 2);
    CHECK(strstr(ft_buf_cstr(&c), "b.jsonl: modified") || strstr(ft_buf_cstr(&c), "b.jsonl:"));
    CHECK(strstr(ft_buf_cstr(&c), "sha256") && strstr(ft_buf_cstr(&c), "c.jsonl: new in the data"));
    CHECK(!strstr(ft_buf_cstr(&c), "size 6 -> 6"));
    ft_buf_free(&c);
    /* gone */
    unlink(n);
    unlink(b);
    json_t *f4 = NULL;
    REQUIRE_OK(ft_data_fingerprint(dir, FT_TASK_CHAT_COMPLETION, &f4, &err), &err);
    CHECK_EQ_INT(ft_data_fingerprint_compare(f0, f4, &c), 1);
    CHECK(strstr(ft_buf_cstr(&c), "b.jsonl: no longer part of the data"));
    ft_buf_free(&c);
    /* /dev/zero behind a .jsonl name: refused, not hashed forever */
    char *z = ft_path_join(tmp, "z.jsonl");
    REQUIRE(symlink("/dev/zero", z) == 0);
    json_t *fz = NULL;
    CHECK(ft_data_fingerprint(z, FT_TASK_CHAT_COMPLETION, &fz, &err) != FT_OK);
    CHECK(fz == NULL);
    json_decref(f0);
    json_decref(f1);
    json_decref(f2);
    json_decref(f3);
    json_decref(f4);
    ft_free(z);
    ft_free(n);
    ft_free(a);
    ft_free(b);
    ft_free(dir);
}
