/* pretokenize.c: the text side of the Qwen2 tokenizer: UTF-8 validation, NFC (utf8proc) and the
 * Qwen2 split pattern, written out by hand as a scanner over code points.
 *
 * NFC is utf8proc's decomposition and composition around a canonical ordering of our own
 * (utf8proc's takes quadratic time on a long run of combining marks).
 *
 * Why by hand: the pattern is fixed, a regex engine would be a dependency for one expression,
 * and each alternative's backtracking is short enough to spell out (see split_at). Character
 * classes come from utf8proc, the same tables as NFC: \p{L} = Lu Ll Lt Lm Lo, \p{N} = Nd Nl No,
 * \s = the Unicode White_Space property (what Oniguruma, used by HF tokenizers, means by \s),
 * plus the letters and numbers of Unicode 15.1/16.0 that utf8proc 2.8 lacks (newer[] below).
 * Leaves out: any other pattern (tokenizer.c refuses tokenizer.json files with another one). */
#include "loader/pretokenize.h"
#include "loader/loader.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

const char vl_qwen2_split_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- UTF-8 --------------------------------------------------------------------------------- */

int vl_utf8_next(const unsigned char *s, size_t n) {
    unsigned b = s[0];
    if (b < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte (Unicode table 3-7) */
    if (b >= 0xC2 && b <= 0xDF)
        len = 2;
    else if (b == 0xE0)
        len = 3, lo = 0xA0;
    else if (b == 0xED)
        len = 3, hi = 0x9F; /* no surrogates */
    else if (b >= 0xE1 && b <= 0xEF)
        len = 3;
    else if (b == 0xF0)
        len = 4, lo = 0x90;
    else if (b == 0xF4)
        len = 4, hi = 0x8F; /* nothing above U+10FFFF */
    else if (b >= 0xF1 && b <= 0xF3)
        len = 4;
    else
        return -1;
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) return 0;
        unsigned c = s[k];
        if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return -k;
    }
    return len;
}

size_t vl_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int r = vl_utf8_next(u + i, n - i);
        if (r <= 0) return i;
        i += (size_t)r;
    }
    return n;
}

/* Decode one code point of valid UTF-8; returns its length. */
static int utf8_decode(const unsigned char *s, uint32_t *cp) {
    if (s[0] < 0x80) return *cp = s[0], 1;
    if (s[0] < 0xE0) return *cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F), 2;
    if (s[0] < 0xF0)
        return *cp =
                   ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F),
               3;
    *cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

/* ---- NFC ----------------------------------------------------------------------------------- */

/* Stable sort of cp[0..n) by canonical combining class (all > 0): insertion sort for short runs,
 * counting sort (into tmp, n entries) for long ones; both give the same order. */
static void sort_marks(utf8proc_int32_t *cp, size_t n, utf8proc_int32_t *tmp) {
    if (n <= 32) {
        for (size_t i = 1; i < n; i++) {
            utf8proc_int32_t c = cp[i];
            uint8_t k = (uint8_t)utf8proc_get_property(c)->combining_class;
            size_t j = i;
            for (; j > 0 && utf8proc_get_property(cp[j - 1])->combining_class > k; j--)
                cp[j] = cp[j - 1];
            cp[j] = c;
        }
        return;
    }
    size_t start[257] = {0};
    for (size_t i = 0; i < n; i++) start[utf8proc_get_property(cp[i])->combining_class + 1]++;
    for (int k = 1; k < 257; k++) start[k] += start[k - 1];
    for (size_t i = 0; i < n; i++)
        tmp[start[utf8proc_get_property(cp[i])->combining_class]++] = cp[i];
    memcpy(cp, tmp, n * sizeof *cp);
}

/* Canonical ordering: every maximal run of non-starters sorted by combining class. utf8proc_map
 * does this by swapping neighbours one step at a time, quadratic in the run's length (100 KB of
 * alternating U+0301 U+0316: 8 s), hence this pass and utf8proc's parts around it. */
static int order_marks(utf8proc_int32_t *cp, size_t n) {
    utf8proc_int32_t *tmp = NULL;
    for (size_t i = 0; i < n;) {
        if (utf8proc_get_property(cp[i])->combining_class == 0) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n && utf8proc_get_property(cp[j])->combining_class != 0) j++;
        if (j - i > 32 && !tmp && !(tmp = malloc(n * sizeof *tmp)))
            return vl_error_set("out of memory normalizing %zu characters of text", n);
        sort_marks(cp + i, j - i, tmp);
        i = j;
    }
    free(tmp);
    return 0;
}

/* What utf8proc_map(s, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE) gives, with a linear-time
 * canonical ordering: canonical decomposition one code point at a time, ordering,
 * composition and re-encoding (in place, into the same buffer). */
