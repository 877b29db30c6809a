/* server_impl.h: the parts of the server (server/) and how they meet. Request-level logic
 * (parsing, stop strings, response bodies, images) needs no HTTP, so the unit tests call it
 * directly:
 *
 *   http.c (routes, auth.c, bodies) -> chat_handler.c: openai_request.c (JSON -> chat request)
 *   -> images.c (data_url.c, local files, remote_image.c) -> engine_thread.c (vl_batch, with
 *   stop_text.c on each piece) -> openai_response.c (JSON / SSE chunks); metrics.c counts. */
#ifndef VL_SERVER_IMPL_H
#define VL_SERVER_IMPL_H

#include "engine/engine.h" /* vl_error_set, vl_now_s, VL_PRINTF */
#include "server/server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct cJSON;
struct MHD_Connection;
struct MHD_Daemon;

/* ---- a growable byte buffer (buffer.c) --------------------------------------------------- */
typedef struct {
    char *p; /* NUL-terminated after every append (p[len] == 0) */
    size_t len, cap;
} vl_buf;
int vl_buf_append(vl_buf *b, const void *s, size_t n); /* 0, or -1 out of memory (error set) */
int vl_buf_printf(vl_buf *b, const char *fmt, ...) VL_PRINTF(2, 3);
void vl_buf_free(vl_buf *b);

/* ---- an OpenAI error (api_error.c) ------------------------------------------------------- */
typedef struct {
    int status;       /* HTTP status */
    const char *type; /* "invalid_request_error", "authentication_error", "server_error" */
    const char *code; /* NULL, or "context_length_exceeded", "invalid_api_key", ... */
    char param[128];  /* "": null */
    char message[1024];
} vl_api_error;
/* Fill e; returns -1 so that `return vl_api_fail(...)` reads naturally. */
int vl_api_fail(vl_api_error *e, int status, const char *type, const char *param, const char *fmt,
                ...) VL_PRINTF(5, 6);
/* {"error":{"message","type","param","code"}}, malloc'ed (NULL: out of memory). */
char *vl_api_error_body(const vl_api_error *e);

/* ---- a chat completion request (openai_request.c) --------------------------------------- */
#define VL_MAX_STOP 4
typedef struct {
    struct cJSON *root; /* the parsed body: the strings below point into it */
    const char *model;  /* NULL: absent (the served name is echoed) */
    vl_message *messages;
    int n_messages;
    vl_part *parts; /* every message's parts */
    int n_parts;
    const char **image_urls; /* in order of appearance (vl_part.image indexes them) */
    int n_images;
    int max_tokens; /* 0: absent (the server's --default-max-tokens) */
    int greedy;     /* temperature 0 or top_p 0 */
    float temperature, top_p;
    int has_seed;
    uint64_t seed;
    const char *stop[VL_MAX_STOP]; /* non-empty strings */
    int n_stop;
    int stream, include_usage;
} vl_oai_chat;
/* body[0, len) -> c. 0, or -1 with e filled (400, the field in e->param); free c either way. */
int vl_oai_chat_parse(const char *body, size_t len, vl_oai_chat *c, vl_api_error *e);
void vl_oai_chat_free(vl_oai_chat *c);
/* The engine's request: the messages, images[n_images] (already fetched), sampling. */
void vl_oai_chat_to_request(const vl_oai_chat *c, const vl_image_arg *images, vl_request *rq);

/* ---- stop strings (stop_text.c) ---------------------------------------------------------- */
/* Text passes through once it can no longer be the start of a stop string; it ends before the
 * first occurrence of one. */
