/* test_engine_golden.c: the CPU engine against transformers (float32) on small checkpoints.
 *
 * Goldens (tests/reference/make_model_goldens.py, run on the GPU machine) hold, for a fixed
 * request: the token ids of the chat template, the image grids, M-RoPE positions, samples of
 * the pixel values, the argmax at every prompt position, the last position's logits and 24
 * greedy tokens. The engine must give the ids, grids and positions exactly, every argmax and
 * every greedy token equal, and logits with cosine >= 0.99999. Each case runs twice: with one
 * prefill chunk and with 7-token chunks (images then straddle chunk boundaries).
 *
 * The Qwen2.5-VL goldens (make_qwen2_5_vl_goldens.py: tiny25-a, tiny25-b) hold more: each
 * image's window index and boundaries (equal exactly) and every position's logits (cosine >=
 * 0.99999 and the same argmax at each).
 *
 * Also the tiny-qwen2vl/tiny-bf16 case (tests/fixtures/tiny-qwen2vl): explicit ids, one
 * image, 8 greedy tokens. */
#include "engine/models/models.h"
#include "vltest.h"

#include <cJSON.h>

static cJSON *load_json(const char *path) {
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(path, 64 << 20, &text, &len)) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    return j;
}

static int32_t *json_ints(const cJSON *arr, int *n) {
    *n = cJSON_GetArraySize(arr);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    for (int i = 0; i < *n; i++) v[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return v;
}

static float *read_f32(const char *path, int n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = malloc((size_t)n * sizeof *v);
    size_t got = fread(v, sizeof *v, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(v);
        return NULL;
    }
    return v;
}

static double cosine(const float *a, const float *b, int n, double *max_abs) {
    double ab = 0, aa = 0, bb = 0;
    *max_abs = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        double d = fabs((double)a[i] - b[i]);
        if (d > *max_abs) *max_abs = d;
    }
    return ab / sqrt(aa * bb);
}

/* The last logits' cosine bar. 0.99999 everywhere except the LLM.int8 golden, whose matmul
 * quantizes activations to int8 per row (vector-wise) while vlrun's int8 is weight-only: that
 * alone moves the cosine to about 0.9998 on this model (argmax and greedy tokens still equal). */
static double min_cosine = 0.99999;

/* Prefill + `n_greedy` greedy tokens; compares with the golden arrays. */
static void check_generation(vl_model *m, const vl_prompt *p, int chunk, const cJSON *argmax_j,
                             const cJSON *greedy_j, const char *logits_path, const char *tag) {
    const vl_config *c = &m->cfg;
    int64_t max_patches = 0;
    for (int i = 0; i < p->n_images; i++)
        if (p->images[i].n_patches > max_patches) max_patches = p->images[i].n_patches;
    int n_arg = 0, n_greedy = 0;
    int32_t *want_arg = json_ints(argmax_j, &n_arg);
    int32_t *want_greedy = json_ints(greedy_j, &n_greedy);
    VT_CHECK_INT(n_arg, p->n);
    vl_session s;
    int rc = vl_session_init(&s, m, p->n + n_greedy, chunk, max_patches);
    VT_CHECKF(rc == 0, "%s: session: %s", tag, vl_error_get());
    if (rc) goto out;
    float *logits = malloc((size_t)c->vocab * sizeof *logits);
    int32_t *arg = malloc((size_t)p->n * sizeof *arg);
    rc = vl_prefill(&s.seq, p, logits, arg);
    VT_CHECKF(rc == 0, "%s: prefill: %s", tag, vl_error_get());
    if (!rc) {
        int mismatches = 0;
        for (int i = 0; i < p->n && i < n_arg; i++) mismatches += arg[i] != want_arg[i];
        VT_CHECKF(mismatches == 0, "%s: %d of %d argmax positions differ", tag, mismatches, p->n);
        float *ref = read_f32(logits_path, c->vocab);
        VT_CHECKF(ref != NULL, "%s: cannot read %s", tag, logits_path);
        if (ref) {
            double max_abs, cs = cosine(logits, ref, c->vocab, &max_abs);
            VT_CHECKF(cs >= min_cosine, "%s: logits cosine %.7f (max abs diff %.3g)", tag, cs,
                      max_abs);
            printf("%s: logits cosine %.9f, max abs diff %.3g\n", tag, cs, max_abs);
            free(ref);
        }
        int32_t tok = vl_argmax(logits, c->vocab);
        int same = 0;
        for (int k = 0; k < n_greedy; k++) {
            same += tok == want_greedy[k];
            if (tok != want_greedy[k]) {
                fprintf(stderr, "%s: greedy token %d: got %d, want %d\n", tag, k, tok,
                        want_greedy[k]);
                break;
            }
            if (k + 1 < n_greedy) {
                if (vl_decode_step(&s.seq, tok, logits)) break;
                tok = vl_argmax(logits, c->vocab);
            }
        }
        VT_CHECKF(same == n_greedy, "%s: %d of %d greedy tokens equal", tag, same, n_greedy);
    }
    free(logits);
    free(arg);
    vl_session_free(&s);
out:
    free(want_arg);
    free(want_greedy);
}

