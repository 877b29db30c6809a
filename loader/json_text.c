/* json_text.c: generated text as a JSON string literal that neither cuts nor corrupts it.
 *
 * cJSON keeps strings as C strings, so a NUL byte in the text (a model may generate the byte
 * token 0x00) would end the "text" field there; and cJSON copies invalid UTF-8 through, which
 * makes the output invalid JSON. Here the text is escaped from (bytes, length): NUL and the
 * other control characters become \u00XX, and invalid UTF-8 becomes U+FFFD exactly where
 * Python's bytes.decode("utf-8", errors="replace") puts it (transformers decodes so): one per
 * maximal invalid subpart, one for a sequence cut short by the end. The result goes into the
 * report with cJSON_CreateRaw. It sits in loader/ (the lowest library) so that the command
 * line and the server (server/) both use it. */
#include "loader/loader.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Append one byte-sequence to out (room is ensured by the caller's worst-case size). */
static size_t put(char *out, size_t o, const char *s, size_t n) {
    memcpy(out + o, s, n);
    return o + n;
}

/* The escape of one ASCII byte, or NULL when it is written as is. */
static const char *ascii_escape(unsigned char c, char buf[8]) {
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        if (c >= 0x20) return NULL;
        snprintf(buf, 8, "\\u%04x", c);
        return buf;
    }
}

char *vl_json_string(const char *s, size_t n) {
    /* worst case: every byte a control character (6 bytes) or a U+FFFD (3 bytes), + quotes */
    if (n > (SIZE_MAX - 3) / 6) return NULL;
    char *out = malloc(6 * n + 3);
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t o = put(out, 0, "\"", 1);
    for (size_t i = 0; i < n;) {
        char buf[8];
        if (u[i] < 0x80) {
            const char *e = ascii_escape(u[i], buf);
            o = e ? put(out, o, e, strlen(e)) : put(out, o, s + i, 1);
            i++;
            continue;
        }
        int r = vl_utf8_next(u + i, n - i);
        if (r > 0) {
            o = put(out, o, s + i, (size_t)r);
            i += (size_t)r;
        } else { /* invalid subpart (-r bytes), or cut short by the end (the rest) */
            o = put(out, o, "\xEF\xBF\xBD", 3);
            i = r < 0 ? i + (size_t)-r : n;
        }
    }
    o = put(out, o, "\"", 1);
    out[o] = '\0';
    return out;
}
