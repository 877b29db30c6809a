/* test_added_tokens.c: splitting text at added tokens (loader/added_tokens.c) and NFC
 * (loader/pretokenize.c), against simple references, and at sizes where the former quadratic
 * steps took a minute (60000 tokens: 58 s; 100 KB over 20000 tokens: 17 s; NFC: 22 s) and the
 * linear ones take about a second: a regression shows as a test that runs long or times out.
 *
 *   oracle     300 random added tokens over a small alphabet (prefixes of each other,
 *              overlapping, raw and normalized, equal patterns from different contents) on
 *              3000 random texts: the ids equal those of the former scan, kept here as the
 *              reference (leftmost match, longest there, first listed among equal patterns)
 *   equal      tokens whose patterns are equal after NFC: the first listed wins, both orders
 *   many       60000 added tokens: load, lookup of each by content, the duplicate check
 *   long text  100 KB of text over 20000 added tokens, and 100 KB of "q" where "q" and "q"*1000
 *              "r" are tokens; ids known by construction
 *   nfc        random texts of starters and combining marks against utf8proc_NFC, and 100 KB of
 *              combining marks (utf8proc's own ordering is quadratic there)
 *
 * All tokenizers here are hand-made: byte b is id b and the few merges (on a, b, c and the
 * space) never apply to the texts used, so text outside added tokens encodes to its bytes. */
#include "loader/loader.h"
#include "vltest.h"
#include "vltest_tok.h"

#include <stdarg.h>
#include <stdint.h>
#include <time.h>
#include <utf8proc.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Elapsed time of one test, printed for the record (nothing checks it). */
static void timed(const char *name, void (*test)(const char *dir), const char *dir) {
    double t0 = now_s();
    test(dir);
    fprintf(stderr, "%s: %.0f ms\n", name, 1e3 * (now_s() - t0));
}

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) abort();
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = 2 * (b->n + (size_t)k + 1);
        b->s = realloc(b->s, b->cap);
        if (!b->s) abort();
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

typedef struct {
    int32_t *v;
    int n, cap;
} ibuf;

static void ib_push(ibuf *b, int32_t id) {
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->v = realloc(b->v, (size_t)b->cap * sizeof *b->v);
        if (!b->v) abort();
    }
    b->v[b->n++] = id;
}

static void ib_bytes(ibuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) ib_push(b, (unsigned char)s[i]);
}

/* Encode text and compare with want; prints the first difference. */
static void check_encode(const vl_tokenizer *t, const char *what, const char *text,
                         const ibuf *want) {
    int32_t *ids = NULL;
    int n = -1;
    int rc = vl_tokenizer_encode(t, text, &ids, &n);
    VT_CHECKF(rc == 0, "%s: %s", what, vl_error_get());
    int same = rc == 0 && n == want->n && memcmp(ids, want->v, (size_t)n * sizeof *ids) == 0;
    VT_CHECKF(same, "%s: %d ids, want %d", what, n, want->n);
    if (!same && rc == 0) {
        int i = 0;
        while (i < n && i < want->n && ids[i] == want->v[i]) i++;
        fprintf(stderr, "  first difference at id %d of text \"%.200s\"\n", i, text);
        if (i < n && i < want->n) fprintf(stderr, "  got %d, want %d\n", ids[i], want->v[i]);
    }
    free(ids);
}

/* One added token as JSON. */
static void added_json(sbuf *b, int first, int32_t id, const char *content, int normalized) {
    sb_printf(b, "%s{\"id\": %d, \"content\": \"%s\", \"normalized\": %s, \"special\": %s}",
              first ? "" : ", ", id, content, normalized ? "true" : "false",
              normalized ? "false" : "true");
}

static vl_tokenizer *load_added(const char *dir, const char *name, const char *added) {
    tiny_opts o = {.merges = LEGACY_MERGES, .drop_byte = -1, .added = added};
    return load_tiny(dir, name, &o);
}

/* ---- the reference: the former quadratic scan --------------------------------------------- */

typedef struct {
    char *content, *pattern; /* pattern: NFC(content) for normalized tokens */
    size_t plen;
    int32_t id;
    int normalized;
} ref_token;

