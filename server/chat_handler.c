/* chat_handler.c: one POST /v1/chat/completions, on its connection's thread: the body parsed
 * (openai_request.c), the images fetched (images.c), the job handed to the engine thread, then
 * either the whole answer as one JSON body, or a stream of server-sent events written as the text
 * comes (the first chunk carries the role, the last the finish_reason, then the usage when asked,
 * then "data: [DONE]"). The reply's status waits for the engine's admission, so a request that
 * could never fit is a 400, not a stream that fails. While waiting, the client's socket is
 * watched: a client that went away has its request cancelled, which frees its KV blocks. */
#include "server/server_impl.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <time.h>

#define POLL_S 0.1 /* how often a waiting handler looks at its client's socket */
/* A stream with nothing to send for this long (queued behind others, a long prefill) sends an
 * SSE comment, which clients ignore: libmicrohttpd's connection timeout counts from the last
 * write and would otherwise close a stream that is only waiting for its first token. */
#define KEEPALIVE_S 10.0

struct vl_chat_call {
    vl_server *s;
    struct MHD_Connection *conn;
    vl_oai_chat req;
    vl_image_arg *images;
    int n_images; /* fetched */
    vl_job job;
    int submitted;
    char id[64];
    vl_completion_meta meta;
    /* streaming */
    size_t taken; /* bytes of the job's text already sent */
    vl_buf out;   /* SSE bytes not yet written, from out_at */
    size_t out_at;
    int first_sent, last_queued;
    double last_put_s; /* when SSE bytes were last queued */
};

void vl_chat_call_end(vl_chat_call *call) {
    if (!call) return;
    if (call->submitted) {
        vl_job_cancel(call->s->engine, &call->job, VL_CANCEL_CLIENT); /* nothing when done */
        vl_job_wait_done(call->s->engine, &call->job);
        vl_job_free(&call->job);
    }
    vl_images_free(call->images, call->n_images);
    free(call->images);
    vl_oai_chat_free(&call->req);
    vl_buf_free(&call->out);
    free(call);
}

/* Wait for the admission (want_added) or the end, watching the client: 1 at the end, 0 when
 * admitted, -1 when the client went away (the job is then cancelled and done). */
static int wait_job(vl_chat_call *call, int want_added) {
    vl_engine_thread *t = call->s->engine;
    for (;;) {
        vl_job_news n;
        vl_job_poll(t, &call->job, SIZE_MAX, want_added, POLL_S, &n);
        if (n.done) return 1;
        if (want_added && n.added) return 0;
        if (vl_http_client_gone(call->conn)) {
            vl_job_cancel(t, &call->job, VL_CANCEL_CLIENT);
            vl_job_wait_done(t, &call->job);
            return -1;
        }
    }
}

static int sse_put(vl_chat_call *call, char *event) {
    int rc = event ? vl_buf_append(&call->out, event, strlen(event)) : -1;
    free(event);
    call->last_put_s = vl_now_s();
    return rc;
}

/* The end of a stream: the finish chunk, the usage when asked, [DONE]; or an error event. */
static int sse_end(vl_chat_call *call) {
    const vl_job *j = &call->job;
    call->last_queued = 1;
    if (j->failed) return sse_put(call, vl_sse_error(&j->err));
    int usage = call->req.include_usage;
    if (sse_put(call, vl_sse_chunk(&call->meta, 0, NULL, 0, j->finish_reason, usage))) return -1;
    if (usage && sse_put(call, vl_sse_usage(&call->meta, &j->usage))) return -1;
    return vl_buf_append(&call->out, VL_SSE_DONE, strlen(VL_SSE_DONE));
}

