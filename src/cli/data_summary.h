/* cli/data_summary.h: the human summary of a validation report (data_summary.c). */
#ifndef FTUNE_CLI_DATA_SUMMARY_H
#define FTUNE_CLI_DATA_SUMMARY_H

#include <stdio.h>

#include <jansson.h>

#include "ftune/data.h"
#include "ftune/train.h"

void cli_print_data_summary(FILE *f, const ft_data_report *r, ft_task_type task);
/* Recompute the report's epochs, tokens_total and steps_total for `global_batch_size` rows a step,
 * or (0) the trainer's automatic global batch size, which depends on the rows per epoch that
 * validation has just counted. */
void cli_plan_batches(ft_data_report *r, ft_data_duration d, int64_t global_batch_size);

/* The memory plan of a run (ftune/memplan.h) for validate and create: the trainer's global batch
 * (c's, else the automatic size, or its cap by the epoch when rows_per_epoch > 0), printed to `f`
 * (NULL: not printed) as the prediction against the limit and the available memory; *json (may
 * be NULL) gets it as an object. Returns CLI_EXIT_OK, or prints the refusal ("ftune <command>:
 * ...", what would fit) and returns CLI_EXIT_USAGE. Per process of `processes` (> 1: a data-parallel
 * run with ZeRO-1, `per_host` of them sharing this machine's memory; ftune/memplan.h). */
int cli_memory_plan(FILE *f, const char *command, const ft_train_config *c, const ft_model_config *mc, int64_t T,
                    int64_t rows_per_epoch, int64_t processes, int64_t per_host, json_t **json);

#endif