/* Leftmost, then longest, token of the given kind in s[0..n); the first listed on equal length
 * (the same pattern). Its index, or -1; *at = where it starts. */
static int ref_find(const ref_token *tok, int n_tok, const char *s, size_t n, int normalized,
                    size_t *at) {
    for (size_t i = 0; i < n; i++) {
        int best = -1;
        for (int k = 0; k < n_tok; k++) {
            const ref_token *a = &tok[k];
            if (a->normalized == normalized && a->plen <= n - i &&
                (best < 0 || a->plen > tok[best].plen) && memcmp(s + i, a->pattern, a->plen) == 0)
                best = k;
        }
        if (best >= 0) return *at = i, best;
    }
    return -1;
}

static char *nfc_of(const char *s, size_t n) {
    char *copy = malloc(n + 1);
    memcpy(copy, s, n);
    copy[n] = '\0';
    char *out = (char *)utf8proc_NFC((const utf8proc_uint8_t *)copy);
    free(copy);
    return out;
}

/* Raw tokens on the text; between them NFC, normalized tokens, and bytes. */
static void ref_encode(const ref_token *tok, int n_tok, const char *text, ibuf *out, int *hits) {
    size_t len = strlen(text);
    while (len > 0) {
        size_t at = len;
        int k = ref_find(tok, n_tok, text, len, 0, &at);
        char *norm = nfc_of(text, at);
        const char *s = norm;
        size_t n = strlen(norm);
        while (n > 0) {
            size_t at2 = n;
            int k2 = ref_find(tok, n_tok, s, n, 1, &at2);
            ib_bytes(out, s, at2);
            if (k2 < 0) break;
            ib_push(out, tok[k2].id);
            hits[1]++;
            s += at2 + tok[k2].plen;
            n -= at2 + tok[k2].plen;
        }
        free(norm);
        if (k < 0) break;
        ib_push(out, tok[k].id);
        hits[0]++;
        text += at + tok[k].plen;
        len -= at + tok[k].plen;
    }
}

/* ---- oracle ------------------------------------------------------------------------------- */

/* Pieces of tokens and texts: no a, b, c or space (merges), "A" + U+030A and U+00C5 share an
 * NFC, as do "e" + U+0301 and U+00E9. */
static const char *const alphabet[] = {"x",         "y",         "z",        "<",
                                       ">",         "|",         "A",        "\xc3\x85",
                                       "A\xcc\x8a", "e\xcc\x81", "\xc3\xa9", "\xcc\x8a"};
#define N_ALPHA ((int)(sizeof alphabet / sizeof *alphabet))

static void random_string(sbuf *b, int max_pieces) {
    int n = 1 + (int)(vt_rng_next() % (uint64_t)max_pieces);
    for (int i = 0; i < n; i++) sb_printf(b, "%s", alphabet[vt_rng_next() % N_ALPHA]);
}

