/* synth.c: a random checkpoint (what `vlrun synth` writes, cli/synth_cmd.c) in the
 * Hugging Face layout (config.json + model.safetensors, bf16, published tensor names) with the
 * same values --random-weights would use. For tests and for trying the loader on real shapes. */
#include "engine/engine.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

typedef struct {
    vl_tensor_out *t;
    char **names;
    int n, cap;
    const vl_config *c;
} synth_ctx;

static int collect(void *vctx, const char *name, const char *kind, vl_weight *w, vl_vec *v) {
    synth_ctx *sc = vctx;
    if (sc->n == sc->cap) {
        int nc = sc->cap * 2 + 64;
        vl_tensor_out *t = realloc(sc->t, (size_t)nc * sizeof *t);
        char **nm = t ? realloc(sc->names, (size_t)nc * sizeof *nm) : NULL;
        if (t) sc->t = t;
        if (nm) sc->names = nm;
        if (!t || !nm) return vl_error_set("out of host memory");
        sc->cap = nc;
    }
    vl_tensor_out *o = &sc->t[sc->n];
    memset(o, 0, sizeof *o);
    sc->names[sc->n] = strdup(name);
    if (!sc->names[sc->n]) return vl_error_set("out of host memory");
    o->name = sc->names[sc->n];
    const vl_config *c = sc->c;
    if (v) {
        o->dtype = v->dtype;
        o->data = v->data;
        o->ndim = 1;
        o->shape[0] = v->n;
    } else if (strcmp(kind, "patch_embed") == 0) {
        int64_t shp[5] = {c->v_embed, c->in_channels, c->temporal_patch, c->patch, c->patch};
        o->dtype = w->dtype;
        o->data = w->data;
        o->ndim = 5;
        memcpy(o->shape, shp, sizeof shp);
    } else {
        o->dtype = w->dtype;
        o->data = w->data;
        o->ndim = 2;
        o->shape[0] = w->rows;
        o->shape[1] = w->cols;
    }
    sc->n++;
    return 0;
}

static int copy_file(const char *from, const char *to) {
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(from, 16 << 20, &text, &len)) return -1;
    int rc = vl_write_whole_file(to, "vlrun synth", text, len);
    free(text);
    return rc;
}

int vl_synth_checkpoint(const vl_config *c, const char *config_src, const char *out_dir,
                        uint64_t seed) {
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return vl_error_set("vlrun synth: cannot create directory %s", out_dir);
    char path[4200];
    /* both outputs checked before either is written: a refusal leaves no half checkpoint */
    const char *names[2] = {"model.safetensors", "config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, names[i]);
        if (vl_output_target_check(path, "vlrun synth")) return -1;
    }
    vl_engine_config o;
    vl_engine_config_default(&o);
    o.backend = VL_BACKEND_CPU;
    o.random_weights = 1;
    o.config_path = config_src;
    o.weights_seed = seed;
    vl_model m;
    if (vl_model_load(&m, &o, vl_backend_cpu())) {
        vl_model_free(&m);
        return -1;
    }
    synth_ctx sc = {NULL, NULL, 0, 0, &m.cfg};
    int rc = vl_weights_visit(&m, collect, &sc);
    if (!rc) {
        snprintf(path, sizeof path, "%s/model.safetensors", out_dir);
        rc = vl_safetensors_write(path, sc.t, sc.n);
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/config.json", out_dir);
        rc = copy_file(config_src, path);
    }
    for (int i = 0; i < sc.n; i++) free(sc.names[i]);
    free(sc.names);
    free(sc.t);
    vl_model_free(&m);
    (void)c;
    return rc;
}
