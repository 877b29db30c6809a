/* plan_cmd.c: `vlrun plan`: how much device memory a request takes and how many pages fit a card,
 * for every combination of weights (bf16, nf4, int8) and KV cache (bf16, int8), without a GPU
 * and without weights: the config (and the tokenizer when there is one) is all it reads.
 *
 * The figures are the run's own plan (plan.c: the session's layout run against a counting
 * arena), so they are what `vlrun --mem-budget` would check and what the run allocates; only the
 * CUDA context and the cards' totals come from measurements (gpu_table.c). */
#include "cli/cli.h"

#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>

typedef struct {
    vl_options o;
    vl_gpu_budget gpu;
    int have_gpu;
    int page_w, page_h;
    int quant_given, kv_given, backend_given;
    char **rest; /* argv for vl_options_parse: everything but plan's own options */
    int n_rest;
} plan_args;

static const char *quant_name(vl_quant q) {
    return q == VL_QUANT_NF4 ? "nf4" : q == VL_QUANT_INT8 ? "int8" : "bf16";
}

static void plan_usage(FILE *f) {
    fprintf(
        f, "usage: vlrun plan (--config FILE | --model DIR) [--gpu CARD|SIZE] [IMAGE [xN]]...\n"
           "                  [--image-size WxH] [--max-tokens N] [--prompt TEXT] [--json]\n"
           "Predicted device memory for each weights (bf16, nf4, int8) x KV cache (bf16, int8)\n"
           "combination, and how many pages fit --gpu. No GPU and no weights needed.\n"
           "  --gpu CARD|SIZE     A10, L4, A100-40G, A100-80G, H100, or a size like 24G\n"
           "  --image-size WxH    the page size for \"how many fit\" (default: the last IMAGE)\n"
           "  --quant Q, --kv K   only those rows\n"
           "  --backend cpu       plan for the CPU backend (default: CUDA, with or without a GPU)\n"
           "  other run options (--chunk, --attn, --embed-on-host, --double-quant, --tokenizer,\n"
           "  ...) as for a run; see vlrun --help\n");
}

static int parse_image_size(const char *v, int *w, int *h) {
    char *end;
    errno = 0;
    long a = v ? strtol(v, &end, 10) : 0;
    int ok = v && !errno && end != v && (*end == 'x' || *end == 'X') && a >= 1 && a <= 100000;
    long b = 0;
    if (ok) {
        const char *s = end + 1;
        b = strtol(s, &end, 10);
        ok = !errno && end != s && !*end && b >= 1 && b <= 100000;
    }
    if (!ok)
        return vl_error_set("--image-size: expected WIDTHxHEIGHT in pixels like 872x1242, got "
                            "'%s'",
                            v ? v : "");
    *w = (int)a;
    *h = (int)b;
    return 0;
}

/* plan's own options out of argv; the rest (run options, images) for vl_options_parse. */
static int parse_plan_args(plan_args *pa, int argc, char **argv) {
    memset(pa, 0, sizeof *pa);
    vl_options_default(&pa->o);
    pa->rest = calloc((size_t)argc + 1, sizeof *pa->rest);
    if (!pa->rest) return vl_error_set("out of host memory");
    pa->rest[pa->n_rest++] = "vlrun plan";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (vl_option_takes_value(a) && v) { /* a run option and its value, whatever it is */
            pa->quant_given |= strcmp(a, "--quant") == 0;
            pa->kv_given |= strcmp(a, "--kv") == 0;
            pa->backend_given |= strcmp(a, "--backend") == 0;
            pa->rest[pa->n_rest++] = argv[i++];
            pa->rest[pa->n_rest++] = argv[i];
            continue;
        }
        int gpu = strcmp(a, "--gpu") == 0, size = strcmp(a, "--image-size") == 0;
        if ((gpu || size) && !v) return vl_error_set("vlrun plan: option %s needs a value", a);
        if (gpu) {
            if (vl_gpu_budget_parse(v, &pa->gpu)) return -1;
            pa->have_gpu = 1;
            i++;
        } else if (size) {
            if (parse_image_size(v, &pa->page_w, &pa->page_h)) return -1;
            i++;
        } else {
            pa->quant_given |= strcmp(a, "--quant") == 0;
            pa->kv_given |= strcmp(a, "--kv") == 0;
            pa->backend_given |= strcmp(a, "--backend") == 0;
            pa->rest[pa->n_rest++] = argv[i];
        }
    }
    if (vl_options_parse(&pa->o, pa->n_rest, pa->rest)) return -1;
    /* a plan is for a GPU unless asked otherwise, whatever this build's default backend */
    if (!pa->backend_given) pa->o.engine.backend = VL_BACKEND_CUDA;
    if (!pa->o.engine.config_path && !pa->o.engine.model_dir)
        return vl_error_set("vlrun plan: pass --config FILE (e.g. examples/qwen2-vl-7b-instruct."
                            "json) or --model DIR");
    if (!pa->have_gpu && pa->o.n_image_args == 0)
        return vl_error_set("vlrun plan: give --gpu CARD|SIZE to know how many pages fit, and/or "
                            "IMAGE [xN] for the memory of that request");
    return 0;
}