/* More SSE bytes into call->out: 0, or -1 when the stream must end (client gone, no memory). */
static int sse_refill(vl_chat_call *call) {
    if (!call->first_sent) {
        call->first_sent = 1;
        return sse_put(call, vl_sse_chunk(&call->meta, 1, "", 0, NULL, call->req.include_usage));
    }
    vl_engine_thread *t = call->s->engine;
    vl_job_news n;
    vl_job_poll(t, &call->job, call->taken, 0, POLL_S, &n);
    int rc = 0;
    if (n.len) {
        call->taken += n.len;
        rc = sse_put(call,
                     vl_sse_chunk(&call->meta, 0, n.text, n.len, NULL, call->req.include_usage));
    }
    free(n.text);
    if (rc == 0 && n.done) return sse_end(call);
    if (rc == 0 && !n.len && vl_http_client_gone(call->conn)) rc = -1;
    if (rc == 0 && !n.len && vl_now_s() - call->last_put_s > KEEPALIVE_S)
        rc = sse_put(call, strdup(": waiting\n\n"));
    if (rc) vl_job_cancel(t, &call->job, VL_CANCEL_CLIENT);
    return rc;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    vl_chat_call *call = cls;
    while (call->out_at == call->out.len) {
        call->out.len = call->out_at = 0;
        if (call->last_queued) return MHD_CONTENT_READER_END_OF_STREAM;
        if (sse_refill(call)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = call->out.len - call->out_at;
    if (n > max) n = max;
    memcpy(buf, call->out.p + call->out_at, n);
    call->out_at += n;
    return (ssize_t)n;
}

static int reply_stream(vl_chat_call *call) {
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, call, NULL);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    int ret = MHD_queue_response(call->conn, 200, r);
    MHD_destroy_response(r);
    vl_metrics_count_status(call->s->metrics, 200);
    return ret;
}

static int reply_whole(vl_chat_call *call) {
    const vl_job *j = &call->job;
    if (j->failed) return vl_http_error(call->s, call->conn, &j->err);
    char *body =
        vl_completion_json(&call->meta, j->text.p, j->text.len, j->finish_reason, &j->usage);
    return vl_http_reply(call->s, call->conn, 200, body, "application/json");
}

/* splitmix64: a request's seed when the client gives none (distinct per request). */
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The engine's request from the parsed one, and the job around it. */
static int submit(vl_chat_call *call, double t0, vl_api_error *e) {
    vl_server *s = call->s;
    uint64_t n = atomic_fetch_add(&s->next_id, 1);
    snprintf(call->id, sizeof call->id, "chatcmpl-%016llx%08llx",
             (unsigned long long)mix((uint64_t)s->started), (unsigned long long)n);
    call->meta =
        (vl_completion_meta){.id = call->id,
                             .model = call->req.model ? call->req.model : s->cfg.model_name,
                             .created = (long long)time(NULL)};
    call->images = calloc((size_t)call->req.n_images + 1, sizeof *call->images);
    if (!call->images) return vl_api_fail(e, 500, "server_error", NULL, "out of host memory");
    if (vl_images_fetch(&s->images, &call->req, call->images, e)) return -1;
    call->n_images = call->req.n_images;
    vl_job_init(&call->job, call->req.stop, call->req.n_stop);
    vl_oai_chat_to_request(&call->req, call->images, &call->job.rq);
    if (!call->req.has_seed) call->job.rq.seed = mix(n ^ ((uint64_t)s->started << 20));
    call->job.t_submit = t0;
    call->submitted = 1;
    vl_engine_thread_submit(s->engine, &call->job);
    return 0;
}

int vl_chat_handle(vl_server *s, struct MHD_Connection *c, const char *body, size_t len,
                   vl_chat_call **out) {
    double t0 = vl_now_s();
    vl_chat_call *call = calloc(1, sizeof *call);
    if (!call) return MHD_NO;
    *out = call;
    call->s = s;
    call->conn = c;
    vl_api_error e;
    if (vl_oai_chat_parse(body, len, &call->req, &e) || submit(call, t0, &e))
        return vl_http_error(s, c, &e);
    int done = wait_job(call, call->req.stream);
    if (done < 0) return MHD_NO; /* the client went away */
    if (call->req.stream && !(done && call->job.failed)) return reply_stream(call);
    return reply_whole(call); /* done: the outcome is the handler's to read */
}