/* Qwen2.5-VL goldens: each image's window index and window boundaries as transformers'
 * get_window_index makes them, exactly. */
static void check_windows(const char *name, const cJSON *g, const vl_config *c, const vl_pixels *px,
                          int n_img) {
    const cJSON *wins = cJSON_GetObjectItem(g, "windows");
    VT_CHECKF(cJSON_GetArraySize(wins) == n_img, "%s: %d window sets for %d images", name,
              cJSON_GetArraySize(wins), n_img);
    for (int i = 0; i < n_img && i < cJSON_GetArraySize(wins); i++) {
        const cJSON *w = cJSON_GetArrayItem(wins, i);
        int n_index = 0, n_bound = 0, n_seg = 0;
        int32_t *want_index = json_ints(cJSON_GetObjectItem(w, "index"), &n_index);
        int32_t *want_seg = json_ints(cJSON_GetObjectItem(w, "seg"), &n_bound);
        int64_t tokens = px[i].n_patches / (c->merge * c->merge);
        int32_t *index = calloc((size_t)tokens + 1, sizeof *index);
        int32_t *seg = calloc((size_t)tokens + 2, sizeof *seg);
        vl_qwen2_5_vl_windows(c, px[i].grid_t, px[i].grid_h, px[i].grid_w, index, seg, &n_seg);
        VT_CHECKF(n_index == tokens && n_bound == n_seg + 1,
                  "%s image %d: %lld tokens in %d windows, transformers %d in %d", name, i,
                  (long long)tokens, n_seg, n_index, n_bound - 1);
        int bad = 0;
        for (int k = 0; k < n_index && k < tokens; k++) bad += index[k] != want_index[k];
        for (int k = 0; k < n_bound && k <= n_seg; k++) bad += seg[k] != want_seg[k];
        VT_CHECKF(bad == 0, "%s image %d: %d window entries differ", name, i, bad);
        printf("%s image %d (grid %dx%d): %d windows, %lld tokens as transformers\n", name, i,
               px[i].grid_h, px[i].grid_w, n_seg, (long long)tokens);
        free(index), free(seg), free(want_index), free(want_seg);
    }
}

typedef struct {
    const uint16_t *ref; /* [n, V] float16 */
    int64_t n;
    int V;
    double worst;
    int64_t worst_pos, bad_argmax, near_ties;
} every_position;

static int compare_row(void *ctx, int64_t pos, const float *logits, int n) {
    every_position *e = ctx;
    if (pos >= e->n || n != e->V) return -1;
    double ab = 0, aa = 0, bb = 0;
    int ref_arg = 0;
    for (int i = 0; i < n; i++) {
        double r = vl_f16_to_f32(e->ref[pos * n + i]);
        ab += logits[i] * r, aa += (double)logits[i] * logits[i], bb += r * r;
        if (r > vl_f16_to_f32(e->ref[pos * n + ref_arg])) ref_arg = i;
    }
    double cs = ab / sqrt(aa * bb);
    if (cs < e->worst) e->worst = cs, e->worst_pos = pos;
    /* float16 storage moves each reference logit by up to half its ulp (2^-11 relative): our
     * argmax is wrong only where the reference puts it more than one ulp below its own max */
    const int our_arg = vl_argmax(logits, n);
    float top = vl_f16_to_f32(e->ref[pos * n + ref_arg]);
    float ours = vl_f16_to_f32(e->ref[pos * n + our_arg]);
    if (our_arg != ref_arg) {
        if (top - ours > fabsf(top) * 0x1p-10f)
            e->bad_argmax++;
        else
            e->near_ties++;
    }
    return 0;
}

