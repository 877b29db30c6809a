/* stop_text.c: OpenAI's `stop` strings on streamed text. The answer ends before the first
 * occurrence of any stop string; while streaming, a tail that could still grow into one is held
 * back (never sent and then taken back). The held tail is always the longest suffix of the text
 * seen that is a proper prefix of some stop string, so an occurrence that spans pieces is found
 * when its last piece arrives: every position where one could start lies in the held tail. */
#include "server/server_impl.h"

#include <stdlib.h>

void vl_stop_init(vl_stop_filter *f, const char *const *stops, int n_stops) {
    memset(f, 0, sizeof *f);
    f->stops = stops;
    f->n_stops = n_stops;
}

void vl_stop_free(vl_stop_filter *f) {
    vl_buf_free(&f->held);
    memset(f, 0, sizeof *f);
}

/* The first occurrence of any stop string in s[0, n): its offset, or n when none. */
static size_t first_stop(const vl_stop_filter *f, const char *s, size_t n) {
    size_t best = n;
    for (int i = 0; i < f->n_stops; i++) {
        size_t k = strlen(f->stops[i]);
        for (size_t at = 0; k && at + k <= n && at < best; at++)
            if (memcmp(s + at, f->stops[i], k) == 0) {
                best = at;
                break;
            }
    }
    return best;
}

/* The longest suffix of s[0, n) that is a proper prefix of a stop string. */
static size_t held_tail(const vl_stop_filter *f, const char *s, size_t n) {
    size_t best = 0;
    for (int i = 0; i < f->n_stops; i++) {
        size_t k = strlen(f->stops[i]);
        if (k == 0) continue;
        for (size_t l = (k - 1 < n ? k - 1 : n); l > best; l--)
            if (memcmp(s + n - l, f->stops[i], l) == 0) {
                best = l;
                break;
            }
    }
    return best;
}

int vl_stop_feed(vl_stop_filter *f, const char *piece, size_t len, vl_buf *out) {
    if (f->stopped) return 1;
    if (f->n_stops == 0) return vl_buf_append(out, piece, len);
    if (vl_buf_append(&f->held, piece, len)) return -1;
    const char *s = f->held.p;
    size_t n = f->held.len, at = first_stop(f, s, n);
    if (at < n) {
        f->stopped = 1;
        int rc = vl_buf_append(out, s, at);
        f->held.len = 0;
        return rc ? -1 : 1;
    }
    size_t keep = held_tail(f, s, n);
    if (vl_buf_append(out, s, n - keep)) return -1;
    memmove(f->held.p, s + n - keep, keep);
    f->held.len = keep;
    f->held.p[keep] = '\0';
    return 0;
}

int vl_stop_finish(vl_stop_filter *f, vl_buf *out) {
    if (f->stopped || f->held.len == 0) return 0;
    int rc = vl_buf_append(out, f->held.p, f->held.len);
    f->held.len = 0;
    return rc;
}
