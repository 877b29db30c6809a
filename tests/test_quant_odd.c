/* test_quant_odd.c: quantized Linears whose in-features are not a multiple of 64, in the engine.
 * tests/fixtures/models/tiny-odd has decoder hidden 48 and intermediate 136, vision embed 40 and
 * mlp 160: none of its 24 Linears has in-features % 64 == 0, so NF4 blocks straddle rows.
 *
 *   --quant    tiny-odd loaded with --quant nf4, nf4 --double-quant and int8 (CPU backend):
 *              every Linear holds exactly the bytes bitsandbytes makes of it (packed codes,
 *              absmax; nested codes, nested absmax, map and offset; CB and SCB), as
 *              tests/reference/make_odd_goldens.py wrote them with bnb_emulation.py (identical
 *              to bitsandbytes 0.50.2 on its goldens) into tests/fixtures/models/
 *              tiny-odd-bnb-<fmt>.safetensors, in the layout of transformers' "-bnb-4bit" /
 *              "-bnb-8bit" checkpoints.
 *   pre-quantized  tiny-odd with those tensors in place of its bf16 Linears (written to a
 *              temporary directory) loads through loader/bnb.c: every Linear has the --quant
 *              model's bytes and dequantizes to the same bits, and placed on the backend it takes
 *              the bytes the planner measures for it, the --quant model's bytes exactly.
 * Logits against transformers: tests/cli_quant_odd.sh. */
#include "engine/engine.h"
#include "vltest.h"

#include <sys/stat.h>
#include <unistd.h>

#define N_LINEARS 24 /* 2 layers x 7 + 2 vision blocks x 4 + the merger's 2 */

typedef struct {
    const char *name; /* file suffix: tiny-odd-bnb-<name>.safetensors */
    vl_quant quant;
    int double_quant;
    vl_dtype dtype;
} odd_format;

static const odd_format formats[] = {{"nf4", VL_QUANT_NF4, 0, VL_DTYPE_NF4},
                                     {"nf4dq", VL_QUANT_NF4, 1, VL_DTYPE_NF4},
                                     {"int8", VL_QUANT_INT8, 0, VL_DTYPE_Q8ROW}};

/* The model's Linear weights in visit order, with their names. */
typedef struct {
    char name[N_LINEARS][160];
    vl_weight w[N_LINEARS];
    int n, overflow;
} linear_set;

static int collect_linear(void *ctx, const char *name, const char *kind, vl_weight *w, vl_vec *v) {
    linear_set *s = ctx;
    if (v || strcmp(kind, "linear") != 0) return 0;
    if (s->n == N_LINEARS) {
        s->overflow = 1;
        return 0;
    }
    snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
    s->w[s->n++] = *w;
    return 0;
}

/* Loads tiny-odd from dir on the CPU backend, with --quant f (or none: NULL); its Linears into
 * set. Returns the bytes the backend allocated (read before the visit, which recounts them). */
static int load(vl_model *m, const char *dir, const odd_format *f, linear_set *set,
                size_t *allocated) {
    vl_engine_config o;
    vl_engine_config_default(&o);
    o.model_dir = dir;
    o.backend = VL_BACKEND_CPU;
    if (f) {
        o.quant = f->quant;
        o.double_quant = f->double_quant;
    }
    memset(m, 0, sizeof *m);
    memset(set, 0, sizeof *set);
    vl_error_clear();
    if (vl_model_load(m, &o, vl_backend_cpu()) != 0) {
        VT_CHECKF(0, "load %s: %s", dir, vl_error_get());
        return -1;
    }
    *allocated = m->weights_bytes;
    vl_weights_visit(m, collect_linear, set);
    VT_CHECK(!set->overflow);
    VT_CHECK_INT(set->n, N_LINEARS);
    return 0;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* a and b: the same format and shape, and every byte of every buffer equal. */
static int same_bytes(const vl_weight *a, const vl_weight *b) {
    int dq = a->absmax_code != NULL;
    if (a->dtype != b->dtype || a->rows != b->rows || a->cols != b->cols ||
        dq != (b->absmax_code != NULL))
        return 0;
    vl_quant_sizes qs;
    vl_quant_sizes_of(a->dtype, dq, a->rows, a->cols, &qs);
    if (memcmp(a->data, b->data, qs.data) || memcmp(a->absmax, b->absmax, qs.absmax)) return 0;
    return !dq || (memcmp(a->absmax_code, b->absmax_code, qs.absmax_code) == 0 &&
                   memcmp(a->absmax_map, b->absmax_map, qs.absmax_map) == 0 &&
                   f32_bits(a->absmax_offset) == f32_bits(b->absmax_offset));
}

/* a and b dequantize to the same float bits. */
static int same_values(const vl_weight *a, const vl_weight *b) {
    const int64_t n = a->rows * a->cols;
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    vl_weight_rows_f32(a, 0, a->rows, x);
    vl_weight_rows_f32(b, 0, b->rows, y);
    int same = memcmp(x, y, (size_t)n * sizeof *x) == 0;
    free(x);
    free(y);
    return same;
}

/* ---- the pre-quantized checkpoint ----------------------------------------------------------- */

static char tmp_dir[256];

static int copy_file(const char *from, const char *to) {
    char *text = NULL;
    size_t len = 0;
    if (vl_read_file(from, 1 << 20, &text, &len) != 0) return -1;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(text, 1, len, f) == len;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    return ok ? 0 : -1;
}

/* tmp_dir/<fmt>/: tiny-odd's config and tensors, its Linear weights replaced by the tensors of
 * the bitsandbytes file q. Returns the directory, or NULL. */
static const char *write_prequantized(const odd_format *f, const vl_checkpoint *q) {
    static char dir[512];
    char path[640];
    snprintf(dir, sizeof dir, "%s/%s", tmp_dir, f->name);
    if (mkdir(dir, 0700) != 0) return NULL;
    const char *names[] = {"config.json", "preprocessor_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        char rel[128];
        snprintf(rel, sizeof rel, "models/tiny-odd/%s", names[i]);
        if (copy_file(vt_fixture(rel), path) != 0) return NULL;
    }
    vl_checkpoint base;
    if (vl_checkpoint_open(&base, vt_fixture("models/tiny-odd")) != 0) return NULL;
    vl_tensor_out *out = calloc((size_t)(base.n_tensors + q->n_tensors), sizeof *out);
    int n = 0;
    const vl_checkpoint *from[2] = {&base, q};
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < from[s]->n_tensors; i++) {
            const vl_tensor *t = &from[s]->tensors[i];
            if (s == 0 && vl_checkpoint_find(q, t->name)) continue; /* a replaced bf16 Linear */
            vl_tensor_out *o = &out[n++];
            o->name = t->name;
            o->dtype = t->dtype;
            o->ndim = t->ndim;
            memcpy(o->shape, t->shape, sizeof o->shape);
            o->data = t->data;
        }
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = vl_safetensors_write(path, out, n);
    free(out);
    vl_checkpoint_close(&base);
    return rc == 0 ? dir : NULL;
}

