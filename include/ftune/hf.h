/* ftune/hf.h: Hugging Face model folders: resolving a model name to a folder (SPEC §1) and
 * writing an HF-format folder that transformers' from_pretrained loads unchanged.
 * Implemented in src/io/hf.c.
 *
 * A model name is, tried in this order:
 *   1. a local path (a folder with config.json);
 *   2. a registered model "catalog.schema.name" or "catalog.schema.name/VERSION":
 *      $FTUNE_HOME/registry/<catalog>/<schema>/<name>/<version>/ (newest numeric version when
 *      none is given);
 *   3. a hub id "org/name" or "name" (optionally "...@REVISION"), offline in the Hugging Face cache:
 *      $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub;
 *      models--org--name/refs/<revision or main> names a commit -> snapshots/<commit>/.
 * A name found nowhere is FT_ERR_NOT_FOUND listing every place looked at. */
#ifndef FTUNE_HF_H
#define FTUNE_HF_H

#include "ftune/base.h"
#include "ftune/config.h"
#include "ftune/safetensors.h"

/* Resolve a model name to a folder; *dir is owned by the caller (ft_free). */
ft_status ft_hf_resolve(const char *name, char **dir, ft_err *err);
/* The hub cache folder as above (owned by the caller). */
char *ft_hf_cache_dir(void);
/* The registry folder of a registered model "c.s.n" (and version, 0 = newest existing one);
 * FT_ERR_NOT_FOUND when absent, FT_ERR_INVALID when the name is not of that form. */
ft_status ft_hf_registry_dir(const char *name, int64_t version, char **dir, ft_err *err);

/* ---------------------------------------------------------------- writing a model folder */

/* The tokenizer files transformers reads, copied when present in the source: tokenizer.json,
 * tokenizer_config.json, special_tokens_map.json, tokenizer.model, added_tokens.json,
 * chat_template.jinja. Returns how many were copied in *n_copied (may be NULL). A source
 * without tokenizer.json nor tokenizer.model is FT_ERR_NOT_FOUND. */
ft_status ft_hf_copy_tokenizer(const char *src_dir, const char *dst_dir, int *n_copied, ft_err *err);
/* What a tokenizer folder says about ids: the bos/eos token ids named by tokenizer_config.json
 * ("bos_token"/"eos_token", a string or {"content": ...}) looked up in tokenizer.json
 * (added_tokens, then model.vocab), -1 when absent or not found; and *n_vocab, one more than the
 * largest id in tokenizer.json (0 when there is no tokenizer.json). Any pointer may be NULL. */
ft_status ft_hf_tokenizer_ids(const char *dir, int64_t *bos, int64_t *eos, int64_t *n_vocab, ft_err *err);
/* generation_config.json with bos/eos/pad ids from the config (atomic). */
ft_status ft_hf_write_generation_config(const ft_model_config *c, const char *dir, ft_err *err);

/* Streams a tensor's values: fill out[0..n) with elements [offset, offset + n) (row-major) of
 * tensor `index` (in ft_model_config_tensors order, whose spec is `t`). */
typedef ft_status (*ft_hf_fill_fn)(void *ctx, size_t index, const ft_tensor_spec *t, int64_t offset, float *out,
                                   int64_t n, ft_err *err);

typedef struct ft_hf_export_params {
    ft_st_dtype dtype;        /* F32 (default), BF16 or F16; also sets config torch_dtype */
    uint64_t max_shard_bytes; /* default FT_ST_DEFAULT_SHARD_BYTES; 0: never shard */
    const char *tokenizer_dir; /* copy tokenizer files from here; NULL: none */
    bool require_tokenizer;   /* tokenizer_dir must hold a tokenizer (default false) */
    const char *const *metadata; /* extra __metadata__ pairs: key, value, ..., NULL (may be NULL) */
    /* Copy generation_config.json from this folder when it has one (it carries sampling defaults
     * the config cannot); NULL or absent: write one from the config's bos/eos/pad ids. */
    const char *generation_config_from;
} ft_hf_export_params;
ft_hf_export_params ft_hf_export_default_params(void);

/* Write an HF folder into `dir` (created if missing; files already there with the same names are
 * replaced, each atomically): the tokenizer files, generation_config.json, model.safetensors (or
 * shards + index; stale shards and indexes of an earlier save are removed) and config.json last,
 * so that a fresh folder with a config.json is complete. The tensors are those of
 * ft_model_config_tensors(c), pulled through `fill` chunk by chunk, so extra memory is bounded
 * (about 4 MiB) whatever the model size. */
ft_status ft_hf_export(const char *dir, const ft_model_config *c, ft_hf_fill_fn fill, void *ctx,
                       const ft_hf_export_params *p, ft_err *err);
/* The same from fp32 arrays already in memory: data[i] holds tensor i of
 * ft_model_config_tensors(c) (n_tensors must match). */
ft_status ft_hf_export_arrays(const char *dir, const ft_model_config *c, const float *const *data, size_t n_tensors,
                              const ft_hf_export_params *p, ft_err *err);

#endif
