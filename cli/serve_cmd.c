/* serve_cmd.c: `vlrun serve --model DIR [OPTIONS]`, the OpenAI-compatible server (server/):
 * one engine, one batch (its KV pool sized from --mem-budget or the free device memory), the
 * HTTP server until SIGTERM or SIGINT, then a graceful stop (running requests get
 * --grace-seconds to finish) and exit 0. The engine options are the run command's
 * (cli/options.c); the API key may also come from $VLRUN_API_KEY (read here only). */
#include "cli/cli.h"
#include "server/server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>

static const char k_usage[] =
    "usage: vlrun serve --model DIR [--host 127.0.0.1] [--port 8080] [--mem-budget SIZE]\n"
    "                   [--max-batch N] [--api-key KEY] [--allow-local-images DIR]\n"
    "                   [--allow-remote-images] [--default-max-tokens N] [--grace-seconds S]\n"
    "                   [--vision-cache SIZE]\n"
    "                   [engine options: --quant, --kv, --backend, --tokenizer, --chunk, ...]\n"
    "  --host ADDR              address to listen on (default 127.0.0.1: this machine only)\n"
    "  --port N                 port (default 8080; 0: a free one, shown in the ready line)\n"
    "  --max-batch N            sequences generating at once (default 16)\n"
    "  --api-key KEY            require Authorization: Bearer KEY (default: $VLRUN_API_KEY)\n"
    "  --allow-local-images DIR image paths and file:// URLs, only inside DIR\n"
    "  --allow-remote-images    fetch http(s) image URLs (at most 64 MiB, 30 s each)\n"
    "  --default-max-tokens N   a request without max_tokens (default 1024)\n"
    "  --grace-seconds S        on SIGTERM, running requests get S seconds (default 30)\n"
    "  --vision-cache SIZE      recent images' embeddings, reused for the same pixels (default:\n"
    "                           4 of the largest images', at most 64M and 1/32 of --mem-budget;\n"
    "                           0: none); counted in the memory plan\n"
    "Endpoints: POST /v1/chat/completions, GET /v1/models, /health, /metrics (docs/cli.md).\n";

typedef struct {
    vl_options o;
    vl_server_config sc;
    vl_batch_config bc;
    double grace_s;
    char **rest; /* argv for vl_options_parse: everything but serve's own options */
    int n_rest;
} serve_args;

static int int_arg(const char *opt, const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return vl_error_set("option %s: expected an integer in [%ld, %ld], got '%s'", opt, lo, hi,
                            v);
    *out = (int)x;
    return 0;
}

/* serve's own option at argv[i] (*took: its value used). 1 when it was one, 0 not, -1 bad. */
static int serve_option(serve_args *sa, const char *a, const char *v, int *took) {
    static const char *const with_value[] = {"--host",
                                             "--port",
                                             "--max-batch",
                                             "--api-key",
                                             "--allow-local-images",
                                             "--default-max-tokens",
                                             "--grace-seconds",
                                             "--vision-cache"};
    if (strcmp(a, "--allow-remote-images") == 0) return sa->sc.allow_remote_images = 1;
    int known = 0;
    for (size_t i = 0; i < sizeof with_value / sizeof *with_value; i++)
        known |= strcmp(a, with_value[i]) == 0;
    if (!known) return 0;
    if (!v) return vl_error_set("option %s needs a value (see vlrun serve --help)", a);
    *took = 1;
    if (strcmp(a, "--host") == 0) sa->sc.host = v;
    if (strcmp(a, "--api-key") == 0) sa->sc.api_key = v;
    if (strcmp(a, "--allow-local-images") == 0) sa->sc.local_images = v;
    if (strcmp(a, "--port") == 0) return int_arg(a, v, 0, 65535, &sa->sc.port) ? -1 : 1;
    if (strcmp(a, "--max-batch") == 0) return int_arg(a, v, 1, 4096, &sa->bc.max_batch) ? -1 : 1;
    if (strcmp(a, "--default-max-tokens") == 0)
        return int_arg(a, v, 1, 1 << 24, &sa->bc.default_max_tokens) ? -1 : 1;
    if (strcmp(a, "--vision-cache") == 0) {
        sa->bc.vision_cache_bytes = vl_parse_size(v);
        if (sa->bc.vision_cache_bytes < 0)
            return vl_error_set("option --vision-cache: expected a size like 64M or 0, got '%s'",
                                v);
    }
    if (strcmp(a, "--grace-seconds") == 0) {
        char *end;
        sa->grace_s = strtod(v, &end);
        if (end == v || *end || !(sa->grace_s >= 0 && sa->grace_s <= 86400))
            return vl_error_set("option --grace-seconds: expected seconds in [0, 86400], got "
                                "'%s'",
                                v);
    }
    return 1;
}

