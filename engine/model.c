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
    const char **pre = part == PART_TEXT     ? text_prefixes
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
    if (t->dtype == VL_DTYPE_BF16 || t->dtype == VL_DTYPE_F16 || t->dtype == VL_DTYPE_F32) return 0;
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

static int after_bind(binder *b, name_part part, const char *rest, const char *kind, vl_weight *w,
                      vl_vec *v) {
    if (!b->fn) return 0;
    char name[512];
    snprintf(name, sizeof name, "%s%s",
             part == PART_TEXT     ? "model."
             : part == PART_VISION ? "visual."
                                   : "",
             rest);
    return b->fn(b->ctx, name, kind, w, v);
}

static const vl_tensor *lookup(binder *b, name_part part, const char *rest, char *name,
                               size_t name_len, int allow_quantized) {
    const vl_tensor *t = find_spelled(b->ck, part, rest, name, name_len);
    if (!t)
        vl_error_set("tensor %s is missing from %s (is this a Qwen2-VL checkpoint?)", name,
                     b->where);
    else if (allow_quantized && (t->dtype == VL_DTYPE_U8 || t->dtype == VL_DTYPE_I8))
        return t; /* a bitsandbytes tensor: vl_bnb_weight checks it */
    else if (check_float_dtype(t, name))
        return NULL;
    return t;
}

static int bind_matrix(binder *b, name_part part, const char *rest, int64_t rows, int64_t cols,
                       vl_weight *w) {
    char name[512];
    const char *kind = strstr(rest, "embed_tokens") ? "embed"
                       : strstr(rest, "lm_head")    ? "lm_head"
                                                    : "linear";
    if (b->mode == BIND_SHAPES) {
        *w = (vl_weight){.data = NULL, .dtype = VL_DTYPE_BF16, .rows = rows, .cols = cols};
    } else if (b->mode == BIND_CHECKPOINT) {
        int linear = strcmp(kind, "linear") == 0;
        const vl_tensor *t = lookup(b, part, rest, name, sizeof name, linear);
        if (!t) return -1;
        if (t->dtype == VL_DTYPE_U8 || t->dtype == VL_DTYPE_I8) {
            /* pre-quantized (bitsandbytes 4-bit or 8-bit, as transformers saves them) */
            int found = vl_bnb_weight(b->ck, name, rows, cols, w);
            if (found < 0) return -1;
            if (found == 0)
                return vl_error_set("tensor %s has dtype %s but no bitsandbytes quantization "
                                    "state; expected BF16, F16 or F32",
                                    name, vl_dtype_name(t->dtype));
        } else {
            if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
                char exp[64];
                snprintf(exp, sizeof exp, "%lld, %lld", (long long)rows, (long long)cols);
                return shape_error(t, name, exp);
            }
            *w = (vl_weight){.data = t->data, .dtype = t->dtype, .rows = rows, .cols = cols};
        }
    }
    if (w->dtype == VL_DTYPE_NF4 || w->dtype == VL_DTYPE_Q8ROW) {
        vl_quant_sizes qs;
        vl_quant_sizes_of(w->dtype, w->absmax_code != NULL, rows, cols, &qs);
        b->bytes += qs.total;
    } else {
        b->bytes += (size_t)(rows * cols) * vl_dtype_size(w->dtype);
    }
    return after_bind(b, part, rest, kind, w, NULL);
}

