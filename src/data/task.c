/* data/task.c: the three task types (SPEC §2, §3) by name. */
#include <strings.h>

#include "ftune/data.h"

static const char *const names[] = {"CHAT_COMPLETION", "INSTRUCTION_FINETUNE", "CONTINUED_PRETRAIN"};
static const char *const prefixes[] = {"chat", "ift", "cpt"};

ft_status ft_task_type_parse(const char *s, ft_task_type *out, ft_err *err) {
    for (int i = 0; i < 3; i++)
        if (s && !strcasecmp(s, names[i])) {
            *out = (ft_task_type)i;
            return FT_OK;
        }
    return FT_ERR(err, FT_ERR_INVALID,
                  "unknown task type \"%s\": expected CHAT_COMPLETION, INSTRUCTION_FINETUNE or CONTINUED_PRETRAIN",
                  s ? s : "");
}

const char *ft_task_type_name(ft_task_type t) {
    return (unsigned)t < 3 ? names[t] : "UNKNOWN";
}

const char *ft_task_type_prefix(ft_task_type t) {
    return (unsigned)t < 3 ? prefixes[t] : "run";
}
