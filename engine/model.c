/* model.c: a Qwen2-VL model on a backend: config, preprocessor config, tokenizer and the
 * weights bound by name.
 *
 * Tensor names come in two spellings (spec 1.3): the published one (`model.layers.*`,
 * `visual.*`) and the one re-saved by transformers >= 4.52 (`model.language_model.layers.*`,
 * `model.visual.*`); both are accepted. Every tensor's dtype and shape are checked against the
 * config before anything runs. Tied embeddings (Qwen2-VL-2B) reuse the embedding table as the
 * LM head.
 *
 * The CPU backend reads the weights in place from the mmapped files. Other backends get a copy
 * in one block of backend memory. --random-weights synthesizes them instead (weights_random.c).
 */
#include "engine/engine.h"

#include <stdlib.h>
#include <sys/stat.h>

typedef enum { PART_TEXT, PART_VISION, PART_TOP } name_part;

/* The tensor called `rest` in part `part`, in whichever spelling the checkpoint uses. */
static const vl_tensor *find_spelled(const vl_checkpoint *ck, name_part part, const char *rest,
                                     char *shown, size_t shown_len) {
    static const char *text_prefixes[] = {"model.", "model.language_model."};
    static const char *vision_prefixes[] = {"visual.", "model.visual."};
    static const char *top_prefixes[] = {""};
    const char **pre = part == PART_TEXT ? text_prefixes
                       : part == PART_VISION ? vision_prefixes
                                             : top_prefixes;
    int n_pre = part == PART_TOP ? 1 : 2;
    char name[512];
    for (int i = 0; i < n_pre; i++) {
        snprintf(name, sizeof name, "%s%s", pre[i], rest);
        const vl_tensor *t = vl_checkpoint_find(ck, name);
        if (t) {
            snprintf(shown, shown_len, "%s", name);
            return t;
        }
    }
    snprintf(shown, shown_len, "%s%s", pre[0], rest);
    return NULL;
}

static int check_float_dtype(const vl_tensor *t, const char *name) {
    if (t->dtype == VL_DTYPE_BF16 || t->dtype == VL_DTYPE_F16 || t->dtype == VL_DTYPE_F32)
        return 0;
    return vl_error_set("tensor %s has dtype %s; expected BF16, F16 or F32 (quantized "
                        "checkpoints need --quant support for their format)",
                        name, vl_dtype_name(t->dtype));
}

static int shape_error(const vl_tensor *t, const char *name, const char *expected) {
    char got[128] = "";
    size_t len = 0;
    for (int i = 0; i < t->ndim && len < sizeof got - 24; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", i ? ", " : "",
                                (long long)t->shape[i]);
    return vl_error_set("tensor %s has shape [%s]; the config expects [%s]", name, got, expected);
}

/* One walk over every parameter (bind_all) serves three modes:
 *   BIND_CHECKPOINT  look each tensor up in the checkpoint, check dtype and shape, point at it;
 *   BIND_SHAPES      no checkpoint (--random-weights): record shapes, bf16, no data yet;
 *   BIND_VISIT       leave the fields as they are.
 * After binding, fn (if set) sees each parameter with its published name. */
typedef enum { BIND_CHECKPOINT, BIND_SHAPES, BIND_VISIT } bind_mode;

typedef struct {
    bind_mode mode;
    const vl_checkpoint *ck;
    const char *where; /* checkpoint path for messages */
    size_t bytes;
    vl_weight_fn fn;
    void *ctx;
} binder;

static int after_bind(binder *b, name_part part, const char *rest, const char *kind,
                      const void **data, vl_dtype *dtype, int64_t n, int is_vec) {
    if (!b->fn) return 0;
    char name[512];
    snprintf(name, sizeof name, "%s%s",
             part == PART_TEXT ? "model." : part == PART_VISION ? "visual." : "", rest);
    return b->fn(b->ctx, name, kind, data, dtype, n, is_vec);
}

static const vl_tensor *lookup(binder *b, name_part part, const char *rest, char *name,
                               size_t name_len) {
    const vl_tensor *t = find_spelled(b->ck, part, rest, name, name_len);
    if (!t)
        vl_error_set("tensor %s is missing from %s (is this a Qwen2-VL checkpoint?)", name,
                     b->where);
    else if (check_float_dtype(t, name))
        return NULL;
    return t;
}

