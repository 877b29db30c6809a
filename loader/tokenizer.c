/* tokenizer.c: the Qwen2 byte-level BPE tokenizer from tokenizer.json, encoding exactly as HF
 * `tokenizers` does, and each id's bytes for decoding (detokenize.c streams them to text).
 *
 * Encode: added tokens are split out first (added_tokens.c: leftmost, then longest, on the raw
 * text for tokens with normalized=false; on the NFC text for those with normalized=true), the
 * rest is NFC'd, split by the Qwen2 pattern (pretokenize.c), mapped byte by byte to GPT-2's
 * byte symbols and merged by BPE in HF's order: lowest merge rank first, leftmost position on
 * ties, one merge at a time from a priority queue (tokenizers' models/bpe/word.rs), so every
 * tie resolves alike.
 * Load is strict: the JSON must be strict JSON (vl_json_parse: no repeated key, nothing after
 * the value, no NUL byte), and a tokenizer.json whose pipeline is not the Qwen2 one (normalizer,
 * pre-tokenizer, decoder, model options), or that has no merges, is refused rather than read
 * into a tokenizer that would produce other ids.
 * Leaves out: offsets, truncation/padding, post-processor templates (encode adds no BOS/EOS,
 * like add_special_tokens=False), BPE dropout, the word cache (results are the same without). */
#include "loader/loader.h"
#include "loader/added_tokens.h"
#include "loader/hash.h"
#include "loader/pretokenize.h"

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOKENIZER_MAX_FILE ((size_t)1 << 30)
#define TOKENIZER_MAX_ID   (1 << 24) /* ids are < 2^24: 16 M tokens is far above any vocabulary */
#define EMPTY              UINT32_MAX

typedef struct {
    uint32_t a, b;     /* left and right token ids; a == EMPTY marks a free slot */
    uint32_t rank, id; /* position in model.merges, id of the merged token */
} merge_slot;

struct vl_tokenizer {
    int32_t n_ids; /* highest id + 1 */
    /* id -> raw bytes (byte-level mapping undone; added tokens: their content); len -1: no such
     * id. All strings live in `arena`. */
    char *arena;
    size_t arena_used, arena_cap;
    size_t *tok_off;
    int32_t *tok_len;
    /* model.vocab spellings (byte symbols, as in the file) -> id: open addressing, slots hold
     * entry index + 1 (0 = free) */
    int32_t n_vocab;
    size_t *spell_off;
    uint32_t *spell_len;
    int32_t *spell_id;
    uint32_t *spell_slots;
    size_t spell_mask;
    /* (left id, right id) -> (rank, merged id) */
    merge_slot *merges;
    size_t merge_mask;
    int32_t byte_id[256];   /* id of the one-byte symbol of each byte */
    uint16_t byte_cp[256];  /* GPT-2 bytes_to_unicode */
    int16_t cp_byte[0x144]; /* its inverse; -1 for code points that are no byte symbol */
    vl_added_tokens added;
    bool *added_special; /* [added_tokens' length]: the entry's "special" flag, in file order */
    bool *special;       /* [n_ids]: ids of added tokens marked special (skip_special_tokens) */
    bool nfc, ignore_merges;
};

/* ---- hash lookups --------------------------------------------------------------------------- */

static int32_t vocab_find(const vl_tokenizer *t, const char *s, size_t n) {
    for (size_t h = vl_hash_bytes(s, n) & t->spell_mask;; h = (h + 1) & t->spell_mask) {
        uint32_t e = t->spell_slots[h];
        if (e == 0) return -1;
        e--;
        if (t->spell_len[e] == n && memcmp(t->arena + t->spell_off[e], s, n) == 0)
            return t->spell_id[e];
    }
}

static const merge_slot *merge_find(const vl_tokenizer *t, uint32_t a, uint32_t b) {
    for (size_t h = vl_hash_pair(a, b) & t->merge_mask;; h = (h + 1) & t->merge_mask) {
        const merge_slot *m = &t->merges[h];
        if (m->a == EMPTY) return NULL;
        if (m->a == a && m->b == b) return m;
    }
}