static int nfc_general(const char *s, size_t n, char **out, size_t *out_n) {
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    size_t cap = n + 64, len = 0;
    utf8proc_int32_t *cp = malloc(cap * sizeof *cp);
    int bound = UTF8PROC_BOUNDCLASS_START;
    for (size_t i = 0; cp && i < n;) {
        if (cap - len < 32) { /* a canonical decomposition is 4 code points at most */
            utf8proc_int32_t *p = realloc(cp, (cap *= 2) * sizeof *cp);
            if (!p) free(cp);
            cp = p;
            if (!cp) break;
        }
        utf8proc_int32_t c;
        i += (size_t)utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i),
                                      &c);
        utf8proc_ssize_t r =
            utf8proc_decompose_char(c, cp + len, (utf8proc_ssize_t)(cap - len), opt, &bound);
        if (r < 0 || (size_t)r >= cap - len) {
            free(cp);
            return vl_error_set("NFC normalization of the text failed: %s",
                                r < 0 ? utf8proc_errmsg(r) : "decomposition too long");
        }
        len += (size_t)r;
    }
    if (!cp) return vl_error_set("out of memory normalizing %zu bytes of text", n);
    if (order_marks(cp, len) != 0) {
        free(cp);
        return -1;
    }
    /* UTF-8 takes at most 4 bytes per code point, and cap > len leaves room for the NUL */
    utf8proc_ssize_t r = utf8proc_reencode(cp, (utf8proc_ssize_t)len, opt);
    if (r < 0) {
        free(cp);
        return vl_error_set("NFC normalization of the text failed: %s", utf8proc_errmsg(r));
    }
    *out = (char *)cp;
    *out_n = (size_t)r;
    return 0;
}

int vl_nfc(const char *s, size_t n, char **out, size_t *out_n) {
    *out = NULL;
    *out_n = 0;
    size_t i = 0;
    while (i < n && (unsigned char)s[i] < 0x80) i++;
    if (i == n) { /* ASCII is already NFC: skip the decompose/recompose round trip */
        char *copy = malloc(n + 1);
        if (!copy) return vl_error_set("out of memory normalizing %zu bytes of text", n);
        memcpy(copy, s, n);
        copy[n] = '\0';
        *out = copy;
        *out_n = n;
        return 0;
    }
    if (n > (size_t)PTRDIFF_MAX / 16)
        return vl_error_set("text of %zu bytes is too long to normalize", n);
    return nfc_general(s, n, out, out_n);
}

/* ---- the split pattern --------------------------------------------------------------------- */

enum { C_L = 1, C_N = 2, C_S = 4, C_NL = 8 }; /* letter, number, White_Space, \r or \n */

static int is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* Letters and numbers that HF tokenizers 0.23 (Oniguruma, Unicode 16.0) knows but utf8proc 2.8
 * (Unicode 15.0) leaves unassigned: without them a word like "a\U0002EBF0's" splits elsewhere
 * and gets other ids. Consulted only for code points utf8proc calls unassigned, so a newer
 * utf8proc that has them agrees. Found by classifying all 0x110000 code points with HF's Split
 * and with this file: these were the only differences (letter and contraction rules agree
 * everywhere else, white space included). */
/* clang-format off */
static const struct {
    uint32_t lo, hi;
    uint8_t cls;
} newer[] = { /* one script per line */
    {0x1C89, 0x1C8A, C_L}, {0xA7CB, 0xA7CD, C_L}, {0xA7DA, 0xA7DC, C_L},      /* Cyrillic, Latin */
    {0x105C0, 0x105F3, C_L},                                                   /* Todhri */
    {0x10D40, 0x10D49, C_N}, {0x10D4A, 0x10D65, C_L}, {0x10D6F, 0x10D85, C_L}, /* Garay */
    {0x10EC2, 0x10EC4, C_L},                                                   /* Arabic Ext-C */
    {0x11380, 0x11389, C_L}, {0x1138B, 0x1138B, C_L}, {0x1138E, 0x1138E, C_L}, /* Tulu-Tigalari */
    {0x11390, 0x113B5, C_L}, {0x113B7, 0x113B7, C_L}, {0x113D1, 0x113D1, C_L},
    {0x113D3, 0x113D3, C_L},
    {0x116D0, 0x116E3, C_N},                                                   /* Myanmar Ext-C */
    {0x11BC0, 0x11BE0, C_L}, {0x11BF0, 0x11BF9, C_N},                          /* Sunuwar */
    {0x13460, 0x143FA, C_L},                                                   /* Egyptian Ext-A */
    {0x16100, 0x1611D, C_L}, {0x16130, 0x16139, C_N},                          /* Gurung Khema */
    {0x16D40, 0x16D6C, C_L}, {0x16D70, 0x16D79, C_N},                          /* Kirat Rai */
    {0x18CFF, 0x18CFF, C_L},                                                   /* Khitan */
    {0x1CCF0, 0x1CCF9, C_N},                                                   /* outlined digits */
    {0x1E5D0, 0x1E5ED, C_L}, {0x1E5F0, 0x1E5F0, C_L}, {0x1E5F1, 0x1E5FA, C_N}, /* Ol Onal */
    {0x2EBF0, 0x2EE5D, C_L},                                        /* CJK Ext. I (Unicode 15.1) */
};
/* clang-format on */

