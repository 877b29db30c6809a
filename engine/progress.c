/* progress.c: the one status line on a terminal's stderr while a long phase runs (loading
 * weights, prefill with its images, decode), rewritten in place with \r. The work itself calls
 * vl_progress_update as it goes; the line is redrawn at most 10 times a second, so the calls
 * cost a clock read. Every function takes NULL (silent) so library code can call them freely. */
#include "engine/engine.h"

#include <sys/ioctl.h>
#include <unistd.h>

#define REDRAW_S 0.1 /* at most 10 lines a second: readable, and cheap on a slow terminal */

vl_progress *vl_progress_open(vl_progress *p, int quiet) {
    memset(p, 0, sizeof *p);
    p->out = stderr;
    if (quiet || !isatty(fileno(stderr))) return NULL;
    return p;
}

void vl_progress_begin(vl_progress *p, const char *phase, const char *unit, double total) {
    if (!p) return;
    p->phase = phase;
    p->unit = unit;
    p->done = 0;
    p->total = total;
    p->images_done = p->images_total = 0;
    p->start_s = vl_now_s();
    vl_progress_draw(p);
}

/* GiB once the total reaches 1 GiB, else MiB ("1.25 GiB", "830.00 MiB") */
static const char *size_unit(double total, double *div) {
    *div = total >= 1024.0 * 1024 * 1024 ? 1024.0 * 1024 * 1024 : 1024.0 * 1024;
    return *div > 1024.0 * 1024 ? "GiB" : "MiB";
}

static int format_line(const vl_progress *p, double now, char *buf, size_t cap) {
    double el = now - p->start_s;
    int pct = p->total > 0 ? (int)(100.0 * p->done / p->total) : 0;
    int n;
    if (strcmp(p->unit, "bytes") == 0) {
        double div;
        const char *u = size_unit(p->total, &div);
        n = snprintf(buf, cap, "%s %.2f / %.2f %s (%d%%)", p->phase, p->done / div, p->total / div,
                     u, pct);
    } else {
        n = snprintf(buf, cap, "%s %.0f/%.0f %s (%d%%)", p->phase, p->done, p->total, p->unit, pct);
        if (el > 0 && p->done > 0 && n > 0 && (size_t)n < cap)
            n += snprintf(buf + n, cap - (size_t)n, ", %.1f %s/s", p->done / el,
                          strcmp(p->unit, "tokens") == 0 ? "tok" : p->unit);
    }
    if (p->images_total > 0 && n > 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - (size_t)n, " | vision %d/%d image%s", p->images_done,
                      p->images_total, p->images_total == 1 ? "" : "s");
    if (n > 0 && (size_t)n < cap) n += snprintf(buf + n, cap - (size_t)n, " | %.0f s", el);
    return n < 0 ? 0 : (size_t)n < cap ? n : (int)cap - 1;
}

/* Columns of the terminal (0 when unknown): a line wider than the terminal would wrap, and \r
 * would then rewrite only its last row. */
static int terminal_columns(FILE *f) {
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) != 0) return 0;
    return ws.ws_col;
}

void vl_progress_draw(vl_progress *p) {
    if (!p || !p->phase) return;
    double now = vl_now_s();
    char line[256];
    int n = format_line(p, now, line, sizeof line);
    int cols = terminal_columns(p->out);
    if (cols > 1 && n > cols - 1) line[n = cols - 1] = 0;
    /* spaces over what is left of a longer previous line */
    fprintf(p->out, "\r%s%*s", line, p->width > n ? p->width - n : 0, "");
    fflush(p->out);
    p->width = n;
    p->last_draw_s = now;
    p->stale = 0;
}

void vl_progress_update(vl_progress *p, double done) {
    if (!p || !p->phase) return;
    p->stale |= done != p->done;
    p->done = done;
    if (vl_now_s() - p->last_draw_s >= REDRAW_S) vl_progress_draw(p);
}

void vl_progress_tick(vl_progress *p) {
    if (p) vl_progress_update(p, p->done);
}

void vl_progress_heartbeat(void *p) {
    vl_progress_tick(p);
}

void vl_progress_images(vl_progress *p, int done, int total) {
    if (!p || !p->phase) return;
    p->stale |= done != p->images_done || total != p->images_total;
    p->images_done = done;
    p->images_total = total;
    vl_progress_update(p, p->done);
}

void vl_progress_end(vl_progress *p) {
    if (!p || !p->phase) return;
    /* the final counts once (a terminal log shows where each phase ended), then a blank line
     * so that what follows (streamed text, the report, an error) starts at column 0 */
    if (p->stale) vl_progress_draw(p);
    fprintf(p->out, "\r%*s\r", p->width, "");
    fflush(p->out);
    p->width = 0;
    p->phase = NULL;
}
