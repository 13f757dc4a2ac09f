/* ftune/ckpt.h: crash-safe checkpoint folders and the `latest` pointer (SPEC §4).
 * Implemented in src/train/ckpt.c. What goes inside a checkpoint is the trainer's business
 * (src/train/trainer.c); this module only makes the set of files appear atomically.
 *
 * Layout under <run_dir>/checkpoints/:
 *   ep{E}-ba{B}/          a complete checkpoint: its files plus MANIFEST.json (file names, sizes
 *                         and 64-bit content hashes), written last
 *   .tmp-ep{E}-ba{B}.PID/ one being written (never read; removed by the next writer)
 *   latest                symlink to "ep{E}-ba{B}" (relative)
 *   latest.txt            "ep{E}-ba{B}\n" (for file systems and tools without symlinks)
 *
 * Commit protocol: write every file into the temporary folder; fsync each; write and fsync the
 * manifest; fsync the folder; rename it to its final name; fsync checkpoints/; then replace
 * `latest` (a new symlink renamed over the old one) and latest.txt (ft_file_write_atomic), and
 * fsync checkpoints/ again. A crash at any point leaves either the old or the new checkpoint as
 * the one `latest` names, and never a half-written folder under a final name. */
#ifndef FTUNE_CKPT_H
#define FTUNE_CKPT_H

#include "ftune/base.h"

typedef struct ft_ckpt_writer {
    char checkpoints_dir[1024]; /* <run_dir>/checkpoints */
    char name[64];              /* "ep{E}-ba{B}" */
    char tmp_dir[1200];         /* where files go until commit */
    char final_dir[1200];
} ft_ckpt_writer;

/* Start a checkpoint: create the temporary folder (removing stale temporaries of crashed
 * writers). Put files in w->tmp_dir (ft_ckpt_path gives their paths). If a complete checkpoint
 * of the same name exists it is replaced at commit. */
ft_status ft_ckpt_begin(const char *run_dir, int64_t epoch, int64_t batch, ft_ckpt_writer *w, ft_err *err);
/* w->tmp_dir/<file> (owned by the caller). */
char *ft_ckpt_path(const ft_ckpt_writer *w, const char *file);
/* Hash, fsync and list every regular file of the temporary folder in MANIFEST.json, rename the
 * folder to its final name, and move `latest` to it. */
ft_status ft_ckpt_commit(ft_ckpt_writer *w, ft_err *err);
/* Remove the temporary folder (after a failed write). */
void ft_ckpt_abort(ft_ckpt_writer *w);

/* Check a checkpoint folder against its manifest: every listed file present with its size and
 * hash (`deep` false: sizes only). Errors name the file: "checkpoint .../ep1-ba8: model.safetensors
 * is truncated (1000 of 4096 bytes)". */
ft_status ft_ckpt_verify(const char *ckpt_dir, bool deep, ft_err *err);

/* The newest complete checkpoint of a run: the one `latest` names when it verifies, otherwise
 * (bad or missing pointer, corrupt folder) the newest ep*-ba* folder that verifies, by batch
 * number. *out gets its path (owned by the caller). Each thing skipped is logged as a warning and
 * appended as a line to `notes` (may be NULL). FT_ERR_NOT_FOUND when there is none. */
ft_status ft_ckpt_find_latest(const char *run_dir, bool deep, char **out, ft_buf *notes, ft_err *err);

/* A user-given checkpoint reference (custom_weights_path): a checkpoint folder, a `latest`
 * symlink or latest.txt, a run's checkpoints/ folder or a run folder. Resolves to a verified
 * checkpoint folder (owned by the caller). */
ft_status ft_ckpt_resolve(const char *path, char **out, ft_err *err);

/* Delete the oldest complete checkpoints so that at most `keep` remain (keep <= 0: keep all);
 * the one `latest` names is never deleted. */
ft_status ft_ckpt_prune(const char *run_dir, int64_t keep, ft_err *err);

/* Parse "ep3-ba120" into its numbers; false when the name does not have that form. */
bool ft_ckpt_parse_name(const char *name, int64_t *epoch, int64_t *batch);

/* The manifest's content hash of a file (64-bit, streamed in bounded memory). */
ft_status ft_ckpt_hash_file(const char *path, uint64_t *hash, int64_t *size, ft_err *err);

#endif