/* ---- loading -------------------------------------------------------------------------------- */

static int arena_reserve(vl_tokenizer *t, size_t n) {
    if (t->arena_used + n <= t->arena_cap) return 0;
    size_t cap = t->arena_cap ? t->arena_cap : 1 << 16;
    while (cap < t->arena_used + n) cap *= 2;
    char *p = realloc(t->arena, cap);
    if (!p) return vl_error_set("out of memory loading the tokenizer (%zu bytes)", cap);
    t->arena = p;
    t->arena_cap = cap;
    return 0;
}

/* s must not point into the arena (a reserve may move it). */
static int arena_add(vl_tokenizer *t, const char *s, size_t n, size_t *off) {
    if (arena_reserve(t, n + 1) != 0) return -1;
    *off = t->arena_used;
    memcpy(t->arena + t->arena_used, s, n);
    t->arena[t->arena_used + n] = '\0';
    t->arena_used += n + 1;
    return 0;
}

static void init_byte_map(vl_tokenizer *t) {
    /* GPT-2: printable Latin-1 bytes stand for themselves, the other 68 become U+0100.. */
    int next = 0x100;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        t->byte_cp[b] = (uint16_t)(printable ? b : next++);
    }
    for (int c = 0; c < 0x144; c++) t->cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) t->cp_byte[t->byte_cp[b]] = (int16_t)b;
}

static int get_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d < TOKENIZER_MAX_ID) || d != (double)(int32_t)d) return -1;
    *id = (int32_t)d;
    return 0;
}

static bool is_type(const cJSON *o, const char *type) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(o, "type");
    return cJSON_IsObject(o) && cJSON_IsString(ty) && strcmp(ty->valuestring, type) == 0;
}

static bool flag_is(const cJSON *o, const char *key, bool want) { /* absent counts as false */
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v ? (cJSON_IsBool(v) && cJSON_IsTrue(v) == want) : !want;
}

static bool empty_or_null(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == '\0');
}

/* Everything around the BPE model must be what the Qwen2 tokenizer uses, since that is all
 * this file implements. */
static int check_pipeline(vl_tokenizer *t, const cJSON *root, const char *path) {
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (is_type(norm, "NFC"))
        t->nfc = true;
    else if (norm && !cJSON_IsNull(norm))
        return vl_error_set("%s: normalizer is not supported (expected {\"type\": \"NFC\"} or "
                            "null as in the Qwen2 tokenizer.json)",
                            path);
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers");
    const cJSON *split = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
    if (!is_type(pre, "Sequence") || cJSON_GetArraySize(seq) != 2 || !is_type(split, "Split") ||
        !cJSON_IsString(re) || strcmp(re->valuestring, vl_qwen2_split_pattern) != 0 ||
        !cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") != 0 ||
        !flag_is(split, "invert", false) || !is_type(bl, "ByteLevel") ||
        !flag_is(bl, "add_prefix_space", false) || !flag_is(bl, "use_regex", false))
        return vl_error_set("%s: pre_tokenizer is not the Qwen2 one (expected Sequence[Split("
                            "Qwen2 regex, Isolated), ByteLevel(add_prefix_space=false, "
                            "use_regex=false)]); only Qwen2 tokenizers are supported",
                            path);
    if (!is_type(cJSON_GetObjectItemCaseSensitive(root, "decoder"), "ByteLevel"))
        return vl_error_set("%s: decoder is not ByteLevel; only byte-level BPE tokenizers "
                            "(Qwen2) are supported",
                            path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mtype = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(model))
        return vl_error_set("%s: no \"model\" object; is this a tokenizer.json?", path);
    if (mtype && !is_type(model, "BPE"))
        return vl_error_set("%s: model.type is %s, expected \"BPE\" (only byte-level BPE "
                            "tokenizers are supported)",
                            path, cJSON_IsString(mtype) ? mtype->valuestring : "not a string");
    const cJSON *drop = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (drop && !cJSON_IsNull(drop) && !(cJSON_IsNumber(drop) && drop->valuedouble == 0))
        return vl_error_set("%s: model.dropout is set; expected null (BPE dropout is for "
                            "training, not inference)",
                            path);
    if (!empty_or_null(model, "continuing_subword_prefix") ||
        !empty_or_null(model, "end_of_word_suffix"))
        return vl_error_set("%s: model.continuing_subword_prefix / end_of_word_suffix are set; "
                            "expected null or \"\" as in byte-level BPE",
                            path);
    t->ignore_merges = flag_is(model, "ignore_merges", true);
    return 0;
}