static void test_oracle(const char *dir) {
    enum { N_TOK = 300, N_TEXT = 3000 };
    vt_rng_state = 13;
    ref_token tok[N_TOK];
    int n_tok = 0;
    sbuf json = {0};
    sb_printf(&json, "[");
    /* equal patterns: the first listed of each pair wins */
    const char *fixed[][2] = {{"\xc3\x85", "1"},  {"A\xcc\x8a", "1"}, {"xe\xcc\x81", "1"},
                              {"x\xc3\xa9", "1"}, {"\xc3\xa9", "0"},  {"e\xcc\x81", "0"}};
    for (int attempt = 0; n_tok < N_TOK && attempt < 100000; attempt++) {
        sbuf c = {0};
        int normalized;
        if (attempt < 6) {
            sb_printf(&c, "%s", fixed[attempt][0]);
            normalized = fixed[attempt][1][0] == '1';
        } else {
            random_string(&c, attempt % 3 == 0 ? 6 : 3);
            normalized = (int)(vt_rng_next() & 1);
        }
        int dup = 0;
        for (int k = 0; k < n_tok && !dup; k++) dup = strcmp(tok[k].content, c.s) == 0;
        if (dup) {
            free(c.s);
            continue;
        }
        ref_token *a = &tok[n_tok];
        a->content = c.s;
        a->pattern = normalized ? nfc_of(c.s, c.n) : strdup(c.s);
        a->plen = strlen(a->pattern);
        a->id = 300 + n_tok;
        a->normalized = normalized;
        added_json(&json, n_tok == 0, a->id, a->content, normalized);
        n_tok++;
    }
    sb_printf(&json, "]");
    VT_CHECK_INT(n_tok, N_TOK);
    vl_tokenizer *t = load_added(dir, "oracle", json.s);
    int hits[2] = {0, 0}, longer = 0;
    for (int i = 0; t && i < N_TEXT; i++) {
        sbuf text = {0};
        random_string(&text, i % 2 ? 12 : 40);
        if (i % 3 == 0) sb_printf(&text, "%s", tok[vt_rng_next() % N_TOK].content);
        ibuf want = {0};
        ref_encode(tok, n_tok, text.s, &want, hits);
        char what[64];
        snprintf(what, sizeof what, "oracle text %d", i);
        check_encode(t, what, text.s, &want);
        free(text.s), free(want.v);
    }
    /* the texts exercised both kinds, often */
    VT_CHECKF(hits[0] > 5000 && hits[1] > 5000, "raw %d, normalized %d matches", hits[0], hits[1]);
    for (int k = 0; k < n_tok; k++) longer += strlen(tok[k].pattern) > 3;
    VT_CHECK(longer > 50);
    vl_tokenizer_free(t);
    for (int k = 0; k < n_tok; k++) free(tok[k].content), free(tok[k].pattern);
    free(json.s);
}

/* Tokens whose patterns are equal (NFC of normalized ones): the first listed wins. */
static void test_equal_patterns(const char *dir) {
    sbuf json = {0};
    sb_printf(&json, "[");
    added_json(&json, 1, 300, "\xc3\x85", 1);   /* U+00C5 */
    added_json(&json, 0, 301, "A\xcc\x8a", 1);  /* A U+030A: NFC is U+00C5 */
    added_json(&json, 0, 302, "xe\xcc\x81", 1); /* x e U+0301 */
    added_json(&json, 0, 303, "x\xc3\xa9", 1);  /* x U+00E9 */
    added_json(&json, 0, 304, "\xc3\xa9", 0);   /* raw U+00E9 */
    sb_printf(&json, "]");
    vl_tokenizer *t = load_added(dir, "equal_patterns", json.s);
    ibuf want = {0};
    ib_push(&want, 300), ib_push(&want, 302), ib_push(&want, '|'), ib_push(&want, 304);
    if (t) check_encode(t, "equal patterns", "A\xcc\x8axe\xcc\x81|\xc3\xa9", &want);
    /* listed the other way round, the other token of each pair wins */
    json.n = 0;
    sb_printf(&json, "[");
    added_json(&json, 1, 301, "A\xcc\x8a", 1);
    added_json(&json, 0, 300, "\xc3\x85", 1);
    added_json(&json, 0, 303, "x\xc3\xa9", 1);
    added_json(&json, 0, 302, "xe\xcc\x81", 1);
    sb_printf(&json, "]");
    vl_tokenizer *u = load_added(dir, "equal_patterns_swapped", json.s);
    want.n = 0;
    ib_push(&want, 301), ib_push(&want, 303), ib_push(&want, '|');
    if (u) check_encode(u, "equal patterns swapped", "\xc3\x85x\xc3\xa9|", &want);
    vl_tokenizer_free(t), vl_tokenizer_free(u);
    free(json.s), free(want.v);
}

/* ---- many tokens -------------------------------------------------------------------------- */

/* 60000 tokens <t00000>.. with ids 300..; `extra` appended as one more entry (or NULL). */
static char *many_json(const char *extra) {
    sbuf b = {0};
    sb_printf(&b, "[");
    for (int k = 0; k < 60000; k++) {
        char c[16];
        snprintf(c, sizeof c, "<t%05d>", k);
        added_json(&b, k == 0, 300 + k, c, 0);
    }
    sb_printf(&b, "%s%s]", extra ? ", " : "", extra ? extra : "");
    return b.s;
}