static uint8_t newer_class(uint32_t c) {
    for (size_t i = 0; i < sizeof newer / sizeof *newer; i++)
        if (c >= newer[i].lo && c <= newer[i].hi) return newer[i].cls;
    return 0;
}

static uint8_t char_class(uint32_t c) {
    if (c < 0x80) { /* the common case, without the table lookup */
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return C_L;
        if (c >= '0' && c <= '9') return C_N;
        if (c == '\r' || c == '\n') return C_S | C_NL;
        return is_white_space(c) ? C_S : 0;
    }
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return C_L;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return C_N;
    case UTF8PROC_CATEGORY_CN:
        return newer_class(c);
    default:
        return is_white_space(c) ? C_S : 0;
    }
}

/* Case-insensitive letter of the contractions: ASCII, plus U+017F LATIN SMALL LETTER LONG S,
 * whose simple case folding is 's' (Oniguruma's (?i) uses Unicode case folding; no other code
 * point folds to one of s t r e v m l d). */
static uint32_t fold(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    return c;
}

#define OTHER(k) (((k) & (C_L | C_N | C_S)) == 0) /* [^\s\p{L}\p{N}] */

/* Length in code points of the match at i (always >= 1: every code point is a letter, a number,
 * white space or none of those, and one alternative takes each). Alternatives are tried in
 * order, as the leftmost-first regex does. */
static size_t split_at(const uint32_t *cp, const uint8_t *cl, size_t i, size_t n) {
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d) */
    if (cp[i] == '\'' && i + 1 < n) {
        uint32_t a = fold(cp[i + 1]), b = i + 2 < n ? fold(cp[i + 2]) : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' || a == 'v') && b == 'e') return 3;
        if (a == 'l' && b == 'l') return 3;
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ : an optional lead that is neither letter, number nor newline,
     * then the longest run of letters; if the lead is not followed by a letter the optional
     * part backs off and \p{L}+ must start at i, which then fails. */
    {
        size_t j = i;
        if (!(cl[j] & (C_L | C_N | C_NL))) j++;
        if (j < n && (cl[j] & C_L)) {
            while (j < n && (cl[j] & C_L)) j++;
            return j - i;
        }
    }
    /* \p{N} : one digit at a time */
    if (cl[i] & C_N) return 1;
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' : the space is taken only if a non-space symbol follows */
    {
        size_t j = i;
        if (cp[j] == ' ' && j + 1 < n && OTHER(cl[j + 1])) j++;
        if (OTHER(cl[j])) {
            while (j < n && OTHER(cl[j])) j++;
            while (j < n && (cl[j] & C_NL)) j++;
            return j - i;
        }
    }
    /* Only white space is left at i. Let [i, e) be its whole run. */
    size_t e = i;
    while (e < n && (cl[e] & C_S)) e++;
    /* \s*[\r\n]+ : \s* backs off from e until a newline follows it, so the match ends just
     * after the last \r or \n of the run (the one after it is not a newline). */
    for (size_t k = e; k > i; k--)
        if (cl[k - 1] & C_NL) return k - i;
    /* \s+(?!\S) : the whole run at the end of the text; otherwise the run minus its last
     * character, which is left to lead the next word. */
    if (e == n) return e - i;
    if (e - i > 1) return e - 1 - i;
    /* \s+ */
    return e - i;
}

int vl_pretokenize_qwen2(const char *s, size_t n, vl_piece_fn piece, void *ctx) {
    if (n == 0) return 0;
    /* byte offsets are 32-bit; this also keeps the size below from overflowing */
    if (n >= UINT32_MAX)
        return vl_error_set("text of %zu bytes is too long to tokenize (4 GiB at most)", n);
    /* n bytes hold at most n code points; one allocation for code points, offsets, classes */
    uint32_t *cp = malloc(((size_t)n + 1) * (2 * sizeof(uint32_t) + 1));
    if (!cp) return vl_error_set("out of memory splitting %zu bytes of text", n);
    uint32_t *off = cp + (n + 1);
    uint8_t *cl = (uint8_t *)(off + (n + 1));
    const unsigned char *u = (const unsigned char *)s;
    size_t m = 0;
    for (size_t b = 0; b < n; m++) {
        off[m] = (uint32_t)b;
        b += (size_t)utf8_decode(u + b, &cp[m]);
        cl[m] = char_class(cp[m]);
    }
    off[m] = (uint32_t)n;
    int rc = 0;
    for (size_t i = 0; i < m && rc == 0;) {
        size_t len = split_at(cp, cl, i, m);
        rc = piece(ctx, s + off[i], off[i + len] - off[i]);
        i += len;
    }
    free(cp);
    return rc;
}