static int load_vocab(vl_tokenizer *t, const cJSON *model, const char *path) {
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab) || !vocab->child)
        return vl_error_set("%s: model.vocab is %s; expected an object mapping token -> id", path,
                            !vocab ? "missing" : "empty or not an object");
    int32_t n = 0;
    size_t spell_bytes = 0; /* at most the file's size: no overflow */
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id;
        if (get_id(e, &id) != 0)
            return vl_error_set("%s: model.vocab[\"%.60s\"] is not an integer id in [0, %d)", path,
                                e->string, TOKENIZER_MAX_ID);
        size_t len = strlen(e->string);
        if (vl_utf8_valid_prefix(e->string, len) != len)
            return vl_error_set("%s: model.vocab has a token that is not valid UTF-8", path);
        if (id >= t->n_ids) t->n_ids = id + 1;
        spell_bytes += len + 1;
        n++;
    }
    if (arena_reserve(t, spell_bytes) != 0) return -1;
    t->n_vocab = n;
    t->spell_off = malloc((size_t)n * sizeof *t->spell_off);
    t->spell_len = malloc((size_t)n * sizeof *t->spell_len);
    t->spell_id = malloc((size_t)n * sizeof *t->spell_id);
    size_t size = vl_hash_table_size((size_t)n);
    t->spell_slots = calloc(size, sizeof *t->spell_slots);
    t->spell_mask = size - 1;
    if (!t->spell_off || !t->spell_len || !t->spell_id || !t->spell_slots)
        return vl_error_set("out of memory loading the vocabulary of %s", path);
    int32_t k = 0;
    for (const cJSON *e = vocab->child; e; e = e->next, k++) {
        size_t len = strlen(e->string);
        if (len > UINT32_MAX) return vl_error_set("%s: a vocab token is too long", path);
        if (vocab_find(t, e->string, len) >= 0)
            return vl_error_set("%s: model.vocab lists \"%.60s\" twice", path, e->string);
        if (arena_add(t, e->string, len, &t->spell_off[k]) != 0) return -1;
        t->spell_len[k] = (uint32_t)len;
        get_id(e, &t->spell_id[k]);
        size_t h = vl_hash_bytes(e->string, len) & t->spell_mask;
        while (t->spell_slots[h]) h = (h + 1) & t->spell_mask;
        t->spell_slots[h] = (uint32_t)k + 1;
    }
    return 0;
}

/* One merge: ["a", "b"], or "a b" (files written before tokenizers 0.20; exactly one space,
 * and "#version" lines skipped as HF does). Returns 1 for a skipped line. */
static int merge_parts(const cJSON *m, char **buf, size_t *cap, const char **a, size_t *alen,
                       const char **b, size_t *blen) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        if (strncmp(s, "#version", 8) == 0) return 1;
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return -1;
        *a = s, *alen = (size_t)(sp - s), *b = sp + 1, *blen = strlen(sp + 1);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
               cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring, *alen = strlen(*a);
        *b = m->child->next->valuestring, *blen = strlen(*b);
    } else
        return -1;
    if (*alen + *blen + 1 > *cap) {
        size_t c = 2 * (*alen + *blen + 1);
        char *p = realloc(*buf, c);
        if (!p) return -2;
        *buf = p, *cap = c;
    }
    memcpy(*buf, *a, *alen);
    memcpy(*buf + *alen, *b, *blen);
    return 0;
}

