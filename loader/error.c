/* error.c: the one-line error record of the loader and engine.
 *
 * A failure caused by user input is recorded once (the first record wins until
 * vl_error_clear) and returned up to main, which prints it. The deepest caller knows the most
 * precise reason, so later, vaguer records from callers further up never overwrite it.
 * The record is per thread (C11 _Thread_local): requests running on several threads (a server)
 * each see their own failure, never another's.
 * Leaves out: error codes (the message is what the user acts on). */
#include "loader/loader.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char vl_error_text[1024];

int vl_error_set(const char *fmt, ...) {
    if (vl_error_text[0]) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vl_error_text, sizeof vl_error_text, fmt, ap);
    va_end(ap);
    if (!vl_error_text[0]) snprintf(vl_error_text, sizeof vl_error_text, "unknown error");
    return -1;
}

const char *vl_error_get(void) {
    return vl_error_text;
}

void vl_error_clear(void) {
    vl_error_text[0] = '\0';
}
