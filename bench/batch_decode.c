/* batch_decode.c: N copies of one request decoded together through the engine's batch
 * (engine/vlrun.h, vl_batch), without HTTP: the decode rate at exactly N rows, for A/B runs of
 * the batched decode step and for Nsight Compute (once the N prefills are done, every kernel
 * belongs to a decode step of N rows).
 *   batch_decode N [vlrun run options: IMAGE..., --max-tokens, --quant, --kv, --cuda-opt, ...]
 * Prints one line of JSON: the steps with all N rows decoding (the window), their rate and time
 * per step, and the run's totals. Requests are added at once and prefilled one chunk per step,
 * so the first ones decode while the last prefill: the window starts at the first step with N
 * rows and ends at the last. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int64_t steps, tokens;
    double seconds;
} decode_count;

static decode_count count_of(const vl_batch *b) {
    vl_batch_stats st;
    vl_batch_get_stats(b, &st);
    return (decode_count){st.decode_steps, st.decode_tokens, st.decode_seconds};
}

/* Steps until every request is done; *window: the counts over the steps that decoded n rows. */
static int run_batch(vl_batch *b, int n, decode_count *window, decode_count *total) {
    decode_count first = {0}, last = {0}, prev = count_of(b);
    int seen = 0;
    for (;;) {
        int left = vl_batch_step(b);
        if (left < 0) return -1;
        decode_count now = count_of(b);
        if (now.tokens - prev.tokens == n) {
            if (!seen) first = prev;
            last = now;
            seen = 1;
        }
        prev = now;
        if (left == 0) break;
    }
    *window = (decode_count){last.steps - first.steps, last.tokens - first.tokens,
                             last.seconds - first.seconds};
    *total = prev;
    return 0;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 0;
    if (n < 1 || n > 4096) {
        fprintf(stderr, "usage: %s N [vlrun run options: IMAGE..., --max-tokens, --quant, ...]\n",
                argv[0]);
        return 2;
    }
    vl_options o;
    vl_options_default(&o);
    argv[1] = argv[0]; /* vl_options_parse takes argv[0] as the program */
    if (vl_options_parse(&o, argc - 1, argv + 1)) {
        fprintf(stderr, "batch_decode: %s\n", vl_error_get());
        return 2;
    }
    vl_engine *e = vl_engine_open(&o.engine);
    vl_batch_config bc;
    vl_batch_config_default(&bc);
    bc.max_batch = n;
    vl_batch *b = e ? vl_batch_open(e, &bc) : NULL;
    int rc = b ? 0 : -1;
    for (int i = 0; i < n && rc == 0; i++) {
        int never_fits = 0;
        if (vl_batch_add(b, &o.request, NULL, &never_fits) < 0) rc = -1;
    }
    decode_count window = {0}, total = {0};
    if (rc == 0) rc = run_batch(b, n, &window, &total);
    if (rc == 0)
        printf("{\"rows\": %d, \"window_steps\": %lld, \"window_tok_s\": %.1f, "
               "\"window_ms_per_step\": %.3f, \"steps\": %lld, \"tokens\": %lld, "
               "\"decode_tok_s\": %.1f}\n",
               n, (long long)window.steps,
               window.seconds > 0 ? (double)window.tokens / window.seconds : 0.0,
               window.steps > 0 ? 1e3 * window.seconds / (double)window.steps : 0.0,
               (long long)total.steps, (long long)total.tokens,
               total.seconds > 0 ? (double)total.tokens / total.seconds : 0.0);
    else
        fprintf(stderr, "batch_decode: %s\n", vl_error_get());
    vl_batch_close(b);
    vl_engine_close(e);
    vl_options_free(&o);
    return rc ? 1 : 0;
}
