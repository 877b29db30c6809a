/* metrics.c: GET /metrics in Prometheus' text format (version 0.0.4): requests by HTTP status,
 * the batch's queue, running sequences, tokens in and out, the KV pool's blocks and bytes, the
 * device's peak, and two latency histograms (time to first token, time per output token after
 * the first). HTTP threads count statuses, the engine thread sets the batch's figures after each
 * step and observes latencies; one lock keeps them consistent. */
#include "server/server_impl.h"

#include <stdlib.h>

static const double k_ttft_le[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double k_tpot_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1};
#define N_TTFT  ((int)(sizeof k_ttft_le / sizeof k_ttft_le[0]))
#define N_TPOT  ((int)(sizeof k_tpot_le / sizeof k_tpot_le[0]))
#define N_CODES 600

typedef struct {
    int64_t bucket[16]; /* cumulative counts are made when printed */
    int64_t count;
    double sum;
} histogram;

struct vl_metrics {
    pthread_mutex_t lock;
    int64_t by_status[N_CODES];
    vl_batch_stats batch;
    int pending; /* received, not yet in the batch's queue */
    histogram ttft, tpot;
};

vl_metrics *vl_metrics_new(void) {
    vl_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        vl_error_set("out of host memory");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void vl_metrics_free(vl_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void vl_metrics_count_status(vl_metrics *m, int status) {
    if (status < 100 || status >= N_CODES) return;
    pthread_mutex_lock(&m->lock);
    m->by_status[status]++;
    pthread_mutex_unlock(&m->lock);
}

static void observe(histogram *h, const double *le, int n, double v) {
    int i = 0;
    while (i < n && v > le[i]) i++;
    h->bucket[i]++; /* i == n: only +Inf */
    h->count++;
    h->sum += v;
}

void vl_metrics_observe(vl_metrics *m, double ttft_s, double tpot_s) {
    pthread_mutex_lock(&m->lock);
    if (ttft_s >= 0) observe(&m->ttft, k_ttft_le, N_TTFT, ttft_s);
    if (tpot_s >= 0) observe(&m->tpot, k_tpot_le, N_TPOT, tpot_s);
    pthread_mutex_unlock(&m->lock);
}

void vl_metrics_set_batch(vl_metrics *m, const vl_batch_stats *st, int pending) {
    pthread_mutex_lock(&m->lock);
    m->batch = *st;
    m->pending = pending;
    pthread_mutex_unlock(&m->lock);
}

static void put_histogram(vl_buf *b, const char *name, const char *help, const histogram *h,
                          const double *le, int n) {
    vl_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    int64_t cum = 0;
    for (int i = 0; i < n; i++) {
        cum += h->bucket[i];
        vl_buf_printf(b, "%s_bucket{le=\"%g\"} %lld\n", name, le[i], (long long)cum);
    }
    vl_buf_printf(b, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.6f\n%s_count %lld\n", name,
                  (long long)h->count, name, h->sum, name, (long long)h->count);
}

static void put_batch(vl_buf *b, const vl_batch_stats *s, int pending) {
    const struct {
        const char *name, *type, *help;
        long long v;
    } rows[] = {
        {"vlrun_queue_length", "gauge", "requests waiting for KV blocks", s->queued + pending},
        {"vlrun_running_sequences", "gauge", "requests holding KV blocks", s->running},
        {"vlrun_prompt_tokens_total", "counter", "prompt tokens admitted", s->prompt_tokens},
        {"vlrun_completion_tokens_total", "counter", "tokens generated", s->completion_tokens},
        {"vlrun_decode_steps_total", "counter", "batched decode steps", s->decode_steps},
        {"vlrun_decode_graphs_recorded_total", "counter",
         "decode steps recorded as CUDA graphs at start (one per row count)",
         s->decode_graphs_recorded},
        {"vlrun_decode_graph_bytes", "gauge", "device memory the recorded decode steps hold",
         (long long)s->decode_graph_bytes},
        {"vlrun_decode_tokens_total", "counter", "tokens made by decode steps (one a row)",
         s->decode_tokens},
        {"vlrun_vision_cache_hits_total", "counter", "images whose embedding was reused",
         s->vision_cache_hits},
        {"vlrun_vision_cache_misses_total", "counter", "images run through the vision tower",
         s->vision_cache_misses},
        {"vlrun_vision_cache_bytes", "gauge", "the vision cache's block (0: none)",
         (long long)s->vision_cache_bytes},
        {"vlrun_kv_blocks_total", "gauge", "KV cache blocks in the pool", s->blocks_total},
        {"vlrun_kv_blocks_free", "gauge", "KV cache blocks free", s->blocks_free},
        {"vlrun_kv_block_tokens", "gauge", "tokens per KV block", s->block_tokens},
        {"vlrun_kv_bytes_used", "gauge", "KV pool bytes reserved by requests",
         (long long)s->kv_bytes_used},
        {"vlrun_kv_bytes_free", "gauge", "KV pool bytes free",
         (long long)(s->kv_bytes_total - s->kv_bytes_used)},
        {"vlrun_peak_device_bytes", "gauge", "device memory peak (0 on the CPU)",
         (long long)s->peak_device},
        {"vlrun_planned_bytes", "gauge", "the batch's planned memory in all",
         (long long)s->planned_total},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        vl_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", rows[i].name, rows[i].help,
                      rows[i].name, rows[i].type, rows[i].name, rows[i].v);
    const struct {
        const char *name, *help;
        double v;
    } seconds[] = {
        {"vlrun_decode_seconds_total", "wall time of the decode steps", s->decode_seconds},
        {"vlrun_decode_graph_seconds_total", "wall time of recording the decode graphs at start",
         s->decode_graph_seconds},
        {"vlrun_prefill_seconds_total", "wall time of the prefill chunks", s->prefill_seconds},
    };
    for (size_t i = 0; i < sizeof seconds / sizeof seconds[0]; i++)
        vl_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %.6f\n", seconds[i].name,
                      seconds[i].help, seconds[i].name, seconds[i].name, seconds[i].v);
}

char *vl_metrics_text(vl_metrics *m) {
    vl_buf b = {0};
    pthread_mutex_lock(&m->lock);
    vl_buf_printf(&b, "# HELP vlrun_requests_total HTTP requests answered, by status\n"
                      "# TYPE vlrun_requests_total counter\n");
    for (int s = 100; s < N_CODES; s++)
        if (m->by_status[s])
            vl_buf_printf(&b, "vlrun_requests_total{status=\"%d\"} %lld\n", s,
                          (long long)m->by_status[s]);
    put_batch(&b, &m->batch, m->pending);
    put_histogram(&b, "vlrun_time_to_first_token_seconds",
                  "from the request's arrival to its first generated text", &m->ttft, k_ttft_le,
                  N_TTFT);
    put_histogram(&b, "vlrun_time_per_output_token_seconds",
                  "decode time per generated token after the first", &m->tpot, k_tpot_le, N_TPOT);
    pthread_mutex_unlock(&m->lock);
    return b.p;
}
