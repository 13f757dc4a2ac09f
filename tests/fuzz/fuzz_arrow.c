/* tests/fuzz/fuzz_arrow.c: libFuzzer target for the Arrow IPC reader (src/data/arrow.c): the
 * input is a whole stream or file; every column of every record batch is decoded and printed
 * as `data head` JSON. Any input must end in rows or an error, never a crash, hang or unbounded
 * allocation. Seeds: tests/fuzz/corpus/arrow (files written by apache-arrow). */
#include <stdint.h>
#include <stdlib.h>

#include "data/sources.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t rows = 0;
    ft_err err;
    (void)arrow_decode_memory(data, size, &rows, &err);
    return 0;
}
