/* test_tokenizer.c: the Qwen2 tokenizer (loader/tokenizer.c, loader/pretokenize.c).
 *
 *   goldens    every text of tests/fixtures/tokenizer/cases.json encodes to the ids HF
 *              tokenizers gave (goldens.json, written by tests/reference/
 *              make_tokenizer_goldens.py), and those ids decode to HF's text; skipped while
 *              goldens.json does not exist yet
 *   round trip decode(encode(text)) == NFC(text) for every case
 *   facts      ids of the Qwen2 chat-template pieces, from the spec
 *   streaming  UTF-8 held back across tokens, U+FFFD where HF's lossy decode puts it
 *   tiny       hand-made tokenizer.json files: "a b" and ["a", "b"] merges, rank order, added
 *              tokens (raw and normalized), ignore_merges; and files that must be refused
 *              (unsupported pipelines, broken entries, JSON with a key twice, text after the
 *              value or a NUL byte, a FIFO)
 *
 * Needs $VL_TOKENIZER_DIR/tokenizer.json (scripts/fetch_tokenizer.sh): missing is a failure. */
#include "loader/loader.h"
#include "vltest.h"
#include "vltest_tok.h"

#include <cJSON.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Whole stream decode: every id through vl_decoder_feed, then flush. malloc'ed; NULL on error. */
static char *decode_all(const vl_tokenizer *t, const int32_t *ids, int n) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap), piece[1024];
    vl_decoder d = {0};
    for (int i = 0; i <= n && s; i++) {
        int k = i < n ? vl_decoder_feed(&d, t, ids[i], piece, sizeof piece)
                      : vl_decoder_flush(&d, piece, sizeof piece);
        if (k < 0 || (size_t)k != strlen(piece)) {
            free(s);
            return NULL;
        }
        if (len + (size_t)k + 1 > cap) {
            char *p = realloc(s, cap = 2 * (len + (size_t)k + 1));
            if (!p) free(s);
            s = p;
            if (!s) return NULL;
        }
        memcpy(s + len, piece, (size_t)k);
        len += (size_t)k;
    }
    if (s) s[len] = '\0';
    return s;
}

/* ---- the real Qwen2 tokenizer ---------------------------------------------------------------- */

static void test_facts(const vl_tokenizer *t) {
    check_ids(t, "You are a helpful assistant.", (int32_t[]){2610, 525, 264, 10950, 17847, 13}, 6);
    check_ids(t, "\n", (int32_t[]){198}, 1);
    check_ids(t, "<|im_start|>system\n", (int32_t[]){151644, 8948, 198}, 3);
    check_ids(t, "user", (int32_t[]){872}, 1);
    check_ids(t, "assistant", (int32_t[]){77091}, 1);
    check_ids(t, "<|im_end|>", (int32_t[]){151645}, 1);
    check_ids(t, "", NULL, 0);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|endoftext|>"), 151643);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|im_start|>"), 151644);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|im_end|>"), 151645);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|vision_start|>"), 151652);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|vision_end|>"), 151653);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|image_pad|>"), 151655);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|video_pad|>"), 151656);
    VT_CHECK_INT(vl_tokenizer_token_id(t, "\n"), -1); /* vocab entries are not looked up */
    VT_CHECK_INT(vl_tokenizer_token_id(t, "<|im_sta"), -1);
    VT_CHECK_INT(vl_tokenizer_vocab_size(t), 151669); /* 151643 vocab + 26 added tokens */
    int len = -1;
    const char *b = vl_tokenizer_token_bytes(t, 198, &len);
    VT_CHECK(b && len == 1 && b[0] == '\n');
    b = vl_tokenizer_token_bytes(t, 525, &len); /* "Ġare": the byte mapping undone */
    VT_CHECK(b && len == 4 && memcmp(b, " are", 4) == 0);
    b = vl_tokenizer_token_bytes(t, 151655, &len);
    VT_CHECK(b && len == 13 && memcmp(b, "<|image_pad|>", 13) == 0);
    VT_CHECK(vl_tokenizer_token_bytes(t, -1, &len) == NULL && len == 0);
    VT_CHECK(vl_tokenizer_token_bytes(t, 151669, &len) == NULL);
    /* U+2EBF0 (CJK Ext. I, Unicode 15.1, unknown to utf8proc 2.8) is a letter to HF, so the
     * contraction after it stands alone */
    int32_t *w, *p, *c;
    int nw, np, nc;
    VT_CHECK(vl_tokenizer_encode(t, "a\xf0\xae\xaf\xb0'm", &w, &nw) == 0);
    VT_CHECK(vl_tokenizer_encode(t, "a\xf0\xae\xaf\xb0", &p, &np) == 0);
    VT_CHECK(vl_tokenizer_encode(t, "'m", &c, &nc) == 0);
    VT_CHECK(nc == 1 && nw == np + 1 && memcmp(w, p, (size_t)np * sizeof *w) == 0 && w[np] == c[0]);
    free(w), free(p), free(c);
    /* invalid UTF-8 is refused, with a message */
    const char *bad[] = {"\xff",         "abc\xc3",          "\xc0\xaf",
                         "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int32_t *ids = NULL;
        int n = -1;
        vl_error_clear();
        VT_CHECK(vl_tokenizer_encode(t, bad[i], &ids, &n) != 0 && ids == NULL && n == 0);
        VT_CHECKF(strstr(vl_error_get(), "UTF-8") != NULL, "message: %s", vl_error_get());
    }
    vl_error_clear();
}

