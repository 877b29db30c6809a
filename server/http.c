/* http.c: the HTTP side of the server on libmicrohttpd (one thread per connection, so a handler
 * may wait for its request's answer): the routes, auth, request bodies under a cap, replies with
 * OpenAI-style error bodies, the daemon's start and its graceful stop.
 *
 *   GET /health (no auth), GET /v1/models, GET /metrics, POST /v1/chat/completions
 *
 * A body announced larger than the cap is refused (413) before it is read; one that turns out
 * larger (chunked) is read and dropped, never kept. A body still arriving after
 * request_read_timeout_s closes the connection; an idle connection closes after
 * connection_timeout_s. */
#include "server/server_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void vl_server_config_default(vl_server_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->model_name = "vlrun";
    c->max_body_bytes = (size_t)64 << 20;
    c->max_image_bytes = (size_t)64 << 20;
    c->remote_timeout_s = 30;
    c->connection_limit = 1000;
    c->connection_timeout_s = 60;
    c->request_read_timeout_s = 120;
}

typedef enum { ROUTE_NONE, ROUTE_HEALTH, ROUTE_MODELS, ROUTE_METRICS, ROUTE_CHAT } route;

typedef struct {
    route route;
    int started; /* the first call (headers) was seen */
    vl_buf body;
    int too_large;
    double t0;
    vl_chat_call *call;
} http_request;

static int reply_full(vl_server *s, struct MHD_Connection *c, int status, char *body,
                      const char *content_type, const char *allow) {
    if (!body) { /* out of memory making the body: a fixed one */
        body = strdup("{\"error\":{\"message\":\"out of host memory\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":null}}");
        status = 500;
        content_type = "application/json";
        if (!body) return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    int ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    vl_metrics_count_status(s->metrics, status);
    return ret;
}

int vl_http_reply(vl_server *s, struct MHD_Connection *c, int status, char *json_owned,
                  const char *content_type) {
    return reply_full(s, c, status, json_owned, content_type, NULL);
}

int vl_http_error(vl_server *s, struct MHD_Connection *c, const vl_api_error *e) {
    return reply_full(s, c, e->status, vl_api_error_body(e), "application/json", NULL);
}

int vl_http_client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    char b;
    ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static route route_of(const char *url, const char **method_wanted) {
    static const struct {
        const char *path, *method;
        route r;
    } routes[] = {{"/health", "GET", ROUTE_HEALTH},
                  {"/v1/models", "GET", ROUTE_MODELS},
                  {"/metrics", "GET", ROUTE_METRICS},
                  {"/v1/chat/completions", "POST", ROUTE_CHAT}};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(url, routes[i].path) == 0) {
            *method_wanted = routes[i].method;
            return routes[i].r;
        }
    return ROUTE_NONE;
}

static int reply_error(vl_server *s, struct MHD_Connection *c, int status, const char *type,
                       const char *code, const char *msg, const char *allow) {
    vl_api_error e;
    vl_api_fail(&e, status, type, NULL, "%s", msg);
    e.code = code;
    return reply_full(s, c, status, vl_api_error_body(&e), "application/json", allow);
}

/* The first call: everything that can be answered from the method, path and headers. Returns
 * 1 when a reply was queued (*ret its result), 0 when the request goes on. */
