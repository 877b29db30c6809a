/* remote_image.c: an image given by an http(s) URL, fetched with libcurl, only when the server
 * was started with --allow-remote-images (fetching what a client names reaches whatever the
 * server can reach). Bounded: http and https only (redirects too, at most 5), the byte cap
 * (announced sizes refused before the body, and counted while it comes), the whole time. */
#include "server/server_impl.h"

#ifdef VL_HAVE_CURL
#include <curl/curl.h>
#include <stdlib.h>

typedef struct {
    vl_buf b;
    size_t max;
    int over;
} download;

static size_t on_data(char *p, size_t size, size_t n, void *ctx) {
    download *d = ctx;
    size_t bytes = size * n;
    if (d->b.len + bytes > d->max) {
        d->over = 1;
        return 0; /* aborts the transfer */
    }
    return vl_buf_append(&d->b, p, bytes) ? 0 : bytes;
}

static CURLcode run(CURL *h, const vl_image_policy *p, const char *url, download *d, char *why) {
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* many threads: no SIGALRM for DNS timeouts */
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)p->timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)(p->timeout_s < 10 ? p->timeout_s : 10));
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)p->max_bytes);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "vlrun");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
    return curl_easy_perform(h);
}

int vl_remote_image_fetch(const vl_image_policy *p, const char *url, uint8_t **data, size_t *len,
                          const char *param, vl_api_error *e) {
    *data = NULL;
    *len = 0;
    CURL *h = curl_easy_init();
    if (!h) return vl_api_fail(e, 500, "server_error", param, "libcurl could not start");
    download d = {.max = p->max_bytes};
    char why[CURL_ERROR_SIZE] = "";
    CURLcode rc = run(h, p, url, &d, why);
    curl_easy_cleanup(h);
    if (rc == CURLE_OK && d.b.len > 0) {
        *data = (uint8_t *)d.b.p;
        *len = d.b.len;
        return 0;
    }
    vl_buf_free(&d.b);
    if (d.over || rc == CURLE_FILESIZE_EXCEEDED)
        return vl_api_fail(e, 400, "invalid_request_error", param,
                           "%s: the image at the URL is over %zu bytes", param, p->max_bytes);
    return vl_api_fail(e, 400, "invalid_request_error", param, "%s: could not fetch the image: %s",
                       param,
                       why[0]           ? why
                       : rc == CURLE_OK ? "empty body"
                                        : curl_easy_strerror(rc));
}

int vl_remote_images_init(int allow) {
    (void)allow;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return vl_error_set("libcurl could not start (curl_global_init)");
    return 0;
}

void vl_remote_images_cleanup(void) {
    curl_global_cleanup();
}

#else /* a build without libcurl (cmake -DVL_REMOTE_IMAGES=OFF): no image URLs, said at start */

int vl_remote_image_fetch(const vl_image_policy *p, const char *url, uint8_t **data, size_t *len,
                          const char *param, vl_api_error *e) {
    return vl_api_fail(e, 400, "invalid_request_error", param,
                       "%s: this server cannot fetch image URLs (built without libcurl)", param);
}

int vl_remote_images_init(int allow) {
    if (!allow) return 0;
    return vl_error_set("--allow-remote-images: this vlrun was built without libcurl (cmake "
                        "-DVL_REMOTE_IMAGES=OFF); rebuild with it, or send images as data: URLs");
}

void vl_remote_images_cleanup(void) {}
#endif
