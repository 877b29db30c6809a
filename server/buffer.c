/* buffer.c: a growable byte buffer, NUL-terminated after each append so that text in it can be
 * handed to C string functions; the bytes themselves may hold NUL (generated text may). */
#include "server/server_impl.h"

#include <stdarg.h>
#include <stdlib.h>

int vl_buf_append(vl_buf *b, const void *s, size_t n) {
    if (n > SIZE_MAX / 2 - b->len - 1) return vl_error_set("out of host memory");
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2 + 64;
        char *p = realloc(b->p, cap);
        if (!p) return vl_error_set("out of host memory");
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int vl_buf_printf(vl_buf *b, const char *fmt, ...) {
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return vl_error_set("bad format");
    if ((size_t)n < sizeof small) return vl_buf_append(b, small, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return vl_error_set("out of host memory");
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = vl_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

void vl_buf_free(vl_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
