/* data/parquet.c: the Parquet reader (data/parquet.h). First landing: the interface only; the
 * decoder follows. */
#include "data/parquet.h"

ft_status pq_open(const char *path, const char *name, pq_file **out, ft_err *err) {
    (void)path;
    *out = NULL;
    return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, name, 0, 0, "reading parquet files is not implemented yet");
}
void pq_close(pq_file *f) { (void)f; }
const char *pq_name(const pq_file *f) { (void)f; return ""; }
const pq_node *pq_node_at(const pq_file *f, int32_t index) { (void)f; (void)index; return NULL; }
size_t pq_num_nodes(const pq_file *f) { (void)f; return 0; }
int64_t pq_num_rows(const pq_file *f) { (void)f; return 0; }
int64_t pq_num_row_groups(const pq_file *f) { (void)f; return 0; }
int64_t pq_row_group_rows(const pq_file *f, int64_t rg) { (void)f; (void)rg; return 0; }
int64_t pq_row_group_first_row(const pq_file *f, int64_t rg) { (void)f; (void)rg; return 0; }
const char *pq_created_by(const pq_file *f) { (void)f; return ""; }
const char *pq_metadata(const pq_file *f, const char *key, size_t *len) { (void)f; (void)key; (void)len; return NULL; }
int32_t pq_find_column(const pq_file *f, const char *name) { (void)f; (void)name; return -1; }
int32_t pq_find_path(const pq_file *f, const char *path) { (void)f; (void)path; return -1; }
ft_status pq_read_row_group(pq_file *f, int64_t rg, const int32_t *columns, size_t n_columns, pq_rows *rows,
                            ft_err *err) {
    (void)f; (void)rg; (void)columns; (void)n_columns; (void)rows;
    return FT_ERR(err, FT_ERR_UNSUPPORTED, "reading parquet files is not implemented yet");
}
void pq_rows_free(pq_rows *rows) { (void)rows; }
ft_status pq_open_footer_bytes(const uint8_t *data, size_t len, const char *name, pq_file **out, ft_err *err) {
    (void)data; (void)len;
    *out = NULL;
    return FT_ERR_AT(err, FT_ERR_UNSUPPORTED, name, 0, 0, "reading parquet files is not implemented yet");
}
ft_status pq_decode_memory(const uint8_t *data, size_t len, ft_err *err) {
    (void)data; (void)len;
    return FT_ERR(err, FT_ERR_UNSUPPORTED, "reading parquet files is not implemented yet");
}
