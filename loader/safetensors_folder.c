/* safetensors_folder.c: vl_checkpoint_open: a .safetensors file as given, or a checkpoint
 * directory: model.safetensors, or model.safetensors.index.json and the shards it names (a
 * single file wins, as in transformers). Each file is read by safetensors.c.
 *
 * Every file read from the folder must resolve inside it: its realpath must lie under the
 * folder's realpath, so a shard (or index) that is a symbolic link to a file elsewhere
 * (/etc/passwd) is refused before it is opened; a link to another file inside the folder is
 * fine. One exception keeps the Hugging Face cache usable: when the folder is
 * X/snapshots/REV, its files are links into X/blobs, and X/blobs counts as inside. Shard names
 * in the index must be plain file names (no '/', so never absolute, and no ".."). The index is
 * strict JSON (vl_json_parse); its distinct shard names are found by sorting (a 100 MB index
 * holds millions of entries), and every tensor it lists must be in the shard it names. Tensors
 * found in shards but absent from the index are kept: they are in the files, and the index is
 * only a map (its total_size is ignored for the same reason).
 * Leaves out: races with someone changing the folder while it is opened (the resolved path is
 * what gets opened, but a directory on it could still be swapped), hard links (a hard link is a
 * file inside the folder), and shard subfolders (Hugging Face never writes them). */
#include "loader/safetensors_internal.h"

#include <cJSON.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_INDEX (100u << 20)

typedef struct {
    const char *dir; /* as the user gave it, for messages */
    char *root;      /* its realpath */
    char *blobs;     /* realpath of X/blobs when dir is a Hugging Face snapshot X/snapshots/REV */
} st_folder;

/* Is the resolved path `real` strictly below the resolved directory `root`? */
static int st_is_under(const char *real, const char *root) {
    size_t n = strlen(root);
    if (strncmp(real, root, n) != 0) return 0;
    if (n > 0 && root[n - 1] == '/') return real[n] != '\0'; /* root is "/" */
    return real[n] == '/' && real[n + 1] != '\0';
}

/* X/blobs (resolved) when root is X/snapshots/REV and X/blobs exists, else NULL. */
static char *st_hf_blobs(const char *root) {
    const char *rev = strrchr(root, '/');
    if (!rev || rev == root) return NULL;
    size_t end = (size_t)(rev - root), k = end; /* root[k, end) is the parent's name */
    while (k > 0 && root[k - 1] != '/') k--;
    if (end - k != 9 || strncmp(root + k, "snapshots", 9) != 0 || k == 0) return NULL;
    char *blobs = malloc(k + 6);
    if (!blobs) return NULL;
    memcpy(blobs, root, k); /* X/ */
    memcpy(blobs + k, "blobs", 6);
    char *real = realpath(blobs, NULL);
    free(blobs);
    return real;
}

static int st_folder_init(st_folder *f, const char *dir) {
    f->dir = dir;
    f->blobs = NULL;
    f->root = realpath(dir, NULL);
    if (!f->root) return vl_error_set("cannot open checkpoint %s: %s", dir, strerror(errno));
    f->blobs = st_hf_blobs(f->root);
    return 0;
}

static void st_folder_free(st_folder *f) {
    free(f->root);
    free(f->blobs);
}

/* realpath of `shown` (a path in the folder) into *real, refused unless it stays inside. The
 * refusal names the link's target, never anything read from it. */
static int st_folder_resolve(const st_folder *f, const char *shown, const char *what, char **real) {
    *real = realpath(shown, NULL);
    if (!*real) return vl_error_set("cannot open %s %s: %s", what, shown, strerror(errno));
    if (st_is_under(*real, f->root) || (f->blobs && st_is_under(*real, f->blobs))) return 0;
    vl_error_set("%s %s resolves to %s, outside the checkpoint folder %s (a symbolic link "
                 "leading out of it); copy the file into the folder",
                 what, shown, *real, f->dir);
    free(*real);
    *real = NULL;
    return -1;
}