static int load_merges(vl_tokenizer *t, const cJSON *model, const char *path) {
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges))
        return vl_error_set("%s: model.merges is %s; expected the array of BPE merges", path,
                            merges ? "not an array" : "missing");
    size_t n = 0;
    for (const cJSON *m = merges->child; m; m = m->next) n++;
    size_t size = vl_hash_table_size(n);
    t->merges = malloc(size * sizeof *t->merges);
    if (!t->merges) return vl_error_set("out of memory loading the merges of %s", path);
    for (size_t i = 0; i < size; i++) t->merges[i].a = EMPTY;
    t->merge_mask = size - 1;
    char *buf = NULL;
    size_t cap = 0, index = 0;
    uint32_t rank = 0;
    int rc = 0;
    for (const cJSON *m = merges->child; m && rc == 0; m = m->next, index++) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        int r = merge_parts(m, &buf, &cap, &a, &alen, &b, &blen);
        if (r == 1) continue;
        if (r == -2)
            rc = vl_error_set("out of memory loading the merges of %s", path);
        else if (r != 0)
            rc = vl_error_set("%s: model.merges[%zu] is malformed; expected [\"a\", \"b\"] or "
                              "\"a b\" (one space)",
                              path, index);
        if (rc) break;
        int32_t ia = vocab_find(t, a, alen), ib = vocab_find(t, b, blen);
        int32_t im = vocab_find(t, buf, alen + blen);
        if (ia < 0 || ib < 0 || im < 0) {
            rc = vl_error_set("%s: model.merges[%zu] (\"%.*s\" \"%.*s\") uses a token missing "
                              "from model.vocab; the file is inconsistent",
                              path, index, (int)(alen > 40 ? 40 : alen), a,
                              (int)(blen > 40 ? 40 : blen), b);
            break;
        }
        /* a pair listed twice keeps its last rank, as HF's HashMap insert does */
        size_t h = vl_hash_pair((uint32_t)ia, (uint32_t)ib) & t->merge_mask;
        while (t->merges[h].a != EMPTY &&
               !(t->merges[h].a == (uint32_t)ia && t->merges[h].b == (uint32_t)ib))
            h = (h + 1) & t->merge_mask;
        t->merges[h] = (merge_slot){(uint32_t)ia, (uint32_t)ib, rank++, (uint32_t)im};
    }
    free(buf);
    if (rc == 0 && rank == 0)
        rc = vl_error_set("%s: model.merges is empty; a BPE tokenizer without merges would "
                          "encode every byte alone; re-download the tokenizer.json",
                          path);
    return rc;
}

static int load_added(vl_tokenizer *t, const cJSON *root, const char *path) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!list || cJSON_IsNull(list)) return 0;
    if (!cJSON_IsArray(list)) return vl_error_set("%s: added_tokens is not an array", path);
    if (vl_added_init(&t->added, cJSON_GetArraySize(list), path) != 0) return -1;
    t->added_special = calloc((size_t)cJSON_GetArraySize(list) + 1, sizeof *t->added_special);
    if (!t->added_special) return vl_error_set("out of memory loading %s", path);
    int k = 0;
    for (const cJSON *e = list->child; e; e = e->next, k++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
        const cJSON *norm = cJSON_GetObjectItemCaseSensitive(e, "normalized");
        int32_t id;
        if (!cJSON_IsObject(e) || get_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id) != 0 ||
            !cJSON_IsString(c) || !c->valuestring[0] ||
            vl_utf8_valid_prefix(c->valuestring, strlen(c->valuestring)) != strlen(c->valuestring))
            return vl_error_set("%s: added_tokens[%d] needs an integer \"id\" in [0, %d) and a "
                                "non-empty UTF-8 \"content\"",
                                path, k, TOKENIZER_MAX_ID);
        if (!flag_is(e, "single_word", false) || !flag_is(e, "lstrip", false) ||
            !flag_is(e, "rstrip", false))
            return vl_error_set("%s: added token \"%.60s\" sets single_word, lstrip or rstrip, "
                                "which vlrun does not implement (Qwen2 tokens set none)",
                                path, c->valuestring);
        /* HF's default for a token without the field: normalized unless special */
        bool normalized = norm ? cJSON_IsTrue(norm) : !flag_is(e, "special", true);
        if (vl_added_add(&t->added, c->valuestring, id, normalized, t->nfc, path) != 0) return -1;
        t->added_special[k] = flag_is(e, "special", true);
        if (id >= t->n_ids) t->n_ids = id + 1;
    }
    return vl_added_build(&t->added, path);
}

