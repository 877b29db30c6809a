/* prompt_text.c: the user's text of a request: --prompt TEXT, --prompt-file FILE, or standard
 * input with `--prompt -` / `--prompt-file -`. A file or standard input has no argv size limit
 * (a 200 KB prompt is ordinary for a document); it must be UTF-8 text without NUL bytes, and a
 * file must be a regular file (vl_read_file refuses FIFOs and devices). One trailing newline
 * (\n or \r\n) is dropped, as an editor or `echo` adds one and `$(cat FILE)` would drop it. */
#include "cli/cli.h"

#include <stdlib.h>

#define PROMPT_MAX_BYTES ((size_t)64 << 20)

/* Standard input until EOF, NUL-terminated. */
static int read_stdin(char **out, size_t *out_len) {
    size_t len = 0, cap = 1 << 16;
    char *buf = malloc(cap);
    if (!buf) return vl_error_set("out of host memory reading the prompt from standard input");
    for (;;) {
        if (cap - len < 2) {
            if (cap >= PROMPT_MAX_BYTES + 2) {
                free(buf);
                return vl_error_set("the prompt on standard input is longer than %zu MiB",
                                    PROMPT_MAX_BYTES >> 20);
            }
            char *t = realloc(buf, cap * 2);
            if (!t) {
                free(buf);
                return vl_error_set("out of host memory reading the prompt from standard input");
            }
            buf = t;
            cap *= 2;
        }
        size_t k = fread(buf + len, 1, cap - len - 1, stdin);
        len += k;
        if (k == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return vl_error_set("cannot read the prompt from standard input");
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* Text of `what` must be UTF-8 without NUL: say where it is not. */
static int check_text(const char *s, size_t n, const char *what) {
    for (size_t i = 0; i < n;) {
        if (s[i] == '\0')
            return vl_error_set("%s has a NUL byte at offset %zu: a prompt must be text", what, i);
        int r = vl_utf8_next((const unsigned char *)s + i, n - i);
        if (r <= 0)
            return vl_error_set("%s is not valid UTF-8 (bad byte 0x%02X at offset %zu); convert "
                                "it to UTF-8 first (e.g. iconv -t UTF-8)",
                                what, (unsigned char)s[i], i);
        i += (size_t)r;
    }
    return 0;
}

int vl_prompt_text_read(const vl_options *o, char **text) {
    *text = NULL;
    const char *file = o->prompt_file;
    int from_stdin =
        (file && strcmp(file, "-") == 0) || (!file && strcmp(o->request.prompt, "-") == 0);
    if (!file && !from_stdin) {
        *text = strdup(o->request.prompt);
        return *text ? 0 : vl_error_set("out of host memory");
    }
    char what[4200];
    snprintf(what, sizeof what, "%s%s",
             from_stdin ? "the prompt on standard input" : "--prompt-file ",
             from_stdin ? "" : file);
    char *buf = NULL;
    size_t len = 0;
    /* vl_read_file's errors name the path ("file X is a FIFO (named pipe), not a regular..." */
    if (from_stdin ? read_stdin(&buf, &len) : vl_read_file(file, PROMPT_MAX_BYTES, &buf, &len))
        return -1;
    if (check_text(buf, len, what)) {
        free(buf);
        return -1;
    }
    if (len > 0 && buf[len - 1] == '\n') {
        buf[--len] = '\0';
        if (len > 0 && buf[len - 1] == '\r') buf[--len] = '\0';
    }
    *text = buf;
    return 0;
}