/* One row of the table: weights x kv cache. */
typedef struct {
    vl_quant quant;
    int kv_int8;
    int images;  /* the requested count, or the most that fit when none was requested */
    int max_fit; /* with --gpu */
    int by_positions;
    vl_mem_plan mp;
} plan_row;

static int make_rows(const plan_args *pa, const vl_plan_input *in, const vl_backend_caps *be,
                     plan_row *rows) {
    const vl_quant quants[3] = {VL_QUANT_BF16, VL_QUANT_NF4, VL_QUANT_INT8};
    int n = 0;
    for (int qi = 0; qi < 3; qi++)
        for (int kv = 0; kv < 2; kv++) {
            if (pa->quant_given && quants[qi] != pa->o.engine.quant) continue;
            if (pa->kv_given && kv != pa->o.engine.kv_int8) continue;
            plan_row *r = &rows[n++];
            memset(r, 0, sizeof *r);
            r->quant = quants[qi];
            r->kv_int8 = kv;
            if (pa->have_gpu)
                r->max_fit = vl_plan_input_max_images(in, &pa->o, be, r->quant, kv, pa->gpu.total,
                                                      &r->by_positions);
            r->images = in->n_requested > 0 ? in->n_requested : r->max_fit > 0 ? r->max_fit : 1;
            vl_plan_input_plan(in, &pa->o, be, r->quant, kv, r->images,
                               pa->have_gpu ? (size_t)pa->gpu.total : 0, &r->mp);
        }
    return n;
}

/* The request and the budget, above the table. */
static void print_header(const plan_args *pa, const vl_plan_input *in, const vl_backend_caps *be) {
    const double gib = 1024.0 * 1024 * 1024;
    const vl_plan_image *page = &in->imgs[in->n_requested];
    printf("vlrun plan: %s on the %s backend, %d generated tokens, ", in->model_name,
           be->kind == VL_BACKEND_CPU ? "CPU" : "CUDA", vl_options_max_tokens(&pa->o));
    if (pa->o.engine.chunk > 0)
        printf("prefill chunk %d\n", pa->o.engine.chunk);
    else if (pa->have_gpu)
        printf("prefill chunk: the largest of %d down to %d that fits the budget\n", VL_CHUNK_LARGE,
               VL_CHUNK_SMALL);
    else
        printf("prefill chunk %d (without a budget; a run takes up to %d when it fits)\n",
               VL_CHUNK_SMALL, VL_CHUNK_LARGE);
    int64_t req_tokens = 0;
    for (int i = 0; i < in->n_requested; i++) req_tokens += in->imgs[i].tokens;
    if (in->n_requested > 0)
        printf("request: %d image%s, %lld image tokens\n", in->n_requested,
               in->n_requested == 1 ? "" : "s", (long long)req_tokens);
    if (in->page_w > 0)
        printf("page: %dx%d -> %dx%d after smart_resize, %lld tokens\n", in->page_w, in->page_h,
               in->page_rw, in->page_rh, (long long)page->tokens);
    else if (pa->have_gpu) /* the page of "how many fit" */
        printf("page: the last image, %dx%d after smart_resize, %lld tokens\n", in->page_rw,
               in->page_rh, (long long)page->tokens);
    if (in->text_exact)
        printf("text: %lld prompt tokens besides the images (counted with the tokenizer)\n",
               (long long)in->text_tokens);
    else
        printf("text: at most %lld prompt tokens besides the images (no tokenizer: one per "
               "special token of the chat template and one per byte of its text and of the "
               "prompt, an upper bound; --tokenizer FILE counts them)\n",
               (long long)in->text_tokens);
    if (pa->have_gpu && pa->gpu.card && pa->gpu.measured)
        printf("budget: %s %.2f GiB (%d MiB, cudaMemGetInfo's total, measured)\n", pa->gpu.label,
               pa->gpu.total / gib, (int)(pa->gpu.total >> 20));
    else if (pa->have_gpu && pa->gpu.card)
        printf("budget: %s %.2f GiB (%d MiB: nvidia-smi's %d MiB less the %d MiB that "
               "cudaMemGetInfo does not report on the H100, assumed the same here)\n",
               pa->gpu.label, pa->gpu.total / gib, (int)(pa->gpu.total >> 20),
               pa->gpu.card->smi_total_mib, vl_gpu_driver_reserve_mib());
    else if (pa->have_gpu)
        printf("budget: %.2f GiB\n", pa->gpu.total / gib);
    if (be->kind != VL_BACKEND_CPU)
        printf("cuda_context: %.2f GiB as measured on an H100 with CUDA 13 (other cards and "
               "drivers may differ)\n",
               (double)VL_CUDA_CONTEXT_BYTES / gib);
}

