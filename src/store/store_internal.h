/* store/store_internal.h: what store.c shares with registry.c (not a public header). */
#ifndef FTUNE_STORE_INTERNAL_H
#define FTUNE_STORE_INTERNAL_H

#include <sqlite3.h>

#include "ftune/store.h"

struct ft_store {
    sqlite3 *db;
    char *path;
};

double store_now(void);
ft_status store_sql_err(ft_store *s, ft_err *err, const char *what);
ft_status store_exec(ft_store *s, const char *sql, ft_err *err);
ft_status store_prepare(ft_store *s, const char *sql, sqlite3_stmt **st, ft_err *err);
void store_bind_text(sqlite3_stmt *st, int i, const char *v);
char *store_col_text(sqlite3_stmt *st, int i);
ft_status store_begin(ft_store *s, ft_err *err);
ft_status store_commit(ft_store *s, ft_err *err);
void store_rollback(ft_store *s);
json_t *store_time_json(double t);
void store_iso_time(double t, char *buf, size_t cap);
ft_status store_run_id(ft_store *s, const char *name, int64_t *id, ft_err *err);

#endif
