/* safetensors_internal.h: what loader/safetensors.c (one file: map, validate, tensors) offers
 * loader/safetensors_folder.c (vl_checkpoint_open: one file, or a checkpoint directory:
 * model.safetensors or index + shards, kept inside the directory). Private to the loader.
 * Leaves out: the writer (loader/safetensors_write.c needs none of this). */
#ifndef VL_SAFETENSORS_INTERNAL_H
#define VL_SAFETENSORS_INTERNAL_H

#include "loader/loader.h"

#define VL_ST_INDEX_NAME  "model.safetensors.index.json"
#define VL_ST_SINGLE_NAME "model.safetensors"

/* dir + "/" + name, malloc'ed (NULL when out of memory). */
char *vl_st_path_join(const char *dir, const char *name);

/* Map the file at open_path (already resolved by the caller) read-only as ck->files[fi], with
 * shown_path as its name in messages; then validate its header and append its tensors. `what`
 * names the file's role ("checkpoint file", "shard"). ck->n_files counts the file once mapped,
 * so vl_checkpoint_close can undo a partial open. */
int vl_st_add_file(vl_checkpoint *ck, int fi, const char *open_path, const char *shown_path,
                   const char *what);

/* Sort ck->tensors by name and refuse a name that appears twice (within one file or across
 * shards). */
int vl_st_sort_and_check_unique(vl_checkpoint *ck);

#endif