/* The table: GiB, or MiB when every peak is under 1 GiB (small models). */
static void print_table(const plan_args *pa, const vl_plan_input *in, const plan_row *rows, int n) {
    size_t top = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].mp.total > top) top = rows[i].mp.total;
    const int in_gib = top >= ((size_t)1 << 30);
    const double unit = in_gib ? 1024.0 * 1024 * 1024 : 1024.0 * 1024;
    const char *u = in_gib ? "GiB" : "MiB";
    char peak[16];
    snprintf(peak, sizeof peak, "peak %s", u);
    printf("\n%-7s %-8s %6s  %8s = %7s + %8s + %11s + %9s + %12s  %6s", "weights", "kv cache",
           "images", peak, "weights", "kv_cache", "activations", "workspace", "cuda_context",
           "chunk");
    if (pa->have_gpu) printf("   %s", "max images");
    printf("\n");
    int any_positions = 0;
    for (int i = 0; i < n; i++) {
        const plan_row *r = &rows[i];
        const vl_mem_plan *m = &r->mp;
        printf("%-7s %-8s %6d  %8.2f = %7.2f + %8.2f + %11.2f + %9.2f + %12.2f  %6d",
               quant_name(r->quant), r->kv_int8 ? "int8" : "bf16", r->images, m->total / unit,
               m->weights / unit, m->kv / unit, m->act / unit, m->workspace / unit,
               m->context / unit, m->chunk);
        if (pa->have_gpu) printf("   %10d%s", r->max_fit, r->by_positions ? " *" : "");
        any_positions |= r->by_positions;
        printf("\n");
    }
    printf("\n");
    if (in->n_requested == 0 && pa->have_gpu)
        printf("images: the most pages that fit, and the plan at that count (0 fit: the plan of "
               "1)\n");
    if (pa->have_gpu && in->n_requested > 0)
        printf("max images: the requested images, then pages, as many as fit (an int8 cache: "
               "without the dequantized layer of the\n  prefill workspace, which a request "
               "drops when only that fits; its prefill is then slower)\n");
    if (pa->o.engine.chunk <= 0 && pa->have_gpu)
        printf("chunk: the prefill chunk of the plan shown; max images counts with %d (a run "
               "takes a larger chunk only where it fits)\n",
               VL_CHUNK_SMALL);
    if (any_positions)
        printf("*: the model's %d positions are the limit, not memory\n", in->cfg.max_positions);
}

