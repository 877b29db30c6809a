/* output.c: how the commands write: stdout flushed with its failures caught (a full disk, a
 * closed pipe), the streamed answer, the notices on stderr. */
#include "cli/cli.h"

#include <errno.h>

int vl_stdout_flush(void) {
    errno = 0;
    int flushed = fflush(stdout) == 0;
    if (flushed && !ferror(stdout)) return 0;
    /* an earlier write failed and nothing was left to flush: its errno is gone */
    int e = flushed ? 0 : errno;
    return vl_error_set("writing to standard output failed: %s", e ? strerror(e) : "I/O error");
}

/* on_text: each piece of the answer to stdout as it comes; a full disk or a closed stdout
 * ends the run now, not after N tokens. */
int vl_cli_stream_text(void *ctx, const char *piece, size_t len) {
    (void)ctx;
    fwrite(piece, 1, len, stdout);
    return vl_stdout_flush();
}

void vl_cli_notice(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "%s\n", line);
}