static int bind_matrix(binder *b, name_part part, const char *rest, int64_t rows, int64_t cols,
                       vl_weight *w) {
    char name[512];
    if (b->mode == BIND_SHAPES) {
        *w = (vl_weight){NULL, VL_DTYPE_BF16, rows, cols};
    } else if (b->mode == BIND_CHECKPOINT) {
        const vl_tensor *t = lookup(b, part, rest, name, sizeof name);
        if (!t) return -1;
        if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
            char exp[64];
            snprintf(exp, sizeof exp, "%lld, %lld", (long long)rows, (long long)cols);
            return shape_error(t, name, exp);
        }
        *w = (vl_weight){t->data, t->dtype, rows, cols};
    }
    b->bytes += (size_t)(rows * cols) * vl_dtype_size(w->dtype);
    const char *kind = strstr(rest, "embed_tokens") ? "embed"
                       : strstr(rest, "lm_head")    ? "lm_head"
                                                    : "linear";
    return after_bind(b, part, rest, kind, &w->data, &w->dtype, rows * cols, 0);
}

static int bind_vec(binder *b, name_part part, const char *rest, int64_t n, vl_vec *v) {
    char name[512];
    if (b->mode == BIND_SHAPES) {
        *v = (vl_vec){NULL, VL_DTYPE_BF16, n};
    } else if (b->mode == BIND_CHECKPOINT) {
        const vl_tensor *t = lookup(b, part, rest, name, sizeof name);
        if (!t) return -1;
        if (t->ndim != 1 || t->shape[0] != n) {
            char exp[32];
            snprintf(exp, sizeof exp, "%lld", (long long)n);
            return shape_error(t, name, exp);
        }
        *v = (vl_vec){t->data, t->dtype, n};
    }
    b->bytes += (size_t)n * vl_dtype_size(v->dtype);
    size_t len = strlen(rest);
    const char *kind = len > 5 && strcmp(rest + len - 5, ".bias") == 0 ? "bias" : "norm";
    return after_bind(b, part, rest, kind, &v->data, &v->dtype, n, 1);
}

/* Conv3d patch embedding [Ev, C, T, P, P], used as a [Ev, C*T*P*P] matrix. */
static int bind_patch_embed(binder *b, const vl_config *c, vl_weight *w) {
    char name[512];
    const char *rest = "patch_embed.proj.weight";
    int64_t want[5] = {c->v_embed, c->in_channels, c->temporal_patch, c->patch, c->patch};
    int64_t cols = want[1] * want[2] * want[3] * want[4];
    if (b->mode == BIND_SHAPES) {
        *w = (vl_weight){NULL, VL_DTYPE_BF16, want[0], cols};
    } else if (b->mode == BIND_CHECKPOINT) {
        const vl_tensor *t = lookup(b, PART_VISION, rest, name, sizeof name);
        if (!t) return -1;
        int ok = t->ndim == 5;
        for (int i = 0; ok && i < 5; i++) ok = t->shape[i] == want[i];
        if (!ok) {
            char exp[96];
            snprintf(exp, sizeof exp, "%lld, %lld, %lld, %lld, %lld", (long long)want[0],
                     (long long)want[1], (long long)want[2], (long long)want[3],
                     (long long)want[4]);
            return shape_error(t, name, exp);
        }
        *w = (vl_weight){t->data, t->dtype, want[0], cols};
    }
    b->bytes += (size_t)(want[0] * cols) * vl_dtype_size(w->dtype);
    return after_bind(b, PART_VISION, rest, "patch_embed", &w->data, &w->dtype, want[0] * cols,
                      0);
}

