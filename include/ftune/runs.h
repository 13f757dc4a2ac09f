/* ftune/runs.h: the run service (SPEC §2, §5, §7) that the CLI and the server are faces of: the
 * JSON objects they print or serve (a run with its checkpoints and evaluations, the model
 * catalogue). Implemented in src/runs/. */
#ifndef FTUNE_RUNS_H
#define FTUNE_RUNS_H

#include <jansson.h>

#include "ftune/data.h"
#include "ftune/store.h"

/* The run's checkpoints still on disk ([{name, path, step, epoch, created}], oldest first; those
 * removed by keep_checkpoints are left out). New reference; an empty list when none. */
json_t *ft_runs_checkpoints_json(ft_store *s, const char *run);
/* The evaluations kept in the run folder (eval/ep{E}-ba{B}.json, ftune/train.h): [{step, epoch,
 * eval_loss, eval_token_accuracy, eval_tokens, generations: [{prompt, completion}], path}] by
 * step. New reference. */
json_t *ft_runs_evaluations_json(const char *run_dir);
/* The precision a run trained in, from its latest MODEL_INITIALIZED event (the trainer writes
 * "dtype D (GEMM route R" there): dtype "fp32"/"bf16" and route "sgemm"/"sgemm-bf16"/
 * "onednn-bf16". False (both "") before the model is initialized. */
bool ft_runs_precision(ft_store *s, const char *run, char *dtype, size_t dtype_size, char *route, size_t route_size);
/* The run as `ftune get --json`: ft_run_to_json plus "checkpoints", "evaluations" and, once
 * known, "dtype" and "gemm_route". */
json_t *ft_runs_run_json_full(ft_store *s, const ft_run *r);

/* The model catalogue of SPEC §7 (`ftune models`). */
typedef struct ft_catalogue_entry {
    const char *id;   /* hub id "meta-llama/Meta-Llama-3.1-8B-Instruct" */
    const char *arch; /* "LlamaForCausalLM" */
    int64_t max_context;
    double default_lr;
} ft_catalogue_entry;
const ft_catalogue_entry *ft_runs_catalogue(size_t *n);
/* The catalogue as `ftune models --json`: [{name, architecture, max_context_length,
 * default_learning_rate, present, path}] with where each is in the local Hugging Face cache. */
json_t *ft_runs_models_json(void);

/* ---------------------------------------------------------------- processes and actions */

/* This machine's host name (static buffer). */
const char *ft_runs_hostname(void);
/* Whether the run's recorded process is alive. A run owned by another host counts as alive (it
 * cannot be checked from here); a pid of 0 as dead; a zombie or a recycled pid (not an ftune) as
 * dead. */
bool ft_runs_process_alive(const ft_run *r);
/* STARTING, RUNNING or TERMINATING whose process is gone (SIGKILL, power cut, OOM). */
bool ft_runs_is_orphaned(const ft_run *r);

/* Cancel (SPEC §5): a pending or queued run (or one whose process is gone) stops at once; a
 * running one moves to TERMINATING, and its process stops at the next step boundary after a
 * checkpoint, then records STOPPED. *what (may be NULL) says which ("stopped", "stopping after
 * its next checkpoint", "already finished"). FT_ERR_NOT_FOUND for an unknown run. */
ft_status ft_runs_cancel(ft_store *s, const char *name, const char **what, ft_err *err);
/* Hand a stopped, failed or orphaned run back to this machine's worker, which continues it from
 * its latest checkpoint: the run moves to STARTING owned by no process here, which the worker
 * takes over (`ftune resume` does the same in the foreground). FT_ERR_INVALID when the run has
 * completed, is queued, or its process is alive. */
ft_status ft_runs_request_resume(ft_store *s, const char *name, ft_err *err);

/* ---------------------------------------------------------------- validation (SPEC §3) */

typedef struct ft_runs_validate_params {
    const char *model;         /* its tokenizer and chat template; NULL: structure only */
    ft_task_type task;
    const char *path;          /* the data (dbfs:/Volumes and /Volumes paths mapped) */
    int64_t context_length;    /* 0: min(8192, the model's maximum) */
    ft_data_duration duration; /* for the totals (default 1 epoch) */
    int64_t global_batch_size; /* 0: the trainer's automatic size */
    uint64_t seed;             /* packing seed (default 17) */
    size_t max_errors;         /* issues kept in the report (default 1000; all are counted) */
    bool estimate;             /* measure a training step for the time estimate */
    int threads;               /* 0: all cores */
} ft_runs_validate_params;
void ft_runs_validate_default_params(ft_runs_validate_params *p);

/* Validate data as `ftune validate` does: every record checked, the token statistics and the
 * plan (steps, epochs, tokens) when a model is given. FT_OK whenever the data could be read (the
 * report says whether it is valid); otherwise an error, and *field (may be NULL) names the
 * parameter it is about ("model", "path", "context_length"). The caller frees the report. */
ft_status ft_runs_validate(const ft_runs_validate_params *p, ft_data_report **report, const char **field,
                           ft_err *err);
/* Recompute the report's epochs, tokens_total and steps_total for `global_batch_size` rows a step,
 * or (0) the trainer's automatic global batch size, which depends on the rows per epoch that
 * validation has just counted. */
void ft_runs_plan_batches(ft_data_report *r, ft_data_duration d, int64_t global_batch_size);

#endif
