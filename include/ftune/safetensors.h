/* ftune/safetensors.h: reading and writing Hugging Face safetensors files, single or sharded.
 * Implemented in src/io/safetensors.c. Prefix ft_st_ ("safetensors").
 *
 * Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length N, N
 * bytes of UTF-8 JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"k": "v"}}, then the data; offsets are relative to the byte after the header,
 * and the tensors cover the data exactly (no gaps, no overlap). Data is little-endian, row-major.
 *
 * Reader: files are mmapped and validated completely at open (header, offsets, sizes, duplicate
 * names), so a tensor handed out is always readable. Every error names the file and, where there
 * is one, the tensor. A sharded model (model.safetensors.index.json with a "weight_map") opens as
 * one reader over all its shards.
 *
 * Writer: tensors are declared first (names, dtypes, shapes), then their data is streamed in the
 * declared order, in as many pieces as the caller likes, so memory stays bounded by the caller's
 * chunk. Files are written beside their final name and renamed at finish (after fsync), so a
 * crash never leaves a half-written file under the final name. With max_shard_bytes set and more
 * than one shard needed, it writes model-00001-of-0000N.safetensors ... and
 * model.safetensors.index.json, as transformers names them. Tensors are laid out in declared order
 * with no padding (the format allows none), so in a file mixing dtypes a tensor can start at an
 * offset that is not a multiple of its element size; readers copy, so only declare such mixes
 * when that is acceptable (ftune's own files use one dtype each). */
#ifndef FTUNE_SAFETENSORS_H
#define FTUNE_SAFETENSORS_H

#include "ftune/base.h"

/* The safetensors dtypes. Conversion to fp32 exists for F32, BF16 and F16; the others can be
 * read as raw bytes (their sizes are still validated). */
typedef enum ft_st_dtype {
    FT_ST_DTYPE_BOOL,
    FT_ST_DTYPE_U8,
    FT_ST_DTYPE_I8,
    FT_ST_DTYPE_F8_E4M3,
    FT_ST_DTYPE_F8_E5M2,
    FT_ST_DTYPE_I16,
    FT_ST_DTYPE_U16,
    FT_ST_DTYPE_F16,
    FT_ST_DTYPE_BF16,
    FT_ST_DTYPE_I32,
    FT_ST_DTYPE_U32,
    FT_ST_DTYPE_F32,
    FT_ST_DTYPE_I64,
    FT_ST_DTYPE_U64,
    FT_ST_DTYPE_F64,
    FT_ST_DTYPE_COUNT
} ft_st_dtype;

/* "F32", "BF16", ... as the format spells them. */
const char *ft_st_dtype_name(ft_st_dtype d);
/* Bytes per element. */
size_t ft_st_dtype_size(ft_st_dtype d);
/* Parse a format name; false when unknown. */
bool ft_st_dtype_parse(const char *name, ft_st_dtype *out);

/* Scalar conversions. f32 -> bf16/f16 round to nearest, ties to even, as PyTorch's .to() does;
 * NaN stays NaN, overflow goes to infinity. */
float ft_st_bf16_to_f32(uint16_t h);
uint16_t ft_st_f32_to_bf16(float f);
float ft_st_f16_to_f32(uint16_t h);
uint16_t ft_st_f32_to_f16(float f);

#define FT_ST_MAX_DIMS 8

typedef struct ft_st_tensor {
    const char *name; /* owned by the reader */
    ft_st_dtype dtype;
    int ndim;
    int64_t shape[FT_ST_MAX_DIMS];
    int64_t numel;
    size_t nbytes;
    const void *data; /* raw little-endian bytes inside the mapping (not aligned in general) */
    const char *file; /* path of the file that holds it (owned by the reader) */
} ft_st_tensor;

/* ---------------------------------------------------------------- reader */

typedef struct ft_st_reader ft_st_reader; /* opaque */

/* Open `path`: a .safetensors file, a model.safetensors.index.json, or a model folder (as
 * transformers does: its model.safetensors if present, else model.safetensors.index.json).
 * Free with ft_st_close. */
ft_status ft_st_open(const char *path, ft_st_reader **out, ft_err *err);
/* Parse an in-memory file (borrowed: it must outlive the reader). `name` labels errors. Used by
 * tests and the fuzzer. */
ft_status ft_st_open_buffer(const char *name, const void *data, size_t len, ft_st_reader **out, ft_err *err);
void ft_st_close(ft_st_reader *r);

