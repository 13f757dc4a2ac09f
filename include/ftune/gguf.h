/* ftune/gguf.h: exporting a Llama-family Hugging Face model folder as one GGUF file that
 * llama.cpp (and so Ollama, LM Studio, node-llama-cpp) loads. Implemented in src/io/gguf.c.
 *
 * Format (GGUF version 3, as llama.cpp's docs/gguf.md describes it): little-endian; the magic
 * "GGUF", the version, the tensor count and the key/value count; the key/value pairs (typed
 * metadata: strings are a u64 length and the bytes, arrays an element type, a count and the
 * elements); one info per tensor (name, dimension count, dimensions innermost first, ggml type,
 * data offset); padding to general.alignment (32); the tensor data, each tensor starting at a
 * multiple of the alignment.
 *
 * What goes in, as llama.cpp's own converter lays it out for the "llama" architecture:
 *   - general.* (architecture "llama", name, file_type, alignment, quantization_version)
 *   - llama.* hyper-parameters: context_length, embedding_length, block_count,
 *     feed_forward_length, attention.head_count(_kv), key/value_length, rope.dimension_count,
 *     rope.freq_base, attention.layer_norm_rms_epsilon, vocab_size;
 *   - tensors renamed (token_embd, blk.N.attn_q, ..., output_norm, output) with the rows of
 *     q_proj and k_proj permuted per head from Hugging Face's rotate-half order to the
 *     interleaved pair order llama.cpp's RoPE uses; tied embeddings have no output tensor
 *     (llama.cpp falls back to token_embd); llama3 RoPE scaling becomes the rope_freqs tensor
 *     (one divisor per frequency);
 *   - the tokenizer from tokenizer.json: byte-level BPE (Llama 3) as tokenizer.ggml.model "gpt2"
 *     with pre-tokenizer "llama-bpe", tokens, token types and merges; sentencepiece-style BPE with
 *     byte fallback (Llama 2, Mistral) as "llama" with tokens, scores and types; bos/eos/unk/pad
 *     ids, add_bos/add_eos and tokenizer.chat_template (tokenizer_config.json or
 *     chat_template.jinja).
 * Matrices are written in the chosen dtype (F32, F16 or BF16); vectors (norms, rope_freqs) always
 * F32, as llama.cpp's converter does. */
#ifndef FTUNE_GGUF_H
#define FTUNE_GGUF_H

#include "ftune/base.h"
#include "ftune/safetensors.h"

typedef struct ft_gguf_export_params {
    ft_st_dtype dtype;  /* FT_ST_DTYPE_F32 (default), _F16 or _BF16: the matrices' type */
    bool overwrite;     /* replace an existing file at the output path (default false: refused) */
    const char *name;   /* general.name; NULL: the model folder's name */
    bool durable;       /* fsync the file and its folder (default true) */
} ft_gguf_export_params;
ft_gguf_export_params ft_gguf_export_default_params(void);

/* What an export wrote. */
typedef struct ft_gguf_export_info {
    int64_t n_tensors;
    int64_t n_tokens;       /* tokenizer entries (= the model's vocab_size) */
    uint64_t bytes;         /* file size */
    char tokenizer_model[16]; /* "gpt2" | "llama" */
    bool has_chat_template;
} ft_gguf_export_info;

/* Write the model folder `model_dir` (config.json, safetensors, tokenizer.json and
 * tokenizer_config.json) as a GGUF file at `out_path`. The file is written beside its final name
 * and linked into place at the end (renamed over an existing file only with p->overwrite), so a
 * failure or crash never leaves a partial file under the final name. Memory stays bounded by one
 * matrix row whatever the model size. Errors name the file and the tensor or key. `info` may be
 * NULL. */
ft_status ft_gguf_export(const char *model_dir, const char *out_path, const ft_gguf_export_params *p,
                         ft_gguf_export_info *info, ft_err *err);

/* The divisors llama.cpp applies to each RoPE frequency for llama3 scaling (rope_freqs tensor):
 * out[i] = inv_freq[i] / scaled_inv_freq[i] for i < head_dim / 2, with transformers' llama3 rule. */
void ft_gguf_llama3_rope_factors(int64_t head_dim, double theta, double factor, double low_freq_factor,
                                 double high_freq_factor, int64_t original_max_positions, float *out);

#endif
