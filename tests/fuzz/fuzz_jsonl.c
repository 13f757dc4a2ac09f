/* tests/fuzz/fuzz_jsonl.c: libFuzzer target for the JSONL reader and the record validator
 * (src/data/reader.c, validate.c, locate.c). The first byte picks the task and the reader's
 * limits; the rest is a JSONL file. Every reported problem must have a sane position: line >= 1
 * and 1 <= column <= line length + 1. Built by `make fuzz` (clang, ASan+UBSan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ftune/data.h"

typedef struct ctx {
    const uint8_t *data;
    size_t size;
} ctx;

static void check_issue(void *p, const ft_data_issue *is) {
    const ctx *c = p;
    if (is->line < 1 || is->column < 1 || !is->message || !is->file)
        abort();
    if (is->offset > (int64_t)c->size)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    ft_task_type task = (mode & 1) ? FT_TASK_INSTRUCTION_FINETUNE : FT_TASK_CHAT_COMPLETION;
    ctx c = {data, size};

    /* 1: each line through the record checker directly */
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i == size || data[i] == '\n') {
            json_t *parsed = NULL;
            ft_data_check_record(task, "fuzz", 1, (const char *)data + start, i - start, &parsed, check_issue, &c);
            json_decref(parsed);
            start = i + 1;
        }
    }

    /* 2: the whole input as a file through the streaming reader and validation */
    int fd = memfd_create("fuzz.jsonl", 0);
    if (fd < 0)
        return 0;
    if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ft_validate_params p;
    ft_validate_default_params(&p, task);
    p.reader.max_line_bytes = 16 + (mode >> 1) * 8; /* over-long lines are reachable */
    p.reader.chunk_bytes = (mode & 0x10) ? 1 + (mode >> 5) : 4096; /* and lines split across reads */
    p.on_issue = check_issue;
    p.on_issue_ctx = &c;
    p.threads = 1;
    p.max_issues = 8;
    ft_data_report *r = NULL;
    ft_err err;
    if (ft_data_validate(path, &p, &r, NULL, &err) == FT_OK) {
        if (r->n_errors + r->n_warnings != (int64_t)r->n_issues + r->n_issues_omitted)
            abort();
        json_t *j = ft_data_report_to_json(r, 4);
        json_decref(j);
        ft_data_report_free(r);
    }
    close(fd);
    return 0;
}