/* Add the folder's file `name` as ck->files[fi]. */
static int st_folder_add(vl_checkpoint *ck, const st_folder *f, int fi, const char *name,
                         const char *what) {
    char *shown = vl_st_path_join(f->dir, name), *real = NULL;
    if (!shown) return vl_error_set("out of memory opening %s", f->dir);
    int rc = st_folder_resolve(f, shown, what, &real);
    if (rc == 0) rc = vl_st_add_file(ck, fi, real, shown, what);
    free(real);
    free(shown);
    return rc;
}

/* Shard names come from a file: they must name a file directly inside the folder. */
static int st_check_shard_name(const char *index_path, const char *tensor, const char *shard) {
    if (!shard[0] || strcmp(shard, ".") == 0 || strchr(shard, '/') || strchr(shard, '\\') ||
        strstr(shard, ".."))
        return vl_error_set("%s: tensor %s names shard \"%s\", which is not a plain file name in "
                            "the checkpoint directory (no absolute path, '/' or '..' allowed)",
                            index_path, tensor, shard);
    return 0;
}

typedef struct {
    const char *name;
    size_t pos; /* the entry's place in weight_map */
} st_shard_ref;

static int st_ref_by_name(const void *a, const void *b) {
    const st_shard_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0) return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int st_ref_by_pos(const void *a, const void *b) {
    const st_shard_ref *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The distinct shard names of weight_map (whose entries are checked strings), in order of first
 * appearance. Sorting keeps this O(n log n). *out holds pointers into wm. */
static int st_distinct_shards(const cJSON *wm, size_t n, const char *index_path, const char ***out,
                              int *n_out) {
    st_shard_ref *refs = malloc(n * sizeof *refs);
    const char **names = malloc(n * sizeof *names);
    if (!refs || !names) {
        free(refs);
        free(names);
        return vl_error_set("out of memory reading %s", index_path);
    }
    size_t k = 0;
    for (const cJSON *e = wm->child; e; e = e->next, k++)
        refs[k] = (st_shard_ref){e->valuestring, k};
    qsort(refs, n, sizeof *refs, st_ref_by_name);
    size_t m = 0; /* first (lowest pos) of each run of equal names */
    for (size_t i = 0; i < n; i++)
        if (m == 0 || strcmp(refs[i].name, refs[m - 1].name) != 0) refs[m++] = refs[i];
    qsort(refs, m, sizeof *refs, st_ref_by_pos);
    for (size_t i = 0; i < m; i++) names[i] = refs[i].name;
    free(refs);
    *out = names;
    *n_out = (int)m;
    return 0;
}

/* weight_map: a non-empty object of strings that are plain file names; *n gets its size. */
static int st_check_weight_map(const cJSON *root, const char *index_path, const cJSON **wm_out,
                               size_t *n) {
    const cJSON *wm =
        cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm) || !wm->child)
        return vl_error_set("%s: expected a non-empty \"weight_map\" object (tensor name -> shard "
                            "file)",
                            index_path);
    *n = 0;
    for (const cJSON *e = wm->child; e; e = e->next, (*n)++) {
        if (!cJSON_IsString(e))
            return vl_error_set("%s: weight_map entry %s must be a shard file name (a string)",
                                index_path, e->string);
        if (st_check_shard_name(index_path, e->string, e->valuestring) != 0) return -1;
    }
    *wm_out = wm;
    return 0;
}

/* Every tensor the index lists must be in the shard it names (ck->files[k] is shards[k]). */
static int st_check_index_entries(const vl_checkpoint *ck, const cJSON *wm,
                                  const char *const *shards) {
    for (const cJSON *e = wm->child; e; e = e->next) {
        const vl_tensor *t = vl_checkpoint_find(ck, e->string);
        if (!t || strcmp(shards[t->file], e->valuestring) != 0)
            return vl_error_set("tensor %s is listed in %s for shard %s but %s does not contain "
                                "it; the checkpoint is incomplete or the index is stale",
                                e->string, VL_ST_INDEX_NAME, e->valuestring, e->valuestring);
    }
    return 0;
}