typedef struct {
    const char *const *stops;
    int n_stops;
    vl_buf held; /* text that may be the start of a stop string */
    int stopped; /* a stop string was found: nothing more passes */
} vl_stop_filter;
void vl_stop_init(vl_stop_filter *f, const char *const *stops, int n_stops);
/* Appends to out what is now safe; 1 when a stop string ended the text, 0, -1 out of memory. */
int vl_stop_feed(vl_stop_filter *f, const char *piece, size_t len, vl_buf *out);
/* The end of generation: what was held is text after all. */
int vl_stop_finish(vl_stop_filter *f, vl_buf *out);
void vl_stop_free(vl_stop_filter *f);

/* ---- response bodies (openai_response.c) ------------------------------------------------- */
typedef struct {
    const char *id; /* "chatcmpl-..." */
    const char *model;
    long long created;
} vl_completion_meta;
typedef struct {
    int prompt_tokens, completion_tokens;
} vl_token_usage;
/* The non-streaming answer (chat.completion), malloc'ed. */
char *vl_completion_json(const vl_completion_meta *m, const char *text, size_t len,
                         const char *finish_reason, const vl_token_usage *u);
/* One SSE event "data: {chunk}\n\n" (chat.completion.chunk): role set only in the first,
 * finish_reason only in the last (text then empty); with_usage: "usage":null in each, the
 * usage itself in a last chunk with no choices (vl_sse_usage). */
char *vl_sse_chunk(const vl_completion_meta *m, int first, const char *text, size_t len,
                   const char *finish_reason, int with_usage);
char *vl_sse_usage(const vl_completion_meta *m, const vl_token_usage *u);
char *vl_sse_error(const vl_api_error *e); /* "data: {"error":...}\n\n" (a stream that failed) */
#define VL_SSE_DONE "data: [DONE]\n\n"
char *vl_models_json(const char *model, long long created);

/* ---- images of a request (images.c, data_url.c, remote_image.c) --------------------------- */
typedef struct {
    const char *local_dir; /* realpath of --allow-local-images, NULL: off */
    int allow_remote;
    size_t max_bytes;
    int timeout_s;
} vl_image_policy;
/* A data: URL's bytes (base64 only), malloc'ed. 0, or -1 with e (400, param). */
int vl_data_url_decode(const char *url, size_t max_bytes, uint8_t **data, size_t *len,
                       const char *param, vl_api_error *e);
/* A local path or file:// URL under p->local_dir (set: images.c checks). */
int vl_local_image_read(const vl_image_policy *p, const char *url, uint8_t **data, size_t *len,
                        const char *param, vl_api_error *e);
/* An http(s) URL with libcurl (within p->max_bytes and p->timeout_s; p->allow_remote checked
 * by images.c). */
int vl_remote_image_fetch(const vl_image_policy *p, const char *url, uint8_t **data, size_t *len,
                          const char *param, vl_api_error *e);
/* Every image URL of c into args[c->n_images] (data owned: vl_images_free). */
int vl_images_fetch(const vl_image_policy *p, const vl_oai_chat *c, vl_image_arg *args,
                    vl_api_error *e);
void vl_images_free(vl_image_arg *args, int n);
/* libcurl's global state, before any thread uses it; refuses `allow` in a build without libcurl
 * (cmake -DVL_REMOTE_IMAGES=OFF) */
int vl_remote_images_init(int allow);
void vl_remote_images_cleanup(void);

/* ---- metrics (metrics.c) ----------------------------------------------------------------- */
typedef struct vl_metrics vl_metrics;
vl_metrics *vl_metrics_new(void);
void vl_metrics_free(vl_metrics *m);
void vl_metrics_count_status(vl_metrics *m, int status);
void vl_metrics_observe(vl_metrics *m, double ttft_s, double tpot_s); /* < 0: not observed */
void vl_metrics_set_batch(vl_metrics *m, const vl_batch_stats *st, int pending);
char *vl_metrics_text(vl_metrics *m); /* Prometheus text format, malloc'ed */

/* ---- the engine thread (engine_thread.c) ------------------------------------------------- */
typedef enum { VL_CANCEL_NONE, VL_CANCEL_CLIENT, VL_CANCEL_SHUTDOWN } vl_cancel_reason;
typedef struct vl_engine_thread vl_engine_thread;