static void remove_prequantized(const char *dir) {
    const char *names[] = {"config.json", "preprocessor_config.json", "model.safetensors"};
    char path[640];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- the cases ------------------------------------------------------------------------------ */

static void test_format(const odd_format *f) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/tiny-odd-bnb-%s.safetensors", f->name);
    vl_checkpoint q;
    vl_error_clear();
    if (vl_checkpoint_open(&q, vt_fixture(rel)) != 0) {
        VT_CHECKF(0, "%s: %s", rel, vl_error_get());
        return;
    }
    vl_model mq;
    linear_set lq;
    size_t bytes_q = 0;
    if (load(&mq, vt_fixture("models/tiny-odd"), f, &lq, &bytes_q) != 0) {
        vl_checkpoint_close(&q);
        return;
    }

    /* --quant: the bytes bitsandbytes makes */
    int identical = 0;
    for (int i = 0; i < lq.n; i++) {
        vl_weight e;
        vl_error_clear();
        int found = vl_bnb_weight(&q, lq.name[i], lq.w[i].rows, lq.w[i].cols, &e);
        VT_CHECKF(found == 1, "%s: %s not in %s (%s)", f->name, lq.name[i], rel, vl_error_get());
        VT_CHECKF(lq.w[i].cols % 64 != 0, "%s: in-features %lld", lq.name[i],
                  (long long)lq.w[i].cols);
        VT_CHECKF(lq.w[i].dtype == f->dtype && (lq.w[i].absmax_code != NULL) == f->double_quant,
                  "%s: %s is %s", f->name, lq.name[i], vl_dtype_name(lq.w[i].dtype));
        int same = found == 1 && same_bytes(&lq.w[i], &e);
        VT_CHECKF(same, "%s: %s differs from bitsandbytes' bytes", f->name, lq.name[i]);
        identical += same;
    }

    /* pre-quantized: the same bytes and values, and the planned size on a backend */
    const char *dir = write_prequantized(f, &q);
    VT_CHECKF(dir != NULL, "%s: cannot write the pre-quantized checkpoint (%s)", f->name,
              vl_error_get());
    vl_model mp;
    linear_set lp;
    size_t bytes_p = 0;
    int loaded = dir && load(&mp, dir, NULL, &lp, &bytes_p) == 0;
    int same_p = 0;
    if (loaded) {
        for (int i = 0; i < lp.n && i < lq.n; i++) {
            int same = strcmp(lp.name[i], lq.name[i]) == 0 && same_bytes(&lp.w[i], &lq.w[i]) &&
                       same_values(&lp.w[i], &lq.w[i]);
            VT_CHECKF(same, "%s: pre-quantized %s differs from --quant's", f->name, lp.name[i]);
            same_p += same;
        }
        /* the CPU backend computes from the file in place; placed on a backend, the weights
         * take what the planner measures, which is the --quant model's layout */
        vl_weight_plan none;
        memset(&none, 0, sizeof none);
        none.linear = VL_DTYPE_BF16;
        size_t planned = vl_model_weights_bytes(&mp, &none);
        VT_CHECK(vl_weights_place(&mp, &none, 0, 0) == 0);
        VT_CHECK_INT(mp.weights_bytes, planned);
        VT_CHECK_INT(planned, bytes_q);
        printf("%-5s: %d/%d Linears identical to bitsandbytes' bytes; pre-quantized checkpoint: "
               "%d/%d identical, placed %zu bytes (planned %zu, --quant %zu)\n",
               f->name, identical, lq.n, same_p, lp.n, mp.weights_bytes, planned, bytes_q);
        vl_model_free(&mp);
    }
    VT_CHECK_INT(identical, N_LINEARS);
    VT_CHECK_INT(same_p, N_LINEARS);
    if (dir) remove_prequantized(dir);
    vl_model_free(&mq);
    vl_checkpoint_close(&q);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/vl_test_quant_odd_XXXXXX");
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 2;
    }
    for (int i = 0; i < (int)(sizeof formats / sizeof formats[0]); i++) test_format(&formats[i]);
    rmdir(tmp_dir);
    return vt_finish();
}