static int bind_all(vl_model *m, binder b) {
    const vl_config *c = &m->cfg;
    vl_weights *w = &m->w;
    char r[256];
    int64_t E = c->hidden, F = c->intermediate, D = c->head_dim;
    int64_t Ev = c->v_embed, Fv = c->v_mlp, M4 = Ev * c->merge * c->merge;

    if (bind_patch_embed(&b, c, &w->patch_embed)) return -1;
    for (int i = 0; i < c->v_depth; i++) {
        vl_vision_block *k = &w->blocks[i];
#define VB(fmt) (snprintf(r, sizeof r, "blocks.%d." fmt, i), r)
        if (bind_vec(&b, PART_VISION, VB("norm1.weight"), Ev, &k->norm1_w) ||
            bind_vec(&b, PART_VISION, VB("norm1.bias"), Ev, &k->norm1_b) ||
            bind_vec(&b, PART_VISION, VB("norm2.weight"), Ev, &k->norm2_w) ||
            bind_vec(&b, PART_VISION, VB("norm2.bias"), Ev, &k->norm2_b) ||
            bind_matrix(&b, PART_VISION, VB("attn.qkv.weight"), 3 * Ev, Ev, &k->qkv) ||
            bind_vec(&b, PART_VISION, VB("attn.qkv.bias"), 3 * Ev, &k->qkv_b) ||
            bind_matrix(&b, PART_VISION, VB("attn.proj.weight"), Ev, Ev, &k->proj) ||
            bind_vec(&b, PART_VISION, VB("attn.proj.bias"), Ev, &k->proj_b) ||
            bind_matrix(&b, PART_VISION, VB("mlp.fc1.weight"), Fv, Ev, &k->fc1) ||
            bind_vec(&b, PART_VISION, VB("mlp.fc1.bias"), Fv, &k->fc1_b) ||
            bind_matrix(&b, PART_VISION, VB("mlp.fc2.weight"), Ev, Fv, &k->fc2) ||
            bind_vec(&b, PART_VISION, VB("mlp.fc2.bias"), Ev, &k->fc2_b))
            return -1;
#undef VB
    }
    if (bind_vec(&b, PART_VISION, "merger.ln_q.weight", Ev, &w->merger_ln_w) ||
        bind_vec(&b, PART_VISION, "merger.ln_q.bias", Ev, &w->merger_ln_b) ||
        bind_matrix(&b, PART_VISION, "merger.mlp.0.weight", M4, M4, &w->merger_fc1) ||
        bind_vec(&b, PART_VISION, "merger.mlp.0.bias", M4, &w->merger_fc1_b) ||
        bind_matrix(&b, PART_VISION, "merger.mlp.2.weight", c->v_out, M4, &w->merger_fc2) ||
        bind_vec(&b, PART_VISION, "merger.mlp.2.bias", c->v_out, &w->merger_fc2_b))
        return -1;

    if (bind_matrix(&b, PART_TEXT, "embed_tokens.weight", c->vocab, E, &w->embed)) return -1;
    for (int i = 0; i < c->n_layers; i++) {
        vl_decoder_layer *L = &w->layers[i];
        int64_t HD = (int64_t)c->n_heads * D, KD = (int64_t)c->n_kv_heads * D;
#define DL(fmt) (snprintf(r, sizeof r, "layers.%d." fmt, i), r)
        if (bind_vec(&b, PART_TEXT, DL("input_layernorm.weight"), E, &L->in_norm) ||
            bind_vec(&b, PART_TEXT, DL("post_attention_layernorm.weight"), E, &L->post_norm) ||
            bind_matrix(&b, PART_TEXT, DL("self_attn.q_proj.weight"), HD, E, &L->q) ||
            bind_vec(&b, PART_TEXT, DL("self_attn.q_proj.bias"), HD, &L->q_b) ||
            bind_matrix(&b, PART_TEXT, DL("self_attn.k_proj.weight"), KD, E, &L->k) ||
            bind_vec(&b, PART_TEXT, DL("self_attn.k_proj.bias"), KD, &L->k_b) ||
            bind_matrix(&b, PART_TEXT, DL("self_attn.v_proj.weight"), KD, E, &L->v) ||
            bind_vec(&b, PART_TEXT, DL("self_attn.v_proj.bias"), KD, &L->v_b) ||
            bind_matrix(&b, PART_TEXT, DL("self_attn.o_proj.weight"), E, HD, &L->o) ||
            bind_matrix(&b, PART_TEXT, DL("mlp.gate_proj.weight"), F, E, &L->gate) ||
            bind_matrix(&b, PART_TEXT, DL("mlp.up_proj.weight"), F, E, &L->up) ||
            bind_matrix(&b, PART_TEXT, DL("mlp.down_proj.weight"), E, F, &L->down))
            return -1;
#undef DL
    }
    if (bind_vec(&b, PART_TEXT, "norm.weight", E, &w->final_norm)) return -1;
    if (b.mode != BIND_VISIT)
        w->lm_head_is_embed =
            c->tie_embeddings && (!b.ck || !vl_checkpoint_find(b.ck, "lm_head.weight"));
    if (w->lm_head_is_embed) w->lm_head = w->embed;
    else if (bind_matrix(&b, PART_TOP, "lm_head.weight", c->vocab, E, &w->lm_head)) return -1;
    m->weights_bytes = b.bytes;
    return 0;
}

int vl_weights_visit(vl_model *m, vl_weight_fn fn, void *ctx) {
    binder b = {BIND_VISIT, NULL, m->model_path, 0, fn, ctx};
    return bind_all(m, b);
}

typedef struct {
    vl_backend *be;
    uint8_t *base;
    size_t off;
    int measure;
} copy_ctx;

