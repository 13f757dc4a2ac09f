/* tests/train/tiny.h: a tiny model and a small synthetic task for the trainer tests.
 * The tokenizer (tests/fixtures/train/tinytok, written by make_tinytok.py) has one token per
 * byte plus <s> (256), </s> (257) and <|eot|> (258). */
#ifndef FTUNE_TESTS_TRAIN_TINY_H
#define FTUNE_TESTS_TRAIN_TINY_H

#include "ftune/train.h"
#include "train/train_internal.h"

/* Write a random tiny Llama model (V 259, C 48, 2 layers, GQA 4/2 heads, F 96, tied) with the
 * tiny tokenizer into `dir`. */
ft_status tiny_model_write(const char *dir, uint64_t seed, ft_err *err);
/* The facts of the synthetic task: prompts[i] -> answers[i]. */
extern const char *const tiny_prompts[];
extern const char *const tiny_answers[];
extern const size_t tiny_n_facts;
/* Write the task as INSTRUCTION_FINETUNE JSONL ({"prompt", "response"}), each fact `copies` times. */
ft_status tiny_write_ift(const char *path, int copies, ft_err *err);
/* The common setup of a trainer test in folder tmp: the tiny model (random seed `seed`) written
 * to tmp/model and the task (each fact `copies` times) to tmp/train.jsonl; model and data (cap
 * bytes each) receive those two paths. */
ft_status tiny_setup(const char *tmp, uint64_t seed, int copies, char *model, char *data, size_t cap, ft_err *err);
/* A run config for the tiny model and task with test-sized settings (owned strings). */
ft_train_config tiny_config(const char *model_dir, const char *data, const char *exp, const char *name);
/* The per-step losses of metrics.jsonl (up to cap); returns the count. */
size_t tiny_read_losses(const char *run_dir, double *loss, size_t cap);

#endif