/* The logits of every prompt position (the golden's logits_all_file, float16) against the
 * engine's: cosine >= min_cosine at each (float16 storage moves it by < 1e-7) and the same
 * argmax. */
static void check_every_position(vl_model *m, const vl_prompt *p, const char *path,
                                 const char *name) {
    int V = m->cfg.vocab;
    char *raw = NULL;
    size_t len = 0;
    int rc = vl_read_file(path, 64 << 20, &raw, &len);
    VT_CHECKF(rc == 0 && len == (size_t)p->n * V * 2, "%s: %s: %zu bytes for %d positions", name,
              path, len, p->n);
    if (rc || len != (size_t)p->n * V * 2) {
        free(raw);
        return;
    }
    every_position e = {(const uint16_t *)raw, p->n, V, 1.0, -1, 0, 0};
    int64_t max_patches = 0;
    for (int i = 0; i < p->n_images; i++)
        if (p->images[i].n_patches > max_patches) max_patches = p->images[i].n_patches;
    vl_session s;
    rc = vl_session_init(&s, m, p->n + 1, 16, max_patches);
    if (!rc) rc = vl_prefill_each(&s.seq, p, compare_row, &e);
    VT_CHECKF(rc == 0, "%s: prefill: %s", name, vl_error_get());
    VT_CHECKF(e.worst >= min_cosine, "%s: logits cosine %.7f at position %lld", name, e.worst,
              (long long)e.worst_pos);
    VT_CHECKF(e.bad_argmax == 0, "%s: argmax differs at %lld positions", name,
              (long long)e.bad_argmax);
    printf("%s: every position (%d): worst cosine %.9f, argmax equal (%lld within the float16 "
           "reference's rounding)\n",
           name, p->n, e.worst, (long long)e.near_ties);
    vl_session_free(&s);
    free(raw);
}

/* tests/fixtures/models/golden_<name>.json: the chat-template path, as vlrun uses it. */
/* The golden's pixel samples (indices into the concatenation of every image's pixel values):
 * at least 99% exact, none more than one level off. */
static void check_pixel_samples(const char *name, const cJSON *g, const vl_pixels *px, int n_img) {
    const cJSON *samples = cJSON_GetObjectItem(g, "pixel_samples");
    int exact = 0, n_samples = cJSON_GetArraySize(samples);
    double worst = 0;
    for (int k = 0; k < n_samples; k++) {
        const cJSON *sm = cJSON_GetArrayItem(samples, k);
        int64_t idx = (int64_t)cJSON_GetArrayItem(sm, 0)->valuedouble;
        double want = cJSON_GetArrayItem(sm, 1)->valuedouble;
        for (int i = 0; i < n_img; i++) {
            int64_t sz = px[i].n_patches * px[i].patch_dim;
            if (idx < sz) {
                double d = fabs(px[i].pixels ? px[i].pixels[idx] - want : 1e9);
                exact += d <= 1e-5;
                if (d > worst) worst = d;
                break;
            }
            idx -= sz;
        }
    }
    printf("%s: pixel samples exact %d/%d, worst %.4g\n", name, exact, n_samples, worst);
    VT_CHECKF(worst <= 1.01 / 255 / 0.26, "%s: a pixel value is %.4g off (more than 1 level)", name,
              worst);
    VT_CHECKF(exact * 100 >= n_samples * 99, "%s: only %d of %d pixel samples exact", name, exact,
              n_samples);
}

