/* cli/data_summary.h: the human summary of a validation report (data_summary.c). */
#ifndef FTUNE_CLI_DATA_SUMMARY_H
#define FTUNE_CLI_DATA_SUMMARY_H

#include <stdio.h>

#include "ftune/data.h"

void cli_print_data_summary(FILE *f, const ft_data_report *r, ft_task_type task);
/* Recompute the report's epochs, tokens_total and steps_total for `global_batch_size` rows a step,
 * or (0) the trainer's automatic global batch size, which depends on the rows per epoch that
 * validation has just counted. */
void cli_plan_batches(ft_data_report *r, ft_data_duration d, int64_t global_batch_size);

#endif