static void json_plan(cJSON *o, const vl_mem_plan *m) {
    cJSON_AddNumberToObject(o, "peak", (double)m->total);
    cJSON_AddNumberToObject(o, "weights", (double)m->weights);
    cJSON_AddNumberToObject(o, "kv_cache", (double)m->kv);
    cJSON_AddNumberToObject(o, "activations", (double)m->act);
    cJSON_AddNumberToObject(o, "workspace", (double)m->workspace);
    cJSON_AddNumberToObject(o, "cuda_context", (double)m->context);
    cJSON_AddNumberToObject(o, "chunk", m->chunk);
}

static int print_json(const plan_args *pa, const vl_plan_input *in, const vl_backend_caps *be,
                      const plan_row *rows, int n) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "model", in->model_name);
    cJSON_AddStringToObject(r, "backend", be->name);
    cJSON_AddNumberToObject(r, "max_tokens", vl_options_max_tokens(&pa->o));
    if (pa->o.engine.chunk > 0)
        cJSON_AddNumberToObject(r, "chunk", pa->o.engine.chunk);
    else
        cJSON_AddStringToObject(r, "chunk", "auto");
    cJSON_AddNumberToObject(r, "text_tokens", (double)in->text_tokens);
    cJSON_AddBoolToObject(r, "text_tokens_exact", in->text_exact);
    cJSON_AddNumberToObject(r, "images", in->n_requested);
    cJSON *pg = cJSON_AddObjectToObject(r, "page");
    if (in->page_w > 0) {
        cJSON_AddNumberToObject(pg, "width", in->page_w);
        cJSON_AddNumberToObject(pg, "height", in->page_h);
    }
    cJSON_AddNumberToObject(pg, "resized_width", in->page_rw);
    cJSON_AddNumberToObject(pg, "resized_height", in->page_rh);
    cJSON_AddNumberToObject(pg, "tokens", (double)in->imgs[in->n_requested].tokens);
    if (pa->have_gpu) {
        cJSON *g = cJSON_AddObjectToObject(r, "gpu");
        cJSON_AddStringToObject(g, "name", pa->gpu.label);
        cJSON_AddNumberToObject(g, "total", (double)pa->gpu.total);
        cJSON_AddBoolToObject(g, "total_measured", pa->gpu.card ? pa->gpu.measured : 1);
        if (pa->gpu.card) cJSON_AddNumberToObject(g, "nvidia_smi_mib", pa->gpu.card->smi_total_mib);
    }
    cJSON *arr = cJSON_AddArrayToObject(r, "plans");
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "weights", quant_name(rows[i].quant));
        cJSON_AddStringToObject(o, "kv", rows[i].kv_int8 ? "int8" : "bf16");
        cJSON_AddNumberToObject(o, "images", rows[i].images);
        json_plan(cJSON_AddObjectToObject(o, "memory"), &rows[i].mp);
        if (pa->have_gpu) {
            cJSON_AddNumberToObject(o, "max_images", rows[i].max_fit);
            cJSON_AddStringToObject(o, "limited_by", rows[i].by_positions ? "positions" : "memory");
        }
        cJSON_AddItemToArray(arr, o);
    }
    char *js = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    if (!js) return vl_error_set("out of host memory");
    printf("%s\n", js);
    free(js);
    return 0;
}

int vl_cmd_plan(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            plan_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--version") == 0) {
            vl_version_print(stdout);
            return 0;
        }
    plan_args pa;
    vl_plan_input in;
    memset(&in, 0, sizeof in);
    int rc = parse_plan_args(&pa, argc, argv);
    if (!rc) rc = vl_plan_input_load(&in, &pa.o, pa.page_w, pa.page_h);
    if (!rc) {
        const vl_backend_caps *be = vl_backend_caps_of(pa.o.engine.backend);
        plan_row rows[6];
        int n = make_rows(&pa, &in, be, rows);
        if (pa.o.json) {
            rc = print_json(&pa, &in, be, rows, n);
        } else {
            print_header(&pa, &in, be);
            print_table(&pa, &in, rows, n);
        }
        if (!rc && (fflush(stdout) != 0 || ferror(stdout)))
            rc = vl_error_set("vlrun plan: cannot write to standard output");
    }
    vl_plan_input_free(&in);
    vl_options_free(&pa.o);
    free(pa.rest);
    return rc;
}