static void test_many(const char *dir) {
    char *json = many_json(NULL);
    vl_tokenizer *t = load_added(dir, "many", json);
    free(json);
    if (t) {
        VT_CHECK_INT(vl_tokenizer_vocab_size(t), 60300);
        int wrong = 0;
        for (int k = 0; k < 60000; k++) {
            char c[16];
            snprintf(c, sizeof c, "<t%05d>", k);
            wrong += vl_tokenizer_token_id(t, c) != 300 + k;
        }
        VT_CHECK_INT(wrong, 0);
        VT_CHECK_INT(vl_tokenizer_token_id(t, "<t60000>"), -1);
        ibuf want = {0};
        ib_push(&want, 300);
        ib_bytes(&want, "xy", 2);
        ib_push(&want, 300 + 59999);
        ib_bytes(&want, "<t5999", 6);
        check_encode(t, "many", "<t00000>xy<t59999><t5999", &want);
        free(want.v);
    }
    vl_tokenizer_free(t);
    /* duplicates at the end of the list; the message names the first listed one it repeats */
    static const struct {
        const char *name, *extra, *first;
    } dups[] = {
        {"dup_id", "{\"id\": 300, \"content\": \"<new>\"}", "\"<t00000>\" and \"<new>\""},
        {"dup_content", "{\"id\": 99999, \"content\": \"<t30000>\"}",
         "\"<t30000>\" and \"<t30000>\""},
        {"dup_both", "{\"id\": 40300, \"content\": \"<t10000>\"}", "\"<t10000>\" and \"<t10000>\""},
    };
    for (size_t i = 0; i < sizeof dups / sizeof *dups; i++) {
        json = many_json(dups[i].extra);
        char path[4096];
        tiny_opts o = {.merges = LEGACY_MERGES, .drop_byte = -1, .added = json};
        VT_CHECK(write_tiny(dir, dups[i].name, &o, path, sizeof path) == 0);
        free(json);
        vl_tokenizer *d = NULL;
        vl_error_clear();
        VT_CHECKF(vl_tokenizer_load(&d, path) != 0 && d == NULL, "%s accepted", dups[i].name);
        VT_CHECKF(strstr(vl_error_get(), "share an id or content") &&
                      strstr(vl_error_get(), dups[i].first),
                  "%s: %s", dups[i].name, vl_error_get());
        vl_tokenizer_free(d);
    }
    vl_error_clear();
}

/* ---- long text ---------------------------------------------------------------------------- */

/* Raw tokens "<k>" (k < 20000, id 300 + k), normalized "<j" (j < 2000, id 20300 + j: prefixes
 * of the former), raw "q" (22300) and "q"*1000 "r" (22301). */
static void test_long_text(const char *dir) {
    sbuf json = {0}, text = {0};
    sb_printf(&json, "[");
    char c[1024];
    for (int k = 0; k < 20000; k++)
        snprintf(c, sizeof c, "<%d>", k), added_json(&json, k == 0, 300 + k, c, 0);
    for (int j = 0; j < 2000; j++)
        snprintf(c, sizeof c, "<%d", j), added_json(&json, 0, 20300 + j, c, 1);
    memset(c, 'q', 1000), c[1000] = 'r', c[1001] = '\0';
    added_json(&json, 0, 22300, "q", 0);
    added_json(&json, 0, 22301, c, 0);
    sb_printf(&json, "]");
    vl_tokenizer *t = load_added(dir, "long_text", json.s);
    free(json.s);
    if (!t) return;
    vt_rng_state = 29;
    ibuf want = {0};
    while (text.n < 100000) {
        int kind = (int)(vt_rng_next() % 3);
        if (kind == 0) {
            int k = (int)(vt_rng_next() % 20000);
            sb_printf(&text, "<%d>", k);
            ib_push(&want, 300 + k);
        } else if (kind == 1) { /* "<j" is all of it: no token continues with "x" */
            int j = (int)(vt_rng_next() % 2000);
            sb_printf(&text, "<%dx", j);
            ib_push(&want, 20300 + j);
            ib_push(&want, 'x');
        } else {
            sb_printf(&text, "yz|");
            ib_bytes(&want, "yz|", 3);
        }
    }
    check_encode(t, "100 KB over 20000 tokens", text.s, &want);
    /* every position starts a walk towards "q"*1000 "r" that fails, and "q" wins */
    text.n = 0;
    want.n = 0;
    for (int i = 0; i < 100000; i++) sb_printf(&text, "q"), ib_push(&want, 22300);
    check_encode(t, "100 KB of q", text.s, &want);
    free(text.s), free(want.v);
    vl_tokenizer_free(t);
}