static int answer_headers(vl_server *s, struct MHD_Connection *c, http_request *q, const char *url,
                          const char *method, int *ret) {
    const char *wanted = NULL;
    q->route = route_of(url, &wanted);
    char msg[512];
    *ret = MHD_YES;
    if (atomic_load(&s->shutting_down)) {
        *ret = reply_error(s, c, 503, "server_error", "shutting_down",
                           "the server is shutting down; retry on another", NULL);
    } else if (q->route != ROUTE_HEALTH &&
               !vl_auth_ok(s->cfg.api_key,
                           MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"))) {
        *ret = reply_error(s, c, 401, "authentication_error", "invalid_api_key",
                           "missing or wrong API key: send the header Authorization: Bearer KEY",
                           NULL);
    } else if (q->route == ROUTE_NONE) {
        snprintf(msg, sizeof msg,
                 "unknown path %.200s (%s); the endpoints are /v1/chat/completions, "
                 "/v1/models, /health and /metrics",
                 url, method);
        *ret = reply_error(s, c, 404, "invalid_request_error", "not_found", msg, NULL);
    } else if (strcmp(method, wanted) != 0) {
        snprintf(msg, sizeof msg, "%s takes %s, not %.20s", url, wanted, method);
        *ret = reply_error(s, c, 405, "invalid_request_error", "method_not_allowed", msg, wanted);
    } else {
        return 0;
    }
    return 1;
}

static int answer_get(vl_server *s, struct MHD_Connection *c, route r) {
    if (r == ROUTE_HEALTH)
        return vl_http_reply(s, c, 200, strdup("{\"status\":\"ok\"}"), "application/json");
    if (r == ROUTE_MODELS)
        return vl_http_reply(s, c, 200, vl_models_json(s->cfg.model_name, s->started),
                             "application/json");
    return vl_http_reply(s, c, 200, vl_metrics_text(s->metrics),
                         "text/plain; version=0.0.4; charset=utf-8");
}

/* Content-Length over the cap: 413 now, before the body is read. */
static int announced_too_large(const vl_server *s, struct MHD_Connection *c) {
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (!cl) return 0;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    return errno == ERANGE || (end != cl && n > s->cfg.max_body_bytes);
}

static int too_large_reply(vl_server *s, struct MHD_Connection *c) {
    char msg[160];
    snprintf(msg, sizeof msg, "the request body is over %zu bytes; send smaller images",
             s->cfg.max_body_bytes);
    return reply_error(s, c, 413, "invalid_request_error", "request_too_large", msg, NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls) {
    vl_server *s = cls;
    http_request *q = *con_cls;
    int ret;
    if (!q) { /* the first call: headers only */
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        q->t0 = vl_now_s();
        *con_cls = q;
        atomic_fetch_add(&s->in_flight, 1);
        if (answer_headers(s, c, q, url, method, &ret)) return (enum MHD_Result)ret;
        if (q->route != ROUTE_CHAT) return (enum MHD_Result)answer_get(s, c, q->route);
        if (announced_too_large(s, c)) return (enum MHD_Result)too_large_reply(s, c);
        return MHD_YES;
    }
    if (*size) { /* a piece of the body */
        if (vl_now_s() - q->t0 > s->cfg.request_read_timeout_s) return MHD_NO;
        if (q->too_large || q->body.len + *size > s->cfg.max_body_bytes) {
            q->too_large = 1;
            vl_buf_free(&q->body);
        } else if (vl_buf_append(&q->body, data, *size)) {
            vl_error_clear();
            return MHD_NO;
        }
        *size = 0;
        return MHD_YES;
    }
    if (q->too_large) return (enum MHD_Result)too_large_reply(s, c);
    return (enum MHD_Result)vl_chat_handle(s, c, q->body.p ? q->body.p : "", q->body.len, &q->call);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    vl_server *s = cls;
    http_request *q = *con_cls;
    if (!q) return;
    vl_chat_call_end(q->call); /* cancels an unfinished request (a client that went away) */
    vl_buf_free(&q->body);
    free(q);
    *con_cls = NULL;
    atomic_fetch_sub(&s->in_flight, 1);
}

/* host:port as a socket address (names resolved); *v6 set for IPv6. 0, or -1 with the error. */
static int resolve(const char *host, int port, struct sockaddr_storage *out, int *v6) {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0 || !ai)
        return vl_error_set("--host %s: not an address of this machine (%s)", host,
                            gai_strerror(rc));
    memset(out, 0, sizeof *out);
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    *v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (*v6)
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    return 0;
}

static int listen_on(vl_server *s) {
    struct sockaddr_storage addr;
    int v6 = 0;
    if (resolve(s->cfg.host, s->cfg.port, &addr, &v6)) return -1;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ITC | (v6 ? MHD_USE_IPv6 : 0);
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.connection_timeout_s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_END);
    if (!s->daemon)
        return vl_error_set("could not listen on %s port %d: the port is taken or the address "
                            "is not this machine's (pick another with --host / --port)",
                            s->cfg.host, s->cfg.port);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->cfg.port;
    return 0;
}

static void server_free(vl_server *s) {
    vl_engine_thread_stop(s->engine);
    vl_metrics_free(s->metrics);
    free(s->local_dir_real);
    vl_remote_images_cleanup();
    free(s);
}

/* --allow-local-images DIR: its realpath, which every image path must land under. */
static int local_dir(vl_server *s) {
    if (!s->cfg.local_images) return 0;
    s->local_dir_real = realpath(s->cfg.local_images, NULL);
    struct stat st;
    if (!s->local_dir_real || stat(s->local_dir_real, &st) != 0 || !S_ISDIR(st.st_mode))
        return vl_error_set("--allow-local-images %s: not a folder", s->cfg.local_images);
    return 0;
}

vl_server *vl_server_start(vl_batch *b, const vl_server_config *c) {
    vl_server *s = calloc(1, sizeof *s);
    if (!s) {
        vl_error_set("out of host memory");
        return NULL;
    }
    s->cfg = *c;
    s->started = (long long)time(NULL);
    if (vl_remote_images_init(c->allow_remote_images)) {
        free(s);
        return NULL;
    }
    if (local_dir(s) || !(s->metrics = vl_metrics_new()) ||
        !(s->engine = vl_engine_thread_start(b, s->metrics)) || listen_on(s)) {
        server_free(s);
        return NULL;
    }
    s->images = (vl_image_policy){.local_dir = s->local_dir_real,
                                  .allow_remote = c->allow_remote_images,
                                  .max_bytes = c->max_image_bytes,
                                  .timeout_s = c->remote_timeout_s};
    return s;
}

int vl_server_port(const vl_server *s) {
    return s->port;
}

/* Until no HTTP request is in flight and the engine is idle, or the deadline. */
static void drain(vl_server *s, double deadline) {
    while (vl_now_s() < deadline) {
        if (atomic_load(&s->in_flight) == 0 && vl_engine_thread_wait_idle(s->engine, 0)) return;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void vl_server_stop(vl_server *s, double grace_s) {
    if (!s) return;
    atomic_store(&s->shutting_down, 1);
    MHD_socket fd = MHD_quiesce_daemon(s->daemon); /* no new connections */
    if (fd != MHD_INVALID_SOCKET) close(fd);
    drain(s, vl_now_s() + grace_s);
    vl_engine_thread_cancel_all(s->engine); /* what is left gets 503 or an error event */
    drain(s, vl_now_s() + 10.0);
    MHD_stop_daemon(s->daemon); /* closes idle connections, joins their threads */
    server_free(s);
}