static int st_open_index(vl_checkpoint *ck, const st_folder *f, const char *index_path) {
    char *real = NULL, *text = NULL;
    size_t len = 0, n_entries = 0;
    cJSON *root = NULL;
    const cJSON *wm = NULL;
    const char **shards = NULL;
    int n_shards = 0, rc;
    if ((rc = st_folder_resolve(f, index_path, "index", &real)) != 0 ||
        (rc = vl_read_file(real, ST_MAX_INDEX, &text, &len)) != 0 ||
        (rc = vl_json_parse(text, len, index_path, &root)) != 0 ||
        (rc = st_check_weight_map(root, index_path, &wm, &n_entries)) != 0 ||
        (rc = st_distinct_shards(wm, n_entries, index_path, &shards, &n_shards)) != 0)
        goto done;
    ck->files = calloc((size_t)n_shards, sizeof *ck->files);
    if (!ck->files) {
        rc = vl_error_set("out of memory opening %s", f->dir);
        goto done;
    }
    for (int k = 0; k < n_shards && rc == 0; k++) rc = st_folder_add(ck, f, k, shards[k], "shard");
    if (rc == 0) rc = vl_st_sort_and_check_unique(ck);
    if (rc == 0) rc = st_check_index_entries(ck, wm, shards);
done:
    free(shards);
    cJSON_Delete(root);
    free(text);
    free(real);
    return rc;
}

static int st_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0; /* any kind: a FIFO or dangling link is refused by name */
}

static int st_open_folder(vl_checkpoint *ck, const char *dir) {
    st_folder f;
    if (st_folder_init(&f, dir) != 0) return -1;
    char *single = vl_st_path_join(dir, VL_ST_SINGLE_NAME);
    char *index = vl_st_path_join(dir, VL_ST_INDEX_NAME);
    int rc;
    if (!single || !index) {
        rc = vl_error_set("out of memory opening %s", dir);
    } else if (st_exists(single)) {
        ck->files = calloc(1, sizeof *ck->files);
        rc = ck->files ? st_folder_add(ck, &f, 0, VL_ST_SINGLE_NAME, "checkpoint file")
                       : vl_error_set("out of memory opening %s", dir);
        if (rc == 0) rc = vl_st_sort_and_check_unique(ck);
    } else if (st_exists(index)) {
        rc = st_open_index(ck, &f, index);
    } else {
        rc = vl_error_set("checkpoint directory %s holds neither %s nor %s; pass the directory "
                          "of a safetensors checkpoint",
                          dir, VL_ST_SINGLE_NAME, VL_ST_INDEX_NAME);
    }
    free(single);
    free(index);
    st_folder_free(&f);
    return rc;
}

int vl_checkpoint_open(vl_checkpoint *ck, const char *path) {
    memset(ck, 0, sizeof *ck);
    struct stat st;
    if (stat(path, &st) != 0)
        return vl_error_set("cannot open checkpoint %s: %s (expected a directory with "
                            "model.safetensors or %s, or a .safetensors file)",
                            path, strerror(errno), VL_ST_INDEX_NAME);
    int rc;
    if (S_ISDIR(st.st_mode)) {
        rc = st_open_folder(ck, path);
    } else { /* a file the user named: opened as given (vl_open_regular refuses non-files) */
        ck->files = calloc(1, sizeof *ck->files);
        if (!ck->files)
            rc = vl_error_set("out of memory opening %s", path);
        else if ((rc = vl_st_add_file(ck, 0, path, path, "checkpoint file")) == 0)
            rc = vl_st_sort_and_check_unique(ck);
    }
    if (rc != 0) vl_checkpoint_close(ck);
    return rc;
}