static void golden_model(const char *name) {
    char path[4096], dir[4096], tok[4096];
    snprintf(path, sizeof path, "%s", vt_fixture("models/golden_"));
    snprintf(path + strlen(path), sizeof path - strlen(path), "%s.json", name);
    cJSON *g = load_json(path);
    if (!g) {
        VT_SKIP("model golden absent (made on the GPU machine by make_model_goldens.py)");
        vl_error_clear();
        return;
    }
    const char *tdir = getenv("VL_TOKENIZER_DIR");
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", tdir ? tdir : ".cache/tokenizer");
    snprintf(dir, sizeof dir, "%s", vt_fixture("models/"));
    snprintf(dir + strlen(dir), sizeof dir - strlen(dir), "%s", name);

    vl_engine_config o;
    vl_engine_config_default(&o);
    o.model_dir = dir;
    o.tokenizer_path = tok;
    o.backend = VL_BACKEND_CPU;
    vl_model m;
    int rc = vl_model_load(&m, &o, vl_backend_cpu());
    VT_CHECKF(rc == 0, "%s: load: %s", name, vl_error_get());
    if (rc) {
        vl_model_free(&m);
        cJSON_Delete(g);
        return;
    }
    const cJSON *imgs = cJSON_GetObjectItem(g, "images");
    const cJSON *src_j = cJSON_GetObjectItem(g, "image_src");
    int n_img = cJSON_GetArraySize(imgs), n_src = 0;
    int32_t *src32 = json_ints(src_j, &n_src);
    vl_pixels *px = calloc((size_t)n_img, sizeof *px);
    vl_pixels *uniq = calloc((size_t)n_img, sizeof *uniq);
    int *src = calloc((size_t)n_img, sizeof *src);
    const cJSON *grids = cJSON_GetObjectItem(g, "grids");
    for (int i = 0; i < n_img; i++) {
        src[i] = src32[i];
        if (!uniq[src[i]].pixels) {
            char ip[4096];
            snprintf(ip, sizeof ip, "%s/%s", vt_fixture("models/images"),
                     cJSON_GetArrayItem(imgs, i)->valuestring);
            vl_image im;
            rc = vl_image_load(&im, ip);
            VT_CHECKF(rc == 0, "%s: %s", ip, vl_error_get());
            if (rc) continue;
            rc = vl_preprocess_image(&im, &m.pre, &uniq[src[i]]);
            VT_CHECKF(rc == 0, "%s: preprocess: %s", ip, vl_error_get());
            vl_image_free(&im);
        }
        px[i] = uniq[src[i]];
        const cJSON *gr = cJSON_GetArrayItem(grids, i);
        VT_CHECK_INT(px[i].grid_t, cJSON_GetArrayItem(gr, 0)->valueint);
        VT_CHECK_INT(px[i].grid_h, cJSON_GetArrayItem(gr, 1)->valueint);
        VT_CHECK_INT(px[i].grid_w, cJSON_GetArrayItem(gr, 2)->valueint);
    }
    check_pixel_samples(name, g, px, n_img);
    if (cJSON_GetObjectItem(g, "windows")) check_windows(name, g, &m.cfg, px, n_img);

    const char *prompt = cJSON_GetObjectItem(g, "prompt")->valuestring;
    vl_prompt p;
    rc = vl_prompt_build(&p, &m, prompt, px, src, n_img);
    VT_CHECKF(rc == 0, "%s: prompt: %s", name, vl_error_get());
    if (!rc) {
        int n_ids = 0;
        int32_t *want = json_ints(cJSON_GetObjectItem(g, "input_ids"), &n_ids);
        VT_CHECK_INT(p.n, n_ids);
        int diff = 0;
        for (int i = 0; i < p.n && i < n_ids; i++) diff += p.ids[i] != want[i];
        VT_CHECKF(diff == 0, "%s: %d prompt ids differ from transformers'", name, diff);
        free(want);
        const cJSON *pos = cJSON_GetObjectItem(g, "positions");
        if (cJSON_IsArray(pos)) {
            int bad = 0;
            for (int r = 0; r < 3; r++) {
                int n_row = 0;
                int32_t *row = json_ints(cJSON_GetArrayItem(pos, r), &n_row);
                for (int i = 0; i < p.n && i < n_row; i++) bad += p.pos[r * p.n + i] != row[i];
                free(row);
            }
            VT_CHECKF(bad == 0, "%s: %d M-RoPE positions differ", name, bad);
            VT_CHECK_INT(p.rope_delta, cJSON_GetObjectItem(g, "rope_delta")->valueint);
        }
        char lp[4096];
        snprintf(lp, sizeof lp, "%s/%s", vt_fixture("models"),
                 cJSON_GetObjectItem(g, "logits_file")->valuestring);
        char tag[128];
        snprintf(tag, sizeof tag, "%s chunk=all", name);
        check_generation(&m, &p, p.n, cJSON_GetObjectItem(g, "argmax_every_position"),
                         cJSON_GetObjectItem(g, "greedy"), lp, tag);
        snprintf(tag, sizeof tag, "%s chunk=7", name);
        check_generation(&m, &p, 7, cJSON_GetObjectItem(g, "argmax_every_position"),
                         cJSON_GetObjectItem(g, "greedy"), lp, tag);
        const cJSON *all = cJSON_GetObjectItem(g, "logits_all_file");
        if (cJSON_IsString(all)) {
            snprintf(lp, sizeof lp, "%s/%s", vt_fixture("models"), all->valuestring);
            check_every_position(&m, &p, lp, name);
        }
        vl_prompt_free(&p);
    }
    for (int i = 0; i < n_img; i++) vl_pixels_free(&uniq[i]);
    free(uniq);
    free(px);
    free(src);
    free(src32);
    vl_model_free(&m);
    cJSON_Delete(g);
}