/* id -> bytes, as HF's ByteLevel decoder gives them: a vocab token whose characters are all
 * byte symbols maps back to those bytes, any other token to its own UTF-8. */
static int build_id_table(vl_tokenizer *t, const char *path) {
    t->tok_off = malloc((size_t)t->n_ids * sizeof *t->tok_off);
    t->tok_len = malloc((size_t)t->n_ids * sizeof *t->tok_len);
    t->special = calloc((size_t)t->n_ids, sizeof *t->special);
    if (!t->tok_off || !t->tok_len || !t->special)
        return vl_error_set("out of memory loading %s", path);
    for (int32_t i = 0; i < t->n_ids; i++) t->tok_len[i] = -1;
    /* decoded bytes are never longer than the spelling: reserve once, so that spellings
     * (in the arena too) stay put while their bytes are written after them */
    size_t need = 0;
    for (int32_t k = 0; k < t->n_vocab; k++) need += t->spell_len[k] + 1;
    for (int i = 0; i < t->added.n; i++) need += strlen(t->added.tok[i].content) + 1;
    if (arena_reserve(t, need) != 0) return -1;
    for (int32_t k = 0; k < t->n_vocab; k++) {
        int32_t id = t->spell_id[k];
        if (t->tok_len[id] >= 0)
            return vl_error_set("%s: model.vocab gives id %d to two tokens", path, id);
        const char *s = t->arena + t->spell_off[k];
        char *raw = t->arena + t->arena_used;
        size_t len = t->spell_len[k], n = 0;
        for (size_t i = 0; i < len;) {
            int r = vl_utf8_next((const unsigned char *)s + i, len - i);
            uint32_t c = (unsigned char)s[i];
            if (r == 2) c = ((c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F);
            if (r <= 0 || r > 2 || c >= 0x144 || t->cp_byte[c] < 0) { /* not all byte symbols */
                memcpy(raw, s, len);
                n = len;
                break;
            }
            raw[n++] = (char)t->cp_byte[c];
            i += (size_t)r;
        }
        raw[n] = '\0';
        t->tok_off[id] = t->arena_used;
        t->tok_len[id] = (int32_t)n;
        t->arena_used += n + 1;
    }
    for (int i = 0; i < t->added.n; i++) {
        const vl_added_token *a = &t->added.tok[i];
        if (arena_add(t, a->content, strlen(a->content), &t->tok_off[a->id]) != 0) return -1;
        t->tok_len[a->id] = (int32_t)strlen(a->content);
        t->special[a->id] = t->added_special[i]; /* added in file order: index i is entry i */
    }
    for (int b = 0; b < 256; b++) {
        char sym[3];
        uint16_t c = t->byte_cp[b];
        size_t n = c < 0x80 ? 1 : 2;
        if (n == 1)
            sym[0] = (char)c;
        else
            sym[0] = (char)(0xC0 | (c >> 6)), sym[1] = (char)(0x80 | (c & 0x3F));
        t->byte_id[b] = vocab_find(t, sym, n);
        if (t->byte_id[b] < 0)
            return vl_error_set("%s: model.vocab lacks the byte symbol \"%.*s\" of byte 0x%02X; "
                                "a byte-level BPE vocabulary needs all 256",
                                path, (int)n, sym, b);
    }
    return 0;
}

int vl_tokenizer_load(vl_tokenizer **out, const char *path) {
    *out = NULL;
    char *text;
    size_t len;
    if (vl_read_file(path, TOKENIZER_MAX_FILE, &text, &len) != 0) return -1;
    cJSON *root = NULL;
    int parsed = vl_json_parse(text, len, path, &root);
    free(text);
    if (parsed != 0) return -1;
    vl_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        return vl_error_set("out of memory loading %s", path);
    }
    init_byte_map(t);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    int rc = check_pipeline(t, root, path);
    if (rc == 0) rc = load_vocab(t, model, path);
    if (rc == 0) rc = load_merges(t, model, path);
    if (rc == 0) rc = load_added(t, root, path);
    if (rc == 0) rc = build_id_table(t, path);
    cJSON_Delete(root);
    if (rc != 0) {
        vl_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void vl_tokenizer_free(vl_tokenizer *t) {
    if (!t) return;
    vl_added_free(&t->added);
    free(t->arena);
    free(t->tok_off);
    free(t->tok_len);
    free(t->added_special);
    free(t->special);
    free(t->spell_off);
    free(t->spell_len);
    free(t->spell_id);
    free(t->spell_slots);
    free(t->merges);
    free(t);
}

/* ---- encoding ------------------------------------------------------------------------------- */

typedef struct {
    int32_t id;
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    uint32_t len;       /* bytes covered; 0 once merged into its left neighbour */
} symbol;

typedef struct {
    uint32_t rank, pos, id;
} candidate; /* a merge of the symbol at pos with its right neighbour */

typedef struct {
    const vl_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    symbol *sym;
    candidate *heap;
    size_t cap_word; /* sym holds cap_word entries, heap 3 * cap_word */
    char *spell;     /* byte-symbol spelling of a word (ignore_merges only) */
} encoder;

static int push_id(encoder *e, int32_t id) {
    if (e->n_ids == e->cap_ids) {
        size_t cap = e->cap_ids ? 2 * e->cap_ids : 256;
        if (cap > (size_t)INT32_MAX) return vl_error_set("text encodes to too many tokens");
        int32_t *p = realloc(e->ids, cap * sizeof *p);
        if (!p) return vl_error_set("out of memory encoding text (%zu tokens)", cap);
        e->ids = p;
        e->cap_ids = cap;
    }
    e->ids[e->n_ids++] = id;
    return 0;
}

static bool cand_less(candidate x, candidate y) {
    return x.rank != y.rank ? x.rank < y.rank : x.pos < y.pos;
}

static void heap_push(candidate *h, size_t *n, candidate c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(c, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static candidate heap_pop(candidate *h, size_t *n) {
    candidate top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(h[c + 1], h[c])) c++;
        if (!cand_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_candidate(const vl_tokenizer *t, candidate *h, size_t *n, const symbol *sym,
                           int32_t pos) {
    const merge_slot *m = merge_find(t, (uint32_t)sym[pos].id, (uint32_t)sym[sym[pos].next].id);
    if (m) heap_push(h, n, (candidate){m->rank, (uint32_t)pos, m->id});
}

/* BPE on one pre-tokenized piece, appending its ids. */
static int encode_word(void *ctx, const char *w, size_t n) {
    encoder *e = ctx;
    const vl_tokenizer *t = e->t;
    const unsigned char *u = (const unsigned char *)w;
    if (n == 1) return push_id(e, t->byte_id[u[0]]);
    if (n > e->cap_word) {
        size_t cap = n > 2 * e->cap_word ? n : 2 * e->cap_word;
        free(e->sym), free(e->heap), free(e->spell);
        e->sym = malloc(cap * sizeof *e->sym);
        e->heap = malloc(3 * cap * sizeof *e->heap);
        e->spell = malloc(2 * cap);
        e->cap_word = e->sym && e->heap && e->spell ? cap : 0;
        if (!e->cap_word) return vl_error_set("out of memory encoding a %zu-byte word", n);
    }
    if (t->ignore_merges) { /* a word that is a vocab entry is taken whole */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            uint16_t c = t->byte_cp[u[i]];
            if (c < 0x80)
                e->spell[k++] = (char)c;
            else
                e->spell[k++] = (char)(0xC0 | (c >> 6)), e->spell[k++] = (char)(0x80 | (c & 0x3F));
        }
        int32_t id = vocab_find(t, e->spell, k);
        if (id >= 0) return push_id(e, id);
    }
    symbol *sym = e->sym;
    for (size_t i = 0; i < n; i++)
        sym[i] = (symbol){t->byte_id[u[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, 1};
    candidate *heap = e->heap;
    size_t nh = 0;
    for (size_t i = 0; i + 1 < n; i++) push_candidate(t, heap, &nh, sym, (int32_t)i);
    /* Each merge pushes at most two candidates and there are at most n - 1 merges, so the heap
     * never holds more than 3n. Entries go stale when a neighbour changes: they are skipped
     * unless the pair now at that position still merges into the same token (HF's check). */
    while (nh) {
        candidate c = heap_pop(heap, &nh);
        symbol *s = &sym[c.pos];
        if (s->len == 0 || s->next < 0) continue;
        const merge_slot *m = merge_find(t, (uint32_t)s->id, (uint32_t)sym[s->next].id);
        if (!m || m->id != c.id) continue;
        symbol right = sym[s->next];
        sym[s->next].len = 0;
        s->id = (int32_t)c.id;
        s->len += right.len;
        s->next = right.next;
        if (right.next >= 0) sym[right.next].prev = (int32_t)c.pos;
        if (s->prev >= 0) push_candidate(t, heap, &nh, sym, s->prev);
        if (s->next >= 0) push_candidate(t, heap, &nh, sym, (int32_t)c.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if (push_id(e, sym[i].id) != 0) return -1;
    return 0;
}

static int encode_words(void *ctx, const char *s, size_t n) {
    return vl_pretokenize_qwen2(s, n, encode_word, ctx);
}

static int push_added(void *ctx, int index) {
    encoder *e = ctx;
    return push_id(e, e->t->added.tok[index].id);
}

/* Text between raw added tokens: NFC, then the normalized added tokens, then words. */
static int encode_segment(void *ctx, const char *s, size_t n) {
    encoder *e = ctx;
    const vl_tokenizer *t = e->t;
    char *norm = NULL;
    if (t->nfc) {
        size_t norm_len;
        if (vl_nfc(s, n, &norm, &norm_len) != 0) return -1;
        s = norm;
        n = norm_len;
    }
    int rc = vl_added_split(&t->added, s, n, true, encode_words, push_added, e);
    free(norm);
    return rc;
}

int vl_tokenizer_encode(const vl_tokenizer *t, const char *text, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    if (!t || !text) return vl_error_set("vl_tokenizer_encode: no tokenizer or no text");
    size_t len = strlen(text), valid = vl_utf8_valid_prefix(text, len);
    if (valid != len)
        return vl_error_set("text to tokenize is not valid UTF-8 (bad byte 0x%02X at offset "
                            "%zu); convert it to UTF-8 first",
                            (unsigned char)text[valid], valid);
    encoder e = {.t = t};
    int rc = vl_added_split(&t->added, text, len, false, encode_segment, push_added, &e);
    free(e.sym);
    free(e.heap);
    free(e.spell);
    if (rc != 0) {
        free(e.ids);
        return -1;
    }
    *ids = e.ids;
    *n = (int)e.n_ids;
    return 0;
}

int vl_tokenizer_token_id(const vl_tokenizer *t, const char *content) {
    if (!t || !content) return -1;
    int k = vl_added_find(&t->added, content);
    return k < 0 ? -1 : t->added.tok[k].id;
}

int vl_tokenizer_vocab_size(const vl_tokenizer *t) {
    return t ? t->n_ids : 0;
}

int vl_tokenizer_is_special(const vl_tokenizer *t, int id) {
    return t && id >= 0 && id < t->n_ids && t->special[id];
}

const char *vl_tokenizer_token_bytes(const vl_tokenizer *t, int id, int *len) {
    if (len) *len = 0;
    if (!t || id < 0 || id >= t->n_ids || t->tok_len[id] < 0) return NULL;
    if (len) *len = t->tok_len[id];
    return t->arena + t->tok_off[id];
}
