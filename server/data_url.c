/* data_url.c: an image sent inline as a data: URL (RFC 2397), as OpenAI's clients send a local
 * file: "data:[<media type>][;params];base64,<data>". Only base64 is taken (an image in
 * percent-encoding is not something clients send). The media type is not trusted: the engine's
 * decoders sniff the bytes, so "base64 that is not an image" is refused there. */
#include "server/server_impl.h"

#include <stdlib.h>
#include <strings.h>

/* The 6-bit value of a base64 character (standard or URL-safe alphabet), -1 when none. */
static int b64_value(unsigned char ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

/* Decode s[0, n) into out (room for n / 4 * 3 + 3 bytes); whitespace is skipped, '=' may only
 * pad the end. Returns the length, or -1 when it is not base64. */
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    long o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t') continue;
        if (ch == '=') {
            pad++;
            continue;
        }
        int v = b64_value(ch);
        if (v < 0 || pad) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* leftover bits: 0 (whole quads), 2 (one byte in the last quad) or 4 (two); 6 is a cut */
    if (bits == 6 || pad > 2) return -1;
    return o;
}

int vl_data_url_decode(const char *url, size_t max_bytes, uint8_t **data, size_t *len,
                       const char *param, vl_api_error *e) {
    *data = NULL;
    *len = 0;
    const char *comma = strchr(url, ',');
    if (strncasecmp(url, "data:", 5) != 0 || !comma)
        return vl_api_fail(e, 400, "invalid_request_error", param,
                           "%s: a data: URL is data:image/png;base64,<data>", param);
    size_t head = (size_t)(comma - url);
    if (head < 12 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return vl_api_fail(e, 400, "invalid_request_error", param,
                           "%s: only base64 data: URLs are taken (data:image/png;base64,...)",
                           param);
    const char *b64 = comma + 1;
    size_t n = strlen(b64);
    if (n / 4 * 3 > max_bytes + 3)
        return vl_api_fail(e, 400, "invalid_request_error", param,
                           "%s: the image is over %zu bytes; send a smaller file", param,
                           max_bytes);
    uint8_t *out = malloc(n / 4 * 3 + 4);
    if (!out) return vl_api_fail(e, 500, "server_error", param, "out of host memory");
    long got = b64_decode(b64, n, out);
    if (got <= 0) {
        free(out);
        return vl_api_fail(e, 400, "invalid_request_error", param,
                           "%s: the data: URL's payload is not valid base64", param);
    }
    *data = out;
    *len = (size_t)got;
    return 0;
}