/* The tiny-qwen2vl cases (tests/fixtures/tiny-qwen2vl, from the project's shared fixtures):
 * explicit ids, one 140x84 image; `which` is "bf16" (tiny-bf16), "nf4" (tiny-bnb-nf4: bitsandbytes
 * 4-bit, double quantization, as transformers saves it) or "int8" (tiny-bnb-int8). transformers
 * computed the quantized goldens with fp32 activations through bitsandbytes' dequantized weights;
 * int8 with LLM.int8's matmul, which also quantizes activations. */
static void golden_shared_tiny(const char *which) {
    cJSON *g = load_json(vt_fixture("tiny-qwen2vl/golden.json"));
    VT_CHECKF(g != NULL, "tiny-qwen2vl/golden.json: %s", vl_error_get());
    if (!g) return;
    vl_engine_config o;
    vl_engine_config_default(&o);
    char dir[64], logits_rel[96], tag[64];
    snprintf(dir, sizeof dir, "tiny-qwen2vl/tiny-%s%s", strcmp(which, "bf16") ? "bnb-" : "", which);
    snprintf(logits_rel, sizeof logits_rel, "tiny-qwen2vl/logits_%s.f32",
             !strcmp(which, "bf16")  ? "bf16weights"
             : !strcmp(which, "nf4") ? "bnb_nf4"
                                     : "bnb_int8");
    snprintf(tag, sizeof tag, "tiny-%s", which);
    o.model_dir = vt_fixture(dir);
    vl_model m;
    int rc = vl_model_load(&m, &o, vl_backend_cpu());
    VT_CHECKF(rc == 0, "%s load: %s", tag, vl_error_get());
    if (!rc && strcmp(which, "bf16") != 0) {
        /* the checkpoint's Linears must have arrived quantized, not converted */
        vl_dtype want = !strcmp(which, "nf4") ? VL_DTYPE_NF4 : VL_DTYPE_Q8ROW;
        const vl_qwen2_vl_text_weights *tw = m.text_w;
        const vl_qwen2_vl_vision_weights *vw = m.vision_w;
        VT_CHECKF(tw->layers[0].q.dtype == want && vw->blocks[0].qkv.dtype == want &&
                      vw->merger_fc2.dtype == want && tw->lm_head.dtype != want,
                  "%s: q_proj is %s", tag, vl_dtype_name(tw->layers[0].q.dtype));
    }
    vl_image im;
    vl_pixels px;
    memset(&px, 0, sizeof px);
    if (!rc) {
        rc = vl_image_load(&im, vt_fixture("tiny-qwen2vl/tiny_input_140x84.png"));
        VT_CHECKF(rc == 0, "%s", vl_error_get());
    }
    if (!rc) {
        rc = vl_preprocess_image(&im, &m.pre, &px);
        vl_image_free(&im);
        VT_CHECKF(rc == 0, "%s", vl_error_get());
    }
    if (!rc) {
        const cJSON *gr = cJSON_GetArrayItem(cJSON_GetObjectItem(g, "grid"), 0);
        VT_CHECK_INT(px.grid_h, cJSON_GetArrayItem(gr, 1)->valueint);
        VT_CHECK_INT(px.grid_w, cJSON_GetArrayItem(gr, 2)->valueint);
        int n = 0;
        int32_t *ids = json_ints(cJSON_GetObjectItem(g, "input_ids"), &n);
        vl_prompt p;
        int src = 0;
        rc = vl_prompt_from_ids(&p, &m.cfg, ids, n, &px, &src, 1);
        VT_CHECKF(rc == 0, "%s prompt: %s", tag, vl_error_get());
        if (!rc) {
            const cJSON *res = cJSON_GetObjectItem(cJSON_GetObjectItem(g, "results"), which);
            char tag5[80];
            snprintf(tag5, sizeof tag5, "%s chunk=5", tag);
            check_generation(&m, &p, p.n, cJSON_GetObjectItem(res, "argmax_every_position"),
                             cJSON_GetObjectItem(res, "greedy"), vt_fixture(logits_rel), tag);
            check_generation(&m, &p, 5, cJSON_GetObjectItem(res, "argmax_every_position"),
                             cJSON_GetObjectItem(res, "greedy"), vt_fixture(logits_rel), tag5);
            vl_prompt_free(&p);
        }
        free(ids);
        vl_pixels_free(&px);
    }
    vl_model_free(&m);
    cJSON_Delete(g);
}