static int copy_one(void *vctx, const char *name, const char *kind, const void **data,
                    vl_dtype *dtype, int64_t n, int is_vec) {
    copy_ctx *cc = vctx;
    /* a bf16 backend holds every parameter in bf16 (F16/F32 checkpoints converted here) */
    vl_dtype to = cc->be && cc->be->act == VL_DTYPE_BF16 ? VL_DTYPE_BF16 : *dtype;
    if (!cc->be) to = VL_DTYPE_BF16;
    size_t bytes = (size_t)n * vl_dtype_size(to);
    size_t at = (cc->off + 255) & ~(size_t)255;
    if (!cc->measure) {
        if (to == *dtype) {
            cc->be->upload(cc->be, cc->base + at, *data, bytes);
        } else {
            uint16_t *tmp = malloc(bytes);
            if (!tmp) return vl_error_set("out of host memory converting %s to bf16", name);
            for (int64_t i = 0; i < n; i++) {
                float f = *dtype == VL_DTYPE_F32 ? ((const float *)*data)[i]
                                                 : vl_f16_to_f32(((const uint16_t *)*data)[i]);
                tmp[i] = vl_f32_to_bf16(f);
            }
            cc->be->upload(cc->be, cc->base + at, tmp, bytes);
            free(tmp);
        }
        *data = cc->base + at;
        *dtype = to;
    }
    cc->off = at + bytes;
    return 0;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int vl_model_open(vl_model *m, const vl_options *o) {
    memset(m, 0, sizeof *m);
    char path[4600];
    const char *dir = o->model_dir;
    vl_preproc_config_default(&m->pre);

    if (o->random_weights) {
        const char *cfg = o->config;
        if (!cfg && dir) {
            snprintf(path, sizeof path, "%s/config.json", dir);
            cfg = path;
        }
        if (!cfg)
            return vl_error_set("--random-weights needs --config FILE or --model DIR for the "
                                "shapes (examples/ has the Qwen2-VL configs)");
        if (vl_config_load(&m->cfg, cfg)) return -1;
    } else {
        if (!dir)
            return vl_error_set("no model: pass --model DIR (or set VLRUN_MODEL), or use "
                                "--random-weights --config FILE");
        if (!is_dir(dir))
            return vl_error_set("model directory %s does not exist or is not a directory", dir);
        snprintf(m->model_path, sizeof m->model_path, "%s", dir);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (!file_exists(path))
            return vl_error_set("%s has no config.json: is it a Hugging Face checkpoint "
                                "directory?",
                                dir);
        if (vl_config_load(&m->cfg, path)) return -1;
    }
    if (dir) {
        snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
        if (file_exists(path) && vl_preproc_config_load(&m->pre, path)) return -1;
    }
    m->pre.patch = m->cfg.patch;
    m->pre.temporal_patch = m->cfg.temporal_patch;
    m->pre.merge = m->cfg.merge;

    const char *tok_path = o->tokenizer;
    if (!tok_path && dir) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (file_exists(path)) tok_path = path;
    }
    if (tok_path && vl_tokenizer_load(&m->tok, tok_path)) return -1;

    const vl_config *c = &m->cfg;
    m->w.blocks = calloc((size_t)c->v_depth, sizeof *m->w.blocks);
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.blocks || !m->w.layers) return vl_error_set("out of host memory");
    return 0;
}

size_t vl_weights_bytes(const vl_config *c) {
    vl_model m;
    memset(&m, 0, sizeof m);
    m.cfg = *c;
    m.w.blocks = calloc((size_t)c->v_depth, sizeof *m.w.blocks);
    m.w.layers = calloc((size_t)c->n_layers, sizeof *m.w.layers);
    size_t bytes = 0;
    if (m.w.blocks && m.w.layers) {
        binder b = {BIND_SHAPES, NULL, "", 0, NULL, NULL};
        bind_all(&m, b);
        copy_ctx cc = {NULL, NULL, 0, 1}; /* the backend layout: 256-byte aligned tensors */
        vl_weights_visit(&m, copy_one, &cc);
        bytes = cc.off;
    }
    free(m.w.blocks);
    free(m.w.layers);
    return bytes;
}

static int copy_weights_to_backend(vl_model *m);

int vl_model_load_weights(vl_model *m, const vl_options *o, vl_backend *be) {
    const char *dir = o->model_dir;
    m->be = be;
    if (o->random_weights) {
        binder b = {BIND_SHAPES, NULL, "--random-weights", 0, NULL, NULL};
        return bind_all(m, b) || vl_weights_random(m, o->seed);
    }
    if (vl_checkpoint_open(&m->ck, dir)) return -1;
    m->have_ck = 1;
    binder b = {BIND_CHECKPOINT, &m->ck, m->model_path, 0, NULL, NULL};
    if (bind_all(m, b)) return -1;
    if (strcmp(be->name, "cpu") != 0) return copy_weights_to_backend(m);
    return 0;
}

