/* tests/model/helpers.h: setup shared by the model tests (test_model.c, test_moe.c, test_dbrx.c):
 * a random model with a workspace, packed batches, parameter comparisons, and the KV-cache
 * decoding against the full forward. */
#ifndef FTUNE_TESTS_MODEL_HELPERS_H
#define FTUNE_TESTS_MODEL_HELPERS_H

#include "ftune/model.h"
#include "ftune/safetensors.h"

/* A random model of config c (seed) and a workspace for (B, T) (threads: the workspace's; 0:
 * all). On failure nothing is left allocated. */
ft_status test_model_new(const ft_model_config *c, uint64_t seed, bool training, int64_t B, int64_t T, int threads,
                         ft_model **m, ft_workspace **ws, ft_err *err);

/* A packed batch (B, T) of random ids below V: two samples per row (the second starting at
 * T / 2 - 1 with its own positions), every 5th target and each sample's last one -100, and with
 * `pad` the last 3 tokens of each row padding (sample id -1, position 0, as the loader pads). */
void test_fill_batch(ft_rng *r, int32_t *ids, int32_t *tgt, int32_t *pos, int32_t *sid, int64_t B, int64_t T,
                     int64_t V, bool pad);

/* The training loss CE_sum / denom + coef * aux of a forward (its own routing counts); NAN when
 * the forward fails. */
double test_total_loss(ft_model *m, ft_workspace *ws, const ft_batch *b, double denom);

/* out = s with its first `from` replaced by `to` (which must occur). */
void test_replace(char *out, size_t cap, const char *s, const char *from, const char *to);

/* Elements of all parameters (one arena: ft_model_param(m, 0)->grad spans them all). */
size_t test_n_params(ft_model *m);
/* Same names, shapes and bit-identical weights. */
bool test_same_weights(ft_model *a, ft_model *b);

/* The worst |logit| difference between KV-cache decoding (a `prefill`-token prefill, then one
 * token at a time up to T) and the full forward over T random tokens, for a model whose
 * workspace ws holds (1, T); NAN when a call fails. */
double test_decode_vs_forward(ft_model *m, ft_workspace *ws, int64_t T, int64_t prefill, uint64_t seed);

/* A random model of c (seed 7) decoding 80 tokens after a 70-token prefill: every logit within
 * 1e-4 of the full forward's (checks at the caller's test). */
void test_decode_matches_forward(const ft_model_config *c);

/* Mixture of experts: a (4, 12) packed batch with padding in one pass equals the same batch row by
 * row with the whole batch's routing counts (loss, aux loss, every gradient within 1e-5), while
 * each row's own counts give a different aux loss; with `checkpointing` also a checkpointed
 * workspace's pass, bitwise. */
void test_moe_micro_batches(const ft_model_config *c, uint64_t seed, bool checkpointing);


/* End to end through the binary: `ftune init-model --out DIR <init_args>` with the tiny test
 * tokenizer, `ftune create` of a chat task (4 questions, 60 steps), registered as
 * main.test.<name>, the run's aux_loss metric, and `ftune generate --chat` greedy on each
 * question. Checks (file:line of the caller's test) that init-model names `arch`, the run
 * registers, and at least 3 of 4 answers are learnt. */
void test_chat_create_generate(const char *name, const char *arch, const char *init_args);

/* `ftune debug forward --json --router-out` (with `extra` flags) on the golden folder `fixture`
 * (tests/fixtures/reference/<name>: the model, batch.json and expected.safetensors): checks the exit
 * status and that the loss and aux loss printed equal the golden's (1e-5 rel) with aux_coef 0.05,
 * then opens the router output into *got and the golden into *want, both NULL when a step fails
 * (the caller closes them). */
void test_debug_forward_golden(const char *fixture, const char *extra, ft_st_reader **got, ft_st_reader **want);

#endif
