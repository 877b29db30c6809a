/* say.c: vl_say (say.h), the refusal line of kernels/ into a caller's buffer. */
#include "kernels/say.h"

#include <stdarg.h>
#include <stdio.h>

int vl_say(char *why, size_t why_len, const char *fmt, ...) {
    if (why && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}