/* The decode loop on the backend (vl_decode_begin / vl_decode_next: device-state path, here on
 * the CPU backend) with q/k/v and gate/up fused into one GEMV each must give the tokens of the
 * unfused layers: the fused views only concatenate rows, every output is computed the same way.
 * --quant int8 makes the CPU backend place (copy) the weights, which is where fusion happens. */
static void fused_decode_matches(void) {
    char tok[4096], dir[4096], img[4096];
    const char *tdir = getenv("VL_TOKENIZER_DIR");
    snprintf(tok, sizeof tok, "%s/small_tokenizer.json", tdir ? tdir : ".cache/tokenizer");
    snprintf(dir, sizeof dir, "%s", vt_fixture("models/tiny-a"));
    snprintf(img, sizeof img, "%s", vt_fixture("models/images/img_b_100x60.png"));
    vl_engine_config o;
    vl_engine_config_default(&o);
    o.model_dir = dir;
    o.tokenizer_path = tok;
    o.quant = VL_QUANT_INT8;
    vl_model m;
    int rc = vl_model_load(&m, &o, vl_backend_cpu());
    VT_CHECKF(rc == 0, "tiny-a int8: %s", vl_error_get());
    vl_image im;
    vl_pixels px;
    memset(&px, 0, sizeof px);
    if (!rc) rc = vl_image_load(&im, img);
    if (!rc) {
        rc = vl_preprocess_image(&im, &m.pre, &px);
        vl_image_free(&im);
    }
    vl_prompt p;
    int src = 0;
    if (!rc) rc = vl_prompt_build(&p, &m, "Describe it.", &px, &src, 1);
    VT_CHECKF(rc == 0, "%s", vl_error_get());
    if (!rc) {
        vl_qwen2_vl_text_weights *tw = m.text_w;
        VT_CHECKF(tw->layers[0].qkv.data && tw->layers[0].gate_up.data,
                  "placed int8 weights were not fused");
        enum { N = 10 };
        int32_t toks[2][N];
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1)
                for (int l = 0; l < m.cfg.n_layers; l++) {
                    tw->layers[l].qkv.data = NULL;
                    tw->layers[l].gate_up.data = NULL;
                }
            vl_session s;
            vl_shape sh = {
                .prompt_tokens = p.n, .max_tokens = N, .chunk = 2048, .max_patches = px.n_patches};
            rc = vl_session_start(&s, &m, &sh) || vl_prefill(&s.seq, &p, NULL, NULL) ||
                 vl_decode_begin(&s.seq, 0.0f, 0);
            for (int k = 1; !rc && k < N; k++) rc = vl_decode_next(&s.seq);
            VT_CHECKF(rc == 0, "decode: %s", vl_error_get());
            vl_decode_tokens(&s.seq, toks[pass], N);
            vl_session_free(&s);
        }
        int same = 0;
        for (int k = 0; k < N; k++) same += toks[0][k] == toks[1][k];
        VT_CHECKF(same == N, "fused and unfused decode differ at %d of %d tokens", N - same, N);
        vl_prompt_free(&p);
    }
    vl_pixels_free(&px);
    vl_model_free(&m);
}

int main(void) {
    fused_decode_matches();
    golden_shared_tiny("bf16");
    golden_shared_tiny("nf4");
    min_cosine = 0.9995;
    golden_shared_tiny("int8");
    min_cosine = 0.99999;
    golden_model("tiny-a");
    golden_model("tiny-b");
    golden_model("tiny25-a"); /* Qwen2.5-VL (make_qwen2_5_vl_goldens.py) */
    golden_model("tiny25-b");
    return vt_finish();
}
