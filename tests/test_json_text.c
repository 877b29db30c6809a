/* test_json_text.c: the generated text in the JSON report (loader/json_text.c, engine/answer.c).
 *
 *   escape   vl_json_string against what Python gives for the same bytes:
 *            json.dumps(b.decode("utf-8", errors="replace"), ensure_ascii=False) (the expected
 *            literals below were printed by Python 3.11): NUL and controls as \u00XX, quotes
 *            and backslashes escaped, one U+FFFD per maximal invalid subpart, one for a
 *            sequence cut by the end; no NUL cuts the literal short
 *   tokens   the small tokenizer's byte tokens (0x00, a character split over three tokens with
 *            <|im_end|> between two of them, 0xFF, a dangling lead byte) through vl_answer
 *            with keep_after_eos (--ignore-eos): the special token is skipped and the bytes
 *            around it join, as tokenizers' decode(skip_special_tokens=True) gives, and the
 *            literal is Python's for those bytes
 *   answer   without keep_after_eos the text ends at the first end-of-turn token
 *
 * Needs $VL_TOKENIZER_DIR/small_tokenizer.json and tests/fixtures/models/tiny-a/config.json. */
#include "cli/cli.h"
#include "vltest.h"

static void check_literal(const char *bytes, size_t n, const char *want) {
    char *got = vl_json_string(bytes, n);
    VT_CHECKF(got && strcmp(got, want) == 0, "literal of %zu bytes: got [%s] want [%s]", n,
              got ? got : "(null)", want);
    free(got);
}

#define LIT(b, want) check_literal(b, sizeof(b) - 1, want)
#define FFFD         "\xef\xbf\xbd"

static void test_escape(void) {
    LIT("a\"b\\c", "\"a\\\"b\\\\c\"");
    LIT("\x00\x01\x1f\x7f", "\"\\u0000\\u0001\\u001f\x7f\"");
    LIT("\b\f\n\r\t", "\"\\b\\f\\n\\r\\t\"");
    LIT("\xc0\x80", "\"" FFFD FFFD "\"");          /* overlong: each byte */
    LIT("\xed\xa0\x80", "\"" FFFD FFFD FFFD "\""); /* a surrogate: each byte */
    LIT("\xe4\xb8", "\"" FFFD "\"");               /* cut short by the end: one */
    LIT("\xe4\xb8"
        "A",
        "\"" FFFD "A\"");                                   /* interrupted: one, then the byte */
    LIT("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");        /* valid 4-byte: as is */
    LIT("\xf4\x90\x80\x80", "\"" FFFD FFFD FFFD FFFD "\""); /* above U+10FFFF */
    LIT("\xff", "\"" FFFD "\"");
    LIT("\xf0\x9f\x98", "\"" FFFD "\"");
    LIT("", "\"\"");
}

/* Byte-level id of one byte, found by scanning token_bytes. */
static int byte_token(const vl_tokenizer *t, unsigned char byte) {
    for (int id = 0; id < vl_tokenizer_vocab_size(t); id++) {
        int len;
        const char *b = vl_tokenizer_token_bytes(t, id, &len);
        if (b && len == 1 && (unsigned char)b[0] == byte) return id;
    }
    return -1;
}

static void test_tokens(vl_model *m) {
    const vl_tokenizer *t = m->tok;
    int im_end = vl_tokenizer_token_id(t, "<|im_end|>");
    int ids[] = {
        byte_token(t, 'R'),  byte_token(t, 0x00), byte_token(t, 0xE4), byte_token(t, 0xB8), im_end,
        byte_token(t, 0xAD), byte_token(t, 0xFF), byte_token(t, 0xE4)};
    VT_CHECK_INT(ids[1], 188); /* Qwen2's byte-level symbol of 0x00 */
    VT_CHECK_INT(im_end, 4066);
    vl_answer a;
    vl_answer_init(&a, m, 1, NULL, NULL); /* --ignore-eos: the text goes on after <|im_end|> */
    for (int i = 0; i < 8; i++) VT_CHECK_INT(vl_answer_add(&a, ids[i]), 0);
    VT_CHECK_INT(vl_answer_finish(&a), 0);
    VT_CHECK_INT(a.eos_at, 4);
    const char want[] = "R\0\xe4\xb8\xad" FFFD FFFD;
    VT_CHECK(a.len == sizeof want - 1 && memcmp(a.text, want, a.len) == 0);
    char *lit = vl_json_string(a.text, a.len);
    VT_CHECKF(lit && strcmp(lit, "\"R\\u0000\xe4\xb8\xad" FFFD FFFD "\"") == 0, "[%s]",
              lit ? lit : "(null)");
    free(lit);
    vl_answer_free(&a);

    /* without keep_after_eos: the held E4 B8 becomes one U+FFFD at the end of turn */
    vl_answer_init(&a, m, 0, NULL, NULL);
    for (int i = 0; i < 8; i++) VT_CHECK_INT(vl_answer_add(&a, ids[i]), 0);
    VT_CHECK_INT(vl_answer_finish(&a), 0);
    const char cut[] = "R\0" FFFD;
    VT_CHECK(a.len == sizeof cut - 1 && memcmp(a.text, cut, a.len) == 0);
    VT_CHECK_INT(a.n_tokens, 8);
    vl_answer_free(&a);

    /* nothing generated: "" (not NULL) */
    vl_answer_init(&a, m, 0, NULL, NULL);
    VT_CHECK_INT(vl_answer_finish(&a), 0);
    VT_CHECK(a.text && a.len == 0 && a.text[0] == 0);
    vl_answer_free(&a);
}

int main(void) {
    test_escape();
    const char *dir = getenv("VL_TOKENIZER_DIR"), *fix = getenv("VL_FIXTURES");
    char tok[4096], cfg[4096];
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", dir ? dir : ".cache/tokenizer");
    snprintf(cfg, sizeof cfg, "%s/models/tiny-a/config.json", fix ? fix : "tests/fixtures");
    vl_model m;
    memset(&m, 0, sizeof m);
    int rc = vl_tokenizer_load(&m.tok, tok) || vl_config_load(&m.cfg, cfg);
    VT_CHECKF(rc == 0, "%s", vl_error_get());
    if (rc == 0) test_tokens(&m);
    vl_tokenizer_free(m.tok);
    return vt_finish();
}
