/* plan_input.c: what a capacity plan needs to know about a request, gathered without weights or
 * a device (vlrun plan, and the prediction line of vlrun sweep): the config, the prompt's text
 * tokens, the images' sizes after smart_resize, and a page size for "how many fit".
 *
 * The text tokens are counted as the run counts them (the prompt built with its system prompt
 * and answer prefix, no image) when a tokenizer is there; without one they are bounded from
 * above: one token per special token of the chat template and one per byte of its text, of the
 * prompt, of a --system (beside the default's bytes) and of an --assistant-prefix (a byte-level
 * BPE never makes more tokens than bytes). For 7B the bound costs ~3 MiB of KV cache over the
 * exact count. */
#include "cli/cli.h"

#include <stdlib.h>

/* "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" TEXT
 * "<|im_end|>\n<|im_start|>assistant\n": 5 special tokens and 52 bytes around the text. */
#define TEMPLATE_TOKENS_MAX (5 + 52)

void vl_plan_input_free(vl_plan_input *in) {
    free(in->imgs);
    memset(in, 0, sizeof *in);
}

/* The model's name for reports: the checkpoint folder's, or the config file's without .json. */
static void model_name(char *out, size_t cap, const vl_options *o) {
    const char *path = o->engine.model_dir     ? o->engine.model_dir
                       : o->engine.config_path ? o->engine.config_path
                                               : "model";
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t n = len - start;
    if (!o->engine.model_dir && n == 11 && strncmp(path + start, "config.json", 11) == 0 &&
        start > 1) {
        len = start - 1; /* DIR/config.json: the folder's name */
        while (len > 1 && path[len - 1] == '/') len--;
        start = len;
        while (start > 0 && path[start - 1] != '/') start--;
        n = len - start;
    } else if (!o->engine.model_dir && n > 5 && strncmp(path + len - 5, ".json", 5) == 0) {
        n -= 5;
    }
    snprintf(out, cap, "%.*s", (int)n, path + start);
}

static int64_t len_of(const char *s) {
    return s ? (int64_t)strlen(s) : 0;
}

static int count_text_tokens(vl_plan_input *in, const vl_model *m, const vl_request *rq) {
    if (!m->tok) {
        in->text_tokens = TEMPLATE_TOKENS_MAX + len_of(rq->prompt) + len_of(rq->system) +
                          len_of(rq->assistant_prefix);
        in->text_exact = 0;
        return 0;
    }
    vl_prompt p;
    if (vl_prompt_build_system(&p, m, rq->system, rq->prompt, rq->assistant_prefix, NULL, NULL, 0))
        return -1;
    in->text_tokens = p.n;
    in->text_exact = 1;
    vl_prompt_free(&p);
    return 0;
}

/* The --image-size page: its grid as the preprocessor would make it. */
static int page_image(vl_plan_input *in, const vl_preproc_config *pre, int w, int h,
                      vl_plan_image *out) {
    const int factor = in->cfg.patch * in->cfg.merge;
    if (vl_smart_resize(h, w, factor, pre->min_pixels, pre->max_pixels, &in->page_rh, &in->page_rw))
        return -1;
    vl_pixels px;
    memset(&px, 0, sizeof px);
    px.grid_t = 1; /* one image: two identical frames make one temporal patch */
    px.grid_h = in->page_rh / in->cfg.patch;
    px.grid_w = in->page_rw / in->cfg.patch;
    px.n_patches = (int64_t)px.grid_h * px.grid_w;
    vl_plan_image_of(&in->cfg, &px, out);
    in->page_w = w;
    in->page_h = h;
    return 0;
}