/* Byte-level ids of single bytes, found by scanning token_bytes (not by the byte mapping). */
static int byte_token(const vl_tokenizer *t, unsigned char byte) {
    for (int id = 0; id < vl_tokenizer_vocab_size(t); id++) {
        int len;
        const char *b = vl_tokenizer_token_bytes(t, id, &len);
        if (b && len == 1 && (unsigned char)b[0] == byte) return id;
    }
    return -1;
}

static void test_streaming(const vl_tokenizer *t) {
    char out[64];
    vl_decoder d = {0};
    int e4 = byte_token(t, 0xE4), b8 = byte_token(t, 0xB8), ad = byte_token(t, 0xAD);
    int a = byte_token(t, 'a'), x80 = byte_token(t, 0x80), c0 = byte_token(t, 0xC0);
    VT_CHECK(e4 >= 0 && b8 >= 0 && ad >= 0 && a >= 0 && x80 >= 0 && c0 >= 0);
    /* U+4E2D (E4 B8 AD) one byte per token: held back until whole */
    VT_CHECK_INT(vl_decoder_feed(&d, t, e4, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, b8, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, ad, out, sizeof out), 3);
    VT_CHECK(strcmp(out, "\xe4\xb8\xad") == 0);
    /* an interrupted sequence becomes one U+FFFD, the interrupting byte stays itself */
    vl_decoder_feed(&d, t, e4, out, sizeof out);
    vl_decoder_feed(&d, t, b8, out, sizeof out);
    VT_CHECK_INT(vl_decoder_feed(&d, t, a, out, sizeof out), 4);
    VT_CHECK(strcmp(out, "\xef\xbf\xbd"
                         "a") == 0);
    /* a lone continuation byte and an overlong lead: one U+FFFD per byte */
    VT_CHECK_INT(vl_decoder_feed(&d, t, x80, out, sizeof out), 3);
    VT_CHECK_INT(vl_decoder_feed(&d, t, c0, out, sizeof out), 3);
    /* flush: an incomplete tail is one U+FFFD, then nothing */
    vl_decoder_feed(&d, t, e4, out, sizeof out);
    VT_CHECK_INT(vl_decoder_flush(&d, out, sizeof out), 3);
    VT_CHECK(strcmp(out, "\xef\xbf\xbd") == 0);
    VT_CHECK_INT(vl_decoder_flush(&d, out, sizeof out), 0);
    /* an id past the tokenizer's (a padded vocabulary's) adds nothing, as HF's decode drops
     * it, and held bytes wait across it; a negative id is an error; a buffer too small is an
     * error that leaves the state alone */
    vl_error_clear();
    vl_decoder_feed(&d, t, e4, out, sizeof out);
    VT_CHECK_INT(vl_decoder_feed(&d, t, 151669, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, b8, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, ad, out, sizeof out), 3);
    VT_CHECK(strcmp(out, "\xe4\xb8\xad") == 0);
    VT_CHECK(vl_decoder_feed(&d, t, -1, out, sizeof out) < 0 && vl_error_get()[0]);
    vl_error_clear();
    vl_decoder_feed(&d, t, e4, out, sizeof out);
    VT_CHECK(vl_decoder_feed(&d, t, a, out, 3) < 0); /* needs 4 + NUL */
    VT_CHECK_INT(vl_decoder_feed(&d, t, a, out, sizeof out), 4);
    vl_error_clear();
    /* real text whose characters span tokens: pieces concatenate to the text, and some token
     * produced nothing on its own (its bytes were held back) */
    const char *text = "\xf0\x9f\xab\xa8 \xf0\xa0\x80\x80 shaking";
    int32_t *ids;
    int n;
    VT_CHECK(vl_tokenizer_encode(t, text, &ids, &n) == 0);
    char all[256] = "";
    int held = 0;
    vl_decoder s = {0};
    for (int i = 0; i < n; i++) {
        int k = vl_decoder_feed(&s, t, ids[i], out, sizeof out);
        held += k == 0;
        if (k > 0) strcat(all, out);
    }
    VT_CHECK_INT(vl_decoder_flush(&s, out, sizeof out), 0);
    VT_CHECK(strcmp(all, text) == 0);
    VT_CHECKF(held > 0, "no token of %d was held back", n);
    free(ids);
}