static int parse_serve_args(serve_args *sa, int argc, char **argv) {
    vl_options_default(&sa->o);
    vl_server_config_default(&sa->sc);
    vl_batch_config_default(&sa->bc);
    sa->grace_s = 30;
    sa->rest = calloc((size_t)argc + 1, sizeof *sa->rest);
    if (!sa->rest) return vl_error_set("out of host memory");
    sa->rest[sa->n_rest++] = argv[0];
    for (int i = 2; i < argc; i++) { /* argv[1] is "serve" */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int took = 0, r = serve_option(sa, a, v, &took);
        if (r < 0) return -1;
        if (r > 0) {
            i += took;
            continue;
        }
        sa->rest[sa->n_rest++] = argv[i];
        if (vl_option_takes_value(a) && v) sa->rest[sa->n_rest++] = argv[++i];
    }
    if (vl_options_parse(&sa->o, sa->n_rest, sa->rest)) return -1;
    if (sa->o.n_image_args)
        return vl_error_set("vlrun serve takes no images ('%s'): clients send them in their "
                            "requests",
                            sa->o.images[0].path);
    if (!sa->o.engine.model_dir && !sa->o.engine.config_path)
        return vl_error_set("vlrun serve needs --model DIR (or --random-weights --config FILE)");
    struct stat st; /* checked again by the server; here before minutes of loading weights */
    if (sa->sc.local_images && (stat(sa->sc.local_images, &st) != 0 || !S_ISDIR(st.st_mode)))
        return vl_error_set("--allow-local-images %s: not a folder", sa->sc.local_images);
    const char *key = getenv("VLRUN_API_KEY");
    if (!sa->sc.api_key && key && key[0]) sa->sc.api_key = key;
    return 0;
}

/* The served name: the model folder's name, or "vlrun". */
static void model_name(const vl_options *o, char *buf, size_t cap) {
    const char *d = o->engine.model_dir;
    size_t n = d ? strlen(d) : 0;
    while (n > 1 && d[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && d[start - 1] != '/') start--;
    if (n > start)
        snprintf(buf, cap, "%.*s", (int)(n - start), d + start);
    else
        snprintf(buf, cap, "vlrun");
}

/* Room for the connections: the soft limit on open files raised toward the hard one. */
static void raise_fd_limit(int want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= (rlim_t)want) return;
    rl.rlim_cur = rl.rlim_max < (rlim_t)want ? rl.rlim_max : (rlim_t)want;
    setrlimit(RLIMIT_NOFILE, &rl);
}

static void print_ready(const serve_args *sa, const vl_server *s, const vl_batch *b) {
    vl_batch_stats st;
    vl_batch_get_stats(b, &st);
    int v6 = strchr(sa->sc.host, ':') != NULL;
    char graphs[160] = "";
    if (st.decode_graphs_recorded > 0)
        snprintf(graphs, sizeof graphs, ", %lld decode graphs recorded in %.2f s, %.1f MiB",
                 (long long)st.decode_graphs_recorded, st.decode_graph_seconds,
                 (double)st.decode_graph_bytes / (1024.0 * 1024.0));
    fprintf(stderr,
            "vlrun serve: listening on http://%s%s%s:%d (model %s, pool %lld blocks of %lld "
            "tokens, max request %lld tokens%s)\n",
            v6 ? "[" : "", sa->sc.host, v6 ? "]" : "", vl_server_port(s), sa->sc.model_name,
            (long long)st.blocks_total, (long long)st.block_tokens,
            (long long)st.max_request_tokens, graphs);
}

static int serve(serve_args *sa) {
    char name[256];
    model_name(&sa->o, name, sizeof name);
    sa->sc.model_name = name;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* every thread started below inherits it */
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit(sa->sc.connection_limit + 256);
    vl_engine *e = vl_engine_open(&sa->o.engine);
    vl_batch *b = e ? vl_batch_open(e, &sa->bc) : NULL;
    vl_server *s = b ? vl_server_start(b, &sa->sc) : NULL;
    if (!s) {
        if (b) vl_batch_close(b);
        vl_engine_close(e);
        return -1;
    }
    print_ready(sa, s, b);
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "vlrun serve: %s: stopping (running requests get %g s)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", sa->grace_s);
    vl_server_stop(s, sa->grace_s);
    vl_batch_close(b);
    vl_engine_close(e);
    fprintf(stderr, "vlrun serve: stopped\n");
    return 0;
}

int vl_cmd_serve(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(k_usage, stdout);
            return 0;
        }
    serve_args sa;
    memset(&sa, 0, sizeof sa);
    int rc = parse_serve_args(&sa, argc, argv);
    if (rc == 0) rc = serve(&sa);
    vl_options_free(&sa.o);
    free(sa.rest);
    return rc;
}
