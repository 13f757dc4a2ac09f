/* tests/fuzz/fuzz_parquet.c: libFuzzer target for the Parquet reader's page decoding. Arbitrary
 * bytes are read as a whole file: footer, every column chunk of every row group (codecs,
 * levels, encodings, dictionaries) and the nested assembly, then every value is written as
 * JSON. Seeds: tests/fuzz/corpus/parquet (small real files). Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/parquet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1); /* exact size: ASan sees a read past the end */
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    ft_err err;
    (void)pq_decode_memory(buf, size, &err);
    free(buf);
    return 0;
}