/* ---- NFC ---------------------------------------------------------------------------------- */

/* Starters (Hangul jamo that compose, U+212B that decomposes to U+00C5) and marks of combining
 * classes 10, 202, 220, 230, 240, plus U+0344 (two marks) and U+0F73 (excluded from
 * composition). */
static const char *const nfc_starters[] = {"e",
                                           "x",
                                           "A",
                                           "s",
                                           "\xe1\x84\x80",
                                           "\xe1\x85\xa1",
                                           "\xe1\x86\xa8",
                                           "\xea\xb0\x80",
                                           "\xe2\x84\xab",
                                           "\xc3\x85"};
static const char *const nfc_marks[] = {"\xcc\x81",     "\xcc\x96", "\xcc\xa7", "\xcd\x85",
                                        "\xd6\xb0",     "\xcc\xa3", "\xcc\x87", "\xcd\x84",
                                        "\xe0\xbd\xb3", "\xcc\x8a"};

static void test_nfc(const char *dir) {
    tiny_opts o = {.merges = LEGACY_MERGES, .drop_byte = -1};
    vl_tokenizer *t = load_tiny(dir, "nfc", &o);
    if (!t) return;
    vt_rng_state = 41;
    int changed = 0;
    for (int i = 0; i < 3000; i++) {
        sbuf text = {0};
        int n = 1 + (int)(vt_rng_next() % (i % 4 ? 20 : 120)), marks_pct = i % 2 ? 50 : 90;
        for (int k = 0; k < n; k++) {
            int mark = (int)(vt_rng_next() % 100) < marks_pct;
            uint64_t r = vt_rng_next();
            sb_printf(&text, "%s", mark ? nfc_marks[r % 10] : nfc_starters[r % 10]);
        }
        char *want_text = nfc_of(text.s, text.n);
        changed += strcmp(want_text, text.s) != 0;
        ibuf want = {0};
        ib_bytes(&want, want_text, strlen(want_text));
        char what[64];
        snprintf(what, sizeof what, "nfc text %d", i);
        check_encode(t, what, text.s, &want);
        free(text.s), free(want_text), free(want.v);
    }
    VT_CHECK(changed > 2000);
    /* e, 25000 x U+0301 (class 230), 25000 x U+0316 (220): the 220s move first, and the first
     * U+0301 composes with e into U+00E9; nothing composes with U+00E9 + U+0301 */
    sbuf text = {0};
    ibuf want = {0};
    sb_printf(&text, "e");
    ib_bytes(&want, "\xc3\xa9", 2);
    for (int i = 0; i < 25000; i++) sb_printf(&text, "\xcc\x81");
    for (int i = 0; i < 25000; i++) sb_printf(&text, "\xcc\x96"), ib_bytes(&want, "\xcc\x96", 2);
    for (int i = 1; i < 25000; i++) ib_bytes(&want, "\xcc\x81", 2);
    check_encode(t, "100 KB of marks", text.s, &want);
    free(text.s), free(want.v);
    vl_tokenizer_free(t);
}

int main(void) {
    char dir[1024];
    if (make_temp_dir(dir, sizeof dir) != 0) {
        VT_CHECKF(0, "cannot create a temporary folder %s", dir);
        return vt_finish();
    }
    timed("oracle", test_oracle, dir);
    timed("equal patterns", test_equal_patterns, dir);
    timed("60000 tokens", test_many, dir);
    timed("100 KB over 20000 tokens", test_long_text, dir);
    timed("nfc", test_nfc, dir);
    remove_dir(dir);
    return vt_finish();
}