static int bind_vec(binder *b, name_part part, const char *rest, int64_t n, vl_vec *v) {
    char name[512];
    if (b->mode == BIND_SHAPES) {
        *v = (vl_vec){NULL, VL_DTYPE_BF16, n};
    } else if (b->mode == BIND_CHECKPOINT) {
        const vl_tensor *t = lookup(b, part, rest, name, sizeof name, 0);
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
    return after_bind(b, part, rest, kind, NULL, v);
}

/* Conv3d patch embedding [Ev, C, T, P, P], used as a [Ev, C*T*P*P] matrix. */
static int bind_patch_embed(binder *b, const vl_config *c, vl_weight *w) {
    char name[512];
    const char *rest = "patch_embed.proj.weight";
    int64_t want[5] = {c->v_embed, c->in_channels, c->temporal_patch, c->patch, c->patch};
    int64_t cols = want[1] * want[2] * want[3] * want[4];
    if (b->mode == BIND_SHAPES) {
        *w = (vl_weight){.data = NULL, .dtype = VL_DTYPE_BF16, .rows = want[0], .cols = cols};
    } else if (b->mode == BIND_CHECKPOINT) {
        const vl_tensor *t = lookup(b, PART_VISION, rest, name, sizeof name, 0);
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
        *w = (vl_weight){.data = t->data, .dtype = t->dtype, .rows = want[0], .cols = cols};
    }
    b->bytes += (size_t)(want[0] * cols) * vl_dtype_size(w->dtype);
    return after_bind(b, PART_VISION, rest, "patch_embed", w, NULL);
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
    if (w->lm_head_is_embed)
        w->lm_head = w->embed;
    else if (bind_matrix(&b, PART_TOP, "lm_head.weight", c->vocab, E, &w->lm_head))
        return -1;
    m->weights_bytes = b.bytes;
    return 0;
}

int vl_weights_visit(vl_model *m, vl_weight_fn fn, void *ctx) {
    binder b = {BIND_VISIT, NULL, m->model_path, 0, fn, ctx};
    return bind_all(m, b);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Present at all: a FIFO or directory in a file's place is then opened and refused by the
 * loader with its own message, rather than reported as missing. */
static int path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* The CUDA backend's kernels have limits a valid config can exceed (vl_backend_check_attention):
 * refuse such a model right after its config is parsed, in one line that names the config's
 * values, before anything is loaded and before a device is opened. */
static int check_cuda_shapes(const vl_config *c, const vl_options *o, const char *cfg_path) {
    if (o->backend != VL_BACKEND_CUDA) return 0;
    char why[256];
    vl_attn_shape text = {c->n_heads, c->n_kv_heads, c->head_dim, o->attn_naive};
    if (vl_backend_check_attention(vl_backend_caps_of(o->backend), &text, why, sizeof why))
        return vl_error_set("%s: the decoder's attention (num_attention_heads %d, "
                            "num_key_value_heads %d, head_dim %d) does not run on the CUDA "
                            "backend: %s",
                            cfg_path, c->n_heads, c->n_kv_heads, c->head_dim, why);
    vl_attn_shape vision = {c->v_heads, c->v_heads, c->v_head_dim, o->attn_naive};
    if (vl_backend_check_attention(vl_backend_caps_of(o->backend), &vision, why, sizeof why))
        return vl_error_set("%s: the vision attention (vision_config.num_heads %d, head dim "
                            "vision_config.embed_dim %d / num_heads = %d) does not run on the "
                            "CUDA backend: %s",
                            cfg_path, c->v_heads, c->v_embed, c->v_head_dim, why);
    return 0;
}

int vl_model_open(vl_model *m, const vl_options *o) {
    memset(m, 0, sizeof *m);
    char path[4600];
    const char *dir = o->model_dir;
    vl_preproc_config_default(&m->pre);
    vl_generation_config_default(&m->gen);

    if (o->random_weights) {
        const char *cfg = o->config;
        if (!cfg && dir) {
            snprintf(path, sizeof path, "%s/config.json", dir);
            cfg = path;
        }
        if (!cfg)
            return vl_error_set("--random-weights needs --config FILE or --model DIR for the "
                                "shapes (examples/ has the Qwen2-VL configs)");
        if (vl_config_load(&m->cfg, cfg) || check_cuda_shapes(&m->cfg, o, cfg)) return -1;
    } else {
        if (!dir)
            return vl_error_set("no model: pass --model DIR (or set VLRUN_MODEL), or use "
                                "--random-weights --config FILE");
        if (!is_dir(dir))
            return vl_error_set("model directory %s does not exist or is not a directory", dir);
        snprintf(m->model_path, sizeof m->model_path, "%s", dir);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (!path_exists(path))
            return vl_error_set("%s has no config.json: is it a Hugging Face checkpoint "
                                "directory?",
                                dir);
        if (vl_config_load(&m->cfg, path) || check_cuda_shapes(&m->cfg, o, path)) return -1;
        /* what transformers' generate applies by default (random weights have no such file) */
        snprintf(path, sizeof path, "%s/generation_config.json", dir);
        if (path_exists(path) && vl_generation_config_load(&m->gen, path, m->cfg.vocab)) return -1;
    }
    if (dir) {
        snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
        if (path_exists(path) && (vl_preproc_config_load(&m->pre, path) ||
                                  vl_preproc_config_check(&m->pre, &m->cfg, path)))
            return -1;
    }
    /* --min-pixels / --max-pixels over the file's values, for every command that opens a model */
    if (vl_preproc_override_pixels(&m->pre, o->min_pixels, o->max_pixels)) return -1;
    m->pre.patch = m->cfg.patch;
    m->pre.temporal_patch = m->cfg.temporal_patch;
    m->pre.merge = m->cfg.merge;

    const char *tok_path = o->tokenizer;
    if (!tok_path && dir) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (path_exists(path)) tok_path = path;
    }
    if (tok_path && vl_tokenizer_load(&m->tok, tok_path)) return -1;

    const vl_config *c = &m->cfg;
    m->w.blocks = calloc((size_t)c->v_depth, sizeof *m->w.blocks);
    m->w.layers = calloc((size_t)c->n_layers, sizeof *m->w.layers);
    if (!m->w.blocks || !m->w.layers) return vl_error_set("out of host memory");
    /* Bind now (no backend memory yet): the planner needs every tensor's dtype and size. */
    if (o->random_weights) {
        binder b = {BIND_SHAPES, NULL, "--random-weights", 0, NULL, NULL};
        return bind_all(m, b);
    }
    if (vl_checkpoint_open(&m->ck, dir)) return -1;
    m->have_ck = 1;
    binder b = {BIND_CHECKPOINT, &m->ck, m->model_path, 0, NULL, NULL};
    return bind_all(m, b);
}

/* Shapes-only binding of a config (for plans without a model). */
int vl_model_bind_shapes(vl_model *m) {
    binder b = {BIND_SHAPES, NULL, "--random-weights", 0, NULL, NULL};
    return bind_all(m, b);
}

int vl_model_load_weights(vl_model *m, const vl_options *o, vl_backend *be) {
    m->be = be;
    /* the progress line keeps moving while a CPU op runs (tens of seconds for a 7B layer) */
    be->heartbeat = m->progress ? vl_progress_heartbeat : NULL;
    be->heartbeat_ctx = m->progress;
    vl_weight_plan wp;
    vl_weight_plan_from_options(&wp, o);
    /* the CPU backend computes from the mmapped file in place unless it has to quantize */
    if (m->have_ck && strcmp(be->name, "cpu") == 0 && !vl_weight_plan_quantizes(&wp)) return 0;
    return vl_weights_place(m, &wp, o->random_weights, o->seed);
}

int vl_model_load(vl_model *m, const vl_options *o, vl_backend *be) {
    return vl_model_open(m, o) || vl_model_load_weights(m, o, be);
}

void vl_model_free(vl_model *m) {
    if (m->be && m->be->heartbeat_ctx == m->progress) m->be->heartbeat = NULL;
    if (m->weights_mem) m->be->mem_free(m->be, m->weights_mem);
    if (m->host_weights_mem) m->be->host_mapped_free(m->be, m->host_weights_mem);
    if (m->have_ck) vl_checkpoint_close(&m->ck);
    if (m->tok) vl_tokenizer_free(m->tok);
    free(m->w.blocks);
    free(m->w.layers);
    memset(m, 0, sizeof *m);
}

vl_backend *vl_backend_open(const vl_options *o) {
    if (o->backend == VL_BACKEND_CPU) return vl_backend_cpu();
    char why[256] = "";
    vl_backend *be = vl_backend_cuda(NULL, why, sizeof why);
    if (!be) vl_error_set("%s", why[0] ? why : "no CUDA device found; use --backend cpu");
    return be;
}

int vl_model_is_eos(const vl_model *m, int32_t id) {
    if (id == m->cfg.eos_id) return 1;
    for (int i = 0; i < m->gen.n_eos; i++)
        if (id == m->gen.eos_ids[i]) return 1;
    if (!m->tok) return 0;
    return id == vl_tokenizer_token_id(m->tok, "<|im_end|>") ||
           id == vl_tokenizer_token_id(m->tok, "<|endoftext|>");
}

float vl_model_repetition_penalty(const vl_model *m, const vl_options *o) {
    if (o->repetition_penalty > 0.0f) return o->repetition_penalty;
    return o->random_weights ? 1.0f : m->gen.repetition_penalty;
}
