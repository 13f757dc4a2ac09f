/* tests/fuzz/fuzz_parquet_thrift.c: libFuzzer target for the Thrift compact protocol decoder of
 * the Parquet footer (FileMetaData: schema tree, row groups, column chunks, key/value metadata,
 * unknown fields skipped). Accepted footers are walked node by node. Build and run: make fuzz-run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/parquet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    pq_file *f = NULL;
    ft_err err;
    if (pq_open_footer_bytes(buf, size, "fuzz.parquet", &f, &err) == FT_OK) {
        for (size_t i = 0; i < pq_num_nodes(f); i++) {
            const pq_node *n = pq_node_at(f, (int32_t)i);
            if (!n || (n->n_children && !n->children))
                __builtin_trap();
            for (int32_t k = 0; k < n->n_children; k++)
                if (!pq_node_at(f, n->children[k]) || pq_node_at(f, n->children[k])->parent != (int32_t)i)
                    __builtin_trap(); /* the tree is consistent */
        }
        for (int64_t g = 0; g < pq_num_row_groups(f); g++)
            (void)pq_row_group_rows(f, g);
        pq_close(f);
    }
    free(buf);
    return 0;
}