int vl_model_load(vl_model *m, const vl_options *o, vl_backend *be) {
    return vl_model_open(m, o) || vl_model_load_weights(m, o, be);
}

static int copy_weights_to_backend(vl_model *m) {
    copy_ctx cc = {m->be, NULL, 0, 1};
    vl_weights_visit(m, copy_one, &cc);
    cc.base = m->be->mem_alloc(m->be, cc.off);
    if (!cc.base)
        return vl_error_set("out of %s memory: the weights need %.2f GiB; try --quant nf4",
                            m->be->name, (double)cc.off / (1 << 30));
    m->weights_mem = cc.base;
    cc.measure = 0;
    cc.off = 0;
    if (vl_weights_visit(m, copy_one, &cc)) return -1;
    if (m->w.lm_head_is_embed) m->w.lm_head = m->w.embed;
    m->weights_bytes = cc.off;
    return 0;
}

/* ---- --random-weights ----------------------------------------------------------------------
 * Counter-based: element i of parameter p is a pure function of (seed, p, i), so any backend
 * (a GPU fill kernel included) can make the same values without the host holding the model.
 * Linear and embedding weights ~ uniform with std 0.02 (transformers' init std), norm weights
 * 1 + small noise, biases small: the numbers are meaningless but well scaled. */
typedef struct {
    vl_backend *be;
    uint8_t *base;
    size_t off;
    uint64_t seed;
    int index;
    uint16_t *host; /* staging buffer, host_elems bf16 */
    int64_t host_elems;
} random_ctx;

static int random_one(void *vctx, const char *name, const char *kind, const void **data,
                      vl_dtype *dtype, int64_t n, int is_vec) {
    random_ctx *rc = vctx;
    size_t at = (rc->off + 255) & ~(size_t)255;
    float center = strcmp(kind, "norm") == 0 ? 1.0f : 0.0f;
    float half = strcmp(kind, "norm") == 0 ? 0.05f : 0.02f * 1.7320508f; /* uniform: std*sqrt3 */
    uint64_t key = vl_mix64(rc->seed * 0x9e3779b97f4a7c15ull + (uint64_t)rc->index++);
    if (rc->be->fill_random_bf16) {
        rc->be->fill_random_bf16(rc->be, rc->base + at, n, key, center, half);
        *data = rc->base + at;
        *dtype = VL_DTYPE_BF16;
        rc->off = at + (size_t)n * 2;
        return 0;
    }
    for (int64_t i0 = 0; i0 < n; i0 += rc->host_elems) {
        int64_t k = n - i0 < rc->host_elems ? n - i0 : rc->host_elems;
        for (int64_t i = 0; i < k; i++) {
            double u = vl_random_unit(key + (uint64_t)(i0 + i));
            rc->host[i] = vl_f32_to_bf16(center + half * (float)(2.0 * u - 1.0));
        }
        rc->be->upload(rc->be, rc->base + at + (size_t)i0 * 2, rc->host, (size_t)k * 2);
    }
    *data = rc->base + at;
    *dtype = VL_DTYPE_BF16;
    rc->off = at + (size_t)n * 2;
    return 0;
}

int vl_weights_random(vl_model *m, uint64_t seed) {
    size_t total = 0;
    /* one pass to size the block (same alignment rule as random_one) */
    copy_ctx cc = {m->be, NULL, 0, 1};
    vl_weights_visit(m, copy_one, &cc);
    total = cc.off;
    random_ctx rc = {m->be, m->be->mem_alloc(m->be, total), 0, seed, 0, NULL, 1 << 20};
    if (!rc.base)
        return vl_error_set("out of %s memory: the weights need %.2f GiB; try --quant nf4",
                            m->be->name, (double)total / (1 << 30));
    m->weights_mem = rc.base;
    rc.host = malloc((size_t)rc.host_elems * 2);
    if (!rc.host) return vl_error_set("out of host memory");
    int err = vl_weights_visit(m, random_one, &rc);
    free(rc.host);
    if (m->w.lm_head_is_embed) m->w.lm_head = m->w.embed;
    m->weights_bytes = rc.off;
    return err;
}

void vl_model_free(vl_model *m) {
    if (m->weights_mem) m->be->mem_free(m->be, m->weights_mem);
    if (m->have_ck) vl_checkpoint_close(&m->ck);
    if (m->tok) vl_tokenizer_free(m->tok);
    free(m->w.blocks);
    free(m->w.layers);
    memset(m, 0, sizeof *m);
}