/* skip_special: added tokens marked special vanish from the text (HF decode with
 * skip_special_tokens=True), bytes held before one join those after it, and added tokens not
 * marked special (<tool_call> in Qwen2) stay; without the flag a special token is its content. */
static void test_skip_special(const vl_tokenizer *t) {
    char out[64];
    int im_end = vl_tokenizer_token_id(t, "<|im_end|>"),
        tool = vl_tokenizer_token_id(t, "<tool_call>");
    int e4 = byte_token(t, 0xE4), b8 = byte_token(t, 0xB8), ad = byte_token(t, 0xAD);
    VT_CHECK_INT(im_end, 151645);
    VT_CHECK_INT(tool, 151657);
    VT_CHECK_INT(vl_tokenizer_is_special(t, im_end), 1);
    VT_CHECK_INT(vl_tokenizer_is_special(t, vl_tokenizer_token_id(t, "<|image_pad|>")), 1);
    VT_CHECK_INT(vl_tokenizer_is_special(t, tool), 0);
    VT_CHECK_INT(vl_tokenizer_is_special(t, e4), 0);
    VT_CHECK_INT(vl_tokenizer_is_special(t, -1), 0);
    VT_CHECK_INT(vl_tokenizer_is_special(t, 1 << 30), 0);
    vl_decoder d = {0};
    d.skip_special = 1;
    VT_CHECK_INT(vl_decoder_feed(&d, t, e4, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, im_end, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, b8, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, ad, out, sizeof out), 3);
    VT_CHECK(strcmp(out, "\xe4\xb8\xad") == 0);
    VT_CHECK_INT(vl_decoder_feed(&d, t, tool, out, sizeof out), 11);
    VT_CHECK(strcmp(out, "<tool_call>") == 0);
    vl_decoder keep = {0};
    VT_CHECK_INT(vl_decoder_feed(&keep, t, e4, out, sizeof out), 0);
    VT_CHECK_INT(vl_decoder_feed(&keep, t, im_end, out, sizeof out), 13);
    VT_CHECK(strcmp(out, "\xef\xbf\xbd<|im_end|>") == 0);
}