/* One request's trip through the engine. The submitter fills rq and stops, then waits with
 * vl_job_poll; once done is seen, the engine no longer touches the job and the outcome fields
 * may be read without the lock. */
typedef struct vl_job {
    vl_request rq;
    vl_engine_thread *et;
    vl_stop_filter stop;
    double t_submit;
    /* under the engine thread's lock */
    pthread_cond_t cond;
    int added, done;
    vl_cancel_reason cancel;
    int cancel_sent;
    int64_t id;
    vl_buf text; /* the answer so far (stop strings applied) */
    int news;    /* text came since its waiter was last woken (woken while the device works) */
    int stopped; /* a stop string ended it */
    double t_first, t_done;
    /* the outcome (done) */
    int failed; /* err holds the reply */
    vl_api_error err;
    const char *finish_reason; /* "stop" or "length" */
    vl_token_usage usage;
    struct vl_job *next;
} vl_job;

vl_engine_thread *vl_engine_thread_start(vl_batch *b, vl_metrics *m);
/* A job to fill (rq, t_submit) and submit; vl_job_free only once it is done. */
int vl_job_init(vl_job *j, const char *const *stops, int n_stops);
void vl_job_free(vl_job *j);
void vl_engine_thread_submit(vl_engine_thread *t, vl_job *j);
/* What changed since `from` bytes of text were taken: wait up to timeout_s for new text, the
 * end, or (want_added) the admission. *text: the new bytes (malloc'ed, may be NULL when none). */
typedef struct {
    char *text;
    size_t len;
    int added, done;
} vl_job_news;
void vl_job_poll(vl_engine_thread *t, vl_job *j, size_t from, int want_added, double timeout_s,
                 vl_job_news *out);
void vl_job_cancel(vl_engine_thread *t, vl_job *j, vl_cancel_reason why);
void vl_job_wait_done(vl_engine_thread *t, vl_job *j);
/* Shutdown: wait until no request is left or the deadline (vl_now_s) passes; 1 when idle. */
int vl_engine_thread_wait_idle(vl_engine_thread *t, double deadline);
void vl_engine_thread_cancel_all(vl_engine_thread *t);
void vl_engine_thread_stop(vl_engine_thread *t); /* ends the thread once nothing is left */

/* ---- auth (auth.c) ----------------------------------------------------------------------- */
/* 1 when the Authorization header value is "Bearer KEY" (compared in constant time). */
int vl_auth_ok(const char *api_key, const char *authorization);

/* ---- the server (http.c, chat_handler.c) ------------------------------------------------- */
struct vl_server {
    vl_server_config cfg;
    vl_image_policy images;
    char *local_dir_real;
    struct MHD_Daemon *daemon;
    vl_engine_thread *engine;
    vl_metrics *metrics;
    atomic_int shutting_down;
    atomic_int in_flight; /* HTTP requests between their first call and their end */
    atomic_uint_fast64_t next_id;
    long long started;
    int port;
};
typedef struct vl_chat_call vl_chat_call;
/* POST /v1/chat/completions with its whole body: queues the response on the connection.
 * Returns the MHD result. *call: state a streaming reply keeps (vl_chat_call_end frees). */
int vl_chat_handle(vl_server *s, struct MHD_Connection *c, const char *body, size_t len,
                   vl_chat_call **call);
void vl_chat_call_end(vl_chat_call *call);
/* Queue a JSON reply with `status` (and count it). */
int vl_http_reply(vl_server *s, struct MHD_Connection *c, int status, char *json_owned,
                  const char *content_type);
int vl_http_error(vl_server *s, struct MHD_Connection *c, const vl_api_error *e);
/* 1 when the client closed its side of the connection (a peek at its socket). */
int vl_http_client_gone(struct MHD_Connection *c);

#endif
