/* images.c: the bytes of every image of a chat request, by URL kind: data: (inline base64),
 * http(s):// (remote_image.c, only with --allow-remote-images), or a local path / file:// URL,
 * only with --allow-local-images DIR and only inside DIR: the path is resolved with realpath
 * (symbolic links and ".." followed) and must land under DIR's own realpath, then it is read with
 * vl_open_regular (no FIFO or device). The bytes go to the engine as vl_image_arg.data; the
 * engine decodes them with the same decoders and caps as a file. */
#include "server/server_impl.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

static int refuse_path(const char *param, vl_api_error *e) {
    return vl_api_fail(e, 400, "invalid_request_error", param,
                       "%s: no readable image file of that name in the allowed folder", param);
}

/* The path of a local URL resolved under dir: 0 and resolved[PATH_MAX], or -1 with e. */
static int confine(const char *dir, const char *url, char *resolved, const char *param,
                   vl_api_error *e) {
    const char *path = strncasecmp(url, "file://", 7) == 0 ? url + 7 : url;
    char joined[PATH_MAX];
    int n = path[0] == '/' ? snprintf(joined, sizeof joined, "%s", path)
                           : snprintf(joined, sizeof joined, "%s/%s", dir, path);
    if (n < 0 || (size_t)n >= sizeof joined) return refuse_path(param, e);
    if (!realpath(joined, resolved)) return refuse_path(param, e);
    size_t k = strlen(dir);
    if (strncmp(resolved, dir, k) != 0 || (resolved[k] != '/' && strcmp(dir, "/") != 0))
        return refuse_path(param, e);
    return 0;
}

int vl_local_image_read(const vl_image_policy *p, const char *url, uint8_t **data, size_t *len,
                        const char *param, vl_api_error *e) {
    *data = NULL;
    *len = 0;
    char resolved[PATH_MAX];
    if (confine(p->local_dir, url, resolved, param, e)) return -1;
    int fd;
    int64_t size;
    vl_error_clear();
    if (vl_open_regular(resolved, "image", &fd, &size)) {
        vl_error_clear();
        return refuse_path(param, e);
    }
    if (size <= 0 || (uint64_t)size > p->max_bytes) {
        close(fd);
        return vl_api_fail(e, 400, "invalid_request_error", param,
                           "%s: the image file is empty or over %zu bytes", param, p->max_bytes);
    }
    uint8_t *buf = malloc((size_t)size);
    int rc = buf ? vl_read_fd(fd, resolved, buf, (size_t)size) : -1;
    close(fd);
    vl_error_clear();
    if (rc) {
        free(buf);
        return refuse_path(param, e);
    }
    *data = buf;
    *len = (size_t)size;
    return 0;
}

/* A scheme other than data, file, http and https ("ftp:", "gopher:") is refused as such. */
static int has_other_scheme(const char *url) {
    size_t k = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
    return k > 1 && url[k] == ':' && url[k + 1] == '/';
}

/* A kind of URL the server was not started to take. */
static int not_allowed(const char *param, const char *kind, const char *flag, vl_api_error *e) {
    return vl_api_fail(e, 400, "invalid_request_error", param,
                       "%s: %s are off (start the server with %s); send the image as a data: URL",
                       param, kind, flag);
}

static int fetch_one(const vl_image_policy *p, const char *url, uint8_t **data, size_t *len,
                     const char *param, vl_api_error *e) {
    if (strncasecmp(url, "data:", 5) == 0)
        return vl_data_url_decode(url, p->max_bytes, data, len, param, e);
    if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
        if (!p->allow_remote) return not_allowed(param, "image URLs", "--allow-remote-images", e);
        return vl_remote_image_fetch(p, url, data, len, param, e);
    }
    if (strncasecmp(url, "file://", 7) != 0 && has_other_scheme(url))
        return vl_api_fail(e, 400, "invalid_request_error", param,
                           "%s: expected a data:, http(s):// or file:// URL or a path", param);
    if (!p->local_dir)
        return not_allowed(param, "local image paths", "--allow-local-images DIR", e);
    return vl_local_image_read(p, url, data, len, param, e);
}

int vl_images_fetch(const vl_image_policy *p, const vl_oai_chat *c, vl_image_arg *args,
                    vl_api_error *e) {
    memset(args, 0, (size_t)c->n_images * sizeof *args);
    for (int i = 0; i < c->n_images; i++) {
        /* name: the image in fetch errors; path: in the decoders' ("image #2 of the request
         * is not a PNG, ...") */
        char name[32], decoded_as[48];
        snprintf(name, sizeof name, "image %d", i + 1);
        snprintf(decoded_as, sizeof decoded_as, "#%d of the request", i + 1);
        uint8_t *data = NULL;
        size_t len;
        char *path = strdup(decoded_as);
        if (!path || fetch_one(p, c->image_urls[i], &data, &len, name, e)) {
            if (!path) vl_api_fail(e, 500, "server_error", NULL, "out of host memory");
            snprintf(e->param, sizeof e->param, "messages");
            free(path);
            vl_images_free(args, i);
            return -1;
        }
        args[i] = (vl_image_arg){.path = path, .repeat = 1, .data = data, .data_len = len};
    }
    return 0;
}

void vl_images_free(vl_image_arg *args, int n) {
    for (int i = 0; i < n; i++) {
        free((void *)args[i].data);
        free((void *)args[i].path);
    }
}