/* Tensors in file order (shard by shard, each in data-offset order). */
size_t ft_st_count(const ft_st_reader *r);
const ft_st_tensor *ft_st_tensor_at(const ft_st_reader *r, size_t i);
/* NULL if absent. */
const ft_st_tensor *ft_st_find(const ft_st_reader *r, const char *name);
/* A __metadata__ value of the (first) file; NULL if absent. */
const char *ft_st_metadata(const ft_st_reader *r, const char *key);

/* Check a tensor against an expected shape; FT_ERR_INVALID naming file, tensor and both shapes. */
ft_status ft_st_check_shape(const ft_st_tensor *t, int ndim, const int64_t *shape, ft_err *err);
/* Find `name` and check its shape in one call; FT_ERR_NOT_FOUND naming the files when absent. */
ft_status ft_st_get(const ft_st_reader *r, const char *name, int ndim, const int64_t *shape,
                    const ft_st_tensor **out, ft_err *err);
/* Convert a tensor (F32, BF16 or F16) to fp32 into out[0..n); n must equal numel. Other dtypes
 * are FT_ERR_UNSUPPORTED. */
ft_status ft_st_read_f32(const ft_st_tensor *t, float *out, int64_t n, ft_err *err);

/* ---------------------------------------------------------------- writer */

typedef struct ft_st_writer ft_st_writer; /* opaque */

typedef struct ft_st_write_params {
    /* 0: one file at `path`. Otherwise a shard holds at most this many data bytes (a single
     * tensor larger than that gets a shard of its own); when more than one shard results, the
     * files are model-0000i-of-0000n.safetensors beside `path` plus model.safetensors.index.json
     * and nothing is written under `path` itself. */
    uint64_t max_shard_bytes;
    bool durable; /* fsync files and the folder (default true) */
} ft_st_write_params;
ft_st_write_params ft_st_write_default_params(void);

/* The export default of transformers' save_pretrained: 5 GB (decimal). */
#define FT_ST_DEFAULT_SHARD_BYTES ((uint64_t)5000000000ULL)

/* Start a writer whose output is `path` (e.g. ".../model.safetensors"). Nothing touches the disk
 * until the first write. `p` may be NULL for the defaults. Free with ft_st_writer_free. */
ft_status ft_st_writer_new(const char *path, const ft_st_write_params *p, ft_st_writer **out, ft_err *err);
/* A __metadata__ entry (string to string); {"format": "pt"} is always written. Before the first write. */
ft_status ft_st_writer_metadata(ft_st_writer *w, const char *key, const char *value, ft_err *err);
/* Declare a tensor (before the first write). Names must be unique; ndim 0..FT_ST_MAX_DIMS. */
ft_status ft_st_writer_add(ft_st_writer *w, const char *name, ft_st_dtype dtype, int ndim, const int64_t *shape,
                           ft_err *err);
/* Append data to the tensor now being written: the declared tensors are filled in declared order,
 * `name` must be the current one (a check against mix-ups). A tensor may be written in several
 * calls; the next one starts when it is full.
 * _f32 converts fp32 to the declared dtype (F32, BF16 or F16), n elements;
 * _raw copies bytes already in the declared dtype, n bytes. */
ft_status ft_st_writer_write_f32(ft_st_writer *w, const char *name, const float *data, int64_t n, ft_err *err);
ft_status ft_st_writer_write_raw(ft_st_writer *w, const char *name, const void *data, size_t n, ft_err *err);
/* Check that every tensor is complete, fsync, rename into place, write the index when sharded,
 * fsync the folder. */
ft_status ft_st_writer_finish(ft_st_writer *w, ft_err *err);
/* Number of files the declared tensors need (1 when not sharded); valid after the adds. */
size_t ft_st_writer_n_shards(const ft_st_writer *w);
/* Frees; an unfinished writer removes its temporary files. */
void ft_st_writer_free(ft_st_writer *w);

/* Convenience: write fp32 tensors in one call (not sharded). names[i], shapes: ndims[i] entries
 * starting at shapes[i]; data[i] has the product of those. */
ft_status ft_st_save_f32(const char *path, size_t n, const char *const *names, const int *ndims,
                         const int64_t *const *shapes, const float *const *data, ft_st_dtype dtype, ft_err *err);

#endif
