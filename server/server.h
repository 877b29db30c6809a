/* server.h: `vlrun serve`'s library (server/): an OpenAI-compatible HTTP server over one
 * vl_batch (engine/vlrun.h). HTTP threads (libmicrohttpd, one per connection) parse requests,
 * fetch their images and hand them to one engine thread, the only one that touches the batch;
 * answers come back as JSON or as server-sent events. docs/cli.md describes the endpoints.
 * Nothing here reads the environment or prints: errors are one line (vl_error_get). */
#ifndef VL_SERVER_H
#define VL_SERVER_H

#include "engine/vlrun.h"

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *host;           /* address to listen on (default "127.0.0.1") */
    int port;                   /* 0: a free port (vl_server_port tells which) */
    const char *model_name;     /* the served name in /v1/models (default "vlrun") */
    const char *api_key;        /* NULL: no auth; else "Authorization: Bearer KEY" required */
    const char *local_images;   /* NULL: no local paths; else image paths confined to it */
    int allow_remote_images;    /* fetch http(s) image URLs (libcurl) */
    size_t max_body_bytes;      /* a larger request body is refused with 413 (64 MiB) */
    size_t max_image_bytes;     /* an image file or download larger is refused (64 MiB) */
    int remote_timeout_s;       /* a download's whole time (30 s) */
    int connection_limit;       /* connections at once (1000) */
    int connection_timeout_s;   /* an idle connection is closed after it (60 s) */
    int request_read_timeout_s; /* a body still arriving after it: closed (120 s) */
} vl_server_config;
void vl_server_config_default(vl_server_config *c);

typedef struct vl_server vl_server;

/* Starts the engine thread on b (owned by the caller, closed after vl_server_stop) and
 * listens. NULL with the error set (the address is taken, the folder does not exist...). */
vl_server *vl_server_start(vl_batch *b, const vl_server_config *c);
int vl_server_port(const vl_server *s); /* the port listened on */
/* Stops accepting, lets the running requests finish for up to grace_s seconds, cancels what
 * remains (their clients get 503 or an error event), then closes every connection and frees
 * the server. The batch is idle afterwards. */
void vl_server_stop(vl_server *s, double grace_s);

#ifdef __cplusplus
}
#endif
#endif
