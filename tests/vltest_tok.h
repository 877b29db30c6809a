/* vltest_tok.h: what the tokenizer tests share: hand-made tokenizer.json files in a temporary
 * folder (a byte-level vocabulary, a few merges, options per test) and checking encoded ids.
 * Include after vltest.h. */
#ifndef VL_TEST_TOK_H
#define VL_TEST_TOK_H
#include "loader/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static inline void check_ids(const vl_tokenizer *t, const char *text, const int32_t *want,
                             int n_want) {
    int32_t *ids = NULL;
    int n = -1;
    int rc = vl_tokenizer_encode(t, text, &ids, &n);
    VT_CHECKF(rc == 0, "encode \"%s\": %s", text, vl_error_get());
    int same = rc == 0 && n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    VT_CHECKF(same, "ids of \"%s\"", text);
    if (!same && rc == 0) print_ids("got", ids, n), print_ids("want", want, n_want);
    free(ids);
}

/* The Qwen2 split pattern as tokenizer.json spells it (JSON-escaped). */
#define QWEN2_PATTERN_JSON                                                                         \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| "              \
    "?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

typedef struct {
    const char *model_type;  /* JSON value of model.type */
    const char *merges;      /* JSON value of model.merges, NULL: leave the key out */
    int no_vocab;            /* leave model.vocab out */
    int drop_byte;           /* a byte whose symbol is left out of the vocab, or -1 */
    const char *normalizer;  /* JSON value */
    const char *pattern;     /* JSON string body of the Split regex */
    const char *added;       /* JSON value of added_tokens */
    const char *model_extra; /* more "key": value pairs for model, each followed by ", " */
    const char *vocab_extra; /* more ", key: id" entries for model.vocab */
} tiny_opts;

/* Files written into the temporary folder, removed at the end. */
static char made[64][4096];
static int n_made;

static inline FILE *create(const char *dir, const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s.json", dir, name);
    if (n_made < 64) snprintf(made[n_made++], sizeof made[0], "%s", path);
    return fopen(path, "wb");
}

/* Vocab: byte b's GPT-2 symbol has id b; then "ab" 256, "Ġa" 257, "Ġab" 258, "aa" 259,
 * "bc" 260. Written out independently of the loader's byte table. */
static inline int write_tiny(const char *dir, const char *name, const tiny_opts *o, char *path,
                             size_t cap) {
    FILE *f = create(dir, name, path, cap);
    if (!f) return -1;
    fprintf(f, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n");
    fprintf(f, "\"added_tokens\": %s,\n", o->added ? o->added : "[]");
    fprintf(f, "\"normalizer\": %s,\n", o->normalizer ? o->normalizer : "{\"type\": \"NFC\"}");
    fprintf(f,
            "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
            "\"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": \"Isolated\", "
            "\"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
            "\"trim_offsets\": false, \"use_regex\": false}]},\n",
            o->pattern ? o->pattern : QWEN2_PATTERN_JSON);
    fprintf(f, "\"post_processor\": null,\n\"decoder\": {\"type\": \"ByteLevel\", "
               "\"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n");
    fprintf(f, "\"model\": {\"type\": %s, \"dropout\": null, \"unk_token\": null, %s",
            o->model_type ? o->model_type : "\"BPE\"", o->model_extra ? o->model_extra : "");
    if (!o->no_vocab) {
        fprintf(f, "\"vocab\": {");
        int next = 256;
        for (int b = 0; b < 256; b++) {
            int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            int cp = printable ? b : next++;
            if (b != o->drop_byte) fprintf(f, "\"\\u%04x\": %d, ", cp, b);
        }
        fprintf(f,
                "\"ab\": 256, \"\\u0120a\": 257, \"\\u0120ab\": 258, \"aa\": 259, "
                "\"bc\": 260%s}",
                o->vocab_extra ? o->vocab_extra : "");
    }
    if (o->merges) fprintf(f, "%s\"merges\": %s", o->no_vocab ? "" : ", ", o->merges);
    fprintf(f, "}}\n");
    return fclose(f);
}

#define LEGACY_MERGES                                                                              \
    "[\"#version: 0.2\", \"a b\", \"\\u0120 a\", \"\\u0120a b\", \"a a\", \"b c\"]"

static inline vl_tokenizer *load_tiny(const char *dir, const char *name, const tiny_opts *o) {
    char path[4096];
    VT_CHECK(write_tiny(dir, name, o, path, sizeof path) == 0);
    vl_tokenizer *t = NULL;
    vl_error_clear();
    VT_CHECKF(vl_tokenizer_load(&t, path) == 0, "%s: %s", name, vl_error_get());
    return t;
}

/* A fresh temporary folder in $TMPDIR (or /tmp), its path into dir; 0 on success. */
static inline int make_temp_dir(char *dir, size_t cap) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, cap, "%s/vl_tokenizer_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static inline void remove_dir(const char *dir) {
    for (int i = 0; i < n_made; i++) unlink(made[i]);
    rmdir(dir);
}

#endif
