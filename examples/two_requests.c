/* two_requests.c: the engine as a library (engine/vlrun.h): one engine, two requests with
 * different images, each answer streamed, then what the request held. The weights are placed
 * once, by the first request.
 *   two_requests MODEL_DIR|CONFIG.json IMAGE_A IMAGE_B [TOKENIZER.json|- [cpu|cuda]]
 * A CONFIG.json runs random weights of its shapes (their text means nothing); the backend is
 * the build's default (CUDA where built) unless named. */
#include "engine/vlrun.h"

#include <stdio.h>
#include <string.h>

static int print_piece(void *ctx, const char *piece, size_t len) {
    (void)ctx;
    return fwrite(piece, 1, len, stdout) == len ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL|CONFIG.json IMG_A IMG_B [TOKENIZER|- [cpu|cuda]]\n",
                argv[0]);
        return 2;
    }
    vl_engine_config cfg;
    vl_engine_config_default(&cfg);
    size_t n = strlen(argv[1]);
    cfg.random_weights = n > 5 && strcmp(argv[1] + n - 5, ".json") == 0;
    *(cfg.random_weights ? &cfg.config_path : &cfg.model_dir) = argv[1];
    if (argc > 4 && strcmp(argv[4], "-") != 0) cfg.tokenizer_path = argv[4];
    if (argc > 5) cfg.backend = strcmp(argv[5], "cpu") == 0 ? VL_BACKEND_CPU : VL_BACKEND_CUDA;
    vl_engine *e = vl_engine_open(&cfg);
    int rc = e ? 0 : -1;
    for (int i = 0; i < 2 && rc == 0; i++) {
        vl_image_arg image = {.path = argv[2 + i], .repeat = 1};
        vl_request rq;
        vl_request_default(&rq);
        rq.images = &image;
        rq.n_images = 1;
        rq.prompt = "What is in this picture?";
        rq.max_tokens = 24;
        vl_callbacks cb = {.on_text = print_piece};
        vl_result r;
        printf("request %d (%s): ", i + 1, image.path);
        if ((rc = vl_engine_run(e, &rq, &cb, &r)) != 0) break;
        printf("\n  %d prompt tokens, %d generated in %.3f s | weights %zu bytes, placed %d "
               "time(s) | peak tracked %zu bytes, predicted %zu\n",
               r.prompt_tokens, r.n_tokens, r.total_s, r.weights_bytes, r.weight_loads,
               r.weights_bytes + r.arena_peak_total, r.plan.total);
        vl_result_free(&r);
    }
    if (rc) fprintf(stderr, "error: %s\n", vl_error_get());
    vl_engine_close(e);
    return rc ? 1 : 0;
}
