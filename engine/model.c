/* model.c: a model on a backend: config, preprocessor config, tokenizer, the architecture its
 * config names (engine/models/) and that architecture's weights bound by name
 * (engine/models/bind.c: both checkpoint spellings, dtype and shape checks). Tied embeddings
 * (Qwen2-VL-2B) reuse the embedding table as the LM head.
 *
 * The CPU backend reads the weights in place from the mmapped files. Other backends get a copy
 * in one block of backend memory. --random-weights synthesizes them instead (weights_random.c).
 */
#include "engine/models/models.h"

#include <stdlib.h>
#include <sys/stat.h>

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

/* A backend's kernels may have limits a valid config exceeds (its capabilities,
 * vl_backend_check_attention): refuse such a model right after its config is parsed, in one line
 * that names the config's values, before anything is loaded and before a device is opened. */
static int check_backend_shapes(const vl_config *c, const vl_engine_config *o,
                                const char *cfg_path) {
    char why[256];
    vl_attn_shape text = {c->n_heads, c->n_kv_heads, c->head_dim, o->attn_naive};
    if (vl_backend_check_attention(vl_backend_caps_of(o->backend), &text, why, sizeof why))
        return vl_error_set("%s: the decoder's attention (num_attention_heads %d, "
                            "num_key_value_heads %d, head_dim %d) does not run on the %s "
                            "backend: %s",
                            cfg_path, c->n_heads, c->n_kv_heads, c->head_dim,
                            o->backend == VL_BACKEND_CUDA ? "CUDA" : "CPU", why);
    vl_attn_shape vision = {c->v_heads, c->v_heads, c->v_head_dim, o->attn_naive};
    if (vl_backend_check_attention(vl_backend_caps_of(o->backend), &vision, why, sizeof why))
        return vl_error_set(
            "%s: the vision attention (vision_config.num_heads %d, head dim "
            "vision_config.%s %d / num_heads = %d) does not run on the "
            "%s backend: %s",
            cfg_path, c->v_heads, strcmp(c->model_type, "qwen2_vl") ? "hidden_size" : "embed_dim",
            c->v_embed, c->v_head_dim, o->backend == VL_BACKEND_CUDA ? "CUDA" : "CPU", why);
    return 0;
}

/* The architecture's weight structs, bound now (no backend memory yet: the planner needs every
 * tensor's dtype and size): from the checkpoint in dir, or shapes only (dir NULL). */
static int bind_weights(vl_model *m, const char *dir) {
    const vl_config *c = &m->cfg;
    if (!(m->arch = vl_arch_find(c->model_type))) return -1;
    if (!(m->vision_w = m->arch->vision->weights_new(c))) return -1;
    if (!(m->text_w = m->arch->text->weights_new(c))) return -1;
    vl_binder b = {VL_BIND_SHAPES, NULL, "--random-weights", 0, NULL, NULL};
    if (dir) {
        if (vl_checkpoint_open(&m->ck, dir)) return -1;
        m->have_ck = 1;
        b = (vl_binder){VL_BIND_CHECKPOINT, &m->ck, m->model_path, 0, NULL, NULL};
    }
    if (vl_bind_all(&b, m->arch, c, m->vision_w, m->text_w, &m->lm_head_is_embed)) return -1;
    m->weights_bytes = b.bytes;
    return 0;
}

int vl_model_open(vl_model *m, const vl_engine_config *o) {
    memset(m, 0, sizeof *m);
    char path[4600];
    const char *dir = o->model_dir;
    vl_preproc_config_default(&m->pre);
    vl_generation_config_default(&m->gen);

    if (o->random_weights) {
        const char *cfg = o->config_path;
        if (!cfg && dir) {
            snprintf(path, sizeof path, "%s/config.json", dir);
            cfg = path;
        }
        if (!cfg)
            return vl_error_set("--random-weights needs --config FILE or --model DIR for the "
                                "shapes (examples/ has the Qwen2-VL and Qwen2.5-VL configs)");
        if (vl_config_load(&m->cfg, cfg) || check_backend_shapes(&m->cfg, o, cfg)) return -1;
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
        if (vl_config_load(&m->cfg, path) || check_backend_shapes(&m->cfg, o, path)) return -1;
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

    const char *tok_path = o->tokenizer_path;
    if (!tok_path && dir) {
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (path_exists(path)) tok_path = path;
    }
    if (tok_path && vl_tokenizer_load(&m->tok, tok_path)) return -1;

    return bind_weights(m, o->random_weights ? NULL : dir);
}

int vl_model_load_weights(vl_model *m, const vl_engine_config *o, vl_backend *be) {
    m->be = be;
    vl_weight_plan wp;
    vl_weight_plan_of(&wp, o);
    /* the CPU backend computes from the mmapped file in place unless it has to quantize */
    if (m->have_ck && be->caps->kind == VL_BACKEND_CPU && !vl_weight_plan_quantizes(&wp)) return 0;
    return vl_weights_place(m, &wp, o->random_weights, o->weights_seed);
}

int vl_model_load(vl_model *m, const vl_engine_config *o, vl_backend *be) {
    return vl_model_open(m, o) || vl_model_load_weights(m, o, be);
}

void vl_model_free(vl_model *m) {
    if (m->weights_mem) m->be->mem_free(m->be, m->weights_mem);
    if (m->host_weights_mem) m->be->host_mapped_free(m->be, m->host_weights_mem);
    if (m->have_ck) vl_checkpoint_close(&m->ck);
    if (m->tok) vl_tokenizer_free(m->tok);
    if (m->arch) {
        m->arch->vision->weights_free(m->vision_w);
        m->arch->text->weights_free(m->text_w);
    }
    memset(m, 0, sizeof *m);
}

vl_backend *vl_backend_open(const vl_engine_config *o) {
    if (o->backend == VL_BACKEND_CPU) return vl_backend_cpu();
    char why[256] = "";
    vl_backend *be = vl_backend_cuda(&o->cuda, why, sizeof why);
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

float vl_model_repetition_penalty(const vl_model *m, int random_weights, float requested) {
    if (requested > 0.0f) return requested;
    return random_weights ? 1.0f : m->gen.repetition_penalty;
}

vl_dtype vl_model_linear_dtype(const vl_model *m) {
    return m->arch->text->linear_dtype(m->text_w);
}