static int load_images(vl_plan_input *in, const vl_options *o, const vl_preproc_config *pre,
                       int page_w, int page_h) {
    vl_image_set is;
    memset(&is, 0, sizeof is);
    int rc = 0;
    vl_callbacks cb = {.on_notice = o->quiet ? NULL : vl_cli_notice};
    if (o->n_image_args > 0 && vl_image_set_load(&is, o->images, o->n_image_args, pre, &cb))
        rc = -1;
    in->n_requested = rc ? 0 : is.n_list;
    in->imgs = rc ? NULL : calloc((size_t)in->n_requested + 1, sizeof *in->imgs);
    if (!rc && !in->imgs) rc = vl_error_set("out of host memory");
    for (int i = 0; !rc && i < in->n_requested; i++)
        vl_plan_image_of(&in->cfg, &is.list[i], &in->imgs[i]);
    vl_plan_image *page = rc ? NULL : &in->imgs[in->n_requested];
    if (!rc && page_w > 0) {
        rc = page_image(in, pre, page_w, page_h, page);
    } else if (!rc && in->n_requested > 0) {
        *page = in->imgs[in->n_requested - 1];
        in->page_rw = is.list[is.n_list - 1].resized_w;
        in->page_rh = is.list[is.n_list - 1].resized_h;
    } else if (!rc) {
        rc = vl_error_set("no image: give IMAGE [xN] or --image-size WxH (e.g. 872x1242)");
    }
    vl_image_set_free(&is);
    return rc;
}

int vl_plan_input_load(vl_plan_input *in, const vl_options *o, int page_w, int page_h) {
    memset(in, 0, sizeof *in);
    vl_engine_config po = o->engine;
    po.random_weights = 1; /* shapes from the config; no checkpoint is opened */
    vl_model m;
    int rc = vl_model_open(&m, &po);
    if (!rc) {
        in->cfg = m.cfg;
        model_name(in->model_name, sizeof in->model_name, o);
        rc = count_text_tokens(in, &m, &o->request);
    }
    if (!rc) rc = load_images(in, o, &m.pre, page_w, page_h);
    vl_model_free(&m);
    if (rc) vl_plan_input_free(in);
    return rc;
}

static void request_for(const vl_plan_input *in, const vl_options *o, const vl_backend_caps *be,
                        vl_quant quant, int kv_int8, vl_plan_request *rq) {
    vl_engine_config q = o->engine;
    q.quant = quant;
    q.kv_int8 = kv_int8;
    vl_plan_request_init(rq, &q, be, 0, vl_options_max_tokens(o), o->engine.chunk, 0);
}

void vl_plan_input_plan(const vl_plan_input *in, const vl_options *o, const vl_backend_caps *be,
                        vl_quant quant, int kv_int8, int k, size_t budget, vl_mem_plan *out) {
    vl_plan_request rq;
    request_for(in, o, be, quant, kv_int8, &rq);
    vl_plan_request_set_images(&rq, in->text_tokens, in->imgs, in->n_requested + 1, k);
    vl_plan_choose(&in->cfg, &rq, budget, out); /* the layout the run takes (engine/pipeline.c) */
}

int vl_plan_input_max_images(const vl_plan_input *in, const vl_options *o,
                             const vl_backend_caps *be, vl_quant quant, int kv_int8, size_t budget,
                             int *by_positions) {
    const int cap = 100000; /* the most images one request may hold (images.c) */
    const int n = in->n_requested + 1;
    int by_pos = vl_plan_images_within_context(&in->cfg, in->text_tokens, in->imgs, n,
                                               vl_options_max_tokens(o), cap);
    vl_plan_request rq;
    request_for(in, o, be, quant, kv_int8, &rq);
    /* past what fits with the copy and the larger chunk, the engine runs without them (the
     * request's chunk is --chunk's; auto, 0, plans as VL_CHUNK_SMALL) */
    rq.shape.kv_int8_copy = 0;
    int by_mem = vl_plan_images_that_fit(&in->cfg, rq, in->text_tokens, in->imgs, n,
                                         by_pos > 0 ? by_pos + 1 : 1, budget);
    if (by_positions) *by_positions = by_mem > by_pos;
    return by_mem < by_pos ? by_mem : by_pos;
}