/* A string field of a fixture entry; "" (and a failed check) when it is missing. */
static const char *field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    VT_CHECKF(cJSON_IsString(v), "fixture entry without a string \"%s\"", key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static char *nfc(const char *s) {
    return (char *)utf8proc_NFC((const utf8proc_uint8_t *)s);
}

/* Every case: round trip, and the goldens when they exist. */
static void test_cases(const vl_tokenizer *t) {
    char *text = NULL, *gtext = NULL;
    size_t len;
    VT_CHECKF(vl_read_file(vt_fixture("tokenizer/cases.json"), 1 << 24, &text, &len) == 0, "%s",
              vl_error_get());
    cJSON *cases = text ? cJSON_Parse(text) : NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(cases, "cases");
    VT_CHECK(cJSON_GetArraySize(list) >= 80);
    int n_cases = 0;
    for (const cJSON *c = list ? list->child : NULL; c; c = c->next, n_cases++) {
        const char *name = field(c, "name"), *s = field(c, "text");
        int32_t *ids = NULL;
        int n = 0;
        VT_CHECKF(vl_tokenizer_encode(t, s, &ids, &n) == 0, "%s: %s", name, vl_error_get());
        char *back = decode_all(t, ids, n), *want = nfc(s);
        VT_CHECKF(back && want && strcmp(back, want) == 0, "%s: decode(encode(text)) != NFC(text)",
                  name);
        free(back), free(want), free(ids);
    }

    const char *gpath = vt_fixture("tokenizer/goldens.json");
    if (!file_exists(gpath)) {
        VT_SKIP("tokenizer/goldens.json not generated yet (tests/reference/"
                "make_tokenizer_goldens.py)");
    } else {
        VT_CHECKF(vl_read_file(gpath, 1 << 26, &gtext, &len) == 0, "%s", vl_error_get());
        cJSON *g = gtext ? cJSON_Parse(gtext) : NULL;
        const cJSON *gl = cJSON_GetObjectItemCaseSensitive(g, "cases");
        VT_CHECKF(cJSON_GetArraySize(gl) == n_cases,
                  "goldens.json has %d cases, cases.json %d: "
                  "regenerate the goldens",
                  cJSON_GetArraySize(gl), n_cases);
        int agree = 0, total = 0;
        const cJSON *c = list ? list->child : NULL;
        for (const cJSON *e = gl ? gl->child : NULL; e && c; e = e->next, c = c->next, total++) {
            const char *name = field(e, "name"), *s = field(e, "text");
            const cJSON *gids = cJSON_GetObjectItemCaseSensitive(e, "ids");
            const char *gdec = field(e, "decoded");
            VT_CHECKF(strcmp(s, field(c, "text")) == 0,
                      "%s: text differs from cases.json: regenerate the goldens", name);
            int ng = cJSON_GetArraySize(gids);
            int32_t *want = malloc((size_t)(ng + 1) * sizeof *want);
            int k = 0;
            for (const cJSON *v = gids ? gids->child : NULL; v; v = v->next)
                want[k++] = (int32_t)v->valueint;
            int32_t *ids = NULL;
            int n = 0;
            vl_tokenizer_encode(t, s, &ids, &n);
            int same = n == ng && (n == 0 || memcmp(ids, want, (size_t)n * sizeof *ids) == 0);
            VT_CHECKF(same, "%s: ids differ from HF tokenizers", name);
            if (!same) print_ids("got", ids, n), print_ids("want", want, ng);
            char *back = decode_all(t, want, ng);
            VT_CHECKF(back && strcmp(back, gdec) == 0, "%s: decode of the golden ids differs",
                      name);
            agree += same;
            free(back), free(want), free(ids);
        }
        fprintf(stderr, "goldens: %d of %d cases give HF's ids\n", agree, total);
        cJSON_Delete(g);
    }
    cJSON_Delete(cases);
    free(text), free(gtext);
}

static void test_speed(const vl_tokenizer *t) {
    const char *para = "The quick brown fox jumps over the lazy dog 1234 times; "
                       "\xe7\xb6\x9a\xe3\x81\x8d\xe3\x82\x92\xe3\x80\x81 "
                       "def f(x):\n    return x ** 2\n\n";
    size_t plen = strlen(para), total = 0;
    char *big = malloc(12001 + plen), *word = malloc(20001);
    while (total < 12000) memcpy(big + total, para, plen), total += plen;
    big[total] = '\0';
    memset(word, 'z', 20000), word[20000] = '\0';
    int32_t *ids;
    int n;
    double t0 = now_s();
    VT_CHECK(vl_tokenizer_encode(t, big, &ids, &n) == 0 && n > 1000);
    double t1 = now_s();
    free(ids);
    VT_CHECK(vl_tokenizer_encode(t, word, &ids, &n) == 0 && n > 1);
    double t2 = now_s();
    free(ids);
    fprintf(stderr, "encode: %zu bytes of text %.1f ms, one 20000-byte word %.1f ms\n", total,
            1e3 * (t1 - t0), 1e3 * (t2 - t1));
    free(big), free(word);
}

/* ---- hand-made tokenizer.json files -------------------------------------------------------- */

static void test_tiny(const char *dir) {
    const char *added = "[{\"id\": 300, \"content\": \"<x>\", \"single_word\": false, \"lstrip\": "
                        "false, \"rstrip\": false, \"normalized\": false, \"special\": true}, "
                        "{\"id\": 301, \"content\": \"\\u00c5\", \"single_word\": false, "
                        "\"lstrip\": false, \"rstrip\": false, \"normalized\": true, "
                        "\"special\": false}]";
    /* "a b" spelling, ranks: a b 0, Ġ a 1, Ġa b 2, a a 3, b c 4 ("#version" is not a merge) */
    tiny_opts o = {.merges = LEGACY_MERGES, .drop_byte = -1, .added = added};
    vl_tokenizer *t = load_tiny(dir, "legacy", &o);
    if (t) {
        check_ids(t, "abc", (int32_t[]){256, 'c'}, 2);
        check_ids(t, "aaa", (int32_t[]){259, 'a'}, 2); /* leftmost first */
        check_ids(t, "aaaa", (int32_t[]){259, 259}, 2);
        check_ids(t, " ab", (int32_t[]){' ', 256}, 2); /* rank 0 beats the leftmost pair */
        /* raw added token on the raw text; the normalized one after NFC: A + U+030A -> U+00C5 */
        check_ids(t, "a<x>A\xcc\x8a<x", (int32_t[]){'a', 300, 301, '<', 'x'}, 5);
        VT_CHECK_INT(vl_tokenizer_vocab_size(t), 302);
        VT_CHECK_INT(vl_tokenizer_token_id(t, "<x>"), 300);
        VT_CHECK_INT(vl_tokenizer_token_id(t, "\xc3\x85"), 301);
        int len;
        const char *b = vl_tokenizer_token_bytes(t, 257, &len);
        VT_CHECK(b && len == 2 && memcmp(b, " a", 2) == 0);
        VT_CHECK(vl_tokenizer_token_bytes(t, 299, &len) == NULL); /* a gap in the ids */
        vl_tokenizer_free(t);
    }
    /* ["a", "b"] spelling with the opposite order of the two first merges */
    o = (tiny_opts){.merges = "[[\"b\", \"c\"], [\"a\", \"b\"]]", .drop_byte = -1};
    t = load_tiny(dir, "pairs", &o);
    if (t) check_ids(t, "abc", (int32_t[]){'a', 260}, 2);
    vl_tokenizer_free(t);
    /* ignore_merges: a word that is a vocab entry is taken whole */
    o = (tiny_opts){
        .merges = LEGACY_MERGES, .drop_byte = -1, .model_extra = "\"ignore_merges\": true, "};
    t = load_tiny(dir, "ignore_merges", &o);
    if (t) check_ids(t, " ab abc", (int32_t[]){258, ' ', 256, 'c'}, 4);
    vl_tokenizer_free(t);
}

/* The file is `raw_len` bytes of raw if raw is not NULL, else write_tiny's with options o. */
static void expect_refused_n(const char *dir, const char *name, const tiny_opts *o, const char *raw,
                             size_t raw_len, const char *why) {
    char path[4096];
    if (raw) {
        FILE *f = create(dir, name, path, sizeof path);
        VT_CHECK(f && fwrite(raw, 1, raw_len, f) == raw_len);
        VT_CHECK(f && fclose(f) == 0);
    } else
        VT_CHECK(write_tiny(dir, name, o, path, sizeof path) == 0);
    vl_tokenizer *t = (vl_tokenizer *)&t; /* must come back NULL */
    vl_error_clear();
    int rc = vl_tokenizer_load(&t, path);
    VT_CHECKF(rc != 0 && t == NULL, "%s was accepted", name);
    VT_CHECKF(strstr(vl_error_get(), path) != NULL, "%s: the message does not name the file: %s",
              name, vl_error_get());
    VT_CHECKF(strstr(vl_error_get(), why) != NULL, "%s: expected a message about \"%s\", got: %s",
              name, why, vl_error_get());
    if (rc == 0) vl_tokenizer_free(t);
}

static void expect_refused(const char *dir, const char *name, const tiny_opts *o, const char *raw,
                           const char *why) {
    expect_refused_n(dir, name, o, raw, raw ? strlen(raw) : 0, why);
}

static void test_refusals(const char *dir) {
    tiny_opts o = {.merges = LEGACY_MERGES, .drop_byte = -1};
#define REFUSE(name, why, ...)                                                                     \
    do {                                                                                           \
        tiny_opts v = o;                                                                           \
        __VA_ARGS__;                                                                               \
        expect_refused(dir, name, &v, NULL, why);                                                  \
    } while (0)
    REFUSE("zero_merges", "merges is empty", v.merges = "[]");
    REFUSE("only_version_line", "merges is empty", v.merges = "[\"#version: 0.2\"]");
    REFUSE("no_merges", "merges is missing", v.merges = NULL);
    REFUSE("merges_object", "merges is not an array", v.merges = "{\"a\": \"b\"}");
    REFUSE("merges_numbers", "merges[0] is malformed", v.merges = "[1, 2]");
    REFUSE("merge_no_space", "merges[1] is malformed", v.merges = "[\"a b\", \"ab\"]");
    REFUSE("merge_two_spaces", "merges[0] is malformed", v.merges = "[\"a  b\"]");
    REFUSE("merge_one_element", "merges[0] is malformed", v.merges = "[[\"a\"]]");
    REFUSE("merge_three_elements", "merges[0] is malformed", v.merges = "[[\"a\", \"b\", \"c\"]]");
    REFUSE("merge_unknown_token", "missing from model.vocab", v.merges = "[\"a z\"]");
    REFUSE("no_vocab", "vocab is missing", v.no_vocab = 1);
    REFUSE("vocab_fraction", "not an integer id", v.vocab_extra = ", \"qq\": 1.5");
    REFUSE("vocab_negative", "not an integer id", v.vocab_extra = ", \"qq\": -1");
    REFUSE("vocab_string_id", "not an integer id", v.vocab_extra = ", \"qq\": \"7\"");
    REFUSE("vocab_duplicate_id", "gives id 5 to two tokens", v.vocab_extra = ", \"qq\": 5");
    REFUSE("missing_byte_symbol", "byte symbol", v.drop_byte = '~');
    REFUSE("wordpiece", "expected \"BPE\"", v.model_type = "\"WordPiece\"");
    REFUSE("nfkc", "normalizer", v.normalizer = "{\"type\": \"NFKC\"}");
    REFUSE("gpt2_pattern", "pre_tokenizer", v.pattern = "'s|'t| ?\\\\p{L}+|\\\\s+");
    REFUSE("subword_prefix", "continuing_subword_prefix",
           v.model_extra = "\"continuing_subword_prefix\": \"##\", ");
    REFUSE("lstrip", "lstrip",
           v.added = "[{\"id\": 300, \"content\": \"<x>\", \"lstrip\": true, \"special\": true}]");
    REFUSE("added_no_content", "added_tokens[0]", v.added = "[{\"id\": 300}]");
    REFUSE("added_duplicate", "share an id",
           v.added = "[{\"id\": 300, \"content\": \"<x>\"}, {\"id\": 300, \"content\": \"<y>\"}]");
    /* strict JSON (vl_json_parse): a key twice in one object, anywhere */
    REFUSE("vocab_key_twice", "\"ab\" twice in one object", v.vocab_extra = ", \"ab\": 261");
    REFUSE("model_key_twice", "\"dropout\" twice in one object",
           v.model_extra = "\"dropout\": null, ");
#undef REFUSE
    /* files that are not a whole tokenizer.json */
    char path[4096];
    snprintf(path, sizeof path, "%s/legacy.json", dir);
    char *full = NULL;
    size_t len = 0;
    VT_CHECK(vl_read_file(path, 1 << 20, &full, &len) == 0);
    if (full) {
        /* more text after the JSON value; a NUL byte (in the white space after it, and inside) */
        char *more = malloc(len + 16);
        memcpy(more, full, len);
        memcpy(more + len, " {}\n", 4);
        expect_refused_n(dir, "trailing_text", NULL, more, len + 4, "after the JSON value");
        memcpy(more + len, "\n\0\n", 3);
        expect_refused_n(dir, "trailing_nul", NULL, more, len + 3, "NUL byte");
        memcpy(more, full, len);
        more[len / 3] = '\0';
        expect_refused_n(dir, "inner_nul", NULL, more, len, "NUL byte");
        free(more);
        full[len / 2] = '\0';
        expect_refused(dir, "truncated", NULL, full, "not valid JSON");
    }
    free(full);
    expect_refused(dir, "empty_object", NULL, "{}", "pre_tokenizer");
    expect_refused(dir, "empty_file", NULL, "", "not valid JSON");
    vl_tokenizer *t = NULL;
    snprintf(path, sizeof path, "%s/does_not_exist.json", dir);
    vl_error_clear();
    VT_CHECK(vl_tokenizer_load(&t, path) != 0 && t == NULL && strstr(vl_error_get(), path));
    vl_error_clear();
    VT_CHECK(vl_tokenizer_load(&t, dir) != 0 && t == NULL && strstr(vl_error_get(), dir));
    /* a FIFO with no writer: refused at once; a load that blocked would end here by SIGALRM */
    snprintf(path, sizeof path, "%s/fifo.json", dir);
    VT_CHECKF(mkfifo(path, 0600) == 0, "mkfifo %s", path);
    if (n_made < 64) snprintf(made[n_made++], sizeof made[0], "%s", path);
    alarm(120);
    vl_error_clear();
    VT_CHECK(vl_tokenizer_load(&t, path) != 0 && t == NULL);
    alarm(0);
    VT_CHECKF(strstr(vl_error_get(), path) && strstr(vl_error_get(), "FIFO"), "message: %s",
              vl_error_get());
    vl_error_clear();
}

int main(void) {
    char dir[1024];
    if (make_temp_dir(dir, sizeof dir) == 0) {
        test_tiny(dir);
        test_refusals(dir);
        remove_dir(dir);
    } else
        VT_CHECKF(0, "cannot create a temporary folder %s", dir);

    const char *root = getenv("VL_TOKENIZER_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", root ? root : ".cache/tokenizer");
    vl_tokenizer *t = NULL;
    double t0 = now_s();
    int rc = vl_tokenizer_load(&t, path);
    VT_CHECKF(rc == 0, "%s (fetch it with scripts/fetch_tokenizer.sh)", vl_error_get());
    if (rc == 0) {
        fprintf(stderr, "loaded %s in %.0f ms\n", path, 1e3 * (now_s() - t0));
        test_facts(t);
        test_streaming(t);
        test_skip_special(t);
        test_cases(t);
        test_speed(t);
    }
    vl_tokenizer_free(t);
    return vt_finish();
}
